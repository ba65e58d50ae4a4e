package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/signals"
)

// signalRetryTTL is how long a decision made on a pending or failed
// answer is reused: the provider is asked again on the next pull after
// it (neither answer is cached by the provider's client).
const signalRetryTTL = 10 * time.Second

// asked is the outcome of asking a rule's providers about one digest.
type asked struct {
	in    map[string]*policy.Signal
	audit []audit.Signal
	// until is when the earliest answer goes stale (zero: no signals).
	until time.Time
}

// startSignals asks the rule's providers about dgst in the background, so
// that their latency runs beside evidence collection; wait returns the
// answers. A rule without signals returns at once.
func (s *Engine) startSignals(q *Query, dgst digest.Digest, m *Manifest) (wait func() asked) {
	names := q.rule.SignalNames()
	if len(names) == 0 {
		return func() asked { return asked{} }
	}
	ch := make(chan asked, 1)
	go func() {
		// On its own goroutine a panic (verifying a provider's signed
		// statements is parsing its bytes) would end the process: each
		// provider's answer is an error instead, which denies.
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("asking signal providers panicked", "digest", dgst, "panic", r, "stack", string(debug.Stack()))
				out := asked{in: map[string]*policy.Signal{}, until: s.now().Add(signalRetryTTL)}
				for _, n := range names {
					out.in[n] = &policy.Signal{Provider: n, Status: policy.SignalError, Error: "internal error while reading the answer (logged)"}
					out.audit = append(out.audit, audit.Signal{Provider: n, Status: policy.SignalError, Error: "internal error"})
				}
				ch <- out
			}
		}()
		ch <- s.askSignals(q, dgst, m, names)
	}()
	return func() asked { return <-ch }
}

// askSignals asks the named providers about dgst (the verified manifest
// m) and verifies the signed statements the answers carry with the
// policy's trust.
func (s *Engine) askSignals(q *Query, dgst digest.Digest, m *Manifest, names []string) asked {
	out := asked{in: make(map[string]*policy.Signal, len(names))}
	if s.signals == nil {
		// No provider is configured: the policy denies with "no provider
		// configured" for each name.
		return out
	}
	req := signals.Request{APIVersion: signals.APIVersion, Subject: signals.Subject{
		Digest: dgst.String(), MediaType: m.MediaType, ArtifactType: m.ArtifactType, Size: int64(len(m.Raw)),
		Upstream: q.sub.Upstream, Repository: q.repository(), Tag: q.sub.Tag}}
	for _, l := range m.Blobs() {
		req.Subject.Layers = append(req.Subject.Layers, signals.Layer{Digest: l.Digest.String(), MediaType: l.MediaType,
			Size: l.Size, Title: l.Annotations["org.opencontainers.image.title"]})
	}
	// Asked for everyone who will ask about the digest: a client that
	// disconnects does not turn the answer into an error.
	ctx := context.WithoutCancel(q.ctx())
	now := s.now()
	for name, r := range s.signals.AskAll(ctx, names, req) {
		p, known := s.signals.Provider(name)
		if !known {
			continue
		}
		sig := &policy.Signal{Provider: name, OnError: p.OnError, OnPending: p.OnPending, Cached: r.Cached, At: r.At}
		au := audit.Signal{Provider: name, Cached: r.Cached, LatencyMS: float64(r.Latency.Microseconds()) / 1000}
		until := now.Add(signalRetryTTL)
		switch {
		case r.Err != nil:
			sig.Status, sig.Error = policy.SignalError, r.Err.Kind+": "+r.Err.Msg
			au.Status, au.Error = policy.SignalError, sig.Error
		default:
			a := r.Answer
			sig.Status, sig.Version, sig.DBVersion, sig.Verdict, sig.Facts = a.Status, a.Provider.Version, a.Provider.DBVersion, a.Verdict, a.Facts
			sig.Provider = a.Provider.Name
			for _, f := range a.Findings {
				sig.Findings = append(sig.Findings, policy.SignalFinding{ID: f.ID, Severity: f.Severity, Message: f.Message})
			}
			s.verifySignalEvidence(ctx, q, dgst, a, sig)
			au.Status, au.Verdict, au.Version, au.DBVersion = a.Status, a.Verdict, a.Provider.Version, a.Provider.DBVersion
			au.Findings, au.Signed = len(a.Findings), len(sig.Evidence)
			if a.Status == signals.StatusDone {
				until = r.At.Add(p.AnswerTTL(a))
			}
		}
		out.in[name] = sig
		out.audit = append(out.audit, au)
		if out.until.IsZero() || until.Before(out.until) {
			out.until = until
		}
	}
	return out
}

// verifySignalEvidence verifies the signed statements of an answer (Sigstore
// bundles) about dgst with the policy's trust, exactly as a referrer
// bundle is verified; what does not verify is kept as a failure.
func (s *Engine) verifySignalEvidence(ctx context.Context, q *Query, dgst digest.Digest, a *signals.Answer, sig *policy.Signal) {
	if len(a.Evidence) == 0 {
		return
	}
	trust := q.pol.Trust.Verifier
	if trust == nil {
		sig.EvidenceFailures = append(sig.EvidenceFailures, "the policy has no trust material to verify the answer's signed statements with")
		return
	}
	opts := verify.CollectOptions{VerifyOptions: q.rule.VerifyOptions(), MaxBlobSize: signals.MaxAnswerSize}
	for i, ev := range a.Evidence {
		res := verify.VerifyBundle(ctx, ev, dgst, trust, opts)
		sig.Evidence = append(sig.Evidence, res.Attestations...)
		for _, f := range res.Failures {
			sig.EvidenceFailures = append(sig.EvidenceFailures, fmt.Sprintf("evidence[%d]: %s: %s", i, f.Kind, f.Reason))
		}
	}
}

// signalGrantTTL bounds how long a grant made on a decision that read
// signals is held: no longer than the shortest cacheTTL of the rule's
// providers, so that no blob outlives the answer its manifest was allowed
// on (0: the rule reads no signals).
func (s *Engine) signalGrantTTL(rule *policy.Rule) time.Duration {
	var ttl time.Duration
	for _, name := range rule.SignalNames() {
		if s.signals == nil {
			return signalRetryTTL
		}
		if p, ok := s.signals.Provider(name); ok && (ttl == 0 || p.CacheTTL < ttl) {
			ttl = p.CacheTTL
		}
	}
	return ttl
}

// decideSignals decides in with the providers' answers; the verdict
// carries them (audit) and stands no longer than the earliest one.
func (s *Engine) decideSignals(q *Query, in policy.Input, a asked) Verdict {
	in.Signals = a.in
	v := s.decide(q, in)
	v.Signals, v.SignalsUntil = a.audit, a.until
	return v
}

// checkSignals refuses a policy whose rules require a signal provider the
// config does not configure: each of its pulls would be denied.
func (s *Engine) checkSignals(p *policy.Policy) error {
	var errs []error
	for _, r := range p.Rules {
		for _, name := range r.SignalNames() {
			if s.signals == nil {
				errs = append(errs, fmt.Errorf("rule %s: require.signals names provider %q, but pullgate's config has no signals section", r.Name, name))
			} else if _, ok := s.signals.Provider(name); !ok {
				errs = append(errs, fmt.Errorf("rule %s: require.signals names provider %q, which pullgate's config does not configure (configured: %s)", r.Name, name, strings.Join(s.signals.Names(), ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

// signalsChanged follows a provider's version change: decisions made
// across it are not cached (signalGen), cached ones that read an older
// answer are made again when next asked for (answersCurrent), and a
// version never seen before (a database update, not providers of a
// rolling update answering in turn) drops every decision and grant.
func (s *Engine) signalsChanged(provider string) {
	s.signalGen.Add(1)
	v, db, _ := s.signals.Current(provider)
	seen := provider + "\x00" + v + "\x00" + db
	s.signalMu.Lock()
	isNew := !slices.Contains(s.signalSeen, seen)
	if isNew {
		s.signalSeen = append(s.signalSeen, seen)
		if len(s.signalSeen) > maxSignalVersionsSeen {
			s.signalSeen = s.signalSeen[1:]
		}
	}
	s.signalMu.Unlock()
	if isNew {
		s.forget(signalsChanged)
	}
}

// maxSignalVersionsSeen bounds the provider versions remembered as seen.
const maxSignalVersionsSeen = 64

// answersCurrent reports whether every answer v read is from its
// provider's current version and database.
func (s *Engine) answersCurrent(v Verdict) bool {
	for _, a := range v.Signals {
		if a.Status != policy.SignalDone || s.signals == nil {
			continue
		}
		if ver, db, ok := s.signals.Current(a.Provider); ok && (ver != a.Version || db != a.DBVersion) {
			return false
		}
	}
	return true
}
