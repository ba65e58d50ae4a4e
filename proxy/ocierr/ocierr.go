// Package ocierr writes errors in the OCI distribution format:
// {"errors":[{"code","message","detail"}]}.
package ocierr

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Codes from the OCI distribution spec.
const (
	BlobUnknown     = "BLOB_UNKNOWN"
	DigestInvalid   = "DIGEST_INVALID"
	ManifestInvalid = "MANIFEST_INVALID"
	ManifestUnknown = "MANIFEST_UNKNOWN"
	NameInvalid     = "NAME_INVALID"
	NameUnknown     = "NAME_UNKNOWN"
	SizeInvalid     = "SIZE_INVALID"
	Unauthorized    = "UNAUTHORIZED"
	Denied          = "DENIED"
	Unsupported     = "UNSUPPORTED"
	TooManyRequests = "TOOMANYREQUESTS"
	// Unavailable is not in the spec's list; used with 502/503 when an
	// upstream cannot be reached and nothing verified can be served.
	Unavailable = "UNAVAILABLE"
)

// Error is one OCI error with its HTTP status.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// New makes an error.
func New(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetail attaches machine-readable detail.
func (e *Error) WithDetail(d any) *Error { e.Detail = d; return e }

// Write sends the error. HEAD requests get the status and headers only.
func Write(w http.ResponseWriter, r *http.Request, e *Error) {
	body, _ := json.Marshal(struct {
		Errors []*Error `json:"errors"`
	}{[]*Error{e}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Docker-Content-Digest")
	h.Del("Content-Length")
	if e.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Basic realm="pullgate"`)
	}
	if r != nil && r.Method == http.MethodHead {
		w.WriteHeader(e.Status)
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(body)+1))
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}
