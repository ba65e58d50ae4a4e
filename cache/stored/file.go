package stored

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
)

// File is an io.ReadSeeker over stored content, for http.ServeContent
// (Range, If-Range, HEAD). It reads the copy with identity id only (see
// store.ReaderOf). A reader opened ahead (rc at off) is used when the
// first read starts where it does.
type File struct {
	ctx   context.Context
	s     *store.Store
	dgst  digest.Digest
	id    store.FileID
	size  int64
	off   int64
	rc    io.ReadCloser
	rcOff int64
}

// NewFile reads the copy of dgst with identity id, of size bytes, from off;
// rc (may be nil) is a reader of it opened at off.
func NewFile(ctx context.Context, st *store.Store, dgst digest.Digest, id store.FileID, size, off int64, rc io.ReadCloser) *File {
	return &File{ctx: ctx, s: st, dgst: dgst, id: id, size: size, off: off, rc: rc, rcOff: off}
}

func (f *File) Read(p []byte) (int, error) {
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

func (f *File) Seek(offset int64, whence int) (int64, error) {
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

// Close closes the reader it holds.
func (f *File) Close() {
	if f.rc != nil {
		f.rc.Close()
	}
}
