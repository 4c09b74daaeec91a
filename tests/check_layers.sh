#!/bin/sh
# The layers' direction is enforced by include paths (processor/README.md);
# this refuses the one way around them: a quoted include with a relative path
# that climbs out of its folder ("../engine/task.h").
set -eu
cd "${WEIR_SRC:-$(dirname "$0")/..}"
bad=$(grep -rn --include='*.c' --include='*.h' '#include "\.\./' processor operators schemas || true)
if [ -n "$bad" ]; then
    echo "includes that walk around the layer include paths:"
    echo "$bad"
    exit 1
fi
echo "layers: no relative includes"
