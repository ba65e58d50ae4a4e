package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
)

// Blobs in the store can change at rest (disk faults, other writers). A
// stored copy is sent as is (sendfile for the local store) only when this
// process hashed that very copy to its digest: the store records the
// identity (size, modification time, device and inode; on S3 the SHA-256
// checksum, ETag and version its write returned) of every copy a fetch
// committed after hashing it, and of every copy hashed here. On S3 every
// read of a recorded copy is conditional on that identity (If-Match,
// versionId, the response's checksum), so bytes another writer put under
// the key are never sent as the recorded ones; a copy known by its ETag
// alone (an MD5) is never recorded (store.ObjectID.Binds). Any other
// copy (after a restart, a rewrite, or in a store shared with other
// replicas) is hashed before or while it is served, and a corrupt one is
// removed and fetched again, never served complete.

// serveStored serves a blob the store holds. It reports false when nothing
// was sent and the request should be served as a cache miss (from the
// upstream): the stored copy was corrupt and is removed, it vanished, or it
// could not be read.
func (s *Server) serveStored(q *request, dgst digest.Digest, size int64) bool {
	ctx := q.ctx()
	if served, fallThrough := s.serveRecorded(q, dgst, size); !fallThrough {
		return served
	}
	c, err := s.openStored(ctx, dgst, size)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.metrics.storeVerify.WithLabelValues("error").Inc()
			s.log.Warn("store: cannot open blob; fetching it again", "digest", dgst, "err", err)
		}
		return false
	}
	defer c.Close()
	if c.id.Size != size {
		s.storeCorrupt(ctx, dgst, fmt.Sprintf("%d bytes stored, %d indexed", c.id.Size, size))
		return false
	}
	if s.store.Verified(dgst, c.id) {
		s.serveStoredContent(q, c.content())
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
	rc, err := c.reader()
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
	f := &storeFile{ctx: ctx, s: s.store, dgst: dgst, id: id, size: size, off: off, rc: rc, rcOff: off}
	defer f.Close()
	s.serveStoredContent(q, f)
	return true, false
}

// storedCopy is one open copy of a stored blob and its identity.
type storedCopy struct {
	ctx  context.Context
	st   *store.Store
	dgst digest.Digest
	size int64
	id   store.FileID
	file *os.File   // local store: the copy (read with pread, sent with sendfile)
	sf   *storeFile // driver store: the reader content handed out
}

func (s *Server) openStored(ctx context.Context, dgst digest.Digest, size int64) (*storedCopy, error) {
	c := &storedCopy{ctx: ctx, st: s.store, dgst: dgst, size: size}
	if s.store.LocalRoot() != "" {
		f, err := s.store.OpenLocal(dgst)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		c.file, c.id = f, store.LocalFileID(fi)
		return c, nil
	}
	id, err := s.store.Identify(ctx, dgst)
	if err != nil {
		return nil, err
	}
	c.id = id
	return c, nil
}

func (c *storedCopy) Close() {
	if c.file != nil {
		c.file.Close()
	}
	if c.sf != nil {
		c.sf.Close()
	}
}

// content is the copy for http.ServeContent (Range, conditionals, HEAD).
func (c *storedCopy) content() io.ReadSeeker {
	if c.file != nil {
		return c.file
	}
	if c.sf == nil {
		c.sf = &storeFile{ctx: c.ctx, s: c.st, dgst: c.dgst, id: c.id, size: c.size}
	}
	return c.sf
}

// reader reads the copy from its start.
func (c *storedCopy) reader() (io.ReadCloser, error) {
	if c.file != nil {
		return io.NopCloser(io.NewSectionReader(c.file, 0, c.size)), nil
	}
	return c.st.ReaderOf(c.ctx, c.dgst, c.id, 0)
}

// unchanged reports whether the copy still has the identity it was opened
// with (so that what was hashed is what the record will name). Reads bound
// to the identity (S3) read nothing else.
func (c *storedCopy) unchanged() bool {
	if c.file == nil && c.st.BindsReads() {
		return true
	}
	var id store.FileID
	if c.file != nil {
		fi, err := c.file.Stat()
		if err != nil {
			return false
		}
		id = store.LocalFileID(fi)
	} else {
		var err error
		if id, err = c.st.Identify(c.ctx, c.dgst); err != nil {
			return false
		}
	}
	return id == c.id
}

// verified records a copy that hashed to its digest.
func (s *Server) verified(c *storedCopy) {
	s.metrics.storeVerify.WithLabelValues("ok").Inc()
	if c.unchanged() {
		s.store.MarkVerified(c.dgst, c.id)
	}
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
// storedCopy.unchanged) otherwise. A corrupt copy is removed; errors mean
// nothing may be served from the store.
func (s *Server) verifyStored(ctx context.Context, c *storedCopy) (io.ReadSeeker, error) {
	rc, err := c.reader()
	if err != nil {
		s.storeReadError(ctx, c.dgst, err)
		return nil, err
	}
	defer rc.Close()
	h := c.dgst.Algorithm().Hash()
	var small []byte
	if c.size <= holdback {
		small = make([]byte, c.size)
		_, err = io.ReadFull(rc, small)
		h.Write(small)
	} else {
		buf := getStoreBuf()
		defer putStoreBuf(buf)
		var n int64
		n, err = io.CopyBuffer(struct{ io.Writer }{h}, io.LimitReader(rc, c.size), *buf)
		if err == nil && n != c.size {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		s.storeReadError(ctx, c.dgst, err)
		return nil, err
	}
	if got := digest.NewDigest(c.dgst.Algorithm(), h); got != c.dgst {
		s.storeCorrupt(ctx, c.dgst, "hashes to "+got.String())
		return nil, errStoredCorrupt
	}
	s.verified(c)
	if small != nil {
		return bytes.NewReader(small), nil
	}
	return c.content(), nil
}

var errStoredCorrupt = errors.New("stored blob does not match its digest")

// streamStored sends a stored copy that is not recorded as verified while
// hashing it, holding back its last bytes until the digest matched: on a
// mismatch the response is aborted (the client never holds a complete body)
// and the copy removed, so that the next request fetches it again.
func (s *Server) streamStored(q *request, c *storedCopy, rc io.Reader) {
	ctx := q.ctx()
	s.metrics.cache.WithLabelValues("blob", "hit").Inc()
	q.w.Header().Set("Content-Length", strconv.FormatInt(c.size, 10))
	q.w.WriteHeader(http.StatusOK)
	w := s.metrics.countingWriter(q.w, "store")
	h := c.dgst.Algorithm().Hash()
	bp := getStoreBuf()
	defer putStoreBuf(bp)
	buf := *bp
	head := c.size - holdback
	for sent := int64(0); sent < head; {
		n, err := io.ReadFull(rc, buf[:min(int64(len(buf)), head-sent)])
		h.Write(buf[:n])
		if err != nil {
			s.storeReadError(ctx, c.dgst, err)
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return // the client left
		}
		sent += int64(n)
	}
	tail := buf[:holdback]
	if _, err := io.ReadFull(rc, tail); err != nil {
		s.storeReadError(ctx, c.dgst, err)
		panic(http.ErrAbortHandler)
	}
	h.Write(tail)
	if got := digest.NewDigest(c.dgst.Algorithm(), h); got != c.dgst {
		s.storeCorrupt(ctx, c.dgst, "hashes to "+got.String())
		panic(http.ErrAbortHandler)
	}
	s.verified(c)
	_, _ = w.Write(tail)
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

var storeBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func getStoreBuf() *[]byte  { return storeBufs.Get().(*[]byte) }
func putStoreBuf(b *[]byte) { storeBufs.Put(b) }
