package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/download"
	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/stored"
	"github.com/pullgate/pullgate/cache/verified"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/shape"
)

// Holdback is how many final bytes of a streaming blob no client receives
// before the whole blob is verified.
const Holdback = 64 << 10

// emptyJSONDigest is the OCI empty descriptor's blob, {}.
const emptyJSONDigest = digest.Digest("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")

// evidenceGrantTTL is how long a confirmed evidence grant is reused.
const evidenceGrantTTL = 30 * time.Second

// fetchTimeout bounds one upstream blob download.
const fetchTimeout = 2 * time.Hour

// BlobGrant finds an allowed manifest in this repository that references the
// blob: from the grants of recent manifest decisions, or from the links the
// store recorded (re-deciding those manifests under the current policy).
//
// One blob, every declaration. Under a content rule the grant also says
// every way the blob must pass inspection: each class (media type, file
// name: title, org.cncf.model.filepath, org.cnai.model.filepath) that any
// allowed manifest the store links to the blob in this repository declares
// it as. The rule is: every declaration known when the blob is served has
// passed. Manifests granted while the grant is held add theirs
// (Server.grant); a held grant is used as is while it accounts for every
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
func (s *Engine) grantFor(q *Query, dgst digest.Digest) (_ BlobGrant, _ Verdict, _ bool, err error) {
	rep := q.sub.Repository()
	key := grantKey(q.pol.Revision(), rep, dgst)
	held, ok := s.blobGrants.Get(key)
	if ok && !held.Evidence {
		if q.rule.Content == nil {
			return held, Verdict{}, true, nil
		}
		local := s.store.LocalRoot() != ""
		gen := s.linkGen.Load()
		if local && held.Gen == gen {
			return held, Verdict{}, true, nil
		}
		links, err := s.linkNames(q.ctx(), q.sub.Upstream, q.sub.Repo, "_blobs", dgst)
		if err != nil {
			return BlobGrant{}, Verdict{}, false, err
		}
		if held.covers(links) {
			if local {
				held.Gen = gen
				s.keepGrant(key, held)
			}
			return held, Verdict{}, true, nil
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
		return s.keepGrant(key, g), Verdict{}, true, nil
	}
	if g, ok := s.evidenceGrants.Get(key); ok {
		// Under a content rule an evidence grant is reused only while no
		// manifest was linked to the blob since it was confirmed: one that
		// declares the blob as content (on another replica, or whose grant
		// was evicted) makes it that content, judged by the rule.
		if q.rule.Content == nil || s.store.LocalRoot() != "" && g.Gen == s.linkGen.Load() {
			return g, Verdict{}, true, nil
		}
		links, err := s.linkNames(q.ctx(), q.sub.Upstream, q.sub.Repo, "_blobs", dgst)
		if err != nil {
			return BlobGrant{}, Verdict{}, false, err
		}
		if g.covers(links) {
			return g, Verdict{}, true, nil
		}
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
	var denial, contentDenial *Verdict
	var found *BlobGrant                   // under a content rule: the content grant gathered from the links
	var asEvidence, denied []digest.Digest // manifests decided before found
	gen, all := s.linkGen.Load(), true
	linked, err := s.linkedManifests(q.ctx(), q.sub.Upstream, q.sub.Repo, "_blobs", dgst)
	if err != nil {
		return BlobGrant{}, Verdict{}, false, err
	}
	for _, md := range linked {
		if found != nil {
			var ok bool
			*found, ok = s.accountFor(q, *found, md, dgst)
			all = all && ok
			continue
		}
		m, v, ok := s.decideLinked(q, md)
		if m == nil {
			all = false // unreadable now: decided again on the next request
		}
		if m != nil && v.Evidence {
			asEvidence = append(asEvidence, md)
		}
		if !ok {
			if m != nil {
				if denial == nil {
					denial = &v
				}
				if !v.Evidence {
					denied = append(denied, md)
					if contentDenial == nil {
						contentDenial = &v
					}
				}
			}
			continue
		}
		for _, d := range m.Blobs() {
			if d.Digest != dgst {
				continue
			}
			g := BlobGrant{Manifest: md, Desc: d, Evidence: v.Evidence}
			if !g.Evidence {
				if q.rule.Content == nil {
					return g, v, true, nil
				}
				g = g.with(md, content.BlobClasses(m)[dgst])
				found = &g
			} else if evidence == nil {
				evidence = &g
			}
			break
		}
	}
	if found != nil {
		for _, md := range asEvidence {
			*found = found.with(md, nil)
		}
		for _, md := range denied {
			var ok bool
			*found, ok = s.accountFor(q, *found, md, dgst)
			all = all && ok
		}
		if all && s.store.LocalRoot() != "" {
			found.Gen = gen
		}
		return s.keepGrant(key, *found), Verdict{}, true, nil
	}
	// The content of an artifact denied here is not served as anyone's
	// evidence either (any JSON can be a template, say): it is judged as
	// what that artifact declares it to be, and that artifact is denied.
	// The one exception is the empty descriptor ({}), which every OCI 1.1
	// artifact shares as its config and which carries nothing.
	if evidence != nil && (contentDenial == nil || dgst == emptyJSONDigest) {
		// Remember which links the grant was confirmed against (see the
		// reuse above).
		g := *evidence
		g.Seen = nil
		for _, md := range linked {
			g.Seen = append(g.Seen, md.String())
		}
		slices.Sort(g.Seen)
		g.Gen = 0
		if s.store.LocalRoot() != "" {
			g.Gen = gen
		}
		s.evidenceGrants.Add(key, g, evidenceGrantTTL)
		return g, Verdict{}, true, nil
	}
	if contentDenial != nil {
		denial = contentDenial
	}
	v := Verdict{Revision: q.pol.Revision(), ExitCode: policy.ExitUnmet}
	if q.rule != nil {
		v.Rule, v.Mode = q.rule.Name, string(q.rule.Mode)
	}
	if denial != nil {
		v.Reasons = append([]string{fmt.Sprintf("blob %s belongs only to denied manifests", dgst)}, denial.Reasons...)
	} else {
		v.Reasons = []string{fmt.Sprintf("blob %s is not referenced by any manifest pullgate allowed in %s; pull the image by tag or digest first", dgst, rep)}
	}
	return BlobGrant{}, v, false, nil
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
		return g.with(md, classes), true
	case v.Evidence:
		return g.with(md, nil), true
	}
	return g, false
}

// keepGrant holds a content grant gathered from the blob's links, joined
// with whatever grant was recorded meanwhile (manifests granted while the
// links were decided), and returns it.
func (s *Engine) keepGrant(key string, g BlobGrant) BlobGrant {
	if cur, ok := s.blobGrants.Get(key); ok && !cur.Evidence {
		g = g.union(cur)
	}
	s.blobGrants.Add(key, g, s.cfg.Cache.AllowTTL.D())
	return g
}

// ContentFailure is a blob refused by content inspection.
type ContentFailure struct{ finding *content.Finding }

func (c *ContentFailure) Error() string { return c.finding.Error() }

// Mismatch is an upstream that sent bytes other than the digest names.
type Mismatch struct {
	upstream string
	dgst     digest.Digest
	detail   string
}

func (m *Mismatch) Error() string {
	return fmt.Sprintf("upstream %s sent a blob that does not match %s (%s); nothing was served or cached", m.upstream, m.dgst, m.detail)
}

// runFetch downloads one blob from the upstream into the spool, hashing (and
// inspecting) the same bytes as they arrive, and commits it to the store only
// when everything matched. It runs detached from any client request.
func (s *Engine) runFetch(f *inflight.Fetch, up *upstream.Client, repo string, grant BlobGrant, p fetchPlan) {
	newInspector, late, exp, rev, rule := p.newInspector, p.late, p.exp, p.key.Revision, p.key.Rule
	dgst := grant.Desc.Digest
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	s.metrics.inflight.Inc()
	defer s.metrics.inflight.Dec()
	classes := grant.classes()
	err := s.fetch(ctx, f, up, repo, grant, newInspector, func(path string, size int64) error {
		if late == nil {
			return nil
		}
		extra, err := late(ctx, path, size)
		classes = content.MergeClasses(classes, extra)
		return err
	})
	var mm *Mismatch
	var cf *ContentFailure
	switch {
	case errors.As(err, &mm):
		s.metrics.mismatches.Inc()
		s.log.Error("upstream blob rejected", "upstream", up.Name, "repository", repo, "digest", dgst, "err", err)
	case errors.As(err, &cf) && grant.Evidence:
		// A blob that is not evidence is refused as evidence only: the
		// same bytes may be another artifact's legitimate content, which
		// its own grant judges.
		s.log.Warn("blob refused as signature/attestation layer", "upstream", up.Name, "repository", repo, "digest", dgst, "finding", cf.finding.Error())
	case errors.As(err, &cf):
		s.log.Warn("blob refused by content inspection", "upstream", up.Name, "repository", repo, "digest", dgst, "rule", rule, "finding", cf.finding.Error())
		s.recordInspection(ctx, rev, rule, dgst, classes, exp, cf)
	case err == nil && newInspector != nil && !grant.Evidence:
		// Only a content rule's inspection counts as one (the evidence
		// check is not).
		s.recordInspection(ctx, rev, rule, dgst, classes, exp, nil)
	}
	f.Finish(err)
}

// fetchKey is what a blob download checks. Requests share one download
// (inflight.Group) only when its key is theirs: the same bytes checked the
// same way. Every field of the check is here, and fetchPlan builds the key
// and the inspector together, so that a check the inspector makes cannot
// be missing from the key.
type fetchKey struct {
	Digest digest.Digest `json:"digest"`
	// Evidence: checked as a signature/attestation layer of MediaType
	// (bounded JSON of that shape), whatever the rule's content section
	// says about model files.
	Evidence  bool   `json:"evidence,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
	// Under a content rule: inspected under that rule of that policy
	// revision, as every class (media type, file name) of the grant, and
	// against an MBOM's tensor expectation.
	Revision    string `json:"revision,omitempty"`
	Rule        string `json:"rule,omitempty"`
	Classes     string `json:"classes,omitempty"`
	Expectation string `json:"expectation,omitempty"`
}

// String encodes every field (the inflight group's key).
func (k fetchKey) String() string {
	b, _ := json.Marshal(k)
	return string(b)
}

// fetchPlan is how one blob download is checked: its key and the
// inspector (and late check, tensor expectation) the key describes.
type fetchPlan struct {
	key          fetchKey
	newInspector func(size int64) (content.Inspector, error)
	late         lateCheck
	exp          *tensorExpectation
}

func (s *Engine) fetchPlan(q *Query, grant BlobGrant) fetchPlan {
	dgst := grant.Desc.Digest
	p := fetchPlan{key: fetchKey{Digest: dgst}}
	if grant.Evidence {
		limit, mt := int64(s.cfg.Limits.MaxEvidenceSize), grant.Desc.MediaType
		p.key.Evidence, p.key.MediaType = true, mt
		p.newInspector = func(size int64) (content.Inspector, error) { return newEvidenceInspector(mt, size, limit) }
		return p
	}
	c := q.rule.Content
	if c == nil {
		return p
	}
	classes := grant.classes()
	opts := c.Options()
	rev := q.pol.Revision()
	p.key.Revision, p.key.Rule, p.key.Classes = rev, q.rule.Name, classesKey(classes)
	p.exp, _ = s.tensors.Get(grantKey(rev, q.sub.Repository(), dgst))
	exp := p.exp
	if exp != nil {
		p.key.Expectation = exp.id
	}
	p.newInspector = func(size int64) (content.Inspector, error) {
		return newLayerInspector(opts, classes, size, exp)
	}
	p.late = s.lateDeclarations(rev, q.rule.Name, q.sub.Repository(), dgst, opts, classes)
	return p
}

// lateCheck inspects a fetched blob's spool file as the declarations
// allowed since its fetch started, returning the classes it inspected.
type lateCheck func(ctx context.Context, path string, size int64) ([]content.Class, error)

// lateDeclarations is the lateCheck of a content fetch that started with
// classes: before the fetch finishes, a finding recorded against the blob
// meanwhile refuses it, and classes the held grant gained meanwhile (a tag
// allowed while the bytes streamed, declaring the blob otherwise) are
// inspected over the verified spool file.
func (s *Engine) lateDeclarations(rev, rule, rep string, dgst digest.Digest, opts content.Options, classes []content.Class) lateCheck {
	return func(ctx context.Context, path string, size int64) ([]content.Class, error) {
		if f, bad, err := s.badBlob(ctx, rev, rule, dgst, ""); err != nil {
			return nil, err
		} else if bad {
			return nil, &ContentFailure{&content.Finding{Format: "content", Offset: -1, Reason: f}}
		}
		held, ok := s.blobGrants.Get(grantKey(rev, rep, dgst))
		if !ok || held.Evidence {
			return nil, nil
		}
		var extra []content.Class
		for _, c := range held.classes() {
			if !slices.Contains(classes, c) {
				extra = append(extra, c)
			}
		}
		if len(extra) == 0 {
			return nil, nil
		}
		in, err := content.NewDeclaredInspector(opts, extra, size)
		if err != nil {
			return extra, asFinding(err, "content")
		}
		file, err := os.Open(path)
		if err != nil {
			_ = in.Close()
			return nil, err
		}
		defer file.Close()
		// The spool file is read as verified bytes, as every source is.
		vr, err := verified.NewReader(io.LimitReader(file, size), dgst, size)
		if err != nil {
			_ = in.Close()
			return nil, err
		}
		if _, err := stored.CopyBuffer(in, vr); err != nil {
			_ = in.Close()
			var fd *content.Finding
			if errors.As(err, &fd) {
				return extra, &ContentFailure{fd}
			}
			return nil, err
		}
		if err := in.Close(); err != nil {
			return extra, asFinding(err, "content")
		}
		return extra, nil
	}
}

// asFinding turns an inspector error into a ContentFailure.
func asFinding(err error, format string) error {
	var fd *content.Finding
	if errors.As(err, &fd) {
		return &ContentFailure{fd}
	}
	return &ContentFailure{&content.Finding{Format: format, Offset: -1, Reason: err.Error()}}
}

// recordInspection records the outcome of inspecting a blob: format
// results per rule, tensor-expectation results per expectation as well. A
// failure purges cached decisions (every manifest referencing the blob is
// denied from then on).
// A finding marks the blob bad however it is declared; a pass counts only
// for the classes it was inspected as (see records.Records.PutInspected).
func (s *Engine) recordInspection(ctx context.Context, rev, rule string, dgst digest.Digest, classes []content.Class, exp *tensorExpectation, cf *ContentFailure) {
	if cf != nil {
		scope := ""
		if cf.finding.Format == formatMBOM && exp != nil {
			scope = exp.id
		}
		s.markBad(ctx, rev, rule, dgst, scope, cf.finding.Error())
		return
	}
	for _, scope := range scopesOf(exp) {
		for _, c := range classes {
			if err := s.records.PutInspected(ctx, rev, rule, dgst, scope, c.Key()); err != nil {
				s.log.Warn("store: inspection record write failed", "err", err)
			}
		}
	}
}

func scopesOf(exp *tensorExpectation) []string {
	if exp == nil {
		return []string{""}
	}
	return []string{"", exp.id}
}

// inspectStored runs a content rule's inspection over a stored blob unless
// it is recorded as inspected as every class of the grant under this rule,
// policy revision (and MBOM tensor expectation); it fails when the blob is
// recorded bad. A class added later (a manifest declaring the blob
// otherwise) has no record: the stored copy is inspected again, as every
// class, before it is served.
func (s *Engine) inspectStored(q *Query, grant BlobGrant, size int64) error {
	ctx := q.ctx()
	rev, rule, dgst := q.pol.Revision(), q.rule.Name, q.sub.Digest
	exp, _ := s.tensors.Get(grantKey(rev, q.sub.Repository(), dgst))
	scopes := scopesOf(exp)
	for _, scope := range scopes {
		if f, bad, err := s.badBlob(ctx, rev, rule, dgst, scope); err != nil {
			return err
		} else if bad {
			return &ContentFailure{&content.Finding{Format: "content", Offset: -1, Reason: f}}
		}
	}
	classes := grant.classes()
	if s.inspectedAs(ctx, rev, rule, dgst, scopes, classes) {
		return nil
	}
	// Inspected as every class again, not only the missing ones: one
	// read of the copy either way, and a finding names the class it was
	// found as among all the blob's (content.NewDeclaredInspector).
	in, err := newLayerInspector(q.rule.Content.Options(), classes, size, exp)
	if err != nil {
		cf := asFinding(err, "content").(*ContentFailure)
		s.recordInspection(ctx, rev, rule, dgst, classes, exp, cf)
		return cf
	}
	start := time.Now()
	err = s.inspectStoredWith(ctx, dgst, size, in)
	s.metrics.inspectDuration.Observe(time.Since(start).Seconds())
	var cf *ContentFailure
	if errors.As(err, &cf) {
		s.recordInspection(ctx, rev, rule, dgst, classes, exp, cf)
		return cf
	}
	if err != nil {
		return err // reading the store failed: nothing is concluded about the blob
	}
	s.recordInspection(ctx, rev, rule, dgst, classes, exp, nil)
	return nil
}

// inspectedAs reports whether a blob is recorded as inspected as every
// class in every scope.
func (s *Engine) inspectedAs(ctx context.Context, rev, rule string, dgst digest.Digest, scopes []string, classes []content.Class) bool {
	for _, c := range classes {
		for _, scope := range scopes {
			if ok, err := s.records.Inspected(ctx, rev, rule, dgst, scope, c.Key()); err != nil || !ok {
				return false
			}
		}
	}
	return true
}

// inspectStoredWith feeds a stored blob through an inspector and closes it,
// re-checking its digest (content corrupted at rest is removed, never
// judged; a copy that hashed to its digest is recorded, so serving it next
// does not hash it again). Findings come back as *ContentFailure; other
// errors are store errors.
func (s *Engine) inspectStoredWith(ctx context.Context, dgst digest.Digest, size int64, in content.Inspector) error {
	c, err := stored.Open(ctx, s.store, dgst, size)
	if err != nil {
		_ = in.Close()
		return err
	}
	defer c.Close()
	ferr, err := c.Inspect(in)
	var mm *verified.MismatchError
	switch {
	case errors.As(err, &mm):
		_ = in.Close()
		s.StoreCorrupt(ctx, dgst, "hashes to "+mm.Got.String())
		return fmt.Errorf("stored blob %s is corrupted", dgst)
	case err != nil:
		_ = in.Close()
		return errors.Unwrap(err) // the store's own error
	case ferr == nil:
		s.MarkVerified(c)
	}
	if cerr := in.Close(); ferr == nil {
		ferr = cerr
	}
	if ferr != nil {
		return asFinding(ferr, "content")
	}
	return nil
}

// newLayerInspector is the content inspector of one layer blob as every
// class it is declared as (content.NewDeclaredInspector), with the MBOM's
// tensor expectations for it when there are any.
func newLayerInspector(opts content.Options, classes []content.Class, size int64, exp *tensorExpectation) (content.Inspector, error) {
	in, err := content.NewDeclaredInspector(opts, classes, size)
	if err != nil || exp == nil {
		return in, err
	}
	return expectingInspector{in, exp}, nil
}

// classesKey names a set of classes (sorted) in fetch keys.
func classesKey(classes []content.Class) string {
	var b strings.Builder
	for i, c := range classes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.Key())
	}
	return b.String()
}

func (s *Engine) fetch(ctx context.Context, f *inflight.Fetch, up *upstream.Client, repo string, grant BlobGrant,
	newInspector func(int64) (content.Inspector, error), recheck func(path string, size int64) error) error {
	dgst := grant.Desc.Digest
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := up.Blob(ctx, repo, dgst)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// An upstream that stops sending holds every waiting client: abandon
	// the fetch after the upstream's timeout without a byte.
	body := download.NewStallReader(resp.Body, up.Timeout(), cancel)
	defer body.Stop()
	size := resp.ContentLength
	switch {
	case size < 0 && grant.Desc.Size > 0:
		size = grant.Desc.Size
	case size < 0:
		return &upstream.Error{Kind: upstream.Invalid, Upstream: up.Name, Msg: "blob " + dgst.String() + ": no Content-Length and no size in the manifest"}
	case grant.Desc.Size > 0 && size != grant.Desc.Size:
		return &Mismatch{up.Name, dgst, fmt.Sprintf("%d bytes announced, the manifest says %d", size, grant.Desc.Size)}
	}
	var in content.Inspector
	closed := false
	if newInspector != nil {
		if in, err = newInspector(size); err != nil {
			return asFinding(err, "content")
		}
		// Inspectors hold resources (tar+gzip runs a goroutine): close on
		// every path.
		defer func() {
			if !closed {
				_ = in.Close()
			}
		}()
	}
	inspectStart := time.Now()
	// The spool is written as bytes arrive (readers follow it, never past
	// the held-back tail); hashing and inspection run alongside on their own
	// goroutine, on the very same buffers. A content finding aborts the
	// clients at once, but it is recorded against the blob only once the
	// whole stream hashed to the digest.
	d := &download.Download{Body: body, Size: size, Digest: dgst, Inspector: in, Fetch: f, SpoolWrite: s.disk.SpoolWrite,
		Finding: func(err error) error { return asFinding(err, "content") }}
	spooled, err := d.Run()
	if spooled {
		s.storageOK(s.spoolDir) // the whole blob fit in the spool
	}
	if err != nil {
		return s.fetchFailed(up, dgst, size, err)
	}
	if in != nil {
		closed = true
		if err := in.Close(); err != nil {
			return asFinding(err, "content")
		}
		// Declarations allowed while the bytes streamed (another tag
		// declaring the blob as something else), or a finding another
		// fetch recorded meanwhile: judged before the tail is released.
		if err := recheck(f.Path(), size); err != nil {
			return err
		}
		s.metrics.inspectDuration.Observe(time.Since(inspectStart).Seconds())
	}
	if err := s.disk.CommitBlob(s.store, ctx, dgst, f.Path(), size); err != nil {
		// The bytes are verified: serve them (from the spool), but say the
		// cache failed. Nothing partial is visible: the store links or
		// copies under a temporary name and renames only a whole copy.
		s.log.Error("store: commit failed; the verified blob is served but not cached", "digest", dgst, "err", err)
		s.storageError(opCommit, s.store.LocalRoot(), size, err)
		if store.IsNoSpace(err) && s.store.LocalRoot() != "" {
			// A copy into the store removed on error holds nothing; a
			// link failed on the spool's filesystem gives the spool
			// file back when the fetch ends.
			held := int64(0)
			if sameFilesystem(s.spoolDir, s.store.LocalRoot()) {
				held = size
			}
			s.roomFor(s.store.LocalRoot(), size, held)
		}
	} else {
		s.storageOK(s.spoolDir, s.store.LocalRoot())
	}
	return nil
}

// fetchFailed is the error a download that failed ends the fetch with
// (what clients are answered with, see fetchError), after reporting a
// spool that ran out of room.
func (s *Engine) fetchFailed(up *upstream.Client, dgst digest.Digest, size int64, err error) error {
	var mm *verified.MismatchError
	var se *download.SpoolError
	var re *download.ReadError
	switch {
	case errors.As(err, &mm) && mm.GotSize > size:
		return &Mismatch{up.Name, dgst, fmt.Sprintf("more than the %d bytes announced", size)}
	case errors.As(err, &mm) && mm.GotSize != size:
		return &Mismatch{up.Name, dgst, fmt.Sprintf("%d bytes received, %d announced", mm.GotSize, size)}
	case errors.As(err, &mm):
		return &Mismatch{up.Name, dgst, "got " + mm.Got.String()}
	case errors.As(err, &se):
		s.storageError(opSpool, s.spoolDir, size, se.Err)
		if store.IsNoSpace(se.Err) {
			// The spool file goes when the fetch ends: make the rest of
			// the room.
			s.roomFor(s.spoolDir, size, se.Spooled)
			return &SpoolFullError{dgst, size, se.Err}
		}
		return fmt.Errorf("spool: %w", se.Err)
	case errors.As(err, &re):
		msg := re.Err.Error()
		if re.Stalled {
			msg = fmt.Sprintf("sent nothing for %s after %d of %d bytes", up.Timeout(), re.Received, size)
		}
		return &upstream.Error{Kind: upstream.Unavailable, Upstream: up.Name, Msg: "blob " + dgst.String() + ": " + msg}
	}
	return err // a finding
}

// newEvidenceInspector accepts a signature/attestation blob only if it is
// JSON of at most the evidence size limit; nothing is released before the
// whole blob was checked.
func newEvidenceInspector(mediaType string, size, limit int64) (content.Inspector, error) {
	if size > limit {
		return nil, &content.Finding{Format: "evidence", Offset: -1, Reason: fmt.Sprintf("signature/attestation blob of %d bytes exceeds the evidence limit of %d", size, limit)}
	}
	return content.NewBufferedInspector("evidence", size, limit, "signature/attestation blob exceeds the evidence limit of %d bytes", func(b []byte) error {
		if !json.Valid(b) {
			return &content.Finding{Format: "evidence", Offset: 0, Reason: "signature/attestation blob is not JSON"}
		}
		// Served under the subject's decision rather than the content
		// rules: it must be evidence, not any JSON a loader acts on.
		if err := shape.Check(mediaType, b); err != nil {
			return &content.Finding{Format: "evidence", Offset: 0, Reason: "signature/attestation blob declared " + mediaType + ": " + err.Error()}
		}
		return nil
	}), nil
}

// checkStoredEvidence checks a stored blob served as a signature/attestation
// layer the same way as one streamed from the upstream.
func (s *Engine) checkStoredEvidence(ctx context.Context, desc ocispec.Descriptor, size int64) error {
	in, err := newEvidenceInspector(desc.MediaType, size, int64(s.cfg.Limits.MaxEvidenceSize))
	if err != nil {
		return asFinding(err, "evidence")
	}
	return s.inspectStoredWith(ctx, desc.Digest, size, in)
}
