package proxy

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

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
