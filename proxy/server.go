// Package proxy is pullgate's HTTP side: the OCI distribution pull API,
// routing to configured upstreams, streaming with verification, OCI errors.
//
// The invariant it keeps: a client receives a manifest or a complete blob
// only if the exact bytes it receives were verified against the policy in
// force. Tags are resolved once per decision; decisions are about digests;
// the bytes served are the bytes hashed.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/verdict"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/route"
	"github.com/pullgate/pullgate/proxy/tlsreload"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// Server is a pullgate proxy: the registry API over a decision engine.
type Server struct {
	cfg     *config.Config
	log     *slog.Logger
	eng     *engine.Engine
	audit   *audit.Log
	metrics *Metrics

	// headDenials are manifest denials answered to a HEAD, for a while:
	// the GET the same client sends next for the same reference (dockerd
	// asks again with GET) is the same pull, recorded once.
	headDenials *verdict.Cache[bool]
	// auditFailing is set while audit writes fail (logged once).
	auditFailing atomic.Bool

	auth    *clientauth.Authenticator
	vsa     *vsaSigner // nil without a vsa: section (vsa.go)
	h       http.Handler
	closers []func() error
}

// Options are optional dependencies of Open.
type Options struct {
	// Registerer receives the proxy's Prometheus metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// OnAudit sees every audit event (the admin page's recent decisions).
	OnAudit func(audit.Event)
	// Version is pullgate's version, written in the VSAs it signs.
	Version string
	// Now is the clock decisions and VSAs are made at (nil: time.Now;
	// tests).
	Now func() time.Time
}

// Open builds a proxy from a loaded configuration: it opens the content
// store, loads the policy (refusing an invalid one) and prepares upstream
// clients. It does not listen: serve Handler() or call ListenAndServe.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Options) (*Server, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, headDenials: verdict.New[bool](4096)}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(reg)

	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	// Content store.
	var st *store.Store
	var err error
	if cfg.Storage.Driver == "" || cfg.Storage.Driver == "filesystem" {
		st, err = store.OpenFilesystem(ctx, cfg.Resolve(cfg.Storage.Path), store.Options{MaxBytes: int64(cfg.Storage.MaxSize), Log: log})
	} else {
		st, err = openDriverStore(ctx, cfg, log)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	s.closers = append(s.closers, st.Close)
	if st.LocalRoot() == "" {
		s.closers = append(s.closers, rescanEvery(st, log, rescanInterval))
	}
	s.metrics.storeIndex(reg, st)

	eopts := engine.Options{Registerer: reg, OnUpstreamRequest: s.metrics.upstreamRequest, Disk: testDisk, Now: o.Now}
	if cfg.VSA != nil {
		v, err := newVSASigner(cfg, records.New(st), o.Version, o.Now, reg, log)
		if err != nil {
			return nil, err
		}
		s.vsa, eopts.OnAllowed = v, v.onAllowed
		eopts.CheckPolicy = func(p *policy.Policy) error { return policy.SeparateKey(p, v.signer.Public(), "vsa.key") }
		s.closers = append(s.closers, v.Close)
	}
	eng, err := engine.New(ctx, cfg, st, log, eopts)
	if err != nil {
		return nil, err
	}
	s.eng = eng
	s.closers = append(s.closers, eng.Close)

	if cfg.Auth != nil {
		a, err := clientauth.New(cfg.Auth, cfg.Resolve, log, clientauth.Options{
			// The repository access rules see is the one policy sees
			// (Docker Hub's implicit library/ included).
			Repository: func(rt route.Route) string {
				rt, _, _ = s.upstreamOf(rt)
				return rt.Repository()
			},
		})
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		s.auth = a
	}

	al, err := audit.OpenWith(audit.Options{Path: cfg.Resolve(cfg.Audit.Path), MaxSize: int64(cfg.Audit.MaxSize), MaxFiles: cfg.Audit.MaxFiles})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	al.OnEvent = s.metrics.decision
	if o.OnAudit != nil {
		al.OnEvent = audit.Tee(s.metrics.decision, o.OnAudit)
	}
	s.audit = al
	_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pullgate_audit_events_dropped_total",
		Help: "Audit events dropped because the audit file could not be written while more than 8 MiB of events waited."},
		func() float64 { return float64(al.Dropped()) }))
	s.closers = append(s.closers, al.Close)

	s.h = s.routes()
	ok = true
	return s, nil
}

// Ready reports whether the proxy can serve: a policy is loaded, the
// content store accepts writes, and no disk it writes to was found full
// and is still too full for the write that failed (see storageFull).
func (s *Server) Ready() error {
	if s.eng.Policy() == nil {
		return errors.New("no policy loaded")
	}
	if err := s.eng.Store().WriteProbe(context.Background()); err != nil {
		return err
	}
	return s.eng.StorageFull()
}

// ReadyStatus says, for /readyz, how far the index of the store is: it is
// built in the background after a start, and the proxy serves meanwhile.
func (s *Server) ReadyStatus() string {
	st := s.eng.Store().IndexStatus()
	if st.Complete {
		return fmt.Sprintf("store index: complete, %d blobs, %d bytes (built in %s)", st.Blobs, st.Bytes, st.Elapsed.Round(time.Millisecond))
	}
	msg := fmt.Sprintf("store index: building for %s, %.0f%% of the store walked, %d blobs indexed; serving meanwhile (content not indexed yet is looked up in the store, the size limit holds over what is indexed)",
		st.Elapsed.Round(time.Second), 100*st.Fraction, st.Blobs)
	if st.Err != nil {
		msg += "; the walk failed and is retried: " + st.Err.Error()
	}
	return msg
}

// Handler is the registry API handler.
func (s *Server) Handler() http.Handler { return s.h }

// Store is the content store (tests inspect it).
func (s *Server) Store() *store.Store { return s.eng.Store() }

// Policy is the policy in force.
func (s *Server) Policy() *policy.Policy { return s.eng.Policy() }

// Engine is the decision engine the proxy serves from.
func (s *Server) Engine() *engine.Engine { return s.eng }

// Close releases the watchers and the audit log.
func (s *Server) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// ListenAndServe serves the registry API on cfg.Listen until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	var err error
	if s.cfg.TLS != nil {
		ca := ""
		if s.cfg.Auth != nil && s.cfg.Auth.MTLS != nil {
			ca = s.cfg.Resolve(s.cfg.Auth.MTLS.ClientCA)
		}
		rl, rerr := tlsreload.New(s.cfg.Resolve(s.cfg.TLS.Cert), s.cfg.Resolve(s.cfg.TLS.Key), ca, s.log)
		if rerr != nil {
			return fmt.Errorf("tls: %w", rerr)
		}
		srv.TLSConfig = rl.TLSConfig()
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	r.Use(s.metrics.middleware)
	if s.auth != nil {
		// Client authentication and repository access, before any
		// upstream request.
		r.Use(s.auth.Middleware)
		r.Handle("/token", s.auth.TokenHandler())
	}
	r.HandleFunc("/v2", s.dispatch)
	r.HandleFunc("/v2/*", s.dispatch)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		ocierr.Write(w, r, ocierr.New(http.StatusNotFound, ocierr.NameUnknown, "not a registry API path: %s", r.URL.Path))
	})
	r.MethodNotAllowed(s.unsupported)
	return r
}

func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(v))
				panic(http.ErrAbortHandler)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) unsupported(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	ocierr.Write(w, r, ocierr.New(http.StatusMethodNotAllowed, ocierr.Unsupported,
		"pullgate is a read-only pull-through proxy: %s is not supported; push to the upstream registry directly", r.Method))
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	rt, err := route.Parse(r.URL.EscapedPath(), r.URL.Query().Get("ns"))
	if err != nil {
		var re *route.Error
		if errors.As(err, &re) {
			status := http.StatusBadRequest
			if re.Code == ocierr.NameUnknown {
				status = http.StatusNotFound
			}
			ocierr.Write(w, r, ocierr.New(status, re.Code, "%s", re.Message))
			return
		}
		ocierr.Write(w, r, ocierr.New(http.StatusNotFound, ocierr.NameUnknown, "%v", err))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead || rt.Kind == route.Upload {
		s.unsupported(w, r)
		return
	}
	if rt.Kind == route.Base {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("{}\n"))
		}
		return
	}
	rt, up, ok := s.upstreamOf(rt)
	if !ok {
		how := "path prefix"
		if rt.NS {
			how = "ns parameter"
		}
		ocierr.Write(w, r, ocierr.New(http.StatusNotFound, ocierr.NameUnknown,
			"unknown upstream %q (from the %s): pullgate only proxies its configured upstreams", rt.Upstream, how))
		return
	}
	req := s.newRequest(w, r, rt, up)
	switch rt.Kind {
	case route.Manifest:
		s.serveManifest(req)
	case route.Blob:
		s.serveBlob(req)
	case route.Tags:
		s.serveTags(req)
	case route.Referrers:
		s.serveReferrers(req)
	}
}

// request is one registry API request being served, and the engine's
// query about its subject.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	rt    route.Route
	up    *upstream.Client
	q     *engine.Query
	start time.Time
	// waivedRetry: the blob was asked for again after a content finding
	// (see Server.waivedRetry).
	waivedRetry bool
}

func (s *Server) newRequest(w http.ResponseWriter, r *http.Request, rt route.Route, up *upstream.Client) *request {
	q, _ := s.eng.Query(r.Context(), subjectOf(rt))
	return &request{w: w, r: r, rt: rt, up: up, q: q, start: time.Now()}
}

// subjectOf is the engine's subject of a parsed route.
func subjectOf(rt route.Route) engine.Subject {
	sub := engine.Subject{Upstream: rt.Upstream, Repo: rt.Repo, Digest: rt.Digest}
	if rt.Kind == route.Manifest && rt.Digest == "" {
		sub.Tag = rt.Reference
	}
	return sub
}

// about is the request asking for another manifest of its repository by
// digest (an index's child served in its place).
func (q *request) about(dgst digest.Digest) *request {
	cq := *q
	cq.rt.Kind, cq.rt.Reference, cq.rt.Digest = route.Manifest, dgst.String(), dgst
	cq.q = q.q.About(dgst)
	return &cq
}

func (q *request) ctx() context.Context { return q.r.Context() }

// upstreamOf finds the configured upstream of a parsed route and the
// repository as policy and access rules see it: Docker's registry-mirrors
// paths (no prefix) go to defaultUpstream, and Docker Hub's implicit
// "library/" namespace is applied.
func (s *Server) upstreamOf(rt route.Route) (route.Route, *upstream.Client, bool) {
	up, ok := s.eng.Upstream(rt.Upstream)
	if !ok && !rt.NS && s.cfg.DefaultUpstream != "" {
		rt.Upstream, rt.Repo = s.cfg.DefaultUpstream, rt.Name
		up, ok = s.eng.Upstream(rt.Upstream)
	}
	if ok {
		rt.Repo = engine.NormalizeRepo(up, rt.Repo)
	}
	return rt, up, ok
}

// Decide runs the engine's decision of a pull of upstream/repo:ref without
// serving anything (`pullgate verify`): the repository as a client names
// it (Docker Hub's "library/" applied), the reference a tag or a digest.
func (s *Server) Decide(ctx context.Context, upstreamName, repo, ref string) (engine.Decision, error) {
	sub, err := s.eng.NewSubject(upstreamName, repo, ref)
	if err != nil {
		return engine.Decision{}, err
	}
	return s.eng.Decide(ctx, sub)
}

// Decision is the engine's decision about one reference (Decide).
type Decision = engine.Decision

// testDisk replaces the disk in tests (export_test.go); zero: the real one.
var testDisk engine.Disk

// ReloadPolicy re-reads the policy now (SIGHUP). An invalid policy keeps the
// one in force and returns the error.
func (s *Server) ReloadPolicy() error { return s.eng.ReloadPolicy() }
