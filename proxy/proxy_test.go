package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/prometheus/client_golang/prometheus"

	"golang.org/x/crypto/bcrypt"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
)

const testPolicy = `rules:
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: open
    match: ["upstream.local/**"]
    action: allow
`

type env struct {
	up    *upstream.Registry
	srv   *proxy.Server
	proxy *httptest.Server
	host  string
	dir   string
	// policy is the policy text (testPolicy when empty); upstreamKeys are
	// extra YAML keys of the upstream's configuration.
	policy       string
	upstreamKeys []string
	// storageKeys are extra keys of the storage section (", key: value").
	storageKeys string
	// auditPath is the audit log (default audit.jsonl in dir).
	auditPath string
	// reg is the metrics registry of the proxy open now.
	reg *prometheus.Registry
	// storageDriver is the shared test driver replicas open
	// (sharedmem-test when empty).
	storageDriver string
}

func start(t *testing.T, wrap func(http.Handler) http.Handler) *env {
	return startWith(t, wrap, "")
}

// startWith starts an upstream (its handler wrapped by wrap, if set) and a
// proxy with the given policy and extra upstream configuration keys.
func startWith(t testing.TB, wrap func(http.Handler) http.Handler, policy string, upstreamKeys ...string) *env {
	t.Helper()
	up, err := upstream.Start(upstream.Options{Wrap: wrap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	e := &env{up: up, dir: t.TempDir(), policy: policy, upstreamKeys: upstreamKeys}
	e.open(t)
	return e
}

// open opens a (new) proxy on e's storage with its own metrics registry:
// a restart when one was open before.
func (e *env) open(t testing.TB) *prometheus.Registry {
	t.Helper()
	pol := filepath.Join(e.dir, "policy.yaml")
	text := e.policy
	if text == "" {
		text = testPolicy
	}
	if err := os.WriteFile(pol, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var extra strings.Builder
	for _, k := range e.upstreamKeys {
		extra.WriteString("    " + k + "\n")
	}
	auditPath := e.auditPath
	if auditPath == "" {
		auditPath = filepath.Join(e.dir, "audit.jsonl")
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
storage: {path: %s%s}
upstreams:
  - name: upstream.local
    url: %s
    tagTTL: 1ms
%spolicy: %s
audit: {path: %s}
`, filepath.Join(e.dir, "data"), e.storageKeys, e.up.URL, extra.String(), pol, auditPath)))
	if err != nil {
		t.Fatal(err)
	}
	srv, ps, reg := serveProxy(t, cfg)
	e.srv, e.proxy, e.host, e.reg = srv, ps, strings.TrimPrefix(ps.URL, "http://"), reg
	return reg
}

// serve opens a proxy on cfg and serves it until the test ends.
func serve(t *testing.T, cfg *config.Config) *httptest.Server {
	t.Helper()
	_, ps, _ := serveProxy(t, cfg)
	return ps
}

// serveProxy opens the proxy of cfg with a metrics registry of its own and
// serves it until the test ends.
func serveProxy(t testing.TB, cfg *config.Config) (*proxy.Server, *httptest.Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	lg := slog.New(slog.DiscardHandler)
	if os.Getenv("PG_DEBUG_LOG") != "" {
		lg = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv, err := proxy.Open(context.Background(), cfg, lg, proxy.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ps := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ps.Close(); srv.Close() })
	return srv, ps, reg
}

func push(t *testing.T, host, repo string, img v1.Image) v1.Hash {
	t.Helper()
	ref, _ := name.ParseReference(host+"/"+repo, name.Insecure)
	if err := remote.Write(ref, img, remote.WithContext(context.Background())); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return d
}

func oneLayerImage(t *testing.T, size int) (v1.Image, v1.Hash) {
	t.Helper()
	buf := make([]byte, size)
	rand.Read(buf)
	layer := static.NewLayer(buf, types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layer.Digest()
	return img, ld
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestAllowDenyAndBlobGating(t *testing.T) {
	e := start(t, nil)
	img, _ := random.Image(2048, 2)
	want := push(t, e.up.Host, "app/web:1", img)
	blocked, _ := random.Image(2048, 1)
	push(t, e.up.Host, "blocked/x:1", blocked)

	ref, _ := name.ParseReference(e.host+"/upstream.local/app/web:1", name.Insecure)
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Fatalf("digest through proxy %s, upstream %s", d, want)
	}
	// A blob that belongs to no allowed manifest in this repo is refused,
	// even by digest, even if it exists upstream.
	bl, _ := blocked.Layers()
	bd, _ := bl[0].Digest()
	push(t, e.up.Host, "app/other:1", blocked)
	resp, body := get(t, e.proxy.URL+"/v2/upstream.local/app/web/blobs/"+bd.String())
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "not referenced by any manifest") {
		t.Fatalf("unreferenced blob: %d %s", resp.StatusCode, body)
	}
	resp, body = get(t, e.proxy.URL+"/v2/upstream.local/blocked/x/manifests/1")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"code":"DENIED"`) || !strings.Contains(string(body), "rule blocked") {
		t.Fatalf("denied manifest: %d %s", resp.StatusCode, body)
	}
}

// A lying upstream serves other bytes (same length) for a blob: the client's
// download is aborted, nothing is cached, and a later honest fetch works.
func TestLyingUpstreamBlob(t *testing.T) {
	var lie atomic.Bool
	var target atomic.Value
	target.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			t := target.Load().(string)
			if lie.Load() && r.Method == http.MethodGet && t != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+t) {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				b := rec.Body.Bytes()
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				if len(b) > 0 {
					b[len(b)-1] ^= 0xff
				}
				// Send most of it, pause so the proxy starts streaming
				// to its client, then the corrupted tail.
				w.Write(b[:len(b)/2])
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
				w.Write(b[len(b)/2:])
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := start(t, wrap)
	// Larger than the proxy's spool chunks, so that the first half is
	// streamed before the corrupted tail arrives.
	img, ld := oneLayerImage(t, 3<<20)
	push(t, e.up.Host, "app/lie:1", img)
	target.Store(ld.String())
	lie.Store(true)

	resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/lie/manifests/1")
	if resp.StatusCode != 200 {
		t.Fatalf("manifest: %d", resp.StatusCode)
	}
	r, err := http.Get(e.proxy.URL + "/v2/upstream.local/app/lie/blobs/" + ld.String())
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("expected the stream to start (200) and then abort; got %d", r.StatusCode)
	}
	n, rerr := io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if rerr == nil && n == r.ContentLength {
		t.Fatalf("client received a complete unverified blob (%d bytes)", n)
	}
	if n > r.ContentLength-64<<10 && r.ContentLength > 0 {
		t.Fatalf("client received %d of %d bytes: the tail was not held back", n, r.ContentLength)
	}
	h, _ := v1.NewHash(ld.String())
	if _, ok := e.srv.Store().Has(digestOf(h)); ok {
		t.Fatal("unverified blob was committed to the store")
	}
	lie.Store(false)
	resp, body := get(t, e.proxy.URL+"/v2/upstream.local/app/lie/blobs/"+ld.String())
	if resp.StatusCode != 200 || int64(len(body)) != 3<<20 {
		t.Fatalf("honest refetch: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// 20 clients asking for one uncached blob at once cause one upstream fetch.
func TestCoalescedFetch(t *testing.T) {
	gate := make(chan struct{})
	var target atomic.Value
	target.Store("")
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tg := target.Load().(string); tg != "" && strings.HasSuffix(r.URL.Path, "/blobs/"+tg) {
				<-gate // hold the upstream until every client is waiting
			}
			next.ServeHTTP(w, r)
		})
	}
	e := start(t, wrap)
	img, ld := oneLayerImage(t, 4<<20)
	push(t, e.up.Host, "app/big:1", img)
	target.Store(ld.String())
	if resp, _ := get(t, e.proxy.URL+"/v2/upstream.local/app/big/manifests/1"); resp.StatusCode != 200 {
		t.Fatal("manifest")
	}
	e.up.ResetCounts()
	const n = 20
	var wg sync.WaitGroup
	sums := make([][]byte, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, b := get(t, e.proxy.URL+"/v2/upstream.local/app/big/blobs/"+ld.String())
			if resp.StatusCode != 200 {
				t.Errorf("client %d: %d", i, resp.StatusCode)
			}
			sums[i] = b
		}(i)
	}
	// let every client reach the proxy, then release the upstream
	for e.up.Count("GET", "/blobs/"+ld.String()) == 0 {
		runtimeGosched()
	}
	close(gate)
	wg.Wait()
	if c := e.up.Count("GET", "/blobs/"+ld.String()); c != 1 {
		t.Fatalf("upstream blob GETs = %d, want 1", c)
	}
	for i := 1; i < n; i++ {
		if !bytes.Equal(sums[i], sums[0]) || len(sums[i]) != 4<<20 {
			t.Fatalf("client %d got different bytes", i)
		}
	}
}

// With the upstream down, verified content is served from the store (tags
// from their last resolution); an uncached image is refused.
func TestUpstreamDown(t *testing.T) {
	e := start(t, nil)
	img, _ := random.Image(1024, 2)
	want := push(t, e.up.Host, "app/cached:1", img)
	other, _ := random.Image(1024, 1)
	push(t, e.up.Host, "app/uncached:1", other)
	ref, _ := name.ParseReference(e.host+"/upstream.local/app/cached:1", name.Insecure)
	if _, err := remote.Image(ref); err != nil {
		t.Fatal(err)
	}
	g, _ := remote.Image(ref)
	ls, _ := g.Layers()
	for _, l := range ls {
		rc, _ := l.Compressed()
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	e.up.Close()
	img2, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("cached image with upstream down: %v", err)
	}
	if d, _ := img2.Digest(); d != want {
		t.Fatal("digest changed")
	}
	ls, _ = img2.Layers()
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	resp, body := get(t, e.proxy.URL+"/v2/upstream.local/app/uncached/manifests/1")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("uncached with upstream down: %d %s", resp.StatusCode, body)
	}
}

func TestAuditLine(t *testing.T) {
	e := start(t, nil)
	img, _ := random.Image(512, 1)
	d := push(t, e.up.Host, "app/a:1", img)
	get(t, e.proxy.URL+"/v2/upstream.local/app/a/manifests/1")
	get(t, e.proxy.URL+"/v2/upstream.local/blocked/b/manifests/1")
	b, _ := os.ReadFile(filepath.Join(e.dir, "audit.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit lines = %d: %s", len(lines), b)
	}
	var ev map[string]any
	json.Unmarshal([]byte(lines[0]), &ev)
	for _, k := range []string{"time", "client", "upstream", "repository", "reference", "digest", "rule", "decision", "reasons"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("audit event lacks %q: %s", k, lines[0])
		}
	}
	if ev["digest"] != d.String() || ev["decision"] != "allow" || ev["rule"] != "open" {
		t.Errorf("audit allow event: %s", lines[0])
	}
	json.Unmarshal([]byte(lines[1]), &ev)
	if ev["decision"] != "deny" || ev["rule"] != "blocked" {
		t.Errorf("audit deny event: %s", lines[1])
	}
}

// Docker's registry-mirrors send Docker Hub paths without an upstream
// prefix; defaultUpstream routes them, and policy sees the default upstream's
// repository.
func TestDefaultUpstream(t *testing.T) {
	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("rules:\n  - {name: hub-blocked, match: [\"hub.local/blocked/**\"], action: deny}\n  - {name: hub, match: [\"hub.local/**\"], action: allow}\n"), 0o644)
	cfg, err := config.Parse([]byte(fmt.Sprintf("defaultUpstream: hub.local\nstorage: {path: %s}\nupstreams: [{name: hub.local, url: %s}]\npolicy: %s\n",
		filepath.Join(dir, "data"), up.URL, pol)))
	if err != nil {
		t.Fatal(err)
	}
	ps := serve(t, cfg)
	img, _ := random.Image(256, 1)
	want := push(t, up.Host, "library/app:1", img)
	push(t, up.Host, "blocked/x:1", img)
	resp, _ := get(t, ps.URL+"/v2/library/app/manifests/1")
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("unprefixed path: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	resp, body := get(t, ps.URL+"/v2/blocked/x/manifests/1")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "hub-blocked") {
		t.Fatalf("policy on the default upstream: %d %s", resp.StatusCode, body)
	}
}

// Client auth configured in pullgate.yaml is enforced by the proxy itself:
// the token flow works for allowed users, others are refused before any
// upstream request, and the audit log names the client.
func TestClientAuthWired(t *testing.T) {
	up, err := upstream.Start(upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret-pw"), bcrypt.MinCost)
	hash2, _ := bcrypt.GenerateFromPassword([]byte("other-pw"), bcrypt.MinCost)
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:"+string(hash)+"\nbob:"+string(hash2)+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(testPolicy), 0o644)
	cfg, err := config.Load(writeFile(t, dir, "pullgate.yaml", fmt.Sprintf(`
storage: {path: data}
upstreams: [{name: upstream.local, url: %s}]
policy: policy.yaml
audit: {path: audit.jsonl}
auth:
  htpasswd: htpasswd
  token: {issuer: pullgate, service: pullgate}
  access:
    - repositories: ["upstream.local/app/**"]
      allow: [alice]
`, up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	ps := serve(t, cfg)
	host := strings.TrimPrefix(ps.URL, "http://")
	img, _ := random.Image(256, 1)
	want := push(t, up.Host, "app/a:1", img)

	ref, _ := name.ParseReference(host+"/upstream.local/app/a:1", name.Insecure)
	got, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret-pw"}))
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	if d, _ := got.Digest(); d != want {
		t.Fatal("digest differs")
	}
	up.ResetCounts()
	for _, c := range []struct {
		auth authn.Authenticator
		want int
	}{{authn.Anonymous, 401}, {&authn.Basic{Username: "alice", Password: "wrong"}, 401}, {&authn.Basic{Username: "bob", Password: "other-pw"}, 403}} {
		_, err := remote.Image(ref, remote.WithAuth(c.auth))
		var te *transport.Error
		if !errors.As(err, &te) || te.StatusCode != c.want {
			t.Errorf("%v: err = %v, want HTTP %d", c.auth, err, c.want)
		}
	}
	if n := up.Total(); n != 0 {
		t.Errorf("refused clients caused %d upstream requests", n)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if !strings.Contains(string(b), `"user":"alice"`) {
		t.Errorf("audit log does not name the client: %s", b)
	}
	if strings.Contains(string(b), "s3cret-pw") {
		t.Error("audit log contains a password")
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
