#!/usr/bin/env bash
# Runs every Go fuzz target in the module for $FUZZTIME each (seed corpus
# first, then new inputs). Fails on the first crasher.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
pkgs=$(go list ./...)
n=0
for pkg in $pkgs; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  for t in $targets; do
    echo "fuzz $pkg $t ($fuzztime)"
    go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/pullgate-fuzz.log 2>&1 || { cat /tmp/pullgate-fuzz.log; echo "fuzz target $t in $pkg failed"; exit 1; }
    n=$((n+1))
  done
done
echo "fuzz: $n targets ran for $fuzztime each"
