#!/usr/bin/env bash
# Installs the real clients and peers the end-to-end tests use, into .tools/bin
# (Go tools) and the system (Debian packages). Idempotent: a tool already
# present at the pinned version is not rebuilt.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/.tools/bin"
mkdir -p "$bin"
export GOFLAGS=-mod=mod

goinstall() { # name module@version
  local name=$1 mod=$2 stamp="$bin/.$1.version"
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$mod" ]; then return 0; fi
  local tmp; tmp=$(mktemp -d)
  echo "installing $name ($mod)" >&2
  GOBIN="$tmp" go install "$mod"
  mv "$tmp"/* "$bin/$name"
  echo "$mod" >"$stamp"
  rm -rf "$tmp"
}

goinstall crane    github.com/google/go-containerregistry/cmd/crane@v0.22.1
goinstall oras     oras.land/oras/cmd/oras@v1.3.6
goinstall registry github.com/distribution/distribution/v3/cmd/registry@v3.1.2
goinstall cosign2  github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
goinstall cosign3  github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3
goinstall minio    github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c   # a real S3 server for the shared-store tests
goinstall regctl   github.com/regclient/regclient/cmd/regctl@v0.11.7   # another real client (regclient) for the end-to-end suite
goinstall timestamp-server github.com/sigstore/timestamp-authority/v2/cmd/timestamp-server@v2.1.3   # Sigstore's real RFC 3161 TSA (keyless promote tests, test/harness/tsa.go)
goinstall fulcio   github.com/sigstore/fulcio@v1.8.5   # Sigstore's real Fulcio, in-memory CA (keyless promote tests, test/harness/fulcio.go)
# containerd 2.x and its ctr (Debian's containerd is 1.6, without image verifiers): the VSA
# test runs pullgate as containerd's bindir image verifier (test/vsae2e)
goinstall containerd2 github.com/containerd/containerd/v2/cmd/containerd@v2.4.2
goinstall ctr2        github.com/containerd/containerd/v2/cmd/ctr@v2.4.2
# A program whose module has replace directives cannot be `go install`ed at a
# version: build it inside a throwaway module that requires it and repeats them.
gobuildin() { # name module version package [replace ...]
  local name=$1 mod=$2 ver=$3 pkg=$4 stamp="$bin/.$1.version"; shift 4
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg@$ver" ]; then return 0; fi
  local tmp; tmp=$(mktemp -d)
  echo "installing $name ($pkg@$ver)" >&2
  { echo "module toolbuild"; echo; echo "go $(go env GOVERSION | sed 's/^go//')"; echo
    echo "require $mod $ver"; for r in "$@"; do echo "replace $r"; done; } >"$tmp/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$tmp/tools.go"
  (cd "$tmp" && go mod tidy && go build -o "$bin/$name" "$pkg")
  echo "$pkg@$ver" >"$stamp"
  rm -rf "$tmp"
}
# Kyverno's CLI (its real policy engine, image verification included): the VSA
# test applies docs/vsa.md's Kyverno policies with it (test/vsae2e)
gobuildin kyverno github.com/kyverno/kyverno v1.19.0 github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno \
  'k8s.io/pod-security-admission => github.com/kyverno/pod-security-admission v0.0.0-20251031094455-46f20778634f'
# The OCI distribution-spec conformance suite (a main package; `go install`
# builds the same program as the README's `go build`), run read-only against
# pullgate by test/conformance.
goinstall oci-conformance github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111

need_apt=()
command -v skopeo >/dev/null || need_apt+=(skopeo)
command -v containerd >/dev/null || need_apt+=(containerd)
command -v ctr >/dev/null || need_apt+=(containerd)
command -v strace >/dev/null || need_apt+=(strace)   # the crash test kills pullgate at its commit rename (strace -e inject)
command -v chromium >/dev/null || need_apt+=(chromium)   # the admin page test drives a real headless Chromium
command -v podman >/dev/null || need_apt+=(podman)   # the node tests pull through pullgate with real podman (registries.conf)
command -v nft >/dev/null || need_apt+=(nftables)   # the node firewall example is checked (nft -c) and loaded into a netns
command -v ip >/dev/null || need_apt+=(iproute2)
command -v dockerd >/dev/null || need_apt+=(docker.io)   # the Docker node tests run a private dockerd (its own root and socket)
/usr/bin/python3 -c 'import h5py' 2>/dev/null || need_apt+=(python3-h5py)   # libhdf5 through h5py writes the HDF5 and Keras samples the model tests read
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: cannot apt-get install ${need_apt[*]} (not root)" >&2
  fi
fi
