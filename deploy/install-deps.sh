#!/bin/sh
# Install every Debian package that weir's build, tests, benchmarks and demo use.
# Safe to run again: it does nothing when everything is already there.
# clang + libclang-rt-14-dev: the fuzz build (tests/fuzz.sh). On Debian 12 clang's
# libFuzzer (libclang_rt.fuzzer*.a) is in libclang-rt-14-dev, which clang only
# recommends, and recommends are not installed here.
set -eu
PKGS="gcc libc6-dev pkg-config meson ninja-build \
librdkafka-dev libavro-dev libhiredis-dev libyaml-dev libjansson-dev libcriterion-dev libjemalloc-dev \
redis-server kcat python3 procps jq \
python3-sklearn python3-numpy \
libnlopt-dev python3-statsmodels python3-pandas \
clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "weir: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
