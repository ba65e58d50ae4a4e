package admin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/admin"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/config"
)

const browserPolicy = `rules:
  - name: blocked-tools
    description: tools nobody may pull
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: apps
    match: ["upstream.local/app/**"]
    action: allow
`

// chromium finds Debian's chromium, or skips (fails with PULLGATE_REQUIRE_TOOLS=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("PULLGATE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("PULLGATE_REQUIRE_TOOLS") == "1" {
		t.Fatal("chromium is required (PULLGATE_REQUIRE_TOOLS=1): apt-get install -y chromium")
	}
	t.Skip("chromium not installed (apt-get install -y chromium)")
	return ""
}

// TestAdminUIInChromium runs a real proxy in front of a real upstream, pulls
// one allowed and one denied image through it with go-containerregistry,
// feeds the admin page from the audit log the proxy wrote, and checks the
// page in headless Chromium.
func TestAdminUIInChromium(t *testing.T) {
	chromePath := chromium(t)

	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	dir := t.TempDir()
	allowed, _ := random.Image(1024, 2)
	blocked, _ := random.Image(1024, 1)
	pushTo(t, up.Host+"/app/web:1.0", allowed)
	pushTo(t, up.Host+"/blocked/tool:latest", blocked)

	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte(browserPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(dir, "audit.jsonl")
	cfg, err := config.Parse(fmt.Appendf(nil, "storage: {path: %s}\nupstreams:\n  - name: upstream.local\n    url: %s\npolicy: %s\naudit: {path: %s}\n",
		filepath.Join(dir, "data"), up.URL, polPath, auditPath))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := proxy.Open(context.Background(), cfg, slog.New(slog.DiscardHandler), proxy.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ps.Close(); srv.Close() })
	ring := audit.NewRing(500)
	fctx, stopFollow := context.WithCancel(context.Background())
	followed := make(chan error, 1)
	go func() {
		followed <- audit.Follow(fctx, auditPath, audit.FollowOptions{FromStart: true, Interval: 20 * time.Millisecond}, func(e audit.Event) { ring.Add(e) })
	}()
	t.Cleanup(func() {
		stopFollow()
		if err := <-followed; err != nil {
			t.Errorf("follow: %v", err)
		}
	})
	host := strings.TrimPrefix(ps.URL, "http://")

	// Real pulls: manifest and every layer of the allowed image; the
	// blocked one is refused with DENIED.
	ref, _ := name.ParseReference(host+"/upstream.local/app/web:1.0", name.Insecure)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	bref, _ := name.ParseReference(host+"/upstream.local/blocked/tool:latest", name.Insecure)
	_, err = remote.Image(bref)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("blocked pull: %v", err)
	}

	// The ring is fed by following the audit file the proxy writes (the
	// proxy has no accessor for its audit hook); wait for both decisions.
	deadline := time.Now().Add(15 * time.Second)
	var deny []audit.Entry
	for {
		deny, _ = ring.Recent(audit.Query{Decision: "deny"})
		allow, _ := ring.Recent(audit.Query{Decision: "allow", Kind: "manifest"})
		if len(deny) > 0 && len(allow) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit events followed: %d denials, %d allowed manifests", len(deny), len(allow))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(deny) != 1 || deny[0].Repository != "upstream.local/blocked/tool" {
		t.Fatalf("denials in the audit log: %+v", deny)
	}
	as := httptest.NewServer(admin.New(admin.Options{
		Gatherer: reg, Ring: ring, Version: "test",
		Policy: func() admin.PolicyInfo { return admin.PolicyInfoOf(srv.Policy()) },
		Ready: func() error {
			if srv.Policy() == nil {
				return errors.New("no policy")
			}
			return nil
		},
	}))
	t.Cleanup(as.Close)

	// /metrics on the admin handler carries the proxy's own decision counter.
	resp, err := http.Get(as.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mb), `pullgate_decisions_total{decision="deny",kind="manifest",rule="blocked-tools"} 1`) {
		t.Fatalf("metrics lack the denial:\n%s", mb)
	}

	// Headless Chromium.
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromePath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(as.URL+"/ui"),
		chromedp.WaitVisible(chromedp.CSS("#decisions")),
	); err != nil {
		t.Fatal(err)
	}
	denyRow, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#decisions tr.deny")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"upstream.local/blocked/tool", "latest", "blocked-tools", "rule blocked-tools: action deny", "deny"} {
		if !strings.Contains(denyRow, want) {
			t.Errorf("blocked row %q lacks %q", denyRow, want)
		}
	}
	table, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#decisions")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table, "upstream.local/app/web") {
		t.Errorf("allowed pull not listed: %q", table)
	}
	perReason, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#per-reason")))
	if err != nil || !strings.Contains(perReason, "rule blocked-tools: action deny") {
		t.Errorf("per-reason counts %q %v", perReason, err)
	}
	perRule, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#per-rule")))
	if err != nil || !strings.Contains(perRule, "blocked-tools") || !strings.Contains(perRule, "apps") {
		t.Errorf("per-rule counts %q %v", perRule, err)
	}
	src, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#policy-source")))
	if err != nil || !strings.Contains(src, "tools nobody may pull") {
		t.Errorf("policy source %q %v", src, err)
	}
	// The stylesheet loaded (CSP allows 'self' only): the header is dark.
	bg, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header.top")).backgroundColor`))
	if err != nil || bg != "rgb(29, 35, 48)" {
		t.Errorf("stylesheet not applied: header background %q %v", bg, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, "ui.png", shot)

	// The filter form works without JavaScript semantics: a GET with the
	// decision filter lists only the denial.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(as.URL+"/ui?decision=deny"),
		chromedp.WaitVisible(chromedp.CSS("#decisions")),
	); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#decisions > tbody > tr").length`))
	if err != nil || rows != 1 {
		t.Fatalf("deny filter shows %d rows (%v)", rows, err)
	}

	// The detail page of the denial: reasons and the digest decided.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS("#decisions tr.deny a[href^='/ui/decision']")),
		chromedp.WaitVisible(chromedp.CSS("#reasons")),
	); err != nil {
		t.Fatal(err)
	}
	reasons, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#reasons")))
	if err != nil || !strings.Contains(reasons, "rule blocked-tools: action deny") {
		t.Fatalf("detail reasons %q %v", reasons, err)
	}
	detail, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("dl.fields")))
	if err != nil || !strings.Contains(detail, "blocked-tools") || !strings.Contains(detail, deny[0].Revision) || deny[0].Revision == "" {
		t.Fatalf("detail lacks the rule or the policy revision %q: %q %v", deny[0].Revision, detail, err)
	}
	checks, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("table.checks")))
	if err != nil || !strings.Contains(checks, "failed") {
		t.Fatalf("detail checks %q %v", checks, err)
	}
	shot, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, "ui-decision.png", shot)
}

func pushTo(t *testing.T, refStr string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(refStr, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

// saveScreenshot checks the bytes are a PNG and writes them to the test's
// artifact directory (kept with go test -artifacts) and, when
// PULLGATE_UI_SCREENSHOT_DIR is set, there too: a relative directory is
// relative to the repository root, and "1" or "true" mean test/out.
func saveScreenshot(t *testing.T, name string, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if s := img.Bounds().Size(); s.X < 800 || s.Y < 400 {
		t.Fatalf("screenshot is %v", s)
	}
	dirs := []string{t.ArtifactDir()}
	if d := os.Getenv("PULLGATE_UI_SCREENSHOT_DIR"); d != "" {
		if d == "1" || d == "true" {
			d = filepath.Join("test", "out")
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(repoRoot(t), d)
		}
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			t.Fatal("go.mod not found above the test directory")
		}
		d = parent
	}
}
