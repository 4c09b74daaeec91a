#!/bin/sh
# Window benchmark (issue 3): the operator alone (bench_window drives a task in
# memory) and end to end (`weir run --input`, JSON in and out), with peak memory,
# beside two baselines on the same input: a filter passing nothing (decode floor)
# and one passing everything (pass-through: decode + encode).
#   bench/window/run.sh [BUILD_DIR]      (default build/)
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
N=${N:-10000000}; K=${K:-100000}; T=${T:-100}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
echo "== operator alone: $N records, $K keys, event time over ${T}s"
"$B/bench/window/bench_window" -n "$N" -k "$K" -t "$T" tumbling:10 \
    sliding:60:30 sliding:60:6 sliding:60:1 sliding:20:10 sliding:100:10 sliding:600:10
echo "== 1M keys open at once"
"$B/bench/window/bench_window" -n 3000000 -k 1000000 -t 5 tumbling:10
echo "== end to end: weir run --input (file mode), 5M records"
"$B/bench/window/bench_window" gen -n 5000000 -k "$K" -t "$T" > "$TMP/in.jsonl"
for case in "type: tumbling, size: 10s" "type: sliding, size: 60s, slide: 30s" \
            "type: sliding, size: 60s, slide: 6s" "type: sliding, size: 60s, slide: 1s"; do
  cat > "$TMP/p.yaml" <<YAML
pipeline: bench
source:
  fields: {sensor_id: string, ts: long, temperature: double}
  event_time: ts
  watermark: {max_out_of_orderness: 1s}
nodes:
  - {name: w, op: window, key: sensor_id, $case,
     aggregate: {n: count(), mean_t: mean(temperature), max_t: max(temperature)}}
sinks:
  - {input: w, kafka: {topic: out}}
YAML
  echo "-- $case"
  /usr/bin/time -f "   %e s wall, peak RSS %M KB" "$B/weir" run "$TMP/p.yaml" --input "$TMP/in.jsonl" --output /dev/null
done
# Baselines on the same input in the same run: a filter that passes nothing
# (JSON decode + dispatch: the floor under any pipeline) and one that passes
# everything (decode + encode of every record: a pass-through).
for where in false true; do
  cat > "$TMP/p.yaml" <<YAML
pipeline: bench
source:
  fields: {sensor_id: string, ts: long, temperature: double}
  event_time: ts
nodes:
  - {name: f, op: filter, where: "$where"}
sinks:
  - {input: f, kafka: {topic: out}}
YAML
  echo "-- baseline: filter where $where ($( [ $where = false ] && echo 'decode floor' || echo 'pass-through'))"
  /usr/bin/time -f "   %e s wall, peak RSS %M KB" "$B/weir" run "$TMP/p.yaml" --input "$TMP/in.jsonl" --output /dev/null
done
