package clientauth_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/pullgate/pullgate/test/tools"
)

type accessCase struct {
	name       string
	user, pass string // empty user: anonymous
	repo       string
	status     int // 0: the pull succeeds
	code       string
}

var accessCases = []accessCase{
	{"anonymous/public", "", "", "upstream.local/public/img", 0, ""},
	{"anonymous/app refused", "", "", "upstream.local/app/img", 401, "UNAUTHORIZED"},
	{"anonymous/other refused", "", "", "upstream.local/other/img", 401, "UNAUTHORIZED"},
	{"alice/app", "alice", "", "upstream.local/app/img", 0, ""},
	{"alice/app2", "alice", "", "upstream.local/app/img2", 0, ""},
	{"alice/public", "alice", "", "upstream.local/public/img", 0, ""},
	{"alice/secret refused", "alice", "", "upstream.local/secret/img", 403, "DENIED"},
	{"alice/no rule refused", "alice", "", "upstream.local/other/img", 403, "DENIED"},
	{"bob via group/app", "bob", "", "upstream.local/app/img", 0, ""},
	{"bob/secret refused", "bob", "", "upstream.local/secret/img", 403, "DENIED"},
	{"carol/secret", "carol", "", "upstream.local/secret/img", 0, ""},
	{"carol/app refused", "carol", "", "upstream.local/app/img", 403, "DENIED"},
	{"dave (in no rule)/app refused", "dave", "", "upstream.local/app/img", 403, "DENIED"},
	{"alice wrong password", "alice", wrongPassword, "upstream.local/app/img", 401, "UNAUTHORIZED"},
	{"unknown user", "mallory", wrongPassword, "upstream.local/public/img", 401, "UNAUTHORIZED"},
}

func (c accessCase) auth() authn.Authenticator {
	if c.user == "" {
		return authn.Anonymous
	}
	p := c.pass
	if p == "" {
		p = passwords[c.user]
	}
	return &authn.Basic{Username: c.user, Password: p}
}

// Each access rule, allowed and refused, with go-containerregistry as the
// client: against the token service it runs the Docker token flow
// (challenge, GET /token with Basic, Bearer); without it, Basic on every
// request. Refusals never reach the registry behind the middleware.
func TestAccessRulesGGCR(t *testing.T) {
	for _, mode := range []struct {
		name    string
		noToken bool
	}{{"token-flow", false}, {"basic", true}} {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, envOptions{noToken: mode.noToken})
			for _, c := range accessCases {
				t.Run(c.name, func(t *testing.T) {
					before := e.upstreamHits(c.repo)
					err := e.pull(t, c.repo, c.auth(), nil)
					if c.status == 0 {
						if err != nil {
							t.Fatalf("pull: %v", err)
						}
						want := c.user
						if want == "" {
							want = "anonymous"
						}
						if got := e.userAt(c.repo); got != want {
							t.Errorf("identity seen by the handler %q, want %q", got, want)
						}
						return
					}
					status, code := statusOf(err)
					if status != c.status || code != c.code {
						t.Fatalf("pull error %v (status %d, code %q), want %d %s", err, status, code, c.status, c.code)
					}
					if n := e.upstreamHits(c.repo) - before; n != 0 {
						t.Errorf("%d refused requests reached the registry", n)
					}
					if c.status == 403 && !strings.Contains(err.Error(), c.repo) {
						t.Errorf("DENIED does not name the repository: %v", err)
					}
				})
			}
		})
	}
}

// The challenge tells clients where to get a token and for which scope.
func TestChallenges(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, body := e.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", nil)
	want := `Bearer realm="` + e.url + `/token",service="pullgate",scope="repository:upstream.local/app/img:pull"`
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("got %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
	if code, _ := ociError(t, body); code != "UNAUTHORIZED" {
		t.Fatalf("code %s", code)
	}
	// /v2/ asks for credentials even though anonymous repositories exist,
	// so clients holding credentials learn the challenge.
	resp, _ = e.do(t, "GET", "/v2/", nil)
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="`+e.url+`/token",service="pullgate"`) {
		t.Fatalf("/v2/: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = e.do(t, "GET", "/v2/", basicHeader("dave", passwords["dave"]))
	if resp.StatusCode != 200 {
		t.Fatalf("/v2/ with valid credentials: %d", resp.StatusCode)
	}
	// Anonymous access to an anonymous repository needs no challenge.
	resp, _ = e.do(t, "HEAD", "/v2/upstream.local/public/img/manifests/v1", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("anonymous HEAD public: %d", resp.StatusCode)
	}
	// Containerd's mirror form authorizes the same repository.
	resp, _ = e.do(t, "GET", "/v2/app/img/manifests/v1?ns=upstream.local", basicHeader("carol", passwords["carol"]))
	if resp.StatusCode != 403 {
		t.Fatalf("ns form, carol on app: %d", resp.StatusCode)
	}
	// Pull access only.
	resp, body = e.do(t, "POST", "/v2/upstream.local/app/img/blobs/uploads/", basicHeader("alice", passwords["alice"]))
	if code, _ := ociError(t, body); resp.StatusCode != 405 || code != "UNSUPPORTED" {
		t.Fatalf("push: %d %s", resp.StatusCode, body)
	}
	if n := e.upstreamHits("upstream.local/app/img"); n != 0 {
		t.Fatalf("%d requests reached the registry", n)
	}

	// The realm is built from the Host header: one that could break out of
	// the quoted parameter is refused.
	req := httptest.NewRequest("GET", "/v2/upstream.local/app/img/manifests/v1", nil)
	req.Host = `evil.example",error="x`
	rr := httptest.NewRecorder()
	e.handler.ServeHTTP(rr, req)
	if rr.Code != 400 || rr.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("bad Host: %d %q", rr.Code, rr.Header().Get("WWW-Authenticate"))
	}

	// Without the token service the challenge is Basic.
	e2 := newEnv(t, envOptions{noToken: true})
	resp, _ = e2.do(t, "GET", "/v2/upstream.local/app/img/manifests/v1", nil)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="pullgate",charset="UTF-8"` {
		t.Fatalf("basic challenge: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// The same rules with the crane binary: `crane auth login` stores the
// credentials, crane runs the token flow on its own.
func TestAccessRulesCrane(t *testing.T) {
	crane := tools.Need(t, "crane")
	e := newEnv(t, envOptions{})
	run := func(t *testing.T, cfgDir string, stdin string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(crane, args...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfgDir, "HOME="+cfgDir)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, c := range accessCases {
		t.Run(c.name, func(t *testing.T) {
			cfgDir := t.TempDir()
			if c.user != "" {
				p := c.pass
				if p == "" {
					p = passwords[c.user]
				}
				if out, err := run(t, cfgDir, p, "auth", "login", e.host, "-u", c.user, "--password-stdin"); err != nil {
					t.Fatalf("crane auth login: %v\n%s", err, out)
				}
			}
			before := e.upstreamHits(c.repo)
			tarball := filepath.Join(t.TempDir(), "img.tar")
			out, err := run(t, cfgDir, "", "pull", e.host+"/"+c.repo+":v1", tarball)
			if c.status == 0 {
				if err != nil {
					t.Fatalf("crane pull: %v\n%s", err, out)
				}
				if st, err := os.Stat(tarball); err != nil || st.Size() < 1024 {
					t.Fatalf("no image pulled: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("crane pull succeeded, want %d %s", c.status, c.code)
			}
			if !strings.Contains(out, c.code) {
				t.Fatalf("crane output lacks %s:\n%s", c.code, out)
			}
			if n := e.upstreamHits(c.repo) - before; n != 0 {
				t.Errorf("%d refused requests reached the registry", n)
			}
			for _, s := range []string{passwords[c.user], wrongPassword} {
				if s != "" && strings.Contains(out, s) {
					t.Errorf("crane output shows a password")
				}
			}
		})
	}
	// And crane digest with a token for the right repository only.
	if out, err := run(t, t.TempDir(), "", "digest", e.host+"/upstream.local/public/img:v1"); err != nil ||
		strings.TrimSpace(out) != e.digests["upstream.local/public/img"].String() {
		t.Fatalf("crane digest public: %v %s", err, out)
	}
}

func TestVersionCheckWithoutAnonymous(t *testing.T) {
	e := newEnv(t, envOptions{yaml: `
htpasswd: htpasswd
access:
  - repositories: ["**"]
    allow: [alice]
`})
	resp, _ := e.do(t, "GET", "/v2/", nil)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="pullgate",charset="UTF-8"` {
		t.Fatalf("/v2/ without credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = e.do(t, "GET", "/v2/", basicHeader("alice", passwords["alice"]))
	if resp.StatusCode != 200 {
		t.Fatalf("/v2/ as alice: %d", resp.StatusCode)
	}
	if err := e.pull(t, "upstream.local/other/img", &authn.Basic{Username: "alice", Password: passwords["alice"]}, nil); err != nil {
		t.Fatalf("'**' rule: %v", err)
	}
	if err := e.pull(t, "upstream.local/other/img", &authn.Basic{Username: "bob", Password: passwords["bob"]}, nil); err == nil {
		t.Fatal("bob pulled")
	}
}

// The same rules with the oras binary (oras-go's auth client: token flow
// with GET and Basic credentials).
func TestAccessRulesOras(t *testing.T) {
	oras := tools.Need(t, "oras")
	e := newEnv(t, envOptions{})
	for _, c := range accessCases {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			args := []string{"manifest", "fetch", "--plain-http", "--registry-config", filepath.Join(home, "config.json")}
			stdin := ""
			if c.user != "" {
				p := c.pass
				if p == "" {
					p = passwords[c.user]
				}
				args = append(args, "-u", c.user, "--password-stdin")
				stdin = p
			}
			args = append(args, e.host+"/"+c.repo+":v1")
			before := e.upstreamHits(c.repo)
			cmd := exec.Command(oras, args...)
			cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+home)
			cmd.Stdin = strings.NewReader(stdin)
			out, err := cmd.CombinedOutput()
			// oras only sends credentials after a 401, so bad credentials
			// are never presented for an anonymous repository.
			if c.status == 0 || strings.HasPrefix(c.repo, "upstream.local/public/") {
				if err != nil {
					t.Fatalf("oras: %v\n%s", err, out)
				}
				if !strings.Contains(string(out), `"layers"`) {
					t.Fatalf("no manifest: %s", out)
				}
				return
			}
			if err == nil {
				t.Fatalf("oras succeeded, want %d:\n%s", c.status, out)
			}
			if !strings.Contains(string(out), "Error response from registry: "+strings.ToLower(c.code)+": ") {
				t.Fatalf("oras output lacks %s:\n%s", c.code, out)
			}
			if n := e.upstreamHits(c.repo) - before; n != 0 {
				t.Errorf("%d refused requests reached the registry", n)
			}
		})
	}
}
