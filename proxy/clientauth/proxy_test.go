package clientauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/route"
)

// The middleware in front of the real proxy, wired as the integrator will:
// /token beside the registry API, the middleware outside the proxy's
// handler. A client without access gets 401/403 and the upstream sees no
// request at all; allowed clients pull through policy and verification.
func TestInFrontOfTheProxy(t *testing.T) {
	var mu sync.Mutex
	upstreamHits := map[string]int{}
	up, err := upstream.Start(upstream.Options{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			upstreamHits[r.URL.Path]++
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	hits := func(repo string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for p, c := range upstreamHits {
			if strings.HasPrefix(p, "/v2/"+repo+"/") {
				n += c
			}
		}
		return n
	}
	for _, repo := range []string{"app/img", "secret/img", "blocked/img"} {
		img, _ := random.Image(1024, 1)
		ref, _ := name.ParseReference(up.Host+"/"+repo+":v1", name.Insecure)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	writeHtpasswd(t, filepath.Join(dir, "htpasswd"), passwords)
	writeECKey(t, filepath.Join(dir, "token-key.pem"))
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(`rules:
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: open
    match: ["upstream.local/**"]
    action: allow
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pullgate.yaml"), []byte(fmt.Sprintf(`
upstreams:
  - name: upstream.local
    url: %s
policy: ./policy.yaml
storage: {path: ./data}
audit: {path: ./audit.jsonl}
auth:
  htpasswd: ./htpasswd
  token: {key: ./token-key.pem}
  access:
    - repositories: ["upstream.local/app/**", "upstream.local/blocked/**"]
      allow: [alice]
    - repositories: ["upstream.local/secret/**"]
      allow: [carol]
`, up.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "pullgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := sloggerTo(&logs)
	srv, err := proxy.Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	a, err := clientauth.New(cfg.Auth, cfg.Resolve, log)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/token", a.TokenHandler())
	mux.Handle("/", a.Middleware(srv.Handler()))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	host := strings.TrimPrefix(ts.URL, "http://")

	pull := func(repo string, auth authn.Authenticator) error {
		ref, _ := name.ParseReference(host + "/upstream.local/" + repo + ":v1")
		img, err := remote.Image(ref, remote.WithAuth(auth), remote.WithRetryBackoff(remote.Backoff{Steps: 1}), remote.WithRetryStatusCodes())
		if err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			if _, err := l.Compressed(); err != nil {
				return err
			}
		}
		return nil
	}
	alice := &authn.Basic{Username: "alice", Password: passwords["alice"]}
	carol := &authn.Basic{Username: "carol", Password: passwords["carol"]}

	if err := pull("app/img", alice); err != nil {
		t.Fatalf("alice app: %v", err)
	}
	for _, c := range []struct {
		name   string
		repo   string
		auth   authn.Authenticator
		status int
	}{
		{"carol on app", "app/img", carol, 403},
		{"alice on secret", "secret/img", alice, 403},
		{"anonymous on secret", "secret/img", authn.Anonymous, 401},
		{"wrong password", "secret/img", &authn.Basic{Username: "carol", Password: wrongPassword}, 401},
	} {
		before := hits(c.repo)
		err := pull(c.repo, c.auth)
		if status, _ := statusOf(err); status != c.status {
			t.Fatalf("%s: %v, want %d", c.name, err, c.status)
		}
		if n := hits(c.repo) - before; n != 0 {
			t.Fatalf("%s: %d upstream requests before the refusal", c.name, n)
		}
	}
	if err := pull("secret/img", carol); err != nil {
		t.Fatalf("carol secret: %v", err)
	}
	// Access granted, policy denies: the proxy's own DENIED.
	err = pull("blocked/img", alice)
	if status, code := statusOf(err); status != 403 || code != "DENIED" || !strings.Contains(err.Error(), "blocked") {
		t.Fatalf("alice blocked: %v", err)
	}
	for _, s := range []string{passwords["alice"], passwords["carol"], wrongPassword} {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("the log contains a password")
		}
	}
}

// Options.Repository makes rules see the repository the proxy serves:
// "docker.io/secret" is Docker Hub's "docker.io/library/secret", so the rule
// for library/secret applies and the catch-all does not open it.
func TestRepositoryNormalization(t *testing.T) {
	dir := t.TempDir()
	writeHtpasswd(t, filepath.Join(dir, "htpasswd"), passwords)
	cfg := &config.Auth{
		Htpasswd: "htpasswd",
		Token:    &config.AuthToken{},
		Access: []config.AccessRule{
			{Repositories: []string{"docker.io/library/secret"}, Allow: []string{"carol"}},
			{Repositories: []string{"docker.io/**"}, Allow: []string{"alice", "carol"}},
		},
	}
	norm := func(rt route.Route) string {
		if rt.Upstream == "docker.io" && !strings.Contains(rt.Repo, "/") {
			return rt.Upstream + "/library/" + rt.Repo
		}
		return rt.Repository()
	}
	a, err := clientauth.New(cfg, func(p string) string { return filepath.Join(dir, p) }, nil, clientauth.Options{Repository: norm})
	if err != nil {
		t.Fatal(err)
	}
	reached := 0
	mux := http.NewServeMux()
	mux.Handle("/token", a.TokenHandler())
	mux.Handle("/", a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ })))
	for _, c := range []struct {
		user, path string
		status     int
	}{
		{"alice", "/v2/docker.io/secret/manifests/latest", 403},
		{"alice", "/v2/secret/manifests/latest?ns=docker.io", 403},
		{"alice", "/v2/docker.io/library/secret/manifests/latest", 403},
		{"carol", "/v2/docker.io/secret/manifests/latest", 200},
		{"alice", "/v2/docker.io/alpine/manifests/latest", 200},
	} {
		req := httptest.NewRequest("GET", c.path, nil)
		req.SetBasicAuth(c.user, passwords[c.user])
		rr := httptest.NewRecorder()
		mux.ServeHTTP(rr, req)
		if rr.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.user, c.path, rr.Code, c.status)
		}
	}
	if reached != 2 {
		t.Fatalf("%d requests reached the handler, want 2", reached)
	}
	// The token endpoint applies the same mapping to scopes.
	req := httptest.NewRequest("GET", "/token?service=pullgate&scope=repository:docker.io/secret:pull&scope=repository:docker.io/alpine:pull", nil)
	req.SetBasicAuth("alice", passwords["alice"])
	rr := httptest.NewRecorder()
	mux.ServeHTTP(rr, req)
	var body struct{ Token string }
	if err := json.Unmarshal(rr.Body.Bytes(), &body); err != nil || rr.Code != 200 {
		t.Fatalf("%d %s", rr.Code, rr.Body)
	}
	access, _ := json.Marshal(payload(t, body.Token)["access"])
	if string(access) != `[{"actions":["pull"],"name":"docker.io/alpine","type":"repository"}]` {
		t.Fatalf("access %s", access)
	}
}
