package engine

import (
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/release"
)

// releaseChecks runs the LLM release checks a rule requires over the
// verified attestations: the provenance chain, the model bill of materials,
// and OpenSSF model signing when the rule requires that predicate.
func releaseChecks(rule *policy.Rule, dgst digest.Digest, m *Manifest, atts []verify.Attestation) []policy.Check {
	req := rule.Require
	if req == nil {
		return nil
	}
	var out []policy.Check
	if req.Chain != "" {
		out = append(out, reportCheck("chain", release.Chain(req.Chain, atts, release.ChainOptions{Subject: dgst})))
	}
	needOMS := requiresOMS(rule)
	if req.MBOM == policy.MBOMRequired || (req.MBOM == policy.MBOMOptional && hasPredicate(atts, attest.KindMBOM.PredicateType())) || needOMS {
		layers, err := release.LayersOf(m)
		if err != nil {
			out = append(out, policy.Check{Name: "mbom", Detail: "mbom: " + err.Error(), ExitCode: policy.ExitMalformed})
			return out
		}
		if req.MBOM != "" {
			out = append(out, reportCheck("mbom", release.CheckMBOM(atts, layers, release.MBOMOptions{Subject: dgst})))
		}
		if needOMS {
			out = append(out, reportCheck(policy.BindingCheck(attest.OpenSSFModelSigningType), release.CheckOpenSSF(atts, layers, release.OpenSSFOptions{})))
		}
	}
	return out
}

func hasPredicate(atts []verify.Attestation, pt string) bool {
	for _, a := range atts {
		if a.PredicateType == pt {
			return true
		}
	}
	return false
}

// reportCheck folds a release report into one policy check, with the exit
// code of its most serious failure: tampering (12) over malformed (14) over
// missing evidence (10) over unmet requirements (13).
func reportCheck(name string, r release.Report) policy.Check {
	c := policy.Check{Name: name, Passed: r.OK}
	if r.OK {
		c.Detail = name + ": ok"
		return c
	}
	c.Detail = strings.Join(r.Reasons(), "; ")
	c.ExitCode = policy.ReleaseExitCode(r)
	return c
}

// tensorExpectation is what the MBOM says one layer's tensors must be.
type tensorExpectation struct {
	atts    []verify.Attestation
	subject digest.Digest
	title   string
	// id scopes recorded results: the MBOM statements and the file.
	id string
}

// tensorExpectations are the MBOM tensor expectations of each titled layer
// of an artifact; the check runs when the layer streams through content
// inspection.
func tensorExpectations(dgst digest.Digest, m *Manifest, atts []verify.Attestation) map[digest.Digest]*tensorExpectation {
	layers, err := release.LayersOf(m)
	if err != nil {
		return nil
	}
	var stmts []string
	for _, a := range atts {
		if a.PredicateType == attest.KindMBOM.PredicateType() {
			stmts = append(stmts, a.Statement.String())
		}
	}
	sort.Strings(stmts)
	out := map[digest.Digest]*tensorExpectation{}
	for _, l := range layers {
		if l.Title == "" {
			continue
		}
		id := digest.FromString(strings.Join(stmts, ",") + "|" + l.Title).Encoded()[:24]
		out[digest.Digest(l.Digest)] = &tensorExpectation{atts: atts, subject: dgst, title: l.Title, id: "mbom-" + id}
	}
	return out
}

// check compares the tensors content inspection found in a layer with the
// MBOM; a difference is a content finding.
func (e *tensorExpectation) check(found []content.TensorInfo) *content.Finding {
	ts := make([]attest.Tensor, 0, len(found))
	for _, t := range found {
		shape := make([]int64, len(t.Shape))
		for i, d := range t.Shape {
			shape[i] = int64(d)
		}
		ts = append(ts, attest.Tensor{Name: t.Name, DType: t.DType, Shape: shape})
	}
	r := release.CheckMBOMTensors(e.atts, e.title, ts, release.MBOMOptions{Subject: e.subject})
	if r.OK {
		return nil
	}
	return &content.Finding{Format: formatMBOM, Offset: -1, Reason: strings.Join(r.Reasons(), "; ")}
}

// formatMBOM marks findings of an MBOM's tensor expectations (scoped to the
// expectation, unlike format findings).
const formatMBOM = "mbom"

// expectingInspector runs what a layer's inspection is judged by besides
// its bytes when the inspection completes: the MBOM's tensor expectations
// (exp, when the artifact has a verified MBOM) and the rule's
// content.references requirement over the load-time references of its
// configs (against the same MBOM's base model names).
type expectingInspector struct {
	content.Inspector
	exp  *tensorExpectation // nil: no verified MBOM
	refs content.ReferenceOptions
	// report, when set, is told the references of a layer that passed.
	report func([]content.Reference)
	// skipTensors leaves the tensor expectation out (checked already
	// over the same bytes).
	skipTensors bool
}

// Releasable passes the inspector's through (content.Releasable), except
// while an MBOM tensor expectation is still to be judged at Close: then
// nothing is released before HeaderDone.
func (e expectingInspector) Releasable() int64 {
	if e.exp != nil && !e.skipTensors {
		return 0
	}
	return content.ReleasableOf(e.Inspector)
}

// Format is the format the wrapped inspector detected.
func (e expectingInspector) Format() string { return content.FormatOf(e.Inspector) }

func (e expectingInspector) Close() error {
	if err := e.Inspector.Close(); err != nil {
		return err
	}
	if tl, ok := e.Inspector.(content.TensorLister); ok && e.exp != nil && !e.skipTensors {
		if f := e.exp.check(tl.Tensors()); f != nil {
			return f
		}
	}
	rl, ok := e.Inspector.(content.ReferenceLister)
	if !ok {
		return nil
	}
	refs := rl.References()
	if len(refs) == 0 {
		return nil
	}
	var names []string
	mbom := false
	if e.exp != nil {
		var n int
		names, n = release.MBOMBaseModelNames(e.exp.atts, release.MBOMOptions{Subject: e.exp.subject})
		mbom = n > 0
	}
	if f := content.CheckReferences(e.refs, refs, mbom, names); f != nil {
		return f
	}
	if e.report != nil {
		e.report(refs)
	}
	return nil
}

// noMBOMScope scopes what was concluded about a layer judged without an
// MBOM expectation under content.references.require: mbom (the artifact
// has no verified MBOM, or the layer no title): a refusal there depends on
// the missing MBOM, so it must not deny the same bytes in a release whose
// MBOM names the base model, and a pass judged against some MBOM must not
// count for a pull that has none.
const noMBOMScope = "no-mbom"

// layerScopes are the scopes a layer's inspection results are recorded
// and read in: the rule's ("", format checks), and the MBOM expectation's
// (exp) or, under content.references.require: mbom without one,
// noMBOMScope. The last is where findings that depend on the MBOM go
// (findingScope).
func layerScopes(exp *tensorExpectation, refs content.ReferenceOptions) []string {
	switch {
	case exp != nil:
		return []string{"", exp.id}
	case refs.Require == content.RequireMBOM:
		return []string{"", noMBOMScope}
	}
	return []string{""}
}

// findingScope is the scope a finding is recorded in: an MBOM tensor
// mismatch or a content.references refusal in the MBOM expectation's
// scope (or noMBOMScope), since the requirement may compare with that
// MBOM (another release of the same blob may name another base model, or
// have one); every other finding in the rule's.
func findingScope(f *content.Finding, scopes []string) string {
	if (f.Format == formatMBOM || f.Format == content.FormatReferences) && len(scopes) > 1 {
		return scopes[len(scopes)-1]
	}
	return ""
}

// requiresOMS reports whether a rule requires OpenSSF model signing, whose
// statements name the model's files rather than the OCI digest.
func requiresOMS(rule *policy.Rule) bool {
	if rule.Require == nil {
		return false
	}
	for _, a := range rule.Require.Attestations {
		if a.PredicateType == attest.OpenSSFModelSigningType {
			return true
		}
	}
	return false
}
