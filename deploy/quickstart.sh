#!/bin/sh
# The README's first command: install what is needed, build, and run the demo
# (a local broker, a sensor-reading generator and the filter/map demo pipeline,
# printing results as they arrive). Arguments go to `weir demo`
# (default: --duration 20s; Ctrl-C stops it earlier).
set -eu
cd "$(dirname "$0")/.."
sh deploy/install-deps.sh
BUILD_DIR=$(sh deploy/build.sh)
if [ $# -eq 0 ]; then set -- --duration 20s; fi
exec "$BUILD_DIR/weir" demo "$@"
