package vsae2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/containerdtest"
	"github.com/pullgate/pullgate/test/harness"
)

// TestContainerd2RefusesImageWithoutVSA runs a real containerd 2.x (tools
// "containerd2" and "ctr2": containerd's own cmd/containerd and cmd/ctr
// built with go install, since Debian's containerd is 1.6, which has no
// image verifiers) with its bindir image-verifier plugin pointing at a
// directory holding pullgate as pullgate-vsa-verifier. Pulling straight
// from the registry (around any proxy): the image with a valid VSA is
// pulled, the one without is refused by containerd with pullgate's reason,
// and nothing of it is stored.
func TestContainerd2RefusesImageWithoutVSA(t *testing.T) {
	e := newEnv(t, true)
	now := time.Now()
	good := e.u.PushImage(t, "team/app", "1.0", harness.ImageOptions{})
	e.push(good, e.sign(e.summary(good, now.Add(-time.Minute)), e.signer))
	none := e.u.PushImage(t, "team/none", "1.0", harness.ImageOptions{})

	binDir := filepath.Join(e.dir, "verifiers")
	os.MkdirAll(binDir, 0o755)
	if err := os.Symlink(pullgateBin, filepath.Join(binDir, "pullgate-vsa-verifier")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.dir, "vsa-verifier.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("keys: [%s]\nverifierId: %s\nmaxAge: 24h\nregistries:\n  %q: http://%s\n", e.pub, verifierID, e.u.Host, e.u.Host)), 0o644)

	d := containerdtest.StartWith(t, containerdtest.Options{
		Containerd: "containerd2", Ctr: "ctr2",
		Config: fmt.Sprintf(`
[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = %q
  max_verifiers = 10
  per_verifier_timeout = "30s"

[plugins."io.containerd.transfer.v1.local"]
  [[plugins."io.containerd.transfer.v1.local".unpack_config]]
    platform = "linux/%s"
    snapshotter = "native"
`, binDir, runtime.GOARCH),
		Env: []string{"PULLGATE_VSA_VERIFIER_CONFIG=" + cfg, "DOCKER_CONFIG=" + filepath.Join(e.dir, ".docker")},
	})
	if res := d.Ctr(t, "images", "pull", "--plain-http", "--snapshotter", "native", e.u.Ref("team/app:1.0")); res.Err != nil {
		t.Fatalf("image with a VSA refused: %v", res.Output())
	}
	if got := d.ImageDigest(t, e.u.Ref("team/app:1.0")); got != good.Digest {
		t.Fatalf("pulled %s, want %s", got, good.Digest)
	}
	res := d.Ctr(t, "images", "pull", "--plain-http", "--snapshotter", "native", e.u.Ref("team/none:1.0"))
	if res.Err == nil {
		t.Fatalf("image without VSA pulled: %v", res.Output())
	}
	if out := res.Output(); !strings.Contains(out, "pullgate-vsa-verifier") || !strings.Contains(out, "no-vsa") {
		t.Fatalf("refusal does not carry pullgate's reason: %s", out)
	}
	if d.HasContent(t, none.Layers[0].Digest) {
		t.Fatal("the refused image's layer is in containerd's content store")
	}
}
