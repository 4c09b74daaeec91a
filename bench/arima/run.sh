#!/bin/sh
# ARIMA benchmark: weir's arima_fit beside statsmodels' ARIMA(...).fit() on the
# same series in the same run, then fits/s for 10,000 keys refitting.
#   bench/arima/run.sh [BUILD_DIR]      (default build/)
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
ninja -C "$B" bench/arima/bench_arima >/dev/null
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# This machine sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (older OpenBLAS builds
# need them on its CPU); they slow a current numpy 2-4x, so the baseline runs
# without them, in its own command only. The kernel numpy then uses is printed.
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 -c \
    'import numpy, threadpoolctl; print("statsmodels baseline BLAS:", [(i["internal_api"], i.get("architecture")) for i in threadpoolctl.threadpool_info()])' 2>/dev/null || true
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    /usr/bin/python3 bench/arima/bench_statsmodels.py "$dir" > "$dir/sm.txt"
printf '%-9s %6s %12s %12s %8s %14s\n' order n weir_ms statsmodels_ms ratio dloglik
while read -r order n sm_ms sm_ll; do
    p=$(echo "$order" | cut -c1); d=$(echo "$order" | cut -c2); q=$(echo "$order" | cut -c3)
    rep=50; [ "$n" -ge 10000 ] && rep=5
    set -- $("$B/bench/arima/bench_arima" fit "$p" "$d" "$q" "$dir/arima_${order}_${n}.txt" "$rep")
    awk -v o="($p,$d,$q)" -v n="$n" -v w="$1" -v s="$sm_ms" -v wl="$2" -v sl="$sm_ll" \
        'BEGIN { printf "%-9s %6d %12.3f %12.2f %7.0fx %14.2e\n", o, n, w, s, s / w, wl - sl }'
done < "$dir/sm.txt"
echo "10,000 keys x ARIMA(1,1,1) on 100 points, cold fit + warm refit each: $("$B/bench/arima/bench_arima" keys 10000 100) fits/s (1 thread)"
