package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// maxListing bounds tags responses from upstreams.
const maxListing = 8 << 20

// listingAllowed applies the repository's rule to listings: repositories
// that no rule allows, or that a rule denies, are not listed either.
func (s *Server) listingAllowed(q *request, kind string) bool {
	v, ok := q.q.RuleVerdict()
	if ok && !v.Allowed {
		s.record(q, kind, q.rt.Reference, q.rt.Digest, v, false)
		s.deny(q, v, kind)
		return false
	}
	return true
}

func (s *Server) serveTags(q *request) {
	if !s.listingAllowed(q, "tags") {
		return
	}
	qs := q.r.URL.Query()
	n, last := qs.Get("n"), qs.Get("last")
	if n != "" {
		if v, err := strconv.Atoi(n); err != nil || v < 0 {
			ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadRequest, ocierr.Unsupported, "invalid n %q", n))
			return
		}
	}
	body, next, err := q.up.Tags(q.ctx(), q.rt.Repo, n, last, maxListing)
	if err != nil {
		s.upstreamError(q, err, ocierr.NameUnknown)
		return
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusBadGateway, ocierr.Unavailable, "upstream %s sent an invalid tag list", q.up.Name))
		return
	}
	list.Name = q.rt.Name
	if list.Tags == nil {
		list.Tags = []string{}
	}
	if next != nil {
		u := url.URL{Path: "/v2/" + q.rt.Name + "/tags/list"}
		if q.rt.NS {
			next.Set("ns", q.rt.Upstream)
		}
		u.RawQuery = next.Encode()
		q.w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, u.String()))
	}
	writeJSON(q, "application/json", list)
}

// serveReferrers answers the OCI 1.1 referrers API: from the upstream's API,
// or when it has none, from the sha256-<hex> index tag (the fallback scheme).
func (s *Server) serveReferrers(q *request) {
	if !s.listingAllowed(q, "referrers") {
		return
	}
	// The signatures and attestations of an artifact are listed only where
	// the artifact itself is allowed (they are served only there, too).
	sv, err := s.eng.SubjectVerdict(q.q, q.rt.Digest)
	switch {
	case upstream.IsKind(err, upstream.NotFound):
		// No such manifest here: nothing refers to it (the API answers an
		// empty index, never 404).
		writeJSON(q, ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}})
		return
	case err != nil:
		s.upstreamError(q, err, ocierr.ManifestUnknown)
		return
	}
	if !sv.Allowed || sv.WouldDeny {
		v := sv
		v.Allowed, v.WouldDeny = false, false
		if v.ExitCode == policy.ExitAllowed {
			v.ExitCode = policy.ExitUnmet
		}
		v.Reasons = append([]string{fmt.Sprintf("rule %s: referrers of %s, which is not allowed here", q.q.Rule().Name, q.rt.Digest)}, sv.Reasons...)
		s.record(q, "referrers", q.rt.Reference, q.rt.Digest, v, false)
		s.deny(q, v, "referrers")
		return
	}
	at := q.r.URL.Query().Get("artifactType")
	descs, err := s.referrers(q, q.rt.Digest, at)
	if err != nil {
		s.upstreamError(q, err, ocierr.ManifestUnknown)
		return
	}
	descs = s.eng.Servable(q.q, descs)
	// Listed only while the digest's decision is one a VSA says PASSED
	// for (not waived since).
	if signsVSA(sv) {
		if d, ok := s.vsaReferrer(q, q.rt.Digest, at); ok {
			descs = withVSA(descs, d)
		}
	}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	idx.SchemaVersion = 2
	if at != "" {
		q.w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(q, ocispec.MediaTypeImageIndex, idx)
}

// referrers lists the manifests whose subject is dgst, filtered by
// artifactType when given.
func (s *Server) referrers(q *request, dgst digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	return q.up.ReferrerDescriptors(q.ctx(), q.rt.Repo, dgst, artifactType, int64(s.cfg.Limits.MaxManifestSize))
}

func writeJSON(q *request, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		ocierr.Write(q.w, q.r, ocierr.New(http.StatusInternalServerError, ocierr.Unavailable, "%v", err))
		return
	}
	q.w.Header().Set("Content-Type", contentType)
	q.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method == http.MethodGet {
		_, _ = q.w.Write(b)
	}
}
