package clientauth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/tlsreload"
)

// Users of the test environment. Passwords are distinctive so a leak into
// logs or bodies is found by a plain substring search.
var passwords = map[string]string{
	"alice": "alice-Secret-pw-7Q1",
	"bob":   "bob-Secret-pw-8R2",
	"carol": "carol-Secret-pw-9S3",
	"dave":  "dave-Secret-pw-0T4",
}

const wrongPassword = "Wrong-Secret-pw-5U6"

// The images every environment serves; "other" has no access rule.
var repos = []string{"upstream.local/public/img", "upstream.local/app/img", "upstream.local/app/img2", "upstream.local/secret/img", "upstream.local/other/img"}

const authYAML = `
realm: pullgate
anonymous: ["upstream.local/public/**"]
htpasswd: htpasswd
token:
  issuer: pullgate
  service: pullgate
  key: token-key.pem
  ttl: 5m
groups:
  platform: [bob, "cn:node-*"]
access:
  - repositories: ["upstream.local/app/**"]
    allow: [alice, "group:platform"]
  - repositories: ["upstream.local/secret/**"]
    allow: [carol, "ou:secret-readers"]
rateLimit: { failuresPerMinute: 10, burst: 5 }
`

type envOptions struct {
	noToken bool
	mtls    bool // TLS listener with client CA (clients-ca.pem)
	now     func() time.Time
	yaml    string // replaces authYAML
}

// env is a registry (go-containerregistry's in-memory one, holding the
// images) behind the middleware and the token endpoint, with everything
// the client sees and the logger writes captured.
type env struct {
	t        *testing.T
	dir      string
	auth     *clientauth.Authenticator
	cfg      *config.Auth
	url      string // http(s)://host:port
	host     string // host:port clients use in references
	tokenKey *ecdsa.PrivateKey
	pki      *pkiSet
	digests  map[string]v1.Hash

	logs      syncBuffer
	serverLog syncBuffer // http.Server's own log (TLS handshake errors)
	mu        sync.Mutex
	bodies    bytes.Buffer        // bodies of error responses (status >= 400)
	inner     map[string]int      // requests that reached the registry, by path
	users     map[string]string   // clientauth.User of the last request, by path
	handler   http.Handler        // everything the listener serves
	tokens    []string            // tokens the token endpoint issued
	extra     []string            // other secrets to look for
	client    *http.Client        // for raw requests (TLS aware)
	dial      func(string) string // maps host names to addresses
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), inner: map[string]int{}, users: map[string]string{}, digests: map[string]v1.Hash{}}
	writeHtpasswd(t, filepath.Join(e.dir, "htpasswd"), passwords)
	e.tokenKey = writeECKey(t, filepath.Join(e.dir, "token-key.pem"))
	e.pki = newPKI(t, e.dir)

	src := authYAML
	if o.yaml != "" {
		src = o.yaml
	}
	var cfg config.Auth
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if o.noToken {
		cfg.Token = nil
	}
	if o.mtls {
		cfg.MTLS = &config.AuthMTLS{ClientCA: "clients-ca.pem"}
	}
	e.cfg = &cfg
	logger := slog.New(slog.NewJSONHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := clientauth.New(&cfg, func(p string) string { return filepath.Join(e.dir, p) }, logger, clientauth.Options{Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	e.auth = a

	// The registry holding the images, reachable directly only to seed it.
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	seed := httptest.NewServer(reg)
	for _, r := range repos {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(strings.TrimPrefix(seed.URL, "http://") + "/" + r + ":v1")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		e.digests[r], _ = img.Digest()
	}
	seed.Close()

	counting := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.inner[r.URL.Path]++
		e.users[r.URL.Path] = clientauth.User(r.Context())
		e.mu.Unlock()
		reg.ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("/token", a.TokenHandler())
	mux.Handle("/", a.Middleware(counting))
	h := e.recording(mux)
	e.handler = h

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: h, ErrorLog: log.New(&e.serverLog, "", 0)}
	if o.mtls {
		srv.TLSConfig = e.pki.serverTLS(t)
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		// A name, not a loopback address: go-containerregistry talks plain
		// HTTP to loopback addresses.
		e.host = fmt.Sprintf("pullgate.test:%d", port)
		e.url = "https://" + e.host
		e.dial = func(string) string { return ln.Addr().String() }
	} else {
		go func() { _ = srv.Serve(ln) }()
		e.host = ln.Addr().String()
		e.url = "http://" + e.host
	}
	t.Cleanup(func() {
		_ = srv.Close()
		e.checkNoSecrets()
	})
	e.client = &http.Client{Transport: e.transport(nil)}
	return e
}

// transport reaches the server; with mTLS it trusts the server CA and
// presents cert when given.
func (e *env) transport(cert *tls.Certificate) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if e.dial != nil {
		d := &net.Dialer{}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, e.dial(addr))
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: e.pki.serverPool}
		if cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
		}
	}
	return tr
}

// recording captures error bodies and issued tokens.
func (e *env) recording(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: 200}
		next.ServeHTTP(rec, r)
		e.mu.Lock()
		defer e.mu.Unlock()
		if rec.status >= 400 {
			e.bodies.Write(rec.body.Bytes())
			for k, vs := range rec.Header() {
				fmt.Fprintf(&e.bodies, "%s: %s\n", k, strings.Join(vs, ", "))
			}
		} else if r.URL.Path == "/token" {
			var tr struct {
				Token string `json:"token"`
			}
			if err := json.Unmarshal(rec.body.Bytes(), &tr); err == nil && tr.Token != "" {
				e.tokens = append(e.tokens, tr.Token)
			}
		}
	})
}

type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(s int) { r.status = s; r.ResponseWriter.WriteHeader(s) }
func (r *recorder) Write(p []byte) (int, error) {
	if r.status >= 400 || r.body.Len() < 64<<10 {
		r.body.Write(p)
	}
	return r.ResponseWriter.Write(p)
}

// secret registers another string that must never be logged or returned.
func (e *env) secret(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.extra = append(e.extra, s)
}

// checkNoSecrets searches logs and error bodies for every password, every
// Basic credential encoding and every token (and its signature).
func (e *env) checkNoSecrets() {
	e.t.Helper()
	logs := e.logs.String()
	e.mu.Lock()
	bodies := e.bodies.String()
	var secrets []string
	for u, p := range passwords {
		secrets = append(secrets, p, base64.StdEncoding.EncodeToString([]byte(u+":"+p)),
			base64.StdEncoding.EncodeToString([]byte(u+":"+wrongPassword)))
	}
	secrets = append(secrets, wrongPassword)
	for _, t := range append(append([]string{}, e.tokens...), e.extra...) {
		secrets = append(secrets, t)
		if i := strings.LastIndex(t, "."); i > 0 && len(t)-i > 16 {
			secrets = append(secrets, t[i+1:])
		}
	}
	e.mu.Unlock()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			e.t.Errorf("a credential appears in the log: %q", s)
		}
		if strings.Contains(bodies, s) {
			e.t.Errorf("a credential appears in an error response: %q", s)
		}
	}
	if e.t.Failed() {
		e.t.Logf("log:\n%s", logs)
	}
}

// upstreamHits counts requests that reached the registry for repo.
func (e *env) upstreamHits(repo string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for p, c := range e.inner {
		if strings.HasPrefix(p, "/v2/"+repo+"/") {
			n += c
		}
	}
	return n
}

// userAt is the identity the registry saw on its last request for repo's
// manifest.
func (e *env) userAt(repo string) string { return e.userAtPath("/v2/" + repo + "/manifests/v1") }

func (e *env) userAtPath(path string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.users[path]
}

func (e *env) ref(t *testing.T, repo string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(e.host + "/" + repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// pull fetches the manifest and every layer with go-containerregistry
// (which runs the token flow against /token on a Bearer challenge).
func (e *env) pull(t *testing.T, repo string, auth authn.Authenticator, cert *tls.Certificate) error {
	t.Helper()
	img, err := remote.Image(e.ref(t, repo), remote.WithAuth(auth), remote.WithTransport(e.transport(cert)),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}), remote.WithRetryStatusCodes())
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	if d != e.digests[repo] {
		return fmt.Errorf("digest %s, want %s", d, e.digests[repo])
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// statusOf is the HTTP status in a go-containerregistry error (0 if none).
func statusOf(err error) (int, string) {
	var te *transport.Error
	if errors.As(err, &te) {
		code := ""
		if len(te.Errors) > 0 {
			code = string(te.Errors[0].Code)
		}
		return te.StatusCode, code
	}
	return 0, ""
}

// do sends a raw request.
func (e *env) do(t *testing.T, method, path string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	return e.doWith(t, e.client, method, path, hdr)
}

func (e *env) doWith(t *testing.T, c *http.Client, method, path string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func basicHeader(user, pass string) http.Header {
	return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}}
}

func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// token gets a token from /token with Basic credentials.
func (e *env) token(t *testing.T, user string, scopes ...string) string {
	t.Helper()
	path := "/token?service=pullgate"
	for _, s := range scopes {
		path += "&scope=" + s
	}
	var hdr http.Header
	if user != "" {
		hdr = basicHeader(user, passwords[user])
	}
	resp, body := e.do(t, "GET", path, hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("token for %s: %d %s", user, resp.StatusCode, body)
	}
	var full map[string]any
	_ = json.Unmarshal(body, &full)
	tok, _ := full["token"].(string)
	if tok == "" || full["access_token"] != tok {
		t.Fatalf("token response %s", body)
	}
	return tok
}

// ociError decodes an OCI error body.
func ociError(t *testing.T, body []byte) (code, message string) {
	t.Helper()
	var b struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", body)
	}
	return b.Errors[0].Code, b.Errors[0].Message
}

// logRecords returns the captured log records whose message is msg.
func (e *env) logRecords(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func writeHtpasswd(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeECKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// pkiSet: a server CA and certificate for pullgate.test, the trusted client
// CA (clients-ca.pem) and an untrusted one.
type pkiSet struct {
	dir                   string
	serverCA, clientCA    *testCA
	untrusted             *testCA
	serverPool            *x509.CertPool
	serverCert, serverKey string
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial int64 = time.Now().UnixNano()
var serialMu sync.Mutex

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial++
	return big.NewInt(serial)
}

func newCA(t *testing.T, cn string) *testCA {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: k, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate; server certificates are for pullgate.test
// and 127.0.0.1.
func (ca *testCA) issue(t *testing.T, cn string, ous []string, server bool) (certPEM, keyPEM []byte, pair tls.Certificate) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn, OrganizationalUnit: ous},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"pullgate.test"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

// serverTLS is the listener configuration production uses: tlsreload with
// the client CA.
func (p *pkiSet) serverTLS(t *testing.T) *tls.Config {
	t.Helper()
	r, err := tlsreload.New(p.serverCert, p.serverKey, filepath.Join(p.dir, "clients-ca.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.TLSConfig()
}

func newPKI(t *testing.T, dir string) *pkiSet {
	t.Helper()
	p := &pkiSet{dir: dir, serverCA: newCA(t, "server CA"), clientCA: newCA(t, "clients CA"), untrusted: newCA(t, "clients CA")}
	p.serverPool = x509.NewCertPool()
	p.serverPool.AddCert(p.serverCA.cert)
	cert, key, _ := p.serverCA.issue(t, "pullgate.test", nil, true)
	p.serverCert, p.serverKey = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	for f, b := range map[string][]byte{p.serverCert: cert, p.serverKey: key, filepath.Join(dir, "clients-ca.pem"): p.clientCA.pem} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func sloggerTo(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
