#!/bin/sh
# kmeans throughput beside scikit-learn, on the same data in the same run (issue 4).
#   bench/kmeans/run.sh [BUILD_DIR]        (default: build)
# Prints a table: weir points/s through a task (centroids emitted after every
# update, and every 100th), in the model alone, sklearn
# MiniBatchKMeans.partial_fit points/s (batches of 1000 and of 10 points), the
# ratios of like to like (weir at batch 1000 / sklearn at batch 1000, weir at
# batch 10 / sklearn at batch 10, both on the first 20,000 points), and
# point-feature distance terms/s per core; then the core-loop
# checksums on every instruction set and what the distance kernels compiled to.
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
printf '%-4s %12s %12s %12s %12s %12s %8s %8s %8s %8s %11s %11s\n' k task/s task_e100/s model/s sk_pf1000/s sk_pf10/s \
    task/sk e100/sk model/sk t10/sk10 task_pf/s model_pf/s
for K in 8 64; do
    W=$("$BUILD/bench/kmeans/bench_kmeans" --data "$TMP/x.f64" --n "$N" --d "$D" --k "$K" --batch 1000)
    W100=$("$BUILD/bench/kmeans/bench_kmeans" --data "$TMP/x.f64" --n "$N" --d "$D" --k "$K" --batch 1000 --emit-every 100)
    S=$(/usr/bin/python3 bench/kmeans/sklearn_bench.py "$TMP/x.f64" "$N" "$D" "$K" 1000)
    W10=$("$BUILD/bench/kmeans/bench_kmeans" --data "$TMP/x.f64" --n 20000 --d "$D" --k "$K" --batch 10)
    S10=$(/usr/bin/python3 bench/kmeans/sklearn_bench.py "$TMP/x.f64" 20000 "$D" "$K" 10 1)
    get() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
    op=$(get "$W" op_points_s); core=$(get "$W" core_points_s); op100=$(get "$W100" op_points_s); op10=$(get "$W10" op_points_s)
    pf=$(get "$W" pf_dist_s); opf=$(get "$W" op_pf_dist_s)
    sk=$(get "$S" sk_partial_fit_points_s); sk10=$(get "$S10" sk_partial_fit_points_s)
    awk -v k="$K" -v op="$op" -v op100="$op100" -v core="$core" -v sk="$sk" -v sk10="$sk10" -v op10="$op10" -v pf="$pf" -v opf="$opf" 'BEGIN {
        printf "%-4s %12.0f %12.0f %12.0f %12.0f %12.0f %7.1fx %7.1fx %7.1fx %7.1fx %11.3g %11.3g\n",
               k, op, op100, core, sk, sk10, op / sk, op100 / sk, core / sk, op10 / sk10, opf, pf }'
    SIMD=$(get "$W" simd)
done
echo
echo "t10/sk10: weir at batch 10 over sklearn partial_fit at batch 10 (the same 20,000 points, same batch size)."
echo "task: whole operator through a task (record in -> record + cluster + distance out, updates, centroid records"
echo "      after every update); task_e100: the same with emit_centroids_every: 100; model: the numerical core alone."
echo "*_pf/s: point-feature distance terms per second on one core (points * k * d). Kernel: $SIMD."
echo
echo "the same model on every instruction set (core-loop checksums, then a hash of the task's emitted clusters and"
echo "distances; must be equal per k):"
for ISA in baseline avx2 avx512; do
    line=$ISA
    for K in 8 64; do
        W=$(WEIR_KMEANS_SIMD=$ISA "$BUILD/bench/kmeans/bench_kmeans" --data "$TMP/x.f64" --n 20000 --d "$D" --k "$K" --repeat 1)
        line="$line k=$K:$(echo "$W" | tr ' ' '\n' | sed -n 's/^checksum=//p')($(echo "$W" | tr ' ' '\n' | sed -n 's/^simd=//p'))"
        line="$line task:$(echo "$W" | tr ' ' '\n' | sed -n 's/^op_hash=//p')"
    done
    echo "  $line"
done
echo
echo "distance kernels (objdump of the built library): vector instructions and FMAs (must be 0: contraction is off)"
OBJ=$(find "$BUILD" -name '*kmeans_model.c.o' | head -1)
for F in nearest_base nearest_avx2 nearest_avx512; do
    objdump -d --no-show-raw-insn "$OBJ" | awk -v f="<$F>:" '$2 == f {p = 1; next} p && /^$/ {exit} p' >"$TMP/f.s"
    printf '  %-15s %4d xmm %4d ymm %4d zmm %2d fma  (%d instructions)\n' "$F" "$(grep -c 'pd.*%xmm' "$TMP/f.s")" \
        "$(grep -c '%ymm' "$TMP/f.s")" "$(grep -c '%zmm' "$TMP/f.s")" "$(grep -c 'vfmadd\|vfmsub\|vfnmadd' "$TMP/f.s")" \
        "$(wc -l <"$TMP/f.s")"
done
