package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// genKeyPEM returns a fresh ECDSA P-256 public key in PEM.
func genKeyPEM(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// writeDir writes files into a new temp dir and returns the dir. The
// special content "@key" is replaced with a fresh public key.
func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		b := []byte(content)
		if content == "@key" {
			b = genKeyPEM(t)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// trustedRootStub is the Sigstore public-good trusted root (a real file, so
// that verify.NewTrust accepts it), read once from testdata.
var trustedRootStub = func() string {
	b, err := os.ReadFile("testdata/trusted_root.json")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// fullPolicy is the documented example policy.
const fullPolicy = `trust:
  keys:
    - name: release
      path: ./cosign.pub
  identities:
    - name: ci
      issuer: https://token.actions.githubusercontent.com
      subjectRegExp: ^https://github\.com/acme/.+
  trustedRoot: ./trusted_root.json
rules:
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: apps
    match: ["upstream.local/app/**"]
    action: verify
    mode: enforce
    require:
      signatures: [release]
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: [release]
          condition: 'predicate.builder.id == "https://ci.example/builder"'
  - name: models
    match: ["upstream.local/models/**"]
    require:
      signatures: [release, ci]
      chain: llm-release
      mbom: required
      tlog: true
      timestamp: true
    content:
      mediaTypes: [modelpack, oras]
      formats: { safetensors: { maxHeaderBytes: 16MiB }, gguf: {}, pickle: deny }
      denyCodeLayers: true
      tensors: { allow: ['^base_model\.model\..*\.lora_[AB]\.weight$'] }
  - name: audit
    match: ["upstream.local/audit/**"]
    mode: audit
    require:
      signatures: [ci]
  - name: open
    match: ["upstream.local/**"]
    action: allow
`

func fullFiles() map[string]string {
	return map[string]string{
		"policy.yaml":       fullPolicy,
		"cosign.pub":        "@key",
		"trusted_root.json": trustedRootStub,
	}
}

func loadFull(t testing.TB) *Policy {
	t.Helper()
	dir := writeDir(t, fullFiles())
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}
