#!/bin/sh
# Configure (once) and build weir into BUILD_DIR (default: build).
# SANITIZE=1 builds with AddressSanitizer and UBSan into build-asan.
set -eu
cd "$(dirname "$0")/.."
if [ "${SANITIZE:-0}" = 1 ]; then
    BUILD_DIR=${BUILD_DIR:-build-asan}
    OPTS="-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized"
else
    BUILD_DIR=${BUILD_DIR:-build}
    OPTS=""
fi
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    # shellcheck disable=SC2086
    meson setup "$BUILD_DIR" $OPTS >/dev/null
fi
ninja -C "$BUILD_DIR" >&2
echo "$BUILD_DIR"
