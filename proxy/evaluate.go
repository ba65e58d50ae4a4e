package proxy

import (
	"context"
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
)

// loadPolicy loads the policy file and follows it (and every trust file it
// names) for changes; the server refuses to start on an invalid policy, and
// a reload with an invalid one keeps the old policy (logged and counted).
func loadPolicy(ctx context.Context, path string, log *slog.Logger, m *Metrics) (*policy.Holder, func() error, error) {
	h, err := policy.NewHolder(path, policy.HolderOptions{
		Logger: log,
		OnReload: func(ev policy.ReloadEvent) {
			switch {
			case ev.Err != nil:
				m.Reloads.WithLabelValues("failed").Inc()
			case ev.Changed:
				m.Reloads.WithLabelValues("changed").Inc()
			default:
				m.Reloads.WithLabelValues("unchanged").Inc()
			}
		},
	})
	if err != nil {
		return nil, nil, err
	}
	if err := h.Watch(context.WithoutCancel(ctx)); err != nil {
		return nil, nil, err
	}
	return h, h.Close, nil
}

// ReloadPolicy re-reads the policy now (SIGHUP). An invalid policy keeps the
// one in force and returns the error.
func (s *Server) ReloadPolicy() error { return s.holder.ReloadFrom("signal") }

// evaluate decides a manifest under a verify rule: it gathers the evidence
// and asks the policy.
func (s *Server) evaluate(q *request, dgst digest.Digest, body []byte, m *parsedManifest) Verdict {
	in := policy.Input{Repository: q.rt.Repository(), Digest: dgst}
	return fromDecision(q.rule.Evaluate(in, q.pol.Revision()))
}
