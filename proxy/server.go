// Package proxy is pullgate's HTTP side: the OCI distribution pull API,
// routing to configured upstreams, streaming with verification, OCI errors.
package proxy

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/pullgate/pullgate/proxy/config"
)

// Server is a running pullgate proxy.
type Server struct {
	cfg *config.Config
	log *slog.Logger
	h   http.Handler
}

// Open builds a proxy from a loaded configuration: it opens the content
// store, loads the policy (refusing an invalid one) and prepares upstream
// clients. It does not listen; serve Handler() yourself or call Serve.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Server, error) {
	panic("not yet implemented")
}

// Handler is the registry API handler.
func (s *Server) Handler() http.Handler { return s.h }

// Close releases the store, watchers and audit log.
func (s *Server) Close() error { return nil }
