package upstream

import (
	"context"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReferrerDescriptors lists the manifests whose subject is dgst, through the
// referrers API or, when the upstream lacks it, the sha256-<hex> index tag
// (a missing or invalid tag means no referrers). artifactType filters when
// non-empty. The result is never nil.
func (c *Client) ReferrerDescriptors(ctx context.Context, repo string, dgst digest.Digest, artifactType string, maxManifest int64) ([]ocispec.Descriptor, error) {
	pages, filtered, ok, err := c.Referrers(ctx, repo, dgst, artifactType, maxListing)
	if err != nil {
		return nil, err
	}
	var all []ocispec.Descriptor
	if ok {
		for _, p := range pages {
			var idx ocispec.Index
			if err := json.Unmarshal(p, &idx); err != nil {
				return nil, &Error{Kind: Invalid, Upstream: c.Name, Msg: "referrers of " + dgst.String() + ": invalid index"}
			}
			all = append(all, idx.Manifests...)
		}
	} else {
		tag := dgst.Algorithm().String() + "-" + dgst.Encoded()
		body, _, err := c.Manifest(ctx, repo, tag, maxManifest)
		switch {
		case IsKind(err, NotFound):
		case err != nil:
			return nil, err
		default:
			var idx struct {
				SchemaVersion int                  `json:"schemaVersion"`
				MediaType     string               `json:"mediaType"`
				Manifests     []ocispec.Descriptor `json:"manifests"`
			}
			if json.Unmarshal(body, &idx) == nil && idx.SchemaVersion == 2 &&
				(idx.MediaType == "" || idx.MediaType == ocispec.MediaTypeImageIndex) {
				all = idx.Manifests
			}
		}
		filtered = false
	}
	out := []ocispec.Descriptor{}
	for _, d := range all {
		if d.Digest.Validate() != nil || d.Size < 0 {
			continue
		}
		if artifactType != "" && !filtered && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// maxListing bounds one referrers or tags page from an upstream.
const maxListing = 8 << 20
