package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/dsse"
	"github.com/pullgate/pullgate/verify/intoto"
	"github.com/pullgate/pullgate/verify/shape"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
)

// isEvidenceManifest reports a manifest made only of signature/attestation
// layers (shape.IsLayerType), each small enough to be evidence. Such
// manifests are signatures and attestations, served by their subject's
// decision so that clients can check them again (they are not runnable
// images); their blobs must have the shape of evidence (shape.Check).
func isEvidenceManifest(m *Manifest, maxLayer int64) bool {
	if m.IsIndex() || len(m.Layers) == 0 {
		return false
	}
	for _, l := range m.Layers {
		if !shape.IsLayerType(l.MediaType) || l.Size > maxLayer {
			return false
		}
	}
	return true
}

var (
	// cosign's legacy tags: sha256-<hex>.sig / .att
	cosignTagRE = regexp.MustCompile(`^sha256-([0-9a-f]{64})\.(sig|att)$`)
	// the referrers fallback tag: sha256-<hex>
	fallbackTagRE = regexp.MustCompile(`^sha256-([0-9a-f]{64})$`)
)

// evidenceSubjects returns the digests an evidence artifact speaks about:
// for a signature/attestation manifest, its subject field, the subject of
// the cosign tag (sha256-<hex>.sig/.att) it was requested by, and every
// digest its signed payloads name (simple-signing docker-manifest-digest,
// in-toto statement subjects, in DSSE envelopes and bundles); for an index,
// the digest of the referrers fallback tag it was requested by. ok is false
// for everything else, which is decided as an ordinary artifact (an
// unsigned artifact that merely uses evidence media types is no evidence of
// anything). Taking the payloads into account means neither a tag pointed
// at another signature nor a subject field can make a denied image's
// signature pass as an allowed one's.
func (s *Engine) evidenceSubjects(q *Query, dgst digest.Digest, m *Manifest) (subjects []digest.Digest, ok, readable bool) {
	named, signed, ok, readable := s.evidenceClaims(q, dgst, m)
	subjects = named
	var unknown []digest.Digest
	for _, d := range signed {
		switch {
		case slices.Contains(subjects, d) || slices.Contains(unknown, d):
		case s.isPresent(q.ctx(), q.up.Name, q.sub.Repo, d):
			// A manifest this repository is known to have (every image
			// pullgate decided here is): decided, so that a denied
			// image's signature is never served.
			subjects = append(subjects, d)
		default:
			unknown = append(unknown, d)
		}
	}
	// Digests not known here are asked about only when nothing else
	// decides the artifact, and only a few (an MBOM lists every file of a
	// model, and it has a subject field).
	if len(subjects) == 0 && len(unknown) <= maxEvidenceSubjects {
		subjects = unknown
	}
	return subjects, ok, readable
}

// evidenceClaims returns what an evidence artifact says it is about: named
// (its subject field, the cosign or fallback tag it was asked for by) and
// signed (the digests its payloads name).
func (s *Engine) evidenceClaims(q *Query, dgst digest.Digest, m *Manifest) (named, signed []digest.Digest, ok, readable bool) {
	tag := q.sub.Tag
	if m.IsIndex() {
		if mm := fallbackTagRE.FindStringSubmatch(tag); mm != nil {
			return []digest.Digest{digest.NewDigestFromEncoded(digest.SHA256, mm[1])}, nil, true, true
		}
		return nil, nil, false, true
	}
	if !isEvidenceManifest(m, int64(s.cfg.Limits.MaxEvidenceSize)) {
		return nil, nil, false, true
	}
	if m.Subject != nil && m.Subject.Digest.Validate() == nil {
		named = append(named, m.Subject.Digest)
	}
	if mm := cosignTagRE.FindStringSubmatch(tag); mm != nil {
		if d := digest.NewDigestFromEncoded(digest.SHA256, mm[1]); !slices.Contains(named, d) {
			named = append(named, d)
		}
	}
	signed, complete := s.payloadSubjects(q, dgst, m)
	switch {
	case !complete && len(named) > 0:
		// It claims to be evidence (a subject field, a cosign tag), but a
		// layer does not say about what: refuse rather than guess.
		return named, signed, true, false
	case !complete:
		signed = nil // not evidence of anything: an ordinary artifact
	}
	return named, signed, len(named) > 0 || len(signed) > 0, true
}

// payloadSubjects returns the digests the signed payloads of an evidence
// manifest name, and whether every layer could be read and named at least
// one (a real signature or attestation always does).
func (s *Engine) payloadSubjects(q *Query, dgst digest.Digest, m *Manifest) ([]digest.Digest, bool) {
	if ds, ok := s.signedSubjects.Get(dgst.String()); ok {
		return ds, true
	}
	var out []digest.Digest
	for _, l := range m.Layers {
		b, err := s.evidenceBytes(q, l)
		if err != nil {
			return out, false
		}
		ds, ok := signedDigests(l.MediaType, b)
		if !ok {
			return out, false
		}
		out = append(out, ds...)
	}
	s.signedSubjects.Add(dgst.String(), out, 24*time.Hour)
	return out, true
}

// evidenceBytes reads a small evidence layer from the store or upstream,
// checked against its digest.
func (s *Engine) evidenceBytes(q *Query, l ocispec.Descriptor) ([]byte, error) {
	return s.smallBlob(q, l, int64(s.cfg.Limits.MaxEvidenceSize))
}

// signedDigests are the digests one evidence layer's payload names, parsed
// as the verifier parses them; ok is false when the layer names nothing
// it could check (not a payload of its type, a digest it cannot read).
func signedDigests(mediaType string, b []byte) ([]digest.Digest, bool) {
	switch mediaType {
	case shape.SimpleSigning:
		if ss, err := cosign.ParseSimpleSigning(b); err == nil {
			return []digest.Digest{ss.ManifestDigest}, true
		}
	case shape.DSSEEnvelope, shape.InToto:
		if env, err := dsse.Parse(b); err == nil {
			return statementDigests(env.Payload)
		}
		return statementDigests(b)
	case shape.Bundle03, shape.Bundle03Params:
		bn, err := verify.ParseBundle(b)
		if err != nil {
			return nil, false
		}
		if env := bn.GetDsseEnvelope(); env != nil {
			return statementDigests(env.GetPayload())
		}
		if md := bn.GetMessageSignature().GetMessageDigest(); md != nil && md.GetAlgorithm() == protocommon.HashAlgorithm_SHA2_256 && len(md.GetDigest()) == 32 {
			return []digest.Digest{digest.NewDigestFromBytes(digest.SHA256, md.GetDigest())}, true
		}
	}
	return nil, false
}

// statementDigests are the sha256 subjects of an in-toto statement (hex in
// any case, as the verifier compares them).
func statementDigests(b []byte) ([]digest.Digest, bool) {
	st, err := intoto.Parse(b)
	if err != nil {
		return nil, false
	}
	var out []digest.Digest
	for _, sub := range st.Subjects {
		h, ok := sub.Digest["sha256"]
		if !ok {
			continue
		}
		d := digest.NewDigestFromEncoded(digest.SHA256, strings.ToLower(h))
		if d.Validate() != nil {
			return nil, false
		}
		out = append(out, d)
	}
	return out, len(out) > 0
}

// maxEvidenceSubjects bounds the digests one signature/attestation artifact
// may speak about (each is decided).
const maxEvidenceSubjects = 64

// subjectVerdict decides the manifest subject in the query's repository,
// as a pull of it by digest would be decided.
func (s *Engine) subjectVerdict(q *Query, subject digest.Digest) (Verdict, error) {
	sm, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, subject)
	if err != nil {
		return Verdict{}, err
	}
	v, _ := s.decideManifest(q.with(subject), subject, sm)
	return v, nil
}

// evidenceVerdict decides an evidence artifact by its subjects: signatures
// and attestations of artifacts allowed in this repository are served
// (clients such as cosign verify them again); evidence about anything else
// is not. Its blobs are granted; an index's children inherit nothing.
func (s *Engine) evidenceVerdict(q *Query, dgst digest.Digest, m *Manifest) (Verdict, bool) {
	subjects, ok, readable := s.evidenceSubjects(q, dgst, m)
	if !ok {
		return Verdict{}, false
	}
	v := Verdict{Rule: q.rule.Name, Mode: string(q.rule.Mode), Revision: q.pol.Revision(), Evidence: true, ExitCode: policy.ExitUnmet}
	switch {
	case !readable:
		v.Reasons = []string{fmt.Sprintf("rule %s: signature/attestation artifact with a layer that cannot be read or names no subject", q.rule.Name)}
		return v, true
	case len(subjects) > maxEvidenceSubjects:
		v.Reasons = []string{fmt.Sprintf("rule %s: signature/attestation artifact about %d digests (at most %d)", q.rule.Name, len(subjects), maxEvidenceSubjects)}
		return v, true
	case q.depth >= maxEvidenceDepth:
		// Evidence about evidence about evidence: refused, which bounds the
		// work one request can cause.
		v.Reasons = []string{fmt.Sprintf("rule %s: evidence chain too deep", q.rule.Name)}
		return v, true
	}
	var allowed []digest.Digest
	waived := Verdict{Allowed: true} // the subjects' exceptions, their earliest expiry
	for _, subject := range subjects {
		sv, err := s.subjectVerdict(q, subject)
		if upstream.IsKind(err, upstream.NotFound) {
			continue // names no manifest here (a blob, another repository's artifact)
		}
		if err != nil {
			v.Reasons = []string{fmt.Sprintf("rule %s: signature/attestation artifact for %s, which cannot be read: %v", q.rule.Name, subject, err)}
			return v, true
		}
		if !sv.Allowed || sv.WouldDeny {
			v.Reasons = append([]string{fmt.Sprintf("rule %s: signature/attestation artifact for %s, which is not allowed", q.rule.Name, subject)}, sv.Reasons...)
			return v, true
		}
		allowed = append(allowed, subject)
		waived = waived.waivedFrom(sv)
	}
	if len(allowed) == 0 {
		v.Reasons = []string{fmt.Sprintf("rule %s: signature/attestation artifact about %s, none of which is a manifest here", q.rule.Name, subjects)}
		return v, true
	}
	v.Allowed, v.ExitCode = true, policy.ExitAllowed
	v.Reasons = []string{fmt.Sprintf("rule %s: signature/attestation artifact for allowed %s, served so clients can verify it", q.rule.Name, allowed[0])}
	return v.waivedFrom(waived), true
}

// evaluate decides a manifest under a verify rule (or an allow rule with
// content checks): children of an allowed
// index inherit its decision; evidence artifacts are served; otherwise the
// evidence is gathered and the policy decides. Content findings deny.
func (s *Engine) evaluate(q *Query, dgst digest.Digest, m *Manifest) Verdict {
	ctx := q.ctx()
	rule := q.rule
	in := policy.Input{Repository: q.repository(), Digest: dgst, Tag: q.sub.Tag}
	in.ContentFindings, in.ContentUnread = s.contentFindings(q, m)
	if rule.Action != policy.ActionVerify {
		return s.decide(q, in)
	}

	// The providers are asked about this manifest itself (what is run: a
	// scan of its index may have looked at one platform only), while its
	// facts and evidence are gathered.
	wait := s.startSignals(q, dgst, m)
	if rule.ReadsArtifact() {
		s.artifactFacts(q, dgst, m, &in)
	}
	if len(in.ContentFindings) == 0 {
		if parent, pv, ok := s.allowedParent(q, dgst); ok {
			if !rule.ReadsArtifact() && len(rule.SignalNames()) == 0 {
				return Verdict{Allowed: true, Rule: rule.Name, Mode: string(rule.Mode), Revision: q.pol.Revision(),
					Reasons: []string{fmt.Sprintf("rule %s: covered by allowed index %s", rule.Name, parent)}}.waivedFrom(pv)
			}
			// The index met the evidence requirements (perhaps under an
			// exception: its own decision carries the waiver); each
			// platform manifest still meets the conditions and the Rego
			// module itself (over its own config, with the index's
			// verified evidence), and an exception waives its failures
			// only by their own text.
			in.CoveredBy = parent
			if rule.Rego != nil {
				res, v := s.collectEvidence(ctx, q, rule, parent)
				if v != nil {
					return *v
				}
				in.Evidence, in.Parents = []verify.Result{res}, []digest.Digest{parent}
			}
			return s.decideSignals(q, in, wait()).waivedFrom(pv)
		}
	}
	if !rule.Require.NeedsEvidence() && rule.Content == nil {
		// Conditions and signals only: no evidence to gather upstream.
		return s.decideSignals(q, in, wait())
	}
	res, nothing := s.collectEvidence(ctx, q, rule, dgst)
	if nothing != nil {
		return *nothing
	}
	in.Evidence = []verify.Result{res}
	in.Checks = releaseChecks(rule, dgst, m, res.Attestations)
	var exps map[digest.Digest]*tensorExpectation
	if rule.Content != nil && hasPredicate(res.Attestations, attest.KindMBOM.PredicateType()) {
		exps = tensorExpectations(dgst, m, res.Attestations)
		for d, exp := range exps {
			if f, bad, err := s.badBlob(ctx, q.pol.Revision(), rule.Name, d, exp.id); bad || err != nil {
				in.ContentUnread = in.ContentUnread || err != nil
				in.ContentFindings = append(in.ContentFindings, fmt.Sprintf("layer %s: %s", d, findingOr(f, err)))
			}
		}
	}
	if rule.Content != nil && rule.Content.References != nil && rule.Content.References.Require == content.RequireMBOM && !m.IsIndex() {
		// Blobs judged without an MBOM (their refusals are recorded
		// apart, noMBOMScope): what this manifest serves them as when it
		// gives them no MBOM expectation.
		for _, d := range m.Blobs() {
			if _, ok := exps[d.Digest]; ok {
				continue
			}
			if f, bad, err := s.badBlob(ctx, q.pol.Revision(), rule.Name, d.Digest, noMBOMScope); bad || err != nil {
				in.ContentUnread = in.ContentUnread || err != nil
				if r := fmt.Sprintf("layer %s: %s", d.Digest, findingOr(f, err)); !slices.Contains(in.ContentFindings, r) {
					in.ContentFindings = append(in.ContentFindings, r)
				}
			}
		}
	}
	v := s.decideSignals(q, in, wait())
	if v.Allowed {
		for d, exp := range exps {
			s.tensors.Add(grantKey(q.pol.Revision(), q.repository(), d), exp, s.boundTTL(s.grantTTL(rule), v.SignalsUntil))
		}
	}

	// Fail closed, or serve what was verified before: when evidence could not
	// be fetched (upstream down) and this very digest was allowed under this
	// very policy revision, that decision stands.
	// Not for a decision a condition denied, nor one that depends on the
	// clock: conditions were just evaluated on verified bytes.
	if !v.Allowed && fetchFailed(res) && len(in.ContentFindings) == 0 && !conditionFailed(v) && !rule.TimeDependent() && !s.anyBadBlob(ctx, q, m) {
		if prev, ok := s.persistedAllow(ctx, q, dgst); ok {
			prev.Reasons = append(prev.Reasons, "upstream evidence unreachable: serving the decision verified under this policy revision")
			prev.Fallback = true
			return prev
		}
	}
	if v.Allowed && !v.WouldDeny && len(v.Waivers) == 0 {
		// A waived decision is not persisted: the offline fallback above
		// would serve it after its exception expired.
		s.persistAllow(ctx, q, dgst, v)
	}
	return v
}

// evidenceTimeout bounds gathering the evidence of one decision.
const evidenceTimeout = 60 * time.Second

// anyBadBlob reports whether any blob of the manifest failed content
// inspection under this rule, in any scope.
func (s *Engine) anyBadBlob(ctx context.Context, q *Query, m *Manifest) bool {
	for _, d := range m.Blobs() {
		bad, err := s.records.AnyFinding(ctx, q.pol.Revision(), q.rule.Name, d.Digest)
		if err != nil || bad { // unreadable: not proven clean
			return true
		}
	}
	return false
}

func fetchFailed(r verify.Result) bool {
	for _, f := range r.Failures {
		if f.Kind == verify.FailFetch {
			return true
		}
	}
	return false
}

func (s *Engine) persistAllow(ctx context.Context, q *Query, dgst digest.Digest, v Verdict) {
	if err := s.records.PutAllow(ctx, q.pol.Revision(), q.sub.Upstream, q.sub.Repo, dgst, marshalMeta(v)); err != nil {
		s.log.Warn("store: verdict write failed", "err", err)
	}
}

func (s *Engine) persistedAllow(ctx context.Context, q *Query, dgst digest.Digest) (Verdict, bool) {
	b, err := s.records.Allow(ctx, q.pol.Revision(), q.sub.Upstream, q.sub.Repo, dgst)
	if err != nil {
		return Verdict{}, false
	}
	var v Verdict
	if json.Unmarshal(b, &v) != nil || !v.Allowed || v.Revision != q.pol.Revision() {
		return Verdict{}, false
	}
	return v, true
}

// allowedParent finds an index allowed in this repository that lists dgst
// (and its verdict: a child inherits a waiver's expiry).
func (s *Engine) allowedParent(q *Query, dgst digest.Digest) (digest.Digest, Verdict, bool) {
	if q.depth >= maxParentDepth {
		return "", Verdict{}, false
	}
	parents, _ := s.linkedManifests(q.ctx(), q.sub.Upstream, q.sub.Repo, "_parents", dgst) // unreadable: no parent vouches (fail closed)
	for _, pd := range parents {
		pm, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, pd)
		if err != nil || !pm.IsIndex() || !listsChild(pm, dgst) {
			continue
		}
		// The index is decided by its digest: not as what the child was
		// asked by (a tag naming evidence).
		v, _ := s.decideManifest(q.with(pd), pd, pm)
		if v.Allowed && !v.WouldDeny && !v.Evidence {
			return pd, v, true
		}
	}
	return "", Verdict{}, false
}

func listsChild(m *Manifest, d digest.Digest) bool {
	for _, c := range m.Manifests {
		if c.Digest == d {
			return true
		}
	}
	return false
}

// contentFindings applies a content rule to a manifest: descriptor checks
// (media types, code layers, paths) and blobs known to have failed
// inspection under this rule. unread: some are the error of a store that
// could not return the recorded findings (never waived).
func (s *Engine) contentFindings(q *Query, m *Manifest) (out []string, unread bool) {
	c := q.rule.Content
	if c == nil {
		return nil, false
	}
	if !m.IsIndex() {
		opts := c.Options()
		for _, f := range content.CheckManifest(opts, m) {
			out = append(out, f.Error())
		}
	}
	for _, d := range m.Blobs() {
		if f, ok, err := s.badBlob(q.ctx(), q.pol.Revision(), q.rule.Name, d.Digest, ""); ok || err != nil {
			unread = unread || err != nil
			f = findingOr(f, err)
			// A blob listed twice (under two names) is one finding.
			if r := fmt.Sprintf("layer %s: %s", d.Digest, f); !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out, unread
}

// Content inspection results (cache/records: findings, inspections) are
// recorded per policy revision, rule and blob; results of an MBOM's tensor
// expectations also per expectation (scope), since another release may
// expect other tensors of the same blob. A pass is recorded per class
// (content.Class.Key: what inspection depends on besides the bytes is the
// media type and the file name declared, e.g. a template media type or a
// .jinja name turns on the template checks, a code name the code-layer
// rule). A blob that passed as one class has not been inspected as
// another: a class without a record is not inspected yet.

// badBlob reports a content finding recorded for a blob under a rule (and
// scope: "" for the format checks, an expectation id for tensor checks).
func (s *Engine) badBlob(ctx context.Context, rev, rule string, d digest.Digest, scope string) (string, bool, error) {
	f, ok, err := s.records.Finding(ctx, rev, rule, d, scope)
	if err != nil {
		// Fail closed, without concluding: a finding the store holds but
		// cannot return now must not read as "none", nor be recorded as
		// one.
		s.log.Warn("store: content finding read failed", "digest", d, "err", err)
		return "", false, &StoreUnreadable{what: "read the content findings recorded for " + d.String(), err: err}
	}
	return f, ok, nil
}

// findingOr is a recorded finding, or, when the store could not return the
// findings, that error (a manifest decision fails closed on it).
func findingOr(f string, err error) string {
	if err != nil {
		return err.Error()
	}
	return f
}

// markBad records a content failure of a blob: every manifest referencing
// it is denied from now on, so cached allows are dropped.
func (s *Engine) markBad(ctx context.Context, rev, rule string, d digest.Digest, scope, finding string) {
	if err := s.records.PutFinding(ctx, rev, rule, d, scope, finding); err != nil {
		s.log.Error("store: content finding write failed", "digest", d, "err", err)
	}
	s.forget(findingRecorded)
}

// collectEvidence gathers and verifies the signatures and attestations of
// dgst under rule (for everyone who will ask about it: a client that
// disconnects must not turn it into a fetch failure). A non-nil Verdict
// is the decision when the policy has nothing to verify with.
func (s *Engine) collectEvidence(ctx context.Context, q *Query, rule *policy.Rule, dgst digest.Digest) (verify.Result, *Verdict) {
	trust := q.pol.Trust.Verifier
	if trust == nil {
		return verify.Result{}, &Verdict{Rule: rule.Name, Mode: string(rule.Mode), Revision: q.pol.Revision(), ExitCode: policy.ExitConfig,
			Reasons: []string{fmt.Sprintf("rule %s: the policy has no trust material to verify with", rule.Name)}}
	}
	opts := verify.CollectOptions{VerifyOptions: rule.VerifyOptions(), MaxBlobSize: int64(s.cfg.Limits.MaxEvidenceSize)}
	if requiresOMS(rule) {
		opts.DetachedSubjectTypes = []string{attest.OpenSSFModelSigningType}
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), evidenceTimeout)
	defer cancel()
	res := verify.Collect(cctx, q.up.Fetcher(q.sub.Repo, int64(s.cfg.Limits.MaxManifestSize)), dgst, trust, opts)
	s.metrics.verifyDuration.Observe(time.Since(start).Seconds())
	return res, nil
}
