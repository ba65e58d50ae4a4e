package containerdtest

import (
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
