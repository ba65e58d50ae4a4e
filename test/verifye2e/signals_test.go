package verifye2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/signals"
)

// signalsPolicy adds rules over external signals to the default policy
// (and a trust key the sandbox signs its answers with).
var signalsPolicy = strings.Replace(defaultPolicy, "      path: ./release.pub\n",
	"      path: ./release.pub\n    - name: sandboxkey\n      path: ./sandboxkey.pub\n", 1) + `  - name: pg-signals
    match: ["upstream.local/sig/**"]
    require:
      signatures: [release]
      signals: [sandbox]
      conditions:
        - name: sandbox-clean
          expr: 'signals.sandbox.verdict == "clean" && signals.sandbox.facts.egressAttempts == 0'
  - name: pg-signed-signals
    match: ["upstream.local/ssig/**"]
    require:
      signals: [{provider: sandbox, signedBy: [sandboxkey]}]
      conditions: ['signals.sandbox.verdict == "clean"']
  - name: pg-exec-hang
    match: ["upstream.local/hang/**"]
    require: {signals: [hang]}
  - name: pg-exec-garbage
    match: ["upstream.local/garbage/**"]
    require: {signals: [garbage]}
`

// behaviour is how the test provider answers for one digest.
type behaviour struct {
	status   int    // HTTP status (default 200)
	body     string // raw body instead of an answer
	block    bool   // never answer (until the request is cancelled)
	pending  bool
	verdict  string
	egress   int
	digest   string   // answer about this digest instead
	evidence []string // signed statements (bundle JSON)
}

// signalProvider is a real HTTPS provider for the tests: TLS with client
// certificate authentication, answering by digest as the test says, and
// counting the calls it gets per digest.
type signalProvider struct {
	srv                   *httptest.Server
	ca                    *harness.CA
	clientCert, clientKey string

	mu        sync.Mutex
	dbVersion string
	by        map[string]behaviour
	calls     map[string]int
}

func startSignalProvider(t *testing.T) *signalProvider {
	t.Helper()
	p := &signalProvider{ca: harness.NewCA(t), dbVersion: "db-1", by: map[string]behaviour{}, calls: map[string]int{}}
	p.clientCert, p.clientKey = p.ca.ClientCert(t, "pullgate")
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	cfg := p.ca.Server.Clone()
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, p.ca.Pool
	p.srv.TLS = cfg
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *signalProvider) set(d string, b behaviour) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.by[d] = b
}

func (p *signalProvider) count(d string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[d]
}

func (p *signalProvider) serve(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		// The TLS handshake requires one: never reached.
		http.Error(w, "client certificate required", http.StatusUnauthorized)
		return
	}
	var req signals.Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.APIVersion != signals.APIVersion {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.calls[req.Subject.Digest]++
	b, db := p.by[req.Subject.Digest], p.dbVersion
	p.mu.Unlock()
	switch {
	case b.block:
		<-r.Context().Done()
		return
	case b.status != 0:
		http.Error(w, "provider failure", b.status)
		return
	case b.body != "":
		_, _ = io.WriteString(w, b.body)
		return
	}
	about := req.Subject.Digest
	if b.digest != "" {
		about = b.digest
	}
	a := map[string]any{"apiVersion": signals.APIVersion, "provider": map[string]any{"name": "sandbox", "version": "1.4.0", "dbVersion": db},
		"subject": map[string]any{"digest": about}, "status": "done", "verdict": b.verdict, "facts": map[string]any{"egressAttempts": b.egress}}
	if b.pending {
		a["status"] = "pending"
		delete(a, "verdict")
	}
	if b.verdict == "" {
		delete(a, "verdict")
	}
	if len(b.evidence) > 0 {
		ev := make([]json.RawMessage, len(b.evidence))
		for i, e := range b.evidence {
			ev[i] = json.RawMessage(e)
		}
		a["evidence"] = ev
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}

// signedAnswer is the sandbox's answer about an image signed by k as an
// in-toto statement of https://pullgate.dev/signal/v1 (cosign v3
// attest-blob over the manifest bytes: the statement's subject is the
// image digest), as a Sigstore bundle.
func (e *env) signedAnswer(k *key, img *harness.Image, verdict string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	blob, pred, out := filepath.Join(dir, "manifest.json"), filepath.Join(dir, "pred.json"), filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(blob, img.Manifest, 0o600); err != nil {
		e.t.Fatal(err)
	}
	p := fmt.Sprintf(`{"provider":{"name":"sandbox","version":"1.4.0","dbVersion":"db-1"},"status":"done","verdict":%q,"facts":{"egressAttempts":0}}`, verdict)
	if err := os.WriteFile(pred, []byte(p), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.c3.run("attest-blob", "--key", k.cosignKey, "--type", "https://pullgate.dev/signal/v1", "--predicate", pred,
		"--bundle", out, "--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format", "-y", blob)
	b, err := os.ReadFile(out)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSignals: external signals end to end, through a real distribution
// upstream and the proxy, with cosign-signed images and a real HTTPS
// provider that requires a client certificate: a clean answer allows, the
// provider's findings, a pending answer, a timeout, a 5xx, malformed JSON
// and an answer about another digest deny with their reason (crane's error,
// the OCI DENIED error, the audit log's signals, `pullgate verify`); an
// answer signed by a trusted key counts, one signed by another key does
// not; a local program that hangs is killed at its timeout and one that
// prints garbage denies; answers are cached (a new repository path asks
// no second time) until the provider's database changes; 100 concurrent
// pulls of one cold digest make one provider call.
func TestSignals(t *testing.T) {
	prov := startSignalProvider(t)
	scripts := t.TempDir()
	hang := writeScript(t, scripts, "hang.sh", "sleep 60\n")
	garbage := writeScript(t, scripts, "garbage.sh", "cat >/dev/null\necho 'this is not JSON'\n")
	var sandboxKey *key
	e := newEnv(t, envOptions{policy: signalsPolicy,
		setup: func(e *env) {
			sandboxKey = newKey(t, e.c2, "sandboxkey")
			e.writeFile("sandboxkey.pub", sandboxKey.pub)
		},
		edit: func(doc map[string]any) {
			doc["signals"] = []any{
				map[string]any{"name": "sandbox", "url": prov.srv.URL + "/v1/signals", "ca": prov.ca.CertFile,
					"clientCert": prov.clientCert, "clientKey": prov.clientKey, "timeout": "3s", "cacheTTL": "1h"},
				map[string]any{"name": "hang", "exec": hang, "timeout": "1s"},
				map[string]any{"name": "garbage", "exec": garbage, "timeout": "5s"},
			}
		}})

	push := func(repo, tag string) *harness.Image {
		img := e.image(repo, tag)
		e.c2.sign(e.release, e.upRef(repo, img.Digest))
		return img
	}

	// Clean: allowed, and the audit line and `pullgate verify` carry the answer.
	clean := push("sig/api", "clean")
	prov.set(clean.Digest, behaviour{verdict: "clean"})
	if r := harness.CraneDigest(t, e.pxRef("sig/api:clean")); r.Err != nil || strings.TrimSpace(r.Stdout) != clean.Digest {
		t.Fatalf("crane digest of the clean image: %s", r)
	}
	e.expectProxyAllowed("sig/api:clean", clean.Digest)
	cli := e.expectCLI("sig/api:clean", 0)
	if len(cli.decision.Signals) != 1 || cli.decision.Signals[0].Provider != "sandbox" || cli.decision.Signals[0].Verdict != "clean" ||
		cli.decision.Signals[0].DBVersion != "db-1" {
		t.Fatalf("pullgate verify signals = %+v", cli.decision.Signals)
	}
	if got := prov.count(clean.Digest); got != 2 { // the proxy once, the CLI (its own process) once
		t.Fatalf("provider asked %d times about the clean image, want 2 (proxy + CLI)", got)
	}
	found := false
	for _, ev := range e.px.Audit(t) {
		if ev.Digest == clean.Digest && ev.Decision == "allow" && strings.Contains(toJSON(ev.Raw["signals"]), `"verdict":"clean"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("audit log has no allow of %s with the sandbox's answer", clean.Digest)
	}

	// Each failure denies with what failed.
	cases := []struct {
		tag    string
		b      behaviour
		reason string
		code   int
	}{
		{"malicious", behaviour{verdict: "malicious", egress: 3},
			`rule pg-signals: condition sandbox-clean: signals.sandbox.verdict == "clean" && signals.sandbox.facts.egressAttempts == 0 is false`, 13},
		{"pending", behaviour{pending: true}, "rule pg-signals: signal sandbox: pending: the provider has not finished looking at", 13},
		{"timeout", behaviour{block: true}, "rule pg-signals: signal sandbox: timeout", 1},
		{"5xx", behaviour{status: http.StatusBadGateway}, "rule pg-signals: signal sandbox: status", 1},
		{"malformed", behaviour{body: `{"apiVersion": "pullgate.dev/signals/v1", "status": `}, "rule pg-signals: signal sandbox: malformed", 1},
		{"other-digest", behaviour{verdict: "clean", digest: clean.Digest}, "rule pg-signals: signal sandbox: subject", 1},
	}
	for _, c := range cases {
		img := push("sig/api", c.tag)
		prov.set(img.Digest, c.b)
		start := time.Now()
		e.expectProxyDenied("sig/api:"+c.tag, c.reason)
		if c.tag == "timeout" && time.Since(start) > 45*time.Second {
			t.Fatalf("a provider that never answers held the pull for %v (timeout 3s)", time.Since(start))
		}
		e.expectCLI("sig/api:"+c.tag, c.code, c.reason)
	}

	// Signed answers: by the trusted key, allowed; by another key, denied
	// even though the unsigned answer says clean.
	good := e.image("ssig/model", "good")
	prov.set(good.Digest, behaviour{verdict: "clean", evidence: []string{e.signedAnswer(sandboxKey, good, "clean")}})
	e.expectProxyAllowed("ssig/model:good", good.Digest)
	forged := e.image("ssig/model", "forged")
	prov.set(forged.Digest, behaviour{verdict: "clean", evidence: []string{e.signedAnswer(e.attacker, forged, "clean")}})
	e.expectProxyDenied("ssig/model:forged", "rule pg-signed-signals: signal sandbox: no answer signed by sandboxkey")
	e.expectCLI("ssig/model:forged", 11, "rule pg-signed-signals: signal sandbox: no answer signed by sandboxkey")
	// Signed by a key the policy trusts, but not the one signedBy names.
	byRelease := e.image("ssig/model", "by-release")
	prov.set(byRelease.Digest, behaviour{verdict: "clean", evidence: []string{e.signedAnswer(e.release, byRelease, "clean")}})
	e.expectProxyDenied("ssig/model:by-release", "rule pg-signed-signals: signal sandbox: no answer signed by sandboxkey (found: signed by release)")
	// A trusted signature over a malicious verdict: the signed answer wins.
	signedBad := e.image("ssig/model", "signed-bad")
	prov.set(signedBad.Digest, behaviour{verdict: "clean", evidence: []string{e.signedAnswer(sandboxKey, signedBad, "malicious")}})
	e.expectProxyDenied("ssig/model:signed-bad", `rule pg-signed-signals: condition signals.sandbox.verdict == "clean" is false`)

	// An image index: the index and each platform manifest are asked about
	// by their own digests. The index's clean answer does not cover a
	// platform manifest the provider has not looked at.
	idx := e.up.PushIndex(t, "sig/multi", "v1", false)
	e.c2.sign(e.release, e.upRef("sig/multi", idx.Digest))
	amd, arm := idx.Children[0], idx.Children[1]
	prov.set(idx.Digest, behaviour{verdict: "clean"})
	prov.set(amd.Digest, behaviour{verdict: "clean"})
	prov.set(arm.Digest, behaviour{pending: true})
	if got, err := harness.GGCRIndexPlatform(e.pxRef("sig/multi:v1"), *amd.Platform); err != nil || got != amd.Digest {
		t.Fatalf("ggcr platform pull of the scanned platform: %s %v, want %s", got, err, amd.Digest)
	}
	e.expectProxyDenied("sig/multi@"+arm.Digest, "rule pg-signals: signal sandbox: pending: the provider has not finished looking at "+arm.Digest)
	if prov.count(arm.Digest) == 0 {
		t.Fatal("the platform manifest was not asked about")
	}

	// Local programs: one that hangs is killed at its timeout, one that
	// prints garbage is a malformed answer.
	h := e.image("hang/app", "v1")
	start := time.Now()
	e.expectProxyDenied("hang/app:v1", "rule pg-exec-hang: signal hang: timeout")
	if d := time.Since(start); d > 45*time.Second {
		t.Fatalf("a hanging provider program held the pull for %v (timeout 1s)", d)
	}
	_ = h
	e.image("garbage/app", "v1")
	e.expectProxyDenied("garbage/app:v1", "rule pg-exec-garbage: signal garbage: malformed")

	// Cache: the same digest in another repository (a new decision) reuses
	// the answer; a new database version seen on another digest makes it
	// stale and the decisions made on it are made again.
	if got := prov.count(clean.Digest); got != 2 {
		t.Fatalf("provider asked %d times about the clean image before the cache checks, want 2", got)
	}
	copied := e.up.PushV1Image(t, "sig/copy", "clean", e.v1Image("sig/api", clean.Digest))
	e.c2.sign(e.release, e.upRef("sig/copy", copied.Digest))
	e.expectProxyAllowed("sig/copy:clean", clean.Digest)
	if got := prov.count(clean.Digest); got != 2 {
		t.Fatalf("a second repository asked the provider again (%d calls, want 2): the answer was not reused", got)
	}
	prov.mu.Lock()
	prov.dbVersion = "db-2"
	prov.mu.Unlock()
	fresh := push("sig/api", "fresh")
	prov.set(fresh.Digest, behaviour{verdict: "clean"})
	e.expectProxyAllowed("sig/api:fresh", fresh.Digest)
	e.expectProxyAllowed("sig/api:clean", clean.Digest)
	if got := prov.count(clean.Digest); got != 3 {
		t.Fatalf("after the provider's database changed, the clean image was asked about %d times, want 3", got)
	}

	// 100 concurrent pulls of one cold digest: one provider call.
	cold := push("sig/api", "cold")
	prov.set(cold.Digest, behaviour{verdict: "clean"})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, body := e.manifestGET("sig/api@" + cold.Digest)
			if st != http.StatusOK {
				errs <- fmt.Errorf("status %d: %s", st, body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := prov.count(cold.Digest); got != 1 {
		t.Fatalf("100 concurrent pulls of a cold digest made %d provider calls, want 1", got)
	}
}

// v1Image reads an image from the upstream (to push it elsewhere).
func (e *env) v1Image(repo, dgst string) v1.Image {
	e.t.Helper()
	ref, err := name.ParseReference(e.upRef(repo, dgst), name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := remote.Image(ref, e.up.RemoteOptions()...)
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// vulnPolicy requires the reference provider's answer: no critical CVE.
const vulnPolicy = defaultPolicy + `  - name: pg-vuln
    match: ["upstream.local/vuln/**"]
    require:
      signatures: [release]
      signals: [vuln]
      conditions: ['signals.vuln.facts.counts.critical == 0']
`

// TestSignalReferenceProvider: the reference provider, pullgate-signal-vuln
// (built from cmd/), run by the proxy as a local program over a directory of
// Trivy and Grype reports (the project's test data, retargeted at images the
// test pushes): the image whose Trivy report has a CRITICAL CVE is denied,
// the one whose Grype report has only Low findings is served, and one no
// report names is pending, so denied.
func TestSignalReferenceProvider(t *testing.T) {
	bin := tools.Build(t, "./cmd/pullgate-signal-vuln")
	reports := t.TempDir()
	e := newEnv(t, envOptions{policy: vulnPolicy, edit: func(doc map[string]any) {
		doc["signals"] = []any{map[string]any{"name": "vuln", "exec": bin, "args": []any{"--reports", reports}, "timeout": "10s"}}
	}})
	push := func(tag string) *harness.Image {
		img := e.image("vuln/app", tag)
		e.c2.sign(e.release, e.upRef("vuln/app", img.Digest))
		return img
	}
	critical, low, unscanned := push("critical"), push("low"), push("unscanned")
	retarget := func(src, from, to string) {
		b, err := os.ReadFile(filepath.Join("..", "..", "cmd", "pullgate-signal-vuln", "testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), from) {
			t.Fatalf("%s does not name %s", src, from)
		}
		if err := os.WriteFile(filepath.Join(reports, src), []byte(strings.ReplaceAll(string(b), from, to)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	retarget("trivy-critical.json", "sha256:7835515593e99c4218a6df09e889a46358f977778e16300846e5bfce6ff204ed", critical.Digest)
	retarget("grype-low.json", "sha256:ce145e077d854116bd7b307c8a6bd360281fbaad15a681c452ce348f7321cd19", low.Digest)

	e.expectProxyAllowed("vuln/app:low", low.Digest)
	want := "rule pg-vuln: condition signals.vuln.facts.counts.critical == 0 is false"
	if r := harness.CraneDigest(t, e.pxRef("vuln/app:critical")); r.Err == nil || !strings.Contains(r.Stderr, want) {
		t.Fatalf("crane digest of the image with a critical CVE: want failure showing %q\n%s", want, r)
	}
	e.expectProxyDenied("vuln/app:critical", want)
	cli := e.expectCLI("vuln/app:critical", 13, want)
	if len(cli.decision.Signals) != 1 || cli.decision.Signals[0].Verdict != "vulnerable" || cli.decision.Signals[0].Findings != 4 {
		t.Fatalf("pullgate verify signals = %+v", cli.decision.Signals)
	}
	e.expectProxyDenied("vuln/app:unscanned", "rule pg-vuln: signal vuln: pending: the provider has not finished looking at "+unscanned.Digest)
}
