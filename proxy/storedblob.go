package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/stored"
	"github.com/pullgate/pullgate/cache/verified"
)

// Blobs in the store can change at rest: a stored copy is sent as is only
// when this process hashed that very copy to its digest, otherwise it is
// hashed (cache/stored, cache/verified) before or while it is served, and a
// corrupt one is removed and fetched again, never served complete.

// serveStored serves a blob the store holds. It reports false when nothing
// was sent and the request should be served as a cache miss (from the
// upstream): the stored copy was corrupt and is removed, it vanished, or it
// could not be read.
func (s *Server) serveStored(q *request, dgst digest.Digest, size int64) bool {
	ctx := q.ctx()
	if served, fallThrough := s.serveRecorded(q, dgst, size); !fallThrough {
		return served
	}
	c, err := stored.Open(ctx, s.store, dgst, size)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.metrics.storeVerify.WithLabelValues("error").Inc()
			s.log.Warn("store: cannot open blob; fetching it again", "digest", dgst, "err", err)
		}
		return false
	}
	defer c.Close()
	if c.ID().Size != size {
		s.storeCorrupt(ctx, dgst, fmt.Sprintf("%d bytes stored, %d indexed", c.ID().Size, size))
		return false
	}
	if s.store.Verified(dgst, c.ID()) {
		s.serveStoredContent(q, c.Content())
		return true
	}
	if size <= holdback || q.r.Method == http.MethodHead || conditional(q.r) {
		// Nothing of a small blob, a HEAD, a Range or a conditional
		// request is sent before the whole copy hashed to the digest.
		rs, err := s.verifyStored(ctx, c)
		if err != nil {
			return ctx.Err() != nil // the client left: nothing more to do
		}
		s.serveStoredContent(q, rs)
		return true
	}
	rc, err := c.Reader()
	if err != nil {
		s.metrics.storeVerify.WithLabelValues("error").Inc()
		s.log.Warn("store: cannot read blob; fetching it again", "digest", dgst, "err", err)
		return false
	}
	defer rc.Close()
	s.streamStored(q, c, rc)
	return true
}

// serveRecorded serves a copy this process verified from a store whose
// reads are bound to the recorded identity (S3): the read at the requested
// offset is opened before anything is sent, on condition that the object
// is still the one recorded, so one request replaces a look at the object
// and a read of it. It falls through (to openStored and the hashing paths)
// for a HEAD, without a record, or when the object was replaced.
func (s *Server) serveRecorded(q *request, dgst digest.Digest, size int64) (served, fallThrough bool) {
	if !s.store.BindsReads() || q.r.Method == http.MethodHead {
		return false, true
	}
	id, ok := s.store.Recorded(dgst)
	if !ok || id.Size != size {
		return false, true
	}
	var off int64
	if start, _, ok, unsatisfiable := byteRange(q.r.Header.Get("Range"), size); ok && !unsatisfiable {
		off = start
	}
	ctx := q.ctx()
	rc, err := s.store.ReaderOf(ctx, dgst, id, off)
	switch {
	case errors.Is(err, store.ErrReplaced):
		s.metrics.storeVerify.WithLabelValues("replaced").Inc()
		s.log.Warn("store: the verified copy was replaced by another writer; hashing the new one", "digest", dgst)
		return false, true
	case errors.Is(err, store.ErrNotFound):
		return false, false
	case err != nil:
		s.storeReadError(ctx, dgst, err)
		return false, false
	}
	f := stored.NewFile(ctx, s.store, dgst, id, size, off, rc)
	defer f.Close()
	s.serveStoredContent(q, f)
	return true, false
}

// verified records a copy that hashed to its digest.
func (s *Server) verified(c *stored.Copy) {
	s.metrics.storeVerify.WithLabelValues("ok").Inc()
	c.Record()
}

func (s *Server) serveStoredContent(q *request, rs io.ReadSeeker) {
	s.metrics.cache.WithLabelValues("blob", "hit").Inc()
	http.ServeContent(s.metrics.countingWriter(q.w, "store"), q.r, "", time.Time{}, rs)
}

// conditional reports whether ServeContent could answer with other than the
// whole blob.
func conditional(r *http.Request) bool {
	for _, h := range []string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// verifyStored hashes a whole stored copy and returns what to serve: the
// bytes hashed themselves for a small blob, the copy (unchanged since, see
// stored.Copy.Unchanged) otherwise. A corrupt copy is removed; errors mean
// nothing may be served from the store.
func (s *Server) verifyStored(ctx context.Context, c *stored.Copy) (io.ReadSeeker, error) {
	rs, err := c.Verify(holdback)
	if err != nil {
		return nil, s.storedError(ctx, c.Digest(), err)
	}
	s.verified(c)
	return rs, nil
}

// storedError reports a failed read of a stored copy (a *stored.ReadError)
// or removes a corrupt one (a *verified.MismatchError).
func (s *Server) storedError(ctx context.Context, dgst digest.Digest, err error) error {
	var mm *verified.MismatchError
	if errors.As(err, &mm) {
		s.storeCorrupt(ctx, dgst, "hashes to "+mm.Got.String())
		return errStoredCorrupt
	}
	s.storeReadError(ctx, dgst, err)
	return err
}

var errStoredCorrupt = errors.New("stored blob does not match its digest")

// streamStored sends a stored copy that is not recorded as verified while
// hashing it, holding back its last bytes until the digest matched: on a
// mismatch the response is aborted (the client never holds a complete body)
// and the copy removed, so that the next request fetches it again.
func (s *Server) streamStored(q *request, c *stored.Copy, rc io.Reader) {
	s.metrics.cache.WithLabelValues("blob", "hit").Inc()
	q.w.Header().Set("Content-Length", strconv.FormatInt(c.ID().Size, 10))
	q.w.WriteHeader(http.StatusOK)
	w := s.metrics.countingWriter(q.w, "store")
	err := c.Stream(w, rc, holdback, func() { s.verified(c) })
	var we *stored.WriteError
	switch {
	case err == nil, errors.As(err, &we):
		return // sent, or the client left
	default:
		s.storedError(q.ctx(), c.Digest(), err)
		panic(http.ErrAbortHandler)
	}
}

// storeCorrupt removes a stored copy that does not match its digest: it is
// never served, and the next request fetches the blob again.
func (s *Server) storeCorrupt(ctx context.Context, dgst digest.Digest, detail string) {
	s.metrics.storeVerify.WithLabelValues("corrupt").Inc()
	s.log.Error("store: content does not match its digest; removing it", "digest", dgst, "detail", detail)
	if err := s.store.Delete(context.WithoutCancel(ctx), dgst); err != nil {
		s.log.Warn("store: removing corrupt content failed", "digest", dgst, "err", err)
	}
}

func (s *Server) storeReadError(ctx context.Context, dgst digest.Digest, err error) {
	if ctx.Err() != nil {
		return
	}
	s.metrics.storeVerify.WithLabelValues("error").Inc()
	s.log.Warn("store: reading blob failed", "digest", dgst, "err", err)
}
