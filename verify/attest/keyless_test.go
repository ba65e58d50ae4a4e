package attest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/pullgate/pullgate/verify/attest"
)

const (
	testIssuer   = "https://issuer.example"
	testIdentity = "ci@example.com"
)

// fakeFulcio is a Fulcio v2 signingCert endpoint backed by a test CA. It
// checks the bearer token and the proof of possession (the token subject
// signed by the requested key) like Fulcio, and issues a code-signing
// certificate with the Fulcio issuer extension.
type fakeFulcio struct {
	t      *testing.T
	token  string
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	issued int
}

func newFakeFulcio(t *testing.T, token string) *fakeFulcio {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test fulcio root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &fakeFulcio{t: t, token: token, caKey: k, caCert: c}
}

func (f *fakeFulcio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v2/signingCert" || r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var req struct {
		PublicKeyRequest struct {
			PublicKey struct {
				Content string `json:"content"`
			} `json:"publicKey"`
			ProofOfPossession string `json:"proofOfPossession"`
		} `json:"publicKeyRequest"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(req.PublicKeyRequest.PublicKey.Content))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pop, _ := base64.StdEncoding.DecodeString(req.PublicKeyRequest.ProofOfPossession)
	h := sha256.Sum256([]byte(testIdentity))
	if ek, ok := pub.(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(ek, h[:], pop) {
		http.Error(w, "bad proof of possession", http.StatusBadRequest)
		return
	}
	issuerExt, _ := asn1.MarshalWithParams(testIssuer, "utf8")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(10 * time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		EmailAddresses:  []string{testIdentity},
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: issuerExt}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, pub, f.caKey)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f.issued++
	leaf := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	rootPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.caCert.Raw}))
	json.NewEncoder(w).Encode(map[string]any{"signedCertificateEmbeddedSct": map[string]any{"chain": map[string]any{"certificates": []string{leaf, rootPEM}}}})
}

func (f *fakeFulcio) trustedRoot(t *testing.T, uri string) *root.TrustedRoot {
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{&root.FulcioCertificateAuthority{
		Root: f.caCert, ValidityPeriodStart: time.Now().Add(-time.Hour), ValidityPeriodEnd: time.Now().Add(time.Hour), URI: uri,
	}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func unsignedJWT(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`))
	c, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(c) + ".c2ln"
}

// TestSignKeyless signs with an OIDC token against a Fulcio-compatible test
// CA (no Rekor, no TSA) and verifies the bundle with sigstore-go against a
// trusted root holding that CA and the expected identity.
func TestSignKeyless(t *testing.T) {
	r := writeRelease(t)
	token := unsignedJWT(map[string]any{"iss": testIssuer, "sub": testIdentity, "aud": "sigstore"})
	f := newFakeFulcio(t, token)
	srv := httptest.NewServer(f)
	defer srv.Close()
	tr := f.trustedRoot(t, srv.URL)

	b, err := attest.Sign(context.Background(), r.Statements[attest.KindRoute], attest.SignOptions{
		IDToken: token, FulcioURL: srv.URL, TrustedRoot: tr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.issued != 1 || !strings.Contains(string(b), `"certificate"`) {
		t.Fatalf("issued %d certificates; bundle %s", f.issued, b)
	}
	var bun bundle.Bundle
	if err := bun.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	v, err := sgverify.NewVerifier(tr, sgverify.WithCurrentTime())
	if err != nil {
		t.Fatal(err)
	}
	art := sgverify.WithArtifactDigest("sha256", hexBytes(t, artifact))
	id, _ := sgverify.NewShortCertificateIdentity(testIssuer, "", testIdentity, "")
	if _, err := v.Verify(&bun, sgverify.NewPolicy(art, sgverify.WithCertificateIdentity(id))); err != nil {
		t.Fatalf("keyless bundle does not verify: %v", err)
	}
	other, _ := sgverify.NewShortCertificateIdentity(testIssuer, "", "attacker@example.com", "")
	if _, err := v.Verify(&bun, sgverify.NewPolicy(art, sgverify.WithCertificateIdentity(other))); err == nil {
		t.Fatal("verified for another identity")
	}

	// A token the CA does not accept fails signing.
	if _, err := attest.Sign(context.Background(), r.Statements[attest.KindRoute], attest.SignOptions{
		IDToken: unsignedJWT(map[string]any{"sub": "x"}), FulcioURL: srv.URL,
	}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("unauthorized token: %v", err)
	}
}

func hexBytes(t *testing.T, d string) []byte {
	dd, err := digest.Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(dd.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
