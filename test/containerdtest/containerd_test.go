package containerdtest

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
)

// containerd pulling through a hosts.toml mirror sends ?ns=<registry host>;
// the mirror here is the upstream itself, which ignores ns.
func TestMirrorSendsNamespace(t *testing.T) {
	d := Start(t)
	var mu sync.Mutex
	var queries []string
	u := harness.StartUpstream(t, harness.UpstreamOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			queries = append(queries, r.Method+" "+r.URL.RequestURI())
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}})
	img := u.PushImage(t, "open/app", "v1", harness.ImageOptions{})
	hosts := d.Mirror(t, "upstream.local", u.Host)
	res := d.Pull(t, hosts, "upstream.local/open/app:v1")
	if res.Err != nil {
		t.Fatalf("pull: %v", res)
	}
	if got := d.ImageDigest(t, "upstream.local/open/app:v1"); got != img.Digest {
		t.Fatalf("digest %s, want %s", got, img.Digest)
	}
	mu.Lock()
	defer mu.Unlock()
	found := false
	for _, q := range queries {
		if strings.Contains(q, "/v2/open/app/manifests/v1?ns=upstream.local") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no ns= manifest request: %v", queries)
	}
}

// containerd resolves with HEAD and reports only the status line of a refused
// request (not the body): the reason phrase is the one place a mirror can put
// a human-readable reason. This pins that behaviour for the proxy's deny path.
func TestDeniedReasonPhraseIsShown(t *testing.T) {
	d := Start(t)
	const reason = "Forbidden (pullgate: denied by rule pg-test-reason)"
	u := harness.StartUpstream(t, harness.UpstreamOptions{Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/manifests/") {
				h.ServeHTTP(w, r)
				return
			}
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			body := `{"errors":[{"code":"DENIED","message":"denied by rule pg-test-reason"}]}`
			fmt.Fprintf(buf, "HTTP/1.1 403 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", reason, len(body))
			if r.Method != http.MethodHead {
				buf.WriteString(body)
			}
			_ = buf.Flush()
		})
	}})
	hosts := d.Mirror(t, "upstream.local", u.Host)
	res := d.Pull(t, hosts, "upstream.local/open/app:v1")
	if res.Err == nil {
		t.Fatal("pull succeeded")
	}
	if !strings.Contains(res.Stderr, "pg-test-reason") {
		t.Fatalf("reason phrase not shown: %q", res.Stderr)
	}
}
