package vsa

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// Registry says how to reach the registry holding an image's VSAs.
type Registry struct {
	// Keychain resolves credentials (nil: anonymous); the CLI uses
	// authn.DefaultKeychain (Docker config and its credential helpers).
	Keychain authn.Keychain
	// Insecure allows plain HTTP.
	Insecure bool
	// Transport for registry requests (nil: http.DefaultTransport).
	Transport http.RoundTripper
}

func (r Registry) options() []remote.Option {
	var opts []remote.Option
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	if r.Keychain != nil {
		opts = append(opts, remote.WithAuthFromKeychain(r.Keychain))
	}
	return opts
}

// Resolve returns the digest imageRef (repo:tag or repo@digest) names on its
// registry; for a digest reference, the registry must answer that digest.
func Resolve(ctx context.Context, imageRef string, reg Registry) (name.Repository, digest.Digest, error) {
	var nopts []name.Option
	if reg.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(imageRef, nopts...)
	if err != nil {
		return name.Repository{}, "", err
	}
	desc, err := remote.Head(ref, append(reg.options(), remote.WithContext(ctx))...)
	if err != nil {
		return name.Repository{}, "", fmt.Errorf("resolving %s: %w", imageRef, err)
	}
	d := digest.Digest(desc.Digest.String())
	if dr, ok := ref.(name.Digest); ok && dr.DigestStr() != d.String() {
		return name.Repository{}, "", fmt.Errorf("registry answered %s for %s", d, imageRef)
	}
	return ref.Context(), d, nil
}

// OnlyVSAs narrows a verify.Fetcher to what may hold a VSA, so that other
// evidence about the digest (signatures by another key, attestations of
// other types) neither costs verifications nor turns "no VSA" into
// "signature invalid": cosign's legacy .sig tag reads as absent, and a
// referrer is listed only when its dev.sigstore.bundle.predicateType
// annotation (cosign v3 and attest.Push write it on the manifest; the
// referrers API repeats it in the listing, the sha256-<hex> tag fallback
// does not, so the manifest is then read, once) is PredicateType or absent,
// and its artifact type is not cosign's legacy signature type. Annotations
// are not signed: they only ever make evidence be skipped, never count.
func OnlyVSAs(f verify.Fetcher) verify.Fetcher {
	return &vsaFetcher{Fetcher: f, read: map[digest.Digest]fetched{}}
}

type vsaFetcher struct {
	verify.Fetcher
	mu   sync.Mutex
	read map[digest.Digest]fetched // referrer manifests read to decide, for Manifest
}

type fetched struct {
	body []byte
	mt   string
}

func (f *vsaFetcher) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	descs, err := f.Fetcher.Referrers(ctx, subject, artifactType)
	if err != nil {
		return nil, err
	}
	out := descs[:0:0]
	reads := 0
	for _, d := range descs {
		if d.ArtifactType == verify.CosignSignatureArtifactType {
			continue
		}
		pt, ok := d.Annotations[attest.AnnotationPredicateType]
		if !ok && d.ArtifactType == attest.BundleMediaType && reads < maxAnnotationReads && d.Size <= maxReferrerManifest {
			// Bounded: a repository with thousands of unannotated
			// referrers costs at most maxAnnotationReads small reads
			// (the rest are examined by Collect, within its own cap).
			reads++
			pt, ok = f.predicateType(ctx, d.Digest)
		}
		if ok && pt != PredicateType {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// Bounds of OnlyVSAs' reads of referrer manifests for their predicate type.
const (
	maxAnnotationReads  = 64
	maxReferrerManifest = 4 << 20
)

// predicateType reads a referrer manifest's predicate type annotation
// (false when it cannot be read or has none: the referrer is then examined).
func (f *vsaFetcher) predicateType(ctx context.Context, d digest.Digest) (string, bool) {
	body, mt, got, err := f.Fetcher.Manifest(ctx, d.String())
	if err != nil || got != d {
		return "", false
	}
	f.mu.Lock()
	f.read[d] = fetched{body, mt}
	f.mu.Unlock()
	var m struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(body, &m) != nil {
		return "", false
	}
	pt, ok := m.Annotations[attest.AnnotationPredicateType]
	return pt, ok
}

func (f *vsaFetcher) Manifest(ctx context.Context, reference string) ([]byte, string, digest.Digest, error) {
	if strings.HasPrefix(reference, "sha256-") && strings.HasSuffix(reference, ".sig") {
		return nil, "", "", &verify.NotFoundError{What: "manifest " + reference + " (signatures are not VSAs)"}
	}
	f.mu.Lock()
	r, ok := f.read[digest.Digest(reference)]
	f.mu.Unlock()
	if ok {
		return r.body, r.mt, digest.Digest(reference), nil
	}
	return f.Fetcher.Manifest(ctx, reference)
}

// CheckRegistry looks up the VSAs of subject in repo the way `pullgate
// verify` looks up evidence (verify.Collect: sigstore bundle referrers
// through the referrers API or the sha256-<hex> tag fallback, and cosign's
// legacy .att tag), narrowed by OnlyVSAs, and checks them with CheckResult. It also returns what
// Collect found, for reports.
func CheckRegistry(ctx context.Context, repo name.Repository, subject digest.Digest, trust *verify.Trust, opts CheckOptions, reg Registry) (*Summary, verify.Result, error) {
	f := OnlyVSAs(&attest.RegistryFetcher{Repo: repo, Opts: reg.options()})
	res := verify.Collect(ctx, f, subject, trust, verify.CollectOptions{VerifyOptions: opts.Verify})
	s, err := CheckResult(res, opts)
	return s, res, err
}
