package policy

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrustKeySize: a trust key file with an RSA key outside 2048..8192 bits
// is refused at the key's path, naming the limit (one public-key check with
// package verify; policy once accepted RSA keys of any size above 2048 and
// left the refusal to the verifier, reported at the trust section).
func TestTrustKeySize(t *testing.T) {
	const policy = `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - {name: a, match: ["x/**"], require: {signatures: [release]}}
`
	for bits, want := range map[int]string{
		1024:  `3:29: trust.keys[0]: ./cosign.pub: RSA key of 1024 bits is too small (minimum 2048)`,
		16384: `3:29: trust.keys[0]: ./cosign.pub: RSA key of 16384 bits is too large (maximum 8192)`,
	} {
		// A modulus of exactly bits bits (not a usable key; a real
		// 16384-bit key takes minutes to generate).
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n.SetBit(n, 0, 1), E: 65537})
		if err != nil {
			t.Fatal(err)
		}
		dir := writeDir(t, map[string]string{"policy.yaml": policy,
			"cosign.pub": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
		path := filepath.Join(dir, "policy.yaml")
		got := diagLines(Lint(path))
		if len(got) != 1 || got[0] != want {
			t.Errorf("RSA %d: diagnostics\n%s\nwant\n%s", bits, strings.Join(got, "\n"), want)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want[len("3:29: "):]) {
			t.Errorf("RSA %d: Load: %v", bits, err)
		}
	}
}
