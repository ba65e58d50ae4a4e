package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/proxy/ocierr"
)

func (s *Server) serveBlob(q *request) {
	dgst := q.rt.Digest
	ref := dgst.String()
	grant, v, ok, err := s.eng.AdmitBlob(q.q)
	if (err != nil || !ok) && s.serveVSAObject(q, false) {
		// A blob of a VSA this proxy signed (vsa.go).
		return
	}
	if err != nil {
		s.fetchError(q, err)
		return
	}
	if !ok {
		s.record(q, "blob", ref, dgst, v, false)
		s.deny(q, v, ref)
		return
	}
	s.serveGranted(q, grant)
}

// serveGranted serves a blob the grant lets out.
func (s *Server) serveGranted(q *request, grant engine.BlobGrant) {
	dgst := q.rt.Digest
	setBlobHeaders(q.w, dgst)
	// A copy this process verified is sent as is (sendfile for the local
	// store); any other is hashed before or while it is sent, and a corrupt
	// one is removed and served as a miss (see serveStored).
	if size, ok := s.eng.Store().Has(dgst); ok && s.serveStored(q, dgst, size) {
		return
	}
	s.eng.Metrics().CacheLookup("blob", "miss")
	if q.r.Method == http.MethodHead {
		s.headBlob(q, grant)
		return
	}
	s.streamBlob(q, grant)
}

// headBlob answers a HEAD of a granted blob the store does not hold with
// the size the upstream announces (checked against the manifest's).
func (s *Server) headBlob(q *request, grant engine.BlobGrant) {
	dgst := q.rt.Digest
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
}

// fetched is what sending needs of a download under way (an
// inflight.Fetch, from Engine.Fetch): its size once known, bytes as they
// are verified, and the outcome of the digest and content checks.
type fetched interface {
	Wait(ctx context.Context) (size int64, err error)
	CopyTo(ctx context.Context, w io.Writer, start, n int64) (int64, error)
	Verified(ctx context.Context) error
	Release()
}

// streamBlob serves an uncached blob from a coalesced upstream fetch.
func (s *Server) streamBlob(q *request, grant engine.BlobGrant) {
	f, err := s.eng.Fetch(q.q, grant)
	if err != nil {
		var sf *engine.SpoolFullError
		if errors.As(err, &sf) {
			writeSpoolFull(q.w, q.r, sf)
			return
		}
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusInternalServerError, ocierr.Unavailable, "%v", err))
		return
	}
	defer f.Release()
	size, err := f.Wait(q.ctx())
	if err != nil {
		q.w.Header().Del("Docker-Content-Digest")
		s.fetchError(q, err)
		return
	}
	start, n, status, ok := s.blobRange(q, f, size)
	if !ok || n <= 0 {
		return
	}
	s.sendFetched(q, f, start, n, status)
}

// blobRange answers the request's range over a fetched blob of size bytes:
// the first byte and length to send and the status. ok is false when it
// answered already (a range not satisfiable, a fetch that failed).
func (s *Server) blobRange(q *request, f fetched, size int64) (start, n int64, status int, ok bool) {
	start, end, partial, unsat := byteRange(q.r.Header.Get("Range"), size)
	h := q.w.Header()
	if unsat {
		h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusRequestedRangeNotSatisfiable, ocierr.SizeInvalid, "range not satisfiable"))
		return 0, 0, 0, false
	}
	status = http.StatusOK
	if !partial {
		start, end = 0, size-1
	} else {
		status = http.StatusPartialContent
		h.Set("Content-Range", contentRange(start, end, size))
	}
	n = end - start + 1
	if end < size-1 || n <= 0 {
		// This response would be complete before the fetch checked the
		// digest (a range that stops short of the end, an empty blob): it
		// is sent only once every byte was verified.
		if err := f.Verified(q.ctx()); err != nil {
			h.Del("Content-Range")
			h.Del("Docker-Content-Digest")
			s.fetchError(q, err)
			return 0, 0, 0, false
		}
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if n <= 0 {
		q.w.WriteHeader(status)
	}
	return start, n, status, true
}

// sendFetched sends n bytes from start of a fetch as they are verified.
func (s *Server) sendFetched(q *request, f fetched, start, n int64, status int) {
	h := q.w.Header()
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
			s.log.Warn("blob stream aborted", "digest", q.rt.Digest, "err", err)
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

// waivedRetry serves a blob again, once per request, when the content
// finding that refused it (cf, what this request's inspection met,
// recorded against the blob before the fetch reported it) is, text for
// text, one a policy exception waives for every allowed manifest the
// blob's grant comes from: the blob is then granted uninspected
// (engine.BlobGrant.Uninspected), and the pull that met the finding is
// served as the pulls after it are, audited as waived. Any other finding
// stays refused. Nothing was sent yet.
func (s *Server) waivedRetry(q *request, cf *engine.ContentFailure) bool {
	if q.waivedRetry {
		return false
	}
	q.waivedRetry = true
	g, _, ok, err := s.eng.AdmitBlob(q.q)
	if err != nil || !ok {
		return false
	}
	v, waived := q.q.WaivedBlob(g, cf)
	if !waived {
		return false
	}
	s.record(q, "blob", q.rt.Digest.String(), q.rt.Digest, v, false)
	s.serveGranted(q, g)
	return true
}

// fetchError answers a fetch that failed before any byte was sent.
func (s *Server) fetchError(q *request, err error) {
	var cf *engine.ContentFailure
	if errors.As(err, &cf) {
		if s.waivedRetry(q, cf) {
			return
		}
		v := q.q.ContentDenial(cf)
		s.record(q, "blob", q.rt.Digest.String(), q.rt.Digest, v, false)
		s.deny(q, v, q.rt.Digest.String())
		return
	}
	var mm *engine.Mismatch
	if errors.As(err, &mm) {
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.DigestInvalid, "%s", mm.Error()))
		return
	}
	var sf *engine.SpoolFullError
	if errors.As(err, &sf) {
		writeSpoolFull(q.w, q.r, sf)
		return
	}
	var su *engine.StoreUnreadable
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
