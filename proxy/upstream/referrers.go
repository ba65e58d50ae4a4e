package upstream

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReferrerDescriptors lists the manifests whose subject is dgst, through the
// referrers API or, when the upstream lacks it, the sha256-<hex> index tag
// (a missing or invalid tag means no referrers). artifactType filters when
// non-empty. The result is never nil.
func (c *Client) ReferrerDescriptors(ctx context.Context, repo string, dgst digest.Digest, artifactType string, maxManifest int64) ([]ocispec.Descriptor, error) {
	all, filtered, ok, err := c.ReferrersAPI(ctx, repo, dgst, artifactType, maxListing)
	if err != nil {
		return nil, err
	}
	if ok {
		all = validDescriptors(all)
	} else {
		// FallbackIndex keeps only valid descriptors.
		all, _, err = c.FallbackIndex(ctx, repo, dgst, maxManifest)
		if err != nil && !IsKind(err, NotFound) {
			return nil, err
		}
		filtered = false
	}
	out := []ocispec.Descriptor{}
	for _, d := range all {
		if artifactType != "" && !filtered && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// ReferrersAPI lists the descriptors of every page of the upstream's
// referrers API answer for dgst (Referrers), as the upstream sent them;
// ok is false when the upstream has no referrers API.
func (c *Client) ReferrersAPI(ctx context.Context, repo string, dgst digest.Digest, artifactType string, limit int64) (descs []ocispec.Descriptor, filtered, ok bool, err error) {
	pages, filtered, ok, err := c.Referrers(ctx, repo, dgst, artifactType, limit)
	if err != nil || !ok {
		return nil, false, ok, err
	}
	for _, p := range pages {
		var idx ocispec.Index
		if err := json.Unmarshal(p, &idx); err != nil {
			return nil, false, true, &Error{Kind: Invalid, Upstream: c.Name, Msg: "referrers of " + dgst.String() + ": invalid index"}
		}
		descs = append(descs, idx.Manifests...)
	}
	return descs, filtered, true, nil
}

// FallbackIndex reads the sha256-<hex> index tag of dgst (the referrers tag
// schema of registries without the referrers API): the descriptors it
// lists (those with a valid digest and size). index is false when the tag
// names something else than an OCI image index: an index has a manifests
// array, no other mediaType, and is not served as another manifest type
// (an image manifest may omit its mediaType too). A missing tag is an
// error of kind NotFound.
func (c *Client) FallbackIndex(ctx context.Context, repo string, dgst digest.Digest, maxManifest int64) (descs []ocispec.Descriptor, index bool, err error) {
	tag := dgst.Algorithm().String() + "-" + dgst.Encoded()
	body, mt, err := c.Manifest(ctx, repo, tag, maxManifest)
	if err != nil {
		return nil, false, err
	}
	var idx struct {
		SchemaVersion int                   `json:"schemaVersion"`
		MediaType     string                `json:"mediaType"`
		Manifests     *[]ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(body, &idx) != nil || idx.SchemaVersion != 2 || idx.Manifests == nil ||
		(idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex) ||
		(mt != ocispec.MediaTypeImageIndex && slices.Contains(ManifestAccept, mt)) {
		return nil, false, nil
	}
	return validDescriptors(*idx.Manifests), true, nil
}

// validDescriptors are the descriptors with a valid digest and size.
func validDescriptors(descs []ocispec.Descriptor) []ocispec.Descriptor {
	out := []ocispec.Descriptor{}
	for _, d := range descs {
		if d.Digest.Validate() == nil && d.Size >= 0 {
			out = append(out, d)
		}
	}
	return out
}

// maxListing bounds one referrers or tags page from an upstream.
const maxListing = 8 << 20
