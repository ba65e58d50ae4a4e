#!/usr/bin/env bash
# Whole-process time of `pullgate verify` against `cosign verify` +
# `cosign verify-attestation` on the same image, offline, in one run.
#
# A local distribution registry (.tools/bin/registry) holds one image that
# cosign signs and attests (key-based, no transparency log). pullgate checks
# the same things the two cosign commands check: the signature by the key and
# the SLSA provenance attestation by the key, plus a CEL condition on it.
#
# Usage: test/bench/verify/cli_vs_cosign.sh [runs]     (default 30)
# Env:   COSIGN=cosign2|cosign3 (default cosign2), KEEP=1 keeps the work dir.
# Uses hyperfine when installed, else a bash loop with date +%s%N.
set -euo pipefail

RUNS=${1:-30}
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
TOOLS=$ROOT/.tools/bin
COSIGN_NAME=${COSIGN:-cosign2}
COSIGN_BIN=$TOOLS/$COSIGN_NAME
for t in registry crane "$COSIGN_NAME"; do
	[ -x "$TOOLS/$t" ] || { echo "missing $TOOLS/$t (run test/tools/install.sh)" >&2; exit 2; }
done

WORK=$(mktemp -d)
REG_PID=""
cleanup() {
	if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
	if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "building pullgate..."
(cd "$ROOT" && go build -o "$WORK/pullgate" ./cmd/pullgate)

# Offline: no proxy for localhost, a dead proxy for everything else.
export HOME=$WORK COSIGN_PASSWORD=bench TUF_ROOT=$WORK/tuf SIGSTORE_NO_CACHE=1
export HTTPS_PROXY=http://127.0.0.1:1 https_proxy=http://127.0.0.1:1 NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost


PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
HOST=127.0.0.1:$PORT
cat >"$WORK/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {inmemory: {}}
http: {addr: $HOST, secret: bench}
EOF
"$TOOLS/registry" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fsS "http://$HOST/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

# One image: a random layer on an empty base.
mkdir -p "$WORK/layer"
head -c 65536 /dev/urandom >"$WORK/layer/payload.bin"
tar -C "$WORK/layer" -cf "$WORK/layer.tar" .
"$TOOLS/crane" append --insecure -f "$WORK/layer.tar" -t "$HOST/app/web:v1" >/dev/null
DIGEST=$("$TOOLS/crane" digest --insecure "$HOST/app/web:v1")
REF=$HOST/app/web@$DIGEST

cd "$WORK"
"$COSIGN_BIN" generate-key-pair --output-key-prefix release >/dev/null 2>&1
OFFLINE=(--tlog-upload=false --allow-insecure-registry -y)
[ "$COSIGN_NAME" = cosign3 ] && OFFLINE+=(--use-signing-config=false)
echo '{"builder":{"id":"https://ci.example/builder"},"buildType":"https://ci.example/type","invocation":{},"materials":[]}' >predicate.json
"$COSIGN_BIN" sign --key release.key "${OFFLINE[@]}" "$REF" >/dev/null 2>&1
"$COSIGN_BIN" attest --key release.key --type slsaprovenance --predicate predicate.json "${OFFLINE[@]}" "$REF" >/dev/null 2>&1

cat >policy.yaml <<'EOF'
trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: apps
    match: ["upstream.local/app/**"]
    require:
      signatures: [release]
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: [release]
          condition: 'predicate.builder.id == "https://ci.example/builder"'
EOF
cat >pullgate.yaml <<EOF
upstreams: [{name: upstream.local, url: "http://$HOST"}]
policy: ./policy.yaml
storage: {path: ./data}
EOF

PG="$WORK/pullgate verify upstream.local/app/web@$DIGEST --policy $WORK/policy.yaml --config $WORK/pullgate.yaml"
CV="$COSIGN_BIN verify --key $WORK/release.pub --allow-insecure-registry --insecure-ignore-tlog=true $REF"
CA="$COSIGN_BIN verify-attestation --key $WORK/release.pub --type slsaprovenance --allow-insecure-registry --insecure-ignore-tlog=true $REF"

# Both sides must succeed before they are timed.
$PG >"$WORK/pg.out" 2>&1 || { echo "pullgate verify failed:"; cat "$WORK/pg.out"; exit 1; }
$CV >"$WORK/cv.out" 2>&1 || { echo "cosign verify failed:"; cat "$WORK/cv.out"; exit 1; }
$CA >"$WORK/ca.out" 2>&1 || { echo "cosign verify-attestation failed:"; cat "$WORK/ca.out"; exit 1; }
echo "image $REF (signed and attested with $COSIGN_NAME $("$COSIGN_BIN" version 2>/dev/null | awk '/GitVersion/{print $2}'))"
head -3 "$WORK/pg.out" | sed 's/^/  pullgate: /'

if command -v hyperfine >/dev/null 2>&1; then
	hyperfine --warmup 3 --runs "$RUNS" -N --export-json "$WORK/hf.json" \
		-n "pullgate verify" "$PG" \
		-n "cosign verify + verify-attestation" "bash -c '$CV >/dev/null 2>&1 && $CA >/dev/null 2>&1'"
	python3 - "$WORK/hf.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
pg, co = r[0], r[1]
print(f"pullgate verify:                    mean {pg['mean']*1000:8.1f} ms  median {pg['median']*1000:8.1f} ms")
print(f"cosign verify + verify-attestation: mean {co['mean']*1000:8.1f} ms  median {co['median']*1000:8.1f} ms")
print(f"ratio cosign/pullgate (mean): {co['mean']/pg['mean']:.2f}x   (median): {co['median']/pg['median']:.2f}x")
EOF
else
	time_ms() { local s e; s=$(date +%s%N); eval "$1" >/dev/null 2>&1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
	for _ in 1 2 3; do time_ms "$PG" >/dev/null; time_ms "$CV && $CA" >/dev/null; done
	pg_total=0; co_total=0
	for _ in $(seq "$RUNS"); do
		pg_total=$((pg_total + $(time_ms "$PG")))
		co_total=$((co_total + $(time_ms "$CV && $CA")))
	done
	echo "pullgate verify:                    mean $((pg_total / RUNS)) ms over $RUNS runs"
	echo "cosign verify + verify-attestation: mean $((co_total / RUNS)) ms over $RUNS runs"
	python3 -c "print(f'ratio cosign/pullgate (mean): {$co_total/$pg_total:.2f}x')"
fi
