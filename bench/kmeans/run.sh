#!/bin/sh
# kmeans throughput beside scikit-learn, on the same data in the same run (issue 4).
#   bench/kmeans/run.sh [BUILD_DIR]        (default: build)
# Prints a table: weir points/s through a task and in the model alone, sklearn
# MiniBatchKMeans.partial_fit points/s (batches of 1000 and of 10 points), the
# ratios, and distance evaluations/s per core; then the compiler's
# vectorisation report for the distance loop.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ninja -C "$BUILD" bench/kmeans/bench_kmeans >/dev/null
N=${N:-200000}
D=16
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 - "$TMP/x.f64" "$N" "$D" <<'PY'
import sys
from sklearn.datasets import make_blobs
X, _ = make_blobs(n_samples=int(sys.argv[2]), n_features=int(sys.argv[3]), centers=8, random_state=1)
X.astype("<f8").tofile(sys.argv[1])
PY
# One thread each: a weir task runs on one thread; BLAS/OpenMP in sklearn would use every core.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
printf '%-4s %14s %14s %14s %14s %9s %9s %9s %14s %14s\n' k weir_task/s weir_model/s sk_pf1000/s sk_pf10/s \
    task/sk model/sk task/sk10 dist/s pf_dist/s
for K in 8 64; do
    W=$("$BUILD/bench/kmeans/bench_kmeans" --data "$TMP/x.f64" --n "$N" --d "$D" --k "$K" --batch 1000)
    S=$(/usr/bin/python3 bench/kmeans/sklearn_bench.py "$TMP/x.f64" "$N" "$D" "$K" 1000)
    S10=$(/usr/bin/python3 bench/kmeans/sklearn_bench.py "$TMP/x.f64" 20000 "$D" "$K" 10 1)
    get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
    op=$(get "$W" op_points_s); core=$(get "$W" core_points_s)
    dist=$(get "$W" dist_s); pf=$(get "$W" pf_dist_s)
    sk=$(get "$S" sk_partial_fit_points_s); sk10=$(get "$S10" sk_partial_fit_points_s)
    awk -v k="$K" -v op="$op" -v core="$core" -v sk="$sk" -v sk10="$sk10" -v dist="$dist" -v pf="$pf" 'BEGIN {
        printf "%-4s %14.0f %14.0f %14.0f %14.0f %8.1fx %8.1fx %8.1fx %14.3g %14.3g\n",
               k, op, core, sk, sk10, op / sk, core / sk, op / sk10, dist, pf }'
done
echo
echo "vectorisation report for kmeans_distances (gcc -O3 -fopt-info-vec-optimized, default target):"
SRC=operators/kmeans/kmeans_model.c
FROM=$(grep -n '^void kmeans_distances' "$SRC" | cut -d: -f1)
cc -std=gnu11 -O3 -D_GNU_SOURCE -Iprocessor -Ioperators -Ischemas -fopt-info-vec-optimized \
    -c "$SRC" -o "$TMP/m.o" 2>&1 | awk -F: -v a="$FROM" -v b="$((FROM + 25))" '$2 >= a && $2 <= b' | sort -u
