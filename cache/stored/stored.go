// Package stored reads blobs the store holds as verified byte sources.
//
// Blobs in the store can change at rest (disk faults, other writers). A
// stored copy is sent as is (sendfile for the local store) only when this
// process hashed that very copy to its digest: the store records the
// identity (size, modification time, device and inode; on S3 the SHA-256
// checksum, ETag and version its write returned) of every copy a fetch
// committed after hashing it, and of every copy hashed here. On S3 every
// read of a recorded copy is conditional on that identity (If-Match,
// versionId, the response's checksum), so bytes another writer put under
// the key are never sent as the recorded ones; a copy known by its ETag
// alone (an MD5) is never recorded (store.ObjectID.Binds). Any other copy
// (after a restart, a rewrite, or in a store shared with other replicas) is
// hashed (cache/verified) before or while it is served.
//
// A Copy is one open stored copy; its Verify, Stream and Inspect read it
// through verified.Reader and report a copy that does not match its digest
// as a *verified.MismatchError, a failed read as a *ReadError. Removing a
// corrupt copy, metrics and HTTP are the caller's.
package stored

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/verified"
)

// ReadError is a stored copy that could not be read (whole): nothing is
// concluded about its bytes.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// WriteError is a write to the destination of Stream that failed (the
// client left).
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// Copy is one open copy of a stored blob and its identity.
type Copy struct {
	ctx  context.Context
	st   *store.Store
	dgst digest.Digest
	size int64
	id   store.FileID
	file *os.File // local store: the copy (read with pread, sent with sendfile)
	sf   *File    // driver store: the reader content handed out
}

// Open opens the stored copy of dgst (of size bytes, as indexed) and takes
// its identity. It returns store.ErrNotFound when there is none.
func Open(ctx context.Context, st *store.Store, dgst digest.Digest, size int64) (*Copy, error) {
	c := &Copy{ctx: ctx, st: st, dgst: dgst, size: size}
	if st.LocalRoot() != "" {
		f, err := st.OpenLocal(dgst)
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
	id, err := st.Identify(ctx, dgst)
	if err != nil {
		return nil, err
	}
	c.id = id
	return c, nil
}

// Close closes the copy.
func (c *Copy) Close() {
	if c.file != nil {
		c.file.Close()
	}
	if c.sf != nil {
		c.sf.Close()
	}
}

// ID is the identity the copy was opened with.
func (c *Copy) ID() store.FileID { return c.id }

// Digest is the digest the copy is stored under.
func (c *Copy) Digest() digest.Digest { return c.dgst }

// Content is the copy for http.ServeContent (Range, conditionals, HEAD):
// the local file itself (sendfile), or a File reading the copy with this
// identity only.
func (c *Copy) Content() io.ReadSeeker {
	if c.file != nil {
		return c.file
	}
	if c.sf == nil {
		c.sf = NewFile(c.ctx, c.st, c.dgst, c.id, c.size, 0, nil)
	}
	return c.sf
}

// Reader reads the copy from its start.
func (c *Copy) Reader() (io.ReadCloser, error) {
	if c.file != nil {
		return io.NopCloser(io.NewSectionReader(c.file, 0, c.size)), nil
	}
	return c.st.ReaderOf(c.ctx, c.dgst, c.id, 0)
}

// Unchanged reports whether the copy still has the identity it was opened
// with (so that what was hashed is what the record will name). Reads bound
// to the identity (S3) read nothing else.
func (c *Copy) Unchanged() bool {
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

// Record records a copy that hashed to its digest as verified, unless it
// changed since it was opened.
func (c *Copy) Record() {
	if c.Unchanged() {
		c.st.MarkVerified(c.dgst, c.id)
	}
}

// verifier reads the copy's first size bytes through a verified.Reader.
func (c *Copy) verifier(opts ...verified.Option) (*verified.Reader, io.Closer, error) {
	rc, err := c.Reader()
	if err != nil {
		return nil, nil, &ReadError{err}
	}
	vr, err := verified.NewReader(io.LimitReader(rc, c.size), c.dgst, c.size, opts...)
	if err != nil {
		rc.Close()
		return nil, nil, &ReadError{err}
	}
	return vr, rc, nil
}

// readError classifies an error of a verified read of the copy: a copy
// that ended short was not read whole (a *ReadError, as any read failure);
// other bytes are a *verified.MismatchError.
func readError(err error) error {
	var mm *verified.MismatchError
	if errors.As(err, &mm) {
		if mm.GotSize < mm.Size {
			return &ReadError{io.ErrUnexpectedEOF}
		}
		return err
	}
	return &ReadError{err}
}

// Verify hashes the whole copy and returns what to serve: the bytes hashed
// themselves for a blob of at most small bytes, the copy (unchanged since,
// see Unchanged) otherwise. The copy is not recorded (see Record).
func (c *Copy) Verify(small int64) (io.ReadSeeker, error) {
	vr, rc, err := c.verifier()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if c.size <= small {
		b := make([]byte, c.size)
		if _, err := io.ReadFull(vr, b); err != nil {
			return nil, readError(err)
		}
		if err := finish(vr); err != nil {
			return nil, err
		}
		return bytes.NewReader(b), nil
	}
	bp := getBuf()
	defer putBuf(bp)
	for {
		if _, err := vr.Read(*bp); err == io.EOF {
			break
		} else if err != nil {
			return nil, readError(err)
		}
	}
	return c.Content(), nil
}

// finish reads a verified reader to its verdict.
func finish(vr *verified.Reader) error {
	var b [1]byte
	for {
		if _, err := vr.Read(b[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return readError(err)
		}
	}
}

// Stream writes the copy, read from r (its Reader), to w while hashing it,
// holding back its last holdback bytes until the digest matched: on a
// mismatch (or a failed read) w never received the whole copy. verifiedFn
// is called once the copy matched, before its tail is written. A failed
// write to w is a *WriteError.
func (c *Copy) Stream(w io.Writer, r io.Reader, holdback int64, verifiedFn func()) error {
	vr, err := verified.NewReader(io.LimitReader(r, c.size), c.dgst, c.size, verified.Holdback(holdback))
	if err != nil {
		return &ReadError{err}
	}
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	head := max(c.size-holdback, 0)
	for sent := int64(0); sent < head; {
		n, err := io.ReadFull(vr, buf[:min(int64(len(buf)), head-sent)])
		if err != nil {
			return readError(err)
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return &WriteError{err}
		}
		sent += int64(n)
	}
	if c.size-head > int64(len(buf)) {
		buf = make([]byte, c.size-head)
	}
	tail := buf[:c.size-head]
	if _, err := io.ReadFull(vr, tail); err != nil {
		return readError(err)
	}
	if err := finish(vr); err != nil {
		return err
	}
	verifiedFn()
	if _, err := w.Write(tail); err != nil {
		return &WriteError{err}
	}
	return nil
}

// Inspect feeds the copy to w (a content inspector) while hashing it. A
// write error of w (a finding) stops the feeding but not the hashing: a
// finding counts only for the blob's own bytes. It returns w's error and
// the error of the copy (a *verified.MismatchError or a *ReadError); the
// copy matched its digest when err is nil.
func (c *Copy) Inspect(w io.Writer) (werr, err error) {
	vr, rc, err := c.verifier()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for {
		n, rerr := vr.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if rerr == io.EOF {
			return werr, nil
		}
		if rerr != nil {
			var mm *verified.MismatchError
			if !errors.As(rerr, &mm) {
				rerr = &ReadError{rerr}
			}
			return werr, rerr
		}
	}
}

var bufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func getBuf() *[]byte  { return bufs.Get().(*[]byte) }
func putBuf(b *[]byte) { bufs.Put(b) }

// CopyBuffer copies with a pooled buffer of the size the stored-copy reads
// use.
func CopyBuffer(w io.Writer, r io.Reader) (int64, error) {
	bp := getBuf()
	defer putBuf(bp)
	return io.CopyBuffer(w, r, *bp)
}
