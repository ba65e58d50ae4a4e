package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/download"
	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/verified"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify/content"
)

// Holdback is how many final bytes of a streaming blob no client receives
// before the whole blob is verified.
const Holdback = 64 << 10

// fetchTimeout bounds one upstream blob download.
const fetchTimeout = 2 * time.Hour

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
	newInspector, late, scopes, rev, rule := p.newInspector, p.late, p.scopes, p.key.Revision, p.key.Rule
	dgst := grant.Desc.Digest
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	s.metrics.inflight.Inc()
	defer s.metrics.inflight.Dec()
	classes := grant.classes()
	var used content.Inspector // read once the download is over: what it recognised
	if newInspector != nil {
		inner := newInspector
		newInspector = func(size int64) (content.Inspector, error) {
			in, err := inner(size)
			used = in
			return in, err
		}
	}
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
		s.recordInspection(ctx, rev, rule, dgst, classes, scopes, "", cf)
	case err == nil && newInspector != nil && !grant.Evidence:
		// Only a content rule's inspection counts as one (the evidence
		// check is not).
		s.recordInspection(ctx, rev, rule, dgst, classes, scopes, content.FormatOf(used), nil)
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
	// Uninspected: a blob whose code-execution finding an exception
	// waived, checked against its digest only (BlobGrant.Uninspected).
	Uninspected bool `json:"uninspected,omitempty"`
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
	// scopes the inspection's results are recorded in (layerScopes).
	scopes []string
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
	if grant.Uninspected {
		p.key.Uninspected = true
		return p
	}
	exp, _ := s.tensors.Get(grantKey(rev, q.repository(), dgst))
	p.scopes = layerScopes(exp, opts.References)
	if exp != nil {
		p.key.Expectation = exp.id
	}
	report := s.reportReferences(q, dgst)
	p.newInspector = func(size int64) (content.Inspector, error) {
		return newLayerInspector(opts, classes, size, exp, report)
	}
	p.late = s.lateDeclarations(rev, q.rule.Name, q.repository(), dgst, opts, classes, exp)
	return p
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
	// goroutine, on the very same buffers. After a content finding no more
	// bytes reach the spool or the clients, but the fetch ends (and the
	// clients learn why) only once the whole stream hashed: an upstream
	// sending other bytes is a digest mismatch, never a content verdict
	// about the blob, and only a finding in the blob's own bytes is
	// recorded against it.
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
	s.commit(ctx, dgst, f.Path(), size)
	return nil
}

// commit stores a verified spool file. A failure is logged and counted,
// not returned: the verified bytes are served (from the spool) either
// way, and nothing partial is visible (the store links or copies under a
// temporary name and renames only a whole copy).
func (s *Engine) commit(ctx context.Context, dgst digest.Digest, path string, size int64) {
	err := s.disk.CommitBlob(s.store, ctx, dgst, path, size)
	if err == nil {
		s.storageOK(s.spoolDir, s.store.LocalRoot())
		return
	}
	s.log.Error("store: commit failed; the verified blob is served but not cached", "digest", dgst, "err", err)
	s.storageError(opCommit, s.store.LocalRoot(), size, err)
	if store.IsNoSpace(err) && s.store.LocalRoot() != "" {
		// A copy into the store removed on error holds nothing; a link
		// failed on the spool's filesystem gives the spool file back when
		// the fetch ends.
		held := int64(0)
		if sameFilesystem(s.spoolDir, s.store.LocalRoot()) {
			held = size
		}
		s.roomFor(s.store.LocalRoot(), size, held)
	}
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
