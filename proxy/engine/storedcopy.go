package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
)

// StoredCopy is one open copy of a stored blob and its identity.
type StoredCopy struct {
	ctx  context.Context
	st   *store.Store
	dgst digest.Digest
	size int64
	id   store.FileID
	file *os.File   // local store: the copy (read with pread, sent with sendfile)
	sf   *StoreFile // driver store: the reader content handed out
}

// OpenStored opens the stored copy of a blob of size bytes (not yet read).
func (s *Engine) OpenStored(ctx context.Context, dgst digest.Digest, size int64) (*StoredCopy, error) {
	c := &StoredCopy{ctx: ctx, st: s.store, dgst: dgst, size: size}
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

// ID is the identity of the copy opened.
func (c *StoredCopy) ID() store.FileID { return c.id }

// Size is the blob's size.
func (c *StoredCopy) Size() int64 { return c.size }

// Digest is the blob's digest.
func (c *StoredCopy) Digest() digest.Digest { return c.dgst }

// Close releases the copy.
func (c *StoredCopy) Close() {
	if c.file != nil {
		c.file.Close()
	}
	if c.sf != nil {
		c.sf.Close()
	}
}

// content is the copy for http.ServeContent (Range, conditionals, HEAD).
func (c *StoredCopy) Content() io.ReadSeeker {
	if c.file != nil {
		return c.file
	}
	if c.sf == nil {
		c.sf = &StoreFile{ctx: c.ctx, s: c.st, dgst: c.dgst, id: c.id, size: c.size}
	}
	return c.sf
}

// reader reads the copy from its start.
func (c *StoredCopy) Reader() (io.ReadCloser, error) {
	if c.file != nil {
		return io.NopCloser(io.NewSectionReader(c.file, 0, c.size)), nil
	}
	return c.st.ReaderOf(c.ctx, c.dgst, c.id, 0)
}

// unchanged reports whether the copy still has the identity it was opened
// with (so that what was hashed is what the record will name). Reads bound
// to the identity (S3) read nothing else.
func (c *StoredCopy) unchanged() bool {
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
func (s *Engine) MarkVerified(c *StoredCopy) {
	s.metrics.storeVerify.WithLabelValues("ok").Inc()
	if c.unchanged() {
		s.store.MarkVerified(c.dgst, c.id)
	}
}

// VerifyStored hashes a whole stored copy and returns what to serve: the
// bytes hashed themselves for a small blob, the copy (unchanged since, see
// StoredCopy.unchanged) otherwise. A corrupt copy is removed; errors mean
// nothing may be served from the store.
func (s *Engine) VerifyStored(ctx context.Context, c *StoredCopy) (io.ReadSeeker, error) {
	rc, err := c.Reader()
	if err != nil {
		s.StoreReadError(ctx, c.dgst, err)
		return nil, err
	}
	defer rc.Close()
	h := c.dgst.Algorithm().Hash()
	var small []byte
	if c.size <= Holdback {
		small = make([]byte, c.size)
		_, err = io.ReadFull(rc, small)
		h.Write(small)
	} else {
		buf := GetBuffer()
		defer PutBuffer(buf)
		var n int64
		n, err = io.CopyBuffer(struct{ io.Writer }{h}, io.LimitReader(rc, c.size), *buf)
		if err == nil && n != c.size {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		s.StoreReadError(ctx, c.dgst, err)
		return nil, err
	}
	if got := digest.NewDigest(c.dgst.Algorithm(), h); got != c.dgst {
		s.StoreCorrupt(ctx, c.dgst, "hashes to "+got.String())
		return nil, errStoredCorrupt
	}
	s.MarkVerified(c)
	if small != nil {
		return bytes.NewReader(small), nil
	}
	return c.Content(), nil
}

// StoreCorrupt removes a stored copy that does not match its digest: it is
// never served, and the next request fetches the blob again.
func (s *Engine) StoreCorrupt(ctx context.Context, dgst digest.Digest, detail string) {
	s.metrics.storeVerify.WithLabelValues("corrupt").Inc()
	s.log.Error("store: content does not match its digest; removing it", "digest", dgst, "detail", detail)
	if err := s.store.Delete(context.WithoutCancel(ctx), dgst); err != nil {
		s.log.Warn("store: removing corrupt content failed", "digest", dgst, "err", err)
	}
}

// StoreReadError counts and logs a failed read of a stored blob (unless
// the client left).
func (s *Engine) StoreReadError(ctx context.Context, dgst digest.Digest, err error) {
	if ctx.Err() != nil {
		return
	}
	s.metrics.storeVerify.WithLabelValues("error").Inc()
	s.log.Warn("store: reading blob failed", "digest", dgst, "err", err)
}

var storeBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// GetBuffer lends a 1 MiB copy buffer; PutBuffer gives it back.
func GetBuffer() *[]byte { return storeBufs.Get().(*[]byte) }

func PutBuffer(b *[]byte) { storeBufs.Put(b) }

// StoreFile is an io.ReadSeeker over stored content, for http.ServeContent
// (Range, If-Range, HEAD). It reads the copy with identity id only (see
// store.ReaderOf). A reader opened ahead (rc at rcOff) is used when the
// first read starts where it does.
type StoreFile struct {
	ctx   context.Context
	s     *store.Store
	dgst  digest.Digest
	id    store.FileID
	size  int64
	off   int64
	rc    io.ReadCloser
	rcOff int64
}

func (f *StoreFile) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if f.rc != nil && f.rcOff != f.off {
		f.rc.Close()
		f.rc = nil
	}
	if f.rc == nil {
		rc, err := f.s.ReaderOf(f.ctx, f.dgst, f.id, f.off)
		if err != nil {
			return 0, err
		}
		f.rc, f.rcOff = rc, f.off
	}
	n, err := f.rc.Read(p)
	f.off += int64(n)
	f.rcOff += int64(n)
	return n, err
}

func (f *StoreFile) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = f.off + offset
	case io.SeekEnd:
		abs = f.size + offset
	}
	if abs < 0 {
		return 0, errors.New("negative offset")
	}
	f.off = abs
	return abs, nil
}

func (f *StoreFile) Close() {
	if f.rc != nil {
		f.rc.Close()
	}
}

var errStoredCorrupt = errors.New("stored blob does not match its digest")

// NewStoreFile is a StoreFile reading the copy with identity id of a blob
// of size bytes, starting at off, with rc (a read opened at off) first.
func NewStoreFile(ctx context.Context, st *store.Store, dgst digest.Digest, id store.FileID, size, off int64, rc io.ReadCloser) *StoreFile {
	return &StoreFile{ctx: ctx, s: st, dgst: dgst, id: id, size: size, off: off, rc: rc, rcOff: off}
}
