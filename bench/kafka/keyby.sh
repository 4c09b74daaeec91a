#!/bin/sh
# keyBy benchmark (docs/keyby.md): the same 10 s tumbling window pipeline by
# sensor_id over N records, on two inputs in the same run:
#   unkeyed  null message keys, spread over the partitions: the compiler inserts
#            a repartition (records -> bench-w-repartition -> window tasks)
#   keyed    keyed by sensor_id and declared `partitioned_by: sensor_id`:
#            the window runs in the source tasks, no repartition
#   bench/kafka/keyby.sh [N] [ROUNDS]      (default N = 1000000, ROUNDS = 3)
# Each round runs both (a new group and fresh output each time), alternating.
# weir's summary times first record to last output acknowledged (the group join
# and the end-of-input wait excluded); records/s counts the source records.
# The local broker keeps ~100k messages / 5 MB per partition: 48 input
# partitions, 64 repartition partitions (records in weir's binary form, ~100 B with
# the key), 1000 sensors so that the keys spread evenly.
# One weir process, one worker thread.
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
ROUNDS=${2:-3}
. bench/kafka/common.sh

topics=""
r=1
while [ "$r" -le "$ROUNDS" ]; do
    topics="$topics u$r.out:16 k$r.out:16 u$r-w-repartition:64"
    r=$((r+1))
done
# shellcheck disable=SC2086
bench_broker in.unkeyed:48 in.keyed:48 bench.dlq:1 $topics
"$WEIR" produce --brokers "$B" --topic in.unkeyed --count "$N" --sensors 1000 --start-ts 1700000000000 --no-key --quiet
"$WEIR" produce --brokers "$B" --topic in.keyed --count "$N" --sensors 1000 --start-ts 1700000000000 --quiet

pipeline() { # NAME INPUT EXTRA-SOURCE-LINE
    cat >"$TMP/$1.yaml" <<YAML
pipeline: $1
source:
  kafka: {topics: [$2]}
  format: avro
  schema: schemas/sensor_reading.avsc
  event_time: ts
  watermark: {max_out_of_orderness: 1s}
$3
nodes:
  - {name: w, op: window, key: sensor_id, type: tumbling, size: 10s,
     aggregate: {n: count(), mean_temp: mean(temperature), max_temp: max(temperature)}}
sinks:
  - {input: w, kafka: {topic: $1.out}, format: json}
dead_letter: {kafka: {topic: bench.dlq}}
repartition_partitions: 64
YAML
    echo "$TMP/$1.yaml"
}
run() { # PIPELINE -> records/s
    "$WEIR" run "$1" --brokers "$B" --until-end -X session.timeout.ms=6000 2>"$TMP/weir.log"
    line=$(grep "weir summary" "$TMP/weir.log")
    n=$(echo "$line" | sed 's/.*records_in=\([0-9]*\).*/\1/')
    [ "$n" -eq "$N" ] || { echo "weir read $n records, expected $N" >&2; cat "$TMP/weir.log" >&2; exit 1; }
    echo "$line" | sed 's/.*records_per_s=\([0-9]*\).*/\1/'
}
printf '%-6s %16s %16s %7s\n' round "unkeyed rec/s" "keyed rec/s" ratio
r=1
while [ "$r" -le "$ROUNDS" ]; do
    u=$(run "$(pipeline "u$r" in.unkeyed "")")
    k=$(run "$(pipeline "k$r" in.keyed "  partitioned_by: sensor_id")")
    printf '%-6s %16d %16d %7.2f\n' "$r" "$u" "$k" "$(echo "$u / $k" | bc -l)"
    echo "$u / $k" | bc -l >>"$TMP/ratio"; echo "$u" >>"$TMP/u"; echo "$k" >>"$TMP/k"
    r=$((r+1))
done
median() { sort -g "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
printf '%-6s %16.0f %16.0f %7.2f   (median of the per-round ratios)\n' median "$(median "$TMP/u")" "$(median "$TMP/k")" \
    "$(median "$TMP/ratio")"
echo "(N = $N, $ROUNDS rounds; unkeyed = with the repartition; target: ratio >= 0.5)"
