#!/bin/sh
# Issue 2 benchmark: weir's filter+map throughput over the local broker beside the
# raw consume ceiling of the same topic (kcat), measured in the same run.
#   bench/kafka/filter_map.sh [N] [ROUNDS]     (default N = 1000000, ROUNDS = 5)
# Both are timed over the same interval, first record to last: weir's summary
# line (group join and end-of-input wait excluded), kcat through
# bench/kafka/rate_meter (its start-up and shutdown excluded).
# Each round times kcat, then weir (a new consumer group each time; its one
# worker thread runs the graph and encodes, a hand-off thread makes the
# librdkafka produce calls), then weir --no-sink-thread (the worker makes them
# too), then
# bench/kafka/passthrough (the least a one-thread librdkafka consume -> produce
# loop with weir's settings and its weir.id header can do: no decoding, no
# operators), on the same loaded topic; the rounds alternate so that all three
# see the same machine state.
# The summary gives the median of each and the ratio of the medians, and the
# per-round ratios (2 cores shared by the broker, kcat/weir and librdkafka's
# threads: single runs vary by +-25 %).
# The local broker keeps about 100k messages / 5 MB per partition (librdkafka mock
# retention), so the input topic has 16 partitions.
# Needs a built tree (deploy/build.sh) and kcat (deploy/install-deps.sh).
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
ROUNDS=${2:-5}
. bench/kafka/common.sh

bench_broker sensor.readings:16 sensor.enriched:16 sensor.dlq:1

"$WEIR" produce --brokers "$B" --topic sensor.readings --count "$N" --start-ts 1700000000000 --quiet

# One untimed pass first: the broker's first read of a freshly written topic is
# up to 3x slower than the next ones (measured), whoever reads it.
kcat -C -b "$B" -t sensor.readings -o beginning -c "$N" -q -f '' >/dev/null

PT="$BUILD_DIR/bench/kafka/passthrough"
run_weir() { # GROUP [weir run options]: records/s of one bounded run
    g=$1; shift
    "$WEIR" run deploy/pipelines/sensor-filter-map.yaml --brokers "$B" --until-end --group "$g" \
        -X session.timeout.ms=6000 "$@" 2>"$TMP/weir.log"
    line=$(grep "weir summary" "$TMP/weir.log")
    weir_in=$(echo "$line" | sed 's/.*records_in=\([0-9]*\).*/\1/')
    [ "$weir_in" -eq "$N" ] || { echo "weir read $weir_in records, expected $N" >&2; exit 1; }
    echo "$weir_in / $(echo "$line" | sed 's/.*elapsed_s=\([0-9.]*\).*/\1/')" | bc -l
}
printf '%-6s %12s %12s %7s %14s %7s %14s %8s\n' "round" "kcat rec/s" "weir rec/s" "ratio" "inline rec/s" "ratio" "passthru rec/s" "weir/pt"
r=1
while [ $r -le "$ROUNDS" ]; do
    # Raw consume ceiling: stop after N messages (-e would add the end-of-partition wait).
    # queued.min.messages as weir sets it: with librdkafka's default (100k) kcat
    # stalls for a fetch backoff now and then (1.06 s instead of 0.30 s for 1 M),
    # which would make the ceiling lower and the ratio flatter than they are.
    # kcat still stalls now and then (~1 s, some partitions start late), so each
    # round takes the better of two kcat runs: the ceiling is what it can do.
    kcat_rate=0
    for try in 1 2; do
        # timed like weir: from the first consumed records to the last, start-up and
        # shutdown excluded (one byte a message into bench/kafka/rate_meter)
        k=$(kcat -C -b "$B" -t sensor.readings -o beginning -c "$N" -q -f 'x' -X queued.min.messages=1000000 |
            "$BUILD_DIR/bench/kafka/rate_meter" | sed 's/records_per_s=\([0-9]*\).*/\1/')
        kcat_rate=$(echo "if ($k > $kcat_rate) $k else $kcat_rate" | bc -l)
    done
    # weir: a bounded run; its summary times first record to last output acknowledged
    # (the group join before the first record is excluded). One worker thread.
    weir_rate=$(run_weir "bench-$r")
    inline_rate=$(run_weir "bench-inline-$r" --no-sink-thread)
    pt_rate=$("$PT" "$B" sensor.readings 16 sensor.enriched "$N" | sed 's/.*records_per_s=//')
    printf '%-6s %12.0f %12.0f %7.2f %14.0f %7.2f %14.0f %8.2f\n' "$r" "$kcat_rate" "$weir_rate" \
        "$(echo "$weir_rate / $kcat_rate" | bc -l)" "$inline_rate" "$(echo "$inline_rate / $kcat_rate" | bc -l)" \
        "$pt_rate" "$(echo "$weir_rate / $pt_rate" | bc -l)"
    echo "$kcat_rate" >>"$TMP/kcat"
    echo "$weir_rate" >>"$TMP/weir"
    echo "$inline_rate" >>"$TMP/inline"
    echo "$pt_rate" >>"$TMP/pt"
    r=$((r+1))
done
median() { sort -g "$1" | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
km=$(median "$TMP/kcat"); wm=$(median "$TMP/weir"); im=$(median "$TMP/inline"); pm=$(median "$TMP/pt")
printf '%-6s %12.0f %12.0f %7.2f %14.0f %7.2f %14.0f %8.2f\n' "median" "$km" "$wm" "$(echo "$wm / $km" | bc -l)" \
    "$im" "$(echo "$im / $km" | bc -l)" "$pm" "$(echo "$wm / $pm" | bc -l)"
printf '%-6s %12.0f %12s %7.2f %14s %7.2f   (median weir / best kcat)\n' "strict" "$(sort -g "$TMP/kcat" | tail -1)" "" \
    "$(echo "$wm / $(sort -g "$TMP/kcat" | tail -1)" | bc -l)" "" "$(echo "$im / $(sort -g "$TMP/kcat" | tail -1)" | bc -l)"
echo "(N = $N, $ROUNDS rounds; one worker thread; ratio = weir/kcat, the issue's figure; inline = --no-sink-thread;"
echo " passthru: a one-thread librdkafka consume -> produce loop, see the top of this script)"
