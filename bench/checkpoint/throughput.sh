#!/bin/sh
# Issue 6 benchmark: throughput cost of checkpointing, measured side by side in one run.
# The same windowed pipeline reads the same topic three times with --until-end:
# without checkpoints, with a checkpoint every 10 s and every 1 s (Redis on loopback).
#   bench/checkpoint/throughput.sh [N] [ROUNDS] [PARTITIONS]   (default N = 1000000, 5 rounds, interleaved;
#   the median per case is reported, since single runs on a shared 2-core machine vary by +-15 %)
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
ROUNDS=${2:-5}
PARTS=${3:-16}   # the local broker keeps ~100k messages per partition: use N/60000 or more
BUILD_DIR=${BUILD_DIR:-build}
WEIR="$BUILD_DIR/weir"
TMP=$(mktemp -d /tmp/weir-bench-XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

"$WEIR" broker --topic sensor.readings:"$PARTS" >"$TMP/broker.out" 2>/dev/null &
PIDS="$PIDS $!"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >/dev/null 2>&1 &
PIDS="$PIDS $!"
i=0; while [ ! -s "$TMP/broker.out" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
B=$(head -1 "$TMP/broker.out")
"$WEIR" produce --brokers "$B" --topic sensor.readings --count "$N" --sensors 1000 --start-ts 1700000000000 --quiet

cat >"$TMP/p.yaml" <<YAML
pipeline: ckbench
source:
  kafka: {topics: [sensor.readings]}
  format: avro
  schema: $(pwd)/schemas/sensor_reading.avsc
  event_time: ts
  partitioned_by: sensor_id
nodes:
  - name: per_10s
    op: window
    key: sensor_id
    type: tumbling
    size: 10s
    aggregate: {n: count(), mean_temp: mean(temperature), max_temp: max(temperature)}
sinks:
  - {input: per_10s, kafka: {topic: ckbench.out}, format: json}
YAML

run() { # $1 label, rest: extra args
    label=$1; shift
    "$WEIR" state --redis "redis://127.0.0.1:$PORT/0" --pipeline ckbench delete >/dev/null 2>&1 || true
    "$WEIR" run "$TMP/p.yaml" --brokers "$B" --until-end --group "g-$label-$r" -X session.timeout.ms=6000 "$@" 2>"$TMP/$label.log" || { echo "run $label failed:" >&2; tail -5 "$TMP/$label.log" >&2; }
    line=$(grep "weir summary" "$TMP/$label.log")
    s=$(echo "$line" | sed 's/.*elapsed_s=\([0-9.]*\).*/\1/')
    n=$(echo "$line" | sed 's/.*records_in=\([0-9]*\).*/\1/')
    ck=$(grep -c "checkpoint sensor" "$TMP/$label.log" || true)
    echo "$label $n $s $ck"
}
R=redis://127.0.0.1:$PORT/0
: > "$TMP/results"
r=0
while [ $r -lt "$ROUNDS" ]; do
    run never >> "$TMP/results"
    run every10s --redis "$R" --checkpoint-interval 10s >> "$TMP/results"
    run every1s --redis "$R" --checkpoint-interval 1s >> "$TMP/results"
    r=$((r+1))
done
# median records/s per case
for c in never every10s every1s; do
    awk -v c="$c" '$1==c{print $2/$3, $4}' "$TMP/results" | sort -n | awk -v c="$c" '{v[NR]=$1; k[NR]=$2} END{m=int((NR+1)/2); print c, v[m], k[m], NR}'
done > "$TMP/median"
base=$(awk '$1=="never"{print $2}' "$TMP/median")
printf '%-12s %14s %20s %7s %10s\n' case "median rec/s" "checkpoints (median)" runs "vs never"
awk -v base="$base" '{printf "%-12s %14.0f %20d %7d %9.2fx\n", $1, $2, $3, $4, $2/base}' "$TMP/median"
