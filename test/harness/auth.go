package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/auth/token"
	"golang.org/x/crypto/bcrypt"
)

// Credentials are a user name and password.
type Credentials struct {
	Username string
	Password string
}

// HtpasswdAuth writes an htpasswd file (bcrypt) with the given users into a
// temp dir and returns distribution's auth section for it.
func HtpasswdAuth(t testing.TB, users ...Credentials) configuration.Auth {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u.Username, h)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return configuration.Auth{"htpasswd": configuration.Parameters{"realm": "pullgate-test", "path": p}}
}

// TokenServer is a Docker registry token server (the bearer-token flow of the
// distribution auth spec): GET /token with basic credentials, or POST /token
// with an OAuth2 password or refresh_token grant, returns a JWT signed by an
// ECDSA key whose self-signed certificate is the registry's rootcertbundle.
// It honours service and scope (granting only the actions a user may do) and
// rejects bad credentials with 401.
type TokenServer struct {
	URL      string // http://127.0.0.1:port
	Realm    string // URL + "/token"
	Service  string
	Issuer   string
	CertFile string // PEM of the signing certificate (the registry's root bundle)

	key *ecdsa.PrivateKey
	kid string

	mu       sync.Mutex
	users    map[string]tokenUser
	refresh  map[string]string // refresh token -> user
	issued   int
	rejected int
	scopes   []string // every scope requested, in order
}

type tokenUser struct {
	password string
	actions  []string
}

// StartTokenServer starts a standalone token server (its own loopback port)
// for one registry service.
func StartTokenServer(t testing.TB, service string) *TokenServer {
	t.Helper()
	ts := NewTokenServer(t, service, "")
	srv := httptest.NewServer(ts)
	t.Cleanup(srv.Close)
	ts.URL = srv.URL
	ts.Realm = ts.URL + "/token"
	return ts
}

// NewTokenServer makes a token server without serving it: mount it (it
// answers /token) in front of a registry whose URL is realm minus "/token".
// Serving the realm on the registry's own host:port is what clients such as
// go-containerregistry accept for loopback registries.
func NewTokenServer(t testing.TB, service, realm string) *TokenServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pullgate test token signer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "token-root.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &TokenServer{
		Realm:    realm,
		URL:      strings.TrimSuffix(realm, "/token"),
		Service:  service,
		Issuer:   "pullgate-test-issuer",
		CertFile: certFile,
		key:      key,
		kid:      token.GetJWKThumbprint(&key.PublicKey),
		users:    map[string]tokenUser{},
		refresh:  map[string]string{},
	}
}

// Mount serves /token with the token server and everything else with next.
func (ts *TokenServer) Mount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			ts.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AddUser lets a user authenticate; actions are what it may do on any
// repository ("pull", "push", "delete", "*").
func (ts *TokenServer) AddUser(c Credentials, actions ...string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.users[c.Username] = tokenUser{password: c.Password, actions: actions}
}

// Auth is distribution's auth section trusting this server.
func (ts *TokenServer) Auth() configuration.Auth {
	return configuration.Auth{"token": configuration.Parameters{
		"realm":          ts.Realm,
		"service":        ts.Service,
		"issuer":         ts.Issuer,
		"rootcertbundle": ts.CertFile,
	}}
}

// Issued is the number of tokens handed out; Rejected the number of refused
// token requests.
func (ts *TokenServer) Issued() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.issued
}

// Rejected is the number of token requests refused.
func (ts *TokenServer) Rejected() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.rejected
}

// Scopes returns every scope requested so far.
func (ts *TokenServer) Scopes() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.scopes)
}

// ResetScopes forgets the scopes requested so far.
func (ts *TokenServer) ResetScopes() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.scopes = nil
}

// ServeHTTP answers token requests at /token.
func (ts *TokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" {
		http.NotFound(w, r)
		return
	}
	var (
		user, pass, service string
		scopes              []string
		refreshUser         string
		haveCreds           bool
	)
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		service = q.Get("service")
		for _, s := range q["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
		user, pass, haveCreds = r.BasicAuth()
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			ts.deny(w, http.StatusBadRequest, "bad form")
			return
		}
		service = r.PostForm.Get("service")
		scopes = strings.Fields(r.PostForm.Get("scope"))
		switch r.PostForm.Get("grant_type") {
		case "password":
			user, pass, haveCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		case "refresh_token":
			ts.mu.Lock()
			refreshUser = ts.refresh[r.PostForm.Get("refresh_token")]
			ts.mu.Unlock()
			if refreshUser == "" {
				ts.deny(w, http.StatusUnauthorized, "unknown refresh token")
				return
			}
		default:
			ts.deny(w, http.StatusBadRequest, "unsupported grant_type")
			return
		}
	default:
		ts.deny(w, http.StatusMethodNotAllowed, "method")
		return
	}
	if service != ts.Service {
		ts.deny(w, http.StatusBadRequest, fmt.Sprintf("unknown service %q", service))
		return
	}
	ts.mu.Lock()
	ts.scopes = append(ts.scopes, scopes...)
	name := refreshUser
	if name == "" {
		u, ok := ts.users[user]
		if !haveCreds || !ok || u.password != pass {
			ts.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="pullgate-test-token"`)
			ts.deny(w, http.StatusUnauthorized, "invalid username or password")
			return
		}
		name = user
	}
	allowed := ts.users[name].actions
	ts.mu.Unlock()

	var access []*token.ResourceActions
	for _, s := range scopes {
		// type:name:actions; the name may itself contain ':' (host:port).
		first := strings.Index(s, ":")
		last := strings.LastIndex(s, ":")
		if first < 0 || first == last {
			continue
		}
		ra := &token.ResourceActions{Type: s[:first], Name: s[first+1 : last]}
		for _, a := range strings.Split(s[last+1:], ",") {
			if slices.Contains(allowed, a) || slices.Contains(allowed, "*") {
				ra.Actions = append(ra.Actions, a)
			}
		}
		if len(ra.Actions) == 0 {
			ra.Actions = []string{}
		}
		access = append(access, ra)
	}
	now := time.Now()
	claims := token.ClaimSet{
		Issuer:     ts.Issuer,
		Subject:    name,
		Audience:   token.AudienceList{ts.Service},
		Expiration: now.Add(5 * time.Minute).Unix(),
		NotBefore:  now.Add(-time.Second).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      randomID(),
		Access:     access,
	}
	jwt, err := ts.sign(claims)
	if err != nil {
		ts.deny(w, http.StatusInternalServerError, err.Error())
		return
	}
	rt := randomID()
	ts.mu.Lock()
	ts.issued++
	ts.refresh[rt] = name
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":         jwt,
		"access_token":  jwt,
		"expires_in":    300,
		"issued_at":     now.UTC().Format(time.RFC3339),
		"refresh_token": rt,
	})
}

func (ts *TokenServer) deny(w http.ResponseWriter, code int, msg string) {
	ts.mu.Lock()
	ts.rejected++
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// sign makes a compact ES256 JWS whose kid is the key's JWK thumbprint, the
// form distribution trusts for keys of its rootcertbundle.
func (ts *TokenServer) sign(claims token.ClaimSet) (string, error) {
	hdr, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "ES256", "kid": ts.kid})
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + enc.EncodeToString(sig), nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TokenURL is a helper for tests that fetch a token by hand.
func (ts *TokenServer) TokenURL(scope string) string {
	return ts.Realm + "?service=" + url.QueryEscape(ts.Service) + "&scope=" + url.QueryEscape(scope)
}
