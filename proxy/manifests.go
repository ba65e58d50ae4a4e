package proxy

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// cachedManifest is a verified manifest kept in memory.
type cachedManifest struct {
	body []byte
	m    *parsedManifest
}

// manifestMemTTL bounds how long a parsed manifest stays in memory.
const manifestMemTTL = time.Hour

// tagRecord is a tag's last successful resolution.
type tagRecord struct {
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType"`
	ResolvedAt time.Time     `json:"resolvedAt"`
}

func (s *Server) serveManifest(q *request) {
	ref := q.rt.Reference
	rep := q.rt.Repository()
	// Rules that decide without the artifact never contact the upstream.
	if v, ok := ruleVerdict(q.pol, q.rule, rep); ok && !v.Allowed {
		s.record(q, "manifest", ref, q.rt.Digest, v, false)
		s.deny(q, v, ref)
		return
	}
	dgst, err := s.resolve(q)
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
		cq := *q
		cq.rt.Reference, cq.rt.Digest = child.String(), child
		if body, m, ok = s.admitManifest(&cq, child); !ok {
			return
		}
		if m.MediaType == mtDockerManifest && !accept.dockerManifest {
			ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadRequest, ocierr.ManifestInvalid,
				"tag %s is a manifest list, whose linux/amd64 image %s is %s; the request's Accept header includes neither type", ref, child, m.MediaType))
			return
		}
		dgst = child
	}
	h := q.w.Header()
	h.Set("Content-Type", m.MediaType)
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
func (s *Server) admitManifest(q *request, dgst digest.Digest) ([]byte, *parsedManifest, bool) {
	body, m, err := s.manifestBytes(q.ctx(), q.up, q.rt.Repo, dgst)
	if err != nil {
		s.upstreamError(q, err, ocierr.ManifestUnknown)
		return nil, nil, false
	}
	s.persistLinks(q.ctx(), q.rt.Upstream, q.rt.Repo, dgst, m)
	v, cached := s.decideManifest(q, dgst, body, m)
	s.record(q, "manifest", q.rt.Reference, dgst, v, cached)
	if !v.Allowed {
		s.deny(q, v, q.rt.Reference)
		return nil, nil, false
	}
	s.grant(q, dgst, m, v)
	return body, m, true
}

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
func defaultPlatformChild(m *parsedManifest) (digest.Digest, bool) {
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			return d.Digest, true
		}
	}
	return "", false
}

// resolve turns the request's reference into a digest: digests as they are,
// tags through the upstream (cached for the tag TTL), or, when the upstream
// is unreachable, the tag's last resolution within the offline grace.
func (s *Server) resolve(q *request) (digest.Digest, error) {
	if q.rt.Digest != "" {
		return q.rt.Digest, nil
	}
	ucfg, _ := s.cfg.Upstream(q.rt.Upstream)
	key := q.rt.Upstream + "/" + q.rt.Repo + ":" + q.rt.Reference
	if rec, ok := s.tags.Get(key); ok {
		return rec.Digest, nil
	}
	desc, err := q.up.Resolve(q.ctx(), q.rt.Repo, q.rt.Reference, int64(s.cfg.Limits.MaxManifestSize))
	if err == nil {
		rec := tagRecord{Digest: desc.Digest, MediaType: desc.MediaType, ResolvedAt: time.Now().UTC()}
		s.tags.Add(key, rec, ucfg.TagTTL.D())
		if perr := s.records.PutTag(q.ctx(), q.rt.Upstream, q.rt.Repo, q.rt.Reference, records.Tag(rec)); perr != nil {
			s.log.Warn("store: tag record write failed", "err", perr)
		}
		s.markPresent(q.ctx(), q.rt.Upstream, q.rt.Repo, desc.Digest)
		return desc.Digest, nil
	}
	if !upstream.IsKind(err, upstream.Unavailable) || ucfg.OfflineGrace.D() < 0 {
		return "", err
	}
	tr, merr := s.records.Tag(q.ctx(), q.rt.Upstream, q.rt.Repo, q.rt.Reference)
	if merr != nil { // none, or not a valid record
		return "", err
	}
	rec := tagRecord(tr)
	age := time.Since(rec.ResolvedAt)
	if age > ucfg.OfflineGrace.D() {
		return "", fmt.Errorf("%w (the last resolution of %s is %s old, beyond the offline grace of %s)", err, q.rt.Reference, age.Round(time.Second), ucfg.OfflineGrace.D())
	}
	s.log.Warn("upstream unreachable: using the last resolution of the tag", "upstream", q.rt.Upstream,
		"repository", q.rt.Repo, "tag", q.rt.Reference, "digest", rec.Digest, "age", age.Round(time.Second).String())
	s.metrics.offlineServes.Inc()
	// The record was written when the upstream resolved the tag in this
	// repository: the digest exists here (stores written before existence
	// records were kept have only this).
	s.markPresent(q.ctx(), q.rt.Upstream, q.rt.Repo, rec.Digest)
	return rec.Digest, nil
}

// manifestBytes returns verified manifest bytes for a digest in a repository
// of an upstream: from memory or the store, or from the upstream (checked
// against the digest, the size limit and its declared media type) and then
// stored. Bytes are cached by digest alone, but they are returned for a
// repository only if the upstream has been seen to serve that digest there
// (a digest pulled in one repository must not open another repository's
// blobs): without such a record the upstream is asked first (confirmPresent).
func (s *Server) manifestBytes(ctx context.Context, up *upstream.Client, repo string, dgst digest.Digest) ([]byte, *parsedManifest, error) {
	if body, m, ok := s.cachedManifest(ctx, dgst); ok {
		if err := s.confirmPresent(ctx, up, repo, dgst); err != nil {
			return nil, nil, err
		}
		return body, m, nil
	}
	s.metrics.cache.WithLabelValues("manifest", "miss").Inc()
	body, mt, err := up.Manifest(ctx, repo, dgst.String(), int64(s.cfg.Limits.MaxManifestSize))
	if err != nil {
		return nil, nil, err
	}
	m, err := parseManifest(body, mt)
	if err != nil {
		return nil, nil, &upstream.Error{Kind: upstream.Invalid, Upstream: up.Name, Msg: fmt.Sprintf("manifest %s: %v", dgst, err)}
	}
	s.markPresent(ctx, up.Name, repo, dgst)
	s.manifests.Add(dgst.String(), &cachedManifest{body, m}, manifestMemTTL)
	if err := s.store.PutBytes(ctx, dgst, body); err != nil {
		s.log.Warn("store: manifest write failed", "digest", dgst, "err", err)
		s.storageError(opManifest, s.store.LocalRoot(), int64(len(body)), err)
	} else if err := s.records.PutManifestMeta(ctx, dgst, records.ManifestMeta{MediaType: m.MediaType}); err != nil {
		s.log.Warn("store: manifest metadata write failed", "digest", dgst, "err", err)
	}
	return body, m, nil
}

// cachedManifest returns a verified manifest held in memory or the store,
// whatever repository it was pulled in.
func (s *Server) cachedManifest(ctx context.Context, dgst digest.Digest) ([]byte, *parsedManifest, bool) {
	// Content-addressed and verified: a parsed copy in memory is as good as
	// the store's (this keeps warm decisions off the disk).
	if c, ok := s.manifests.Get(dgst.String()); ok {
		s.metrics.cache.WithLabelValues("manifest", "hit").Inc()
		return c.body, c.m, true
	}
	b, err := s.store.Get(ctx, dgst)
	if err != nil {
		return nil, nil, false
	}
	meta, _ := s.records.ManifestMeta(ctx, dgst) // none: parsed by its content
	m, err := parseManifest(b, meta.MediaType)
	if err != nil {
		return nil, nil, false
	}
	s.metrics.cache.WithLabelValues("manifest", "hit").Inc()
	s.manifests.Add(dgst.String(), &cachedManifest{b, m}, manifestMemTTL)
	return b, m, true
}

// presentMemTTL bounds how long an existence record stays in memory (the
// store keeps it).
const presentMemTTL = 24 * time.Hour

// isPresent reports whether the upstream was seen to serve dgst in repo.
func (s *Server) isPresent(ctx context.Context, upstreamName, repo string, dgst digest.Digest) bool {
	mk := upstreamName + "/" + repo + "@" + dgst.String()
	if _, ok := s.present.Get(mk); ok {
		return true
	}
	if ok, err := s.records.Present(ctx, upstreamName, repo, dgst); err != nil || !ok {
		return false
	}
	s.present.Add(mk, true, presentMemTTL)
	return true
}

// markPresent records that the upstream served (or resolved a tag to) dgst
// in repo, in memory and in the store.
func (s *Server) markPresent(ctx context.Context, upstreamName, repo string, dgst digest.Digest) {
	mk := upstreamName + "/" + repo + "@" + dgst.String()
	if _, ok := s.present.Get(mk); ok {
		return
	}
	if err := s.records.PutPresent(ctx, upstreamName, repo, dgst, time.Now().UTC()); err != nil {
		s.log.Warn("store: manifest existence record write failed", "err", err)
	}
	s.present.Add(mk, true, presentMemTTL)
}

// confirmPresent makes sure the upstream has dgst in repo before cached
// bytes are used there: a recorded sighting suffices, otherwise the upstream
// is asked (HEAD manifests/<digest>) and the answer recorded. A 404 comes
// back as the upstream's NotFound error; any other failure (upstream down
// included) as an *unconfirmedError: nothing is served in a repository the
// upstream could not vouch for.
func (s *Server) confirmPresent(ctx context.Context, up *upstream.Client, repo string, dgst digest.Digest) error {
	if s.isPresent(ctx, up.Name, repo, dgst) {
		return nil
	}
	desc, err := up.Resolve(ctx, repo, dgst.String(), int64(s.cfg.Limits.MaxManifestSize))
	if err == nil && desc.Digest != dgst {
		err = &upstream.Error{Kind: upstream.Invalid, Upstream: up.Name,
			Msg: fmt.Sprintf("manifest %s@%s: the upstream answered with digest %s", repo, dgst, desc.Digest)}
	}
	if err != nil {
		if upstream.IsKind(err, upstream.NotFound) {
			return err
		}
		return &unconfirmedError{upstream: up.Name, repo: repo, dgst: dgst, err: err}
	}
	s.markPresent(ctx, up.Name, repo, dgst)
	return nil
}

// unconfirmedError is a cached manifest that the upstream could not be
// asked to confirm exists in the requested repository.
type unconfirmedError struct {
	upstream, repo string
	dgst           digest.Digest
	err            error
}

func (e *unconfirmedError) Error() string {
	return fmt.Sprintf("upstream %s could not confirm that repository %s has manifest %s (%v); pullgate serves a cached manifest in a repository only after the upstream has served it there",
		e.upstream, e.repo, e.dgst, e.err)
}

func (e *unconfirmedError) Unwrap() error { return e.err }

// upstreamError maps an upstream failure to an OCI error for the client.
func (s *Server) upstreamError(q *request, err error, notFoundCode string) {
	var uc *unconfirmedError
	if errors.As(err, &uc) {
		status := http.StatusBadGateway
		var ue *upstream.Error
		if errors.As(uc.err, &ue) && ue.Kind == upstream.Throttled {
			status = http.StatusTooManyRequests
			if ue.RetryAfter != "" {
				q.w.Header().Set("Retry-After", ue.RetryAfter)
			}
		}
		code := ocierr.Unavailable
		if status == http.StatusTooManyRequests {
			code = ocierr.TooManyRequests
		}
		s.log.Warn("manifest not confirmed in repository", "upstream", uc.upstream, "repository", uc.repo, "digest", uc.dgst, "err", uc.err)
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
