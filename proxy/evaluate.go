package proxy

import (
	"context"
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
)

// staticPolicy is a policy that never changes (until hot reload is wired).
type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Current() *policy.Policy { return s.p }

// loadPolicy loads the policy file; the server refuses to start on an
// invalid one.
func loadPolicy(ctx context.Context, path string, log *slog.Logger, m *Metrics) (policySource, func() error, error) {
	p, err := policy.Load(path)
	if err != nil {
		return nil, nil, err
	}
	return staticPolicy{p}, func() error { return nil }, nil
}

// evaluate decides a manifest under a verify rule: it gathers the evidence
// and asks the policy.
func (s *Server) evaluate(q *request, dgst digest.Digest, body []byte, m *parsedManifest) Verdict {
	in := policy.Input{Repository: q.rt.Repository(), Digest: dgst}
	return fromDecision(q.rule.Evaluate(in, q.pol.Revision()))
}
