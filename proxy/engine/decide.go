package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
)

// Verdict is the engine's record of a decision about one digest in one
// repository under one policy revision.
type Verdict struct {
	Allowed   bool          `json:"allowed"`
	WouldDeny bool          `json:"wouldDeny,omitempty"`
	Rule      string        `json:"rule"`
	Mode      string        `json:"mode,omitempty"`
	Reasons   []string      `json:"reasons"`
	Checks    []audit.Check `json:"checks,omitempty"`
	Revision  string        `json:"policyRevision"`
	ExitCode  int           `json:"exitCode"`
	// Evidence marks the decision about a signature/attestation artifact
	// (made by its subject): index children never inherit it.
	Evidence bool `json:"evidence,omitempty"`
	// Waivers name the policy exceptions that waived every reason of a
	// denial (Allowed is then true, Reasons keep the waived ones); the
	// decision stands until WaivedUntil, the earliest of their expiries
	// (also for a decision inherited from a waived index or subject).
	Waivers     []string  `json:"waivers,omitempty"`
	WaivedUntil time.Time `json:"waivedUntil,omitzero"`
	// Signals are the providers' answers the decision read; it stands
	// until SignalsUntil, when the earliest of them goes stale.
	Signals      []audit.Signal `json:"signals,omitempty"`
	SignalsUntil time.Time      `json:"signalsUntil,omitzero"`
	// Fallback marks an allow served from an earlier decision because the
	// evidence could not be fetched now (nothing was verified now; a VSA
	// is not signed for it), or inherited from one.
	Fallback bool `json:"fallback,omitempty"`
}

// Result is the decision as the audit log and metrics name it: allow,
// deny, or waived (allowed by exceptions).
func (v Verdict) Result() string {
	switch {
	case v.Allowed && len(v.Waivers) > 0:
		return "waived"
	case v.Allowed:
		return "allow"
	}
	return "deny"
}

// standsAt reports whether a decision still stands at now: a waived one
// only until its earliest exception expires.
func (v Verdict) standsAt(now time.Time) bool {
	return (v.WaivedUntil.IsZero() || now.Before(v.WaivedUntil)) && (v.SignalsUntil.IsZero() || now.Before(v.SignalsUntil))
}

// waivedFrom bounds v (allowed by inheritance from o: an index's child,
// a subject's signature) by o's exceptions, and, allowed, names them
// (its audit event says waived, not allow).
func (v Verdict) waivedFrom(o Verdict) Verdict {
	if !o.WaivedUntil.IsZero() && (v.WaivedUntil.IsZero() || o.WaivedUntil.Before(v.WaivedUntil)) {
		v.WaivedUntil = o.WaivedUntil
	}
	// Nor longer than the answers o read; and not verified now if o was not.
	if !o.SignalsUntil.IsZero() && (v.SignalsUntil.IsZero() || o.SignalsUntil.Before(v.SignalsUntil)) {
		v.SignalsUntil = o.SignalsUntil
	}
	v.Fallback = v.Fallback || o.Fallback
	if v.Allowed && len(o.Waivers) > 0 {
		names := slices.Clone(v.Waivers)
		for _, n := range o.Waivers {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		v.Waivers = names
	}
	return v
}

// message is the one-line denial a client prints.
func (v Verdict) Message(repository, ref string) string {
	reasons := strings.Join(v.Reasons, "; ")
	if reasons == "" {
		reasons = "denied"
	}
	return fmt.Sprintf("pullgate denied %s@%s: %s", repository, ref, reasons)
}

func (s *Engine) ttl(v Verdict) time.Duration {
	ttl := s.cfg.Cache.DenyTTL.D()
	if v.Allowed && !v.WouldDeny {
		ttl = s.boundTTL(s.cfg.Cache.AllowTTL.D(), v.WaivedUntil)
	}
	return s.boundTTL(ttl, v.SignalsUntil)
}

// boundTTL bounds a cache entry's time to live by the expiry of the
// exceptions it rests on (until; zero: none): a waived decision is not
// served from a cache after its exception expired.
func (s *Engine) boundTTL(ttl time.Duration, until time.Time) time.Duration {
	if until.IsZero() {
		return ttl
	}
	return min(ttl, until.Sub(s.now()))
}

func verdictKey(rev, rule, repository string, dgst digest.Digest) string {
	return rev + "|" + rule + "|" + repository + "|" + dgst.String()
}

// decide evaluates the rule over in and applies the policy's exceptions
// at the engine's clock (counted per exception that waived a denial).
func (s *Engine) decide(q *Query, in policy.Input) Verdict {
	d := q.pol.Waive(q.rule.Evaluate(in, q.pol.Revision()), s.now())
	for _, name := range d.Waivers {
		s.metrics.waived.WithLabelValues(q.rule.Name, name).Inc()
	}
	return fromDecision(d)
}

// ruleVerdict decides what a rule decides without looking at the artifact:
// no rule (fail closed), deny, allow. ok is false for verify rules.
func ruleVerdict(p *policy.Policy, rule *policy.Rule, repository string) (Verdict, bool) {
	if rule == nil {
		return fromDecision(p.Evaluate(policy.Input{Repository: repository, Digest: noDigest})), true
	}
	if rule.Action == policy.ActionVerify {
		return Verdict{}, false
	}
	return fromDecision(rule.Evaluate(policy.Input{Repository: repository}, p.Revision())), true
}

// noDigest is a syntactically valid digest used when a decision is made
// before any digest is known (no rule matched: nothing is fetched).
const noDigest = digest.Digest("sha256:0000000000000000000000000000000000000000000000000000000000000000")

func fromDecision(d policy.Decision) Verdict {
	v := Verdict{Allowed: d.Allowed, WouldDeny: d.WouldDeny, Rule: d.Rule, Mode: d.Mode,
		Reasons: d.Reasons, Revision: d.Revision, ExitCode: d.ExitCode, Waivers: d.Waivers, WaivedUntil: d.WaivedUntil}
	if d.WouldDeny {
		v.ExitCode = d.DenyExitCode
	}
	for _, c := range d.Checks {
		ac := audit.Check{Name: c.Name, Passed: c.Passed, Detail: c.Detail}
		for _, e := range c.Evidence {
			ac.Evidence = append(ac.Evidence, e.String())
		}
		v.Checks = append(v.Checks, ac)
	}
	if v.Allowed && len(v.Reasons) == 0 {
		v.Reasons = []string{fmt.Sprintf("rule %s: allowed", d.Rule)}
	}
	return v
}

// decideManifest decides a manifest digest in the query's repository,
// from the verdict cache or by evaluating the policy. m is the verified
// manifest.
func (s *Engine) decideManifest(q *Query, dgst digest.Digest, m *Manifest) (Verdict, bool) {
	rep := q.repository()
	// Deny (and no rule) decide alone; allow decides alone unless the rule
	// has content checks, which look at the manifest.
	if v, ok := q.RuleVerdict(); ok && (!v.Allowed || q.rule.Content == nil) {
		return v, false
	}
	// Signatures and attestations are decided by their subject (and how
	// they were asked for), not cached by their own digest.
	if v, ok := s.evidenceVerdict(q, dgst, m); ok {
		return v, false
	}
	key := verdictKey(q.pol.Revision(), q.rule.Name, rep, dgst)
	if v, ok := s.verdicts.Get(key); ok && v.standsAt(s.now()) && s.answersCurrent(v) {
		return v, true
	}
	decide := func(q *Query) Verdict {
		gen := s.signalGen.Load()
		v := s.evaluate(q, dgst, m)
		if s.signalGen.Load() == gen {
			// Not when a provider's version changed meanwhile: the
			// answers v read may be stale.
			s.verdicts.Add(key, v, s.verdictTTL(q.rule, v))
			if v.Allowed && s.onAllowed != nil {
				s.onAllowed(q, dgst, m, v)
			}
		}
		if !v.Allowed {
			// An evidence grant confirmed before this artifact was denied
			// may cover one of its blobs: confirm them again.
			s.forget(artifactDenied)
		}
		return v
	}
	if q.depth > 0 {
		// Nested in a decision (an index above, a signature's subject):
		// made directly, so that a chain of decisions never waits for a
		// flight it is part of.
		return decide(q), false
	}
	// Concurrent pulls of one cold digest share one decision: one
	// evidence collection upstream, one ask of each signal provider. It
	// is made for all of them (no caller's disconnect cancels it) within
	// decisionTimeout; a caller that goes away stops waiting.
	ch := s.deciding.DoChan(key, func() (v any, _ error) {
		defer func() {
			// A panic here would end the process (it runs on the
			// flight's own goroutine): it denies instead.
			if r := recover(); r != nil {
				s.log.Error("decision panicked", "repository", q.repository(), "digest", dgst, "panic", r, "stack", string(debug.Stack()))
				v = Verdict{Rule: q.rule.Name, Mode: string(q.rule.Mode), Revision: q.pol.Revision(), ExitCode: policy.ExitOther,
					Reasons: []string{"internal error while deciding " + dgst.String() + " (logged)"}}
			}
		}()
		dq := *q
		ctx, cancel := context.WithTimeout(context.WithoutCancel(q.c), decisionTimeout)
		defer cancel()
		dq.c = ctx
		return decide(&dq), nil
	})
	select {
	case r := <-ch:
		return r.Val.(Verdict), false
	case <-q.c.Done():
		return Verdict{Rule: q.rule.Name, Mode: string(q.rule.Mode), Revision: q.pol.Revision(), ExitCode: policy.ExitOther,
			Reasons: []string{"the request ended before its decision was made: " + context.Cause(q.c).Error()}}, false
	}
}

// decisionTimeout bounds one shared cold decision: evidence collection
// (evidenceTimeout), the artifact's config and the signal providers run
// within it.
const decisionTimeout = 2 * evidenceTimeout

// persistLinks records, in the shared store, which manifests reference which
// blobs and children in this repository, so that a blob request can be
// decided after a restart or on another replica.
func (s *Engine) persistLinks(ctx context.Context, upstreamName, repo string, manifest digest.Digest, m *Manifest) {
	lk := upstreamName + "/" + repo + "@" + manifest.String()
	if _, ok := s.linked.Get(lk); ok {
		return
	}
	// Once these links are written (or some, on a failure), grants made
	// before no longer cover every link (see BlobGrant.Gen).
	defer s.linkGen.Add(1)
	for _, d := range m.Blobs() {
		if err := s.records.PutLink(ctx, upstreamName, repo, records.Blobs, d.Digest, manifest); err != nil {
			s.log.Warn("store: link write failed", "err", err)
			return
		}
	}
	for _, d := range m.Manifests {
		if err := s.records.PutLink(ctx, upstreamName, repo, records.Parents, d.Digest, manifest); err != nil {
			s.log.Warn("store: link write failed", "err", err)
			return
		}
	}
	s.linked.Add(lk, true, 24*time.Hour)
}

// linkedManifests lists the manifests recorded as referencing blob (kind
// "_blobs") or as parent indexes of a child manifest (kind "_parents"). An
// error means the store could not say: no decision may treat it as "no
// manifest" (a grant would then ignore declarations it cannot see).
func (s *Engine) linkedManifests(ctx context.Context, upstreamName, repo, kind string, d digest.Digest) ([]digest.Digest, error) {
	out, err := s.records.Links(ctx, upstreamName, repo, records.LinkKind(kind), d)
	if err != nil {
		s.log.Warn("store: link read failed", "err", err)
		return nil, &StoreUnreadable{what: "list which manifests reference " + d.String(), err: err}
	}
	return out, nil
}

// linkNames lists the digests (algorithm:hex) of the manifests linked to
// d, as BlobGrant.Seen holds them; an error as linkedManifests.
func (s *Engine) linkNames(ctx context.Context, upstreamName, repo, kind string, d digest.Digest) ([]string, error) {
	linked, err := s.linkedManifests(ctx, upstreamName, repo, kind, d)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(linked))
	for i, md := range linked {
		names[i] = md.String()
	}
	return names, nil
}

// StoreUnreadable is store metadata a decision needs that the store could
// not return (a blob's links, its recorded content findings): the request
// is answered 503, neither allowed nor denied, and nothing is recorded.
type StoreUnreadable struct {
	what string // "list which manifests reference <digest>", ...
	err  error
}

func (e *StoreUnreadable) Error() string {
	return fmt.Sprintf("the store could not %s (%v); retry when the store is reachable", e.what, e.err)
}

func (e *StoreUnreadable) Unwrap() error { return e.err }

func marshalMeta(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
