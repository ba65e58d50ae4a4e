package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/test/containerdtest"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// An allowed image pulled through the proxy by every real client has the
// upstream's digest, and the manifest bytes are the upstream's bytes.
func TestAllowedPullIdenticalDigests(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	img := f.allowed
	ref := f.ref("open/app:v1")
	byDigest := f.ref("open/app@" + img.Digest)

	t.Run("ggcr-remote", func(t *testing.T) {
		for _, r := range []string{ref, byDigest} {
			d, err := harness.GGCRPull(r)
			if err != nil {
				t.Fatalf("pull %s: %v", r, err)
			}
			if d != img.Digest {
				t.Fatalf("%s: digest %s, want %s", r, d, img.Digest)
			}
		}
		r, _ := name.ParseReference(ref, name.Insecure)
		desc, err := remote.Get(r, harness.NoRetry())
		if err != nil {
			t.Fatal(err)
		}
		if string(desc.Manifest) != string(img.Manifest) {
			t.Fatalf("manifest bytes differ:\n got %s\nwant %s", desc.Manifest, img.Manifest)
		}
	})
	t.Run("oras-go", func(t *testing.T) {
		desc, err := harness.OrasGoPull(ctx(t), ref)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest.String() != img.Digest || desc.Size != int64(len(img.Manifest)) {
			t.Fatalf("oras-go got %s (%d bytes), want %s (%d)", desc.Digest, desc.Size, img.Digest, len(img.Manifest))
		}
	})
	t.Run("crane", func(t *testing.T) {
		res := harness.CraneDigest(t, ref)
		if res.Err != nil || strings.TrimSpace(res.Stdout) != img.Digest {
			t.Fatalf("crane digest: %v", res)
		}
		res = harness.CraneManifest(t, ref)
		if res.Err != nil || res.Stdout != string(img.Manifest) {
			t.Fatalf("crane manifest bytes differ: %v", res)
		}
		res, dir := harness.CranePull(t, ref, "")
		if res.Err != nil {
			t.Fatalf("crane pull: %v", res)
		}
		checkLayout(t, dir, img)
	})
	t.Run("skopeo", func(t *testing.T) {
		res := harness.SkopeoInspect(t, ref)
		if res.Err != nil || res.Stdout != string(img.Manifest) {
			t.Fatalf("skopeo inspect --raw bytes differ: %v", res)
		}
		res, dir := harness.SkopeoCopy(t, ref)
		if res.Err != nil {
			t.Fatalf("skopeo copy: %v", res)
		}
		checkLayout(t, dir, img)
	})
	t.Run("oras", func(t *testing.T) {
		res := harness.OrasManifestFetch(t, ref, false)
		if res.Err != nil || strings.TrimSpace(res.Stdout) != string(img.Manifest) {
			t.Fatalf("oras manifest fetch: %v", res)
		}
		res = harness.OrasManifestFetch(t, ref, true)
		var desc struct {
			Digest string `json:"digest"`
		}
		if res.Err != nil || json.Unmarshal([]byte(res.Stdout), &desc) != nil || desc.Digest != img.Digest {
			t.Fatalf("oras manifest fetch --descriptor: %v", res)
		}
		// oras pull of an artifact writes its titled payload.
		art := f.up.PushArtifact(t, "open/artifact", harness.ArtifactOptions{
			ArtifactType: "application/vnd.pullgate.test.model", Title: "model.json", Tag: "v1",
		})
		res, out := harness.OrasPull(t, f.ref("open/artifact:v1"))
		if res.Err != nil {
			t.Fatalf("oras pull: %v", res)
		}
		b, err := os.ReadFile(filepath.Join(out, "model.json"))
		if err != nil || string(b) != string(art.Layers[0].Data) {
			t.Fatalf("oras pull wrote %q (%v), want %q", b, err, art.Layers[0].Data)
		}
		if !strings.Contains(res.Stdout, art.Digest) {
			t.Fatalf("oras pull did not report digest %s", art.Digest)
		}
	})
	t.Run("containerd", func(t *testing.T) {
		d := containerdtest.Start(t)
		hosts := d.Mirror(t, f.up.Name, f.px.Host)
		cref := f.up.Name + "/open/app:v1"
		res := d.Pull(t, hosts, cref)
		if res.Err != nil {
			t.Fatalf("ctr pull: %v", res)
		}
		if got := d.ImageDigest(t, cref); got != img.Digest {
			t.Fatalf("containerd digest %s, want %s", got, img.Digest)
		}
		for _, l := range img.Layers {
			if !d.HasContent(t, l.Digest) {
				t.Fatalf("containerd lacks layer %s", l.Digest)
			}
		}
	})

	// Every pull was decided and audited as an allow of open/app by AllowRule.
	var allows int
	for _, e := range f.px.Audit(t) {
		if e.Decision == "allow" && e.Rule == gate.AllowRule && strings.HasSuffix(e.Repository, "open/app") && e.Digest == img.Digest {
			allows++
		}
	}
	if allows == 0 {
		t.Errorf("no audit line {decision: allow, rule: %s, repository: .../open/app, digest: %s}:\n%v", gate.AllowRule, img.Digest, f.px.Audit(t))
	}
}

// checkLayout verifies an OCI layout written by a client: index.json points
// at the image digest and every blob is present with the right content.
func checkLayout(t *testing.T, dir string, img *harness.Image) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), img.Digest) {
		t.Fatalf("index.json does not reference %s: %s", img.Digest, b)
	}
	blobs := append([]harness.Blob{img.Config}, img.Layers...)
	for _, bl := range blobs {
		p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(bl.Digest, "sha256:"))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("layout lacks blob %s: %v", bl.Digest, err)
		}
		if harness.Sha256(data) != bl.Digest {
			t.Fatalf("layout blob %s has digest %s", bl.Digest, harness.Sha256(data))
		}
	}
	mp := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(img.Digest, "sha256:"))
	if m, err := os.ReadFile(mp); err != nil || string(m) != string(img.Manifest) {
		t.Fatalf("layout manifest differs from upstream bytes (%v)", err)
	}
}
