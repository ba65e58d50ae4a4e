package proxy_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// dockerd resolves a tag with HEAD and, refused, asks again with GET (on a
// new connection): one pull, one decision in the audit log. A GET after a
// GET, and HEAD after HEAD, are pulls of their own.
func TestDeniedHeadThenGetIsOneDecision(t *testing.T) {
	e := start(t, nil)
	b := ivPushBlob(t, e.up.Host, "blocked/app", []byte("layer"), docRaw)
	declModel(t, e, "blocked/app:v1", named(b, docRaw, titleKey, "README.md"))
	url := e.proxy.URL + "/v2/upstream.local/blocked/app/manifests/v1"
	do := func(method string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, nil)
		tr := &http.Transport{DisableKeepAlives: true} // a new connection each time, as dockerd
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s %s: %d, want 403", method, url, resp.StatusCode)
		}
	}
	denials := func() int {
		n := 0
		for _, ev := range auditEvents(t, filepath.Join(e.dir, "audit.jsonl")) {
			if strings.HasPrefix(ev, "upstream.local/blocked/app:v1:deny") {
				n++
			}
		}
		return n
	}
	do(http.MethodHead)
	do(http.MethodGet)
	if n := denials(); n != 1 {
		t.Fatalf("HEAD then GET: %d decisions recorded, want 1", n)
	}
	do(http.MethodGet)
	if n := denials(); n != 2 {
		t.Fatalf("a second GET: %d decisions recorded, want 2", n)
	}
	do(http.MethodHead)
	do(http.MethodHead)
	if n := denials(); n != 4 {
		t.Fatalf("two HEADs: %d decisions recorded, want 4", n)
	}
}
