package policy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/verify"
)

// k of n signers (issue 16): `signatures` and `signedBy` take a list of trust
// names (any one of them) or {anyOf: [names], min: k} / {allOf: [names]}. A
// k-of-n requirement counts distinct signers: each counted trust name needs
// its own public key or certificate identity, so one key listed under two
// names, or one certificate matching two identity entries, counts once.

const signersFix = "write a list of trust names, e.g. [release], or {anyOf: [ci-a, ci-b, release], min: 2}, or {allOf: [ci-a, release]}"

// signers reads a signer set and returns the names and how many distinct
// signers of them are required (1 for a list).
func (l *loader) signers(f field, what string, t *Trust, emptyFix string) ([]string, int, bool) {
	n := f.val
	switch n.Kind {
	case yaml.SequenceNode:
		names, _, ok := l.signerNames(f, what, t, emptyFix)
		return names, 1, ok
	case yaml.MappingNode:
	default:
		l.errAt(n, signersFix, "%s must be a list of trust names or a mapping with anyOf or allOf, got %s", what, kindName(n))
		return nil, 0, false
	}
	fs, ok := l.mapping(n, what, "anyOf", "allOf", "min")
	if !ok {
		return nil, 0, false
	}
	af, hasAny := fs["anyOf"]
	lf, hasAll := fs["allOf"]
	mf, hasMin := fs["min"]
	switch {
	case hasAny && hasAll:
		l.errAt(lf.key, "keep one: anyOf with min counts k of the names, allOf needs every one", "%s: anyOf and allOf cannot both be given", what)
		return nil, 0, false
	case !hasAny && !hasAll:
		if len(fs)*2 == len(n.Content) { // else an unknown key was reported
			l.errAt(n, signersFix, "%s needs anyOf (with min) or allOf", what)
		}
		return nil, 0, false
	case hasAll && hasMin:
		l.errAt(mf.key, "remove min (allOf needs every signer), or write anyOf with min", "%s: min applies to anyOf, not allOf", what)
		return nil, 0, false
	}
	if hasAll {
		names, nodes, ok := l.signerNames(lf, what+".allOf", t, emptyFix)
		if ok {
			ok = l.distinctKeys(t, names, nodes, what+".allOf")
		}
		return names, len(names), ok
	}
	names, nodes, ok := l.signerNames(af, what+".anyOf", t, emptyFix)
	k := 1
	if hasMin {
		v := mf.val
		i, err := strconv.Atoi(v.Value)
		switch {
		case v.Kind != yaml.ScalarNode || v.Tag != "!!int" || err != nil:
			l.errAt(v, "write the number of distinct signers required, e.g. min: 2", "%s.min must be a whole number, got %s", what, kindName(v))
			return names, 0, false
		case i < 1:
			l.errAt(v, "require at least 1 signer (min: 1 is the same as a plain list)", "%s.min %d is less than 1", what, i)
			return names, 0, false
		case ok && i > len(names):
			l.errAt(v, fmt.Sprintf("lower min to at most %d, or list more signers in anyOf", len(names)),
				"%s.min %d is more than the %d signer(s) in anyOf: it can never be met", what, i, len(names))
			return names, 0, false
		}
		k = i
	}
	if ok && k > 1 {
		ok = l.distinctKeys(t, names, nodes, what+".anyOf")
	}
	return names, k, ok
}

// signerNames reads a non-empty list of distinct, known trust names.
func (l *loader) signerNames(f field, what string, t *Trust, emptyFix string) ([]string, []*yaml.Node, bool) {
	names, nodes, ok := l.strList(f, what, "list trust key or identity names, e.g. [release]")
	before := len(l.diags)
	l.trustNames(t, names, nodes, what)
	if f.val.Kind == yaml.SequenceNode && len(f.val.Content) == 0 {
		l.errAt(f.val, emptyFix, "%s is empty", what)
		ok = false
	}
	return names, nodes, ok && len(l.diags) == before
}

// distinctKeys refuses two names for one public key in a k-of-n list: they
// would count as one signer, which the operator listing both did not mean.
func (l *loader) distinctKeys(t *Trust, names []string, nodes []*yaml.Node, what string) bool {
	ok := true
	first := map[string]string{}
	for i, n := range names {
		id := t.keyIDs[n]
		if id == "" {
			continue
		}
		if prev, dup := first[id]; dup {
			l.errAt(nodes[i], "list each key once, or give "+n+" its own key: two names for one key count as one signer",
				"%s: key %q is the same public key as %q", what, n, prev)
			ok = false
			continue
		}
		first[id] = n
	}
	return ok
}

// kOfN is the canonical form of a Min field: 0 for "any one".
func kOfN(min int) int {
	if min <= 1 {
		return 0
	}
	return min
}

// signerCand is one verified signature, or one passing attestation, by a
// trust name a k-of-n requirement lists.
type signerCand struct {
	name      string
	principal string // who signed: the key's fingerprint or the certificate identity
	detail    string
	evidence  digest.Digest
}

// principal names the party behind a verified signer match: a key by its
// public key fingerprint, a keyless signer by its certificate's issuer and
// subject.
func (r *Rule) principal(name, identity string) string {
	if r.kind(name) == TrustKey {
		if r.trust != nil && r.trust.keyIDs[name] != "" {
			return "key:" + r.trust.keyIDs[name]
		}
		return "key-name:" + name
	}
	if identity != "" {
		return "identity:" + identity
	}
	return "name:" + name
}

// matchSigners assigns distinct principals to names (a maximum bipartite
// matching, so the count is the largest number of names that distinct
// signers cover) and returns, per name, the index into cands of the
// candidate counted for it, or -1.
func matchSigners(names []string, cands []signerCand) []int {
	pIndex := map[string]int{}
	var pFirst [][]int // per principal: first candidate index per name index
	adj := make([][]int, len(names))
	for ci, c := range cands {
		ni := -1
		for i, n := range names {
			if n == c.name {
				ni = i
				break
			}
		}
		if ni < 0 {
			continue
		}
		p, ok := pIndex[c.principal]
		if !ok {
			p = len(pFirst)
			pIndex[c.principal] = p
			pFirst = append(pFirst, make([]int, len(names)))
			for i := range pFirst[p] {
				pFirst[p][i] = -1
			}
		}
		if pFirst[p][ni] < 0 {
			pFirst[p][ni] = ci
			adj[ni] = append(adj[ni], p)
		}
	}
	owner := make([]int, len(pFirst))
	for i := range owner {
		owner[i] = -1
	}
	var try func(ni int, seen []bool) bool
	try = func(ni int, seen []bool) bool {
		for _, p := range adj[ni] {
			if seen[p] {
				continue
			}
			seen[p] = true
			if owner[p] < 0 || try(owner[p], seen) {
				owner[p] = ni
				return true
			}
		}
		return false
	}
	for ni := range names {
		try(ni, make([]bool, len(pFirst)))
	}
	got := make([]int, len(names))
	for i := range got {
		got[i] = -1
	}
	for p, ni := range owner {
		if ni >= 0 {
			got[ni] = pFirst[p][ni]
		}
	}
	return got
}

// signerTally is the outcome of counting a k-of-n requirement.
type signerTally struct {
	count   int
	summary string // "1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"
}

// tally counts distinct signers and renders who signed and who is missing.
// A name whose only signer already counts for another name is reported as
// "(same signer as <other>)".
func tally(names []string, min int, cands []signerCand, got []int) signerTally {
	var signed, missing []string
	owner := map[string]string{} // principal -> name it counted for
	for i, n := range names {
		if got[i] >= 0 {
			signed = append(signed, n)
			owner[cands[got[i]].principal] = n
		}
	}
	for i, n := range names {
		if got[i] >= 0 {
			continue
		}
		m := n
		for _, c := range cands {
			if c.name == n && owner[c.principal] != "" {
				m += " (same signer as " + owner[c.principal] + ")"
				break
			}
		}
		missing = append(missing, m)
	}
	t := signerTally{count: len(signed)}
	s := "none"
	if len(signed) > 0 {
		s = strings.Join(signed, ", ")
	}
	t.summary = fmt.Sprintf("%d of %d required signers verified (signed: %s", len(signed), min, s)
	if len(signed) < min && len(missing) > 0 {
		t.summary += "; missing: " + strings.Join(missing, ", ")
	}
	t.summary += ")"
	return t
}

// signersKOfN decides `signatures: {anyOf: names, min: k}` with k > 1.
func (e *evaluation) signersKOfN(names []string, min int) {
	var cands []signerCand
	var others []string
	for res, s := range e.signaturesOn {
		if !containsString(names, s.Signer) {
			others = append(others, s.Signer)
			continue
		}
		cands = append(cands, signerCand{name: s.Signer, principal: e.rule.principal(s.Signer, s.Identity),
			detail: e.signatureDetail(res, s), evidence: s.Evidence})
	}
	got := matchSigners(names, cands)
	t := tally(names, min, cands, got)
	e.candidateChecks(checkSignature, names, cands, got)
	if t.count >= min {
		e.d.Checks = append(e.d.Checks, Check{Name: checkSignature, Passed: true, Detail: "signatures: " + t.summary})
		return
	}
	detail := "signatures: " + t.summary
	if len(others) > 0 {
		if t.count == 0 {
			e.untrusted = true
		}
		detail += "; also signed by " + strings.Join(dedupe(others), ", ") + ", which this rule does not accept"
	}
	e.d.Checks = append(e.d.Checks, Check{Name: checkSignature, Detail: detail})
	e.unmet("rule %s: signatures: %s%s", e.rule.Name, t.summary, e.malformedNote())
}

// attestersKOfN decides an attestation requirement whose signedBy is
// {anyOf, min: k} with k > 1: k distinct signers must each have signed an
// attestation of the type that passes the condition. condFalse and condErr name the
// signers whose attestations failed or errored the condition (errs holds
// the error of each condErr entry).
func (e *evaluation) attestersKOfN(req *AttestationRequirement, what string, cands []signerCand, others []string, condFalse, condErr []string, errs []error) {
	got := matchSigners(req.SignedBy, cands)
	t := tally(req.SignedBy, req.SignedByMin, cands, got)
	e.candidateChecks(checkAttestation, req.SignedBy, cands, got)
	if t.count >= req.SignedByMin {
		e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation, Passed: true, Detail: what + ": " + t.summary})
		return
	}
	reason := t.summary
	signed := map[string]bool{}
	for i, ci := range got {
		if ci >= 0 {
			signed[req.SignedBy[i]] = true
		}
	}
	if f := unsigned(condFalse, signed); len(f) > 0 {
		reason += fmt.Sprintf("; condition %s is false for %s", req.Condition, strings.Join(f, ", "))
	}
	if f := unsigned(condErr, signed); len(f) > 0 {
		var first error
		for i, n := range condErr {
			if n == f[0] {
				first = errs[i]
				break
			}
		}
		reason += fmt.Sprintf("; condition error for %s: %v", strings.Join(f, ", "), first)
	}
	detail := what + ": " + reason
	if len(others) > 0 {
		if len(cands) == 0 && len(condFalse) == 0 && len(condErr) == 0 {
			e.untrusted = true
		}
		detail += "; also signed by " + strings.Join(dedupe(others), ", ") + ", which this requirement does not accept"
	}
	e.d.Checks = append(e.d.Checks, Check{Name: checkAttestation, Detail: detail})
	e.unmet("rule %s: %s: %s%s", e.rule.Name, what, reason, e.malformedNote())
}

// candidateChecks records every verified piece of evidence by a listed
// signer, saying which did not count and why (its signer already counted,
// or it is the same key or certificate identity as a counted name).
func (e *evaluation) candidateChecks(name string, names []string, cands []signerCand, got []int) {
	owner := map[string]string{}
	counted := map[int]bool{}
	for i, ci := range got {
		if ci >= 0 {
			owner[cands[ci].principal] = names[i]
			counted[ci] = true
		}
	}
	for ci, c := range cands {
		detail := c.detail
		switch {
		case counted[ci]:
		case owner[c.principal] != "" && owner[c.principal] != c.name:
			detail += " (not counted: same signer as " + owner[c.principal] + ")"
		default:
			detail += " (not counted: " + c.name + " counts once)"
		}
		e.d.Checks = append(e.d.Checks, Check{Name: name, Passed: true, Detail: detail, Evidence: evidenceOf(c.evidence)})
	}
}

// unsigned lists the distinct names not in signed, in order.
func unsigned(names []string, signed map[string]bool) []string {
	var out []string
	for _, n := range dedupe(names) {
		if !signed[n] {
			out = append(out, n)
		}
	}
	return out
}

func dedupe(list []string) []string {
	var out []string
	for _, s := range list {
		if !containsString(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// signaturesOn yields every verified signature of the evidence that is over
// its result's subject (signatureOn records the others), in order; it is
// ranged over and stops when the loop does.
func (e *evaluation) signaturesOn(yield func(*verify.Result, *verify.Signature) bool) {
	for _, res := range e.results {
		for i := range res.Signatures {
			s := &res.Signatures[i]
			if e.signatureOn(res, s) && !yield(res, s) {
				return
			}
		}
	}
}

// signatureOn reports whether a verified signature is over its result's
// subject; one that is not is recorded and ignored.
func (e *evaluation) signatureOn(res *verify.Result, s *verify.Signature) bool {
	if s.Subject == res.Subject {
		return true
	}
	e.subjectBad = true
	e.d.Checks = append(e.d.Checks, Check{Name: checkSignature, Detail: fmt.Sprintf("signature by %s (%s) is over %s, not %s: ignored", s.Signer, s.Source, s.Subject, res.Subject), Evidence: evidenceOf(s.Evidence)})
	return false
}

// signatureDetail describes a counted signature.
func (e *evaluation) signatureDetail(res *verify.Result, s *verify.Signature) string {
	detail := fmt.Sprintf("signed by %s %s (%s)", e.rule.kind(s.Signer), s.Signer, s.Source)
	if s.Identity != "" {
		detail += " as " + s.Identity
	}
	if res.Subject != e.in.Digest {
		detail += " on index " + string(res.Subject)
	}
	return detail
}
