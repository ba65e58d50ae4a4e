package engine_test

// Table tests of the decision engine driven directly, without any HTTP
// handler of pullgate, over a real upstream: the in-process distribution
// registry of test/harness, with signatures made by real signing code
// (attest.Sign: sigstore-go's bundle signer with an ECDSA key made here)
// and the policy written as an operator writes it.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/cosign"
)

const up = harness.DefaultUpstream

// testPolicy: blocked/** denied, open/** allowed, signed/** needs a
// signature by key release, models/** allowed with content checks;
// anything else matches no rule.
const testPolicy = `trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: open
    match: ["upstream.local/open/**"]
    action: allow
  - name: signed
    match: ["upstream.local/signed/**"]
    require:
      signatures: [release]
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      formats: { pickle: deny }
      denyCodeLayers: true
`

// env is an upstream registry, a policy with its trusted key, and the
// engines a test opens over it.
type env struct {
	up      *harness.Upstream
	dir     string
	release *ecdsa.PrivateKey // trusted by the policy
	other   *ecdsa.PrivateKey // trusted by nobody
	gate    *blobGate
	// requests counts upstream requests of every engine opened, by
	// "method kind" (the upstream client's OnRequest hook).
	mu       sync.Mutex
	requests map[string]int
	// now, when set, is the clock of every engine opened (Options.Now);
	// reg, when set, receives their metrics.
	now func() time.Time
	reg *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), gate: &blobGate{}, requests: map[string]int{}}
	e.up = harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true, Wrap: e.gate.wrap})
	var pub []byte
	e.release, pub = newKey(t)
	e.other, _ = newKey(t)
	if err := os.WriteFile(filepath.Join(e.dir, "release.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

func newKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// open opens an engine over the store in e.dir/<name> (the same name: the
// same store, as a restarted process finds it). It is closed when the
// test ends.
func (e *env) open(t *testing.T, name string) *engine.Engine {
	t.Helper()
	eng, _ := e.openClosable(t, name)
	return eng
}

// openClosable is open that also returns the engine's (and store's) close.
func (e *env) openClosable(t *testing.T, name string) (*engine.Engine, func()) {
	t.Helper()
	cfg, err := config.Parse(fmt.Appendf(nil, `
storage: {path: %s}
upstreams:
  - name: %s
    url: %s
policy: %s
`, filepath.Join(e.dir, name), up, e.up.URL, filepath.Join(e.dir, "policy.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	st, err := store.OpenFilesystem(ctx, cfg.Resolve(cfg.Storage.Path), store.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	opts := engine.Options{
		OnUpstreamRequest: func(string) func(method, kind string, status int, err error) {
			return func(method, kind string, _ int, _ error) {
				e.mu.Lock()
				e.requests[method+" "+kind]++
				e.mu.Unlock()
			}
		},
		Now: e.now,
	}
	if e.reg != nil {
		opts.Registerer = e.reg
	}
	eng, err := engine.New(ctx, cfg, st, log, opts)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	var once sync.Once
	closeAll := func() {
		once.Do(func() {
			if err := eng.Close(); err != nil {
				t.Errorf("close engine: %v", err)
			}
			if err := st.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
	}
	t.Cleanup(closeAll)
	return eng, closeAll
}

// upstreamRequests is how many upstream requests the engines made so far
// (kind "" for all, else those whose "method kind" contains it).
func (e *env) upstreamRequests(kind string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k, c := range e.requests {
		if strings.Contains(k, kind) {
			n += c
		}
	}
	return n
}

// blobGate holds the upstream's GETs of one blob until released: a fetch
// is then under way for as long as a test needs, without any sleep.
type blobGate struct {
	mu      sync.Mutex
	path    string        // "/blobs/<digest>" held, "" for none
	entered chan struct{} // one value per held GET
	release chan struct{} // closed: let them go
	gets    atomic.Int64  // GETs of the held blob
}

func (g *blobGate) hold(d digest.Digest) (entered <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.path, g.entered, g.release = "/blobs/"+d.String(), make(chan struct{}, 16), make(chan struct{})
	rel, once := g.release, sync.Once{}
	return g.entered, func() { once.Do(func() { close(rel) }) }
}

func (g *blobGate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		held := g.path != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, g.path)
		entered, release := g.entered, g.release
		g.mu.Unlock()
		if held {
			g.gets.Add(1)
			entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// deadline is the test's context, ending a little before the test's
// deadline so that a hang fails with a message.
func deadline(t *testing.T) context.Context {
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-10*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

func wait(t *testing.T, ctx context.Context, c <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-c:
	case <-ctx.Done():
		t.Fatalf("waiting for %s: %v", what, ctx.Err())
	}
}

// sign attaches to subject (in repo) a cosign v3 style signature made with
// k: a sigstore bundle (DSSE, in-toto statement of predicate type
// cosign/sign/v1 over the subject's digest) pushed as an OCI referrer.
func (e *env) sign(t *testing.T, repo string, subject *v1.Descriptor, k *ecdsa.PrivateKey) *harness.Artifact {
	t.Helper()
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"%s","digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
		repo, subject.Digest.Hex, cosign.SignPredicateType)
	bundle, err := attest.Sign(t.Context(), []byte(st), attest.SignOptions{Signer: k})
	if err != nil {
		t.Fatal(err)
	}
	return e.up.PushArtifact(t, repo, harness.ArtifactOptions{
		ArtifactType: cosign.BundleMediaType, Subject: subject,
		Payload: bundle, PayloadMediaType: cosign.BundleMediaType,
		Annotations: map[string]string{cosign.BundleContentAnnotation: "dsse-envelope"},
	})
}

func descOf(mediaType, dgst string, raw []byte) *v1.Descriptor {
	h, err := v1.NewHash(dgst)
	if err != nil {
		panic(err)
	}
	return &v1.Descriptor{MediaType: types.MediaType(mediaType), Digest: h, Size: int64(len(raw))}
}

func artifactDesc(a *harness.Artifact) *v1.Descriptor {
	return descOf(string(types.OCIManifestSchema1), a.Digest, a.Manifest)
}

func indexDesc(x *harness.Index) *v1.Descriptor { return descOf(x.MediaType, x.Digest, x.Manifest) }

// subject is a pull of repo by ref (a tag or a digest).
func subject(t *testing.T, eng *engine.Engine, repo, ref string) engine.Subject {
	t.Helper()
	sub, err := eng.NewSubject(up, repo, ref)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// admit decides sub as the manifest handler does: what the rule decides
// alone (nothing fetched), else the tag resolved and the manifest
// admitted.
func admit(t *testing.T, eng *engine.Engine, sub engine.Subject) (engine.Verdict, digest.Digest) {
	t.Helper()
	q, ok := eng.Query(t.Context(), sub)
	if !ok {
		t.Fatalf("no upstream %s", sub.Upstream)
	}
	if v, ok := q.RuleVerdict(); ok && !v.Allowed {
		return v, ""
	}
	dgst, err := eng.Resolve(q)
	if err != nil {
		t.Fatalf("resolve %s: %v", sub.Reference(), err)
	}
	m, v, _, err := eng.AdmitManifest(q, dgst)
	if err != nil {
		t.Fatalf("admit %s: %v", sub.Reference(), err)
	}
	if m == nil || digest.FromBytes(m.Raw) != dgst {
		t.Fatalf("admit %s: got manifest %v, want the bytes of %s", sub.Reference(), m, dgst)
	}
	return v, dgst
}

// world is the content every decision table runs over.
type world struct {
	open, blocked, unlisted     *harness.Image
	good, unsigned, otherSigned *harness.Image // in signed/
	goodSig, otherSig           *harness.Artifact
	index                       *harness.Index // signed/multi, signed by release
}

func seed(t *testing.T, e *env) *world {
	t.Helper()
	w := &world{}
	w.open = e.up.PushImage(t, "open/app", "1", harness.ImageOptions{})
	w.blocked = e.up.PushImage(t, "blocked/app", "1", harness.ImageOptions{})
	w.unlisted = e.up.PushImage(t, "elsewhere/app", "1", harness.ImageOptions{})
	w.good = e.up.PushImage(t, "signed/good", "1", harness.ImageOptions{})
	w.goodSig = e.sign(t, "signed/good", w.good.Descriptor(), e.release)
	w.unsigned = e.up.PushImage(t, "signed/none", "1", harness.ImageOptions{})
	w.otherSigned = e.up.PushImage(t, "signed/other", "1", harness.ImageOptions{})
	w.otherSig = e.sign(t, "signed/other", w.otherSigned.Descriptor(), e.other)
	w.index = e.up.PushIndex(t, "signed/multi", "1", false)
	e.sign(t, "signed/multi", indexDesc(w.index), e.release)
	return w
}

type want struct {
	allowed  bool
	exit     int    // when denied
	reason   string // in the reasons
	evidence bool   // decided as a signature/attestation artifact
	// offline: decided without any upstream request.
	offline bool
}

func check(t *testing.T, v engine.Verdict, w want) {
	t.Helper()
	reasons := strings.Join(v.Reasons, "; ")
	if v.Allowed != w.allowed || v.WouldDeny {
		t.Fatalf("allowed=%v wouldDeny=%v (%s); want allowed=%v", v.Allowed, v.WouldDeny, reasons, w.allowed)
	}
	if !w.allowed && v.ExitCode != w.exit {
		t.Errorf("exit code %d (%s); want %d", v.ExitCode, reasons, w.exit)
	}
	if w.allowed && v.ExitCode != 0 {
		t.Errorf("allowed with exit code %d", v.ExitCode)
	}
	if !strings.Contains(reasons, w.reason) {
		t.Errorf("reasons %q; want %q in them", reasons, w.reason)
	}
	if v.Evidence != w.evidence {
		t.Errorf("evidence=%v; want %v", v.Evidence, w.evidence)
	}
}

// TestDecideAndAdmitManifest runs each case through both ways in: Decide
// (`pullgate verify`) and the manifest handler's calls (RuleVerdict,
// Resolve, AdmitManifest), each on an engine of its own.
func TestDecideAndAdmitManifest(t *testing.T) {
	e := newEnv(t)
	w := seed(t, e)
	d := func(s string) digest.Digest { return digest.Digest(s) }
	for _, tc := range []struct {
		name string
		repo string
		ref  string
		// first is decided (admitted) before, on the same engine.
		first  []string // "repo ref"
		digest digest.Digest
		want   want
	}{
		{name: "no rule: fail closed, nothing fetched", repo: "elsewhere/app", ref: "1",
			want: want{exit: policy.ExitUnmet, reason: "no policy rule matches upstream.local/elsewhere/app", offline: true}},
		{name: "no rule by digest", repo: "elsewhere/app", ref: w.unlisted.Digest,
			want: want{exit: policy.ExitUnmet, reason: "no policy rule matches", offline: true}},
		{name: "deny rule", repo: "blocked/app", ref: "1",
			want: want{exit: policy.ExitUnmet, reason: "rule blocked: action deny", offline: true}},
		{name: "allow rule by tag", repo: "open/app", ref: "1", digest: d(w.open.Digest),
			want: want{allowed: true, reason: "rule open: allowed"}},
		{name: "allow rule by digest", repo: "open/app", ref: w.open.Digest, digest: d(w.open.Digest),
			want: want{allowed: true, reason: "rule open: allowed"}},
		{name: "verify: signed by the trusted key", repo: "signed/good", ref: "1", digest: d(w.good.Digest),
			want: want{allowed: true}},
		{name: "verify: signed, by digest", repo: "signed/good", ref: w.good.Digest, digest: d(w.good.Digest),
			want: want{allowed: true}},
		{name: "verify: no signature", repo: "signed/none", ref: "1", digest: d(w.unsigned.Digest),
			want: want{exit: policy.ExitNoEvidence, reason: "no signature by key release on " + w.unsigned.Digest}},
		{name: "verify: signed by another key", repo: "signed/other", ref: "1", digest: d(w.otherSigned.Digest),
			want: want{exit: policy.ExitInvalid, reason: "no signature by key release"}},
		{name: "signature of an allowed image", repo: "signed/good", ref: w.goodSig.Digest, digest: d(w.goodSig.Digest),
			want: want{allowed: true, evidence: true, reason: "signature/attestation artifact for allowed " + w.good.Digest}},
		{name: "signature of a denied image", repo: "signed/other", ref: w.otherSig.Digest, digest: d(w.otherSig.Digest),
			want: want{exit: policy.ExitUnmet, evidence: true, reason: "signature/attestation artifact for " + w.otherSigned.Digest + ", which is not allowed"}},
		{name: "signed index", repo: "signed/multi", ref: "1", digest: d(w.index.Digest),
			want: want{allowed: true}},
		{name: "child of an allowed index", repo: "signed/multi", ref: w.index.Children[1].Digest, first: []string{"signed/multi 1"},
			digest: d(w.index.Children[1].Digest), want: want{allowed: true, reason: "covered by allowed index " + w.index.Digest}},
		{name: "child without its index decided first", repo: "signed/multi", ref: w.index.Children[0].Digest,
			digest: d(w.index.Children[0].Digest), want: want{exit: policy.ExitNoEvidence, reason: "no signature by key release"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"decide", "admit"} {
				t.Run(path, func(t *testing.T) {
					eng := e.open(t, strings.NewReplacer(" ", "-", ":", "-", ",", "").Replace(tc.name)+"-"+path)
					for _, f := range tc.first {
						repo, ref, _ := strings.Cut(f, " ")
						if v, _ := admit(t, eng, subject(t, eng, repo, ref)); !v.Allowed {
							t.Fatalf("%s: %v", f, v.Reasons)
						}
					}
					sub := subject(t, eng, tc.repo, tc.ref)
					if _, err := digest.Parse(tc.ref); err == nil {
						if sub.Tag != "" || sub.Digest != digest.Digest(tc.ref) {
							t.Fatalf("subject %+v of a digest", sub)
						}
					} else if sub.Tag != tc.ref || sub.Digest != "" {
						t.Fatalf("subject %+v of a tag", sub)
					}
					before := e.upstreamRequests("")
					var v engine.Verdict
					var got digest.Digest
					if path == "decide" {
						dec, err := eng.Decide(t.Context(), sub)
						if err != nil {
							t.Fatal(err)
						}
						if dec.Repository != up+"/"+tc.repo || dec.Reference != tc.ref {
							t.Errorf("decision about %s@%s", dec.Repository, dec.Reference)
						}
						v, got = dec.Verdict, dec.Digest
					} else {
						v, got = admit(t, eng, sub)
					}
					check(t, v, tc.want)
					if n := e.upstreamRequests("") - before; tc.want.offline && n != 0 {
						t.Errorf("%d upstream requests; a rule that decides alone needs none", n)
					} else if !tc.want.offline && n == 0 {
						t.Errorf("no upstream request for a decision that needs the manifest")
					}
					if got != tc.digest {
						t.Errorf("decided digest %q; want %q", got, tc.digest)
					}
				})
			}
		})
	}
}

// TestAdmitManifestDecidesRuleOnlyFirst: AdmitManifest itself answers what
// a rule decides alone (no rule, deny) before it fetches anything, for a
// caller that does not ask RuleVerdict first (an admission hook, say).
func TestAdmitManifestDecidesRuleOnlyFirst(t *testing.T) {
	e := newEnv(t)
	img := e.up.PushImage(t, "blocked/app", "1", harness.ImageOptions{})
	other := e.up.PushImage(t, "elsewhere/app", "1", harness.ImageOptions{})
	eng := e.open(t, "store")
	for _, tc := range []struct{ repo, dgst, reason string }{
		{"blocked/app", img.Digest, "rule blocked: action deny"},
		{"elsewhere/app", other.Digest, "no policy rule matches"},
	} {
		q, ok := eng.Query(t.Context(), subject(t, eng, tc.repo, tc.dgst))
		if !ok {
			t.Fatal("no upstream")
		}
		before := e.upstreamRequests("")
		m, v, _, err := eng.AdmitManifest(q, digest.Digest(tc.dgst))
		if err != nil {
			t.Fatal(err)
		}
		if m != nil || v.Allowed || !strings.Contains(strings.Join(v.Reasons, "; "), tc.reason) {
			t.Errorf("%s: manifest %v, verdict %+v; want a denial (%s) and no manifest", tc.repo, m, v, tc.reason)
		}
		if n := e.upstreamRequests("") - before; n != 0 {
			t.Errorf("%s: %d upstream requests; a rule that decides alone needs none", tc.repo, n)
		}
	}
}

// TestTagResolution: a tag is resolved through the upstream (a HEAD) and
// the decision is about the digest it names now; a digest is not resolved.
func TestTagResolution(t *testing.T) {
	e := newEnv(t)
	img := e.up.PushImage(t, "open/app", "1", harness.ImageOptions{})
	eng := e.open(t, "store")
	for _, tc := range []struct {
		ref   string
		want  digest.Digest
		heads int
	}{
		{"1", digest.Digest(img.Digest), 1},
		{img.Digest, digest.Digest(img.Digest), 0},
	} {
		q, _ := eng.Query(t.Context(), subject(t, eng, "open/app", tc.ref))
		before := e.up.Count(http.MethodHead, "/manifests/1")
		got, err := eng.Resolve(q)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s resolved to %s; want %s", tc.ref, got, tc.want)
		}
		if n := e.up.Count(http.MethodHead, "/manifests/1") - before; n != tc.heads {
			t.Errorf("%s: %d HEADs of the tag; want %d", tc.ref, n, tc.heads)
		}
	}
	// The tag moves: an engine that has not resolved it decides the new
	// digest.
	img2 := e.up.PushImage(t, "open/app", "1", harness.ImageOptions{})
	eng2 := e.open(t, "store2")
	dec, err := eng2.Decide(t.Context(), subject(t, eng2, "open/app", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if dec.Digest != digest.Digest(img2.Digest) || !dec.Allowed {
		t.Fatalf("moved tag decided as %s (allowed %v); want %s", dec.Digest, dec.Allowed, img2.Digest)
	}
}

// TestAdmitBlob: a blob is let out only through an allowed manifest of the
// repository that references it.
func TestAdmitBlob(t *testing.T) {
	e := newEnv(t)
	w := seed(t, e)
	stray := e.up.PushBlob(t, "open/app", []byte("a blob no manifest lists"))
	for _, tc := range []struct {
		name     string
		admit    []string // "repo ref" admitted first
		repo     string
		blob     string
		manifest string // the grant's manifest; "" refused
		reason   string
		offline  bool
	}{
		{name: "layer of an allowed manifest", admit: []string{"open/app 1"}, repo: "open/app", blob: w.open.Layers[0].Digest, manifest: w.open.Digest},
		{name: "config of an allowed manifest", admit: []string{"open/app 1"}, repo: "open/app", blob: w.open.Config.Digest, manifest: w.open.Digest},
		{name: "layer of a verified manifest", admit: []string{"signed/good 1"}, repo: "signed/good", blob: w.good.Layers[0].Digest, manifest: w.good.Digest},
		{name: "layer of a child of an allowed index", admit: []string{"signed/multi 1", "signed/multi " + w.index.Children[0].Digest}, repo: "signed/multi", blob: w.index.Children[0].Layers[0].Digest, manifest: w.index.Children[0].Digest},
		{name: "layer of a denied manifest", admit: []string{"signed/none 1"}, repo: "signed/none", blob: w.unsigned.Layers[0].Digest,
			reason: "belongs only to denied manifests; rule signed: no signature by key release on " + w.unsigned.Digest},
		{name: "layer of an allowed manifest asked in another repository", admit: []string{"open/app 1"}, repo: "signed/good", blob: w.open.Layers[0].Digest,
			reason: "pull the image by tag or digest first"},
		{name: "blob nobody referenced", admit: []string{"open/app 1"}, repo: "open/app", blob: stray,
			reason: "is not referenced by any manifest pullgate allowed in upstream.local/open/app; pull the image by tag or digest first"},
		{name: "blob of a repository no rule matches", repo: "elsewhere/app", blob: w.unlisted.Layers[0].Digest,
			reason: "no policy rule matches", offline: true},
		{name: "blob of a denied repository", repo: "blocked/app", blob: w.blocked.Layers[0].Digest,
			reason: "rule blocked: action deny", offline: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := e.open(t, strings.ReplaceAll(t.Name(), "/", "-")) // a store of its own
			for _, a := range tc.admit {
				repo, ref, _ := strings.Cut(a, " ")
				admit(t, eng, subject(t, eng, repo, ref))
			}
			before := e.upstreamRequests("")
			q, _ := eng.Query(t.Context(), subject(t, eng, tc.repo, tc.blob))
			g, v, ok, err := eng.AdmitBlob(q)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (tc.manifest != "") {
				t.Fatalf("granted=%v (%v); want %v", ok, v.Reasons, tc.manifest != "")
			}
			if ok {
				if g.Manifest != digest.Digest(tc.manifest) || g.Desc.Digest != digest.Digest(tc.blob) || g.Evidence {
					t.Errorf("grant %+v; want through %s", g, tc.manifest)
				}
				return
			}
			if v.Allowed || v.ExitCode == 0 || !strings.Contains(strings.Join(v.Reasons, "; "), tc.reason) {
				t.Errorf("refusal %+v; want %q in its reasons", v, tc.reason)
			}
			if n := e.upstreamRequests("") - before; tc.offline && n != 0 {
				t.Errorf("%d upstream requests; want none", n)
			}
		})
	}
}

// TestEvidenceChainDepth: a signature of a signature of an image is
// decided (depth 2); one more level is refused by name.
func TestEvidenceChainDepth(t *testing.T) {
	e := newEnv(t)
	const repo = "signed/chain"
	img := e.up.PushImage(t, repo, "1", harness.ImageOptions{})
	sig1 := e.sign(t, repo, img.Descriptor(), e.release)
	sig2 := e.sign(t, repo, artifactDesc(sig1), e.release)
	sig3 := e.sign(t, repo, artifactDesc(sig2), e.release)
	for _, tc := range []struct {
		name   string
		dgst   string
		allow  bool
		reason string
	}{
		{"image", img.Digest, true, ""},
		{"signature of the image", sig1.Digest, true, "for allowed " + img.Digest},
		{"signature of the signature", sig2.Digest, true, "for allowed " + sig1.Digest},
		{"signature of a signature of a signature", sig3.Digest, false, "evidence chain too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng := e.open(t, "s-"+tc.dgst[7:19])
			dec, err := eng.Decide(t.Context(), subject(t, eng, repo, tc.dgst))
			if err != nil {
				t.Fatal(err)
			}
			if dec.Allowed != tc.allow || !strings.Contains(strings.Join(dec.Reasons, "; "), tc.reason) {
				t.Fatalf("allowed=%v %q; want %v with %q", dec.Allowed, dec.Reasons, tc.allow, tc.reason)
			}
			if !tc.allow && dec.ExitCode != policy.ExitUnmet {
				t.Errorf("exit code %d; want %d", dec.ExitCode, policy.ExitUnmet)
			}
		})
	}
}

// fetchAll reads a fetch to its end as a client would (CopyTo) and waits
// for its verification.
func fetchAll(t *testing.T, ctx context.Context, f *inflight.Fetch, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.CopyTo(ctx, &buf, 0, size); err != nil {
		t.Fatalf("copy: %v", err)
	}
	if err := f.Verified(ctx); err != nil {
		t.Fatalf("verified: %v", err)
	}
	return buf.Bytes()
}

// grant is the grant AdmitBlob gives for blob in repo.
func grant(t *testing.T, ctx context.Context, eng *engine.Engine, repo, blob string) (*engine.Query, engine.BlobGrant) {
	t.Helper()
	q, _ := eng.Query(ctx, subject(t, eng, repo, blob))
	g, v, ok, err := eng.AdmitBlob(q)
	if err != nil || !ok {
		t.Fatalf("grant of %s: %v %v", blob, err, v.Reasons)
	}
	return q, g
}

// grantedLayer pushes open/app:1 with one layer of size random bytes,
// admits it on an engine of its own and returns the layer's grant.
func grantedLayer(t *testing.T, ctx context.Context, e *env, size int64) (*engine.Engine, *engine.Query, engine.BlobGrant, harness.Blob) {
	t.Helper()
	img := e.up.PushImage(t, "open/app", "1", harness.ImageOptions{LayerSize: size, Static: true})
	eng := e.open(t, "s")
	admit(t, eng, subject(t, eng, "open/app", "1"))
	q, g := grant(t, ctx, eng, "open/app", img.Layers[0].Digest)
	return eng, q, g, img.Layers[0]
}

// TestFetch: a granted blob is downloaded once, verified, sent and stored;
// a second request while it runs joins it.
func TestFetch(t *testing.T) {
	e, ctx := newEnv(t), deadline(t)
	eng, q, g, layer := grantedLayer(t, ctx, e, 300<<10)
	entered, release := e.gate.hold(g.Desc.Digest)
	defer release()
	f1, err := eng.Fetch(q, g)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Release()
	wait(t, ctx, entered, "the upstream GET of the blob")
	f2, err := eng.Fetch(q, g)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Release()
	if f1 != f2 {
		t.Fatal("a second fetch of the same blob, checked the same way, did not join the first")
	}
	release()
	for i, f := range []*inflight.Fetch{f1, f2} {
		if got := fetchAll(t, ctx, f, layer.Size); !bytes.Equal(got, layer.Data) {
			t.Fatalf("reader %d: %d bytes, not the blob's %d", i, len(got), len(layer.Data))
		}
	}
	if n := e.gate.gets.Load(); n != 1 {
		t.Fatalf("%d upstream GETs of the blob; want 1", n)
	}
	if size, ok := eng.Store().Has(g.Desc.Digest); !ok || size != layer.Size {
		t.Fatalf("store has %v (%d bytes) after the fetch; want %d bytes", ok, size, layer.Size)
	}
}

// TestFetchFromLyingUpstream: bytes that do not hash to the digest end
// the fetch with an error for every reader, and nothing is stored.
func TestFetchFromLyingUpstream(t *testing.T) {
	e, ctx := newEnv(t), deadline(t)
	eng, q, g, layer := grantedLayer(t, ctx, e, 200<<10)
	e.up.Liar.LieBlob(layer.Digest)
	f, err := eng.Fetch(q, g)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	var buf bytes.Buffer
	n, cerr := f.CopyTo(ctx, &buf, 0, layer.Size)
	if verr := f.Verified(ctx); cerr == nil || verr == nil || !strings.Contains(verr.Error(), "does not match") {
		t.Fatalf("a lying upstream's blob: copied %d bytes (%v), verified: %v", n, cerr, verr)
	}
	if n >= layer.Size {
		t.Fatalf("all %d bytes of a blob that failed its digest were sent", n)
	}
	if _, ok := eng.Store().Has(g.Desc.Digest); ok {
		t.Fatal("the store holds a blob that failed its digest")
	}
}

// TestFetchWithOtherClassesIsNotShared: under a content rule a download is
// shared only by requests that inspect the blob as the same classes; a
// declaration allowed while it runs (another tag naming the blob
// otherwise) starts a download of its own.
func TestFetchWithOtherClassesIsNotShared(t *testing.T) {
	e := newEnv(t)
	ctx := deadline(t)
	const repo = "models/m"
	tmpl := []byte("You are a helpful assistant.\n{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
	blob := e.up.PushBlob(t, repo, tmpl)
	model(t, e, repo, "readme", blob, len(tmpl), "README.md")
	model(t, e, repo, "tmpl", blob, len(tmpl), "chat_template.jinja")
	eng := e.open(t, "s")
	admit(t, eng, subject(t, eng, repo, "readme"))
	q1, g1 := grant(t, ctx, eng, repo, blob)
	entered, release := e.gate.hold(g1.Desc.Digest)
	defer release()
	f1, err := eng.Fetch(q1, g1)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Release()
	wait(t, ctx, entered, "the first upstream GET")
	if same, err := eng.Fetch(q1, g1); err != nil {
		t.Fatal(err)
	} else {
		same.Release()
		if same != f1 {
			t.Fatal("a fetch checked the same way did not join")
		}
	}
	admit(t, eng, subject(t, eng, repo, "tmpl"))
	q2, g2 := grant(t, ctx, eng, repo, blob)
	if len(g2.Classes) != 2 || len(g1.Classes) != 1 {
		t.Fatalf("classes %v then %v; want one then two", g1.Classes, g2.Classes)
	}
	f2, err := eng.Fetch(q2, g2)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Release()
	if f2 == f1 {
		t.Fatal("a fetch inspecting the blob as more classes joined one that inspects it as fewer")
	}
	wait(t, ctx, entered, "the second upstream GET")
	release()
	for _, f := range []*inflight.Fetch{f1, f2} {
		if got := fetchAll(t, ctx, f, int64(len(tmpl))); !bytes.Equal(got, tmpl) {
			t.Fatalf("got %q", got)
		}
	}
	if n := e.gate.gets.Load(); n != 2 {
		t.Fatalf("%d upstream GETs; want 2", n)
	}
}

// model pushes a ModelPack-style manifest under repo:tag whose one layer
// is blob, named title.
func model(t *testing.T, e *env, repo, tag, blob string, size int, title string) {
	t.Helper()
	cfg := []byte(fmt.Sprintf(`{"tag":%q}`, tag))
	cd := e.up.PushBlob(t, repo, cfg)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: "application/vnd.cncf.model.config.v1+json", Digest: digest.Digest(cd), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: "application/vnd.cncf.model.doc.v1.raw", Digest: digest.Digest(blob), Size: int64(size),
			Annotations: map[string]string{"org.opencontainers.image.title": title}}}}
	m.SchemaVersion = 2
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	e.up.TagManifest(t, repo, tag, raw, ocispec.MediaTypeImageManifest)
}

// TestRestartDecidesBlobsByPersistedLinks: a new engine over the same
// store grants a blob by the links the first one recorded, without any
// manifest admitted in it, and refuses a denied manifest's blob likewise.
func TestRestartDecidesBlobsByPersistedLinks(t *testing.T) {
	e := newEnv(t)
	w := seed(t, e)
	first, closeFirst := e.openClosable(t, "s")
	for _, r := range []string{"open/app 1", "signed/none 1", "signed/multi 1", "signed/multi " + w.index.Children[1].Digest} {
		repo, ref, _ := strings.Cut(r, " ")
		admit(t, first, subject(t, first, repo, ref))
	}
	closeFirst()
	second := e.open(t, "s")
	for _, tc := range []struct {
		repo, blob, manifest, reason string
	}{
		{"open/app", w.open.Layers[0].Digest, w.open.Digest, ""},
		{"signed/multi", w.index.Children[1].Layers[0].Digest, w.index.Children[1].Digest, ""},
		{"signed/none", w.unsigned.Layers[0].Digest, "", "belongs only to denied manifests"},
	} {
		q, _ := second.Query(t.Context(), subject(t, second, tc.repo, tc.blob))
		g, v, ok, err := second.AdmitBlob(q)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (tc.manifest != "") || ok && g.Manifest != digest.Digest(tc.manifest) ||
			!ok && !strings.Contains(strings.Join(v.Reasons, "; "), tc.reason) {
			t.Errorf("%s %s after a restart: granted=%v through %s (%v); want %q %q", tc.repo, tc.blob, ok, g.Manifest, v.Reasons, tc.manifest, tc.reason)
		}
	}
}

// Decide (pullgate verify) of an index under a rule with require.conditions
// decides every platform manifest it lists: a platform that fails the
// conditions denies the index, naming the platform; an unknown/unknown
// manifest (a buildx attestation manifest, run by no runtime) is skipped.
func TestDecideIndexPlatforms(t *testing.T) {
	e := newEnv(t)
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(`rules:
  - name: nonroot
    match: ["**"]
    require:
      conditions:
        - name: uid
          expr: 'config != null && config.user.matches("^[0-9]+$") && int(config.user) != 0'
`), 0o644); err != nil {
		t.Fatal(err)
	}
	img := func(user string, p v1.Platform) harness.ImageOptions {
		return harness.ImageOptions{Platform: &p, Config: func(cf *v1.ConfigFile) { cf.Config.User = user }}
	}
	amd, arm := v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}
	att := v1.Platform{OS: "unknown", Architecture: "unknown"}
	bad := e.up.PushIndexOf(t, "multi/app", "bad", img("1000", amd), img("0", arm), img("", att))
	good := e.up.PushIndexOf(t, "multi/app", "good", img("1000", amd), img("1001", arm), img("", att))
	eng := e.open(t, "store")

	dec, err := eng.Decide(t.Context(), subject(t, eng, "multi/app", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	want := "rule nonroot: platform linux/arm64 " + bad.Children[1].Digest + ": condition uid: "
	if dec.Allowed || dec.ExitCode != policy.ExitUnmet || len(dec.Reasons) != 1 || !strings.HasPrefix(dec.Reasons[0], want) {
		t.Fatalf("index with a root platform: allowed=%v exit=%d reasons=%q; want denied 13 with %q", dec.Allowed, dec.ExitCode, dec.Reasons, want)
	}
	dec, err = eng.Decide(t.Context(), subject(t, eng, "multi/app", "good"))
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	for _, c := range dec.Checks {
		if c.Name == "platform" {
			details = append(details, c.Detail)
		}
	}
	if !dec.Allowed || dec.ExitCode != 0 || len(details) != 3 || !strings.Contains(details[2], good.Children[2].Digest+": not decided (unknown/unknown") {
		t.Fatalf("index of non-root platforms: allowed=%v exit=%d reasons=%q platforms=%q", dec.Allowed, dec.ExitCode, dec.Reasons, details)
	}
	// The index itself is still served as before (the proxy decides each
	// platform when a client pulls it).
	q, _ := eng.Query(t.Context(), subject(t, eng, "multi/app", "bad"))
	if _, v, _, err := eng.AdmitManifest(q, digest.Digest(bad.Digest)); err != nil || !v.Allowed {
		t.Fatalf("AdmitManifest of the index: %v %v", v, err)
	}
}
