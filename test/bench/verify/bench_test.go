package verifybench

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

func policyLoad(path string) (*policy.Policy, error) { return policy.Load(path) }

func policyInput(repo string, d digest.Digest, res verify.Result) policy.Input {
	return policy.Input{Repository: repo, Digest: d, Evidence: []verify.Result{res}}
}

// latencies records per-iteration durations and reports percentiles, and
// the process CPU time per operation: on a shared, loaded machine wall time
// includes waiting for a CPU, CPU time does not.
type latencies struct {
	d   []time.Duration
	cpu time.Duration
}

func newLatencies(n int) *latencies {
	return &latencies{d: make([]time.Duration, 0, n), cpu: cpuTime()}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	b.ReportMetric(float64((cpuTime()-l.cpu).Nanoseconds())/float64(len(l.d)), "cpu-ns/op")
	slices.Sort(l.d)
	at := func(p float64) float64 {
		i := int(float64(len(l.d)-1) * p)
		return float64(l.d[i].Nanoseconds())
	}
	b.ReportMetric(at(0.50), "p50-ns")
	b.ReportMetric(at(0.99), "p99-ns")
	b.ReportMetric(at(0.999), "p999-ns")
}

// warmProxy is a proxy whose verdict cache holds an allow for a signed image.
type warmProxy struct {
	srv    *proxy.Server
	h      http.Handler
	digest string
	layer  string
}

func newWarmProxy(b *testing.B) *warmProxy {
	b.Helper()
	return newWarmProxyWith(b, os.Getenv("PULLGATE_BENCH_VSA") != "")
}

// newWarmProxyWith is newWarmProxy, signing VSAs when vsa is set.
func newWarmProxyWith(b *testing.B, vsa bool) *warmProxy {
	b.Helper()
	up := harness.StartUpstream(b, harness.UpstreamOptions{})
	img := up.PushImage(b, "app/web", "v1", harness.ImageOptions{Layers: 1})
	s := newSigner(b)
	d := digest.Digest(img.Digest)
	repo, err := remoteSigPush(b, up, d, s)
	if err != nil {
		b.Fatal(err)
	}
	_ = repo
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), s.pub, 0o600); err != nil {
		b.Fatal(err)
	}
	pol := "trust:\n  keys:\n    - name: release\n      path: ./release.pub\nrules:\n  - name: apps\n    match: [\"upstream.local/app/**\"]\n    require:\n      signatures: [release]\n"
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600); err != nil {
		b.Fatal(err)
	}
	cfgYAML := "listen: 127.0.0.1:0\nstorage: {path: ./data}\nupstreams: [{name: upstream.local, url: " + up.URL + "}]\npolicy: ./policy.yaml\naudit: {path: ./audit.jsonl}\nlog: {level: error}\n"
	if vsa {
		// The same, with the proxy signing VSAs (docs/vsa.md): the warm
		// path must not change.
		der, err := x509.MarshalPKCS8PrivateKey(newSigner(b).priv)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "vsa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			b.Fatal(err)
		}
		cfgYAML += "vsa: {key: ./vsa.key, verifierId: https://bench.example/pullgate}\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "pullgate.yaml"), []byte(cfgYAML), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "pullgate.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := proxy.Open(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	w := &warmProxy{srv: srv, h: srv.Handler(), digest: img.Digest, layer: img.Layers[0].Digest}
	// Warm: first decision verifies, later ones hit the verdict cache.
	dec, err := srv.Decide(context.Background(), "upstream.local", "app/web", img.Digest)
	if err != nil || !dec.Allowed {
		b.Fatalf("warm-up decision: %+v %v", dec, err)
	}
	if rec := w.get("/v2/upstream.local/app/web/manifests/v1"); rec.Code != http.StatusOK {
		b.Fatalf("warm-up GET: %d %s", rec.Code, rec.Body)
	}
	return w
}

func (w *warmProxy) get(path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, r)
	return rec
}

// remoteSigPush writes a cosign legacy signature for d to the upstream.
func remoteSigPush(b *testing.B, up *harness.Upstream, d digest.Digest, s *signer) (string, error) {
	payload := simpleSigning(d)
	art := up.PushArtifact(b, "app/web", harness.ArtifactOptions{
		Payload: payload, PayloadMediaType: cosign.SimpleSigningMediaType, Tag: cosign.TagFor(d, "sig"),
	})
	// PushArtifact has no layer annotations: rewrite the manifest with the
	// signature annotation on the layer (same blobs).
	sig := base64.StdEncoding.EncodeToString(s.sign(b, payload))
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` +
		digest.FromString("{}").String() + `","size":2},"layers":[{"mediaType":"` + cosign.SimpleSigningMediaType + `","digest":"` + art.Layers[0].Digest +
		`","size":` + itoa(len(payload)) + `,"annotations":{"` + cosign.SignatureAnnotation + `":"` + sig + `"}}]}`)
	up.TagManifest(b, "app/web", cosign.TagFor(d, "sig"), raw, "application/vnd.oci.image.manifest.v1+json")
	return "app/web", nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// BenchmarkDecideWarm: proxy.Server.Decide by digest with the verdict cache
// warm (the engine `pullgate verify` and every pull use). Target p99 < 50µs.
func BenchmarkDecideWarm(b *testing.B) {
	w := newWarmProxy(b)
	ctx := context.Background()
	lat := newLatencies(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		d, err := w.srv.Decide(ctx, "upstream.local", "app/web", w.digest)
		lat.d = append(lat.d, time.Since(t0))
		if err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
	}
	b.StopTimer()
	lat.report(b)
}

// BenchmarkHandlerWarm: GET manifest through the HTTP handler (routing,
// tag or digest, verdict cache, audit line, response), in-process.
func BenchmarkHandlerWarm(b *testing.B) {
	w := newWarmProxy(b)
	for _, tc := range []struct{ name, path string }{
		{"by-digest", "/v2/upstream.local/app/web/manifests/" + "DIGEST"},
		{"by-tag", "/v2/upstream.local/app/web/manifests/v1"},
	} {
		path := tc.path
		if tc.name == "by-digest" {
			path = "/v2/upstream.local/app/web/manifests/" + w.digest
		}
		b.Run(tc.name, func(b *testing.B) { w.benchGet(b, path) })
	}
}

// benchGet measures GETs of path through the handler, each expected 200.
func (w *warmProxy) benchGet(b *testing.B, path string) {
	lat := newLatencies(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rec := w.get(path)
		lat.d = append(lat.d, time.Since(t0))
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	lat.report(b)
}

// BenchmarkColdDecision: verify.Collect + rule evaluation with all evidence
// already fetched (in memory), key-based. 1 signature + 3 attestations with
// CEL conditions (target < 5ms), as cosign v2 legacy tags and as cosign v3
// bundle referrers, and the same decided by one Rego rule (/rego, issue 16:
// target ≤ 2× CEL); and 100 statements (target < 20ms).
func BenchmarkColdDecision(b *testing.B) {
	for _, tc := range []struct {
		name    string
		bundles bool
		extra   int
		rego    string
	}{
		{"sig1+att3/legacy", false, 0, ""},
		{"sig1+att3/legacy/rego", false, 0, coldRego},
		{"sig1+att3/bundles", true, 0, ""},
		{"sig1+att3/bundles/rego", true, 0, coldRego},
		{"statements100/legacy", false, 97, ""},
		{"statements100/bundles", true, 97, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			fx := newColdFixtureWith(b, tc.bundles, tc.extra, tc.rego)
			lat := newLatencies(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				fx.decide(b)
				lat.d = append(lat.d, time.Since(t0))
			}
			b.StopTimer()
			lat.report(b)
		})
	}
}

// TestFixtures runs the benchmark fixtures once as tests, so `go test`
// (without -bench) keeps them honest: each cold fixture is a real allow,
// and a tampered copy is denied.
func TestFixtures(t *testing.T) {
	// The Rego fixture allows what the CEL one allows, and denies without
	// the attestations.
	fx := newColdFixtureWith(t, false, 0, coldRego)
	fx.decide(t)
	res := verify.Collect(context.Background(), fx.f, fx.subject, fx.trust, fx.opts)
	res.Attestations = res.Attestations[1:]
	if ok, reasons := fx.eval(res); ok || len(reasons) != 1 || reasons[0] != "rule apps: rego: no SLSA provenance from https://ci.example/builder" {
		t.Fatalf("rego fixture without the SLSA attestation: allowed=%v %q", ok, reasons)
	}
	for _, bundles := range []bool{false, true} {
		fx := newColdFixture(t, bundles, 0)
		fx.decide(t)
		// Another key: the same evidence no longer verifies.
		other := newSigner(t)
		tr, err := verify.NewTrust(verify.TrustSpec{Keys: []verify.KeySpec{{Name: "release", PEM: other.pub}}})
		if err != nil {
			t.Fatal(err)
		}
		res := verify.Collect(context.Background(), fx.f, fx.subject, tr, fx.opts)
		if ok, _ := fx.eval(res); ok || len(res.Failures) != 4 {
			t.Fatalf("bundles=%v: evidence under an untrusted key: allowed=%v failures=%d", bundles, ok, len(res.Failures))
		}
	}
}
