package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/verify/content"
)

// RuleVerdict is what the matching rule decides without looking at the
// artifact: no rule (fail closed), deny, allow. ok is false for a verify
// rule, which needs the artifact.
func (q *Query) RuleVerdict() (Verdict, bool) {
	if !q.ruled {
		// The same for every decision of the query (and the queries it
		// derives: same policy, rule and repository): evaluated once.
		q.ruleV, q.ruleOK = ruleVerdict(q.pol, q.rule, q.repository())
		q.ruled = true
	}
	return q.ruleV, q.ruleOK
}

// Resolve turns the subject's reference into a digest: a digest as it is,
// a tag through the upstream (cached for the tag TTL), or, when the
// upstream is unreachable, the tag's last resolution within the offline
// grace.
func (s *Engine) Resolve(q *Query) (digest.Digest, error) { return s.resolve(q) }

// AdmitManifest returns manifest dgst of the query's repository, verified
// (its bytes are m.Raw), and the decision about it (cached: from the
// verdict cache). A rule that decides without the artifact (none, deny)
// decides before anything is fetched. An allowed manifest's blobs and
// children are granted in the repository. err is an upstream or store
// failure: nothing was decided.
func (s *Engine) AdmitManifest(q *Query, dgst digest.Digest) (m *Manifest, v Verdict, cached bool, err error) {
	if v, ok := q.RuleVerdict(); ok && !v.Allowed {
		return nil, v, false, nil
	}
	m, err = s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, dgst)
	if err != nil {
		return nil, Verdict{}, false, err
	}
	s.persistLinks(q.ctx(), q.sub.Upstream, q.sub.Repo, dgst, m)
	v, cached = s.decideManifest(q, dgst, m)
	if v.Allowed {
		s.grant(q, dgst, m, v)
	}
	return m, v, cached, nil
}

// Decision is the result of Decide: the verdict about one reference.
type Decision struct {
	Verdict
	Repository string        `json:"repository"`
	Reference  string        `json:"reference"`
	Digest     digest.Digest `json:"digest,omitempty"`
	MediaType  string        `json:"mediaType,omitempty"`
}

// Decide runs the decision of a pull (tag resolution, manifest
// verification, evidence, policy) of sub, without serving or granting
// anything. `pullgate verify` uses it.
func (s *Engine) Decide(ctx context.Context, sub Subject) (Decision, error) {
	q, ok := s.Query(ctx, sub)
	if !ok {
		return Decision{}, fmt.Errorf("unknown upstream %q", sub.Upstream)
	}
	d := Decision{Repository: sub.Repository(), Reference: sub.Reference()}
	if v, ok := q.RuleVerdict(); ok && !v.Allowed {
		d.Verdict = v
		return d, nil
	}
	dgst, err := s.resolve(q)
	if err != nil {
		return d, err
	}
	m, err := s.verifiedManifest(ctx, q.up, sub.Repo, dgst)
	if err != nil {
		return d, err
	}
	s.persistLinks(ctx, sub.Upstream, sub.Repo, dgst, m)
	d.Verdict, _ = s.decideManifest(q, dgst, m)
	d.Digest, d.MediaType = dgst, m.MediaType
	if m.IsIndex() && d.Allowed && !d.Evidence && q.rule.HasConditions() {
		if d.Verdict, err = s.decidePlatforms(q, m, d.Verdict, 0); err != nil {
			return d, err
		}
	}
	return d, nil
}

// decidePlatforms decides, for Decide of an image index allowed under a
// rule with require.conditions, every manifest the index lists:
// conditions apply to platform manifests, not to the index, and a client
// pulls one of them. The index's verdict v stands only if each is
// allowed; a denied one denies with its reasons, naming its platform
// (`rule <r>: platform linux/arm64 sha256:…: condition … is false`).
// Attestation manifests (platform unknown/unknown, as buildx attaches
// them) are not run by any runtime and are skipped. A nested index is
// decided the same way, up to maxParentDepth levels. err is an upstream
// or store failure: nothing was decided.
func (s *Engine) decidePlatforms(q *Query, idx *Manifest, v Verdict, depth int) (Verdict, error) {
	out := v
	out.Checks = slices.Clone(v.Checks)
	var denied, wouldDeny []string
	for _, c := range idx.Manifests {
		label := platformLabel(c.Platform) + " " + c.Digest.String()
		if p := c.Platform; p != nil && p.OS == "unknown" && p.Architecture == "unknown" {
			out.Checks = append(out.Checks, audit.Check{Name: "platform", Passed: true, Detail: label + ": not decided (unknown/unknown: an attestation manifest, not run)"})
			continue
		}
		cm, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, c.Digest)
		if err != nil {
			return v, fmt.Errorf("platform manifest %s: %w", label, err)
		}
		s.persistLinks(q.ctx(), q.sub.Upstream, q.sub.Repo, c.Digest, cm)
		cq := q.About(c.Digest)
		cv, _ := s.decideManifest(cq, c.Digest, cm)
		if cm.IsIndex() && cv.Allowed && !cv.Evidence {
			if depth+1 >= maxParentDepth {
				cv = Verdict{Rule: v.Rule, Revision: v.Revision, ExitCode: policy.ExitOther,
					Reasons: []string{fmt.Sprintf("rule %s: indexes nested deeper than %d levels", v.Rule, maxParentDepth)}}
			} else if cv, err = s.decidePlatforms(cq, cm, cv, depth+1); err != nil {
				return v, err
			}
		}
		switch {
		case !cv.Allowed:
			out.Checks = append(out.Checks, audit.Check{Name: "platform", Detail: label + ": denied"})
			denied = append(denied, platformReasons(cv, label)...)
			if out.Allowed {
				out.Allowed, out.ExitCode = false, cv.ExitCode
			}
		case cv.WouldDeny:
			out.Checks = append(out.Checks, audit.Check{Name: "platform", Detail: label + ": would be denied (audit mode)"})
			wouldDeny = append(wouldDeny, platformReasons(cv, label)...)
			if !out.WouldDeny {
				out.WouldDeny, out.ExitCode = true, cv.ExitCode
			}
		default:
			out.Checks = append(out.Checks, audit.Check{Name: "platform", Passed: true, Detail: label + ": allowed"})
		}
	}
	switch {
	case len(denied) > 0:
		if out.ExitCode == 0 {
			out.ExitCode = policy.ExitOther
		}
		out.Reasons = denied
	case len(wouldDeny) > 0:
		out.Reasons = append(slices.Clone(v.Reasons), wouldDeny...)
	}
	return out, nil
}

// platformReasons names the platform manifest in each of its verdict's
// reasons: "rule r: x" becomes "rule r: platform <label>: x".
func platformReasons(v Verdict, label string) []string {
	out := make([]string, 0, len(v.Reasons))
	for _, r := range v.Reasons {
		if rest, ok := strings.CutPrefix(r, "rule "+v.Rule+": "); ok {
			out = append(out, fmt.Sprintf("rule %s: platform %s: %s", v.Rule, label, rest))
		} else {
			out = append(out, fmt.Sprintf("platform %s: %s", label, r))
		}
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("rule %s: platform %s: denied", v.Rule, label))
	}
	return out
}

// platformLabel is "os/architecture[/variant]", or "(no platform)".
func platformLabel(p *ocispec.Platform) string {
	if p == nil {
		return "(no platform)"
	}
	l := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		l += "/" + p.Variant
	}
	return l
}

// AdmitBlob decides a request for the blob q.Subject().Digest: the grant
// of an allowed manifest in the repository that lets it out (ok), or the
// verdict that refuses it. A stored copy is checked as the grant requires
// before it is let out (as a signature/attestation layer, or inspected as
// every class the grant holds); a finding comes back as a *ContentFailure.
// Any other error (a store that cannot be read) concludes nothing.
func (s *Engine) AdmitBlob(q *Query) (g BlobGrant, v Verdict, ok bool, err error) {
	dgst := q.sub.Digest
	if v, ok := q.RuleVerdict(); ok && !v.Allowed {
		return BlobGrant{}, v, false, nil
	}
	grant, v, ok, err := s.grantFor(q, dgst)
	if err != nil || !ok {
		return BlobGrant{}, v, false, err
	}
	if grant.Evidence && q.rule.Content != nil {
		// Content the rule refused stays refused, whatever lists it.
		if f, bad, err := s.badBlob(q.ctx(), q.pol.Revision(), q.rule.Name, dgst, ""); err != nil {
			return BlobGrant{}, Verdict{}, false, err
		} else if bad {
			return BlobGrant{}, Verdict{}, false, &ContentFailure{finding: &content.Finding{Format: "content", Offset: -1, Reason: f}, recorded: true}
		}
	}
	if size, stored := s.store.Has(dgst); stored && grant.Evidence {
		// The evidence check depends only on the bytes (the digest) and the
		// declared type: once passed, it holds for every copy served as
		// those bytes (serving re-checks the copy itself).
		shapeKey := dgst.String() + "|" + grant.Desc.MediaType
		if _, checked := s.evidenceShapes.Get(shapeKey); !checked {
			if err := s.checkStoredEvidence(q.ctx(), grant.Desc, size); err != nil {
				return BlobGrant{}, Verdict{}, false, err
			}
			s.evidenceShapes.Add(shapeKey, true, evidenceShapeTTL)
		}
	} else if stored && q.rule.Content != nil && !grant.Uninspected {
		if err := s.inspectStored(q, grant, size); err != nil {
			return BlobGrant{}, Verdict{}, false, err
		}
	}
	return grant, Verdict{}, true, nil
}

// evidenceShapeTTL is how long a blob's pass of the evidence check as one
// media type is remembered.
const evidenceShapeTTL = 24 * time.Hour

// WaivedBlob is the verdict of a blob whose content inspection, in this
// request, failed with cf, when an exception waived exactly that finding
// for every manifest the grant g comes from (g.Uninspected, and
// g.WaivedFindings holds the finding's reason text for text): the blob may
// then be served after its digest check, and the verdict, "waived", names
// the exceptions for the audit log. ok is false for any other finding (one
// another inspection of the same blob recorded, of another class, ...).
func (q *Query) WaivedBlob(g BlobGrant, cf *ContentFailure) (Verdict, bool) {
	if q.rule == nil || !g.Uninspected || g.Evidence || cf == nil {
		return Verdict{}, false
	}
	reason := fmt.Sprintf("rule %s: content: layer %s: %s", q.rule.Name, q.sub.Digest, cf.text())
	if !slices.Contains(g.WaivedFindings, reason) {
		return Verdict{}, false
	}
	return Verdict{Allowed: true, Rule: q.rule.Name, Mode: string(q.rule.Mode), Revision: q.pol.Revision(),
		Reasons: []string{reason, fmt.Sprintf("rule %s: waived by exception %s for manifest %s: blob served after its digest check, uninspected",
			q.rule.Name, strings.Join(g.Waivers, ", "), g.Manifest)},
		Waivers: g.Waivers, WaivedUntil: g.Until}, true
}

// ContentDenial is the verdict of a blob refused by content inspection.
func (q *Query) ContentDenial(cf *ContentFailure) Verdict {
	return Verdict{Rule: q.rule.Name, Mode: string(q.rule.Mode), Revision: q.pol.Revision(), ExitCode: policy.ExitUnmet,
		Reasons: []string{fmt.Sprintf("rule %s: content: %s", q.rule.Name, cf.Error())}}
}

// Fetch starts the verified download of a granted blob the store does not
// hold, or joins the one under way that checks the same (see fetchPlan).
// A spool without room comes back as a *SpoolFullError.
func (s *Engine) Fetch(q *Query, grant BlobGrant) (*inflight.Fetch, error) {
	p := s.fetchPlan(q, grant)
	f, joined, err := s.fetches.Do(p.key.String(), Holdback, func(f *inflight.Fetch) {
		s.runFetch(f, q.up, q.sub.Repo, grant, p)
	})
	if err != nil {
		if store.IsNoSpace(err) {
			s.storageError(opSpool, s.spoolDir, grant.Desc.Size, err)
			s.roomFor(s.spoolDir, grant.Desc.Size, 0)
			return nil, &SpoolFullError{grant.Desc.Digest, grant.Desc.Size, err}
		}
		return nil, err
	}
	if joined {
		s.metrics.coalesced.Inc()
	}
	return f, nil
}

// Store is the content store the engine decides over.
func (s *Engine) Store() *store.Store { return s.store }

// Metrics are the engine's metrics.
func (s *Engine) Metrics() *Metrics { return s.metrics }

// StorageFull is the /readyz error while a disk the engine writes to was
// found full and is still too full (see storageFull).
func (s *Engine) StorageFull() error { return s.storageFull() }

// Servable keeps the manifests of descs this repository would serve (each
// decided as a request for it by digest would be): a listing of referrers
// must not offer a client manifests it is then refused (a signature that
// also speaks about a denied image, say).
func (s *Engine) Servable(q *Query, descs []ocispec.Descriptor) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, 0, len(descs))
	for _, d := range descs {
		m, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, d.Digest)
		if err != nil {
			continue
		}
		if v, _ := s.decideManifest(q.About(d.Digest), d.Digest, m); v.Allowed && !v.WouldDeny {
			out = append(out, d)
		}
	}
	return out
}

// SubjectVerdict decides manifest dgst in the query's repository as a pull
// of it by digest would be decided (one level deeper: the work it causes
// is bounded like evidence's).
func (s *Engine) SubjectVerdict(q *Query, dgst digest.Digest) (Verdict, error) {
	return s.subjectVerdict(q, dgst)
}
