package vsae2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/attest"
)

// clock is the proxy's clock in a test: it moves only when told to.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// proxyEnv is an env whose cosign key is the policy's release key, and a
// directory with the proxy's policy and VSA key.
func proxyEnv(t *testing.T, referrersAPI bool) (*env, string, string) {
	t.Helper()
	e := newEnv(t, referrersAPI)
	dir := t.TempDir()
	writeVSAKey(t, dir)
	os.WriteFile(filepath.Join(dir, "release.pub"), mustRead(t, e.pub), 0o644)
	policy := strings.ReplaceAll(proxyPolicy, "%UP%", e.u.Name)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600)
	os.WriteFile(filepath.Join(e.dir, "vsa.pub"), mustRead(t, filepath.Join(dir, "vsa.pub")), 0o644)
	return e, dir, policy
}

// signedImage pushes an image to repo and signs it with cosign v3 (the
// release key): a bundle referrer, through the referrers API or the
// sha256-<hex> tag fallback as the upstream has it.
func (e *env) signedImage(repo string) *harness.Image {
	e.t.Helper()
	img := e.u.PushImage(e.t, repo, "1.0", harness.ImageOptions{})
	e.cosign("cosign3", "sign", "--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false",
		"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", e.u.Ref(img.Repo+"@"+img.Digest))
	return img
}

// vsaManifest reads the VSA manifest m through the proxy.
func (g *gateway) vsaManifest(repo string, m digest.Digest) (int, ocispec.Manifest) {
	g.t.Helper()
	st, b := g.get(repo + "/manifests/" + m.String())
	var man ocispec.Manifest
	if st == http.StatusOK {
		if err := json.Unmarshal(b, &man); err != nil || len(man.Layers) != 1 {
			g.t.Fatalf("VSA manifest: %v %s", err, b)
		}
	}
	return st, man
}

// TestProxyVSAEmptyConfigRevisions: the config of every VSA manifest is
// the same empty descriptor ({}). After a policy switch A→B→A (or replicas
// on different revisions sharing a store), the VSA of revision A is listed
// again, and every object of it, its config included, is served: a
// recorded VSA of another revision does not take the config away.
func TestProxyVSAEmptyConfigRevisions(t *testing.T) {
	e, dir, policyA := proxyEnv(t, true)
	good := e.signedImage("app/good")
	g := startGateway(t, dir, e.u)
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image: status %d", st)
	}
	dA := g.waitVSA(good.Repo, good.Digest, "")
	revA := g.srv.Policy().Revision()

	setPolicy := func(p string) string {
		t.Helper()
		os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(p), 0o600)
		if err := g.srv.ReloadPolicy(); err != nil {
			t.Fatal(err)
		}
		return g.srv.Policy().Revision()
	}
	policyB := strings.Replace(policyA, "rules:\n", "rules:\n  - name: extra\n    match: [\"nowhere/**\"]\n    action: deny\n", 1)
	if revB := setPolicy(policyB); revB == revA {
		t.Fatal("policy revision did not change")
	}
	g.pull(good.Repo, good.Digest)
	dB := g.waitVSA(good.Repo, good.Digest, dA.Digest)
	if st, _ := g.vsaManifest(good.Repo, dB.Digest); st != http.StatusOK {
		t.Fatalf("VSA of revision B: manifest status %d", st)
	}

	if rev := setPolicy(policyA); rev != revA {
		t.Fatalf("policy A again: revision %s, want %s", rev, revA)
	}
	if _, ds := g.vsaReferrers(good.Repo, good.Digest); len(ds) != 1 || ds[0].Digest != dA.Digest {
		t.Fatalf("revision A again: VSA referrers %v, want %s", ds, dA.Digest)
	}
	st, man := g.vsaManifest(good.Repo, dA.Digest)
	if st != http.StatusOK {
		t.Fatalf("revision A again: VSA manifest status %d", st)
	}
	for _, d := range []ocispec.Descriptor{man.Config, man.Layers[0]} {
		if st, b := g.get(good.Repo + "/blobs/" + d.Digest.String()); st != http.StatusOK || digest.FromBytes(b) != d.Digest {
			t.Fatalf("revision A again: VSA blob %s (%s): status %d", d.Digest, d.MediaType, st)
		}
	}
	if man.Config.MediaType != attest.EmptyConfigMediaType {
		t.Fatalf("VSA config %s, want the empty descriptor", man.Config.MediaType)
	}
	ref := g.ref(good.Repo, good.Digest)
	if out, code := e.run(pullgateBin, nil, "vsa", "check", ref, "--key", "vsa.pub", "--verifier-id", verifierID, "--max-age", "1h", "--plain-http"); code != 0 {
		t.Fatalf("pullgate vsa check of revision A's VSA: exit %d\n%s", code, out)
	}
}

// TestProxyVSASubjectNoLongerPasses: under the same policy revision, once
// the subject's current decision is one no VSA is signed for (denied: its
// signature was removed upstream; waived: allowed only by an exception),
// its VSA is neither listed (referrers answer, sha256-<hex> tag) nor
// served by digest (manifest, bundle).
func TestProxyVSASubjectNoLongerPasses(t *testing.T) {
	e, dir, _ := proxyEnv(t, true)
	good := e.signedImage("app/good")
	waived := e.signedImage("app/waived")
	clk := newClock()
	g := startGatewayAt(t, dir, e.u, clk.Now)

	type vsaOf struct {
		img *harness.Image
		man digest.Digest
		obj []string // paths of the VSA's manifest and bundle
	}
	var vs []vsaOf
	for _, img := range []*harness.Image{good, waived} {
		if st := g.pull(img.Repo, img.Digest); st != http.StatusOK {
			t.Fatalf("%s: status %d", img.Repo, st)
		}
		d := g.waitVSA(img.Repo, img.Digest, "")
		st, man := g.vsaManifest(img.Repo, d.Digest)
		if st != http.StatusOK {
			t.Fatalf("%s: VSA manifest status %d", img.Repo, st)
		}
		vs = append(vs, vsaOf{img, d.Digest, []string{img.Repo + "/manifests/" + d.Digest.String(), img.Repo + "/blobs/" + man.Layers[0].Digest.String()}})
		for _, p := range vs[len(vs)-1].obj {
			if st, _ := g.get(p); st != http.StatusOK {
				t.Fatalf("%s: status %d while the subject passes", p, st)
			}
		}
		if st, idx := g.fallbackIndex(img.Repo, img.Digest); st != http.StatusOK || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != d.Digest {
			t.Fatalf("%s: referrers tag %d %v while the subject passes", img.Repo, st, idx.Manifests)
		}
	}
	rev := g.srv.Policy().Revision()

	// Remove the signatures upstream, and let the allowed decisions expire
	// (cache.allowTTL, 10m by default).
	for _, img := range []*harness.Image{good, waived} {
		st, _, b, err := harness.Get(t.Context(), e.u.URL+"/v2/"+img.Repo+"/referrers/"+img.Digest, nil)
		if err != nil || st != http.StatusOK {
			t.Fatalf("upstream referrers: %d %v", st, err)
		}
		var idx ocispec.Index
		if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) == 0 {
			t.Fatalf("upstream referrers of %s: %v %s", img.Repo, err, b)
		}
		for _, m := range idx.Manifests {
			if out, code := e.run(tools.Need(t, "crane"), nil, "delete", "--insecure", e.u.Ref(img.Repo+"@"+m.Digest.String())); code != 0 {
				t.Fatalf("crane delete: exit %d\n%s", code, out)
			}
		}
	}
	clk.Advance(11 * time.Minute)

	// Asked by digest first, before any pull decides the subject again.
	for _, v := range vs {
		for _, p := range v.obj {
			if st, _ := g.get(p); st == http.StatusOK {
				t.Errorf("%s: VSA object served after its subject %s stopped passing", p, v.img.Repo)
			}
		}
	}
	if st := g.pull(good.Repo, good.Digest); st == http.StatusOK {
		t.Fatalf("unsigned now: status %d", st)
	}
	if st := g.pull(waived.Repo, waived.Digest); st != http.StatusOK {
		t.Fatalf("waived: status %d", st)
	}
	if st, ds := g.vsaReferrers(waived.Repo, waived.Digest); st != http.StatusOK || len(ds) != 0 {
		t.Fatalf("waived: referrers %d %v, want no VSA", st, ds)
	}
	// The referrers tag is the upstream's again: it has none.
	for _, img := range []*harness.Image{good, waived} {
		if st, idx := g.fallbackIndex(img.Repo, img.Digest); st != http.StatusNotFound {
			t.Errorf("%s: referrers tag %d %v after the subject stopped passing, want 404", img.Repo, st, idx.Manifests)
		}
	}
	for _, v := range vs {
		for _, p := range v.obj {
			if st, _ := g.get(p); st == http.StatusOK {
				t.Errorf("%s: VSA object served after its subject %s stopped passing", p, v.img.Repo)
			}
		}
	}
	if g.srv.Policy().Revision() != rev {
		t.Fatal("the policy revision changed")
	}
}

// TestProxyVSARefresh: a recorded VSA is not signed again while younger
// than 24 hours, however many cold decisions; the first cold decision
// after that signs a new one (a new timeVerified, a new digest), which the
// referrers answer then lists instead.
func TestProxyVSARefresh(t *testing.T) {
	e, dir, _ := proxyEnv(t, true)
	good := e.signedImage("app/good")
	clk := newClock()
	t0 := clk.Now()
	g := startGatewayAt(t, dir, e.u, clk.Now)
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image: status %d", st)
	}
	d1 := g.waitVSA(good.Repo, good.Digest, "")
	if s := g.summary(good.Repo, d1.Digest); s.TimeVerified.Sub(t0).Abs() >= time.Second {
		t.Fatalf("timeVerified %v, want %v", s.TimeVerified, t0)
	}

	// Cold decisions (allowTTL is 10m) before 24h sign nothing.
	for range 2 {
		clk.Advance(11*time.Hour + 50*time.Minute)
		if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
			t.Fatalf("signed image at %v: status %d", clk.Now().Sub(t0), st)
		}
	}
	// The signer is FIFO: once marker's VSA is listed, any offer made
	// before it was handled (a VSA of good signed again would be listed).
	marker := e.signedImage("app/marker")
	g.pull(marker.Repo, marker.Digest)
	g.waitVSA(marker.Repo, marker.Digest, "")
	if n := g.waitSigned(2); n != 2 {
		t.Fatalf("before 24h: pullgate_vsa_signed_total %v, want 2 (good and marker)", n)
	}
	if _, ds := g.vsaReferrers(good.Repo, good.Digest); len(ds) != 1 || ds[0].Digest != d1.Digest {
		t.Fatalf("before 24h: VSA referrers %v, want %s", ds, d1.Digest)
	}

	clk.Advance(30 * time.Minute) // 24h10m after the first
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image after 24h: status %d", st)
	}
	d2 := g.waitVSA(good.Repo, good.Digest, d1.Digest)
	s := g.summary(good.Repo, d2.Digest)
	if want := t0.Add(24*time.Hour + 10*time.Minute); s.TimeVerified.Sub(want).Abs() >= time.Second {
		t.Fatalf("refreshed VSA: timeVerified %v, want %v", s.TimeVerified, want)
	}
	if n := g.waitSigned(3); n != 3 {
		t.Fatalf("after 24h: pullgate_vsa_signed_total %v, want 3", n)
	}
	// The earlier VSA, same revision, is still served by digest (a node
	// that listed it a moment ago can still read it).
	if st, _ := g.vsaManifest(good.Repo, d1.Digest); st != http.StatusOK {
		t.Fatalf("earlier VSA: status %d", st)
	}
}

// TestProxyVSARefreshAfterRestart: a VSA found recorded by a restarted
// proxy (signed 23 hours before) is refreshed once it is 24 hours old,
// not 24 hours after the restart found it.
func TestProxyVSARefreshAfterRestart(t *testing.T) {
	e, dir, _ := proxyEnv(t, true)
	good := e.signedImage("app/good")
	clk := newClock()
	t0 := clk.Now()
	g := startGatewayAt(t, dir, e.u, clk.Now)
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image: status %d", st)
	}
	d1 := g.waitVSA(good.Repo, good.Digest, "")
	g.close()

	clk.Advance(23 * time.Hour)
	g = startGatewayAt(t, dir, e.u, clk.Now)
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image after the restart: status %d", st)
	}
	// The signer is FIFO: once marker's VSA is listed, good's offer was
	// handled (its recorded VSA found, nothing signed).
	marker := e.signedImage("app/marker")
	g.pull(marker.Repo, marker.Digest)
	g.waitVSA(marker.Repo, marker.Digest, "")
	if n := g.waitSigned(1); n != 1 {
		t.Fatalf("after the restart: pullgate_vsa_signed_total %v, want 1 (marker)", n)
	}
	if _, ds := g.vsaReferrers(good.Repo, good.Digest); len(ds) != 1 || ds[0].Digest != d1.Digest {
		t.Fatalf("after the restart: VSA referrers %v, want %s", ds, d1.Digest)
	}

	clk.Advance(70 * time.Minute) // 24h10m after the first; a cold decision
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image after 24h: status %d", st)
	}
	d2 := g.waitVSA(good.Repo, good.Digest, d1.Digest)
	if want := t0.Add(24*time.Hour + 10*time.Minute); g.summary(good.Repo, d2.Digest).TimeVerified.Sub(want).Abs() >= time.Second {
		t.Fatalf("refreshed VSA: timeVerified not %v", want)
	}
	if n := g.waitSigned(2); n != 2 {
		t.Fatalf("after 24h: pullgate_vsa_signed_total %v, want 2", n)
	}
}
