package clientauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
)

// An htpasswd file whose entries have different bcrypt costs (built over
// time with different tools: htpasswd -B defaults to 5, others to 10-12)
// must not tell which users exist by timing: a wrong password for a user
// with a cheap hash takes as long as one for a user that does not exist.
func TestWrongPasswordTimingWithMixedCosts(t *testing.T) {
	dir := t.TempDir()
	cheap, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	costly, _ := bcrypt.GenerateFromPassword([]byte("bob-pw"), 11)
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:"+string(cheap)+"\nbob:"+string(costly)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Auth{Htpasswd: "htpasswd",
		Access:    []config.AccessRule{{Repositories: []string{"**"}, Allow: []string{"*"}}},
		RateLimit: config.AuthRateLimit{FailuresPerMinute: 10000, Burst: 10000}}
	a, err := clientauth.New(cfg, func(p string) string { return filepath.Join(dir, p) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	timeOf := func(user string) time.Duration {
		var ds []time.Duration
		for i := 0; i < 3; i++ {
			req := httptest.NewRequest("GET", "/v2/upstream.local/app/img/manifests/v1", nil)
			req.SetBasicAuth(user, "Wrong-pw")
			rr := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rr, req)
			ds = append(ds, time.Since(start))
			if rr.Code != 401 {
				t.Fatalf("%s: %d", user, rr.Code)
			}
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[1]
	}
	unknown := timeOf("nobody")
	alice := timeOf("alice")
	t.Logf("unknown user %v, alice (cost %d) %v", unknown, bcrypt.MinCost, alice)
	if alice*4 < unknown { // without the padding: about 100 times faster; a wide margin for a loaded machine
		t.Fatal(fmt.Sprintf("a wrong password for alice answers in %v, an unknown user in %v: timing tells that alice exists", alice, unknown))
	}
	// The right password still works.
	req := httptest.NewRequest("GET", "/v2/upstream.local/app/img/manifests/v1", nil)
	req.SetBasicAuth("alice", "alice-pw")
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code != 200 {
		t.Fatalf("alice: %d", rr.Code)
	}
}

// The scope a challenge announces for the ?ns= form of an upstream whose
// name has a port ("repository:registry.internal:5000/app/img:pull") is one
// the token endpoint grants, and the token opens exactly that repository.
func TestTokenScopeForUpstreamWithPort(t *testing.T) {
	e := newEnv(t, envOptions{yaml: `
htpasswd: htpasswd
token: {key: token-key.pem}
access:
  - repositories: ["registry.internal:5000/app/**"]
    allow: [alice]
`})
	const path = "/v2/app/img/manifests/v1?ns=registry.internal:5000"
	resp, _ := e.do(t, "GET", path, nil)
	const scope = "repository:registry.internal:5000/app/img:pull"
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="`+scope+`"`) {
		t.Fatalf("challenge: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	tok := e.token(t, "alice", scope)
	e.secret(tok)
	access, _ := json.Marshal(payload(t, tok)["access"])
	if string(access) != `[{"actions":["pull"],"name":"registry.internal:5000/app/img","type":"repository"}]` {
		t.Fatalf("access %s", access)
	}
	// (The registry behind does not know ?ns=: it answers 404, but the
	// request got through as alice.)
	if resp, body := e.do(t, "GET", path, bearerHeader(tok)); resp.StatusCode == 401 || resp.StatusCode == 403 ||
		e.userAtPath("/v2/app/img/manifests/v1") != "alice" {
		t.Fatalf("with the token: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	// Another repository of that upstream alice may pull needs its own
	// scope; the same name on another port is another upstream.
	if resp, _ := e.do(t, "GET", "/v2/app/other/manifests/v1?ns=registry.internal:5000", bearerHeader(tok)); resp.StatusCode != 401 ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("app/other with the token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := e.do(t, "GET", "/v2/app/img/manifests/v1?ns=registry.internal:5001", bearerHeader(tok)); resp.StatusCode != 403 {
		t.Fatalf("other port with the token: %d", resp.StatusCode)
	}
	// A port-qualified name alice may not pull is still refused.
	if tok := e.token(t, "alice", "repository:registry.internal:5000/secret/img:pull"); string(mustJSON(payload(t, tok)["access"])) != "[]" {
		t.Fatalf("granted %v", payload(t, tok)["access"])
	}
}
