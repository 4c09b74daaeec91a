#!/usr/bin/env bash
# tests/soak.sh MINUTES: a soak test (not in CI; see tests/README.md).
#
# A group of 3 `weir run` members (filter -> map -> keyed tumbling window,
# checkpoints in Redis) reads a topic that `weir produce --rate` fills for
# MINUTES minutes, while a chaos loop, at random moments, SIGKILLs a member and
# restarts it, restarts redis-server (SIGKILL; append-only file, so the
# checkpoints survive) and disturbs the broker (`weir broker --control`): it
# answers seconds late, or fails the next Fetch/Produce/OffsetCommit requests
# with NOT_LEADER; with SOAK_BROKER_DOWN=1 it also goes down and up again,
# which librdkafka 2.0.2's mock cluster does not survive with a consumer group
# rebalancing (rdkafka_mock_cgrp.c:236: Assertion `!member->resp' failed:
# the broker process aborts; the soak then stops and says so).
# Then the producer stops, the members stop, one `weir run --until-end` drains
# what is left, and the window results (deduplicated by id: duplicates must be
# byte-identical) must equal exactly those of a file-mode run over the input
# topic as kcat reads it back.
#
# Everything is local: a `weir broker` (in-memory) and a redis-server on
# 127.0.0.1, in a temporary directory (kept: its path is printed).
# Environment: WEIR_BIN (default build/weir), SOAK_SEED (chaos RNG seed), SOAK_BROKER_DOWN,
# SOAK_RATE (records/s, default sized for the broker's ~100 k messages per
# partition), SOAK_PARTITIONS (default 8).
# Exit status: 0 = results identical, 1 = a difference or a failure.
set -euo pipefail

MINUTES=${1:?usage: tests/soak.sh MINUTES}
[[ $MINUTES =~ ^[0-9]+$ && $MINUTES -ge 1 && $MINUTES -le 240 ]] || {
    echo "soak: MINUTES must be 1..240" >&2
    exit 2
}
SRC=$(cd "$(dirname "$0")/.." && pwd)
sh "$SRC/deploy/install-deps.sh" # kcat, jq, redis-server, python3: everything it uses
BIN_SRC=${WEIR_BIN:-$SRC/build/weir}
PARTS=${SOAK_PARTITIONS:-8}
# Stay inside the mock broker's limits (~100 k messages, ~5 MB per partition):
# a JSON reading is ~130 bytes, so at most ~35 k per partition. 15 k per partition
# by default: a consumer reads the mock broker at only ~0.5-1 k records/s when
# the producer's batches are small (a record or two), and the drain must finish.
RATE=${SOAK_RATE:-$((PARTS * 15000 / (MINUTES * 60)))}
[[ $RATE -ge 1 ]] || RATE=1
RANDOM=${SOAK_SEED:-$$}
T=$(mktemp -d /tmp/weir-soak-XXXXXX)
cp "$BIN_SRC" "$T/weir" # a rebuild during the soak must not change the binary
W=$T/weir
echo "soak: $MINUTES min, $PARTS partitions, $RATE records/s, dir $T"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}" ${MEMBER_PIDS[@]+"${MEMBER_PIDS[@]}"} ${REDIS_PID:-} ${PRODUCER_PID:-} ${BROKER_PID:-}; do
        kill -9 "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT
log() { echo "soak: $(date -u +%H:%M:%S) $*" | tee -a "$T/events.log"; }

# ---- broker ----
"$W" broker --topic soak.in:"$PARTS" --topic soak.out:"$PARTS" --topic soak.dlq:1 \
    --control "$T/ctl" >"$T/broker.out" 2>"$T/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do
    [[ -s $T/broker.out ]] && break
    sleep 0.1
done
B=$(head -1 "$T/broker.out")
[[ -n $B ]] || { echo "soak: broker did not start" >&2; exit 1; }
exec 7<>"$T/ctl" # keep the FIFO open: writes never block
ctl() { echo "$1" >&7; log "broker control: $1"; }

# ---- redis (AOF, fsync always: a SIGKILL loses no checkpoint) ----
RPORT=$((20000 + RANDOM % 20000))
redis_start() {
    redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
        --dir "$T" --daemonize no >>"$T/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do
        redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "soak: redis-server did not start" >&2
    exit 1
}
redis_start
REDIS=redis://127.0.0.1:$RPORT/0

# ---- pipeline: filter, map, keyed window ----
cat >"$T/soak.yaml" <<EOF
pipeline: soak
source:
  kafka: {topics: [soak.in]}
  format: json
  fields: {sensor_id: string, ts: long, temperature: double, humidity: double, pressure: double?, site: string}
  event_time: ts
  watermark: {max_out_of_orderness: 0s}
  partitioned_by: sensor_id
nodes:
  - {name: warm, op: filter, where: "temperature > 18.0"}
  - {name: f, op: map, input: warm, set: {temp_f: "temperature * 9 / 5 + 32"}}
  - {name: per_10s, op: window, input: f, key: sensor_id, type: tumbling, size: 10s,
     aggregate: {n: count(), mean_f: mean(temp_f), max_h: max(humidity), first_ts: min(ts)}}
sinks:
  - {input: per_10s, kafka: {topic: soak.out}}
dead_letter: {kafka: {topic: soak.dlq}}
EOF
"$W" validate "$T/soak.yaml" >"$T/validate.out" 2>&1 || { cat "$T/validate.out"; exit 1; }

# ---- producer: event time 10 ms per record from a fixed start ----
COUNT=$((RATE * MINUTES * 60))
"$W" produce --brokers "$B" --topic soak.in --format json --rate "$RATE" --count "$COUNT" \
    --sensors 200 --start-ts 1700000000000 --step 10 --seed 7 >"$T/produce.out" 2>"$T/produce.err" &
PRODUCER_PID=$!

# ---- members ----
MEMBER_PIDS=()
member_start() { # $1 = member index
    "$W" run "$T/soak.yaml" --brokers "$B" --redis "$REDIS" --checkpoint-interval 2s \
        --instance "m$1" -X session.timeout.ms=6000 -X heartbeat.interval.ms=500 -X max.poll.interval.ms=20000 \
        >>"$T/m$1.out" 2>>"$T/m$1.err" &
    MEMBER_PIDS[$1]=$!
}
for i in 0 1 2; do member_start "$i"; done
log "broker $B, redis $REDIS, members ${MEMBER_PIDS[*]}, producer $PRODUCER_PID"

# ---- chaos until the producer is done ----
END=$((SECONDS + MINUTES * 60))
kills=0 redis_restarts=0 broker_faults=0 exits=0
while ((SECONDS < END)) && kill -0 "$PRODUCER_PID" 2>/dev/null; do
    sleep $((10 + RANDOM % 20))
    ((SECONDS < END - 20)) || break # leave the last seconds quiet
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        log "the broker died: $(tail -1 "$T/broker.err")"
        log "result: FAIL (dir $T)"
        exit 1
    fi
    for i in 0 1 2; do # a member that exited on its own is a finding: restart it, count it
        if ! kill -0 "${MEMBER_PIDS[$i]}" 2>/dev/null; then
            wait "${MEMBER_PIDS[$i]}" && rc=0 || rc=$?
            log "member m$i exited by itself (status $rc): restarting"
            exits=$((exits + 1))
            member_start "$i"
        fi
    done
    case $((RANDOM % 3)) in
    0)
        i=$((RANDOM % 3))
        log "SIGKILL member m$i (pid ${MEMBER_PIDS[$i]})"
        kill -9 "${MEMBER_PIDS[$i]}" 2>/dev/null || true
        wait "${MEMBER_PIDS[$i]}" 2>/dev/null || true
        sleep $((1 + RANDOM % 5))
        member_start "$i"
        kills=$((kills + 1))
        ;;
    1)
        log "restart redis-server (SIGKILL)"
        kill -9 "$REDIS_PID"
        wait "$REDIS_PID" 2>/dev/null || true
        sleep $((1 + RANDOM % 5))
        redis_start
        redis_restarts=$((redis_restarts + 1))
        ;;
    2)
        case $((RANDOM % (${SOAK_BROKER_DOWN:-0} == 1 ? 3 : 2))) in
        0)
            ctl "rtt 1 $((1000 + RANDOM % 4000))"
            sleep $((2 + RANDOM % 8))
            ctl "rtt 1 0"
            ;;
        1)
            ctl "errors 1 6 $((10 + RANDOM % 90))" # Fetch: NOT_LEADER_FOR_PARTITION
            ctl "errors 0 6 $((5 + RANDOM % 20))"  # Produce
            ctl "errors 8 6 $((1 + RANDOM % 5))"   # OffsetCommit
            ;;
        2)
            ctl "down 1"
            sleep $((2 + RANDOM % 8))
            ctl "up 1"
            ;;
        esac
        broker_faults=$((broker_faults + 1))
        ;;
    esac
done
wait "$PRODUCER_PID" || { log "producer failed"; cat "$T/produce.err"; exit 1; }
PRODUCER_PID=
log "producer done ($COUNT records); chaos: $kills member kills, $redis_restarts redis restarts, $broker_faults broker faults, $exits unexpected exits"

# ---- drain: stop the members, one --until-end run finishes the input ----
sleep 10
for i in 0 1 2; do
    kill -TERM "${MEMBER_PIDS[$i]}" 2>/dev/null || true
done
for i in 0 1 2; do
    wait "${MEMBER_PIDS[$i]}" && rc=0 || rc=$?
    [[ $rc -eq 0 || $rc -eq 143 ]] || { log "member m$i exited with $rc at stop"; exits=$((exits + 1)); }
done
MEMBER_PIDS=()
# The group's rebalance timeout is max.poll.interval.ms: short, so that the drain's join
# does not wait minutes for members that are gone.
timeout $((900 + MINUTES * 30)) "$W" run "$T/soak.yaml" --brokers "$B" --redis "$REDIS" --until-end --instance drain \
    -X session.timeout.ms=6000 -X heartbeat.interval.ms=500 -X max.poll.interval.ms=20000 \
    >"$T/drain.out" 2>"$T/drain.err" || {
    log "drain run failed: $?"
    tail "$T/drain.err"
    exit 1
}
log "drain: $(grep -h "weir summary" "$T/drain.out" "$T/drain.err" 2>/dev/null | tail -1)"

# ---- the reference: file mode over the input topic, in production (event-time) order ----
kcat -C -b "$B" -t soak.in -o beginning -e -q -f '%s\n' >"$T/in.raw"
jq -c -s 'sort_by(.ts)[]' "$T/in.raw" >"$T/in.jsonl"
"$W" run "$T/soak.yaml" --input "$T/in.jsonl" --output "$T/ref.jsonl" --quiet
kcat -C -b "$B" -t soak.out -o beginning -e -q -f '%s\n' >"$T/out.jsonl"

python3 - "$T" "$COUNT" <<'EOF' && rc=0 || rc=$?
import json, sys
t, count = sys.argv[1], int(sys.argv[2])
n_in = sum(1 for _ in open(f"{t}/in.jsonl"))
ref = {}
for line in open(f"{t}/ref.jsonl"):
    r = json.loads(line)
    if r.pop("node", None) != "per_10s":
        continue
    ref[r["id"]] = json.dumps(r, sort_keys=True)
got, dup, diff_dup = {}, 0, []
for line in open(f"{t}/out.jsonl"):
    line = line.rstrip("\n")
    r = json.loads(line)
    if r["id"] in got:
        dup += 1
        if got[r["id"]][1] != line:
            diff_dup.append((got[r["id"]][1], line))
        continue
    got[r["id"]] = (json.dumps(r, sort_keys=True), line)
missing = sorted(set(ref) - set(got))
extra = sorted(set(got) - set(ref))
wrong = sorted(i for i in set(ref) & set(got) if ref[i] != got[i][0])
print(f"soak: input {n_in}/{count} records; windows: reference {len(ref)}, kafka {len(got)} "
      f"(+{dup} duplicates); missing {len(missing)}, extra {len(extra)}, different {len(wrong)}, "
      f"duplicates not byte-identical {len(diff_dup)}")
for name, ids in (("missing", missing), ("extra", extra), ("different", wrong)):
    for i in ids[:5]:
        print(f"  {name}: {i}\n    ref: {ref.get(i)}\n    got: {got[i][0] if i in got else None}")
for a, b in diff_dup[:5]:
    print(f"  duplicate differs:\n    {a}\n    {b}")
ok = n_in == count and not missing and not extra and not wrong and not diff_dup
sys.exit(0 if ok else 1)
EOF
((exits == 0)) || { log "$exits unexpected member exits (see $T/m*.err)"; rc=1; }
log "result: $([[ $rc -eq 0 ]] && echo PASS || echo FAIL) (dir $T)"
exit $rc
