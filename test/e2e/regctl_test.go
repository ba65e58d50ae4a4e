package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// regctl (regclient) as another real client: an image copy through pullgate
// into an OCI layout (checked blob by blob), a multi-arch index copied with
// every platform, manifests by tag and by digest byte for byte, the
// referrers list (with an artifactType filter), and a denied pull whose
// output shows pullgate's reason.
func TestRegctl(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	img := f.allowed
	sbom := f.up.PushArtifact(t, "open/app", harness.ArtifactOptions{ArtifactType: sbomType, Subject: img.Descriptor()})
	sig := f.up.PushArtifact(t, "open/app", harness.ArtifactOptions{ArtifactType: sigType, Subject: img.Descriptor()})
	docker := f.up.PushImage(t, "open/docker", "v1", harness.ImageOptions{Docker: true})
	idx := f.up.PushIndex(t, "open/multi", "v1", false)

	t.Run("image-copy", func(t *testing.T) {
		for _, want := range []*harness.Image{img, docker} {
			res, dir := harness.RegctlImageCopy(t, f.ref(want.Repo+":v1"))
			if res.Err != nil {
				t.Fatalf("regctl image copy %s: %v", want.Repo, res)
			}
			checkLayout(t, dir, want)
		}
		res, dir := harness.RegctlImageCopy(t, f.ref("open/multi:v1"))
		if res.Err != nil {
			t.Fatalf("regctl image copy of an index: %v", res)
		}
		if got := filesWithDigest(t, dir, idx.Digest); len(got) == 0 {
			t.Errorf("layout lacks the index %s", idx.Digest)
		}
		for _, c := range idx.Children {
			checkLayoutBlobs(t, dir, c)
		}
	})

	t.Run("manifest-get", func(t *testing.T) {
		for _, want := range []*harness.Image{img, docker} {
			for _, ref := range []string{want.Repo + ":v1", want.Repo + "@" + want.Digest} {
				res := harness.RegctlManifestGet(t, f.ref(ref))
				if res.Err != nil || res.Stdout != string(want.Manifest) {
					t.Errorf("regctl manifest get %s: bytes differ from the upstream's: %v", ref, res)
				}
			}
		}
		res := harness.RegctlManifestGet(t, f.ref("open/multi:v1"))
		if res.Err != nil || res.Stdout != string(idx.Manifest) {
			t.Errorf("regctl manifest get of the index: %v", res)
		}
	})

	t.Run("referrers", func(t *testing.T) {
		for _, c := range []struct {
			filter string
			want   map[string]string
		}{
			{"", map[string]string{sbom.Digest: sbomType, sig.Digest: sigType}},
			{sbomType, map[string]string{sbom.Digest: sbomType}},
		} {
			res := harness.RegctlArtifactList(t, f.ref("open/app@"+img.Digest), c.filter)
			if res.Err != nil {
				t.Fatalf("regctl artifact list (filter %q): %v", c.filter, res)
			}
			var out struct {
				Descriptors []ocispec.Descriptor `json:"descriptors"`
			}
			if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
				t.Fatalf("regctl artifact list output: %v\n%s", err, res.Stdout)
			}
			got := map[string]string{}
			for _, d := range out.Descriptors {
				got[d.Digest.String()] = d.ArtifactType
			}
			if len(got) != len(c.want) {
				t.Errorf("filter %q: referrers %v, want %v", c.filter, got, c.want)
			}
			for d, at := range c.want {
				if got[d] != at {
					t.Errorf("filter %q: referrer %s has artifactType %q, want %q (all: %v)", c.filter, d, got[d], at, got)
				}
			}
		}
	})

	t.Run("denied", func(t *testing.T) {
		ref := f.ref("blocked/app:v1")
		res, _ := harness.RegctlImageCopy(t, ref)
		if res.Err == nil || !strings.Contains(res.Output(), gate.DenyRule) || !strings.Contains(res.Output(), "DENIED") {
			t.Errorf("regctl image copy of a denied image does not show DENIED and the rule %s: %v", gate.DenyRule, res)
		}
		for _, r := range []string{ref, f.ref("blocked/app@" + f.denied.Digest)} {
			res = harness.RegctlManifestGet(t, r)
			if res.Err == nil || !strings.Contains(res.Output(), gate.DenyRule) {
				t.Errorf("regctl manifest get %s does not show the rule %s: %v", r, gate.DenyRule, res)
			}
		}
	})
}

// checkLayoutBlobs checks that an OCI layout holds an image's manifest,
// config and layers with their digests.
func checkLayoutBlobs(t *testing.T, dir string, img *harness.Image) {
	t.Helper()
	for _, d := range append([]string{img.Digest, img.Config.Digest}, layerDigests(img)...) {
		if len(filesWithDigest(t, dir, d)) == 0 {
			t.Errorf("layout lacks %s of %s", d, img.Platform)
		}
	}
}

func layerDigests(img *harness.Image) []string {
	var out []string
	for _, l := range img.Layers {
		out = append(out, l.Digest)
	}
	return out
}
