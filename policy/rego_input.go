package policy

import (
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// RegoInput is the input document of a rule's Rego query as JSON values
// (map[string]any, []any, string, json.Number, bool, nil): everything the
// rule knows about the digest being decided (docs/policy.md, "Rego input",
// documents the schema). Only evidence that counts for the decision is
// listed: verified signatures over the digest (or an index covering it),
// verified attestations whose statement subject names it.
func (r *Rule) RegoInput(in *Input) map[string]any {
	v, err := ast.JSON(r.regoInput(in, nil, r.signalsDocument(in)))
	if err != nil {
		return nil
	}
	m, _ := v.(map[string]any)
	return m
}

type regoKV = [2]*ast.Term

// regoKeys are the input document's keys (and common values) as terms
// made once: terms are immutable, and OPA shares its own the same way.
var regoKeys = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"subject", "repository", "upstream", "repo", "digest", "tag", "rule", "name", "mode",
		"manifest", "annotations", "config", "model", "signatures", "attestations", "evidenceFailures", "checks",
		"contentFindings", "signals", "signer", "kind", "identity", "source", "evidence", "signedAt",
		"predicateType", "predicate", "statementType", "subjects", "reason", "passed", "detail", "sha256",
		string(TrustKey), string(TrustIdentity), "", "enforce", "audit", "cosign-signature", "cosign-attestation",
		"bundle-referrer", "https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func item(k string, v *ast.Term) regoKV { return regoKV{str(k), v} }
func str(s string) *ast.Term {
	if t, ok := regoKeys[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

// jsonTerm is a decoded JSON value as a term (null when it cannot be one).
func jsonTerm(x any) *ast.Term {
	v, err := ast.InterfaceToValue(x)
	if err != nil {
		return ast.NullTerm()
	}
	return ast.NewTerm(v)
}

// regoInput builds the input document with the top-level keys that keys
// holds expensive to build (manifest, annotations, attestations) only when
// the modules read them (every key when keys is nil). The input is built as
// OPA values directly: no intermediate Go maps, no JSON round trip.
// signalDoc is the signals document the evaluation already built for the
// conditions (input.signals), not built again.
func (r *Rule) regoInput(in *Input, keys map[string]bool, signalDoc map[string]any) ast.Value {
	want := func(k string) bool { return keys == nil || keys[k] }
	upstream, repo, _ := strings.Cut(in.Repository, "/")
	doc := []regoKV{
		item("subject", ast.ObjectTerm(
			item("repository", str(in.Repository)),
			item("upstream", str(upstream)),
			item("repo", str(repo)),
			item("digest", str(string(in.Digest))),
			item("tag", str(in.Tag)))),
		item("rule", ast.ObjectTerm(item("name", str(r.Name)), item("mode", str(string(r.Mode))))),
	}
	// Artifact facts, as require.conditions read them (Input.Artifact).
	manifest, annotations, config, model := ast.NullTerm(), ast.ObjectTerm(), ast.NullTerm(), ast.NullTerm()
	if a := in.Artifact; a != nil {
		if want("manifest") && a.Manifest != nil {
			manifest = jsonTerm(a.Manifest)
		}
		if want("annotations") {
			annotations = jsonTerm(a.Annotations)
		}
		if want("config") || want("model") {
			now := in.Now
			if now.IsZero() {
				now = time.Now()
			}
			d := a.Document(now)
			if d[VarConfig] != nil {
				config = jsonTerm(jsonTimes(d[VarConfig]))
			}
			if d[VarModel] != nil {
				model = jsonTerm(jsonTimes(d[VarModel]))
			}
		}
	}
	doc = append(doc, item("manifest", manifest), item("annotations", annotations),
		item("config", config), item("model", model))

	var sigs, atts, failures []*ast.Term
	for i := range in.Evidence {
		res := &in.Evidence[i]
		if res.Subject != in.Digest && !containsDigest(in.Parents, res.Subject) {
			continue
		}
		for _, f := range res.Failures {
			failures = append(failures, ast.ObjectTerm(item("kind", str(string(f.Kind))), item("source", str(f.Source)),
				item("reason", str(f.Reason)), item("evidence", str(string(f.Evidence)))))
		}
		for j := range res.Signatures {
			s := &res.Signatures[j]
			if s.Subject != res.Subject {
				continue
			}
			sigs = append(sigs, ast.ObjectTerm(item("signer", str(s.Signer)), item("kind", str(string(r.kind(s.Signer)))),
				item("identity", str(s.Identity)), item("source", str(s.Source)), item("subject", str(string(s.Subject))),
				item("evidence", str(string(s.Evidence))), item("signedAt", regoTime(s.SignedAt))))
		}
		if !want("attestations") {
			continue
		}
		for j := range res.Attestations {
			a := &res.Attestations[j]
			if !r.attestationCounts(in, res, a) {
				continue
			}
			pred, err := a.PredicateValue()
			if err != nil {
				continue
			}
			subjects := make([]*ast.Term, 0, len(a.Subjects))
			for _, s := range a.Subjects {
				dm := make([]regoKV, 0, len(s.Digest))
				for k, v := range s.Digest {
					dm = append(dm, item(k, str(v)))
				}
				subjects = append(subjects, ast.ObjectTerm(item("name", str(s.Name)), item("digest", ast.ObjectTerm(dm...))))
			}
			atts = append(atts, ast.ObjectTerm(item("predicateType", str(a.PredicateType)), item("predicate", jsonTerm(pred)),
				item("signer", str(a.Signer)), item("kind", str(string(r.kind(a.Signer)))), item("identity", str(a.Identity)),
				item("statementType", str(a.StatementType)), item("subjects", ast.ArrayTerm(subjects...)),
				item("source", str(a.Source)), item("evidence", str(string(a.Evidence))), item("signedAt", regoTime(a.SignedAt))))
		}
	}
	doc = append(doc, item("signatures", ast.ArrayTerm(sigs...)), item("attestations", ast.ArrayTerm(atts...)),
		item("evidenceFailures", ast.ArrayTerm(failures...)))

	checks := make([]regoKV, 0, len(in.Checks))
	for _, c := range in.Checks {
		checks = append(checks, item(c.Name, ast.ObjectTerm(item("passed", ast.BooleanTerm(c.Passed)), item("detail", str(c.Detail)))))
	}
	findings := make([]*ast.Term, 0, len(in.ContentFindings))
	for _, f := range in.ContentFindings {
		findings = append(findings, str(f))
	}
	signals := ast.ObjectTerm()
	if want("signals") {
		signals = jsonTerm(signalDoc)
	}
	doc = append(doc, item("checks", ast.ObjectTerm(checks...)), item("contentFindings", ast.ArrayTerm(findings...)),
		item("signals", signals))
	return ast.NewObject(doc...)
}

// attestationCounts reports whether a verified attestation speaks about the
// decided digest as an attestation requirement would count it: its statement
// subject names the evidence subject (or, bound by content, the caller's
// binding check passed) and pullgate's own predicates decode strictly.
func (r *Rule) attestationCounts(in *Input, res *verify.Result, a *verify.Attestation) bool {
	if a.DetachedSubject {
		bound := false
		for _, c := range in.Checks {
			bound = bound || c.Name == BindingCheck(a.PredicateType) && c.Passed
		}
		if !bound {
			return false
		}
	} else if !subjectCovers(a.Subjects, res.Subject) {
		return false
	}
	if _, own := attest.KindOf(a.PredicateType); own {
		if _, err := attest.DecodePredicate(a.PredicateType, a.Predicate); err != nil {
			return false
		}
	}
	return true
}

// jsonTimes replaces the times of a conditions document (time.Time, as CEL
// reads them) by RFC 3339 strings, recursively, so that it is JSON.
func jsonTimes(v any) any {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonTimes(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonTimes(e)
		}
		return out
	}
	return v
}

// regoTime is an RFC 3339 time, or null when unknown.
func regoTime(t time.Time) *ast.Term {
	if t.IsZero() {
		return ast.NullTerm()
	}
	return str(t.UTC().Format(time.RFC3339))
}
