package engine

import (
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify/content"
)

// emptyJSONDigest is the OCI empty descriptor's blob, {}.
const emptyJSONDigest = digest.Digest("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")

// evidenceGrantTTL is how long a confirmed evidence grant is reused.
const evidenceGrantTTL = 30 * time.Second

// grant records that the blobs (and child manifests) of an allowed manifest
// may be served in the query's repository under the current revision.
// Under a content rule, the grant of a blob accumulates the classes (media
// type, file name) that every manifest granted while it is held declares
// the blob as, and those manifests (see BlobGrant.Classes).
func (s *Engine) grant(q *Query, manifest digest.Digest, m *Manifest, v Verdict) {
	rev := q.pol.Revision()
	ttl := s.grantTTL(q.rule)
	var classes map[digest.Digest][]content.Class
	if !v.Evidence && q.rule != nil && q.rule.Content != nil {
		classes = content.BlobClasses(m)
	}
	for _, d := range m.Blobs() {
		key := grantKey(rev, q.repository(), d.Digest)
		old, ok := s.blobGrants.Get(key)
		if ok && !old.Evidence && v.Evidence {
			continue // an artifact's grant (inspected as content) stays
		}
		g := BlobGrant{Manifest: manifest, Desc: d, Evidence: v.Evidence}.waived(v, d.Digest)
		if classes != nil {
			if ok && !old.Evidence {
				g = old.alsoWaived(g)
			}
			g = g.with(manifest, classes[d.Digest])
		}
		g = g.until(v.WaivedUntil)
		// Held no longer than the signal answers v read.
		s.blobGrants.Add(key, g, s.boundTTL(s.boundTTL(ttl, g.Until), v.SignalsUntil))
	}
}

func grantKey(rev, repository string, blob digest.Digest) string {
	return rev + "|" + repository + "|" + blob.String()
}

// BlobGrant is what lets a blob out in a repository: the allowed manifest
// that lists it and the descriptor it lists it by.
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
	// the repository (see Engine.grantFor). A grant value is never
	// modified (it is shared through the cache): with and union copy.
	Classes []content.Class
	Seen    []string
	// Until, when set, is when the exception an allowing manifest was
	// waived by expires: the grant is not held past it.
	Until time.Time
	// Uninspected: every manifest the grant came from was allowed by an
	// exception that waived a code-execution finding recorded against
	// this blob (whose class it lists). The blob then runs code its
	// approvers accepted: it is served after its digest check, without
	// content inspection (see waived).
	Uninspected bool
	// WaivedFindings, when Uninspected, are the code-execution finding
	// reasons ("rule <r>: content: layer <digest>: <finding>", sorted)
	// every such manifest's exceptions waived for this blob: a pull whose
	// own inspection meets another finding is refused (WaivedBlob).
	// Waivers name those exceptions (sorted), for the audit log.
	WaivedFindings []string
	Waivers        []string
	// Gen, when not 0, is the link generation (Engine.linkGen) at which
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

// until returns g held at most until t (zero: no bound).
func (g BlobGrant) until(t time.Time) BlobGrant {
	if !t.IsZero() && (g.Until.IsZero() || t.Before(g.Until)) {
		g.Until = t
	}
	return g
}

// waivedCode lists the code-execution content findings recorded against
// blob d that exceptions waived for a verdict they allowed (the exception
// pinned the manifest digest, listed the class and the finding's exact
// text: policy.Exception.Waives): the exception approved those exact bytes.
func waivedCode(v Verdict, d digest.Digest) []string {
	if !v.Allowed || len(v.Waivers) == 0 {
		return nil
	}
	var out []string
	for _, r := range v.Reasons {
		if layer, class, ok := policy.ContentFinding(r); ok && layer == d && policy.IsCodeExecution(class) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// waived returns g marked Uninspected when v's exceptions waived a
// code-execution finding of blob d (see waivedCode).
func (g BlobGrant) waived(v Verdict, d digest.Digest) BlobGrant {
	if f := waivedCode(v, d); len(f) > 0 {
		g.Uninspected, g.WaivedFindings = true, f
		g.Waivers = slices.Compact(slices.Sorted(slices.Values(v.Waivers)))
	}
	return g
}

// alsoWaived returns g as uninspected as both g and o are: only when both
// are, for the findings both waived (by the exceptions of both).
func (g BlobGrant) alsoWaived(o BlobGrant) BlobGrant {
	if !g.Uninspected || !o.Uninspected {
		g.Uninspected, g.WaivedFindings, g.Waivers = false, nil, nil
		return g
	}
	var both []string
	for _, f := range g.WaivedFindings {
		if slices.Contains(o.WaivedFindings, f) {
			both = append(both, f)
		}
	}
	g.WaivedFindings = both
	g.Uninspected = len(both) > 0
	g.Waivers = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(g.Waivers), o.Waivers...))))
	if !g.Uninspected {
		g.Waivers = nil
	}
	return g
}

// union returns g extended by every manifest and class of o.
func (g BlobGrant) union(o BlobGrant) BlobGrant {
	g = g.alsoWaived(o)
	g = g.until(o.Until)
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

// grantFor finds an allowed manifest in this repository that references the
// blob: from the grants of recent manifest decisions, or from the links the
// store recorded (re-deciding those manifests under the current policy).
//
// One blob, every declaration. Under a content rule the grant also says
// every way the blob must pass inspection: each class (media type, file
// name: title, org.cncf.model.filepath, org.cnai.model.filepath) that any
// allowed manifest the store links to the blob in this repository declares
// it as. The rule is: every declaration known when the blob is served has
// passed. Manifests granted while the grant is held add theirs
// (Engine.grant); a held grant is used as is while it accounts for every
// manifest linked to the blob, which costs one listing of the blob's
// links per request; a manifest linked since (by another replica, before
// a restart, or granted after this grant was dropped) is accounted for
// first (accountFor). The blob is then served only once it passed as every
// class (inspectStored for a stored copy, one inspector per class over the
// same bytes for a fetch). A manifest that declares a blob otherwise than
// the manifests before it is therefore allowed as usual (its descriptors
// are checked, content.CheckManifest and CheckLayerNames), and its blobs
// are inspected as its declarations when they are requested, before any
// byte is served: a finding marks the blob bad, which denies every
// manifest referencing it.
//
// err is set when the store cannot list the manifests linked to the blob:
// nothing is concluded then (no grant, no denial).
func (s *Engine) grantFor(q *Query, dgst digest.Digest) (BlobGrant, Verdict, bool, error) {
	key := grantKey(q.pol.Revision(), q.repository(), dgst)
	held, ok := s.blobGrants.Get(key)
	if ok && !held.Evidence {
		g, err := s.refreshContentGrant(q, key, held, dgst)
		return g, Verdict{}, err == nil, err
	}
	if g, ok, err := s.confirmedEvidenceGrant(q, key, dgst); err != nil || ok {
		return g, Verdict{}, ok, err
	}
	// An evidence grant is only the fallback: when an allowed artifact in
	// this repository lists the same blob as its content, the blob is
	// judged as that content (its content rules, its declared type), never
	// as a signature/attestation layer.
	// A held evidence grant counts only while the artifact it came from is
	// still allowed (its payload may name a subject denied since).
	var evidence *BlobGrant
	if ok {
		if m, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, held.Manifest); err == nil {
			if v, _ := s.decideManifest(q, held.Manifest, m); v.Allowed {
				evidence = &held
			}
		}
	}
	sc, err := s.scanLinks(q, dgst, evidence)
	switch {
	case err != nil:
		return BlobGrant{}, Verdict{}, false, err
	case sc.direct != nil:
		return *sc.direct, sc.directVerdict, true, nil
	case sc.found != nil:
		return s.completeContentGrant(q, key, dgst, sc), Verdict{}, true, nil
	case sc.evidence != nil && (sc.contentDenial == nil || dgst == emptyJSONDigest):
		// The content of an artifact denied here is not served as anyone's
		// evidence either (any JSON can be a template, say): it is judged
		// as what that artifact declares it to be, and that artifact is
		// denied. The one exception is the empty descriptor ({}), which
		// every OCI 1.1 artifact shares as its config and which carries
		// nothing.
		return s.keepEvidenceGrant(key, sc), Verdict{}, true, nil
	}
	return BlobGrant{}, blobDenial(q, dgst, sc), false, nil
}

// refreshContentGrant returns a held content grant, extended by the
// manifests linked to the blob since it was made (see grantFor).
func (s *Engine) refreshContentGrant(q *Query, key string, held BlobGrant, dgst digest.Digest) (BlobGrant, error) {
	if q.rule.Content == nil {
		return held, nil
	}
	local := s.store.LocalRoot() != ""
	gen := s.linkGen.Load()
	if local && held.Gen == gen {
		return held, nil
	}
	links, err := s.linkNames(q.ctx(), q.sub.Upstream, q.sub.Repo, "_blobs", dgst)
	if err != nil {
		return BlobGrant{}, err
	}
	if held.covers(links) {
		if local {
			held.Gen = gen
			s.keepGrant(q, key, held)
		}
		return held, nil
	}
	g, all := held, true
	for _, enc := range links {
		if _, seen := slices.BinarySearch(held.Seen, enc); seen {
			continue
		}
		ok := false
		if md := digest.Digest(enc); md.Validate() == nil {
			g, ok = s.accountFor(q, g, md, dgst)
		}
		all = all && ok
	}
	g.Gen = 0
	if all && local {
		g.Gen = gen
	}
	return s.keepGrant(q, key, g), nil
}

// confirmedEvidenceGrant returns an evidence grant confirmed recently,
// while it still accounts for the blob's links. Under a content rule an
// evidence grant is reused only while no manifest was linked to the blob
// since it was confirmed: one that declares the blob as content (on
// another replica, or whose grant was evicted) makes it that content,
// judged by the rule.
func (s *Engine) confirmedEvidenceGrant(q *Query, key string, dgst digest.Digest) (BlobGrant, bool, error) {
	g, ok := s.evidenceGrants.Get(key)
	if !ok {
		return BlobGrant{}, false, nil
	}
	if q.rule.Content == nil || s.store.LocalRoot() != "" && g.Gen == s.linkGen.Load() {
		return g, true, nil
	}
	links, err := s.linkNames(q.ctx(), q.sub.Upstream, q.sub.Repo, "_blobs", dgst)
	if err != nil {
		return BlobGrant{}, false, err
	}
	return g, g.covers(links), nil
}

// linkScan is what deciding the manifests the store links to a blob found.
type linkScan struct {
	linked []digest.Digest // every manifest linked to the blob
	gen    uint64          // the link generation before the listing
	all    bool            // every linked manifest accounted for
	// direct: a content grant that decides alone (no content rule).
	direct        *BlobGrant
	directVerdict Verdict
	// found: under a content rule, the content grant gathered from the
	// links; asEvidence and denied, the manifests decided before it.
	found              *BlobGrant
	asEvidence, denied []digest.Digest
	evidence           *BlobGrant // the evidence grant to fall back on
	// denial: the first denial; contentDenial: the first of a content
	// (not evidence) artifact.
	denial, contentDenial *Verdict
}

// scanLinks decides the manifests linked to blob dgst in the query's
// repository, granting those allowed, until one grants the blob as
// content; under a content rule the rest are accounted for in that grant.
func (s *Engine) scanLinks(q *Query, dgst digest.Digest, evidence *BlobGrant) (*linkScan, error) {
	sc := &linkScan{gen: s.linkGen.Load(), all: true, evidence: evidence}
	linked, err := s.linkedManifests(q.ctx(), q.sub.Upstream, q.sub.Repo, "_blobs", dgst)
	if err != nil {
		return nil, err
	}
	sc.linked = linked
	for _, md := range linked {
		if sc.found != nil {
			var ok bool
			*sc.found, ok = s.accountFor(q, *sc.found, md, dgst)
			sc.all = sc.all && ok
			continue
		}
		m, v, ok := s.decideLinked(q, md)
		if m == nil {
			sc.all = false // unreadable now: decided again on the next request
		}
		if m != nil && v.Evidence {
			sc.asEvidence = append(sc.asEvidence, md)
		}
		if !ok {
			if m != nil {
				sc.noteDenial(md, v)
			}
			continue
		}
		if sc.grantFrom(q, md, m, v, dgst) {
			return sc, nil
		}
	}
	return sc, nil
}

// noteDenial notes a linked manifest decided denied.
func (sc *linkScan) noteDenial(md digest.Digest, v Verdict) {
	if sc.denial == nil {
		sc.denial = &v
	}
	if !v.Evidence {
		sc.denied = append(sc.denied, md)
		if sc.contentDenial == nil {
			sc.contentDenial = &v
		}
	}
}

// grantFrom notes the grant an allowed linked manifest md gives the blob;
// it reports true when that grant decides alone (sc.direct).
func (sc *linkScan) grantFrom(q *Query, md digest.Digest, m *Manifest, v Verdict, dgst digest.Digest) bool {
	for _, d := range m.Blobs() {
		if d.Digest != dgst {
			continue
		}
		g := BlobGrant{Manifest: md, Desc: d, Evidence: v.Evidence}.waived(v, dgst).until(v.WaivedUntil)
		if !g.Evidence {
			if q.rule.Content == nil {
				sc.direct, sc.directVerdict = &g, v
				return true
			}
			g = g.with(md, content.BlobClasses(m)[dgst])
			sc.found = &g
		} else if sc.evidence == nil {
			sc.evidence = &g
		}
		return false
	}
	return false
}

// completeContentGrant accounts the manifests decided before the content
// grant was found for in it, and holds it.
func (s *Engine) completeContentGrant(q *Query, key string, dgst digest.Digest, sc *linkScan) BlobGrant {
	found := *sc.found
	for _, md := range sc.asEvidence {
		found = found.with(md, nil)
	}
	all := sc.all
	for _, md := range sc.denied {
		var ok bool
		found, ok = s.accountFor(q, found, md, dgst)
		all = all && ok
	}
	if all && s.store.LocalRoot() != "" {
		found.Gen = sc.gen
	}
	return s.keepGrant(q, key, found)
}

// keepEvidenceGrant holds an evidence grant with the links it was
// confirmed against (see confirmedEvidenceGrant).
func (s *Engine) keepEvidenceGrant(key string, sc *linkScan) BlobGrant {
	g := *sc.evidence
	g.Seen = nil
	for _, md := range sc.linked {
		g.Seen = append(g.Seen, md.String())
	}
	slices.Sort(g.Seen)
	g.Gen = 0
	if s.store.LocalRoot() != "" {
		g.Gen = sc.gen
	}
	s.evidenceGrants.Add(key, g, s.boundTTL(evidenceGrantTTL, g.Until))
	return g
}

// blobDenial is the verdict of a blob no allowed manifest grants.
func blobDenial(q *Query, dgst digest.Digest, sc *linkScan) Verdict {
	denial := sc.denial
	if sc.contentDenial != nil {
		denial = sc.contentDenial
	}
	v := Verdict{Revision: q.pol.Revision(), ExitCode: policy.ExitUnmet}
	if q.rule != nil {
		v.Rule, v.Mode = q.rule.Name, string(q.rule.Mode)
	}
	if denial != nil {
		v.Reasons = append([]string{fmt.Sprintf("blob %s belongs only to denied manifests", dgst)}, denial.Reasons...)
	} else {
		v.Reasons = []string{fmt.Sprintf("blob %s is not referenced by any manifest pullgate allowed in %s; pull the image by tag or digest first", dgst, q.repository())}
	}
	return v
}

// decideLinked decides a manifest linked to a blob in the request's
// repository and grants its blobs when it is allowed. m is nil when the
// manifest could not be read (nothing is concluded about it).
func (s *Engine) decideLinked(q *Query, md digest.Digest) (*Manifest, Verdict, bool) {
	m, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, md)
	if err != nil {
		return nil, Verdict{}, false
	}
	v, _ := s.decideManifest(q, md, m)
	if !v.Allowed {
		return m, v, false
	}
	s.grant(q, md, m, v)
	return m, v, true
}

// accountFor extends a content grant of blob dgst by a manifest linked to
// it. A manifest whose declarations of the blob the grant holds already is
// accounted for without a decision (whatever it is decided, the blob is
// inspected as them). Any other is decided: allowed, its classes are
// added; decided as a signature/attestation artifact, it declares no
// content (the content grant judges the blob). A content artifact denied
// now, or one that cannot be read, is not accounted for (ok false): it may
// be allowed later, here or on another replica, and then its declarations
// count; it is decided again on the next request.
func (s *Engine) accountFor(q *Query, g BlobGrant, md, dgst digest.Digest) (BlobGrant, bool) {
	m, err := s.verifiedManifest(q.ctx(), q.up, q.sub.Repo, md)
	if err != nil {
		return g, false
	}
	classes := content.BlobClasses(m)[dgst]
	if len(content.MergeClasses(g.Classes, classes)) == len(g.Classes) {
		return g.with(md, nil), true
	}
	v, _ := s.decideManifest(q, md, m)
	switch {
	case v.Allowed && !v.Evidence:
		s.grant(q, md, m, v)
		g = g.alsoWaived(BlobGrant{}.waived(v, dgst))
		return g.with(md, classes).until(v.WaivedUntil), true
	case v.Evidence:
		return g.with(md, nil), true
	}
	return g, false
}

// keepGrant holds a content grant gathered from the blob's links, joined
// with whatever grant was recorded meanwhile (manifests granted while the
// links were decided), and returns it.
func (s *Engine) keepGrant(q *Query, key string, g BlobGrant) BlobGrant {
	if cur, ok := s.blobGrants.Get(key); ok && !cur.Evidence {
		g = g.union(cur)
	}
	s.blobGrants.Add(key, g, s.boundTTL(s.grantTTL(q.rule), g.Until))
	return g
}
