package release

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// ChainLLMRelease is the chain `require.chain: llm-release` names.
const ChainLLMRelease = "llm-release"

// DefaultClockSkew is the tolerance when comparing times from different
// clocks (a CI runner's createdAt against a Rekor or TSA signing time).
const DefaultClockSkew = 5 * time.Minute

// ChainOptions shape Chain.
type ChainOptions struct {
	// Subject is the digest being served. When set, a statement that does
	// not name it is not part of the release (defence in depth: Collect
	// already only returns statements about the decided digest).
	Subject digest.Digest
	// Now is the reference time for rejecting future-dated statements
	// (nil: time.Now).
	Now func() time.Time
	// ClockSkew (default DefaultClockSkew).
	ClockSkew time.Duration
}

type node struct {
	att     *verify.Attestation
	dg      string
	kind    attest.Kind
	pred    any
	common  attest.Common
	created time.Time
}

func (n *node) label() string { return fmt.Sprintf("%s %s", n.kind, n.dg) }

// SignedAt is the earliest verified signing time, zero when unknown.
func (n *node) signedAt() time.Time { return n.att.SignedAt }

// Chain checks the named provenance chain over verified attestations. For
// llm-release the newest slo statement is the head and every link must hold:
//
//   - slo → route → eval → prompt (+ corpus): each reference names a statement
//     that is in atts (present and signed by trusted signers) and of the right
//     kind (a route must reference an eval, an slo a route, ...);
//   - no statement is older than one it references (createdAt, and the
//     verified signing times when both are known), none claims a createdAt
//     after its own signing time or in the future;
//   - the eval passed (every threshold held on the measured metrics);
//   - the eval is the newest eval for its prompt (a new route referencing a
//     stale eval fails), and the prompt and corpus it evaluated are the newest
//     attested for the served digest (a prompt changed after the eval fails).
func Chain(name string, atts []verify.Attestation, opts ChainOptions) Report {
	rp := newReporter("chain " + name)
	if name != ChainLLMRelease {
		rp.fail(CodeUnsupported, "unknown chain %q (supported: %s)", name, ChainLLMRelease)
		return rp.done()
	}
	if opts.ClockSkew <= 0 {
		opts.ClockSkew = DefaultClockSkew
	}
	now := time.Now()
	if opts.Now != nil {
		now = opts.Now()
	}
	g := buildGraph(atts, opts.Subject)

	slos := g.ofKind(attest.KindSLO)
	if len(slos) == 0 {
		rp.fail(CodeMissing, "no verified slo statement (%s) for the served digest%s", attest.KindSLO.PredicateType(), g.excludedNote())
		return rp.done()
	}
	head := slos[len(slos)-1]
	if len(slos) > 1 {
		rp.pass("%s is the newest of %d slo statements", head.label(), len(slos))
	}
	checked := map[*node]bool{}
	checkTimes := func(n *node) {
		if checked[n] {
			return
		}
		checked[n] = true
		if sa := n.signedAt(); !sa.IsZero() && n.created.After(sa.Add(opts.ClockSkew)) {
			rp.fail(CodeFutureDated, "%s claims createdAt %s, after its verified signing time %s", n.label(), fmtTime(n.created), fmtTime(sa))
		}
		if n.created.After(now.Add(opts.ClockSkew)) {
			rp.fail(CodeFutureDated, "%s claims createdAt %s, in the future", n.label(), fmtTime(n.created))
		}
	}
	checkTimes(head)

	slo := head.pred.(*attest.SLOPredicate)
	route, ok := g.link(rp, head, "route", slo.RouteStatement, attest.KindRoute, opts.ClockSkew)
	if !ok {
		return rp.done()
	}
	checkTimes(route)
	rt := route.pred.(*attest.RoutePredicate)
	eval, ok := g.link(rp, route, "eval", rt.EvalStatement, attest.KindEval, opts.ClockSkew)
	if !ok {
		return rp.done()
	}
	checkTimes(eval)
	ev := eval.pred.(*attest.EvalPredicate)
	if ev.Passed {
		rp.pass("%s passed %d threshold(s)", eval.label(), len(ev.Thresholds))
	} else {
		var why []string
		for _, t := range ev.Thresholds {
			if !t.Passed {
				why = append(why, t.Describe(t.Value))
			}
		}
		rp.fail(CodeEvalFailed, "%s did not pass: %s", eval.label(), strings.Join(why, ", "))
	}

	prompt, okP := g.link(rp, eval, "prompt", ev.PromptStatement, attest.KindPrompt, opts.ClockSkew)
	if okP {
		checkTimes(prompt)
		g.newest(rp, eval, prompt)
	}
	var corpus *node
	if ev.CorpusStatement != "" {
		var okC bool
		if corpus, okC = g.link(rp, eval, "corpus", ev.CorpusStatement, attest.KindCorpus, opts.ClockSkew); okC {
			checkTimes(corpus)
			g.newest(rp, eval, corpus)
		}
	} else if cs := g.ofKind(attest.KindCorpus); len(cs) > 0 {
		rp.fail(CodeSuperseded, "%s evaluated no corpus, but %s is attested for the served digest", eval.label(), cs[len(cs)-1].label())
	}

	// The route's eval must be the newest eval of the same prompt.
	promptName := ev.Name
	if prompt != nil {
		promptName = prompt.common.Name
	}
	for _, other := range g.ofKind(attest.KindEval) {
		if other == eval || !other.created.After(eval.created) {
			continue
		}
		oe := other.pred.(*attest.EvalPredicate)
		otherPrompt := oe.Name
		if pn, ok := g.nodes[oe.PromptStatement]; ok {
			otherPrompt = pn.common.Name
		} else if prompt != nil && oe.PromptStatement == prompt.dg {
			otherPrompt = promptName
		}
		if otherPrompt == promptName {
			rp.fail(CodeStaleEval, "%s references %s (createdAt %s), but %s for prompt %q is newer (createdAt %s)",
				route.label(), eval.label(), fmtTime(eval.created), other.label(), promptName, fmtTime(other.created))
		}
	}
	return rp.done()
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

type graph struct {
	nodes     map[string]*node
	malformed map[string]string // statement digest → why
	unbound   map[string]bool   // statement digest → not about the served digest
	excluded  int
}

func buildGraph(atts []verify.Attestation, subject digest.Digest) *graph {
	g := &graph{nodes: map[string]*node{}, malformed: map[string]string{}, unbound: map[string]bool{}}
	for i := range atts {
		a := &atts[i]
		k, ok := attest.KindOf(a.PredicateType)
		if !ok || k == attest.KindMBOM { // the MBOM is not a chain link
			continue
		}
		dg := a.Statement.String()
		if !attest.IsDigest(dg) {
			g.excluded++
			continue
		}
		if subject != "" && !subjectsContain(a.Subjects, subject) {
			g.unbound[dg] = true
			g.excluded++
			continue
		}
		pred, err := attest.DecodePredicate(a.PredicateType, a.Predicate)
		if err != nil {
			g.malformed[dg] = err.Error()
			continue
		}
		c, _ := attest.CommonOf(pred)
		created, _ := attest.ParseCreatedAt(c.CreatedAt) // validated by DecodePredicate
		if prev, ok := g.nodes[dg]; ok {
			// The same statement from several sources: keep the earliest
			// verified signing time.
			if !a.SignedAt.IsZero() && (prev.att.SignedAt.IsZero() || a.SignedAt.Before(prev.att.SignedAt)) {
				prev.att = a
			}
			continue
		}
		g.nodes[dg] = &node{att: a, dg: dg, kind: k, pred: pred, common: c, created: created}
	}
	return g
}

func subjectsContain(subs []verify.Subject, d digest.Digest) bool {
	if d.Algorithm() != digest.SHA256 {
		return false
	}
	for _, s := range subs {
		if s.Digest["sha256"] == d.Encoded() {
			return true
		}
	}
	return false
}

func (g *graph) excludedNote() string {
	if len(g.malformed) == 0 && g.excluded == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d malformed, %d not about the served digest)", len(g.malformed), g.excluded)
}

// ofKind returns the statements of a kind, oldest first (ties by signing
// time, then digest, so the order is deterministic).
func (g *graph) ofKind(k attest.Kind) []*node {
	var out []*node
	for _, n := range g.nodes {
		if n.kind == k {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.created.Equal(b.created) {
			return a.created.Before(b.created)
		}
		if !a.signedAt().Equal(b.signedAt()) {
			return a.signedAt().Before(b.signedAt())
		}
		return a.dg < b.dg
	})
	return out
}

// link resolves from's reference to a statement of kind want and checks the
// temporal order of the pair.
func (g *graph) link(rp *reporter, from *node, what, ref string, want attest.Kind, skew time.Duration) (*node, bool) {
	to, ok := g.nodes[ref]
	if !ok {
		switch {
		case g.malformed[ref] != "":
			rp.fail(CodeMalformed, "%s references %s %s whose predicate is invalid: %s", from.label(), what, ref, g.malformed[ref])
		case g.unbound[ref]:
			rp.fail(CodeSubject, "%s references %s %s which does not name the served digest as a subject", from.label(), what, ref)
		default:
			rp.fail(CodeMissingLink, "%s references %s %s which is not present or not signed by a trusted signer", from.label(), what, ref)
		}
		return nil, false
	}
	if to.kind != want {
		rp.fail(CodeWrongLinkType, "%s references %s which is a %s statement, expected %s", from.label(), ref, to.kind, want)
		return nil, false
	}
	ok = true
	if from.created.Before(to.created) {
		rp.fail(CodeTemporalOrder, "%s (createdAt %s) is older than the %s it references (createdAt %s)",
			from.label(), fmtTime(from.created), to.label(), fmtTime(to.created))
		ok = false
	}
	if fs, ts := from.signedAt(), to.signedAt(); !fs.IsZero() {
		if !ts.IsZero() && fs.Add(skew).Before(ts) {
			rp.fail(CodeTemporalOrder, "%s was signed at %s, before the %s it references was signed (%s)",
				from.label(), fmtTime(fs), to.label(), fmtTime(ts))
			ok = false
		} else if fs.Add(skew).Before(to.created) {
			rp.fail(CodeTemporalOrder, "%s was signed at %s, before the %s it references was created (%s)",
				from.label(), fmtTime(fs), to.label(), fmtTime(to.created))
			ok = false
		}
	}
	if ok {
		rp.pass("%s → %s", from.label(), to.label())
	}
	return to, true
}

// newest fails when a statement of the same kind and name as evaluated is
// newer than it: what is served changed after the eval.
func (g *graph) newest(rp *reporter, eval, evaluated *node) {
	for _, other := range g.ofKind(evaluated.kind) {
		if other != evaluated && other.common.Name == evaluated.common.Name && other.created.After(evaluated.created) {
			rp.fail(CodeSuperseded, "%s evaluated %s (createdAt %s), but %s %q is newer (createdAt %s) and was not evaluated",
				eval.label(), evaluated.label(), fmtTime(evaluated.created), other.label(), other.common.Name, fmtTime(other.created))
		}
	}
}
