#!/bin/sh
# Checkpoint write and restore time for 100k and 1M keys of window state, and
# the Redis memory they take (issue 6).
#   bench/checkpoint/run.sh [BUILD_DIR]        (default: build)
# Starts its own redis-server on a free loopback port (no persistence), runs
# bench_checkpoint for each size with the real window snapshot and with the
# brief's estimate of 64 bytes per key, prints a table, stops the server.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
REPS=${REPS:-5}
ninja -C "$BUILD" bench/checkpoint/bench_checkpoint >/dev/null
TMP=$(mktemp -d)
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" --daemonize no \
    >"$TMP/redis.log" 2>&1 &
RPID=$!
trap 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$PORT, median of $REPS runs"
printf '%-8s %-10s %9s %7s %9s %9s %9s %10s %9s %9s\n' keys state size_MB B/key snap_ms write_ms read_ms \
    restore_ms redis_MB 2ckpt_MB
for KEYS in 100000 1000000; do
    for BPK in 0 64; do
        L=$("$BUILD/bench/checkpoint/bench_checkpoint" --redis "redis://127.0.0.1:$PORT" --keys "$KEYS" \
            --reps "$REPS" --bytes-per-key "$BPK")
        echo "$L" | tr ' ' '\n' | awk -F= '{v[$1]=$2} END {
            rs = v["state"] == "window" ? sprintf("%10.1f", v["restore_ms"]) : sprintf("%10s", "-");
            sn = v["state"] == "window" ? sprintf("%9.1f", v["snapshot_ms"]) : sprintf("%9s", "-");
            printf "%-8s %-10s %9.1f %7.1f %s %9.1f %9.1f %s %9.1f %9.1f\n", v["keys"], v["state"],
                   v["bytes"] / 1048576, v["bytes_per_key"], sn, v["write_ms"], v["read_ms"], rs,
                   v["mem_one_mb"], v["mem_two_mb"] }'
    done
done
echo
echo "size: state bytes; write: weir_ckpt_write (chunks + MULTI/EXEC + prune); read: weir_ckpt_read (chunks + CRC);"
echo "restore: weir_task_restore of the bytes read; redis_MB: INFO used_memory delta with one checkpoint,"
echo "2ckpt_MB: in steady state (latest + previous). 'window' = real snapshot of a tumbling window with"
echo "count/mean/max and one open window per key; 'synthetic' = the brief's estimate, 64 random bytes per key."
echo
# An outage: how long a store call takes to give up against a Redis that accepts
# connections but never answers (SIGSTOP). Bounded by WEIR_CKPT_TIMEOUT_MS
# (checkpoint.h) per call; the runtime then pauses and retries with back-off.
# (This was a timing assertion in tests/test_checkpoint.c; timings live here.)
kill -STOP "$RPID"
t0=$(date +%s%N)
"$BUILD/weir" state --redis "redis://127.0.0.1:$PORT" --pipeline bench list >/dev/null 2>&1 || true
t1=$(date +%s%N)
kill -CONT "$RPID"
echo "outage: 'weir state list' against a stopped redis-server gave up after $(( (t1 - t0) / 1000000 )) ms"

