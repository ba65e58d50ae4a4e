#!/usr/bin/env bash
# make bench: the pull benchmark (1 GiB, side by side with a direct pull and
# distribution's proxy), the restart benchmark (first pull and RSS after a
# start on 10k, 100k and 1M stored blobs) and the Go benchmarks of
# verification, policy, content inspection and the store index. Results go to stdout and test/out/bench/.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=test/out/bench
mkdir -p "$out"
size=${BENCH_SIZE:-1GiB}
reps=${BENCH_REPS:-3}

echo "== pull throughput ($size, $reps repetitions)"
go run ./test/bench/pullbench --size "$size" --reps "$reps" --clients 50 \
  --pullgate bin/pullgate --registry .tools/bin/registry -o "$out/pull.md"

# On a VM whose hypervisor reclaims freed guest pages, run the same again with
# that cost taken off every variant (see docs/benchmarks.md).
param=/sys/module/page_reporting/parameters/min_free_ms
if [ -w "$param" ]; then
  echo
  echo "== pull throughput, guest memory kept backed (--keep-guest-memory)"
  go run ./test/bench/pullbench --size "$size" --reps "$reps" --clients 50 --keep-guest-memory \
    --pullgate bin/pullgate --registry .tools/bin/registry -o "$out/pull-keep-guest-memory.md"
fi

echo
echo "== restart at scale: first pull and RSS after a start on a store of many small blobs"
# The blobs are generated straight into the store layout (1,000,000 take a
# few minutes and about 8 GiB of disk: 4 KiB blocks for a directory and a
# file each). RESTART_OLD_REV is built too and measured side by side on the
# same stores (empty: only this tree's binary).
restart_blobs=${RESTART_BLOBS:-10000,100000,1000000}
old_rev=${RESTART_OLD_REV-dc1a271}
old_args=()
if [ -n "$old_rev" ]; then
  old_src=$(mktemp -d)
  git archive "$old_rev" | tar -x -C "$old_src"
  (cd "$old_src" && CGO_ENABLED=0 go build -trimpath -o pullgate ./cmd/pullgate)
  old_args=(--old "$old_src/pullgate" --old-label "$old_rev (before)")
fi
go run ./test/bench/restartbench --blobs "$restart_blobs" --reps "${RESTART_REPS:-3}" \
  --pullgate bin/pullgate --registry .tools/bin/registry "${old_args[@]}" -o "$out/restart.md"
if [ -n "$old_rev" ]; then rm -rf "$old_src"; fi

echo
echo "== load: ${LOAD_CLIENTS:=500} clients over 50 images and models, client auth off then on (${LOAD_DURATION:=30s} each)"
go test -count=1 -run '^TestLoad$' -timeout 30m ./test/load/ -args \
  -load.clients="$LOAD_CLIENTS" -load.duration="$LOAD_DURATION" -load.out="$PWD/$out/load.md"
cat "$out/load.md"

echo
echo "== Go benchmarks (verification, policy, content inspection, release chain)"
go test -run='^$' -bench=. -benchmem -count=1 -timeout 30m \
  ./policy/... ./verify/... ./cache/store/... ./test/bench/... 2>&1 | tee "$out/go-bench.txt" | grep -E '^(Benchmark|ok|FAIL|PASS)'
echo
echo "results: $out/pull.md, $out/restart.md, $out/load.md, $out/go-bench.txt (summarised in docs/benchmarks.md)"
