package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/verify/content"
)

// Verdict is the proxy's record of a decision about one digest in one
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
}

func (v Verdict) Result() string {
	if v.Allowed {
		return "allow"
	}
	return "deny"
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
	if v.Allowed && !v.WouldDeny {
		return s.cfg.Cache.AllowTTL.D()
	}
	return s.cfg.Cache.DenyTTL.D()
}

func verdictKey(rev, rule, repository string, dgst digest.Digest) string {
	return rev + "|" + rule + "|" + repository + "|" + dgst.String()
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
		Reasons: d.Reasons, Revision: d.Revision, ExitCode: d.ExitCode}
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

// decideManifest decides a manifest digest in the request's repository,
// from the verdict cache or by evaluating the policy. body/m are the
// verified manifest bytes.
func (s *Engine) decideManifest(q *Query, dgst digest.Digest, m *Manifest) (Verdict, bool) {
	rep := q.sub.Repository()
	// Deny (and no rule) decide alone; allow decides alone unless the rule
	// has content checks, which look at the manifest.
	if v, ok := ruleVerdict(q.pol, q.rule, rep); ok && (!v.Allowed || q.rule.Content == nil) {
		return v, false
	}
	// Signatures and attestations are decided by their subject (and how
	// they were asked for), not cached by their own digest.
	if v, ok := s.evidenceVerdict(q, dgst, m); ok {
		return v, false
	}
	key := verdictKey(q.pol.Revision(), q.rule.Name, rep, dgst)
	if v, ok := s.verdicts.Get(key); ok {
		return v, true
	}
	v := s.evaluate(q, dgst, m)
	s.verdicts.Add(key, v, s.ttl(v))
	if !v.Allowed {
		// An evidence grant confirmed before this artifact was denied may
		// cover one of its blobs: confirm them again.
		s.forget(artifactDenied)
	}
	return v, false
}

// grant records that the blobs (and child manifests) of an allowed manifest
// may be served in the request's repository under the current revision.
// Under a content rule, the grant of a blob accumulates the classes (media
// type, file name) that every manifest granted while it is held declares
// the blob as, and those manifests (see BlobGrant.Classes).
func (s *Engine) grant(q *Query, manifest digest.Digest, m *Manifest, v Verdict) {
	rev := q.pol.Revision()
	ttl := s.cfg.Cache.AllowTTL.D()
	var classes map[digest.Digest][]content.Class
	if !v.Evidence && q.rule != nil && q.rule.Content != nil {
		classes = content.BlobClasses(m)
	}
	for _, d := range m.Blobs() {
		key := grantKey(rev, q.sub.Repository(), d.Digest)
		old, ok := s.blobGrants.Get(key)
		if ok && !old.Evidence && v.Evidence {
			continue // an artifact's grant (inspected as content) stays
		}
		g := BlobGrant{Manifest: manifest, Desc: d, Evidence: v.Evidence}
		if classes != nil {
			if ok && !old.Evidence {
				g = old
			}
			g = g.with(manifest, classes[d.Digest])
		}
		s.blobGrants.Add(key, g, ttl)
	}
}

func grantKey(rev, repository string, blob digest.Digest) string {
	return rev + "|" + repository + "|" + blob.String()
}

type BlobGrant struct {
	Manifest digest.Digest
	Desc     ocispec.Descriptor
	// Evidence: granted by a signature/attestation artifact. Such blobs
	// are checked as evidence (small, JSON), not by content rules.
	Evidence bool
	// Under a content rule: Seen holds the digests (algorithm:hex, sorted) of the
	// manifests the grant accounts for, and Classes every (media type,
	// file name) those allowed declare the blob as (sorted, distinct). A
	// manifest is accounted for when it was allowed and its classes added,
	// decided as a signature/attestation artifact (no content), or when
	// Classes held its declarations already. The blob is served only once
	// it passed inspection as every class, and the grant is used as is
	// only while Seen holds every manifest the store links the blob to in
	// the repository (see Server.BlobGrant). A grant value is never
	// modified (it is shared through the cache): with and union copy.
	Classes []content.Class
	Seen    []string
	// Gen, when not 0, is the link generation (Server.linkGen) at which
	// Seen accounted for every manifest the store linked the blob to. In
	// a local store, which only this process writes, the grant covers
	// every link while the generation is unchanged: no listing is needed.
	Gen uint64
}

// classes are the classes to inspect the blob as: the accumulated ones,
// or the grant descriptor's own.
func (g BlobGrant) classes() []content.Class {
	if len(g.Classes) > 0 {
		return g.Classes
	}
	return content.DeclarationOf(g.Desc).Classes()
}

// with returns the grant extended by a manifest it accounts for and the
// classes that manifest declares the blob as (g itself when it has both
// already).
func (g BlobGrant) with(manifest digest.Digest, classes []content.Class) BlobGrant {
	enc := manifest.String()
	i, seen := slices.BinarySearch(g.Seen, enc)
	merged := content.MergeClasses(g.Classes, classes)
	if seen && len(merged) == len(g.Classes) {
		return g
	}
	if !seen {
		g.Seen = slices.Insert(slices.Clone(g.Seen), i, enc)
	}
	g.Classes = merged
	return g
}

// union returns g extended by every manifest and class of o.
func (g BlobGrant) union(o BlobGrant) BlobGrant {
	g.Classes = content.MergeClasses(g.Classes, o.Classes)
	for _, enc := range o.Seen {
		if i, seen := slices.BinarySearch(g.Seen, enc); !seen {
			g.Seen = slices.Insert(slices.Clone(g.Seen), i, enc)
		}
	}
	return g
}

// covers reports whether the grant accounts for every linked manifest
// (digests, as linkNames returns them).
func (g BlobGrant) covers(links []string) bool {
	for _, l := range links {
		if _, seen := slices.BinarySearch(g.Seen, l); !seen {
			return false
		}
	}
	return true
}

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
