package verify_test

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify"
)

// TestTrustKeySize: trust material refuses RSA keys outside 2048..8192 bits
// and names the key and the limit (verify/pubkey, shared with policy).
func TestTrustKeySize(t *testing.T) {
	for bits, want := range map[int]string{
		1024:  `trust key "release": RSA key of 1024 bits is too small (minimum 2048)`,
		16384: `trust key "release": RSA key of 16384 bits is too large (maximum 8192)`,
	} {
		// A modulus of exactly bits bits (not a usable key; a real
		// 16384-bit key takes minutes to generate).
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		der, err := x509.MarshalPKIXPublicKey(&rsa.PublicKey{N: n.SetBit(n, 0, 1), E: 65537})
		if err != nil {
			t.Fatal(err)
		}
		_, err = verify.NewTrust(verify.TrustSpec{Keys: []verify.KeySpec{{Name: "release", PEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RSA %d: err %v, want %q", bits, err, want)
		}
	}
}
