package upstream

import (
	"context"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
)

// Fetcher reads evidence (signatures, attestations, bundles) about artifacts
// in one repository of this upstream, for verify.Collect.
func (c *Client) Fetcher(repo string, maxManifest int64) verify.Fetcher {
	return &repoFetcher{c: c, repo: repo, max: maxManifest}
}

type repoFetcher struct {
	c    *Client
	repo string
	max  int64
}

func (f *repoFetcher) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	return f.c.ReferrerDescriptors(ctx, f.repo, subject, artifactType, f.max)
}

func (f *repoFetcher) Manifest(ctx context.Context, reference string) ([]byte, string, digest.Digest, error) {
	body, mt, err := f.c.Manifest(ctx, f.repo, reference, f.max)
	if IsKind(err, NotFound) {
		return nil, "", "", &verify.NotFoundError{What: "manifest " + f.repo + ":" + reference}
	}
	if err != nil {
		return nil, "", "", err
	}
	d := digest.FromBytes(body)
	if strings.Contains(reference, ":") {
		d = digest.Digest(reference) // Manifest verified the bytes against it
	}
	return body, mt, d, nil
}

func (f *repoFetcher) Blob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error) {
	b, err := f.c.BlobBytes(ctx, f.repo, dgst, maxSize)
	if IsKind(err, NotFound) {
		return nil, &verify.NotFoundError{What: "blob " + dgst.String()}
	}
	return b, err
}
