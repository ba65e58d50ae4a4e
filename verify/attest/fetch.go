package attest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
)

// RegistryFetcher is a verify.Fetcher over one repository of a registry,
// built on go-containerregistry (referrers API with the sha256-<hex> tag
// fallback). It verifies the digest of everything it returns. Opts carry
// the transport and credentials (remote.WithAuthFromKeychain).
type RegistryFetcher struct {
	Repo name.Repository
	Opts []remote.Option
}

var _ verify.Fetcher = (*RegistryFetcher)(nil)

func notFound(err error, what string) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return &verify.NotFoundError{What: what}
	}
	return err
}

// Referrers implements verify.Fetcher.
func (f *RegistryFetcher) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	opts := append([]remote.Option{remote.WithContext(ctx)}, f.Opts...)
	if artifactType != "" {
		opts = append(opts, remote.WithFilter("artifactType", artifactType))
	}
	idx, err := remote.Referrers(f.Repo.Digest(subject.String()), opts...)
	if err != nil {
		return nil, notFound(err, "referrers of "+subject.String())
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	out := []ocispec.Descriptor{}
	for _, d := range im.Manifests {
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, ocispec.Descriptor{
			MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size,
			ArtifactType: d.ArtifactType, Annotations: d.Annotations,
		})
	}
	return out, nil
}

// Manifest implements verify.Fetcher.
func (f *RegistryFetcher) Manifest(ctx context.Context, reference string) ([]byte, string, digest.Digest, error) {
	var ref name.Reference
	if _, perr := digest.Parse(reference); perr == nil {
		ref = f.Repo.Digest(reference)
	} else {
		ref = f.Repo.Tag(reference)
	}
	d, err := remote.Get(ref, append([]remote.Option{remote.WithContext(ctx)}, f.Opts...)...)
	if err != nil {
		return nil, "", "", notFound(err, "manifest "+reference)
	}
	got := digest.FromBytes(d.Manifest)
	if got.String() != d.Digest.String() {
		return nil, "", "", fmt.Errorf("manifest %s: body digest %s", reference, got)
	}
	if dg, ok := ref.(name.Digest); ok && dg.DigestStr() != got.String() {
		return nil, "", "", fmt.Errorf("manifest %s: registry returned %s", reference, got)
	}
	return d.Manifest, string(d.MediaType), got, nil
}

// Blob implements verify.Fetcher.
func (f *RegistryFetcher) Blob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error) {
	h, err := v1.NewHash(dgst.String())
	if err != nil {
		return nil, err
	}
	l, err := remote.Layer(f.Repo.Digest(h.String()), append([]remote.Option{remote.WithContext(ctx)}, f.Opts...)...)
	if err != nil {
		return nil, notFound(err, "blob "+dgst.String())
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, notFound(err, "blob "+dgst.String())
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > maxSize {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", dgst, maxSize)
	}
	if digest.FromBytes(b) != dgst {
		return nil, fmt.Errorf("blob %s: content digest mismatch", dgst)
	}
	return b, nil
}
