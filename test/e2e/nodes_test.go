package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/containerdtest"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// shippedHostsTOML is deploy/nodes/containerd/certs.d/<dir>/hosts.toml with
// the example address replaced by the test proxy's.
func shippedHostsTOML(t *testing.T, dir, proxyHost string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nodes", "containerd", "certs.d", dir, "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "10.96.100.50:5000") {
		t.Fatalf("%s/hosts.toml does not name the example address", dir)
	}
	return []byte(strings.ReplaceAll(string(b), "10.96.100.50:5000", proxyHost))
}

// containerd with the shipped hosts.toml shape (pullgate as server, no
// [host], plus _default): an allowed pull gets the upstream's digest; a
// denied pull fails and is one decision in the audit log (a [host] entry
// next to the server asked pullgate twice); a registry pullgate does not
// front goes to pullgate through _default and is refused, its registry
// receiving no request; with pullgate stopped the pull fails.
func TestContainerdShippedHostsTOML(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	other := harness.StartUpstream(t, harness.UpstreamOptions{Name: "other.local"})
	other.PushV1Image(t, "open/app", "v1", harness.RandomImage(t, harness.ImageOptions{Layers: 1}))
	other.Reg.ResetCounts()

	d := containerdtest.Start(t)
	hosts := filepath.Join(d.Dir, "certs.d")
	for dir, src := range map[string]string{f.up.Name: "docker.io", "_default": "_default"} {
		os.MkdirAll(filepath.Join(hosts, dir), 0o755)
		if err := os.WriteFile(filepath.Join(hosts, dir, "hosts.toml"), shippedHostsTOML(t, src, f.px.Host), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ref := f.up.Name + "/open/app:v1"
	if res := d.Pull(t, hosts, ref); res.Err != nil {
		t.Fatalf("allowed pull: %v", res)
	}
	if got := d.ImageDigest(t, ref); got != f.allowed.Digest {
		t.Errorf("allowed pull digest %s, want the upstream's %s", got, f.allowed.Digest)
	}

	res := d.Pull(t, hosts, f.up.Name+"/blocked/app:v1")
	if res.Err == nil {
		t.Fatalf("containerd pulled a denied image: %v", res)
	}
	if !strings.Contains(res.Stderr, "403 Forbidden") || !strings.Contains(res.Stderr, gate.DenyRule) {
		t.Errorf("denied pull output does not show 403 and rule %s: %q", gate.DenyRule, res.Stderr)
	}
	denies := 0
	for _, e := range f.px.Audit(t) {
		if e.Decision == "deny" && strings.HasSuffix(e.Repository, "blocked/app") {
			denies++
		}
	}
	if denies != 1 {
		t.Errorf("denied pull recorded %d deny decisions, want 1", denies)
	}

	// other.local has no directory: _default sends it to pullgate, which
	// fronts no such upstream.
	res = d.Pull(t, hosts, other.Host+"/open/app:v1")
	if res.Err == nil {
		t.Fatalf("pulled from a registry pullgate does not front: %v", res)
	}
	if !strings.Contains(res.Stderr, f.px.Host) {
		t.Errorf("unlisted registry: the pull did not go to pullgate: %q", res.Stderr)
	}
	if n := other.Count(http.MethodGet, "/") + other.Count(http.MethodHead, "/"); n != 0 {
		t.Errorf("the unlisted registry received %d requests", n)
	}

	f.px.Close()
	before := f.up.Count(http.MethodGet, "/") + f.up.Count(http.MethodHead, "/")
	res = d.Pull(t, hosts, f.up.Name+"/open/app:v1")
	if res.Err == nil {
		t.Fatalf("pulled with pullgate stopped: %v", res)
	}
	if n := f.up.Count(http.MethodGet, "/") + f.up.Count(http.MethodHead, "/"); n != before {
		t.Errorf("with pullgate stopped, the upstream received %d requests", n-before)
	}
}
