// Package vsa writes, signs and checks pullgate's SLSA Verification Summary
// Attestations (VSA, predicate type https://slsa.dev/verification_summary/v1):
// the signed statement that pullgate verified an artifact digest under a
// policy revision, which verifiers downstream of pullgate (a node, an
// admission controller, another pipeline) can require instead of repeating
// the verification.
//
// The predicate fields are those of the SLSA VSA specification
// (https://slsa.dev/spec/v1.0/verification_summary, with the optional
// verifier.version map the draft 1.1 added). The checks pullgate ran are
// listed in verifiedLevels as custom values (the specification: "Users MAY
// use custom values here but MUST NOT use custom values starting with
// SLSA_"); pullgate's all start with PULLGATE_.
//
//	stmt, err := vsa.Statement(summary)
//	bundle, err := vsa.Sign(ctx, stmt, signer)          // DSSE in a Sigstore bundle v0.3
//	sum, err := vsa.Check(ctx, [][]byte{bundle}, dgst, trust, vsa.CheckOptions{MaxAge: 24 * time.Hour})
package vsa

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/intoto"
	"github.com/pullgate/pullgate/verify/strictjson"
)

// PredicateType is the SLSA VSA v1 predicate type.
const PredicateType = "https://slsa.dev/verification_summary/v1"

// Verification results.
const (
	Passed = "PASSED"
	Failed = "FAILED"
)

// SLSAVersion is the version of the SLSA specification the predicate follows.
const SLSAVersion = "1.0"

// VersionComponent is the key of pullgate's version in verifier.version.
const VersionComponent = "pullgate"

// Check names pullgate writes in verifiedLevels: one per kind of check the
// decision ran. They are custom SlsaResult values, which the specification
// allows as long as they do not start with SLSA_.
const (
	LevelSignatures   = "PULLGATE_SIGNATURES"   // signatures by the policy's trust verified
	LevelAttestations = "PULLGATE_ATTESTATIONS" // required attestations verified
	LevelChain        = "PULLGATE_CHAIN"        // release provenance chain verified
	LevelMBOM         = "PULLGATE_MBOM"         // model bill of materials matched the layers
	LevelContent      = "PULLGATE_CONTENT"      // content formats inspected (PULLGATE_CONTENT_<FORMAT> per format)
	LevelPolicy       = "PULLGATE_POLICY"       // the policy allowed it (always written for PASSED)
)

// ContentLevel is the verifiedLevels value for one inspected content format
// ("safetensors" → PULLGATE_CONTENT_SAFETENSORS).
func ContentLevel(format string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(format) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return LevelContent + "_" + b.String()
}

// Summary is a VSA predicate (its JSON is the predicate, field for field)
// and the digest it is about (the statement's subject, not in the predicate).
type Summary struct {
	// Subject is the verified artifact's digest (sha256).
	Subject digest.Digest `json:"-"`

	Verifier Verifier `json:"verifier"`
	// TimeVerified is when the decision was made.
	TimeVerified time.Time `json:"timeVerified"`
	// ResourceURI names the artifact verified, e.g.
	// oci://registry.example/models/llama@sha256:… (also the subject's name).
	ResourceURI string `json:"resourceUri"`
	// Policy is the policy decided under: uri (required) and digest (the
	// policy revision, policy.Policy.Revision(), as {"sha256": hex}).
	Policy ResourceDescriptor `json:"policy"`
	// InputAttestations are the signatures and attestations the decision
	// used (digest of each piece of evidence, and where it was found).
	InputAttestations []ResourceDescriptor `json:"inputAttestations,omitempty"`
	// VerificationResult is Passed or Failed.
	VerificationResult string `json:"verificationResult"`
	// VerifiedLevels lists the checks that ran (Level* constants); FAILED
	// when the result is Failed.
	VerifiedLevels   []string       `json:"verifiedLevels"`
	DependencyLevels map[string]int `json:"dependencyLevels,omitempty"`
	SLSAVersion      string         `json:"slsaVersion,omitempty"`
}

// Verifier identifies who verified: ID is the pullgate instance's configured
// verifier id (a URI), Version maps components to versions
// ({"pullgate": "<version>"}).
type Verifier struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// ResourceDescriptor is the in-toto ResourceDescriptor subset a VSA uses.
type ResourceDescriptor struct {
	URI    string            `json:"uri,omitempty"`
	Digest map[string]string `json:"digest,omitempty"`
}

// DigestSet is an in-toto DigestSet for d ({"sha256": "<hex>"}), nil when d
// is not a valid digest.
func DigestSet(d digest.Digest) map[string]string {
	if d.Validate() != nil {
		return nil
	}
	return map[string]string{d.Algorithm().String(): d.Encoded()}
}

// Digest is the sha256 (else the first valid) digest of a DigestSet, "" when
// it holds none.
func Digest(set map[string]string) digest.Digest {
	if h, ok := set["sha256"]; ok {
		if d := digest.NewDigestFromEncoded(digest.SHA256, h); d.Validate() == nil {
			return d
		}
	}
	for _, alg := range []digest.Algorithm{digest.SHA512, digest.SHA384} {
		if h, ok := set[alg.String()]; ok {
			if d := digest.NewDigestFromEncoded(alg, h); d.Validate() == nil {
				return d
			}
		}
	}
	return ""
}

type statement struct {
	Type          string    `json:"_type"`
	Subject       []subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     *Summary  `json:"predicate"`
}

type subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Validate reports what a Summary lacks to be a VSA pullgate writes.
func (s *Summary) Validate() error {
	var errs []error
	if s.Subject.Validate() != nil || s.Subject.Algorithm() != digest.SHA256 {
		errs = append(errs, fmt.Errorf("subject %q is not a sha256 digest", s.Subject))
	}
	if s.Verifier.ID == "" {
		errs = append(errs, errors.New("verifier.id is empty"))
	}
	if s.ResourceURI == "" {
		errs = append(errs, errors.New("resourceUri is empty"))
	}
	if s.TimeVerified.IsZero() {
		errs = append(errs, errors.New("timeVerified is not set"))
	}
	if s.Policy.URI == "" {
		errs = append(errs, errors.New("policy.uri is empty (the specification requires it)"))
	}
	if len(s.Policy.Digest) > 0 && Digest(s.Policy.Digest) == "" {
		errs = append(errs, errors.New("policy.digest holds no valid digest"))
	}
	for i, in := range s.InputAttestations {
		if Digest(in.Digest) == "" {
			errs = append(errs, fmt.Errorf("inputAttestations[%d] has no valid digest", i))
		}
	}
	switch s.VerificationResult {
	case Passed, Failed:
	default:
		errs = append(errs, fmt.Errorf("verificationResult %q, want %s or %s", s.VerificationResult, Passed, Failed))
	}
	for _, l := range s.VerifiedLevels {
		if l == "" {
			errs = append(errs, errors.New("verifiedLevels holds an empty value"))
		}
	}
	return errors.Join(errs...)
}

// Statement returns the in-toto Statement v1 of s: one subject named
// s.ResourceURI with digest {"sha256": hex}, predicateType PredicateType and
// s as the predicate. timeVerified is written in UTC; an empty
// verifiedLevels is written as [] (PASSED) or ["FAILED"] (FAILED); an empty
// slsaVersion as SLSAVersion.
func Statement(s Summary) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("vsa: %w", err)
	}
	s.TimeVerified = s.TimeVerified.UTC()
	if len(s.VerifiedLevels) == 0 {
		s.VerifiedLevels = []string{}
		if s.VerificationResult == Failed {
			s.VerifiedLevels = []string{Failed}
		}
	}
	if s.SLSAVersion == "" {
		s.SLSAVersion = SLSAVersion
	}
	st := statement{
		Type:          intoto.StatementV1,
		Subject:       []subject{{Name: s.ResourceURI, Digest: DigestSet(s.Subject)}},
		PredicateType: PredicateType,
		Predicate:     &s,
	}
	return json.Marshal(st)
}

// Parse reads a VSA statement (as Statement writes it, or as another
// producer wrote it): an in-toto statement (strictjson) of PredicateType
// whose predicate decodes into a Summary. Subject is set when the statement
// has exactly one subject with a sha256 digest. Unknown fields are ignored,
// as the specification's parsing rules require.
func Parse(stmt []byte) (*Summary, error) {
	st, err := intoto.Parse(stmt)
	if err != nil {
		return nil, fmt.Errorf("vsa: %w", err)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("vsa: predicateType %q, want %s", clip(st.PredicateType), PredicateType)
	}
	s, err := decodePredicate(st.Predicate)
	if err != nil {
		return nil, err
	}
	if len(st.Subjects) == 1 {
		if h, ok := st.Subjects[0].Digest["sha256"]; ok {
			s.Subject = digest.NewDigestFromEncoded(digest.SHA256, h)
		}
	}
	return s, nil
}

func decodePredicate(raw []byte) (*Summary, error) {
	if len(raw) == 0 {
		return nil, errors.New("vsa: statement has no predicate")
	}
	var s Summary
	if err := strictjson.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("vsa: predicate: %w", err)
	}
	return &s, nil
}

// Sign wraps a VSA statement (as Statement returns it) in a DSSE envelope
// (payloadType application/vnd.in-toto+json) inside a Sigstore bundle v0.3
// whose verification material is the key's hint, as cosign v3 writes
// key-based attestations, and returns the bundle's JSON. The statement must
// be a VSA. Signing is offline: no transparency log, no timestamp.
func Sign(ctx context.Context, stmt []byte, signer crypto.Signer) ([]byte, error) {
	if signer == nil {
		return nil, errors.New("vsa: sign: no signing key")
	}
	return SignWith(ctx, stmt, attest.SignOptions{Signer: signer})
}

// SignWith is Sign with any of attest.Sign's ways to sign: a key, or
// keyless (an OIDC token for a Fulcio certificate of an ephemeral key,
// with a Rekor entry and/or an RFC 3161 timestamp as opts say).
func SignWith(ctx context.Context, stmt []byte, opts attest.SignOptions) ([]byte, error) {
	if _, err := Parse(stmt); err != nil {
		return nil, fmt.Errorf("vsa: sign: %w", err)
	}
	return attest.Sign(ctx, stmt, opts)
}

// LoadSigner reads a private key file: PEM PKCS#8, SEC 1 EC or PKCS#1 RSA,
// or a cosign encrypted key (decrypted with password). ECDSA P-256/P-384,
// Ed25519 and RSA 2048–8192 keys are accepted (the keys pullgate verifies).
func LoadSigner(path string, password []byte) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vsa: signing key: %w", err)
	}
	s, err := attest.ParsePrivateKeyPEM(b, password)
	if err != nil {
		return nil, fmt.Errorf("vsa: signing key %s: %w", path, err)
	}
	if _, err := attest.NewKeypair(s); err != nil {
		return nil, fmt.Errorf("vsa: signing key %s: %w", path, err)
	}
	return s, nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// Inputs is the inputAttestations of a decision: one entry per piece of
// evidence (signature or attestation digest) the decision counted, in
// order, each once, named oci://<repository>@<evidence digest> when
// repository is set.
func Inputs(repository string, evidence []digest.Digest) []ResourceDescriptor {
	var out []ResourceDescriptor
	seen := map[digest.Digest]bool{}
	for _, d := range evidence {
		if seen[d] || d.Validate() != nil { // Validate refuses "" too
			continue
		}
		seen[d] = true
		rd := ResourceDescriptor{Digest: DigestSet(d)}
		if repository != "" {
			rd.URI = "oci://" + repository + "@" + d.String()
		}
		out = append(out, rd)
	}
	return out
}
