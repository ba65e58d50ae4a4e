package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/verify"
)

// External signals (require.signals): facts about the decided digest from
// providers the operator configures (pullgate's config, `signals:`). A
// signal is a fact, never a decision: a required signal that is missing,
// failed or pending can only deny, and the conditions that read signals
// read nothing else (each is one more requirement), so no answer can lift
// a denial the rest of the rule makes.

// SignalPredicateType is the predicate type of a provider's answer signed
// as an in-toto statement about the digest: the predicate holds the
// answer's status, verdict, findings, facts and provider.
const SignalPredicateType = "https://pullgate.dev/signal/v1"

// VarSignals is the conditions variable of the required signals'
// answers, by provider name.
const VarSignals = "signals"

// Signal statuses in Input.Signals.
const (
	SignalDone    = "done"
	SignalPending = "pending"
	SignalError   = "error"
)

// What a provider's failed or pending answer means (its onError and
// onPending in pullgate's config).
const (
	SignalDeny   = "deny"
	SignalIgnore = "ignore"
)

// CheckSignal is the name of each required signal's Check.
const CheckSignal = "signal"

// SignalNameRE is what a provider's name looks like: a CEL field name
// (signals.<name>.verdict).
var SignalNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// SignalRequirement is one of require.signals: the provider must answer
// for the digest, and with SignedBy, the answer must be signed (an in-toto
// statement of SignalPredicateType about the digest, verified with the
// policy's trust) by one of these trust names; the conditions then read
// the signed answer.
type SignalRequirement struct {
	Provider string
	SignedBy []string
}

// Signal is what one provider answered about the decided digest, as the
// caller got it (Input.Signals).
type Signal struct {
	Provider string
	// Status is SignalDone, SignalPending or SignalError.
	Status string
	// Error says what failed (Status SignalError): "timeout: ...".
	Error string
	// OnError and OnPending are SignalDeny (also when empty) or
	// SignalIgnore, from the provider's configuration.
	OnError, OnPending string
	Version, DBVersion string
	Verdict            string
	Findings           []SignalFinding
	Facts              map[string]any
	// Cached: the answer was reused, not asked for this decision.
	Cached bool
	// At is when the provider answered.
	At time.Time
	// Evidence is the answer's signed statements verified with the
	// policy's trust (about the digest or not: evaluation checks).
	Evidence []verify.Attestation
	// EvidenceFailures say why other signed statements of the answer did
	// not verify.
	EvidenceFailures []string
}

// SignalFinding is one finding of a provider.
type SignalFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Message  string `json:"message,omitempty"`
}

// signedSignal is the predicate of SignalPredicateType.
type signedSignal struct {
	Provider struct {
		Name      string `json:"name"`
		Version   string `json:"version"`
		DBVersion string `json:"dbVersion,omitempty"`
	} `json:"provider"`
	Status   string          `json:"status"`
	Verdict  string          `json:"verdict,omitempty"`
	Findings []SignalFinding `json:"findings,omitempty"`
	Facts    map[string]any  `json:"facts,omitempty"`
}

// decodeSignedSignal decodes a signed answer strictly (unknown fields are
// an error: a signer did not mean them).
func decodeSignedSignal(raw []byte) (*signedSignal, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var s signedSignal
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the predicate")
	}
	switch {
	case s.Provider.Name == "" || s.Provider.Version == "":
		return nil, fmt.Errorf("provider.name and provider.version are required")
	case s.Status != SignalDone && s.Status != SignalPending:
		return nil, fmt.Errorf("status %q is not done or pending", s.Status)
	}
	return &s, nil
}

// SignalNames lists the providers the rule requires (nil for none).
func (r *Rule) SignalNames() []string {
	if r == nil || r.Require == nil {
		return nil
	}
	out := make([]string, 0, len(r.Require.Signals))
	for _, s := range r.Require.Signals {
		out = append(out, s.Provider)
	}
	return out
}

// signals evaluates require.signals and returns the conditions document of
// the answers (provider name → answer), signed ones replaced by what their
// signer signed.
func (e *evaluation) signals(reqs []*SignalRequirement) map[string]any {
	doc := make(map[string]any, len(reqs))
	r := e.rule
	for _, rq := range reqs {
		s := e.in.Signals[rq.Provider]
		if s == nil {
			e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Detail: fmt.Sprintf("signal %s: no answer", rq.Provider)})
			e.deny(ExitConfig, "rule %s: signal %s: no provider %q is configured (add it to the signals section of pullgate's config)", r.Name, rq.Provider, rq.Provider)
			continue
		}
		d := map[string]any{"status": s.Status, "provider": map[string]any{"name": s.Provider, "version": s.Version, "dbVersion": s.DBVersion},
			"cached": s.Cached, "signed": false, "signer": ""}
		doc[rq.Provider] = d
		switch s.Status {
		case SignalError:
			d["error"] = s.Error
			if s.OnError == SignalIgnore {
				e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Passed: true, Detail: fmt.Sprintf("signal %s: %s (ignored: onError ignore)", rq.Provider, s.Error)})
				continue
			}
			e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Detail: fmt.Sprintf("signal %s: %s", rq.Provider, s.Error)})
			e.deny(ExitOther, "rule %s: signal %s: %s (the provider's onError is deny)", r.Name, rq.Provider, s.Error)
			continue
		case SignalPending:
			if s.OnPending == SignalIgnore {
				e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Passed: true, Detail: fmt.Sprintf("signal %s: pending (ignored: onPending ignore)", rq.Provider)})
				continue
			}
			e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Detail: fmt.Sprintf("signal %s: pending", rq.Provider)})
			e.deny(ExitUnmet, "rule %s: signal %s: pending: the provider has not finished looking at %s; pull again later (the provider's onPending is deny)", r.Name, rq.Provider, e.in.Digest)
			continue
		}
		verdict, findings, facts := s.Verdict, s.Findings, s.Facts
		if len(rq.SignedBy) > 0 {
			signed, why := e.signedSignal(rq, s)
			if signed == nil {
				e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Detail: fmt.Sprintf("signal %s: %s", rq.Provider, why)})
				e.deny(ExitInvalid, "rule %s: signal %s: no answer signed by %s (%s)", r.Name, rq.Provider, strings.Join(rq.SignedBy, " or "), why)
				continue
			}
			d["signed"], d["signer"] = true, signed.signer
			d["provider"] = map[string]any{"name": signed.p.Provider.Name, "version": signed.p.Provider.Version, "dbVersion": signed.p.Provider.DBVersion}
			d["status"] = signed.p.Status
			if signed.p.Status == SignalPending {
				// What the signer signed is pending: the unsigned answer
				// cannot say otherwise.
				if s.OnPending == SignalIgnore {
					e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Passed: true, Detail: fmt.Sprintf("signal %s: signed answer pending (ignored: onPending ignore)", rq.Provider)})
					continue
				}
				e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Detail: fmt.Sprintf("signal %s: signed answer pending", rq.Provider)})
				e.deny(ExitUnmet, "rule %s: signal %s: the answer signed by %s is pending; pull again later (the provider's onPending is deny)", r.Name, rq.Provider, signed.signer)
				continue
			}
			verdict, findings, facts = signed.p.Verdict, signed.p.Findings, signed.p.Facts
		}
		fl := make([]any, 0, len(findings))
		for _, f := range findings {
			fl = append(fl, map[string]any{"id": f.ID, "severity": f.Severity, "message": f.Message})
		}
		if facts == nil {
			facts = map[string]any{}
		}
		d["verdict"], d["findings"], d["facts"] = verdict, fl, facts
		detail := fmt.Sprintf("signal %s: answered (%s %s", rq.Provider, s.Provider, s.Version)
		if s.DBVersion != "" {
			detail += ", database " + s.DBVersion
		}
		detail += ")"
		if verdict != "" {
			detail += ": verdict " + verdict
		}
		if d["signed"] == true {
			detail += ", signed by " + d["signer"].(string)
		}
		e.d.Checks = append(e.d.Checks, Check{Name: CheckSignal, Passed: true, Detail: detail})
	}
	return doc
}

type signedAnswer struct {
	p      *signedSignal
	signer string
}

// signedSignal finds, in the answer's verified evidence, the statement of
// SignalPredicateType about the decided digest signed by one of
// rq.SignedBy for this very answer (the provider's name, version and
// database version it came with): an older signed answer the provider
// still returns does not count. Two such statements that disagree are
// refused. why says what was found instead when there is none.
func (e *evaluation) signedSignal(rq *SignalRequirement, s *Signal) (*signedAnswer, string) {
	var others []string
	var found *signedAnswer
	var foundJSON []byte
	for i := range s.Evidence {
		a := &s.Evidence[i]
		switch {
		case a.PredicateType != SignalPredicateType:
			others = append(others, fmt.Sprintf("a %s statement by %s", a.PredicateType, a.Signer))
		case !subjectCovers(a.Subjects, e.in.Digest):
			e.subjectBad = true
			others = append(others, fmt.Sprintf("a statement by %s about another digest", a.Signer))
		case !slices.Contains(rq.SignedBy, a.Signer):
			others = append(others, fmt.Sprintf("signed by %s", a.Signer))
		default:
			p, err := decodeSignedSignal(a.Predicate)
			if err != nil {
				others = append(others, fmt.Sprintf("a malformed answer signed by %s: %v", a.Signer, err))
				continue
			}
			if p.Provider.Name != s.Provider || p.Provider.Version != s.Version || p.Provider.DBVersion != s.DBVersion {
				others = append(others, fmt.Sprintf("an answer of %s %s (database %s) signed by %s, not of this answer's %s %s (database %s)",
					p.Provider.Name, p.Provider.Version, p.Provider.DBVersion, a.Signer, s.Provider, s.Version, s.DBVersion))
				continue
			}
			pj, _ := json.Marshal(p)
			if found != nil && !bytes.Equal(pj, foundJSON) {
				return nil, fmt.Sprintf("found: conflicting answers for %s %s (database %s) signed by %s and %s",
					s.Provider, s.Version, s.DBVersion, found.signer, a.Signer)
			}
			if found == nil {
				found, foundJSON = &signedAnswer{p: p, signer: a.Signer}, pj
			}
		}
	}
	if found != nil {
		return found, ""
	}
	others = append(others, s.EvidenceFailures...)
	if len(others) == 0 {
		return nil, "the answer carries no signed statement"
	}
	if len(others) > 4 {
		others = append(others[:4], fmt.Sprintf("%d more", len(others)-4))
	}
	return nil, "found: " + strings.Join(others, "; ")
}

// parseSignals reads require.signals: a list of provider names or
// {provider, signedBy} mappings.
func (l *loader) parseSignals(f field, what string, t *Trust) []*SignalRequirement {
	its, ok := l.items(f, what, "write signals as a list of provider names or {provider, signedBy}, e.g. [sandbox]",
		"list at least one provider, or remove signals")
	if !ok {
		return nil
	}
	var out []*SignalRequirement
	seen := map[string]bool{}
	for i, it := range its {
		w := fmt.Sprintf("%s[%d]", what, i)
		rq := &SignalRequirement{}
		nf := field{key: it, val: it}
		if it.Kind == yaml.MappingNode {
			fs, ok := l.mapping(it, w, "provider", "signedBy")
			if !ok {
				continue
			}
			pf, has := fs["provider"]
			if !has {
				l.errAt(it, "add provider: <name of a provider in pullgate's signals config>", "%s: provider is required", w)
				continue
			}
			nf, w = pf, w+".provider"
			if sf, ok := fs["signedBy"]; ok {
				names, _, ok := l.signerNames(sf, strings.TrimSuffix(w, ".provider")+".signedBy", t, "list the trust names whose signature the answer needs, or remove signedBy")
				if !ok {
					continue
				}
				rq.SignedBy = names
			}
		}
		name, ok := l.str(nf, w, "name a provider of pullgate's signals config")
		if !ok {
			continue
		}
		switch {
		case !SignalNameRE.MatchString(name):
			l.errAt(nf.val, "provider names are lower-case letters, digits and _ (they are CEL field names)", "%s %q is not a provider name", w, name)
			continue
		case seen[name]:
			l.errAt(nf.val, "list each provider once", "%s: provider %q is listed twice", w, name)
			continue
		}
		seen[name] = true
		rq.Provider = name
		out = append(out, rq)
	}
	return out
}

// signalsDocument is the signals document of in (as conditions read it),
// for another policy language's input: nothing is decided here.
func (r *Rule) signalsDocument(in *Input) map[string]any {
	if r.Require == nil || len(r.Require.Signals) == 0 {
		return map[string]any{}
	}
	e := &evaluation{rule: r, in: in, d: &Decision{}, failureKinds: map[verify.FailureKind]int{}}
	return e.signals(r.Require.Signals)
}
