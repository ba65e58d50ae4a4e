package sigstoretest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Fulcio is Fulcio's v2 certificate API (POST /api/v2/signingCert, as
// sigstore-go's sign.Fulcio and cosign call it) in front of a test CA
// (root and intermediate from sigstore-go's pkg/testing/ca). Like Fulcio it
// verifies the OIDC token (here: an ES256 JWT signed by the test's OIDC
// provider key, audience "sigstore", not expired, from an issuer it knows),
// checks the proof of possession (the token's subject signed by the key to
// certify) and issues a 10-minute code-signing certificate whose SAN is the
// token's verified email (else its sub) and whose Fulcio issuer extensions
// (v1 1.3.6.1.4.1.57264.1.1 and v2 .1.8) name the token's issuer. It embeds
// no SCT (no CT log): verifiers skip SCTs (cosign --insecure-ignore-sct).
type Fulcio struct {
	URL string

	srv      *httptest.Server
	root     *x509.Certificate
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey
	oidcKey  *ecdsa.PrivateKey
	issuers  []string
	issued   atomic.Int64
	refused  atomic.Int64
}

// StartFulcio starts a Fulcio accepting tokens of the given OIDC issuers;
// it stops with the test.
func StartFulcio(t testing.TB, issuers ...string) *Fulcio {
	t.Helper()
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	inter, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	oidcKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &Fulcio{root: rootCert, inter: inter, interKey: interKey, oidcKey: oidcKey, issuers: issuers}
	f.srv = httptest.NewServer(f)
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

// Token is an OIDC identity token of issuer for email (verified), signed
// by the provider key this Fulcio trusts, valid for ten minutes.
func (f *Fulcio) Token(t testing.TB, issuer, email string) string {
	t.Helper()
	return f.token(t, f.oidcKey, issuer, email)
}

// ForgedToken is Token signed by another key: Fulcio refuses it.
func (f *Fulcio) ForgedToken(t testing.TB, issuer, email string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return f.token(t, k, issuer, email)
}

func (f *Fulcio) token(t testing.TB, k *ecdsa.PrivateKey, issuer, email string) string {
	now := time.Now()
	h := b64json(map[string]any{"alg": "ES256", "typ": "JWT"})
	c := b64json(map[string]any{"iss": issuer, "sub": email, "email": email, "email_verified": true, "aud": "sigstore",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	d := sha256.Sum256([]byte(h + "." + c))
	r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return h + "." + c + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Issued counts certificates issued; Refused, requests refused.
func (f *Fulcio) Issued() int  { return int(f.issued.Load()) }
func (f *Fulcio) Refused() int { return int(f.refused.Load()) }

// CertificateAuthority is this Fulcio's CA, for a trusted root.
func (f *Fulcio) CertificateAuthority() root.CertificateAuthority {
	return &root.FulcioCertificateAuthority{
		Root: f.root, Intermediates: []*x509.Certificate{f.inter},
		ValidityPeriodStart: f.root.NotBefore, ValidityPeriodEnd: f.root.NotAfter, URI: f.URL,
	}
}

// claims verifies a bearer token as Fulcio verifies an OIDC token and
// returns its issuer and the identity to certify.
func (f *Fulcio) claims(auth string) (issuer, subject string, err error) {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	parts := strings.Split(tok, ".")
	if !ok || len(parts) != 3 {
		return "", "", errors.New("no bearer JWT")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return "", "", errors.New("malformed token signature")
	}
	d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&f.oidcKey.PublicKey, d[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return "", "", errors.New("token signature does not verify with the OIDC provider's key")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", errors.New("malformed token claims")
	}
	var c struct {
		Iss, Sub, Email string
		Verified        bool `json:"email_verified"`
		Aud             string
		Exp             int64
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", "", errors.New("malformed token claims")
	}
	switch {
	case !slices.Contains(f.issuers, c.Iss):
		return "", "", fmt.Errorf("unknown issuer %q", c.Iss)
	case c.Aud != "sigstore":
		return "", "", errors.New("audience is not sigstore")
	case time.Now().Unix() > c.Exp:
		return "", "", errors.New("token expired")
	case c.Email != "" && c.Verified:
		return c.Iss, c.Email, nil
	case c.Sub != "":
		return c.Iss, c.Sub, nil
	}
	return "", "", errors.New("token names no subject")
}

func (f *Fulcio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v2/signingCert" {
		http.NotFound(w, r)
		return
	}
	refuse := func(code int, msg string) {
		f.refused.Add(1)
		http.Error(w, msg, code)
	}
	issuer, subject, err := f.claims(r.Header.Get("Authorization"))
	if err != nil {
		refuse(http.StatusUnauthorized, "invalid identity token: "+err.Error())
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
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(req.PublicKeyRequest.PublicKey.Content))
	if err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	pop, _ := base64.StdEncoding.DecodeString(req.PublicKeyRequest.ProofOfPossession)
	h := sha256.Sum256([]byte(subject))
	if ek, ok := pub.(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(ek, h[:], pop) {
		refuse(http.StatusBadRequest, "the proof of possession does not verify")
		return
	}
	v2, _ := asn1.MarshalWithParams(issuer, "utf8")
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(10 * time.Minute),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		EmailAddresses: []string{subject},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(issuer)},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: v2},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.inter, pub, crypto.Signer(f.interKey))
	if err != nil {
		refuse(http.StatusInternalServerError, err.Error())
		return
	}
	f.issued.Add(1)
	chain := []string{}
	for _, b := range [][]byte{der, f.inter.Raw, f.root.Raw} {
		chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b})))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"signedCertificateEmbeddedSct": map[string]any{"chain": map[string]any{"certificates": chain}}})
}

// TSAChain reads a timestamp authority's certificate chain as the real
// timestamp-server serves it (GET <url>/api/v1/timestamp/certchain: PEM,
// leaf first, root last) and returns it as a trusted root's TSA.
func TSAChain(t testing.TB, url string) root.TimestampingAuthority {
	t.Helper()
	resp, err := http.Get(url + "/api/v1/timestamp/certchain")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	certs, err := cryptoutils.LoadCertificatesFromPEM(resp.Body)
	if err != nil || len(certs) < 2 {
		t.Fatalf("TSA chain from %s: %d certificates, %v", url, len(certs), err)
	}
	return &root.SigstoreTimestampingAuthority{
		Leaf: certs[0], Intermediates: certs[1 : len(certs)-1], Root: certs[len(certs)-1],
		ValidityPeriodStart: certs[len(certs)-1].NotBefore, URI: url,
	}
}

// TrustedRoot writes Fulcio CAs and TSAs (no Rekor, no CT log) as a
// trusted_root.json.
func TrustedRoot(t testing.TB, cas []root.CertificateAuthority, tsas []root.TimestampingAuthority) []byte {
	t.Helper()
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, cas, nil, tsas, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
