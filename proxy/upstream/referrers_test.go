package upstream_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	testreg "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// TestFallbackIndexIsAnIndex: the sha256-<hex> tag is read as a referrers
// index only when it is one. An OCI image manifest pushed under that tag
// without a mediaType field (the image spec allows omitting it; schema
// version 2 too) is no index: FallbackIndex says so (not an empty
// listing), while ggcr's fallback index under the tag of another digest
// still lists its referrer, and a missing tag is NotFound.
func TestFallbackIndexIsAnIndex(t *testing.T) {
	reg := start(t, testreg.Options{Referrers: false})
	c := newClient(t, reg, nil)
	const repo = "rf/fallback"
	d, raw, _ := push(t, reg, repo, nil)
	if _, _, err := c.FallbackIndex(context.Background(), repo, d, maxManifest); !upstream.IsKind(err, upstream.NotFound) {
		t.Fatalf("missing tag: %v, want NotFound", err)
	}
	putReferrer(t, reg, repo, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(raw))}, "application/vnd.example.a")
	descs, index, err := c.FallbackIndex(context.Background(), repo, d, maxManifest)
	if err != nil || !index || len(descs) != 1 || descs[0].ArtifactType != "application/vnd.example.a" {
		t.Fatalf("fallback index: %+v %v %v", descs, index, err)
	}

	// An image manifest without mediaType under the tag of another digest.
	other := digest.FromString("another subject")
	r, empty := pushEmpty(t, reg, repo)
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "config": empty, "layers": []ocispec.Descriptor{empty}})
	if err := remote.Put(r.Tag("sha256-"+other.Encoded()), rawManifest(body)); err != nil {
		t.Fatal(err)
	}
	descs, index, err = c.FallbackIndex(context.Background(), repo, other, maxManifest)
	if err != nil || index || len(descs) != 0 {
		t.Fatalf("image manifest under the referrers tag: %+v index=%v %v, want no index", descs, index, err)
	}
}
