#!/bin/sh
# Resident memory per key of window, k-means and ARIMA state at 1 M and 10 M keys (issue 13).
#   bench/memory/run.sh [BUILD_DIR]      (default build/; MAX_RSS_MB caps each run, default 12000)
# A run that reaches the cap stops and says how many keys it held (exit 3): that many did not fit.
set -u
cd "$(dirname "$0")/../.."
B=${1:-build}
M=${MAX_RSS_MB:-12000}
for op in window kmeans arima; do
  for keys in 1000000 10000000; do
    /usr/bin/time -f "   %e s wall, peak RSS %M KB" "$B/bench/memory/bench_memory" -m "$M" "$op" "$keys"
  done
done
