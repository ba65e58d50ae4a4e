package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fixture(t *testing.T) (*httptest.Server, *audit.Ring) {
	t.Helper()
	ring := audit.NewRing(50)
	ring.Add(audit.Event{Time: now.Add(-5 * time.Minute), Repository: "up.local/app/web", Upstream: "up.local", Reference: "1.0",
		Digest: "sha256:" + strings.Repeat("a", 64), Kind: "manifest", Rule: "open", Decision: "allow", Reasons: []string{"rule open: allowed"}})
	ring.Add(audit.Event{Time: now.Add(-2 * time.Minute), Repository: "up.local/blocked/<script>alert(1)</script>", Upstream: "up.local",
		Reference: "latest", Kind: "manifest", Rule: "blocked", Decision: "deny", Client: "10.1.2.3:4444", Revision: "rev-123",
		Reasons: []string{`rule blocked: action deny <b>"x"</b>`},
		Checks: []audit.Check{{Name: "signature:release", Passed: false, Detail: "no signature by release",
			Evidence: []string{"sha256:" + strings.Repeat("e", 64)}}}})
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pullgate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	ready := errors.New("store not writable: read-only file system")
	h := New(Options{
		Gatherer: reg, Ring: ring, Version: "v-test", Now: func() time.Time { return now },
		Ready: func() error { return ready },
		Policy: func() PolicyInfo {
			return PolicyInfo{Revision: "rev-123", File: "/etc/pullgate/policy.yaml", Source: []byte("rules: # <tag> & more\n"),
				Rules: []RuleInfo{{Name: "blocked", Action: "deny", Mode: "enforce", Patterns: []string{"up.local/blocked/**"}}}}
		},
	})
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts, ring
}

func fetch(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestProbesAndMetrics(t *testing.T) {
	ts, _ := fixture(t)
	if r, b := fetch(t, "GET", ts.URL+"/healthz"); r.StatusCode != 200 || b != "ok\n" {
		t.Fatalf("healthz %d %q", r.StatusCode, b)
	}
	if r, b := fetch(t, "GET", ts.URL+"/readyz"); r.StatusCode != 503 || !strings.Contains(b, "store not writable") {
		t.Fatalf("readyz %d %q", r.StatusCode, b)
	}
	r, b := fetch(t, "GET", ts.URL+"/metrics")
	if r.StatusCode != 200 || !strings.Contains(b, "pullgate_test_total 3") {
		t.Fatalf("metrics %d %q", r.StatusCode, b)
	}
	if r, _ := fetch(t, "HEAD", ts.URL+"/healthz"); r.StatusCode != 200 {
		t.Fatalf("HEAD healthz %d", r.StatusCode)
	}
	if r, _ := fetch(t, "POST", ts.URL+"/ui"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /ui %d", r.StatusCode)
	}
	if r, _ := fetch(t, "GET", ts.URL+"/nope"); r.StatusCode != 404 {
		t.Fatalf("/nope %d", r.StatusCode)
	}
	if r, _ := fetch(t, "GET", ts.URL+"/"); r.StatusCode != http.StatusFound || r.Header.Get("Location") != "/ui" {
		t.Fatalf("/ %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	// Ready with no check configured.
	ok := httptest.NewServer(New(Options{}))
	defer ok.Close()
	if r, _ := fetch(t, "GET", ok.URL+"/readyz"); r.StatusCode != 200 {
		t.Fatalf("readyz without check %d", r.StatusCode)
	}
	if r, b := fetch(t, "GET", ok.URL+"/ui"); r.StatusCode != 200 || !strings.Contains(b, "not enabled") {
		t.Fatalf("ui without ring %d", r.StatusCode)
	}
}

func TestUIEscapesAndShowsDenials(t *testing.T) {
	ts, _ := fixture(t)
	r, b := fetch(t, "GET", ts.URL+"/ui")
	if r.StatusCode != 200 {
		t.Fatalf("%d %s", r.StatusCode, b)
	}
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	for _, bad := range []string{"<script>", "<b>", "<tag>"} {
		if strings.Contains(b, bad) {
			t.Fatalf("unescaped %s in page", bad)
		}
	}
	for _, want := range []string{
		"up.local/blocked/&lt;script&gt;alert(1)&lt;/script&gt;",
		"rule blocked: action deny &lt;b&gt;&#34;x&#34;&lt;/b&gt;",
		"signature:release", "sha256:" + strings.Repeat("e", 64),
		"rules: # &lt;tag&gt; &amp; more", "rev-123", "2m ago", "v-test",
		`href="/ui/decision?id=2"`,
	} {
		if !strings.Contains(b, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestUIFilters(t *testing.T) {
	ts, _ := fixture(t)
	_, b := fetch(t, "GET", ts.URL+"/ui?decision=allow")
	if !strings.Contains(b, "up.local/app/web") || strings.Contains(b, `id="d2"`) {
		t.Fatal("decision=allow does not filter")
	}
	_, b = fetch(t, "GET", ts.URL+"/ui?repo=up.local/blocked/**")
	if strings.Contains(b, `id="d1"`) || !strings.Contains(b, `id="d2"`) {
		t.Fatal("repo glob does not filter")
	}
	_, b = fetch(t, "GET", ts.URL+"/ui?rule=open")
	if !strings.Contains(b, `id="d1"`) || strings.Contains(b, `id="d2"`) {
		t.Fatal("rule does not filter")
	}
	_, b = fetch(t, "GET", ts.URL+"/ui?limit=1")
	if !strings.Contains(b, `id="d2"`) || strings.Contains(b, `id="d1"`) {
		t.Fatal("limit does not keep the newest")
	}
	for _, q := range []string{"decision=maybe", "repo=a//b", "limit=0", "limit=x"} {
		if r, b := fetch(t, "GET", ts.URL+"/ui?"+q); r.StatusCode != 400 || !strings.Contains(b, "Invalid filter") {
			t.Errorf("%s: %d", q, r.StatusCode)
		}
	}
}

func TestDecisionPage(t *testing.T) {
	ts, ring := fixture(t)
	r, b := fetch(t, "GET", ts.URL+"/ui/decision?id=2")
	if r.StatusCode != 200 {
		t.Fatalf("%d", r.StatusCode)
	}
	for _, want := range []string{"10.1.2.3:4444", "no signature by release", "rule blocked: action deny &lt;b&gt;", "rev-123", "failed"} {
		if !strings.Contains(b, want) {
			t.Errorf("detail lacks %q", want)
		}
	}
	if r, _ := fetch(t, "GET", ts.URL+"/ui/decision?id=99"); r.StatusCode != 404 {
		t.Fatalf("unknown id %d", r.StatusCode)
	}
	if r, b := fetch(t, "GET", ts.URL+"/ui/decision?id=%3Cx%3E"); r.StatusCode != 400 || strings.Contains(b, "<x>") {
		t.Fatalf("bad id %d", r.StatusCode)
	}
	for i := 0; i < 60; i++ {
		ring.Add(audit.Event{Time: now, Decision: "allow"})
	}
	if r, _ := fetch(t, "GET", ts.URL+"/ui/decision?id=2"); r.StatusCode != 404 {
		t.Fatalf("evicted id %d", r.StatusCode)
	}
	if r, b := fetch(t, "GET", ts.URL+"/ui/style.css"); r.StatusCode != 200 || !strings.Contains(b, "--deny") {
		t.Fatalf("css %d", r.StatusCode)
	}
}

func TestPolicyInfoOf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	src := "rules:\n  - name: blocked\n    match: [\"up.local/blocked/**\"]\n    action: deny\n  - name: open\n    match: [\"up.local/**\"]\n    action: allow\n"
	os.WriteFile(path, []byte(src), 0o644)
	p, err := policy.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	pi := PolicyInfoOf(p)
	if pi.Revision != p.Revision() || string(pi.Source) != src || pi.Note != "" || len(pi.Rules) != 2 ||
		pi.Rules[0].Name != "blocked" || pi.Rules[0].Action != "deny" || pi.Rules[1].Mode != "enforce" || pi.Rules[1].Patterns[0] != "up.local/**" {
		t.Fatalf("%+v", pi)
	}
	// Edited on disk, not reloaded: the note says so.
	os.WriteFile(path, []byte(strings.Replace(src, "action: allow", "action: deny", 1)), 0o644)
	if pi := PolicyInfoOf(p); !strings.Contains(pi.Note, "reload pending") {
		t.Fatalf("note %q", pi.Note)
	}
	os.WriteFile(path, []byte("rules: [\n"), 0o644)
	if pi := PolicyInfoOf(p); !strings.Contains(pi.Note, "does not load") {
		t.Fatalf("note %q", pi.Note)
	}
	if pi := PolicyInfoOf(nil); pi.Note == "" {
		t.Fatal("nil policy has no note")
	}
}
