package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/stored"
	"github.com/pullgate/pullgate/proxy/engine"
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
	c, err := stored.Open(ctx, s.eng.Store(), dgst, size)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.eng.Metrics().StoreVerification("error")
			s.log.Warn("store: cannot open blob; fetching it again", "digest", dgst, "err", err)
		}
		return false
	}
	defer c.Close()
	if c.ID().Size != size {
		s.eng.StoreCorrupt(ctx, dgst, fmt.Sprintf("%d bytes stored, %d indexed", c.ID().Size, size))
		return false
	}
	if s.eng.Store().Verified(dgst, c.ID()) {
		s.serveStoredContent(q, c.Content())
		return true
	}
	if size <= engine.Holdback || q.r.Method == http.MethodHead || conditional(q.r) {
		// Nothing of a small blob, a HEAD, a Range or a conditional
		// request is sent before the whole copy hashed to the digest.
		rs, err := s.eng.VerifyStored(ctx, c)
		if err != nil {
			return ctx.Err() != nil // the client left: nothing more to do
		}
		s.serveStoredContent(q, rs)
		return true
	}
	rc, err := c.Reader()
	if err != nil {
		s.eng.Metrics().StoreVerification("error")
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
	if !s.eng.Store().BindsReads() || q.r.Method == http.MethodHead {
		return false, true
	}
	id, ok := s.eng.Store().Recorded(dgst)
	if !ok || id.Size != size {
		return false, true
	}
	var off int64
	if start, _, ok, unsatisfiable := byteRange(q.r.Header.Get("Range"), size); ok && !unsatisfiable {
		off = start
	}
	ctx := q.ctx()
	rc, err := s.eng.Store().ReaderOf(ctx, dgst, id, off)
	switch {
	case errors.Is(err, store.ErrReplaced):
		s.eng.Metrics().StoreVerification("replaced")
		s.log.Warn("store: the verified copy was replaced by another writer; hashing the new one", "digest", dgst)
		return false, true
	case errors.Is(err, store.ErrNotFound):
		return false, false
	case err != nil:
		s.eng.StoreReadError(ctx, dgst, err)
		return false, false
	}
	f := stored.NewFile(ctx, s.eng.Store(), dgst, id, size, off, rc)
	defer f.Close()
	s.serveStoredContent(q, f)
	return true, false
}

func (s *Server) serveStoredContent(q *request, rs io.ReadSeeker) {
	s.eng.Metrics().CacheLookup("blob", "hit")
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

// streamStored sends a stored copy that is not recorded as verified while
// hashing it, holding back its last bytes until the digest matched: on a
// mismatch the response is aborted (the client never holds a complete body)
// and the copy removed, so that the next request fetches it again.
func (s *Server) streamStored(q *request, c *stored.Copy, rc io.Reader) {
	s.eng.Metrics().CacheLookup("blob", "hit")
	q.w.Header().Set("Content-Length", strconv.FormatInt(c.ID().Size, 10))
	q.w.WriteHeader(http.StatusOK)
	w := s.metrics.countingWriter(q.w, "store")
	err := c.Stream(w, rc, engine.Holdback, func() { s.eng.MarkVerified(c) })
	var we *stored.WriteError
	switch {
	case err == nil, errors.As(err, &we):
		return // sent, or the client left
	default:
		s.eng.StoredError(q.ctx(), c.Digest(), err)
		panic(http.ErrAbortHandler)
	}
}
