package vsa

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

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

// CheckRegistry looks up the VSAs of subject in repo the way `pullgate
// verify` looks up evidence (verify.Collect: sigstore bundle referrers
// through the referrers API or the sha256-<hex> tag fallback, and cosign's
// legacy .att tag) and checks them with CheckResult. It also returns what
// Collect found, for reports.
func CheckRegistry(ctx context.Context, repo name.Repository, subject digest.Digest, trust *verify.Trust, opts CheckOptions, reg Registry) (*Summary, verify.Result, error) {
	f := &attest.RegistryFetcher{Repo: repo, Opts: reg.options()}
	res := verify.Collect(ctx, f, subject, trust, verify.CollectOptions{VerifyOptions: opts.Verify})
	s, err := CheckResult(res, opts)
	return s, res, err
}
