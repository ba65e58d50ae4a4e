package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// distribution's registry binary (filesystem storage) as a second upstream
// style, next to the in-process one: allowed and denied pulls, a multi-arch
// index and referrers through its sha256-<hex> tag fallback.
func TestRegistryBinaryUpstream(t *testing.T) {
	bin := harness.StartRegistryBinary(t, "dist.local")
	mem := harness.StartUpstream(t, harness.UpstreamOptions{})
	img := bin.PushImage(t, "open/app", "v1", harness.ImageOptions{Layers: 2})
	denied := bin.PushImage(t, "blocked/app", "v1", harness.ImageOptions{})
	idx := bin.PushIndex(t, "open/multi", "v1", false)
	art := bin.PushArtifact(t, "open/app", harness.ArtifactOptions{ArtifactType: sbomType, Subject: img.Descriptor()})
	memImg := mem.PushImage(t, "open/app", "v1", harness.ImageOptions{})
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{bin, mem}})

	// Two upstreams side by side, each routed by its name.
	if d, err := harness.GGCRPull(px.Ref(bin, "open/app:v1")); err != nil || d != img.Digest {
		t.Fatalf("ggcr via registry binary: %s %v", d, err)
	}
	if d, err := harness.GGCRPull(px.Ref(mem, "open/app:v1")); err != nil || d != memImg.Digest {
		t.Fatalf("ggcr via in-process upstream: %s %v", d, err)
	}
	res := harness.CraneDigest(t, px.Ref(bin, "open/app:v1"))
	if res.Err != nil || strings.TrimSpace(res.Stdout) != img.Digest {
		t.Fatalf("crane: %v", res)
	}
	res, dir := harness.SkopeoCopy(t, px.Ref(bin, "open/app:v1"))
	if res.Err != nil {
		t.Fatalf("skopeo: %v", res)
	}
	checkLayout(t, dir, img)
	for _, c := range idx.Children {
		if d, err := harness.GGCRIndexPlatform(px.Ref(bin, "open/multi:v1"), *c.Platform); err != nil || d != c.Digest {
			t.Fatalf("index child %s: %s %v", c.Platform, d, err)
		}
	}
	refs, err := harness.OrasGoReferrers(ctx(t), px.Host+"/"+bin.Name+"/open/app", img.Digest, sbomType)
	if err != nil || len(refs) != 1 || refs[0].Digest.String() != art.Digest || refs[0].ArtifactType != sbomType {
		t.Fatalf("referrers via tag fallback: %v %v", refs, err)
	}
	st, _, body, err := harness.Get(ctx(t), px.URL+"/v2/"+bin.Name+"/blocked/app/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := expectOCIError(t, "denied via registry binary", st, body, http.StatusForbidden, "DENIED")
	if !strings.Contains(e.Message, gate.DenyRule) {
		t.Errorf("message %q", e.Message)
	}
	st, _, _, _ = harness.Get(ctx(t), px.URL+"/v2/"+bin.Name+"/blocked/app/blobs/"+denied.Layers[0].Digest, nil)
	if st != http.StatusForbidden {
		t.Errorf("denied blob via registry binary: %d", st)
	}
}
