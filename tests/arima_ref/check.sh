#!/bin/sh
# Regenerate the statsmodels fixtures and compare them with the committed ones.
#   tests/arima_ref/check.sh           exit 1 if they differ
#   tests/arima_ref/check.sh --update  rewrite fixtures.h
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
/usr/bin/python3 gen_fixtures.py > "$tmp"
if [ "${1:-}" = "--update" ]; then
    cp "$tmp" fixtures.h
    echo "fixtures.h updated"
elif cmp -s "$tmp" fixtures.h; then
    echo "fixtures.h is up to date"
else
    diff "$tmp" fixtures.h | head -20
    echo "fixtures.h differs from a fresh run of gen_fixtures.py" >&2
    exit 1
fi
