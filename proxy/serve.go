package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
)

// storeFile is an io.ReadSeeker over stored content, for http.ServeContent
// (Range, If-Range, HEAD). It reads the copy with identity id only (see
// store.ReaderOf). A reader opened ahead (rc at rcOff) is used when the
// first read starts where it does.
type storeFile struct {
	ctx   context.Context
	s     *store.Store
	dgst  digest.Digest
	id    store.FileID
	size  int64
	off   int64
	rc    io.ReadCloser
	rcOff int64
}

func (f *storeFile) Read(p []byte) (int, error) {
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

func (f *storeFile) Seek(offset int64, whence int) (int64, error) {
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

func (f *storeFile) Close() {
	if f.rc != nil {
		f.rc.Close()
	}
}

// byteRange parses a single "bytes=" range against size. ok is false when
// the header is absent or not a single range we honour (the whole blob is
// then served); unsatisfiable is true for a syntactically valid range
// outside the blob.
func byteRange(h string, size int64) (start, end int64, ok, unsatisfiable bool) {
	if h == "" || !strings.HasPrefix(h, "bytes=") || strings.Contains(h, ",") {
		return 0, 0, false, false
	}
	spec := strings.TrimSpace(strings.TrimPrefix(h, "bytes="))
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, false
	}
	if a == "" { // suffix
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false, err == nil
		}
		if n > size {
			n = size
		}
		return size - n, size - 1, size > 0, size == 0
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false, false
	}
	e := size - 1
	if b != "" {
		e, err = strconv.ParseInt(b, 10, 64)
		if err != nil || e < s {
			return 0, 0, false, false
		}
		if e >= size {
			e = size - 1
		}
	}
	if s >= size {
		return 0, 0, false, true
	}
	return s, e, true, false
}

func setBlobHeaders(w http.ResponseWriter, dgst digest.Digest) {
	h := w.Header()
	h.Set("Docker-Content-Digest", dgst.String())
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", `"`+dgst.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "max-age=31536000")
}

func contentRange(start, end, size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", start, end, size)
}
