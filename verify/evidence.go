package verify

import (
	"context"
	"encoding/json"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// Fetcher reads evidence for a subject from the registry that holds it. The
// proxy implements it against the upstream; tests implement it against a real
// in-process registry. Implementations must verify digests of what they return
// (Manifest by digest and Blob must return exactly the bytes of that digest),
// and must be safe for concurrent use: Collect fetches in parallel.
type Fetcher interface {
	// Referrers lists manifests whose subject is the given digest, through the
	// referrers API or, when the registry lacks it, the sha256-<hex> index tag.
	// artifactType filters when non-empty. No referrers is an empty slice.
	Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error)
	// Manifest returns a manifest by tag or digest with its media type. A
	// missing manifest returns an error for which IsNotFound is true.
	Manifest(ctx context.Context, reference string) (body []byte, mediaType string, dgst digest.Digest, err error)
	// Blob returns a whole blob of at most maxSize bytes, digest-verified.
	Blob(ctx context.Context, dgst digest.Digest, maxSize int64) ([]byte, error)
}

// NotFoundError is returned by Fetchers for artifacts that do not exist.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return e.What + ": not found" }

// IsNotFound reports whether err says the artifact does not exist.
func IsNotFound(err error) bool {
	var nf *NotFoundError
	return errorsAs(err, &nf)
}

// FailureKind classifies why a piece of evidence did not count. The kinds map
// onto the documented exit codes of `pullgate verify`.
type FailureKind string

const (
	// FailInvalid: a signature did not verify, or the signer is not trusted.
	FailInvalid FailureKind = "signature-invalid"
	// FailMismatch: the evidence is about another digest (replay, tamper).
	FailMismatch FailureKind = "digest-mismatch"
	// FailMalformed: the evidence could not be parsed.
	FailMalformed FailureKind = "malformed"
	// FailFetch: the evidence could not be fetched.
	FailFetch FailureKind = "fetch-error"
	// FailUnmet: the evidence may be genuine but lacks what the verification
	// options require (Rekor inclusion, a signed timestamp, a trusted root).
	FailUnmet FailureKind = "requirement-not-met"
)

// Exit codes of `pullgate verify` these kinds map onto (the mapping itself
// belongs to policy): FailInvalid → 11, FailMismatch → 12, FailUnmet → 13,
// FailMalformed → 14, FailFetch → 1; no evidence at all → 10.

// Failure records one piece of evidence that was found but did not count.
type Failure struct {
	Kind     FailureKind   `json:"kind"`
	Source   string        `json:"source"`             // e.g. "cosign-signature", "bundle-referrer"
	Evidence digest.Digest `json:"evidence,omitempty"` // digest of the evidence manifest or blob
	Reason   string        `json:"reason"`
}

// Signature is a verified signature over the subject by configured trust.
type Signature struct {
	Signer   string        `json:"signer"` // name of the trust key or identity
	Subject  digest.Digest `json:"subject"`
	Source   string        `json:"source"`
	Evidence digest.Digest `json:"evidence"`
	// Identity describes a keyless signer (issuer and subject of the certificate).
	Identity string `json:"identity,omitempty"`
	// SignedAt is the verified signing time (Rekor integrated time or RFC
	// 3161 timestamp) when one was verified, zero otherwise.
	SignedAt time.Time `json:"signedAt,omitempty"`
}

// Attestation is a verified in-toto statement whose subject contains the
// decided digest, signed by configured trust.
type Attestation struct {
	Signer        string          `json:"signer"`
	PredicateType string          `json:"predicateType"`
	StatementType string          `json:"statementType"`
	Predicate     json.RawMessage `json:"-"`
	Subjects      []Subject       `json:"subjects"`
	Source        string          `json:"source"`
	Evidence      digest.Digest   `json:"evidence"`
	// Statement is the digest of the exact statement bytes that were signed
	// (what other statements reference in a provenance chain).
	Statement digest.Digest `json:"statement"`
	// SignedAt is the verified signing time when the evidence carries one
	// (Rekor integrated time or RFC 3161 timestamp), zero otherwise.
	SignedAt time.Time `json:"signedAt,omitempty"`
	// DetachedSubject is set for statements whose subject is not the
	// decided digest but whose predicate type the caller declared as bound
	// by content (CollectOptions.DetachedSubjectTypes).
	DetachedSubject bool `json:"detachedSubject,omitempty"`
	// Identity describes a keyless signer (issuer and subject of the certificate).
	Identity string `json:"identity,omitempty"`
}

// Subject is one in-toto statement subject.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Result is everything found about one subject digest.
type Result struct {
	Subject      digest.Digest `json:"subject"`
	Signatures   []Signature   `json:"signatures"`
	Attestations []Attestation `json:"attestations"`
	Failures     []Failure     `json:"failures"`
	// Found counts pieces of evidence examined (verified or not).
	Found int `json:"found"`
}

// Predicate decodes an attestation's predicate into a generic JSON value.
func (a *Attestation) PredicateValue() (any, error) {
	var v any
	if len(a.Predicate) == 0 {
		return map[string]any{}, nil
	}
	err := strictjson.Unmarshal(a.Predicate, &v)
	return v, err
}
