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
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/verdict"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/clientauth"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/ocierr"
	"github.com/pullgate/pullgate/proxy/route"
	"github.com/pullgate/pullgate/proxy/tlsreload"
	"github.com/pullgate/pullgate/proxy/upstream"
)

// Server is a pullgate proxy.
type Server struct {
	cfg       *config.Config
	log       *slog.Logger
	store     *store.Store
	records   *records.Records // the facts kept in store (cache/records)
	fetches   *inflight.Group
	upstreams map[string]*upstream.Client
	policy    policySource
	holder    *policy.Holder
	audit     *audit.Log
	metrics   *Metrics

	verdicts *verdict.Cache[Verdict]
	// tags maps upstream/repo:tag to a resolved digest for the tag TTL.
	tags *verdict.Cache[tagRecord]
	// blobGrants maps revision|repository|blob to the allowed manifest (and
	// the layer descriptor) that lets the blob be served in that repository.
	blobGrants *verdict.Cache[blobGrant]
	// linked remembers which (repository, manifest) reference links were
	// already persisted.
	linked *verdict.Cache[bool]
	// headDenials are manifest denials answered to a HEAD, for a while:
	// the GET the same client sends next for the same reference (dockerd
	// asks again with GET) is the same pull, recorded once.
	headDenials *verdict.Cache[bool]
	// linkGen counts the persistLinks calls that wrote links (from 1): a
	// content grant made at generation g accounts for every manifest
	// linked to its blob then (see blobGrant.Gen).
	linkGen atomic.Uint64
	// present remembers upstream/repository@digest manifests the upstream
	// was seen to serve in that repository (persisted under "present").
	present *verdict.Cache[bool]
	// manifests keeps verified, parsed manifests by digest.
	manifests *verdict.Cache[*cachedManifest]
	// evidenceShapes remembers blob digest|media type pairs that passed
	// the evidence check (a function of the bytes).
	evidenceShapes *verdict.Cache[bool]
	// evidenceGrants keeps, briefly, evidence grants blobGrant confirmed
	// (re-deciding their artifacts on every request is costly).
	evidenceGrants *verdict.Cache[blobGrant]
	// signedSubjects keeps, by evidence manifest digest, the digests its
	// signed payloads name (content-derived: never stale).
	signedSubjects *verdict.Cache[[]digest.Digest]
	// tensors holds MBOM tensor expectations by revision|repository|blob.
	tensors *verdict.Cache[*tensorExpectation]

	// spoolDir holds in-flight downloads; full records directories
	// found full (see storageError).
	spoolDir string
	full     diskFull
	// auditFailing is set while audit writes fail (logged once).
	auditFailing atomic.Bool

	auth    *clientauth.Authenticator
	h       http.Handler
	closers []func() error
}

// policySource yields the policy in force.
type policySource interface {
	Current() *policy.Policy
}

// Options are optional dependencies of Open.
type Options struct {
	// Registerer receives the proxy's Prometheus metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// OnAudit sees every audit event (the admin page's recent decisions).
	OnAudit func(audit.Event)
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
	s := &Server{
		cfg: cfg, log: log, upstreams: map[string]*upstream.Client{},
		verdicts:       verdict.New[Verdict](cfg.Cache.Size),
		tags:           verdict.New[tagRecord](cfg.Cache.Size),
		blobGrants:     verdict.New[blobGrant](cfg.Cache.Size * 8),
		linked:         verdict.New[bool](cfg.Cache.Size * 4),
		headDenials:    verdict.New[bool](4096),
		present:        verdict.New[bool](cfg.Cache.Size * 4),
		tensors:        verdict.New[*tensorExpectation](cfg.Cache.Size * 4),
		manifests:      verdict.New[*cachedManifest](4096),
		signedSubjects: verdict.New[[]digest.Digest](4096),
		evidenceGrants: verdict.New[blobGrant](cfg.Cache.Size),
		evidenceShapes: verdict.New[bool](cfg.Cache.Size),
	}
	s.linkGen.Store(1)
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
	var spool string
	local := cfg.Storage.Driver == "" || cfg.Storage.Driver == "filesystem"
	if local {
		root := cfg.Resolve(cfg.Storage.Path)
		st, err := store.OpenFilesystem(ctx, root, store.Options{MaxBytes: int64(cfg.Storage.MaxSize), Log: log})
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		s.store = st
		s.closers = append(s.closers, st.Close)
		spool = filepath.Join(root, "_spool")
	} else {
		st, err := openDriverStore(ctx, cfg, log)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		s.store = st
		s.closers = append(s.closers, st.Close)
		spool = filepath.Join(os.TempDir(), "pullgate-spool")
		s.closers = append(s.closers, s.rescanEvery(rescanInterval))
	}
	s.records = records.New(s.store)
	s.metrics.storeIndex(reg, s.store)
	if cfg.Storage.SpoolDir != "" {
		spool = cfg.Resolve(cfg.Storage.SpoolDir)
	}
	spool, err := ownSpool(spool, local)
	if err == nil {
		s.fetches, err = inflight.New(spool)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: spool: %w", err)
	}
	s.spoolDir = spool
	s.closers = append(s.closers, func() error { return os.RemoveAll(spool) })

	for _, u := range cfg.Upstreams {
		c, err := upstream.New(u, cfg.Resolve)
		if err != nil {
			return nil, err
		}
		c.OnRequest = s.metrics.upstreamRequest(u.Name)
		s.upstreams[u.Name] = c
	}

	ps, closePolicy, err := loadPolicy(ctx, cfg.Resolve(cfg.Policy), log, s.metrics)
	if err != nil {
		return nil, err
	}
	s.policy, s.holder = ps, ps
	s.closers = append(s.closers, closePolicy)

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
	if s.policy == nil || s.policy.Current() == nil {
		return errors.New("no policy loaded")
	}
	if err := s.store.WriteProbe(context.Background()); err != nil {
		return err
	}
	return s.storageFull()
}

// ReadyStatus says, for /readyz, how far the index of the store is: it is
// built in the background after a start, and the proxy serves meanwhile.
func (s *Server) ReadyStatus() string {
	st := s.store.IndexStatus()
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
func (s *Server) Store() *store.Store { return s.store }

// Policy is the policy in force.
func (s *Server) Policy() *policy.Policy { return s.policy.Current() }

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
	req := &request{w: w, r: r, rt: rt, up: up, pol: s.policy.Current(), start: time.Now()}
	req.rule = req.pol.Match(rt.Repository())
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

// request is one registry API request being served.
type request struct {
	w     http.ResponseWriter
	r     *http.Request
	rt    route.Route
	up    *upstream.Client
	pol   *policy.Policy
	rule  *policy.Rule
	start time.Time
	depth int // index nesting while deciding children
}

func (q *request) ctx() context.Context { return q.r.Context() }

// upstreamOf finds the configured upstream of a parsed route and the
// repository as policy and access rules see it: Docker's registry-mirrors
// paths (no prefix) go to defaultUpstream, and Docker Hub's implicit
// "library/" namespace is applied.
func (s *Server) upstreamOf(rt route.Route) (route.Route, *upstream.Client, bool) {
	up, ok := s.upstreams[rt.Upstream]
	if !ok && !rt.NS && s.cfg.DefaultUpstream != "" {
		rt.Upstream, rt.Repo = s.cfg.DefaultUpstream, rt.Name
		up, ok = s.upstreams[rt.Upstream]
	}
	if ok {
		rt.Repo = normalizeRepo(up, rt.Repo)
	}
	return rt, up, ok
}

// normalizeRepo applies Docker Hub's implicit "library/" namespace.
func normalizeRepo(up *upstream.Client, repo string) string {
	if up.IsDockerHub() && !containsSlash(repo) {
		return "library/" + repo
	}
	return repo
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}
