package vsa

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify"
)

// MaxClockSkew is how far in the future a timeVerified may be (the
// verifier's clock ahead of the checker's) before a VSA is refused.
const MaxClockSkew = 5 * time.Minute

// CheckOptions say what a VSA must carry beyond a valid signature by trust
// over exactly the subject digest.
type CheckOptions struct {
	// VerifierID, when set, must equal the predicate's verifier.id.
	VerifierID string
	// ResourceURI, when set, must equal the predicate's resourceUri.
	ResourceURI string
	// Repository, when set, is the repository path (without registry
	// host: a mirror or pullgate may name the registry otherwise) the
	// predicate's resourceUri must name: oci://<host>/<Repository>@<digest>.
	// A VSA of the same bytes in another repository (a sandbox where a
	// lenient policy let them through) does not count.
	Repository string
	// PolicyDigest, when set, must be the predicate's policy.digest
	// (sha256); PolicyURI, when set, its policy.uri.
	PolicyDigest digest.Digest
	PolicyURI    string
	// Levels must all be in the predicate's verifiedLevels.
	Levels []string
	// MaxAge, when positive, refuses a VSA whose timeVerified is older.
	MaxAge time.Duration
	// Now is the current time (zero: time.Now()).
	Now time.Time
	// Verify are the signature options (transparency log, timestamp).
	Verify verify.VerifyOptions
}

// Refusal says why no VSA passed: Kind classifies it as `pullgate verify`
// classifies evidence (its ExitCode is the same exit code), Reasons lists
// each VSA found and why it did not count.
type Refusal struct {
	Kind    RefusalKind
	Subject digest.Digest
	Reasons []string
}

// RefusalKind classifies a Refusal.
type RefusalKind string

// Kinds of refusal, in the order a Refusal reports them (the first that any
// VSA found hit).
const (
	// RefusedNone: no VSA about the subject was found (exit 10).
	RefusedNone RefusalKind = "no-vsa"
	// RefusedMismatch: a VSA signed by trust names another digest, or more
	// subjects than the one asked about (exit 12).
	RefusedMismatch RefusalKind = "digest-mismatch"
	// RefusedUnmet: a valid VSA for the digest says FAILED, is too old or
	// from the future, or names another verifier or resource (exit 13).
	RefusedUnmet RefusalKind = "requirement-not-met"
	// RefusedInvalid: a VSA was found but no trusted key signed it (exit 11).
	RefusedInvalid RefusalKind = "signature-invalid"
	// RefusedMalformed: what was found could not be read (exit 14).
	RefusedMalformed RefusalKind = "malformed"
	// RefusedFetch: evidence could not be fetched (exit 1).
	RefusedFetch RefusalKind = "fetch-error"
)

func (e *Refusal) Error() string {
	msg := fmt.Sprintf("no valid VSA for %s (%s)", e.Subject, e.Kind)
	if len(e.Reasons) > 0 {
		msg += ": " + strings.Join(e.Reasons, "; ")
	}
	return msg
}

// ExitCode is the exit code `pullgate verify` documents for the refusal.
func (e *Refusal) ExitCode() int {
	switch e.Kind {
	case RefusedNone:
		return policy.ExitNoEvidence
	case RefusedInvalid:
		return policy.ExitInvalid
	case RefusedMismatch:
		return policy.ExitMismatch
	case RefusedUnmet:
		return policy.ExitUnmet
	case RefusedMalformed:
		return policy.ExitMalformed
	}
	return policy.ExitOther
}

// Check verifies Sigstore bundles (as Sign writes them, or as cosign
// attaches attestations) against trust and returns the summary of the first
// one that passes: signed by trust, an in-toto statement of PredicateType
// whose only subject is subject (sha256), verifier.id equal to
// opts.VerifierID (when set), resourceUri equal to opts.ResourceURI (when
// set), verificationResult PASSED, timeVerified set, not older than
// opts.MaxAge (when set) and not more than MaxClockSkew in the future.
// Otherwise the error is a *Refusal saying why each bundle did not count.
func Check(ctx context.Context, bundles [][]byte, subject digest.Digest, trust *verify.Trust, opts CheckOptions) (*Summary, error) {
	res := verify.Result{Subject: subject}
	for _, b := range bundles {
		r := verify.VerifyBundle(ctx, b, subject, trust, verify.CollectOptions{VerifyOptions: opts.Verify})
		res.Found += r.Found
		res.Attestations = append(res.Attestations, r.Attestations...)
		res.Failures = append(res.Failures, r.Failures...)
	}
	return CheckResult(res, opts)
}

// CheckResult is Check over evidence verify.Collect (or VerifyBundle)
// already verified about res.Subject: it looks at the VSAs among
// res.Attestations and explains the failures.
func CheckResult(res verify.Result, opts CheckOptions) (*Summary, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	ref := &Refusal{Kind: RefusedNone, Subject: res.Subject}
	kinds := map[RefusalKind]bool{}
	refuse := func(k RefusalKind, format string, a ...any) {
		kinds[k] = true
		ref.Reasons = append(ref.Reasons, fmt.Sprintf(format, a...))
	}
	if res.Subject.Validate() != nil || res.Subject.Algorithm() != digest.SHA256 {
		refuse(RefusedMalformed, "subject %q is not a sha256 digest", res.Subject)
	}
	// Of the VSAs that are about this artifact, from this verifier under
	// this policy, the newest decides: a newer FAILED one (or an old
	// PASSED one past MaxAge) is not outweighed by an older PASSED one.
	var newest *Summary
	var newestAtt verify.Attestation
	for _, a := range res.Attestations {
		if a.PredicateType != PredicateType {
			continue // other attestations about the digest: not ours to judge
		}
		s, reason, kind := about(a, res.Subject, opts)
		if s == nil {
			refuse(kind, "VSA %s (signed by %s): %s", a.Evidence, a.Signer, reason)
			continue
		}
		if newest == nil || s.TimeVerified.After(newest.TimeVerified) {
			newest, newestAtt = s, a
		}
	}
	if newest != nil {
		reason, kind := judge(newest, opts, now)
		if reason == "" {
			return newest, nil
		}
		refuse(kind, "VSA %s (signed by %s), the newest about it: %s", newestAtt.Evidence, newestAtt.Signer, reason)
	}
	for _, f := range res.Failures {
		refuse(failureKind(f.Kind), "%s %s: %s", f.Source, f.Evidence, f.Reason)
	}
	for _, k := range []RefusalKind{RefusedMismatch, RefusedUnmet, RefusedInvalid, RefusedMalformed, RefusedFetch} {
		if kinds[k] {
			ref.Kind = k
			break
		}
	}
	if len(ref.Reasons) == 0 {
		ref.Reasons = []string{"no VSA (" + PredicateType + ") is attached to it"}
	}
	return nil, ref
}

func failureKind(k verify.FailureKind) RefusalKind {
	switch k {
	case verify.FailInvalid:
		return RefusedInvalid
	case verify.FailMismatch:
		return RefusedMismatch
	case verify.FailMalformed:
		return RefusedMalformed
	case verify.FailUnmet:
		return RefusedUnmet
	}
	return RefusedFetch
}

// about decodes one verified attestation of PredicateType and checks that
// it is about this artifact, from this verifier, under this policy.
func about(a verify.Attestation, subject digest.Digest, opts CheckOptions) (*Summary, string, RefusalKind) {
	if len(a.Subjects) != 1 {
		return nil, fmt.Sprintf("names %d subjects; a VSA pullgate accepts names exactly the digest checked", len(a.Subjects)), RefusedMismatch
	}
	if h := a.Subjects[0].Digest["sha256"]; h != subject.Encoded() {
		return nil, fmt.Sprintf("is about sha256:%s, not %s", clip(h), subject), RefusedMismatch
	}
	s, err := decodePredicate(a.Predicate)
	if err != nil {
		return nil, err.Error(), RefusedMalformed
	}
	s.Subject = subject
	switch {
	case opts.VerifierID != "" && s.Verifier.ID != opts.VerifierID:
		return nil, fmt.Sprintf("verifier.id is %q, want %q", clip(s.Verifier.ID), opts.VerifierID), RefusedUnmet
	case opts.ResourceURI != "" && s.ResourceURI != opts.ResourceURI:
		return nil, fmt.Sprintf("resourceUri is %q, want %q", clip(s.ResourceURI), opts.ResourceURI), RefusedUnmet
	case opts.Repository != "" && !namesRepository(s.ResourceURI, subject, opts.Repository):
		return nil, fmt.Sprintf("resourceUri is %q: not repository %s", clip(s.ResourceURI), opts.Repository), RefusedUnmet
	case opts.PolicyDigest != "" && Digest(s.Policy.Digest) != opts.PolicyDigest:
		return nil, fmt.Sprintf("policy.digest is %v, want %s", s.Policy.Digest, opts.PolicyDigest), RefusedUnmet
	case opts.PolicyURI != "" && s.Policy.URI != opts.PolicyURI:
		return nil, fmt.Sprintf("policy.uri is %q, want %q", clip(s.Policy.URI), opts.PolicyURI), RefusedUnmet
	}
	return s, "", ""
}

// judge checks the result, time and levels of the newest VSA about the
// artifact.
func judge(s *Summary, opts CheckOptions, now time.Time) (string, RefusalKind) {
	switch {
	case s.VerificationResult != Passed:
		return fmt.Sprintf("verificationResult is %q, not %s", clip(s.VerificationResult), Passed), RefusedUnmet
	case s.TimeVerified.IsZero():
		return "timeVerified is not set", RefusedUnmet
	case s.TimeVerified.After(now.Add(MaxClockSkew)):
		return fmt.Sprintf("timeVerified %s is in the future (now %s)", s.TimeVerified.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), RefusedUnmet
	case opts.MaxAge > 0 && now.Sub(s.TimeVerified) > opts.MaxAge:
		return fmt.Sprintf("timeVerified %s is older than the maximum age %s", s.TimeVerified.UTC().Format(time.RFC3339), opts.MaxAge), RefusedUnmet
	}
	for _, l := range opts.Levels {
		if !slices.Contains(s.VerifiedLevels, l) {
			return fmt.Sprintf("verifiedLevels %v lack %s", s.VerifiedLevels, l), RefusedUnmet
		}
	}
	return "", ""
}

// namesRepository reports whether an oci://<host>/<path>@<digest> resource
// URI names repository for subject: repository is <path> (the image named
// on its registry or a mirror of it) or <host>/<path> (pullgate's path
// form, <pullgate>/<upstream>/<path>, where the upstream is the host).
func namesRepository(uri string, subject digest.Digest, repository string) bool {
	rest, ok := strings.CutPrefix(uri, "oci://")
	if !ok {
		return false
	}
	ref, at, ok := strings.Cut(rest, "@")
	if !ok || at != subject.String() {
		return false
	}
	host, path, ok := strings.Cut(ref, "/")
	return ok && path != "" && (repository == path || repository == host+"/"+path)
}
