package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// Exit codes of a Decision (Decision.ExitCode, the proxy's verdicts and
// audit records), shared with `pullgate verify` and `pullgate attest
// check-files`. Write them by name, never as numbers.
const (
	// ExitAllowed: allowed (also an audit-mode would-deny).
	ExitAllowed = 0
	// ExitOther: any other failure (fetch error, bad input).
	ExitOther = 1
	// ExitConfig: configuration or policy error.
	ExitConfig = 2
	// ExitNoEvidence: no signature or attestation found.
	ExitNoEvidence = 10
	// ExitInvalid: a signature does not verify or its signer is untrusted.
	ExitInvalid = 11
	// ExitMismatch: digest or subject mismatch (tampering).
	ExitMismatch = 12
	// ExitUnmet: requirements not met: no rule matches, a deny rule, a
	// condition or release check failed, or a content finding (model
	// content the rule refuses, including a blob refused for its content).
	ExitUnmet = 13
	// ExitMalformed: malformed evidence.
	ExitMalformed = 14
)

const (
	checkSignature    = "signature"
	checkAttestation  = "attestation"
	checkEvidence     = "evidence"
	checkContent      = "content"
	checkRule         = "rule"
	checkSubject      = "evidence-subject"
	maxReasonsPerRule = 64
)

// Input is what the caller knows about one digest when it asks for a
// decision.
type Input struct {
	// Repository is "<upstream>/<repo path>".
	Repository string
	// Digest is the manifest digest being decided.
	Digest digest.Digest
	// Evidence holds verify.Collect results. A Result counts only if its
	// Subject is Digest or one of Parents.
	Evidence []verify.Result
	// Parents are digests of image indexes whose evidence covers Digest
	// (the caller checked that the index, allowed in this repository,
	// references Digest). Evidence for them counts as evidence for Digest.
	Parents []digest.Digest
	// ContentFindings are content inspection failures (issue 4) for blobs
	// referenced by Digest. Each one denies with "rule <name>: content: <finding>".
	ContentFindings []string
	// Checks are results of evaluators that run outside this package
	// (provenance chain "chain", model bill of materials "mbom", ...). A
	// failed one denies; a rule requiring chain or mbom denies when the
	// corresponding check is absent.
	Checks []Check
	// Tag is the tag the decision was asked by ("" when by digest); Rego
	// input only. Decisions are about the digest and cached by it.
	Tag string
	// Artifact is what the artifact itself says (manifest, config,
	// annotations): required when the rule has require.conditions; nil
	// then denies unless a failed Check explains why it could not be read.
	Artifact *Artifact
	// Now is the time conditions read as now (zero: the current time).
	Now time.Time
	// CoveredBy is an image index, allowed in this repository and listing
	// Digest, whose decision met the rule's signature, attestation, chain
	// and MBOM requirements for it (the caller checked both): only the
	// conditions, content findings and Checks are evaluated.
	CoveredBy digest.Digest
	// ContentUnread: some of ContentFindings are not findings but the
	// error of a store that could not return the recorded ones. They deny
	// as findings do, and no exception waives the decision (what the store
	// holds is unknown).
	ContentUnread bool
	// Signals are the answers of the providers the rule requires
	// (require.signals), by provider name; a required one absent denies.
	Signals map[string]*Signal
}

// CheckCondition is the name of the Check of each of require.conditions.
const CheckCondition = "condition"

// CheckArtifact is the name of the Check a caller adds, failed, when it
// could not read the artifact's facts (config blob unreadable or
// malformed) for require.conditions.
const CheckArtifact = "artifact"

// Check is one evaluated requirement or piece of evidence.
type Check struct {
	Name     string          `json:"name"`
	Passed   bool            `json:"passed"`
	Detail   string          `json:"detail,omitempty"`
	Evidence []digest.Digest `json:"evidence,omitempty"`
	// ExitCode, for checks supplied in Input.Checks, is the exit code a
	// failure of this check maps to (0 means ExitUnmet).
	ExitCode int `json:"exitCode,omitempty"`
}

// Decision is the outcome of evaluating one digest in one repository.
type Decision struct {
	Allowed bool   `json:"allowed"`
	Rule    string `json:"rule,omitempty"`
	Action  string `json:"action,omitempty"`
	Mode    string `json:"mode,omitempty"`
	// WouldDeny is set in audit mode when the rule denied but the artifact
	// is served anyway.
	WouldDeny  bool     `json:"wouldDeny,omitempty"`
	Reasons    []string `json:"reasons,omitempty"`
	Checks     []Check  `json:"checks,omitempty"`
	Revision   string   `json:"revision"`
	Repository string   `json:"repository"`
	Digest     string   `json:"digest"`
	// ExitCode: 0 allowed (also audit-mode would-deny), 10 no evidence found,
	// 11 signature invalid or signer untrusted, 12 digest or subject
	// mismatch, 13 requirements not met, 14 malformed evidence, 2 config
	// error, 1 other.
	ExitCode int `json:"exitCode"`
	// DenyExitCode is the exit code of the denial when WouldDeny is set
	// (or when the denial was waived).
	DenyExitCode int `json:"denyExitCode,omitempty"`
	// Waivers name the exceptions that waived every reason of a denial
	// (Allowed is then true; see Policy.Waive); WaivedUntil is the
	// earliest of their expiries, after which the decision no longer
	// stands.
	Waivers     []string  `json:"waivers,omitempty"`
	WaivedUntil time.Time `json:"waivedUntil,omitzero"`
	// NotWaivable, when set, says why no exception may waive the denial:
	// a digest or subject mismatch (exit 12) met by any denial, check or
	// evidence, whatever the overall exit code reports first; content
	// findings the store could not return (Input.ContentUnread).
	NotWaivable string `json:"notWaivable,omitempty"`
}

// Why a decision is not waivable (Decision.NotWaivable).
const (
	notWaivableMismatch = "a digest or subject mismatch is never waived"
	notWaivableUnread   = "content findings the store could not return are never waived"
)

// Evaluate decides one digest. It never fetches anything: all evidence is
// in the input. It fails closed: no matching rule, missing evidence, invalid
// evidence, condition errors, content findings and failed or missing
// external checks all deny (audit-mode rules report them and serve).
func (p *Policy) Evaluate(in Input) Decision {
	d := Decision{Revision: p.revision, Repository: in.Repository, Digest: string(in.Digest)}
	if err := in.Digest.Validate(); err != nil {
		d.Reasons = []string{fmt.Sprintf("invalid digest %q: %v", in.Digest, err)}
		d.ExitCode = ExitOther
		return d
	}
	r := p.Match(in.Repository)
	if r == nil {
		d.Reasons = []string{"no policy rule matches " + in.Repository}
		d.Checks = []Check{{Name: checkRule, Detail: "no policy rule matches " + in.Repository}}
		d.ExitCode = ExitUnmet
		return d
	}
	return r.Evaluate(in, p.revision)
}

// Evaluate decides one digest under this rule (the caller has matched it).
func (r *Rule) Evaluate(in Input, revision string) Decision {
	d := Decision{Revision: revision, Repository: in.Repository, Digest: string(in.Digest),
		Rule: r.Name, Action: string(r.Action), Mode: string(r.Mode)}
	e := evaluation{rule: r, in: &in, d: &d}
	switch r.Action {
	case ActionAllow:
		d.Checks = append(d.Checks, Check{Name: checkRule, Passed: true, Detail: "rule " + r.Name + ": action allow"})
	case ActionDeny:
		d.Checks = append(d.Checks, Check{Name: checkRule, Detail: "rule " + r.Name + ": action deny"})
		e.deny(ExitUnmet, "rule %s: action deny", r.Name)
	case ActionVerify:
		e.verify()
	default:
		e.deny(ExitConfig, "rule %s: unknown action %q", r.Name, r.Action)
	}
	if r.Action != ActionDeny {
		e.external()
	}
	if r.Rego != nil && r.Action != ActionDeny {
		e.rego()
	}
	if !e.denied {
		d.Allowed = true
		d.ExitCode = ExitAllowed
		return d
	}
	d.ExitCode = e.exitCode()
	switch {
	case e.mismatch || e.subjectBad || e.failureKinds[verify.FailMismatch] > 0:
		d.NotWaivable = notWaivableMismatch
	case in.ContentUnread:
		d.NotWaivable = notWaivableUnread
	}
	if r.Mode == ModeAudit {
		d.Allowed, d.WouldDeny = true, true
		d.DenyExitCode, d.ExitCode = d.ExitCode, ExitAllowed
	}
	return d
}

type evaluation struct {
	rule *Rule
	in   *Input
	d    *Decision

	results []*verify.Result // evidence whose subject is Digest or a parent
	// evidence state for the exit code
	anyEvidence  bool
	failureKinds map[verify.FailureKind]int
	untrusted    bool           // verified evidence by a signer the requirement does not accept
	subjectBad   bool           // evidence about a digest the decision is not about
	reqUnmet     bool           // a verify requirement is unmet
	denied       bool           // set by every denial; the decision allows only when false
	mismatch     bool           // a denial with ExitMismatch (a check's digest mismatch)
	ruleCode     int            // exit code of the first denial that is not an unmet verify requirement
	signalDoc    map[string]any // the conditions' signals variable
}

func (e *evaluation) deny(code int, format string, args ...any) {
	e.denied = true
	e.mismatch = e.mismatch || code == ExitMismatch
	if len(e.d.Reasons) < maxReasonsPerRule {
		e.d.Reasons = append(e.d.Reasons, fmt.Sprintf(format, args...))
	}
	if e.ruleCode == 0 {
		e.ruleCode = code
	}
}

func (e *evaluation) unmet(format string, args ...any) {
	e.reqUnmet, e.denied = true, true
	if len(e.d.Reasons) < maxReasonsPerRule {
		e.d.Reasons = append(e.d.Reasons, fmt.Sprintf(format, args...))
	}
}

// exitCode maps the evaluation state to the documented exit codes. Evidence
// problems are reported before unmet requirements because they are the
// likelier cause: tamper (12) first, then invalid signatures (11), malformed
// evidence (14), fetch errors (1), verified evidence from a signer the rule
// does not accept (11), no evidence at all (10), otherwise 13.
func (e *evaluation) exitCode() int {
	if !e.reqUnmet {
		if e.ruleCode != 0 {
			return e.ruleCode
		}
		return ExitUnmet
	}
	switch {
	case e.subjectBad || e.failureKinds[verify.FailMismatch] > 0:
		return ExitMismatch
	case e.failureKinds[verify.FailInvalid] > 0:
		return ExitInvalid
	case e.failureKinds[verify.FailMalformed] > 0:
		return ExitMalformed
	case e.failureKinds[verify.FailFetch] > 0:
		return ExitOther
	case e.untrusted:
		return ExitInvalid
	case !e.anyEvidence:
		return ExitNoEvidence
	}
	return ExitUnmet
}

// evidenceCode is the exit code that evidence failures explain, or def.
func (e *evaluation) evidenceCode(def int) int {
	switch {
	case e.subjectBad || e.failureKinds[verify.FailMismatch] > 0:
		return ExitMismatch
	case e.failureKinds[verify.FailInvalid] > 0 || e.untrusted:
		return ExitInvalid
	case e.failureKinds[verify.FailMalformed] > 0:
		return ExitMalformed
	}
	return def
}

func (e *evaluation) verify() {
	r, in, d := e.rule, e.in, e.d
	req := r.Require
	if req == nil {
		// Load refuses this; an hand-built Rule must still fail closed.
		e.deny(ExitConfig, "rule %s: action verify without requirements", r.Name)
		return
	}
	e.failureKinds = map[verify.FailureKind]int{}
	if in.CoveredBy != "" {
		d.Checks = append(d.Checks, Check{Name: checkRule, Passed: true,
			Detail: fmt.Sprintf("rule %s: requirements met by allowed index %s", r.Name, in.CoveredBy), Evidence: []digest.Digest{in.CoveredBy}})
		e.signalDoc = e.signals(req.Signals)
		e.conditions(req.Conditions)
		return
	}
	for i := range in.Evidence {
		res := &in.Evidence[i]
		if res.Subject != in.Digest && !containsDigest(in.Parents, res.Subject) {
			e.subjectBad = true
			d.Checks = append(d.Checks, Check{Name: checkSubject,
				Detail: fmt.Sprintf("evidence result for %s ignored: not about %s", res.Subject, in.Digest)})
			continue
		}
		e.results = append(e.results, res)
		if res.Found > 0 || len(res.Signatures) > 0 || len(res.Attestations) > 0 || len(res.Failures) > 0 {
			e.anyEvidence = true
		}
		for _, f := range res.Failures {
			e.failureKinds[f.Kind]++
			c := Check{Name: checkEvidence, Detail: fmt.Sprintf("%s %s: %s", f.Source, f.Kind, f.Reason)}
			if f.Evidence != "" {
				c.Evidence = []digest.Digest{f.Evidence}
			}
			d.Checks = append(d.Checks, c)
		}
	}
	if len(req.Signatures) > 1 && req.SignaturesMin > 1 {
		e.signersKOfN(req.Signatures, req.SignaturesMin)
	} else if len(req.Signatures) > 0 {
		e.signatures(req.Signatures)
	}
	if len(req.Attestations) > 0 {
		vars := make([]attVars, 0, 4)
		for _, a := range req.Attestations {
			vars = e.attestation(a, req, vars)
		}
	}
	if req.Chain != "" {
		e.requireCheck("chain", "chain "+req.Chain)
	}
	if req.MBOM == MBOMRequired {
		e.requireCheck("mbom", "mbom")
	}
	e.signalDoc = e.signals(req.Signals)
	e.conditions(req.Conditions)
}

// conditions evaluates require.conditions over Input.Artifact. Each false
// or failing condition denies (13) with its own reason.
func (e *evaluation) conditions(conds []*Condition) {
	if len(conds) == 0 {
		return
	}
	r, a := e.rule, e.in.Artifact
	if a == nil && !r.ReadsArtifact() {
		// Conditions over signals (and the subject, the clock) only.
		upstream, _, _ := strings.Cut(e.in.Repository, "/")
		a = &Artifact{Subject: ArtifactSubject{Upstream: upstream, Repository: e.in.Repository, Digest: e.in.Digest},
			Manifest: map[string]any{}, Annotations: map[string]string{}}
	}
	switch {
	case a == nil:
		for _, c := range e.in.Checks {
			if c.Name == CheckArtifact && !c.Passed {
				return // external() denies with why the facts could not be read
			}
		}
		e.d.Checks = append(e.d.Checks, Check{Name: CheckCondition, Detail: "conditions: not evaluated (no artifact facts)"})
		e.deny(ExitOther, "rule %s: conditions: not evaluated", r.Name)
		return
	case a.Index:
		// An index has no config: its platform manifests are decided with
		// the conditions when they are pulled. Conditions over signals
		// read the index's own answers.
		var own []*Condition
		for _, c := range conds {
			if c.UsesSignals {
				own = append(own, c)
			}
		}
		if len(own) < len(conds) {
			e.d.Checks = append(e.d.Checks, Check{Name: CheckCondition, Passed: true,
				Detail: "conditions: not applied to an image index (each platform manifest is decided with them)"})
		}
		if conds = own; len(conds) == 0 {
			return
		}
	}
	now := e.in.Now
	if now.IsZero() {
		now = time.Now()
	}
	vars := a.Document(now)
	vars[VarSignals] = e.signalDoc
	if e.signalDoc == nil {
		vars[VarSignals] = map[string]any{}
	}
	for _, c := range conds {
		ok, err := false, fmt.Errorf("not compiled") // a hand-built Condition fails closed
		if c.prg != nil {
			ok, err = evalCondition(c.prg, vars)
		}
		switch {
		case err != nil:
			e.d.Checks = append(e.d.Checks, Check{Name: CheckCondition, Detail: fmt.Sprintf("condition %s: error: %v", c.label(), err)})
			e.deny(ExitUnmet, "rule %s: condition %s: error: %v", r.Name, c.label(), err)
		case ok:
			e.d.Checks = append(e.d.Checks, Check{Name: CheckCondition, Passed: true, Detail: fmt.Sprintf("condition %s is true", c.label())})
		default:
			e.d.Checks = append(e.d.Checks, Check{Name: CheckCondition, Detail: fmt.Sprintf("condition %s is false", c.label())})
			e.deny(ExitUnmet, "rule %s: condition %s is false", r.Name, c.label())
		}
	}
}

func containsDigest(list []digest.Digest, d digest.Digest) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// signerPhrase renders "key release", "key release or ci" or
// "key release or identity ci".
func (r *Rule) signerPhrase(names []string) string {
	sameKind := true
	for _, n := range names[1:] {
		if r.kind(n) != r.kind(names[0]) {
			sameKind = false
		}
	}
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(" or ")
		}
		if i == 0 || !sameKind {
			b.WriteString(string(r.kind(n)))
			b.WriteByte(' ')
		}
		b.WriteString(n)
	}
	return b.String()
}

func (r *Rule) kind(name string) TrustKind {
	if r.trust != nil {
		if k := r.trust.Kind(name); k != "" {
			return k
		}
	}
	return "signer"
}

func (e *evaluation) signatures(names []string) {
	var others []string
	for res, s := range e.signaturesOn {
		if containsString(names, s.Signer) {
			e.d.Checks = append(e.d.Checks, Check{Name: checkSignature, Passed: true, Detail: e.signatureDetail(res, s), Evidence: evidenceOf(s.Evidence)})
			return
		}
		others = append(others, s.Signer)
	}
	detail := "no signature by " + e.rule.signerPhrase(names)
	if len(others) > 0 {
		e.untrusted = true
		detail += "; signed only by " + strings.Join(others, ", ") + ", which this rule does not accept"
	}
	e.d.Checks = append(e.d.Checks, Check{Name: checkSignature, Detail: detail})
	e.unmet("rule %s: no signature by %s on %s%s", e.rule.Name, e.rule.signerPhrase(names), e.in.Digest, e.malformedNote())
}

// malformedNote names the first malformed piece of evidence, which counted
// for nothing, so that a denial says why signed evidence was not read ("" if
// none was malformed).
func (e *evaluation) malformedNote() string {
	for _, res := range e.results {
		for _, f := range res.Failures {
			if f.Kind == verify.FailMalformed {
				r := f.Reason
				if len(r) > 200 {
					r = r[:200] + "…"
				}
				return fmt.Sprintf(" (malformed %s evidence not counted: %s)", f.Source, r)
			}
		}
	}
	return ""
}

func evidenceOf(d digest.Digest) []digest.Digest {
	if d == "" {
		return nil
	}
	return []digest.Digest{d}
}

// attVars caches the CEL variables of one attestation within an evaluation.
type attVars struct {
	att  *verify.Attestation
	vars map[string]any
	err  error
}

func (e *evaluation) varsFor(a *verify.Attestation, cache []attVars) (map[string]any, []attVars, error) {
	for i := range cache {
		if cache[i].att == a {
			return cache[i].vars, cache, cache[i].err
		}
	}
	pred, err := a.PredicateValue()
	var vars map[string]any
	if err == nil {
		subjects := make([]any, 0, len(a.Subjects))
		for _, s := range a.Subjects {
			dm := make(map[string]any, len(s.Digest))
			for k, v := range s.Digest {
				dm[k] = v
			}
			subjects = append(subjects, map[string]any{"name": s.Name, "digest": dm})
		}
		vars = map[string]any{
			"predicate": pred,
			"statement": map[string]any{
				"_type":         a.StatementType,
				"type":          a.StatementType,
				"predicateType": a.PredicateType,
				"subject":       subjects,
				"subjects":      subjects,
				"predicate":     pred,
			},
			"repository": e.in.Repository,
			"digest":     string(e.in.Digest),
		}
	} else {
		err = fmt.Errorf("predicate is not valid JSON: %v", err)
	}
	cache = append(cache, attVars{att: a, vars: vars, err: err})
	return vars, cache, err
}

// subjectCovers reports whether an in-toto subject list names the digest.
// BindingCheck names the Input check that binds statements of a predicate
// type whose subject is content rather than the decided digest (OpenSSF
// model signing: per-file digests equal the served layers).
func BindingCheck(predicateType string) string { return "subject-binding " + predicateType }

// bound reports whether the caller's binding check for a predicate type ran
// and passed.
func (e *evaluation) bound(predicateType string) bool {
	for _, c := range e.in.Checks {
		if c.Name == BindingCheck(predicateType) && c.Passed {
			return true
		}
	}
	return false
}

func subjectCovers(subjects []verify.Subject, d digest.Digest) bool {
	alg, hexv := string(d.Algorithm()), d.Encoded()
	for _, s := range subjects {
		if v, ok := s.Digest[alg]; ok && strings.EqualFold(v, hexv) {
			return true
		}
	}
	return false
}

func (e *evaluation) attestation(req *AttestationRequirement, rq *Require, cache []attVars) []attVars {
	r := e.rule
	// The documented format names signers without their kind here.
	what := fmt.Sprintf("attestation %s signed by %s", req.PredicateType, strings.Join(req.SignedBy, " or "))
	kOfN := req.SignedByMin > 1 && len(req.SignedBy) > 1
	var cands []signerCand      // k of n: passing attestations
	var falseBy, errBy []string // k of n: signers whose attestations failed the condition
	var errs []error            // k of n: the condition error of each errBy entry
	if kOfN {
		what = fmt.Sprintf("attestation %s signed by %d of %s", req.PredicateType, req.SignedByMin, strings.Join(req.SignedBy, ", "))
	}
	label := "rule " + r.Name + ": " + what
	var others []string
	var condFalse []digest.Digest
	var condErr error
	considered := 0
	for _, res := range e.results {
		for i := range res.Attestations {
			a := &res.Attestations[i]
			if a.PredicateType != req.PredicateType {
				continue
			}
			if a.DetachedSubject {
				// The statement names content (files) rather than the digest:
				// it counts only once the caller bound it to what is served.
				if !e.bound(a.PredicateType) {
					e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation,
						Detail: fmt.Sprintf("attestation %s by %s: its subject is bound by content and %q did not pass: ignored", a.PredicateType, a.Signer, BindingCheck(a.PredicateType)), Evidence: evidenceOf(a.Evidence)})
					continue
				}
			} else if !subjectCovers(a.Subjects, res.Subject) {
				e.subjectBad = true
				e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation,
					Detail: fmt.Sprintf("attestation %s by %s: statement subject does not include %s: ignored", a.PredicateType, a.Signer, res.Subject), Evidence: evidenceOf(a.Evidence)})
				continue
			}
			if !containsString(req.SignedBy, a.Signer) {
				others = append(others, a.Signer)
				continue
			}
			if _, pullgateKind := attest.KindOf(a.PredicateType); pullgateKind {
				// pullgate's own predicates decode strictly: a hand-edited
				// statement (unknown fields, an eval whose "passed" contradicts
				// its metrics) is malformed even when a trusted key signed it.
				if _, err := attest.DecodePredicate(a.PredicateType, a.Predicate); err != nil {
					e.failureKinds[verify.FailMalformed]++
					e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation,
						Detail: fmt.Sprintf("attestation %s by %s is malformed: %v: ignored", a.PredicateType, a.Signer, err), Evidence: evidenceOf(a.Evidence)})
					continue
				}
			}
			if (rq.TLog || rq.Timestamp) && r.kind(a.Signer) == TrustIdentity && a.SignedAt.IsZero() {
				e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation,
					Detail: fmt.Sprintf("attestation %s by identity %s has no verified signing time (tlog/timestamp required): ignored", a.PredicateType, a.Signer), Evidence: evidenceOf(a.Evidence)})
				continue
			}
			considered++
			if req.prg == nil {
				c := Check{Name: checkAttestation, Passed: true,
					Detail: fmt.Sprintf("attestation %s signed by %s %s", a.PredicateType, r.kind(a.Signer), a.Signer), Evidence: evidenceOf(a.Evidence)}
				if kOfN {
					cands = append(cands, signerCand{name: a.Signer, principal: r.principal(a.Signer, a.Identity), detail: c.Detail, evidence: a.Evidence})
					continue
				}
				e.d.Checks = append(e.d.Checks, c)
				return cache
			}
			var vars map[string]any
			var err error
			vars, cache, err = e.varsFor(a, cache)
			ok := false
			if err == nil {
				ok, err = evalCondition(req.prg, vars)
			}
			switch {
			case err != nil:
				if condErr == nil {
					condErr = err
				}
				errBy, errs = append(errBy, a.Signer), append(errs, err)
				e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation,
					Detail: fmt.Sprintf("attestation %s signed by %s: condition error: %v", a.PredicateType, a.Signer, err), Evidence: evidenceOf(a.Evidence)})
			case ok:
				c := Check{Name: checkAttestation, Passed: true,
					Detail: fmt.Sprintf("attestation %s signed by %s %s: condition %s is true", a.PredicateType, r.kind(a.Signer), a.Signer, req.Condition), Evidence: evidenceOf(a.Evidence)}
				if kOfN {
					cands = append(cands, signerCand{name: a.Signer, principal: r.principal(a.Signer, a.Identity), detail: c.Detail, evidence: a.Evidence})
					continue
				}
				e.d.Checks = append(e.d.Checks, c)
				return cache
			default:
				condFalse = append(condFalse, a.Evidence)
				falseBy = append(falseBy, a.Signer)
			}
		}
	}
	if kOfN {
		e.attestersKOfN(req, what, cands, others, falseBy, errBy, errs)
		return cache
	}
	switch {
	case considered == 0:
		detail := what + ": none found"
		if len(others) > 0 {
			e.untrusted = true
			detail += "; found only signed by " + strings.Join(others, ", ") + ", which this requirement does not accept"
		}
		e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation, Detail: detail})
		e.unmet("%s: none found%s", label, e.malformedNote())
	case condErr != nil && len(condFalse) == 0:
		e.unmet("%s: condition error: %v", label, condErr)
	default:
		var ev []digest.Digest
		for _, x := range condFalse {
			if x != "" {
				ev = append(ev, x)
			}
		}
		e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation,
			Detail: fmt.Sprintf("attestation %s: condition %s is false", req.PredicateType, req.Condition), Evidence: ev})
		e.unmet("%s: condition %s is false", label, req.Condition)
	}
	return cache
}

// requireCheck denies unless the caller supplied a passing check of that name.
func (e *evaluation) requireCheck(name, label string) {
	for _, c := range e.in.Checks {
		if c.Name == name {
			return // its result is applied by external()
		}
	}
	e.d.Checks = append(e.d.Checks, Check{Name: name, Detail: label + ": not evaluated"})
	e.deny(ExitOther, "rule %s: %s: not evaluated", e.rule.Name, label)
}

// external applies content findings and caller-supplied checks.
func (e *evaluation) external() {
	r := e.rule
	for _, f := range e.in.ContentFindings {
		e.d.Checks = append(e.d.Checks, Check{Name: checkContent, Detail: f})
		e.deny(ExitUnmet, "rule %s: content: %s", r.Name, f)
	}
	for _, c := range e.in.Checks {
		e.d.Checks = append(e.d.Checks, c)
		if c.Passed {
			continue
		}
		code := c.ExitCode
		if code == 0 {
			code = ExitUnmet
		}
		if code == ExitUnmet || code == ExitNoEvidence {
			// A link or bill of materials is missing: when evidence was found
			// but did not verify, that is why (as for signatures).
			code = e.evidenceCode(code)
		}
		detail := c.Detail
		if detail == "" {
			detail = "failed"
		}
		e.deny(code, "rule %s: %s: %s", r.Name, c.Name, detail)
	}
}
