#!/bin/sh
# Issue 2 benchmark: weir's filter+map throughput over the local broker beside the
# raw consume ceiling of the same topic (kcat), measured in the same run.
#   bench/kafka/filter_map.sh [N]     (default N = 1000000)
# The local broker keeps about 100k messages / 5 MB per partition (librdkafka mock
# retention), so the input topic has 16 partitions.
# Needs a built tree (deploy/build.sh) and kcat (deploy/install-deps.sh).
set -eu
cd "$(dirname "$0")/../.."
N=${1:-1000000}
BUILD_DIR=${BUILD_DIR:-build}
WEIR="$BUILD_DIR/weir"
TMP=$(mktemp -d /tmp/weir-bench-XXXXXX)
BROKER_PID=""
cleanup() { [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

"$WEIR" broker --topic sensor.readings:16 --topic sensor.enriched:16 --topic sensor.dlq:1 >"$TMP/broker.out" 2>"$TMP/broker.err" &
BROKER_PID=$!
i=0; while [ ! -s "$TMP/broker.out" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
B=$(head -1 "$TMP/broker.out")

"$WEIR" produce --brokers "$B" --topic sensor.readings --count "$N" --start-ts 1700000000000 --quiet
now() { date +%s.%N; }

# Raw consume ceiling: stop after N messages (-e would add the end-of-partition wait).
t0=$(now)
kcat -C -b "$B" -t sensor.readings -o beginning -c "$N" -q -f '' >/dev/null
t1=$(now)
kcat_s=$(echo "$t1 - $t0" | bc -l)

# weir: a bounded run; its summary times first record to last output acknowledged
# (the group join before the first record is excluded). One worker thread.
"$WEIR" run deploy/pipelines/sensor-filter-map.yaml --brokers "$B" --until-end \
    -X session.timeout.ms=6000 2>"$TMP/weir.log"
line=$(grep "weir summary" "$TMP/weir.log")
weir_s=$(echo "$line" | sed 's/.*elapsed_s=\([0-9.]*\).*/\1/')
weir_in=$(echo "$line" | sed 's/.*records_in=\([0-9]*\).*/\1/')

printf '%-34s %10s %12s %14s\n' "case" "records" "seconds" "records/s"
printf '%-34s %10d %12.3f %14.0f\n' "kcat -C raw consume (ceiling)" "$N" "$kcat_s" "$(echo "$N / $kcat_s" | bc -l)"
printf '%-34s %10d %12.3f %14.0f\n' "weir filter+map (1 thread)" "$weir_in" "$weir_s" "$(echo "$weir_in / $weir_s" | bc -l)"
printf 'ratio weir/kcat: %.2f\n' "$(echo "($weir_in / $weir_s) / ($N / $kcat_s)" | bc -l)"
