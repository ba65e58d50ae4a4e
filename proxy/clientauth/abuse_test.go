package clientauth_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// serve sends a request from a given client address straight to the
// handler.
func (e *env) serve(method, path, remote string, hdr http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, nil)
	req.RemoteAddr = remote + ":40000"
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	rr := httptest.NewRecorder()
	e.handler.ServeHTTP(rr, req)
	return rr
}

// Failed logins drain a bucket per client address and one per user name
// (burst 5, 10 per minute): the next attempt gets 429 TOOMANYREQUESTS with
// Retry-After, even with the right password, until the bucket refills.
func TestRateLimit(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	e := newEnv(t, envOptions{now: clock.now})
	const manifest = "/v2/upstream.local/app/img/manifests/v1"
	expect429 := func(t *testing.T, rr *httptest.ResponseRecorder, retryAfter string) {
		t.Helper()
		if rr.Code != 429 || rr.Header().Get("Retry-After") != retryAfter {
			t.Fatalf("got %d Retry-After %q, want 429 %s: %s", rr.Code, rr.Header().Get("Retry-After"), retryAfter, rr.Body)
		}
		if code, _ := ociError(t, rr.Body.Bytes()); code != "TOOMANYREQUESTS" {
			t.Fatalf("code %s", code)
		}
	}

	t.Run("per client address", func(t *testing.T) {
		users := []string{"alice", "bob", "carol", "dave", "mallory"}
		for _, u := range users {
			if rr := e.serve("GET", manifest, "10.0.0.1", basicHeader(u, wrongPassword)); rr.Code != 401 {
				t.Fatalf("%s: %d", u, rr.Code)
			}
		}
		before := e.upstreamHits("upstream.local/app/img")
		expect429(t, e.serve("GET", manifest, "10.0.0.1", basicHeader("alice", passwords["alice"])), "6")
		expect429(t, e.serve("GET", "/token?service=pullgate", "10.0.0.1", basicHeader("alice", passwords["alice"])), "6")
		if e.upstreamHits("upstream.local/app/img") != before {
			t.Fatal("a rate-limited request reached the registry")
		}
		// Other addresses are not affected; tokens are not passwords.
		if rr := e.serve("GET", manifest, "10.0.0.2", basicHeader("alice", passwords["alice"])); rr.Code != 200 {
			t.Fatalf("other address: %d", rr.Code)
		}
		clock.advance(3 * time.Second)
		expect429(t, e.serve("GET", manifest, "10.0.0.1", basicHeader("alice", passwords["alice"])), "3")
		clock.advance(3 * time.Second)
		if rr := e.serve("GET", manifest, "10.0.0.1", basicHeader("alice", passwords["alice"])); rr.Code != 200 {
			t.Fatalf("after refill: %d %s", rr.Code, rr.Body)
		}
		// One token refilled, one failure spends it again.
		if rr := e.serve("GET", manifest, "10.0.0.1", basicHeader("alice", wrongPassword)); rr.Code != 401 {
			t.Fatalf("%d", rr.Code)
		}
		expect429(t, e.serve("GET", manifest, "10.0.0.1", basicHeader("alice", passwords["alice"])), "6")
	})

	t.Run("per user name", func(t *testing.T) {
		clock.advance(time.Hour)
		for i, ip := range []string{"10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4", "10.0.1.5"} {
			// Through the token endpoint, where docker clients log in.
			if rr := e.serve("GET", "/token?service=pullgate", ip, basicHeader("carol", wrongPassword)); rr.Code != 401 {
				t.Fatalf("attempt %d: %d", i, rr.Code)
			}
		}
		expect429(t, e.serve("GET", "/token?service=pullgate", "10.0.2.1", basicHeader("carol", passwords["carol"])), "6")
		expect429(t, e.serve("GET", "/v2/upstream.local/secret/img/manifests/v1", "10.0.2.1", basicHeader("carol", passwords["carol"])), "6")
		if rr := e.serve("GET", "/v2/upstream.local/app/img/manifests/v1", "10.0.2.1", basicHeader("alice", passwords["alice"])); rr.Code != 200 {
			t.Fatalf("another user from that address: %d", rr.Code)
		}
		clock.advance(6 * time.Second)
		if rr := e.serve("GET", "/v2/upstream.local/secret/img/manifests/v1", "10.0.2.1", basicHeader("carol", passwords["carol"])); rr.Code != 200 {
			t.Fatalf("after refill: %d", rr.Code)
		}
	})

	t.Run("concurrent guesses", func(t *testing.T) {
		// At most as many password checks are in flight as the bucket has
		// tokens, so parallel guesses cannot overrun it.
		var wg sync.WaitGroup
		codes := make([]int, 40)
		for i := range codes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = e.serve("GET", manifest, "10.0.3.1", basicHeader(fmt.Sprintf("guess%d", i), wrongPassword)).Code
			}()
		}
		wg.Wait()
		count := map[int]int{}
		for _, c := range codes {
			count[c]++
		}
		if count[401] != 5 || count[429] != 35 {
			t.Fatalf("statuses %v, want 5×401 and 35×429", count)
		}
	})

	limited := 0
	for _, r := range e.logRecords("client authentication failed") {
		if strings.HasPrefix(r["reason"].(string), "rate limited") {
			limited++
		}
	}
	if limited < 5 {
		t.Fatalf("%d rate-limit refusals logged", limited)
	}
	// Failed logins are logged with the user name when it exists, never
	// with what the client sent for an unknown one.
	var sawWrong, sawUnknown bool
	for _, r := range e.logRecords("client authentication failed") {
		switch r["reason"] {
		case "wrong password":
			sawWrong = sawWrong || r["user"] == "alice"
		case "unknown user":
			sawUnknown = true
			if _, ok := r["user"]; ok {
				t.Errorf("unknown user name logged: %v", r)
			}
		}
	}
	if !sawWrong || !sawUnknown {
		t.Fatalf("failed logins not logged (wrong password %v, unknown user %v)", sawWrong, sawUnknown)
	}
}

// Oversized and malformed Authorization headers are refused with an OCI
// error saying what is wrong, and logged.
func TestMalformedAuthorization(t *testing.T) {
	e := newEnv(t, envOptions{})
	b64 := base64.StdEncoding.EncodeToString
	for i, c := range []struct {
		name   string
		hdr    http.Header
		status int
		msg    string
	}{
		{"oversized bearer", http.Header{"Authorization": {"Bearer " + strings.Repeat("A", 9000)}}, 400, "larger than 8192 bytes"},
		{"oversized basic", http.Header{"Authorization": {"Basic " + b64([]byte("alice:"+strings.Repeat("x", 7000)))}}, 400, "larger than 8192 bytes"},
		{"two headers", http.Header{"Authorization": {"Basic " + b64([]byte("alice:"+passwords["alice"])), "Bearer x"}}, 400, "more than one Authorization header"},
		{"bad base64", http.Header{"Authorization": {"Basic " + passwords["alice"] + "!!"}}, 401, "not base64"},
		{"missing colon", http.Header{"Authorization": {"Basic " + b64([]byte("alice"+passwords["alice"]))}}, 401, "no ':'"},
		{"empty basic", http.Header{"Authorization": {"Basic"}}, 401, "empty"},
		{"control character in user", http.Header{"Authorization": {"Basic " + b64([]byte("al\x00ice:"+passwords["alice"]))}}, 401, "invalid user name"},
		{"password over 72 bytes", http.Header{"Authorization": {"Basic " + b64([]byte("alice:"+passwords["alice"]+strings.Repeat("y", 72)))}}, 401, "longer than 72 bytes"},
		{"unknown scheme", http.Header{"Authorization": {"Digest username=alice"}}, 401, "unsupported authorization scheme"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range c.hdr["Authorization"] {
				if _, p, ok := strings.Cut(v, " "); ok && len(p) > 12 {
					e.secret(p)
				}
			}
			// A distinct address per case: these count as failed logins.
			rr := e.serve("GET", "/v2/upstream.local/app/img/manifests/v1", "10.1.0."+string(rune('1'+i)), c.hdr)
			code, msg := ociError(t, rr.Body.Bytes())
			if rr.Code != c.status || code != "UNAUTHORIZED" || !strings.Contains(msg, c.msg) {
				t.Fatalf("%d %s %q, want %d UNAUTHORIZED %q", rr.Code, code, msg, c.status, c.msg)
			}
			if c.status == 401 && !strings.HasPrefix(rr.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("no challenge: %q", rr.Header().Get("WWW-Authenticate"))
			}
			recs := e.logRecords("client authentication failed")
			if len(recs) == 0 || recs[len(recs)-1]["status"] != float64(c.status) {
				t.Fatalf("not logged: %v", recs)
			}
		})
	}
	if n := e.upstreamHits("upstream.local/app/img"); n != 0 {
		t.Fatalf("%d refused requests reached the registry", n)
	}
}

// The htpasswd file accepts bcrypt only and is reloaded when it changes; a
// broken file refuses logins until fixed.
func TestHtpasswd(t *testing.T) {
	dir := t.TempDir()
	cfg := func() *config.Auth {
		return &config.Auth{Htpasswd: "htpasswd", Access: []config.AccessRule{{Repositories: []string{"**"}, Allow: []string{"*"}}}}
	}
	resolve := func(p string) string { return filepath.Join(dir, p) }
	write := func(s string) {
		t.Helper()
		// Write to a new file and rename, as editors and Kubernetes do.
		tmp := filepath.Join(dir, "htpasswd.tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "htpasswd")); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(p string) string {
		h, _ := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		return string(h)
	}
	for _, c := range []struct{ name, file, err string }{
		{"apr1 md5", "alice:$apr1$abc$0123456789abcdefghijkl\n", `line 1: user "alice": only bcrypt hashes are accepted`},
		{"sha1", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "only bcrypt"},
		{"crypt", "alice:abJnggxhB/yWI\n", "only bcrypt"},
		{"plain", "# users\n\nalice:" + hash("a") + "\nbob:secretpassword\n", `line 4: user "bob": only bcrypt`},
		{"bad bcrypt", "alice:$2y$05$short\n", "malformed bcrypt hash"},
		{"no colon", "alice\n", "line 1: expected user:hash"},
		{"duplicate", "alice:" + hash("a") + "\nalice:" + hash("b") + "\n", "appears twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(c.file)
			_, err := clientauth.New(cfg(), resolve, nil)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
			if strings.Contains(err.Error(), "secretpassword") || strings.Contains(err.Error(), "W6ph5Mm5") {
				t.Fatalf("error quotes the file's secrets: %v", err)
			}
		})
	}

	write("alice:" + hash("first-pw") + "\n")
	var logs syncBuffer
	a, err := clientauth.New(cfg(), resolve, sloggerTo(&logs))
	if err != nil {
		t.Fatal(err)
	}
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	try := func(user, pass string) int {
		req := httptest.NewRequest("GET", "/v2/upstream.local/app/img/manifests/v1", nil)
		req.SetBasicAuth(user, pass)
		rr := httptest.NewRecorder()
		h.ServeHTTP(rr, req)
		return rr.Code
	}
	if try("alice", "first-pw") != 200 || try("alice", "second-pw") != 401 {
		t.Fatal("initial file")
	}
	write("alice:" + hash("second-pw") + "\nbob:" + hash("bob-pw") + "\n")
	if try("alice", "first-pw") != 401 || try("alice", "second-pw") != 200 || try("bob", "bob-pw") != 200 {
		t.Fatal("reloaded file not in force")
	}
	write("alice:" + hash("second-pw") + "\nbob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
	if try("alice", "second-pw") != 401 {
		t.Fatal("a broken file must refuse logins (fail closed)")
	}
	if !strings.Contains(logs.String(), "htpasswd invalid") {
		t.Fatalf("broken file not logged: %s", logs.String())
	}
	write("alice:" + hash("third-pw") + "\n")
	if try("alice", "third-pw") != 200 || try("bob", "bob-pw") != 401 {
		t.Fatal("fixed file not in force")
	}
	// In-place rewrite (same inode) is noticed too.
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:"+hash("fourth-pw")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if try("alice", "fourth-pw") != 200 || try("alice", "third-pw") != 401 {
		t.Fatal("in-place rewrite not in force")
	}
	for _, s := range []string{"first-pw", "second-pw", "third-pw", "fourth-pw", "bob-pw", "W6ph5Mm5"} {
		if strings.Contains(logs.String(), s) {
			t.Fatalf("log contains %q", s)
		}
	}
}
