package proxy

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

func (s *Server) serveManifest(q *request) {
	ref := q.rt.Reference
	// Rules that decide without the artifact never contact the upstream.
	if v, ok := q.q.RuleVerdict(); ok && !v.Allowed {
		s.record(q, "manifest", ref, q.rt.Digest, v, false)
		s.deny(q, v, ref)
		return
	}
	// The referrers tag of a digest with a VSA is pullgate's (vsa.go).
	if s.serveVSAFallback(q) {
		return
	}
	dgst, err := s.eng.Resolve(q.q)
	if err != nil {
		s.upstreamError(q, err, ocierr.ManifestUnknown)
		return
	}
	body, m, ok := s.admitManifest(q, dgst)
	if !ok {
		return
	}
	accept := parseAccept(q.r)
	switch accept.negotiate(m.MediaType, q.rt.Digest == "") {
	case notAcceptable:
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusNotFound, ocierr.ManifestUnknown,
			"manifest %s is %s, which the request's Accept header does not include", dgst, m.MediaType))
		return
	case defaultPlatform:
		// As distribution does for clients that do not accept manifest
		// lists: the tag answers with the list's linux/amd64 image, decided
		// like a pull of that image by digest.
		child, found := defaultPlatformChild(m)
		if !found {
			ocierr.Write(q.w, q.r, ocierr.New(http.StatusNotFound, ocierr.ManifestUnknown,
				"manifest %s is a manifest list without a linux/amd64 image, and the request's Accept header does not include %s", dgst, m.MediaType))
			return
		}
		if body, m, ok = s.admitManifest(q.about(child), child); !ok {
			return
		}
		if m.MediaType == mtDockerManifest && !accept.dockerManifest {
			ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadRequest, ocierr.ManifestInvalid,
				"tag %s is a manifest list, whose linux/amd64 image %s is %s; the request's Accept header includes neither type", ref, child, m.MediaType))
			return
		}
		dgst = child
	}
	writeObject(q, m.MediaType, dgst, body)
}

// writeObject answers 200 with body (a manifest, a VSA object), of
// mediaType and digest dgst (its headers only, for HEAD).
func writeObject(q *request, mediaType string, dgst digest.Digest, body []byte) {
	h := q.w.Header()
	h.Set("Content-Type", mediaType)
	h.Set("Docker-Content-Digest", dgst.String())
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("ETag", `"`+dgst.String()+`"`)
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method == http.MethodGet {
		_, _ = q.w.Write(body)
	}
}

// admitManifest fetches the manifest dgst for q's repository (cache or
// upstream), decides it under q's rule, records the decision and grants its
// blobs. It answers the client itself (error or denial) and reports false
// when the manifest is not to be served.
func (s *Server) admitManifest(q *request, dgst digest.Digest) ([]byte, *engine.Manifest, bool) {
	m, v, cached, err := s.eng.AdmitManifest(q.q, dgst)
	if err != nil {
		// A VSA this proxy signed is no upstream's manifest (vsa.go).
		if !s.serveVSAObject(q, true) {
			s.upstreamError(q, err, ocierr.ManifestUnknown)
		}
		return nil, nil, false
	}
	if !v.Allowed && s.serveVSAObject(q, true) {
		return nil, nil, false
	}
	s.record(q, "manifest", q.rt.Reference, dgst, v, cached)
	if !v.Allowed {
		s.deny(q, v, q.rt.Reference)
		return nil, nil, false
	}
	return m.Raw, m, true
}

// Manifest media types, as Accept names them.
const (
	mtOCIManifest    = ocimanifest.MediaTypeOCIManifest
	mtOCIIndex       = ocimanifest.MediaTypeOCIIndex
	mtDockerManifest = ocimanifest.MediaTypeDockerManifest
	mtDockerList     = ocimanifest.MediaTypeDockerList
)

// acceptSet is what a request's Accept header says about manifest types.
type acceptSet struct {
	header                                  bool // the request has an Accept header
	ociManifest, dockerManifest, dockerList bool // types it names
}

// parseAccept reads Accept as distribution's registry does
// (registry/handlers/manifests.go): every Accept header, each split on
// commas, each element parsed as a media type (malformed ones skipped);
// parameters, q=0 included, are ignored, and wildcards name no type.
func parseAccept(r *http.Request) acceptSet {
	vals := r.Header.Values("Accept")
	a := acceptSet{header: len(vals) > 0}
	for _, v := range vals {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			switch mt {
			case mtOCIManifest:
				a.ociManifest = true
			case mtDockerManifest:
				a.dockerManifest = true
			case mtDockerList:
				a.dockerList = true
			}
		}
	}
	return a
}

// negotiation is how a manifest request is answered once its manifest is
// allowed.
type negotiation int

const (
	serveStored     negotiation = iota // the manifest as stored
	notAcceptable                      // 404 MANIFEST_UNKNOWN
	defaultPlatform                    // a manifest list's linux/amd64 image instead
)

// negotiate answers as distribution v3 does for the same request, so that
// a client gets from pullgate what it gets from such an upstream: an OCI
// image manifest only when Accept names its type; an OCI index and a Docker
// schema 2 manifest whatever Accept says; a Docker manifest list by digest
// whatever Accept says, and by tag, when Accept does not name the list
// type, its linux/amd64 image. A request without an Accept header gets the
// manifest as stored (RFC 9110: no Accept accepts any type; distribution
// answers 404 for an OCI image manifest there and the linux/amd64 image
// for a manifest list's tag).
func (a acceptSet) negotiate(mediaType string, byTag bool) negotiation {
	switch {
	case !a.header:
		return serveStored
	case mediaType == mtOCIManifest && !a.ociManifest:
		return notAcceptable
	case mediaType == mtDockerList && byTag && !a.dockerList:
		return defaultPlatform
	}
	return serveStored
}

// defaultPlatformChild is the first linux/amd64 entry of an index (the one
// distribution serves to clients that do not accept manifest lists).
func defaultPlatformChild(m *engine.Manifest) (digest.Digest, bool) {
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			return d.Digest, true
		}
	}
	return "", false
}

// upstreamError maps an upstream failure to an OCI error for the client.
func (s *Server) upstreamError(q *request, err error, notFoundCode string) {
	var uc *engine.UnconfirmedError
	if errors.As(err, &uc) {
		status := http.StatusBadGateway
		var ue *upstream.Error
		if errors.As(uc.Err, &ue) && ue.Kind == upstream.Throttled {
			status = http.StatusTooManyRequests
			if ue.RetryAfter != "" {
				q.w.Header().Set("Retry-After", ue.RetryAfter)
			}
		}
		code := ocierr.Unavailable
		if status == http.StatusTooManyRequests {
			code = ocierr.TooManyRequests
		}
		s.log.Warn("manifest not confirmed in repository", "upstream", uc.Upstream, "repository", uc.Repo, "digest", uc.Digest, "err", uc.Err)
		ocierr.Write(q.w, q.r, ocierr.New(status, code, "%s", uc.Error()))
		return
	}
	var ue *upstream.Error
	if !errors.As(err, &ue) {
		if errors.Is(err, context.Canceled) {
			return
		}
		s.log.Error("request failed", "path", q.r.URL.Path, "err", err)
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.Unavailable, "%v", err))
		return
	}
	switch ue.Kind {
	case upstream.NotFound:
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusNotFound, notFoundCode, "%s", ue.Error()))
	case upstream.Throttled:
		if ue.RetryAfter != "" {
			q.w.Header().Set("Retry-After", ue.RetryAfter)
		}
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusTooManyRequests, ocierr.TooManyRequests, "%s", ue.Error()))
	case upstream.Invalid:
		s.log.Warn("upstream sent invalid content", "upstream", ue.Upstream, "err", ue.Msg)
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.ManifestInvalid, "%s", ue.Error()))
	default:
		s.log.Warn("upstream unavailable", "upstream", ue.Upstream, "err", ue.Msg)
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.Unavailable, "%s; nothing verified is cached for this reference", ue.Error()))
	}
}
