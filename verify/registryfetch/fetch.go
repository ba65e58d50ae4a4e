// Package registryfetch is a verify.Fetcher over an OCI distribution
// registry: manifests and blobs are size-capped and digest-verified, and
// referrers come from the OCI 1.1 referrers API or, when the registry
// answers 404 there, from the sha256-<hex> referrers tag.
package registryfetch

import (
	_ "crypto/sha512" // registries may address content by sha512

	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
)

// Defaults for Options.
const (
	DefaultMaxManifestSize = 4 << 20
	maxReferrerPages       = 16
	maxReferrers           = 1024
)

// Options configure a Fetcher.
type Options struct {
	// Transport is the base RoundTripper (TLS, proxies, test wrappers).
	// Default http.DefaultTransport.
	Transport http.RoundTripper
	// Auth authenticates to the registry. Default anonymous. Bearer-token
	// exchange is done by go-containerregistry's transport.
	Auth authn.Authenticator
	// Insecure allows plain HTTP (go-containerregistry already uses HTTP
	// for localhost and 127.0.0.1).
	Insecure bool
	// MaxManifestSize caps manifests and referrers indexes.
	MaxManifestSize int64
}

// Fetcher reads one repository.
type Fetcher struct {
	repo   name.Repository
	client *http.Client
	max    int64
}

var _ verify.Fetcher = (*Fetcher)(nil)

// New returns a Fetcher for repository (e.g. "127.0.0.1:5000/app" or
// "registry.example/org/app"). It contacts the registry to set up auth.
func New(ctx context.Context, repository string, opts Options) (*Fetcher, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(repository, nopts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repository, err)
	}
	base := opts.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	auth := opts.Auth
	if auth == nil {
		auth = authn.Anonymous
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", repo.RegistryStr(), err)
	}
	max := opts.MaxManifestSize
	if max <= 0 {
		max = DefaultMaxManifestSize
	}
	return &Fetcher{repo: repo, client: &http.Client{Transport: rt}, max: max}, nil
}

// Repository is the repository this Fetcher reads.
func (f *Fetcher) Repository() name.Repository { return f.repo }

func (f *Fetcher) url(kind, ref string) string {
	u := url.URL{Scheme: f.repo.Registry.Scheme(), Host: f.repo.RegistryStr(), Path: "/v2/" + f.repo.RepositoryStr() + "/" + kind + "/" + ref}
	return u.String()
}

var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

func (f *Fetcher) get(ctx context.Context, u, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return f.client.Do(req)
}

func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("response exceeds the %d byte limit", max)
	}
	return b, nil
}

func statusErr(what string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(b))
	if msg != "" {
		msg = ": " + msg
	}
	return fmt.Errorf("%s: registry answered %s%s", what, resp.Status, msg)
}

// Manifest fetches a manifest by tag or digest. By digest, the bytes must
// hash to it; by tag, they must match Docker-Content-Digest when sent.
func (f *Fetcher) Manifest(ctx context.Context, reference string) ([]byte, string, digest.Digest, error) {
	var want digest.Digest
	if strings.Contains(reference, ":") {
		d, err := digest.Parse(reference)
		if err != nil {
			return nil, "", "", fmt.Errorf("manifest reference %q: %w", reference, err)
		}
		want = d
	} else if _, err := name.NewTag(f.repo.Name()+":"+reference, name.StrictValidation); err != nil {
		return nil, "", "", fmt.Errorf("manifest reference %q: %w", reference, err)
	}
	what := "manifest " + f.repo.String() + "@" + reference
	if want == "" {
		what = "manifest " + f.repo.String() + ":" + reference
	}
	resp, err := f.get(ctx, f.url("manifests", reference), manifestAccept)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, "", "", &verify.NotFoundError{What: what}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", "", statusErr(what, resp)
	}
	if resp.ContentLength > f.max {
		return nil, "", "", fmt.Errorf("%s: %d bytes exceeds the %d byte limit", what, resp.ContentLength, f.max)
	}
	body, err := readCapped(resp.Body, f.max)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", what, err)
	}
	got := digest.SHA256.FromBytes(body)
	if want != "" {
		if !want.Algorithm().Available() {
			return nil, "", "", fmt.Errorf("%s: unsupported digest algorithm", what)
		}
		if want.Algorithm().FromBytes(body) != want {
			return nil, "", "", fmt.Errorf("%s: body does not match the requested digest", what)
		}
		got = want
	} else if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
		hd, err := digest.Parse(h)
		if err != nil || !hd.Algorithm().Available() || hd.Algorithm().FromBytes(body) != hd {
			return nil, "", "", fmt.Errorf("%s: body does not match Docker-Content-Digest %q", what, h)
		}
	}
	mt := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = strings.TrimSpace(mt[:i])
	}
	var probe struct {
		MediaType string `json:"mediaType"`
	}
	if json.Unmarshal(body, &probe) == nil && probe.MediaType != "" {
		mt = probe.MediaType
	}
	return body, mt, got, nil
}

// Blob fetches a whole blob of at most maxSize bytes and verifies its digest.
func (f *Fetcher) Blob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("blob digest: %w", err)
	}
	what := "blob " + f.repo.String() + "@" + dgst.String()
	resp, err := f.get(ctx, f.url("blobs", dgst.String()), "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, &verify.NotFoundError{What: what}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, statusErr(what, resp)
	}
	if resp.ContentLength > maxSize {
		return nil, fmt.Errorf("%s: %d bytes exceeds the %d byte limit", what, resp.ContentLength, maxSize)
	}
	body, err := readCapped(resp.Body, maxSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if dgst.Algorithm().FromBytes(body) != dgst {
		return nil, fmt.Errorf("%s: content does not match its digest", what)
	}
	return body, nil
}

// Referrers lists manifests whose subject is subject: the referrers API
// first, the sha256-<hex> tag when the API answers 404.
func (f *Fetcher) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	if err := subject.Validate(); err != nil {
		return nil, fmt.Errorf("referrers subject: %w", err)
	}
	u := f.url("referrers", subject.String())
	if artifactType != "" {
		u += "?artifactType=" + url.QueryEscape(artifactType)
	}
	var out []ocispec.Descriptor
	for page := 0; u != ""; page++ {
		if page >= maxReferrerPages {
			return nil, fmt.Errorf("referrers of %s: more than %d pages", subject, maxReferrerPages)
		}
		resp, err := f.get(ctx, u, ocispec.MediaTypeImageIndex)
		if err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", subject, err)
		}
		if resp.StatusCode == http.StatusNotFound && page == 0 {
			resp.Body.Close()
			return f.referrersTag(ctx, subject, artifactType)
		}
		if resp.StatusCode != http.StatusOK {
			err := statusErr("referrers of "+subject.String(), resp)
			resp.Body.Close()
			return nil, err
		}
		body, err := readCapped(resp.Body, f.max)
		next := nextLink(resp)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", subject, err)
		}
		descs, err := parseIndex(body)
		if err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", subject, err)
		}
		out = append(out, filter(descs, artifactType)...)
		if len(out) > maxReferrers {
			return nil, fmt.Errorf("referrers of %s: more than %d", subject, maxReferrers)
		}
		u = ""
		if next != "" {
			nu, err := resp.Request.URL.Parse(next)
			if err != nil {
				return nil, fmt.Errorf("referrers of %s: bad Link header: %w", subject, err)
			}
			if nu.Host != resp.Request.URL.Host {
				return nil, fmt.Errorf("referrers of %s: Link header points to another host", subject)
			}
			u = nu.String()
		}
	}
	if out == nil {
		out = []ocispec.Descriptor{}
	}
	return out, nil
}

func (f *Fetcher) referrersTag(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	tag := subject.Algorithm().String() + "-" + subject.Encoded()
	body, _, _, err := f.Manifest(ctx, tag)
	if err != nil {
		if verify.IsNotFound(err) {
			return []ocispec.Descriptor{}, nil
		}
		return nil, fmt.Errorf("referrers tag of %s: %w", subject, err)
	}
	descs, err := parseIndex(body)
	if err != nil {
		// The spec: a tag that is not a valid index means no referrers.
		return []ocispec.Descriptor{}, nil
	}
	if len(descs) > maxReferrers {
		descs = descs[:maxReferrers]
	}
	return filter(descs, artifactType), nil
}

func parseIndex(body []byte) ([]ocispec.Descriptor, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("referrers index is not valid JSON: %w", err)
	}
	if idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex {
		return nil, fmt.Errorf("referrers index has media type %q", idx.MediaType)
	}
	return idx.Manifests, nil
}

func filter(descs []ocispec.Descriptor, artifactType string) []ocispec.Descriptor {
	if artifactType == "" {
		return descs
	}
	out := make([]ocispec.Descriptor, 0, len(descs))
	for _, d := range descs {
		if d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out
}

// nextLink returns the target of a Link: <...>; rel="next" header.
func nextLink(resp *http.Response) string {
	for _, l := range resp.Header.Values("Link") {
		for _, part := range strings.Split(l, ",") {
			part = strings.TrimSpace(part)
			if !strings.Contains(part, `rel="next"`) && !strings.Contains(part, "rel=next") {
				continue
			}
			if i, j := strings.IndexByte(part, '<'), strings.IndexByte(part, '>'); i >= 0 && j > i {
				return part[i+1 : j]
			}
		}
	}
	return ""
}
