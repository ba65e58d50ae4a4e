package pubkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
)

// rsaOfBits is an RSA public key whose modulus has exactly bits bits. It is
// not a usable key (the modulus is 2^(bits-1)+1), which is all a size check
// needs: generating a real 16384-bit key takes minutes.
func rsaOfBits(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.SetBit(n, 0, 1), E: 65537}
}

func pkixPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestParsePEM(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	good := map[string][]byte{
		"P-256":             pkixPEM(t, &p256.PublicKey),
		"P-384":             pkixPEM(t, &p384.PublicKey),
		"Ed25519":           pkixPEM(t, edPub),
		"RSA 2048":          pkixPEM(t, rsaOfBits(2048)),
		"RSA 8192":          pkixPEM(t, rsaOfBits(8192)),
		"RSA 4096 (PKCS#1)": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaOfBits(4096))}),
	}
	for name, b := range good {
		if _, err := ParsePEM(b); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
	ecPriv, _ := x509.MarshalECPrivateKey(p256)
	bad := []struct{ name, pem, want string }{
		{"RSA 1024", string(pkixPEM(t, rsaOfBits(1024))), "RSA key of 1024 bits is too small (minimum 2048)"},
		{"RSA 2047", string(pkixPEM(t, rsaOfBits(2047))), "RSA key of 2047 bits is too small (minimum 2048)"},
		{"RSA 8193", string(pkixPEM(t, rsaOfBits(8193))), "RSA key of 8193 bits is too large (maximum 8192)"},
		{"RSA 16384", string(pkixPEM(t, rsaOfBits(16384))), "RSA key of 16384 bits is too large (maximum 8192)"},
		{"RSA 16384 (PKCS#1)", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaOfBits(16384))})), "too large (maximum 8192)"},
		{"P-521", string(pkixPEM(t, &p521.PublicKey)), "ECDSA curve P-521 is not supported (use P-256 or P-384)"},
		{"P-224", string(pkixPEM(t, &p224.PublicKey)), "ECDSA curve P-224 is not supported"},
		{"private key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecPriv})), `PEM block is "EC PRIVATE KEY", not a public key`},
		{"two keys", string(pkixPEM(t, &p256.PublicKey)) + string(pkixPEM(t, &p384.PublicKey)), "one key per entry"},
		{"not PEM", "not a key", "no PEM block found"},
		{"garbage DER", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "parse public key"},
	}
	for _, c := range bad {
		_, err := ParsePEM([]byte(c.pem))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

// TestCheckSigningKeys: the public half of signing keys goes through the
// same check (attestation signing, token signing).
func TestCheckSigningKeys(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(small.Public()); err == nil || !strings.Contains(err.Error(), "too small (minimum 2048)") {
		t.Errorf("1024-bit signing key: %v", err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	if err := Check(edPriv.Public()); err != nil {
		t.Errorf("Ed25519 signing key: %v", err)
	}
	if err := Check(struct{}{}); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("odd key type: %v", err)
	}
	if err := Check(&ecdsa.PublicKey{}); err == nil {
		t.Error("ECDSA key without a curve accepted")
	}
	if err := Check(&rsa.PublicKey{}); err == nil {
		t.Error("RSA key without a modulus accepted")
	}
}

// FuzzParsePEM: whatever the bytes, ParsePEM returns a supported key or an
// error, never a panic.
func FuzzParsePEM(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, pub := range []crypto.PublicKey{&p256.PublicKey, edPub, rsaOfBits(2048), rsaOfBits(16384)} {
		f.Add(pkixPEM(f, pub))
	}
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaOfBits(1024))}))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParsePEM(b)
		if err != nil {
			if pub != nil {
				t.Fatalf("key %T returned with error %v", pub, err)
			}
			return
		}
		if err := Check(pub); err != nil {
			t.Fatalf("ParsePEM returned a key Check refuses: %v", err)
		}
	})
}
