package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/shape"
)

// holdback is how many final bytes of a streaming blob no client receives
// before the whole blob is verified.
const holdback = 64 << 10

// emptyJSONDigest is the OCI empty descriptor's blob, {}.
const emptyJSONDigest = digest.Digest("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")

// evidenceGrantTTL is how long a confirmed evidence grant is reused.
const evidenceGrantTTL = 30 * time.Second

// fetchTimeout bounds one upstream blob download.
const fetchTimeout = 2 * time.Hour

func (s *Server) serveBlob(q *request) {
	dgst := q.rt.Digest
	ref := dgst.String()
	rep := q.rt.Repository()
	if v, ok := ruleVerdict(q.pol, q.rule, rep); ok && !v.Allowed {
		s.record(q, "blob", ref, dgst, v, false)
		s.deny(q, v, ref)
		return
	}
	grant, v, ok, err := s.blobGrant(q, dgst)
	if err != nil {
		s.fetchError(q, err)
		return
	}
	if !ok {
		s.record(q, "blob", ref, dgst, v, false)
		s.deny(q, v, ref)
		return
	}
	if grant.Evidence && q.rule.Content != nil {
		// Content the rule refused stays refused, whatever lists it.
		if f, bad, err := s.badBlob(q.ctx(), q.pol.Revision(), q.rule.Name, dgst, ""); err != nil {
			s.fetchError(q, err)
			return
		} else if bad {
			s.fetchError(q, &contentFailure{&content.Finding{Format: "content", Offset: -1, Reason: f}})
			return
		}
	}
	if size, ok := s.store.Has(dgst); ok && grant.Evidence {
		// The evidence check depends only on the bytes (the digest) and the
		// declared type: once passed, it holds for every copy served as
		// those bytes (serving re-checks the copy itself).
		shapeKey := dgst.String() + "|" + grant.Desc.MediaType
		if _, checked := s.evidenceShapes.Get(shapeKey); !checked {
			if err := s.checkStoredEvidence(q.ctx(), grant.Desc, size); err != nil {
				s.fetchError(q, err)
				return
			}
			s.evidenceShapes.Add(shapeKey, true, 24*time.Hour)
		}
	} else if ok && q.rule.Content != nil {
		if err := s.inspectStored(q, grant, size); err != nil {
			s.fetchError(q, err)
			return
		}
	}
	setBlobHeaders(q.w, dgst)
	// A copy this process verified is sent as is (sendfile for the local
	// store); any other is hashed before or while it is sent, and a corrupt
	// one is removed and served as a miss (see serveStored).
	if size, ok := s.store.Has(dgst); ok && s.serveStored(q, dgst, size) {
		return
	}
	s.metrics.cache.WithLabelValues("blob", "miss").Inc()
	if q.r.Method == http.MethodHead {
		size, err := q.up.BlobSize(q.ctx(), q.rt.Repo, dgst)
		if err != nil {
			q.w.Header().Del("Docker-Content-Digest")
			s.upstreamError(q, err, ocierr.BlobUnknown)
			return
		}
		if grant.Desc.Size > 0 && size != grant.Desc.Size {
			q.w.Header().Del("Docker-Content-Digest")
			ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.SizeInvalid,
				"upstream %s says blob %s has %d bytes; the manifest says %d", q.up.Name, dgst, size, grant.Desc.Size))
			return
		}
		q.w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		q.w.WriteHeader(http.StatusOK)
		return
	}
	s.streamBlob(q, grant)
}

// blobGrant finds an allowed manifest in this repository that references the
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
func (s *Server) blobGrant(q *request, dgst digest.Digest) (_ blobGrant, _ Verdict, _ bool, err error) {
	rep := q.rt.Repository()
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
		links, err := s.linkNames(q.ctx(), q.rt.Upstream, q.rt.Repo, "_blobs", dgst)
		if err != nil {
			return blobGrant{}, Verdict{}, false, err
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
		links, err := s.linkNames(q.ctx(), q.rt.Upstream, q.rt.Repo, "_blobs", dgst)
		if err != nil {
			return blobGrant{}, Verdict{}, false, err
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
	var evidence *blobGrant
	if ok {
		if body, m, err := s.manifestBytes(q.ctx(), q.up, q.rt.Repo, held.Manifest); err == nil {
			if v, _ := s.decideManifest(q, held.Manifest, body, m); v.Allowed {
				evidence = &held
			}
		}
	}
	var denial, contentDenial *Verdict
	var found *blobGrant                   // under a content rule: the content grant gathered from the links
	var asEvidence, denied []digest.Digest // manifests decided before found
	gen, all := s.linkGen.Load(), true
	linked, err := s.linkedManifests(q.ctx(), q.rt.Upstream, q.rt.Repo, "_blobs", dgst)
	if err != nil {
		return blobGrant{}, Verdict{}, false, err
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
			g := blobGrant{Manifest: md, Desc: d, Evidence: v.Evidence}
			if !g.Evidence {
				if q.rule.Content == nil {
					return g, v, true, nil
				}
				g = g.with(md, m.blobClasses()[dgst])
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
	v := Verdict{Revision: q.pol.Revision(), ExitCode: 13}
	if q.rule != nil {
		v.Rule, v.Mode = q.rule.Name, string(q.rule.Mode)
	}
	if denial != nil {
		v.Reasons = append([]string{fmt.Sprintf("blob %s belongs only to denied manifests", dgst)}, denial.Reasons...)
	} else {
		v.Reasons = []string{fmt.Sprintf("blob %s is not referenced by any manifest pullgate allowed in %s; pull the image by tag or digest first", dgst, rep)}
	}
	return blobGrant{}, v, false, nil
}

// decideLinked decides a manifest linked to a blob in the request's
// repository and grants its blobs when it is allowed. m is nil when the
// manifest could not be read (nothing is concluded about it).
func (s *Server) decideLinked(q *request, md digest.Digest) (*parsedManifest, Verdict, bool) {
	body, m, err := s.manifestBytes(q.ctx(), q.up, q.rt.Repo, md)
	if err != nil {
		return nil, Verdict{}, false
	}
	v, _ := s.decideManifest(q, md, body, m)
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
func (s *Server) accountFor(q *request, g blobGrant, md, dgst digest.Digest) (blobGrant, bool) {
	body, m, err := s.manifestBytes(q.ctx(), q.up, q.rt.Repo, md)
	if err != nil {
		return g, false
	}
	classes := m.blobClasses()[dgst]
	if len(content.MergeClasses(g.Classes, classes)) == len(g.Classes) {
		return g.with(md, nil), true
	}
	v, _ := s.decideManifest(q, md, body, m)
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
func (s *Server) keepGrant(key string, g blobGrant) blobGrant {
	if cur, ok := s.blobGrants.Get(key); ok && !cur.Evidence {
		g = g.union(cur)
	}
	s.blobGrants.Add(key, g, s.cfg.Cache.AllowTTL.D())
	return g
}

// streamBlob serves an uncached blob from a coalesced upstream fetch.
func (s *Server) streamBlob(q *request, grant blobGrant) {
	dgst := q.rt.Digest
	key := dgst.String()
	var newInspector func(size int64) (content.Inspector, error)
	var late lateCheck
	var exp *tensorExpectation
	if grant.Evidence {
		// Signature/attestation layers: bounded JSON, whatever the rule's
		// content section says about model files.
		key += "|evidence|" + grant.Desc.MediaType
		limit, mt := int64(s.cfg.Limits.MaxEvidenceSize), grant.Desc.MediaType
		newInspector = func(size int64) (content.Inspector, error) { return newEvidenceInspector(mt, size, limit) }
	} else if c := q.rule.Content; c != nil {
		// Inspection depends on the rule: fetches under different content
		// rules are not shared.
		// It also depends on how the manifests declare the blob (media
		// types, names): the fetch inspects it as every class the grant
		// holds, and requests whose grant holds other classes do not share
		// it.
		classes := grant.classes()
		key += "|" + q.pol.Revision() + "|" + q.rule.Name + "|" + classesKey(classes)
		opts := c.Options()
		exp, _ = s.tensors.Get(grantKey(q.pol.Revision(), q.rt.Repository(), dgst))
		if exp != nil {
			key += "|" + exp.id
		}
		newInspector = func(size int64) (content.Inspector, error) {
			return newLayerInspector(opts, classes, size, exp)
		}
		late = s.lateDeclarations(q.pol.Revision(), q.rule.Name, q.rt.Repository(), dgst, opts, classes)
	}
	rev, ruleName := q.pol.Revision(), q.rule.Name
	f, joined, err := s.fetches.Do(key, holdback, func(f *inflight.Fetch) {
		s.runFetch(f, q.up, q.rt.Repo, grant, newInspector, late, exp, rev, ruleName)
	})
	if err != nil {
		if store.IsNoSpace(err) {
			s.storageError(opSpool, s.spoolDir, grant.Desc.Size, err)
			s.roomFor(s.spoolDir, grant.Desc.Size, 0)
			writeSpoolFull(q.w, q.r, &spoolFullError{dgst, grant.Desc.Size, err})
			return
		}
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusInternalServerError, ocierr.Unavailable, "%v", err))
		return
	}
	defer f.Release()
	if joined {
		s.metrics.coalesced.Inc()
	}
	size, err := f.Wait(q.ctx())
	if err != nil {
		q.w.Header().Del("Docker-Content-Digest")
		s.fetchError(q, err)
		return
	}
	start, end, partial, unsat := byteRange(q.r.Header.Get("Range"), size)
	h := q.w.Header()
	if unsat {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusRequestedRangeNotSatisfiable, ocierr.SizeInvalid, "range not satisfiable"))
		return
	}
	status := http.StatusOK
	if !partial {
		start, end = 0, size-1
	} else {
		status = http.StatusPartialContent
		h.Set("Content-Range", contentRange(start, end, size))
	}
	n := end - start + 1
	if end < size-1 || n <= 0 {
		// This response would be complete before the fetch checked the
		// digest (a range that stops short of the end, an empty blob): it
		// is sent only once every byte was verified.
		if err := f.Verified(q.ctx()); err != nil {
			h.Del("Content-Range")
			h.Del("Docker-Content-Digest")
			s.fetchError(q, err)
			return
		}
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if n <= 0 {
		q.w.WriteHeader(status)
		return
	}
	// The status goes out with the first byte: a fetch that fails before
	// any byte could be sent (an upstream reset, a stall, a full spool
	// while the held-back tail covers all that arrived) is answered with an
	// OCI error, not with a 200 that is cut off.
	hw := &headerOnWrite{ResponseWriter: q.w, status: status}
	w := s.metrics.countingWriter(hw, "upstream")
	copied, err := f.CopyTo(q.ctx(), w, start, n)
	if !hw.sent && err != nil && q.ctx().Err() == nil {
		for _, k := range []string{"Content-Length", "Content-Range", "Docker-Content-Digest", "ETag", "Cache-Control", "Accept-Ranges"} {
			h.Del(k)
		}
		if ferr := f.Verified(q.ctx()); ferr != nil {
			err = ferr // the fetch's own error, not its ErrAborted wrapping
		}
		s.fetchError(q, err)
		return
	}
	if err != nil || copied != n {
		// The fetch failed (digest or content check) or the client left:
		// abort the connection so the client cannot take a truncated body
		// for a complete one.
		if err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("blob stream aborted", "digest", dgst, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// headerOnWrite writes the response status just before the first body
// byte (keeping the server's sendfile path).
type headerOnWrite struct {
	http.ResponseWriter
	status int
	sent   bool
}

func (w *headerOnWrite) send() {
	if !w.sent {
		w.sent = true
		w.ResponseWriter.WriteHeader(w.status)
	}
}

func (w *headerOnWrite) Write(b []byte) (int, error) {
	w.send()
	return w.ResponseWriter.Write(b)
}

func (w *headerOnWrite) ReadFrom(r io.Reader) (int64, error) {
	w.send()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// fetchError answers a fetch that failed before any byte was sent.
func (s *Server) fetchError(q *request, err error) {
	var cf *contentFailure
	if errors.As(err, &cf) {
		v := Verdict{Rule: q.rule.Name, Mode: string(q.rule.Mode), Revision: q.pol.Revision(), ExitCode: 13,
			Reasons: []string{fmt.Sprintf("rule %s: content: %s", q.rule.Name, cf.finding.Error())}}
		s.record(q, "blob", q.rt.Digest.String(), q.rt.Digest, v, false)
		s.deny(q, v, q.rt.Digest.String())
		return
	}
	var mm *mismatch
	if errors.As(err, &mm) {
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.DigestInvalid, "%s", mm.Error()))
		return
	}
	var sf *spoolFullError
	if errors.As(err, &sf) {
		writeSpoolFull(q.w, q.r, sf)
		return
	}
	var su *storeUnreadable
	if errors.As(err, &su) {
		q.w.Header().Set("Retry-After", "10")
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusServiceUnavailable, ocierr.Unavailable, "%v", err))
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && q.ctx().Err() != nil {
		return
	}
	s.upstreamError(q, err, ocierr.BlobUnknown)
}

// contentFailure is a blob refused by content inspection.
type contentFailure struct{ finding *content.Finding }

func (c *contentFailure) Error() string { return c.finding.Error() }

// mismatch is an upstream that sent bytes other than the digest names.
type mismatch struct {
	upstream string
	dgst     digest.Digest
	detail   string
}

func (m *mismatch) Error() string {
	return fmt.Sprintf("upstream %s sent a blob that does not match %s (%s); nothing was served or cached", m.upstream, m.dgst, m.detail)
}

// runFetch downloads one blob from the upstream into the spool, hashing (and
// inspecting) the same bytes as they arrive, and commits it to the store only
// when everything matched. It runs detached from any client request.
func (s *Server) runFetch(f *inflight.Fetch, up *upstream.Client, repo string, grant blobGrant,
	newInspector func(int64) (content.Inspector, error), late lateCheck, exp *tensorExpectation, rev, rule string) {
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
	var mm *mismatch
	var cf *contentFailure
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

// lateCheck inspects a fetched blob's spool file as the declarations
// allowed since its fetch started, returning the classes it inspected.
type lateCheck func(ctx context.Context, path string, size int64) ([]content.Class, error)

// lateDeclarations is the lateCheck of a content fetch that started with
// classes: before the fetch finishes, a finding recorded against the blob
// meanwhile refuses it, and classes the held grant gained meanwhile (a tag
// allowed while the bytes streamed, declaring the blob otherwise) are
// inspected over the verified spool file.
func (s *Server) lateDeclarations(rev, rule, rep string, dgst digest.Digest, opts content.Options, classes []content.Class) lateCheck {
	return func(ctx context.Context, path string, size int64) ([]content.Class, error) {
		if f, bad, err := s.badBlob(ctx, rev, rule, dgst, ""); err != nil {
			return nil, err
		} else if bad {
			return nil, &contentFailure{&content.Finding{Format: "content", Offset: -1, Reason: f}}
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
		bp := getStoreBuf()
		defer putStoreBuf(bp)
		if _, err := io.CopyBuffer(in, io.LimitReader(file, size), *bp); err != nil {
			_ = in.Close()
			var fd *content.Finding
			if errors.As(err, &fd) {
				return extra, &contentFailure{fd}
			}
			return nil, err
		}
		if err := in.Close(); err != nil {
			return extra, asFinding(err, "content")
		}
		return extra, nil
	}
}

// asFinding turns an inspector error into a contentFailure.
func asFinding(err error, format string) error {
	var fd *content.Finding
	if errors.As(err, &fd) {
		return &contentFailure{fd}
	}
	return &contentFailure{&content.Finding{Format: format, Offset: -1, Reason: err.Error()}}
}

// recordInspection records the outcome of inspecting a blob: format
// results per rule, tensor-expectation results per expectation as well. A
// failure purges cached decisions (every manifest referencing the blob is
// denied from then on).
// A finding marks the blob bad however it is declared; a pass counts only
// for the classes it was inspected as (see records.Records.PutInspected).
func (s *Server) recordInspection(ctx context.Context, rev, rule string, dgst digest.Digest, classes []content.Class, exp *tensorExpectation, cf *contentFailure) {
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
func (s *Server) inspectStored(q *request, grant blobGrant, size int64) error {
	ctx := q.ctx()
	rev, rule, dgst := q.pol.Revision(), q.rule.Name, q.rt.Digest
	exp, _ := s.tensors.Get(grantKey(rev, q.rt.Repository(), dgst))
	scopes := scopesOf(exp)
	for _, scope := range scopes {
		if f, bad, err := s.badBlob(ctx, rev, rule, dgst, scope); err != nil {
			return err
		} else if bad {
			return &contentFailure{&content.Finding{Format: "content", Offset: -1, Reason: f}}
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
		cf := asFinding(err, "content").(*contentFailure)
		s.recordInspection(ctx, rev, rule, dgst, classes, exp, cf)
		return cf
	}
	start := time.Now()
	err = s.inspectStoredWith(ctx, dgst, size, in)
	s.metrics.inspectDuration.Observe(time.Since(start).Seconds())
	var cf *contentFailure
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
func (s *Server) inspectedAs(ctx context.Context, rev, rule string, dgst digest.Digest, scopes []string, classes []content.Class) bool {
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
// does not hash it again). Findings come back as *contentFailure; other
// errors are store errors.
func (s *Server) inspectStoredWith(ctx context.Context, dgst digest.Digest, size int64, in content.Inspector) error {
	c, err := s.openStored(ctx, dgst, size)
	if err != nil {
		_ = in.Close()
		return err
	}
	defer c.Close()
	rc, err := c.reader()
	if err != nil {
		_ = in.Close()
		return err
	}
	defer rc.Close()
	h := dgst.Algorithm().Hash()
	bp := getStoreBuf()
	defer putStoreBuf(bp)
	buf := *bp
	var ferr error
	for ferr == nil {
		n, rerr := rc.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			_, ferr = in.Write(buf[:n])
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = in.Close()
			return rerr
		}
	}
	if ferr != nil {
		// A finding counts only for the blob's own bytes: hash the rest of
		// the copy before concluding anything about the blob.
		if _, err := io.CopyBuffer(h, rc, buf); err != nil {
			_ = in.Close()
			return err
		}
	}
	if got := digest.NewDigest(dgst.Algorithm(), h); got != dgst {
		_ = in.Close()
		s.storeCorrupt(ctx, dgst, "hashes to "+got.String())
		return fmt.Errorf("stored blob %s is corrupted", dgst)
	}
	if ferr == nil {
		s.verified(c)
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

func (s *Server) fetch(ctx context.Context, f *inflight.Fetch, up *upstream.Client, repo string, grant blobGrant,
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
	body := &stallReader{r: resp.Body, stall: up.Timeout(), cancel: cancel}
	defer body.stop()
	size := resp.ContentLength
	switch {
	case size < 0 && grant.Desc.Size > 0:
		size = grant.Desc.Size
	case size < 0:
		return &upstream.Error{Kind: upstream.Invalid, Upstream: up.Name, Msg: "blob " + dgst.String() + ": no Content-Length and no size in the manifest"}
	case grant.Desc.Size > 0 && size != grant.Desc.Size:
		return &mismatch{up.Name, dgst, fmt.Sprintf("%d bytes announced, the manifest says %d", size, grant.Desc.Size)}
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
	f.Begin(size)
	if in == nil {
		f.Ungate()
	}
	inspectStart := time.Now()
	// The spool is written as bytes arrive (readers follow it, never past
	// the held-back tail); hashing and inspection run alongside on their own
	// goroutine, on the very same buffers.
	check := newStreamCheck(dgst.Algorithm().Hash(), in, f)
	// A content finding aborts the clients at once, but it is recorded
	// against the blob only once the whole stream hashed to the digest: an
	// upstream sending other bytes must not get a good blob marked bad.
	var finding error
	var total int64
	// Every read goes to the spool at once (readers follow it); chunks of
	// at least chunkMin go to the check, or every read while readers wait
	// for the header to be accepted.
	buf, n := check.buffer(), 0
	for {
		m, rerr := body.Read(buf[n:])
		if m > 0 {
			total += int64(m)
			if total > size {
				check.stop()
				return &mismatch{up.Name, dgst, fmt.Sprintf("more than the %d bytes announced", size)}
			}
			if finding == nil {
				if _, werr := spoolWrite(f, buf[n:n+m]); werr != nil {
					check.stop()
					s.storageError(opSpool, s.spoolDir, size, werr)
					if store.IsNoSpace(werr) {
						// The spool file (total-m bytes) goes when the
						// fetch ends: make the rest of the room.
						s.roomFor(s.spoolDir, size, total-int64(m))
						return &spoolFullError{dgst, size, werr}
					}
					return fmt.Errorf("spool: %w", werr)
				}
			}
			n += m
		}
		if n > 0 && (n >= chunkMin || n == len(buf) || rerr != nil || !f.Ungated()) {
			if ierr := check.submit(buf[:n]); ierr != nil && finding == nil {
				finding = asFinding(ierr, "content")
				f.Finish(finding)
			}
			buf, n = check.buffer(), 0
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			check.stop()
			msg := rerr.Error()
			if body.stalled.Load() {
				msg = fmt.Sprintf("sent nothing for %s after %d of %d bytes", up.Timeout(), total, size)
			}
			return &upstream.Error{Kind: upstream.Unavailable, Upstream: up.Name, Msg: "blob " + dgst.String() + ": " + msg}
		}
	}
	check.release(buf)
	if finding == nil && total == size {
		s.storageOK(s.spoolDir) // the whole blob fit in the spool
	}
	sum, ierr := check.finish()
	if ierr != nil && finding == nil {
		finding = asFinding(ierr, "content")
	}
	if total != size {
		return &mismatch{up.Name, dgst, fmt.Sprintf("%d bytes received, %d announced", total, size)}
	}
	if got := digest.NewDigestFromBytes(dgst.Algorithm(), sum); got != dgst {
		return &mismatch{up.Name, dgst, "got " + got.String()}
	}
	if finding != nil {
		return finding
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
	if err := commitBlob(s.store, ctx, dgst, f.Path(), size); err != nil {
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
func (s *Server) checkStoredEvidence(ctx context.Context, desc ocispec.Descriptor, size int64) error {
	in, err := newEvidenceInspector(desc.MediaType, size, int64(s.cfg.Limits.MaxEvidenceSize))
	if err != nil {
		return asFinding(err, "evidence")
	}
	return s.inspectStoredWith(ctx, desc.Digest, size, in)
}

// stallReader cancels a fetch whose body sends nothing for stall.
type stallReader struct {
	r       io.Reader
	stall   time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	stalled atomic.Bool
}

func (s *stallReader) Read(p []byte) (int, error) {
	if s.timer == nil && s.stall > 0 {
		s.timer = time.AfterFunc(s.stall, func() { s.stalled.Store(true); s.cancel() })
	}
	n, err := s.r.Read(p)
	if n > 0 && s.timer != nil {
		s.timer.Reset(s.stall)
	}
	return n, err
}

func (s *stallReader) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// streamCheck hashes and inspects a blob's chunks on its own goroutine, in
// order, while the fetch keeps reading and spooling. Buffers circulate
// between the two through a small pool, which bounds memory per fetch.
type streamCheck struct {
	h      hash.Hash
	in     content.Inspector
	f      *inflight.Fetch
	work   chan []byte
	free   chan []byte
	done   chan struct{}
	err    error // written by the goroutine before failed is set
	failed atomic.Bool
}

const (
	checkBuffers   = 4
	checkBufferLen = 1 << 20
	chunkMin       = 512 << 10
)

func newStreamCheck(h hash.Hash, in content.Inspector, f *inflight.Fetch) *streamCheck {
	c := &streamCheck{h: h, in: in, f: f, work: make(chan []byte, checkBuffers), free: make(chan []byte, checkBuffers), done: make(chan struct{})}
	for i := 0; i < checkBuffers; i++ {
		c.free <- make([]byte, checkBufferLen)
	}
	go c.run()
	return c
}

func (c *streamCheck) run() {
	defer close(c.done)
	for b := range c.work {
		c.h.Write(b)
		if c.in != nil && c.err == nil {
			if _, err := c.in.Write(b); err != nil {
				c.err = err
				c.failed.Store(true)
			} else if c.in.HeaderDone() {
				c.f.Ungate()
			}
		}
		c.free <- b[:cap(b)]
	}
}

// buffer waits for a free buffer.
func (c *streamCheck) buffer() []byte { return <-c.free }

// release returns an unused buffer.
func (c *streamCheck) release(b []byte) { c.free <- b[:cap(b)] }

// submit queues a filled buffer (every byte is hashed); it reports an
// inspection failure as soon as one is known.
func (c *streamCheck) submit(b []byte) error {
	c.work <- b
	if c.failed.Load() {
		return c.err
	}
	return nil
}

// finish waits for every chunk and returns the digest and any inspection error.
func (c *streamCheck) finish() ([]byte, error) {
	close(c.work)
	<-c.done
	return c.h.Sum(nil), c.err
}

// stop ends the goroutine after a failure elsewhere.
func (c *streamCheck) stop() {
	close(c.work)
	<-c.done
}
