// Package route parses registry API paths into what pullgate acts on:
// which configured upstream, which repository, which endpoint and reference.
// It accepts only names and references the OCI distribution spec allows, so
// nothing a client sends can address another host or escape a path.
package route

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Kind is the endpoint addressed.
type Kind int

// Endpoints of the pull API.
const (
	Base Kind = iota
	Manifest
	Blob
	Tags
	Referrers
	Upload // blob uploads (push): always unsupported
)

// Route is a parsed request path.
type Route struct {
	Kind Kind
	// Upstream is the configured upstream name.
	Upstream string
	// Repo is the repository path at the upstream (no upstream prefix).
	Repo string
	// Name is the name as the client used it (for Link headers and errors).
	Name string
	// Reference is a tag or digest (manifests), a digest (blobs, referrers).
	Reference string
	// Digest is set when Reference is a digest.
	Digest digest.Digest
	// NS reports the containerd mirror form (?ns=).
	NS bool
}

// Repository is what policy matches: "<upstream>/<repo>".
func (r Route) Repository() string { return r.Upstream + "/" + r.Repo }

// Error is a parse failure with the OCI code to answer.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

var (
	// From the OCI distribution spec.
	nameComponent = `[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*`
	nameRE        = regexp.MustCompile(`^` + nameComponent + `(?:/` + nameComponent + `)*$`)
	tagRE         = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	// Upstream names as configured: host[:port].
	upstreamRE = regexp.MustCompile(`^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{1,5})?$`)
	// MaxNameLength bounds repository names.
	MaxNameLength = 255
)

// ErrNotRegistry means the path is not under /v2/.
var ErrNotRegistry = errors.New("not a registry API path")

// Parse parses an escaped URL path and the ns query parameter.
func Parse(escapedPath, ns string) (Route, error) {
	if escapedPath != "/v2" && !strings.HasPrefix(escapedPath, "/v2/") {
		return Route{}, ErrNotRegistry
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(escapedPath, "/v2"), "/")
	if rest == "" {
		return Route{Kind: Base}, nil
	}
	// Percent-escapes, dot segments, backslashes and empty segments never
	// appear in valid names or references: refuse them before matching.
	if strings.ContainsAny(rest, "%\\") || strings.Contains(rest, "//") {
		return Route{}, &Error{"NAME_INVALID", fmt.Sprintf("invalid path %q: names contain only lowercase letters, digits and separators", escapedPath)}
	}
	segs := strings.Split(rest, "/")
	for _, s := range segs {
		if s == "." || s == ".." {
			return Route{}, &Error{"NAME_INVALID", fmt.Sprintf("invalid path %q: dot segments are not allowed", escapedPath)}
		}
	}
	var r Route
	var name string
	n := len(segs)
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		r.Kind, name, r.Reference = Manifest, strings.Join(segs[:n-2], "/"), segs[n-1]
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] != "uploads":
		r.Kind, name, r.Reference = Blob, strings.Join(segs[:n-2], "/"), segs[n-1]
	case n >= 3 && segs[n-2] == "referrers":
		r.Kind, name, r.Reference = Referrers, strings.Join(segs[:n-2], "/"), segs[n-1]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		r.Kind, name = Tags, strings.Join(segs[:n-2], "/")
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		r.Kind, name = Upload, strings.Join(segs[:n-2], "/")
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		r.Kind, name = Upload, strings.Join(segs[:n-3], "/")
	default:
		return Route{}, &Error{"NAME_UNKNOWN", fmt.Sprintf("unknown registry API path %q", escapedPath)}
	}
	if len(name) > MaxNameLength || !nameRE.MatchString(name) {
		return Route{}, &Error{"NAME_INVALID", fmt.Sprintf("invalid repository name %q", name)}
	}
	r.Name = name
	if ns != "" {
		if !upstreamRE.MatchString(ns) {
			return Route{}, &Error{"NAME_INVALID", fmt.Sprintf("invalid ns %q: expected a registry host name", ns)}
		}
		r.Upstream, r.Repo, r.NS = ns, name, true
	} else {
		up, repo, ok := strings.Cut(name, "/")
		if !ok {
			return Route{}, &Error{"NAME_INVALID", fmt.Sprintf("repository %q has no upstream prefix: pull <proxy>/<upstream>/<repository>, or use the containerd mirror form with ?ns=<upstream>", name)}
		}
		r.Upstream, r.Repo = up, repo
	}
	switch r.Kind {
	case Manifest:
		if strings.Contains(r.Reference, ":") {
			d, err := ParseDigest(r.Reference)
			if err != nil {
				return Route{}, err
			}
			r.Digest = d
		} else if !tagRE.MatchString(r.Reference) {
			return Route{}, &Error{"MANIFEST_INVALID", fmt.Sprintf("invalid tag %q", r.Reference)}
		}
	case Blob, Referrers:
		d, err := ParseDigest(r.Reference)
		if err != nil {
			return Route{}, err
		}
		r.Digest = d
	}
	return r, nil
}

// ParseDigest accepts sha256 and sha512 digests in canonical form.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil || (d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512) {
		return "", &Error{"DIGEST_INVALID", fmt.Sprintf("invalid digest %q: expected sha256:<64 hex> or sha512:<128 hex>", s)}
	}
	return d, nil
}
