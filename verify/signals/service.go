package signals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Service.
type Options struct {
	// Registerer receives the pullgate_signal_* metrics (nil: not exported).
	Registerer prometheus.Registerer
	Log        *slog.Logger     // nil: slog.Default()
	Now        func() time.Time // nil: time.Now
	CacheSize  int              // answers kept (0: 10000)
}

// Result is the outcome of asking one provider about one digest: Answer is
// set if and only if Err is nil. The Answer is shared (with the cache and
// other asks): read it, never change it.
type Result struct {
	Provider string
	Answer   *Answer
	Err      *Error
	// Cached is true when the answer came from the cache.
	Cached bool
	// Latency is how long the provider took (for a cached answer, the
	// call that produced it).
	Latency time.Duration
	// At is when the answer (or the failure) arrived.
	At time.Time
}

// Service asks the configured providers, caches their done answers by
// (provider, digest) while the provider's (version, dbVersion) is the
// newest seen, coalesces concurrent asks for one digest, caps calls per
// provider and bounds retries. It is safe for concurrent use.
type Service struct {
	provs map[string]*provider
	names []string
	log   *slog.Logger
	now   func() time.Time
	cache *lru.Cache[key, entry]
	m     metrics

	mu       sync.Mutex
	inflight map[key]*call
	gen      uint64 // bumped by Forget and Invalidate
	onChange []func(string)
}

type provider struct {
	Provider
	client *http.Client
	sem    chan struct{}

	mu     sync.Mutex
	latest version // newest (version, dbVersion) seen; zero before the first answer
}

type version struct{ v, db string }

type key struct{ provider, digest string }

type entry struct {
	res     Result
	ver     version
	expires time.Time
}

type call struct {
	done    chan struct{}
	res     Result
	waiters int // asks sharing the call (under Service.mu)
}

// NewService checks the providers (names, exactly one of URL and Exec,
// failure policies, absolute paths), loads their CA and client
// certificates once and refuses unreadable or invalid files.
func NewService(providers []Provider, o Options) (*Service, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	c, err := lru.New[key, entry](o.CacheSize)
	if err != nil {
		return nil, err
	}
	s := &Service{
		provs:    map[string]*provider{},
		log:      o.Log,
		now:      o.Now,
		cache:    c,
		m:        newMetrics(o.Registerer),
		inflight: map[key]*call{},
	}
	var errs []error
	for _, p := range providers {
		p, err := p.withDefaults()
		if err != nil {
			errs = append(errs, fmt.Errorf("signal provider %q: %w", p.Name, err))
			continue
		}
		if _, dup := s.provs[p.Name]; dup {
			errs = append(errs, fmt.Errorf("signal provider %q: duplicate name", p.Name))
			continue
		}
		pp := &provider{Provider: p, sem: make(chan struct{}, p.MaxConcurrent)}
		if p.URL != "" {
			if pp.client, err = p.httpClient(); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		s.provs[p.Name] = pp
		s.names = append(s.names, p.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Strings(s.names)
	return s, nil
}

// Provider returns the named provider, defaults filled in.
func (s *Service) Provider(name string) (Provider, bool) {
	p, ok := s.provs[name]
	if !ok {
		return Provider{}, false
	}
	return p.Provider, true
}

// Current is the provider's newest version and database version (from
// the most recent answer); ok is false before its first answer.
func (s *Service) Current(name string) (ver, dbVersion string, ok bool) {
	p, known := s.provs[name]
	if !known {
		return "", "", false
	}
	v := p.current()
	return v.v, v.db, v != (version{})
}

// Names lists the providers, sorted.
func (s *Service) Names() []string { return append([]string(nil), s.names...) }

// OnVersionChange registers f, called with a provider's name when an
// answer shows a (version, dbVersion) other than the one of the answer
// before it: cached answers of that provider are stale from then on, and
// so are decisions made with them. f runs on the goroutine of the call
// that saw the change and must not block (the askers wait for it).
func (s *Service) OnVersionChange(f func(provider string)) {
	s.mu.Lock()
	s.onChange = append(s.onChange, f)
	s.mu.Unlock()
}

// Forget drops every provider's cached answer about digest.
func (s *Service) Forget(digest string) {
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
	for _, n := range s.names {
		s.cache.Remove(key{n, digest})
	}
}

// Invalidate drops every cached answer of the provider.
func (s *Service) Invalidate(provider string) {
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
	for _, k := range s.cache.Keys() {
		if k.provider == provider {
			s.cache.Remove(k)
		}
	}
}

// Close releases idle connections. Asks in flight finish.
func (s *Service) Close() {
	for _, p := range s.provs {
		if p.client != nil {
			p.client.CloseIdleConnections()
		}
	}
}

// AskAll asks the named providers in parallel; the map has one Result per
// name.
func (s *Service) AskAll(ctx context.Context, names []string, req Request) map[string]Result {
	out := make(map[string]Result, len(names))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.Ask(ctx, n, req)
			mu.Lock()
			out[n] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// Ask returns the provider's answer about req.Subject.Digest: from the
// cache when fresh, else from one call shared by every concurrent ask of
// the same digest. The call runs detached from ctx (one client giving up
// does not fail the others) within the provider's timeout; ctx bounds
// only this caller's wait.
func (s *Service) Ask(ctx context.Context, name string, req Request) Result {
	start := s.now()
	p, ok := s.provs[name]
	if !ok {
		return s.failed(name, start, &Error{Kind: KindInvalid, Msg: "no signal provider of that name is configured"})
	}
	dg := req.Subject.Digest
	if _, err := digest.Parse(dg); err != nil {
		return s.failed(name, start, &Error{Kind: KindInvalid, Msg: fmt.Sprintf("subject digest %q: %v", dg, err)})
	}
	k := key{name, dg}
	if e, ok := s.cache.Get(k); ok {
		if start.Before(e.expires) && e.ver == p.current() {
			s.m.hits.WithLabelValues(name).Inc()
			r := e.res
			r.Cached = true
			return r
		}
		s.cache.Remove(k)
	}
	s.mu.Lock()
	c, ok := s.inflight[k]
	if !ok {
		c = &call{done: make(chan struct{})}
		s.inflight[k] = c
		gen := s.gen
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.Timeout)
		go func() {
			defer cancel()
			c.res = s.runGuarded(cctx, p, req, gen)
			s.mu.Lock()
			delete(s.inflight, k)
			s.mu.Unlock()
			close(c.done)
		}()
	}
	c.waiters++
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.res
	case <-ctx.Done():
		return s.failed(name, start, ctxErr(ctx, "waiting for the answer"))
	}
}

func (s *Service) failed(name string, start time.Time, e *Error) Result {
	e.Provider = name
	now := s.now()
	return Result{Provider: name, Err: e, Latency: now.Sub(start), At: now}
}

func (p *provider) current() version {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latest
}

// run makes the provider call: a free slot, then attempts until an
// answer, an error no retry helps, Retries spent or the timeout.
func (s *Service) run(ctx context.Context, p *provider, req Request, gen uint64) Result {
	start := s.now()
	dg := req.Subject.Digest
	res := Result{Provider: p.Name}
	s.m.inflight.WithLabelValues(p.Name).Inc()
	defer s.m.inflight.WithLabelValues(p.Name).Dec()
	var at attempt
	if req.APIVersion == "" {
		req.APIVersion = APIVersion
	}
	body, err := json.Marshal(req)
	if err != nil {
		at = attempt{err: &Error{Kind: KindInvalid, Msg: err.Error()}}
	} else {
		at = s.attempts(ctx, p, body, dg)
	}

	res.At = s.now()
	res.Latency = res.At.Sub(start)
	s.m.duration.WithLabelValues(p.Name).Observe(res.Latency.Seconds())
	outcome := ""
	if at.err != nil {
		at.err.Provider = p.Name
		res.Err = at.err
		outcome = at.err.Kind
		s.log.Warn("signal provider failed", "provider", p.Name, "digest", dg, "outcome", outcome,
			"latency", res.Latency, "error", at.err.Msg)
	} else {
		res.Answer = at.answer
		outcome = at.answer.Status
		s.log.Info("signal provider answered", "provider", p.Name, "digest", dg, "outcome", outcome,
			"latency", res.Latency, "version", at.answer.Provider.Version, "dbVersion", at.answer.Provider.DBVersion,
			"verdict", at.answer.Verdict, "findings", len(at.answer.Findings))
		s.seen(p, at.answer, res, gen)
	}
	s.m.requests.WithLabelValues(p.Name, outcome).Inc()
	return res
}

// attempts takes a free slot and makes attempts until an answer, an error
// no retry helps, Retries spent or the end of ctx.
func (s *Service) attempts(ctx context.Context, p *provider, body []byte, dg string) attempt {
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-ctx.Done():
		return attempt{err: ctxErr(ctx, fmt.Sprintf("waiting for one of %d slots", p.MaxConcurrent))}
	}
	for i := 0; ; i++ {
		var at attempt
		if p.URL != "" {
			at = askHTTP(ctx, p.client, &p.Provider, body, dg)
		} else {
			at = askExec(ctx, &p.Provider, body, dg)
		}
		if at.err == nil || !at.retry || i >= p.Retries {
			return at
		}
		// A short pause, within the same timeout.
		t := time.NewTimer(time.Duration(i+1) * 50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt{err: ctxErr(ctx, fmt.Sprintf("after %d attempts (last: %s)", i+1, at.err.Msg))}
		case <-t.C:
		}
	}
}

// seen records the answer's version as the provider's newest (firing
// OnVersionChange when it differs from the previous one) and caches a
// done answer.
func (s *Service) seen(p *provider, a *Answer, res Result, gen uint64) {
	v := version{a.Provider.Version, a.Provider.DBVersion}
	p.mu.Lock()
	prev := p.latest
	p.latest = v
	p.mu.Unlock()
	if prev != (version{}) && prev != v {
		s.log.Info("signal provider version changed: older answers are stale", "provider", p.Name,
			"version", v.v, "dbVersion", v.db, "previousVersion", prev.v, "previousDBVersion", prev.db)
		s.mu.Lock()
		fs := slices.Clone(s.onChange)
		s.mu.Unlock()
		for _, f := range fs {
			f(p.Name)
		}
	}
	if a.Status != StatusDone || p.CacheTTL <= 0 {
		return
	}
	ttl := p.AnswerTTL(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return // forgotten or invalidated while asked
	}
	s.cache.Add(key{p.Name, a.Subject.Digest}, entry{res: res, ver: v, expires: res.At.Add(ttl)})
}

// runGuarded is run on the call's own goroutine, where a panic (a bug
// reached by a provider's bytes) would end the process: it is the
// call's error instead.
func (s *Service) runGuarded(ctx context.Context, p *provider, req Request, gen uint64) (res Result) {
	start := s.now()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("signal provider call panicked", "provider", p.Name, "panic", r, "stack", string(debug.Stack()))
			res = s.failed(p.Name, start, &Error{Kind: KindMalformed, Msg: "internal error while reading the answer (logged)"})
		}
	}()
	return s.run(ctx, p, req, gen)
}
