package sigstoretest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// OIDC is an OpenID Connect provider for tests: discovery document and
// JWKS (one ES256 key) at its URL, which is also the issuer ("iss") of the
// identity tokens it mints, as a real Fulcio (harness.StartFulcio) verifies
// them: discovery, then the token's signature by a key of the JWKS.
type OIDC struct {
	URL string
	key *ecdsa.PrivateKey
}

// StartOIDC starts an OIDC provider; it stops with the test.
func StartOIDC(t testing.TB) *OIDC {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o := &OIDC{key: k}
	srv := httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

func (o *OIDC) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": o.URL, "jwks_uri": o.URL + "/jwks", "authorization_endpoint": o.URL + "/auth", "token_endpoint": o.URL + "/token",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	case "/jwks":
		b := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.FillBytes(make([]byte, 32))) }
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]any{{
			"kty": "EC", "crv": "P-256", "x": b(o.key.X), "y": b(o.key.Y), "kid": "test", "alg": "ES256", "use": "sig",
		}}})
	default:
		http.NotFound(w, r)
	}
}

// Token is an identity token for email (verified), audience sigstore,
// valid for ten minutes, signed by the provider's key.
func (o *OIDC) Token(t testing.TB, email string) string {
	t.Helper()
	return mint(t, o.key, o.URL, email, time.Now().Add(10*time.Minute))
}

// ExpiredToken is Token that expired a minute ago: Fulcio refuses it.
func (o *OIDC) ExpiredToken(t testing.TB, email string) string {
	t.Helper()
	return mint(t, o.key, o.URL, email, time.Now().Add(-time.Minute))
}

// ForgedToken is Token signed by another key: a Fulcio refuses it.
func (o *OIDC) ForgedToken(t testing.TB, email string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return mint(t, k, o.URL, email, time.Now().Add(10*time.Minute))
}

func mint(t testing.TB, k *ecdsa.PrivateKey, issuer, email string, exp time.Time) string {
	now := time.Now()
	h := b64json(map[string]any{"alg": "ES256", "typ": "JWT", "kid": "test"})
	c := b64json(map[string]any{"iss": issuer, "sub": email, "email": email, "email_verified": true, "aud": "sigstore",
		"iat": min(now.Unix(), exp.Add(-time.Minute).Unix()), "exp": exp.Unix()})
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

// FulcioCA reads the CA chain a real Fulcio serves (GET
// <url>/api/v1/rootCert: PEM, issuing certificate first, root last) and
// returns it as a trusted root's certificate authority.
func FulcioCA(t testing.TB, url string) root.CertificateAuthority {
	t.Helper()
	certs := pemChain(t, url+"/api/v1/rootCert")
	r := certs[len(certs)-1]
	return &root.FulcioCertificateAuthority{
		Root: r, Intermediates: certs[:len(certs)-1], ValidityPeriodStart: r.NotBefore, ValidityPeriodEnd: r.NotAfter, URI: url,
	}
}

func pemChain(t testing.TB, url string) []*x509.Certificate {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	certs, err := cryptoutils.LoadCertificatesFromPEM(resp.Body)
	if err != nil || len(certs) == 0 || resp.StatusCode != http.StatusOK {
		t.Fatalf("certificate chain from %s: %s, %d certificates, %v", url, resp.Status, len(certs), err)
	}
	return certs
}

// TSAChain reads a timestamp authority's certificate chain as the real
// timestamp-server serves it (GET <url>/api/v1/timestamp/certchain: PEM,
// leaf first, root last) and returns it as a trusted root's TSA.
func TSAChain(t testing.TB, url string) root.TimestampingAuthority {
	t.Helper()
	certs := pemChain(t, url+"/api/v1/timestamp/certchain")
	if len(certs) < 2 {
		t.Fatalf("TSA chain from %s: %d certificates, want a leaf and a root", url, len(certs))
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
	return trustedRootJSON(t, cas, nil, tsas, nil)
}
