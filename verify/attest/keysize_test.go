package attest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/attest"
)

// hugeRSASigner is a signer whose public key has a 16384-bit modulus (not a
// usable key: generating a real one takes minutes; the key check reads only
// the public half).
type hugeRSASigner struct{ crypto.Signer }

func (h hugeRSASigner) Public() crypto.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), 16383)
	return &rsa.PublicKey{N: n.SetBit(n, 0, 1), E: 65537}
}

// TestSigningKeyStrength: attestation signing keys pass the key check that
// verification applies (verify/pubkey), so pullgate never produces a bundle
// that no pullgate policy could verify. Before, RSA above 8192 bits and
// P-521 were accepted for signing (and refused when verifying).
func TestSigningKeyStrength(t *testing.T) {
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, c := range map[string]struct {
		s    crypto.Signer
		want string
	}{
		"RSA 16384": {hugeRSASigner{p256}, "signing key: RSA key of 16384 bits is too large (maximum 8192)"},
		"P-521":     {p521, "signing key: ECDSA curve P-521 is not supported (use P-256 or P-384)"},
	} {
		if _, err := attest.NewKeypair(c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", name, err, c.want)
		}
	}
	if _, err := attest.NewKeypair(p256); err != nil {
		t.Errorf("P-256 refused: %v", err)
	}
}
