package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/test/containerdtest"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// A multi-arch index (OCI and Docker manifest list) passes through with its
// digest, and each platform is pulled through the proxy: children inherit
// the index's allow.
func TestMultiArchIndex(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	for _, docker := range []bool{false, true} {
		kind := map[bool]string{false: "oci", true: "docker"}[docker]
		t.Run(kind, func(t *testing.T) {
			idx := f.up.PushIndex(t, "open/multi", kind, docker)
			ref := f.ref("open/multi:" + kind)

			r, _ := name.ParseReference(ref, name.Insecure)
			desc, err := remote.Get(r, harness.NoRetry())
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest.String() != idx.Digest || string(desc.Manifest) != string(idx.Manifest) || string(desc.MediaType) != idx.MediaType {
				t.Fatalf("index through proxy: %s %s, want %s %s", desc.Digest, desc.MediaType, idx.Digest, idx.MediaType)
			}
			for _, c := range idx.Children {
				d, err := harness.GGCRIndexPlatform(ref, *c.Platform)
				if err != nil || d != c.Digest {
					t.Fatalf("ggcr %s: %s %v, want %s", c.Platform, d, err, c.Digest)
				}
				plat := c.Platform.OS + "/" + c.Platform.Architecture
				if c.Platform.Variant != "" {
					plat += "/" + c.Platform.Variant
				}
				res := harness.Run(t, "crane", "digest", "--insecure", "--platform", plat, ref)
				if res.Err != nil || strings.TrimSpace(res.Stdout) != c.Digest {
					t.Fatalf("crane digest --platform %s: %v", plat, res)
				}
				// By digest, a child is served too.
				od, err := harness.OrasGoPull(ctx(t), f.ref("open/multi@"+c.Digest))
				if err != nil || od.Digest.String() != c.Digest {
					t.Fatalf("oras-go child %s: %v", c.Digest, err)
				}
			}
			if docker {
				return
			}
			args := []string{"--override-os", "linux", "--override-arch", "arm64", "--override-variant", "v8"}
			res, dir := harness.SkopeoCopy(t, ref, args...)
			if res.Err != nil {
				t.Fatalf("skopeo copy arm64: %v", res)
			}
			checkLayout(t, dir, idx.Children[1])
		})
	}
	t.Run("containerd", func(t *testing.T) {
		idx := f.up.PushIndex(t, "open/multi", "ctr", false)
		d := containerdtest.Start(t)
		hosts := d.Mirror(t, f.up.Name, f.px.Host)
		cref := f.up.Name + "/open/multi:ctr"
		for i, plat := range []string{"linux/amd64", "linux/arm64/v8"} {
			res := d.Pull(t, hosts, cref, "--platform", plat)
			if res.Err != nil {
				t.Fatalf("ctr pull --platform %s: %v", plat, res)
			}
			if got := d.ImageDigest(t, cref); got != idx.Digest {
				t.Fatalf("containerd image digest %s, want index %s", got, idx.Digest)
			}
			for _, l := range idx.Children[i].Layers {
				if !d.HasContent(t, l.Digest) {
					t.Fatalf("containerd lacks %s layer %s", plat, l.Digest)
				}
			}
		}
	})
	// An index in a denied repository is denied, and so are its children by digest.
	idx := f.up.PushIndex(t, "blocked/multi", "v1", false)
	for _, r := range []string{"v1", idx.Children[0].Digest} {
		st, _, body, err := harness.Get(ctx(t), f.url("blocked/multi/manifests/"+r), nil)
		if err != nil {
			t.Fatal(err)
		}
		expectOCIError(t, "denied index "+r, st, body, http.StatusForbidden, "DENIED")
	}
}
