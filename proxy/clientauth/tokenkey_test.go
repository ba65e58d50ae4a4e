package clientauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/proxy/config"
)

// hugeRSASigner is a signer whose public key has a 16384-bit modulus (not a
// usable key: generating a real one takes minutes; the key check reads only
// the public half).
type hugeRSASigner struct{ *rsa.PrivateKey }

func (h hugeRSASigner) Public() crypto.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), 16383)
	return &rsa.PublicKey{N: n.SetBit(n, 0, 1), E: 65537}
}

// TestTokenKeyStrength: the token signing key passes the one key check
// (verify/pubkey): RSA below 2048 or above 8192 bits and curves other than
// P-256/P-384 are refused with an error naming the key file and the limit.
// Before, any RSA key of 2048 bits or more and P-521 were accepted.
func TestTokenKeyStrength(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, k any) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	resolve := func(s string) string { return s }
	for path, want := range map[string]string{
		write("rsa1024.pem", rsa1024): "rsa1024.pem: RSA key of 1024 bits is too small (minimum 2048)",
		write("p521.pem", p521):       "p521.pem: ECDSA curve P-521 is not supported (use P-256 or P-384)",
	} {
		_, err := newTokenService(&config.AuthToken{Key: path}, resolve, log)
		if err == nil || !strings.HasPrefix(err.Error(), "auth.token.key ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", filepath.Base(path), err, want)
		}
	}
	if _, err := newTokenService(&config.AuthToken{Key: write("p384.pem", p384)}, resolve, log); err != nil {
		t.Errorf("P-384 token key refused: %v", err)
	}
	if _, err := algorithmFor(hugeRSASigner{rsa1024}); err == nil || !strings.Contains(err.Error(), "RSA key of 16384 bits is too large (maximum 8192)") {
		t.Errorf("16384-bit RSA token key: %v", err)
	}
}
