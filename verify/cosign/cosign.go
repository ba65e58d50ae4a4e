// Package cosign reads the storage formats cosign writes to OCI registries:
// legacy `sha256-<hex>.sig` simple-signing signatures and `.att` DSSE
// attestations (with their certificate, chain, Rekor bundle and RFC 3161
// annotations), and the names of the sigstore bundle v0.3 referrers that
// cosign v3 writes. Everything here parses hostile bytes: strict and bounded.
package cosign

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// Media types, annotations and constants of cosign's storage formats.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	BundleMediaType        = "application/vnd.dev.sigstore.bundle.v0.3+json"

	SignatureAnnotation        = "dev.cosignproject.cosign/signature"
	CertificateAnnotation      = "dev.sigstore.cosign/certificate"
	ChainAnnotation            = "dev.sigstore.cosign/chain"
	BundleAnnotation           = "dev.sigstore.cosign/bundle"
	RFC3161TimestampAnnotation = "dev.sigstore.cosign/rfc3161timestamp"
	// BundlePredicateTypeAnnotation and BundleContentAnnotation are set on
	// cosign v3 referrer manifests; they are unsigned hints only.
	BundlePredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	BundleContentAnnotation       = "dev.sigstore.bundle.content"

	// SimpleSigningType is critical.type of a cosign image signature.
	SimpleSigningType = "cosign container image signature"
	// SignPredicateType is the in-toto predicate type cosign v2
	// (--new-bundle-format) and v3 use for image *signatures* stored as
	// DSSE bundles.
	SignPredicateType = "https://sigstore.dev/cosign/sign/v1"
)

// Limits.
const (
	MaxPayloadSize    = 1 << 20
	MaxAnnotationSize = 64 << 10
)

// TagFor returns the legacy cosign tag for a digest and suffix ("sig",
// "att", "sbom"): sha256-<hex>.<suffix>.
func TagFor(d digest.Digest, suffix string) string {
	return d.Algorithm().String() + "-" + d.Encoded() + "." + suffix
}

// SimpleSigning is a parsed simple-signing payload.
type SimpleSigning struct {
	// ManifestDigest is critical.image.docker-manifest-digest.
	ManifestDigest digest.Digest
	// DockerReference is critical.identity.docker-reference (informational).
	DockerReference string
	// Optional is the optional section, unverified semantics.
	Optional map[string]any
}

type wireSimpleSigning struct {
	Critical *struct {
		Identity *struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image *struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// ParseSimpleSigning parses a cosign simple-signing payload and checks its
// type and digest syntax. The caller compares ManifestDigest to the subject.
//
// The payload is read one way (strictjson): one JSON object, no repeated
// key, field names in their exact case, valid UTF-8; and, as the
// simple-signing format requires of consumers, no member the format does
// not define at the top level or anywhere in critical (optional is free).
// The proxy serves a simple-signing blob only if this accepts it.
func ParseSimpleSigning(payload []byte) (*SimpleSigning, error) {
	if len(payload) > MaxPayloadSize {
		return nil, fmt.Errorf("simple-signing: payload of %d bytes exceeds the %d byte limit", len(payload), MaxPayloadSize)
	}
	var w wireSimpleSigning
	if err := strictjson.UnmarshalKnown(payload, &w); err != nil {
		return nil, fmt.Errorf("simple-signing: payload is not valid JSON: %w", err)
	}
	if w.Critical == nil {
		return nil, errors.New("simple-signing: payload has no critical section")
	}
	if w.Critical.Type != SimpleSigningType {
		return nil, fmt.Errorf("simple-signing: critical.type is %q, want %q", clip(w.Critical.Type), SimpleSigningType)
	}
	if w.Critical.Image == nil || w.Critical.Image.DockerManifestDigest == "" {
		return nil, errors.New("simple-signing: payload has no critical.image.docker-manifest-digest")
	}
	d, err := digest.Parse(w.Critical.Image.DockerManifestDigest)
	if err != nil {
		return nil, fmt.Errorf("simple-signing: invalid docker-manifest-digest %q: %w", clip(w.Critical.Image.DockerManifestDigest), err)
	}
	s := &SimpleSigning{ManifestDigest: d, Optional: w.Optional}
	if w.Critical.Identity != nil {
		s.DockerReference = w.Critical.Identity.DockerReference
	}
	return s, nil
}

// DecodeSignatureAnnotation decodes the base64 signature annotation.
func DecodeSignatureAnnotation(v string) ([]byte, error) {
	if v == "" {
		return nil, errors.New("signature annotation is empty")
	}
	if len(v) > MaxAnnotationSize {
		return nil, errors.New("signature annotation is too large")
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("signature annotation is not base64: %w", err)
	}
	if len(sig) == 0 {
		return nil, errors.New("signature annotation decodes to nothing")
	}
	return sig, nil
}

// RekorBundle is cosign's legacy `dev.sigstore.cosign/bundle` annotation: a
// Rekor v1 signed entry timestamp over the entry.
type RekorBundle struct {
	SignedEntryTimestamp []byte
	Body                 []byte // decoded canonical entry body
	IntegratedTime       int64
	LogIndex             int64
	LogID                []byte // decoded log ID (sha256 of the log key)
}

type wireRekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              *struct {
		Body           *string `json:"body"`
		IntegratedTime *int64  `json:"integratedTime"`
		LogIndex       *int64  `json:"logIndex"`
		LogID          *string `json:"logID"`
	} `json:"Payload"`
}

// ParseRekorBundle parses the legacy Rekor bundle annotation.
func ParseRekorBundle(v string) (*RekorBundle, error) {
	if len(v) > MaxAnnotationSize {
		return nil, errors.New("rekor bundle annotation is too large")
	}
	var w wireRekorBundle
	if err := strictjson.Unmarshal([]byte(v), &w); err != nil {
		return nil, fmt.Errorf("rekor bundle annotation is not valid JSON: %w", err)
	}
	if len(w.SignedEntryTimestamp) == 0 {
		return nil, errors.New("rekor bundle has no SignedEntryTimestamp")
	}
	p := w.Payload
	if p == nil || p.Body == nil || p.IntegratedTime == nil || p.LogIndex == nil || p.LogID == nil {
		return nil, errors.New("rekor bundle payload is incomplete")
	}
	body, err := base64.StdEncoding.DecodeString(*p.Body)
	if err != nil {
		return nil, fmt.Errorf("rekor bundle body is not base64: %w", err)
	}
	logID, err := hex.DecodeString(*p.LogID)
	if err != nil || len(logID) == 0 {
		return nil, errors.New("rekor bundle logID is not hex")
	}
	if *p.IntegratedTime <= 0 || *p.LogIndex < 0 {
		return nil, errors.New("rekor bundle has an invalid integrated time or log index")
	}
	return &RekorBundle{
		SignedEntryTimestamp: w.SignedEntryTimestamp,
		Body:                 body,
		IntegratedTime:       *p.IntegratedTime,
		LogIndex:             *p.LogIndex,
		LogID:                logID,
	}, nil
}

// ParseRFC3161Annotation parses the `dev.sigstore.cosign/rfc3161timestamp`
// annotation and returns the DER timestamp response.
func ParseRFC3161Annotation(v string) ([]byte, error) {
	if len(v) > MaxAnnotationSize {
		return nil, errors.New("rfc3161 timestamp annotation is too large")
	}
	var w struct {
		SignedRFC3161Timestamp []byte `json:"SignedRFC3161Timestamp"`
	}
	if err := strictjson.Unmarshal([]byte(v), &w); err != nil {
		return nil, fmt.Errorf("rfc3161 timestamp annotation is not valid JSON: %w", err)
	}
	if len(w.SignedRFC3161Timestamp) == 0 {
		return nil, errors.New("rfc3161 timestamp annotation is empty")
	}
	return w.SignedRFC3161Timestamp, nil
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
