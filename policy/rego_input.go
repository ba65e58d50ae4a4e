package policy

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
)

// RegoInput is the input document of a rule's Rego query: everything the
// rule knows about the digest being decided (docs/policy.md, "Rego input",
// documents the schema). Only evidence that counts for the decision is
// listed: verified signatures over the digest (or an index covering it),
// verified attestations whose statement subject names it. Values are plain
// JSON types (map[string]any, []any, string, float64, bool, nil).
func (r *Rule) RegoInput(in *Input) map[string]any {
	upstream, repo, _ := strings.Cut(in.Repository, "/")
	doc := map[string]any{
		"subject": map[string]any{
			"repository": in.Repository,
			"upstream":   upstream,
			"repo":       repo,
			"digest":     string(in.Digest),
			"tag":        in.Tag,
		},
		"rule": map[string]any{"name": r.Name, "mode": string(r.Mode)},
	}
	// Artifact facts. The manifest is the verified manifest's JSON; config
	// and model are filled by the artifact facts of require.conditions
	// when the caller provides them (null until then).
	var manifest any
	annotations := map[string]any{}
	if len(in.Manifest) > 0 && json.Unmarshal(in.Manifest, &manifest) == nil {
		if m, ok := manifest.(map[string]any); ok {
			if a, ok := m["annotations"].(map[string]any); ok {
				annotations = a
			}
		}
	}
	doc["manifest"] = manifest
	doc["annotations"] = annotations
	doc["config"] = nil
	doc["model"] = nil

	sigs := []any{}
	atts := []any{}
	failures := []any{}
	for i := range in.Evidence {
		res := &in.Evidence[i]
		if res.Subject != in.Digest && !containsDigest(in.Parents, res.Subject) {
			continue
		}
		for _, f := range res.Failures {
			failures = append(failures, map[string]any{"kind": string(f.Kind), "source": f.Source,
				"reason": f.Reason, "evidence": string(f.Evidence)})
		}
		for j := range res.Signatures {
			s := &res.Signatures[j]
			if s.Subject != res.Subject {
				continue
			}
			sigs = append(sigs, map[string]any{"signer": s.Signer, "kind": string(r.kind(s.Signer)),
				"identity": s.Identity, "source": s.Source, "subject": string(s.Subject),
				"evidence": string(s.Evidence), "signedAt": regoTime(s.SignedAt)})
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
			subjects := make([]any, 0, len(a.Subjects))
			for _, s := range a.Subjects {
				dm := make(map[string]any, len(s.Digest))
				for k, v := range s.Digest {
					dm[k] = v
				}
				subjects = append(subjects, map[string]any{"name": s.Name, "digest": dm})
			}
			atts = append(atts, map[string]any{"predicateType": a.PredicateType, "predicate": pred,
				"signer": a.Signer, "kind": string(r.kind(a.Signer)), "identity": a.Identity,
				"statementType": a.StatementType, "subjects": subjects, "source": a.Source,
				"evidence": string(a.Evidence), "signedAt": regoTime(a.SignedAt)})
		}
	}
	doc["signatures"] = sigs
	doc["attestations"] = atts
	doc["evidenceFailures"] = failures

	checks := map[string]any{}
	for _, c := range in.Checks {
		checks[c.Name] = map[string]any{"passed": c.Passed, "detail": c.Detail}
	}
	doc["checks"] = checks
	findings := make([]any, 0, len(in.ContentFindings))
	for _, f := range in.ContentFindings {
		findings = append(findings, f)
	}
	doc["contentFindings"] = findings
	doc["signals"] = map[string]any{}
	return doc
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

// regoTime is an RFC 3339 time, or nil when unknown.
func regoTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}
