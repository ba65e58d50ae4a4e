package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// manifestMemTTL bounds how long a parsed manifest stays in memory.
const manifestMemTTL = time.Hour

// tagRecord is a tag's last successful resolution.
type tagRecord struct {
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType"`
	ResolvedAt time.Time     `json:"resolvedAt"`
}

// resolve turns the subject's reference into a digest: digests as they are,
// tags through the upstream (cached for the tag TTL), or, when the upstream
// is unreachable, the tag's last resolution within the offline grace.
func (s *Engine) resolve(q *Query) (digest.Digest, error) {
	if q.sub.Digest != "" {
		return q.sub.Digest, nil
	}
	ucfg, _ := s.cfg.Upstream(q.sub.Upstream)
	key := q.sub.Upstream + "/" + q.sub.Repo + ":" + q.sub.Tag
	if rec, ok := s.tags.Get(key); ok {
		return rec.Digest, nil
	}
	desc, err := q.up.Resolve(q.ctx(), q.sub.Repo, q.sub.Tag, int64(s.cfg.Limits.MaxManifestSize))
	if err == nil {
		rec := tagRecord{Digest: desc.Digest, MediaType: desc.MediaType, ResolvedAt: time.Now().UTC()}
		s.tags.Add(key, rec, ucfg.TagTTL.D())
		if perr := s.records.PutTag(q.ctx(), q.sub.Upstream, q.sub.Repo, q.sub.Tag, records.Tag(rec)); perr != nil {
			s.log.Warn("store: tag record write failed", "err", perr)
		}
		s.markPresent(q.ctx(), q.sub.Upstream, q.sub.Repo, desc.Digest)
		return desc.Digest, nil
	}
	if !upstream.IsKind(err, upstream.Unavailable) || ucfg.OfflineGrace.D() < 0 {
		return "", err
	}
	tr, merr := s.records.Tag(q.ctx(), q.sub.Upstream, q.sub.Repo, q.sub.Tag)
	if merr != nil { // none, or not a valid record
		return "", err
	}
	rec := tagRecord(tr)
	age := time.Since(rec.ResolvedAt)
	if age > ucfg.OfflineGrace.D() {
		return "", fmt.Errorf("%w (the last resolution of %s is %s old, beyond the offline grace of %s)", err, q.sub.Tag, age.Round(time.Second), ucfg.OfflineGrace.D())
	}
	s.log.Warn("upstream unreachable: using the last resolution of the tag", "upstream", q.sub.Upstream,
		"repository", q.sub.Repo, "tag", q.sub.Tag, "digest", rec.Digest, "age", age.Round(time.Second).String())
	s.metrics.offlineServes.Inc()
	// The record was written when the upstream resolved the tag in this
	// repository: the digest exists here (stores written before existence
	// records were kept have only this).
	s.markPresent(q.ctx(), q.sub.Upstream, q.sub.Repo, rec.Digest)
	return rec.Digest, nil
}

// verifiedManifest returns the verified manifest for a digest in a repository
// of an upstream: from memory or the store, or from the upstream (checked
// against the digest, the size limit and its declared media type) and then
// stored. Bytes are cached by digest alone, but they are returned for a
// repository only if the upstream has been seen to serve that digest there
// (a digest pulled in one repository must not open another repository's
// blobs): without such a record the upstream is asked first (confirmPresent).
func (s *Engine) verifiedManifest(ctx context.Context, up *upstream.Client, repo string, dgst digest.Digest) (*Manifest, error) {
	if m, ok := s.cachedManifest(ctx, dgst); ok {
		if err := s.confirmPresent(ctx, up, repo, dgst); err != nil {
			return nil, err
		}
		return m, nil
	}
	s.metrics.cache.WithLabelValues("manifest", "miss").Inc()
	body, mt, err := up.Manifest(ctx, repo, dgst.String(), int64(s.cfg.Limits.MaxManifestSize))
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(body, mt)
	if err != nil {
		return nil, &upstream.Error{Kind: upstream.Invalid, Upstream: up.Name, Msg: fmt.Sprintf("manifest %s: %v", dgst, err)}
	}
	s.markPresent(ctx, up.Name, repo, dgst)
	s.manifests.Add(dgst.String(), m, manifestMemTTL)
	if err := s.store.PutBytes(ctx, dgst, body); err != nil {
		s.log.Warn("store: manifest write failed", "digest", dgst, "err", err)
		s.storageError(opManifest, s.store.LocalRoot(), int64(len(body)), err)
	} else if err := s.records.PutManifestMeta(ctx, dgst, records.ManifestMeta{MediaType: m.MediaType}); err != nil {
		s.log.Warn("store: manifest metadata write failed", "digest", dgst, "err", err)
	}
	return m, nil
}

// cachedManifest returns a verified manifest held in memory or the store,
// whatever repository it was pulled in.
func (s *Engine) cachedManifest(ctx context.Context, dgst digest.Digest) (*Manifest, bool) {
	// Content-addressed and verified: a parsed copy in memory is as good as
	// the store's (this keeps warm decisions off the disk).
	if c, ok := s.manifests.Get(dgst.String()); ok {
		s.metrics.cache.WithLabelValues("manifest", "hit").Inc()
		return c, true
	}
	b, err := s.store.Get(ctx, dgst)
	if err != nil {
		return nil, false
	}
	meta, _ := s.records.ManifestMeta(ctx, dgst) // none: parsed by its content
	m, err := parseManifest(b, meta.MediaType)
	if err != nil {
		return nil, false
	}
	s.metrics.cache.WithLabelValues("manifest", "hit").Inc()
	s.manifests.Add(dgst.String(), m, manifestMemTTL)
	return m, true
}

// presentMemTTL bounds how long an existence record stays in memory (the
// store keeps it).
const presentMemTTL = 24 * time.Hour

// isPresent reports whether the upstream was seen to serve dgst in repo.
func (s *Engine) isPresent(ctx context.Context, upstreamName, repo string, dgst digest.Digest) bool {
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
func (s *Engine) markPresent(ctx context.Context, upstreamName, repo string, dgst digest.Digest) {
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
// included) as an *UnconfirmedError: nothing is served in a repository the
// upstream could not vouch for.
func (s *Engine) confirmPresent(ctx context.Context, up *upstream.Client, repo string, dgst digest.Digest) error {
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
		return &UnconfirmedError{Upstream: up.Name, Repo: repo, Digest: dgst, Err: err}
	}
	s.markPresent(ctx, up.Name, repo, dgst)
	return nil
}

// UnconfirmedError is a cached manifest that the upstream could not be
// asked to confirm exists in the requested repository.
type UnconfirmedError struct {
	Upstream, Repo string
	Digest         digest.Digest
	Err            error // why the upstream could not be asked
}

func (e *UnconfirmedError) Error() string {
	return fmt.Sprintf("upstream %s could not confirm that repository %s has manifest %s (%v); pullgate serves a cached manifest in a repository only after the upstream has served it there",
		e.Upstream, e.Repo, e.Digest, e.Err)
}

func (e *UnconfirmedError) Unwrap() error { return e.Err }
