#!/bin/sh
# Run every libFuzzer harness in tests/fuzz/ for SECONDS each (default 60).
#   tests/fuzz.sh [SECONDS]
# Builds build-fuzz/ (clang, -Dfuzz=true, ASan + UBSan), runs the harnesses two
# at a time (the machine has 2 cores) on a copy of each seed corpus, with leak
# detection. Any crash, leak, timeout, out-of-memory or sanitizer report fails
# the run (exit 1); the input that caused it is kept and its path printed.
# The last line is "fuzz: N passed, N failed".
#   FUZZ_OUT=DIR     where runs, new corpus entries and reproducers go
#                    (default build-fuzz/fuzz-out, emptied first)
#   FUZZ_ONLY="expr json"   run only these harnesses
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-60}
HARNESSES=${FUZZ_ONLY:-"json avro expr pipeline snapshot"}
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
OUT=${FUZZ_OUT:-$BUILD_DIR/fuzz-out}

sh deploy/install-deps.sh
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    CC=clang meson setup "$BUILD_DIR" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbuildtype=debugoptimized -Dbench=false >/dev/null
fi
targets=""
for h in $HARNESSES; do targets="$targets tests/fuzz/fuzz_$h"; done
# shellcheck disable=SC2086
ninja -C "$BUILD_DIR" $targets >&2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rm -rf "$OUT"
mkdir -p "$OUT"

# One harness: fuzz a copy of its corpus for SECS seconds; exit status of the fuzzer.
run_one() {
    h=$1
    dir=$OUT/$h
    mkdir -p "$dir/corpus"
    cp tests/fuzz/corpus/"$h"/* "$dir/corpus/"
    dict=""
    if [ -f "tests/fuzz/$h.dict" ]; then dict="-dict=tests/fuzz/$h.dict"; fi
    # -timeout: one input running longer than this is a hang, a defect like a crash.
    # shellcheck disable=SC2086
    "$BUILD_DIR/tests/fuzz/fuzz_$h" -max_total_time="$SECS" -detect_leaks=1 -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$dir/" $dict "$dir/corpus" >"$dir/log" 2>&1
}

# Summary line of one finished harness; records pass/fail in $dir/result.
report() {
    h=$1 rc=$2
    dir=$OUT/$h
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$dir/log" | tail -1)
    seeds=$(find tests/fuzz/corpus/"$h" -type f | wc -l)
    corpus=$(find "$dir/corpus" -type f | wc -l)
    repro=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'slow-unit-*' \) | head -1)
    if [ "$rc" -eq 0 ] && [ -z "$repro" ] && ! grep -q 'runtime error:\|ERROR: .*Sanitizer' "$dir/log"; then
        echo "fuzz_$h: ok, ${execs:-?} execs (${speed:-?}/s), ${cov:-cov ?}, corpus $seeds -> $corpus"
        echo pass >"$dir/result"
    else
        echo "fuzz_$h: FAILED (exit $rc), ${execs:-?} execs; log: $dir/log"
        grep -m 3 'ERROR: \|runtime error:\|check failed\|SUMMARY:' "$dir/log" | sed 's/^/    /' || true
        if [ -n "$repro" ]; then
            echo "    reproducer: $repro"
            echo "    reproduce:  $BUILD_DIR/tests/fuzz/fuzz_$h $repro"
        fi
        echo fail >"$dir/result"
    fi
}

# Two at a time.
set -- $HARNESSES
while [ $# -gt 0 ]; do
    a=$1
    shift
    b=""
    if [ $# -gt 0 ]; then
        b=$1
        shift
    fi
    run_one "$a" &
    pa=$!
    if [ -n "$b" ]; then
        run_one "$b" &
        pb=$!
    fi
    rca=0
    wait "$pa" || rca=$?
    report "$a" "$rca"
    if [ -n "$b" ]; then
        rcb=0
        wait "$pb" || rcb=$?
        report "$b" "$rcb"
    fi
done

passed=0 failed=0
for h in $HARNESSES; do
    if [ "$(cat "$OUT/$h/result")" = pass ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
