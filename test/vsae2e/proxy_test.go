package vsae2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/vsa"
)

// gateway is a pullgate proxy with a vsa: section, opened in dir (reused
// across a restart), serving on 127.0.0.1, its metrics in reg.
type gateway struct {
	t    *testing.T
	dir  string
	u    *harness.Upstream
	srv  *proxy.Server
	http *httptest.Server
	reg  *prometheus.Registry
	host string
}

const proxyPolicy = `trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: signed-apps
    match: ["%UP%/app/**"]
    require:
      signatures: [release]
exceptions:
  - name: vendor
    match:
      repositories: ["%UP%/app/waived"]
    waive:
      - "regexp:rule signed-apps: no signature by key release on sha256:[0-9a-f]{64}"
    expires: 2030-01-01T00:00:00Z
    reason: test of a waived decision
    approvedBy: security@example.com
`

func startGateway(t *testing.T, dir string, u *harness.Upstream) *gateway {
	t.Helper()
	return startGatewayAt(t, dir, u, nil)
}

// startGatewayAt is startGateway with the proxy's clock (nil: time.Now).
func startGatewayAt(t *testing.T, dir string, u *harness.Upstream, now func() time.Time) *gateway {
	t.Helper()
	doc := map[string]any{
		"listen":    "127.0.0.1:0",
		"storage":   map[string]any{"path": filepath.Join(dir, "data")},
		"upstreams": []map[string]any{{"name": u.Name, "url": u.URL}},
		"policy":    "policy.yaml",
		"audit":     map[string]any{"path": filepath.Join(dir, "audit.jsonl")},
		"vsa":       map[string]any{"key": "vsa.key", "verifierId": verifierID, "policyUri": "https://pullgate.example/prod/policy.yaml"},
	}
	b, _ := yaml.Marshal(doc)
	if err := os.WriteFile(filepath.Join(dir, "pullgate.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "pullgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{t: t, dir: dir, u: u, reg: prometheus.NewRegistry()}
	logf, err := os.OpenFile(filepath.Join(dir, "pullgate.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if b, _ := os.ReadFile(logf.Name()); t.Failed() {
			t.Logf("proxy log (last 4000 bytes):\n%s", b[max(0, len(b)-4000):])
		}
	})
	g.srv, err = proxy.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		proxy.Options{Registerer: g.reg, Version: "e2e", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	g.http = httptest.NewServer(g.srv.Handler())
	g.host = strings.TrimPrefix(g.http.URL, "http://")
	t.Cleanup(g.close)
	return g
}

func (g *gateway) close() {
	if g.http != nil {
		g.http.Close()
		g.srv.Close()
		g.http = nil
	}
}

func (g *gateway) ref(repo, d string) string { return g.host + "/" + g.u.Name + "/" + repo + "@" + d }

func (g *gateway) get(path string) (int, []byte) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, _, b, err := harness.Get(ctx, g.http.URL+"/v2/"+g.u.Name+"/"+path, map[string]string{"Accept": ocispec.MediaTypeImageManifest + ", " + ocispec.MediaTypeImageIndex})
	if err != nil {
		g.t.Fatal(err)
	}
	return st, b
}

// pull fetches manifest repo@d through the proxy: its decision.
func (g *gateway) pull(repo, d string) int {
	st, _ := g.get(repo + "/manifests/" + d)
	return st
}

// vsaReferrers lists the VSA referrers of repo@d (status, descriptors).
func (g *gateway) vsaReferrers(repo, d string) (int, []ocispec.Descriptor) {
	g.t.Helper()
	st, b := g.get(repo + "/referrers/" + d + "?artifactType=" + url.QueryEscape(attest.BundleMediaType))
	if st != http.StatusOK {
		return st, nil
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		g.t.Fatal(err)
	}
	var out []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if m.Annotations[attest.AnnotationPredicateType] == vsa.PredicateType {
			out = append(out, m)
		}
	}
	return st, out
}

// waitVSA polls until repo@d has a VSA referrer other than not (the test's
// deadline bounds it).
func (g *gateway) waitVSA(repo, d string, not digest.Digest) ocispec.Descriptor {
	g.t.Helper()
	deadline, ok := g.t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	var st int
	var ds []ocispec.Descriptor
	for time.Now().Before(deadline.Add(-10 * time.Second)) {
		if st, ds = g.vsaReferrers(repo, d); len(ds) == 1 && ds[0].Digest != not {
			return ds[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("no VSA for %s@%s appeared: last referrers answer %d %v", repo, d, st, ds)
	return ocispec.Descriptor{}
}

// summary reads the VSA manifest m through the proxy: its bundle's statement.
func (g *gateway) summary(repo string, m digest.Digest) *vsa.Summary {
	g.t.Helper()
	st, b := g.get(repo + "/manifests/" + m.String())
	if st != http.StatusOK || digest.FromBytes(b) != m {
		g.t.Fatalf("VSA manifest %s: status %d", m, st)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(b, &man); err != nil || len(man.Layers) != 1 {
		g.t.Fatalf("VSA manifest: %v %s", err, b)
	}
	st, raw := g.get(repo + "/blobs/" + man.Layers[0].Digest.String())
	if st != http.StatusOK || digest.FromBytes(raw) != man.Layers[0].Digest {
		g.t.Fatalf("VSA bundle: status %d", st)
	}
	var bun sgbundle.Bundle
	if err := bun.UnmarshalJSON(raw); err != nil {
		g.t.Fatal(err)
	}
	s, err := vsa.Parse(bun.GetDsseEnvelope().GetPayload())
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

func (g *gateway) signed() float64 {
	g.t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "pullgate_vsa_signed_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	g.t.Fatal("no pullgate_vsa_signed_total metric")
	return 0
}

// waitSigned waits until pullgate_vsa_signed_total is at least n (the
// signer counts a VSA just after recording it, so a VSA may be listed a
// moment before it is counted) and returns it (the test's deadline
// bounds the wait).
func (g *gateway) waitSigned(n float64) float64 {
	g.t.Helper()
	deadline, ok := g.t.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	got := g.signed()
	for got < n && time.Now().Before(deadline.Add(-10*time.Second)) {
		time.Sleep(20 * time.Millisecond)
		got = g.signed()
	}
	return got
}

func writeVSAKey(t *testing.T, dir string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	os.WriteFile(filepath.Join(dir, "vsa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "vsa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}

// TestProxyVSA: with a vsa: section, pulling an allowed (signed) image
// through pullgate makes it sign a VSA, once per (digest, policy revision),
// which its referrers answer offers: cosign v3 and v2 verify-attestation
// and `pullgate vsa check` pointed at pullgate pass with the VSA key. The
// VSA names the revision in force. A denied image gets none, nor does one
// allowed only by an exception. A policy
// change makes the next allowed pull sign a new VSA, and the old one is no
// longer offered nor served. A restart signs nothing again.
func TestProxyVSA(t *testing.T) {
	e := newEnv(t, true) // cosign.key: the release (trust) key
	dir := t.TempDir()
	writeVSAKey(t, dir)
	pub, _ := os.ReadFile(e.pub)
	os.WriteFile(filepath.Join(dir, "release.pub"), pub, 0o644)
	policy := strings.ReplaceAll(proxyPolicy, "%UP%", e.u.Name)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600)
	os.WriteFile(filepath.Join(e.dir, "vsa.pub"), mustRead(t, filepath.Join(dir, "vsa.pub")), 0o644)

	good := e.u.PushImage(t, "app/good", "1.0", harness.ImageOptions{})
	e.cosign("cosign3", "sign", "--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false",
		"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", e.u.Ref(good.Repo+"@"+good.Digest))
	bad := e.u.PushImage(t, "app/unsigned", "1.0", harness.ImageOptions{})

	g := startGateway(t, dir, e.u)
	if st := g.pull(bad.Repo, bad.Digest); st == http.StatusOK {
		t.Fatalf("unsigned image allowed (%d)", st)
	}
	if st := g.pull(good.Repo, good.Digest); st != http.StatusOK {
		t.Fatalf("signed image: status %d", st)
	}
	d1 := g.waitVSA(good.Repo, good.Digest, "")
	rev1 := g.srv.Policy().Revision()
	s := g.summary(good.Repo, d1.Digest)
	if s.Subject != digest.Digest(good.Digest) || s.VerificationResult != vsa.Passed || s.Verifier.ID != verifierID ||
		vsa.Digest(s.Policy.Digest) != digest.Digest(rev1) || len(s.InputAttestations) == 0 {
		t.Fatalf("VSA: %+v (revision in force %s)", s, rev1)
	}

	// The denied image has no VSA (its referrers are refused, and none
	// was recorded: the single signer, first offered the good one, is done).
	if st, ds := g.vsaReferrers(bad.Repo, bad.Digest); st == http.StatusOK || len(ds) != 0 {
		t.Fatalf("denied image: referrers %d %v", st, ds)
	}

	// Real verifiers, pointed at pullgate.
	ref := g.ref(good.Repo, good.Digest)
	hex := good.Digest[len("sha256:"):]
	if out := e.cosign("cosign3", "verify-attestation", "--key", "vsa.pub", "--type", vsa.PredicateType,
		"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref); !strings.Contains(out, hex) {
		t.Fatalf("cosign3 verify-attestation output lacks the digest:\n%s", out)
	}
	os.WriteFile(filepath.Join(e.dir, "trusted_root.json"), []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
	if out := e.cosign("cosign2", "verify-attestation", "--key", "vsa.pub", "--type", vsa.PredicateType,
		"--new-bundle-format", "--trusted-root", "trusted_root.json",
		"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref); !strings.Contains(out, hex) {
		t.Fatalf("cosign2 verify-attestation output lacks the digest:\n%s", out)
	}
	// The release key is no VSA key: cosign finds nothing it signed.
	if out, code := e.run(pullgateBin, nil, "vsa", "check", ref, "--key", "vsa.pub", "--verifier-id", verifierID, "--max-age", "1h", "--plain-http"); code != 0 {
		t.Fatalf("pullgate vsa check through pullgate: exit %d\n%s", code, out)
	}
	if out, code := e.run(pullgateBin, nil, "vsa", "check", ref, "--key", "cosign.pub", "--plain-http"); code != 11 {
		t.Fatalf("vsa check with the release key: exit %d, want 11\n%s", code, out)
	}

	// Once per (digest, revision): more pulls sign nothing more.
	for range 3 {
		g.pull(good.Repo, good.Digest)
		g.pull(good.Repo, "1.0")
	}
	other := e.u.PushImage(t, "app/other", "1.0", harness.ImageOptions{})
	e.cosign("cosign3", "sign", "--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false",
		"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", e.u.Ref(other.Repo+"@"+other.Digest))
	// A decision allowed only by an exception did not pass: no VSA.
	waived := e.u.PushImage(t, "app/waived", "1.0", harness.ImageOptions{})
	if st := g.pull(waived.Repo, waived.Digest); st != http.StatusOK {
		t.Fatalf("waived image: status %d", st)
	}
	g.pull(other.Repo, other.Digest)
	g.waitVSA(other.Repo, other.Digest, "") // the signer is FIFO: every earlier offer is done
	if n := g.waitSigned(2); n != 2 {
		t.Fatalf("pullgate_vsa_signed_total %v, want 2 (good and other, once each)", n)
	}
	if st, ds := g.vsaReferrers(waived.Repo, waived.Digest); st != http.StatusOK || len(ds) != 0 {
		t.Fatalf("waived image: referrers %d %v, want no VSA", st, ds)
	}

	// A new policy revision: the old VSA is no longer offered nor served;
	// the next allowed pull signs a new one, naming the new revision.
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(strings.Replace(policy, "rules:\n", "rules:\n  - name: extra\n    match: [\"nowhere/**\"]\n    action: deny\n", 1)), 0o600)
	if err := g.srv.ReloadPolicy(); err != nil {
		t.Fatal(err)
	}
	rev2 := g.srv.Policy().Revision()
	if rev2 == rev1 {
		t.Fatal("policy revision did not change")
	}
	if st, ds := g.vsaReferrers(good.Repo, good.Digest); st != http.StatusOK || len(ds) != 0 {
		t.Fatalf("after the policy change, before a pull: referrers %d %v, want no VSA", st, ds)
	}
	if st, _ := g.get(good.Repo + "/manifests/" + d1.Digest.String()); st == http.StatusOK {
		t.Fatal("the VSA of the old revision is still served")
	}
	g.pull(good.Repo, good.Digest)
	d2 := g.waitVSA(good.Repo, good.Digest, d1.Digest)
	if s := g.summary(good.Repo, d2.Digest); vsa.Digest(s.Policy.Digest) != digest.Digest(rev2) {
		t.Fatalf("new VSA names revision %v, want %s", s.Policy.Digest, rev2)
	}
	if n := g.waitSigned(3); n != 3 {
		t.Fatalf("pullgate_vsa_signed_total %v, want 3", n)
	}

	// A restart: the records say it was signed; nothing is signed again.
	g.close()
	g = startGateway(t, dir, e.u)
	g.pull(good.Repo, good.Digest)
	third := e.u.PushImage(t, "app/third", "1.0", harness.ImageOptions{})
	e.cosign("cosign3", "sign", "--key", "cosign.key", "--tlog-upload=false", "--use-signing-config=false",
		"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", e.u.Ref(third.Repo+"@"+third.Digest))
	g.pull(third.Repo, third.Digest)
	g.waitVSA(third.Repo, third.Digest, "")
	if n := g.waitSigned(1); n != 1 {
		t.Fatalf("after a restart: pullgate_vsa_signed_total %v, want 1 (only the new image)", n)
	}
	if _, ds := g.vsaReferrers(good.Repo, good.Digest); len(ds) != 1 || ds[0].Digest != d2.Digest {
		t.Fatalf("after a restart: VSA referrers %v, want %s", ds, d2.Digest)
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxyVSAKeyRefused: a VSA key that does not load (not a key, an
// encrypted key without its password) stops the start, naming vsa.key.
func TestProxyVSAKeyRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("rules: []\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "vsa.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "pullgate.yaml"), []byte("storage: {path: ./data}\nupstreams: [{name: up.local, url: http://127.0.0.1:1}]\npolicy: ./policy.yaml\naudit: {path: ./audit.jsonl}\nvsa: {key: ./vsa.key, verifierId: "+verifierID+"}\n"), 0o600)
	cfg, err := config.Load(filepath.Join(dir, "pullgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.Open(context.Background(), cfg, nil)
	if err == nil {
		srv.Close()
		t.Fatal("proxy opened with a VSA key that is not a key")
	}
	if !strings.Contains(err.Error(), "vsa.key") {
		t.Fatalf("error does not name vsa.key: %v", err)
	}
}
