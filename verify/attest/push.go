package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
)

// Referrer manifest annotations written by Push (the ones cosign v3 writes).
const (
	AnnotationCreated       = "org.opencontainers.image.created"
	AnnotationBundleContent = "dev.sigstore.bundle.content"
	AnnotationPredicateType = "dev.sigstore.bundle.predicateType"
	// EmptyConfigMediaType is the OCI empty descriptor media type.
	EmptyConfigMediaType = "application/vnd.oci.empty.v1+json"
)

// MaxBundleSize bounds a bundle accepted by Push.
const MaxBundleSize = 16 << 20

// PushOptions configure registry access for Push.
type PushOptions struct {
	// Transport for registry requests (nil: http.DefaultTransport).
	Transport http.RoundTripper
	// Auth authenticates to the registry; when nil, Keychain is used.
	Auth authn.Authenticator
	// Keychain resolves credentials when Auth is nil (nil: anonymous).
	Keychain authn.Keychain
	// Insecure allows plain HTTP to the registry.
	Insecure bool
	// Created is the org.opencontainers.image.created annotation (zero: now).
	Created time.Time
}

// Pushed describes one referrer written by Push.
type Pushed struct {
	// Ref is repo@sha256:... of the referrer manifest.
	Ref           string `json:"ref"`
	Digest        string `json:"digest"`
	PredicateType string `json:"predicateType"`
	// Statement is the digest of the bundle's statement.
	Statement string `json:"statement"`
}

// Push attaches each bundle to the artifact imageRef (repo@sha256:... or
// repo:tag, which is resolved to its digest once) as an OCI referrer, in the
// layout cosign v3 uses for new-format attestations: an image manifest with
// artifactType application/vnd.dev.sigstore.bundle.v0.3+json, the empty
// config, one layer holding the bundle, subject = the artifact's descriptor,
// and the annotations dev.sigstore.bundle.content=dsse-envelope,
// dev.sigstore.bundle.predicateType=<type> and org.opencontainers.image.created.
// When the registry lacks the referrers API, the sha256-<hex> referrers
// index tag is updated (go-containerregistry's fallback, as cosign).
//
// Every bundle is checked before anything is written: it must be a Sigstore
// bundle holding a DSSE in-toto statement whose subjects include the
// artifact's digest (otherwise no verifier would count it). A registry
// failure midway leaves the bundles already pushed, which the returned slice
// lists.
func Push(ctx context.Context, imageRef string, bundles [][]byte, opts PushOptions) ([]Pushed, error) {
	if len(bundles) == 0 {
		return nil, errors.New("push: no bundles given")
	}
	var nameOpts []name.Option
	if opts.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	ref, err := name.ParseReference(imageRef, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	ropts := []remote.Option{remote.WithContext(ctx)}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	switch {
	case opts.Auth != nil:
		ropts = append(ropts, remote.WithAuth(opts.Auth))
	case opts.Keychain != nil:
		ropts = append(ropts, remote.WithAuthFromKeychain(opts.Keychain))
	}
	desc, err := remote.Head(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("push: resolving %s: %w", imageRef, err)
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != desc.Digest.String() {
		return nil, fmt.Errorf("push: registry answered %s for %s", desc.Digest, imageRef)
	}
	subject := desc.Digest.String()

	type item struct {
		raw  []byte
		pt   string
		stmt string
	}
	items := make([]item, 0, len(bundles))
	for i, b := range bundles {
		pt, stmt, err := inspectBundle(b, subject)
		if err != nil {
			return nil, fmt.Errorf("push: bundle %d: %w", i+1, err)
		}
		items = append(items, item{b, pt, stmt})
	}

	repo := ref.Context()
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	empty := static.NewLayer(EmptyConfig, EmptyConfigMediaType)
	if err := remote.WriteLayer(repo, empty, ropts...); err != nil {
		return nil, fmt.Errorf("push: writing empty config: %w", err)
	}
	out := make([]Pushed, 0, len(items))
	for i, it := range items {
		layer := static.NewLayer(it.raw, BundleMediaType)
		if err := remote.WriteLayer(repo, layer, ropts...); err != nil {
			return out, fmt.Errorf("push: bundle %d: writing layer: %w", i+1, err)
		}
		raw, err := BundleManifest(v1.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, it.raw, it.pt, created)
		if err != nil {
			return out, err
		}
		m := rawManifest(raw)
		h, _, err := v1.SHA256(bytes.NewReader(raw))
		if err != nil {
			return out, err
		}
		target := repo.Digest(h.String())
		if err := remote.Put(target, m, ropts...); err != nil {
			return out, fmt.Errorf("push: bundle %d: writing referrer manifest: %w", i+1, err)
		}
		out = append(out, Pushed{Ref: target.String(), Digest: h.String(), PredicateType: it.pt, Statement: it.stmt})
	}
	return out, nil
}

// inspectBundle validates a bundle for Push and returns its predicate type
// and statement digest. The signature is not verified here (the registry is
// not a trust boundary for the pusher); verifiers do that on pull.
func inspectBundle(raw []byte, subject string) (predicateType, statement string, err error) {
	if len(raw) > MaxBundleSize {
		return "", "", fmt.Errorf("bundle is larger than %d bytes", MaxBundleSize)
	}
	var b sgbundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return "", "", fmt.Errorf("not a valid Sigstore bundle: %w", err)
	}
	if b.GetMediaType() != BundleMediaType {
		return "", "", fmt.Errorf("bundle media type %q, want %s", b.GetMediaType(), BundleMediaType)
	}
	env := b.GetDsseEnvelope()
	if env == nil {
		return "", "", errors.New("bundle holds no DSSE envelope (message signatures cannot carry attestations)")
	}
	if env.GetPayloadType() != PayloadType {
		return "", "", fmt.Errorf("DSSE payloadType %q, want %s", env.GetPayloadType(), PayloadType)
	}
	if len(env.GetSignatures()) == 0 {
		return "", "", errors.New("DSSE envelope has no signature")
	}
	ps, err := ParseStatement(env.GetPayload())
	if err != nil {
		return "", "", err
	}
	if !ps.HasSubject(subject) {
		return "", "", fmt.Errorf("statement subjects do not include %s (create it with --subject %s)", subject, subject)
	}
	return ps.PredicateType, ps.Digest, nil
}

// BundleManifest is the referrer manifest Push writes for one bundle about
// subject: artifactType and the one layer's media type
// application/vnd.dev.sigstore.bundle.v0.3+json, the empty config
// (EmptyConfig, artifactType the bundle type, as cosign v3), subject the
// artifact's descriptor, and cosign v3's annotations (bundle content
// dsse-envelope, the predicate type, created at created in UTC). Its blobs
// are the bundle and EmptyConfig.
func BundleManifest(subject v1.Descriptor, bundle []byte, predicateType string, created time.Time) ([]byte, error) {
	cfg, _, err := v1.SHA256(bytes.NewReader(EmptyConfig))
	if err != nil {
		return nil, err
	}
	ld, _, err := v1.SHA256(bytes.NewReader(bundle))
	if err != nil {
		return nil, err
	}
	m := referrerManifest{
		Manifest: v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			Config: v1.Descriptor{
				MediaType: EmptyConfigMediaType, ArtifactType: BundleMediaType,
				Digest: cfg, Size: int64(len(EmptyConfig)),
			},
			Layers:  []v1.Descriptor{{MediaType: BundleMediaType, Digest: ld, Size: int64(len(bundle))}},
			Subject: &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
			Annotations: map[string]string{
				AnnotationCreated:       created.UTC().Format(time.RFC3339),
				AnnotationBundleContent: "dsse-envelope",
				AnnotationPredicateType: predicateType,
			},
		},
		ArtifactType: BundleMediaType,
	}
	return m.RawManifest()
}

// EmptyConfig is the OCI empty descriptor's content, the config of a
// bundle referrer.
var EmptyConfig = []byte("{}")

// rawManifest is a manifest's bytes as remote.Put writes them.
type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error) { return r, nil }

func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// referrerManifest is an OCI image manifest with the OCI 1.1 artifactType
// field, which go-containerregistry's v1.Manifest lacks (as in cosign).
type referrerManifest struct {
	v1.Manifest
	ArtifactType string `json:"artifactType,omitempty"`
}

func (r referrerManifest) RawManifest() ([]byte, error) { return json.Marshal(r) }

func (r referrerManifest) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}
