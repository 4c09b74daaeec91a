#!/bin/sh
# The README's second command: install what is needed, build, run every test
# (Criterion unit tests and integration tests against real `weir broker` and
# redis-server processes that the tests start and stop themselves).
#   tests/run.sh               normal build
#   SANITIZE=1 tests/run.sh    AddressSanitizer + UBSan build (build-asan/)
set -eu
cd "$(dirname "$0")/.."
sh deploy/install-deps.sh
BUILD_DIR=$(sh deploy/build.sh)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@" || status=$?
# The plain closing line CI reads: N passed, N failed.
python3 - "$BUILD_DIR/meson-logs/testlog.json" <<'PY' || true
import json, sys
ok = fail = skip = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["result"] in ("OK", "EXPECTEDFAIL"): ok += 1
    elif r["result"] == "SKIP": skip += 1
    else: fail += 1
print(f"tests: {ok} passed, {fail} failed, {skip} skipped")
PY
exit $status
