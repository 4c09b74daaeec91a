#!/bin/sh
# Issue 15 benchmark: four pipelines over the local broker, each beside the raw
# consume ceiling of its input topic (kcat), measured in the same run:
#   filter+map JSON, filter+map Avro, 10 s tumbling window JSON, window Avro.
#   bench/kafka/pipelines.sh [N] [ROUNDS]     (default N = 1000000, ROUNDS = 5)
# One topic of N sensor readings in each format (32 partitions: the local broker
# keeps ~100k messages / 5 MB per partition; a JSON reading is ~150 bytes, so 32). Every round runs, in turn, for
# each format: kcat (better of two runs), then the two weir pipelines; the
# rounds alternate so that all see the same machine state. Medians of the
# rounds and the median of the per-round ratios.
# Timing, the same interval for both: weir's summary line counts from the first
# record consumed to the last output acknowledged (group join and end-of-input
# wait excluded); kcat is timed from its first consumed block of messages to
# its last (bench/kafka/rate_meter: start-up and shutdown excluded).
# One weir worker thread (plus the producer hand-off thread).
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
ROUNDS=${2:-5}
. bench/kafka/common.sh

bench_broker in.json:32 in.avro:32 out.fm:32 out.win:32 bench.dlq:1
for f in json avro; do
    "$WEIR" produce --brokers "$B" --topic "in.$f" --format "$f" --count "$N" --start-ts 1700000000000 --quiet
    # untimed first read: the broker's first read of a fresh topic is slower, whoever reads it
    kcat -C -b "$B" -t "in.$f" -o beginning -c "$N" -q -f '' >/dev/null
done

pipeline() { # FORMAT KIND -> pipeline file
    f=$1; kind=$2; p="$TMP/$f-$kind.yaml"
    {
        echo "pipeline: bench-$f-$kind"
        echo "source:"
        echo "  kafka: {topics: [in.$f]}"
        echo "  format: $f"
        echo "  schema: schemas/sensor_reading.avsc"
        echo "  event_time: ts"
        echo "  watermark: {max_out_of_orderness: 1s}"
        echo "  partitioned_by: sensor_id"
        echo "nodes:"
        if [ "$kind" = fm ]; then
            echo "  - {name: valid, op: filter, where: \"temperature > -40 and temperature < 125\"}"
            echo "  - {name: enriched, op: map, input: valid, set: {temp_f: \"temperature * 9 / 5 + 32\", heat_alert: \"temperature > 26\"}}"
            echo "sinks:"
            if [ "$f" = avro ]; then
                echo "  - {input: enriched, kafka: {topic: out.fm}, format: avro, schema: schemas/sensor_enriched.avsc}"
            else
                echo "  - {input: enriched, kafka: {topic: out.fm}, format: json}"
            fi
        else
            echo "  - {name: w, op: window, key: sensor_id, type: tumbling, size: 10s,"
            echo "     aggregate: {count: count(), avg_temperature: mean(temperature), max_temperature: max(temperature)}}"
            echo "sinks:"
            echo "  - {input: w, kafka: {topic: out.win}, format: $f$( [ "$f" = avro ] && echo ', schema: schemas/window_aggregate.avsc')}"
        fi
        echo "dead_letter: {kafka: {topic: bench.dlq}}"
    } >"$p"
    echo "$p"
}
for f in json avro; do for k in fm win; do pipeline $f $k >/dev/null; "$WEIR" validate "$TMP/$f-$k.yaml" >/dev/null; done; done

run_weir() { # PIPELINE GROUP -> records/s
    "$WEIR" run "$1" --brokers "$B" --until-end --group "$2" -X session.timeout.ms=6000 2>"$TMP/weir.log"
    line=$(grep "weir summary" "$TMP/weir.log")
    weir_in=$(echo "$line" | sed 's/.*records_in=\([0-9]*\).*/\1/')
    [ "$weir_in" -eq "$N" ] || { echo "weir read $weir_in records, expected $N" >&2; cat "$TMP/weir.log" >&2; exit 1; }
    echo "$line" | sed 's/.*records_per_s=\([0-9]*\).*/\1/'
}
kcat_rate() { # TOPIC -> records/s, better of two runs
    best=0
    for try in 1 2; do
        k=$(kcat -C -b "$B" -t "$1" -o beginning -c "$N" -q -f 'x' -X queued.min.messages=1000000 |
            "$BUILD_DIR/bench/kafka/rate_meter" | sed 's/records_per_s=\([0-9]*\).*/\1/')
        [ "$k" -gt "$best" ] && best=$k
    done
    echo "$best"
}
printf '%-6s %-5s %12s %12s %7s %12s %7s\n' round fmt "kcat rec/s" "f+m rec/s" ratio "window rec/s" ratio
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for f in json avro; do
        k=$(kcat_rate "in.$f")
        fm=$(run_weir "$TMP/$f-fm.yaml" "bench-$f-fm-$r")
        win=$(run_weir "$TMP/$f-win.yaml" "bench-$f-win-$r")
        printf '%-6s %-5s %12d %12d %7.2f %12d %7.2f\n' "$r" "$f" "$k" "$fm" "$(echo "$fm / $k" | bc -l)" "$win" \
            "$(echo "$win / $k" | bc -l)"
        echo "$k" >>"$TMP/$f.kcat"; echo "$fm" >>"$TMP/$f.fm"; echo "$win" >>"$TMP/$f.win"
        echo "$fm / $k" | bc -l >>"$TMP/$f.fm.ratio"; echo "$win / $k" | bc -l >>"$TMP/$f.win.ratio"
    done
    r=$((r+1))
done
median() { sort -g "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo
printf '%-6s %-5s %12s %12s %7s %12s %7s   (ratios: median of the per-round ratios)\n' median fmt kcat f+m ratio window ratio
for f in json avro; do
    printf '%-6s %-5s %12.0f %12.0f %7.2f %12.0f %7.2f\n' median "$f" "$(median "$TMP/$f.kcat")" "$(median "$TMP/$f.fm")" \
        "$(median "$TMP/$f.fm.ratio")" "$(median "$TMP/$f.win")" "$(median "$TMP/$f.win.ratio")"
done
echo "(N = $N records per topic, $ROUNDS rounds, one weir worker thread; target: every ratio >= 0.8)"
