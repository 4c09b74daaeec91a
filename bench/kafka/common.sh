# Sourced by the bench/kafka scripts (from the repository root, after `set -eu`):
# the weir binary, a temporary folder, and a local broker stopped at exit.
#   bench_broker TOPIC:P...   start `weir broker` with these topics; sets B (bootstrap)
BUILD_DIR=${BUILD_DIR:-build}
WEIR="$BUILD_DIR/weir"
TMP=$(mktemp -d /tmp/weir-bench-XXXXXX)
BROKER_PID=""
cleanup() { [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
bench_broker() {
    args=""
    for t in "$@"; do args="$args --topic $t"; done
    # shellcheck disable=SC2086
    "$WEIR" broker $args >"$TMP/broker.out" 2>"$TMP/broker.err" &
    BROKER_PID=$!
    i=0; while [ ! -s "$TMP/broker.out" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    B=$(head -1 "$TMP/broker.out")
}
