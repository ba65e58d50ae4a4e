package proxy

import (
	"context"
	"fmt"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/proxy/route"
)

// Decision is the result of Decide: the verdict about one reference.
type Decision struct {
	Verdict
	Repository string        `json:"repository"`
	Reference  string        `json:"reference"`
	Digest     digest.Digest `json:"digest,omitempty"`
	MediaType  string        `json:"mediaType,omitempty"`
}

// Decide runs the same engine as a pull (tag resolution, manifest
// verification, evidence, policy) for upstream/repo:ref, without serving
// anything. `pullgate verify` uses it.
func (s *Server) Decide(ctx context.Context, upstreamName, repo, ref string) (Decision, error) {
	up, ok := s.upstreams[upstreamName]
	if !ok {
		return Decision{}, fmt.Errorf("unknown upstream %q", upstreamName)
	}
	kind := "manifests"
	rt, err := route.Parse("/v2/"+repo+"/"+kind+"/"+ref, upstreamName)
	if err != nil {
		return Decision{}, err
	}
	rt, _, _ = s.upstreamOf(rt)
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return Decision{}, err
	}
	r.RemoteAddr = "pullgate-verify"
	q := &request{r: r, rt: rt, up: up, pol: s.policy.Current()}
	q.rule = q.pol.Match(rt.Repository())
	d := Decision{Repository: rt.Repository(), Reference: ref}
	if v, ok := ruleVerdict(q.pol, q.rule, rt.Repository()); ok && !v.Allowed {
		d.Verdict = v
		return d, nil
	}
	dgst, err := s.resolve(q)
	if err != nil {
		return d, err
	}
	body, m, err := s.manifestBytes(ctx, up, rt.Repo, dgst)
	if err != nil {
		return d, err
	}
	s.persistLinks(ctx, rt.Upstream, rt.Repo, dgst, m)
	d.Verdict, _ = s.decideManifest(q, dgst, body, m)
	d.Digest, d.MediaType = dgst, m.MediaType
	return d, nil
}
