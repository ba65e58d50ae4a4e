// Package engine decides, free of HTTP, what pullgate may serve: it takes a
// Subject (upstream, repository, digest, and the tag it was asked by),
// resolves tags, fetches and verifies manifest bytes, decides them under
// the policy in force (index children, signature and attestation
// artifacts, release checks, content findings), grants their blobs,
// fetches and inspects blobs, records inspections, and answers which
// allowed declaration lets a blob out, inspected as what. The HTTP side
// (package proxy) parses a route, asks the engine, and sends the bytes the
// engine verified; `pullgate verify` asks it directly (Decide).
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/records"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/proxy/route"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/verify/signals"
)

// Engine is pullgate's decision engine over one content store.
type Engine struct {
	cfg     *config.Config
	log     *slog.Logger
	store   *store.Store
	records *records.Records // the facts kept in the store (cache/records)
	// onAllowed sees cold allowed manifest decisions (Options.OnAllowed).
	onAllowed func(q *Query, dgst digest.Digest, m *Manifest, v Verdict)
	fetches   *inflight.Group
	// deciding coalesces concurrent decisions of one verdict key.
	deciding singleflight.Group
	// signalGen counts signal providers' version changes: a decision
	// made across one is not cached.
	signalGen atomic.Uint64
	// signalSeen are the provider versions seen (provider, version,
	// database), the oldest first.
	signalMu   sync.Mutex
	signalSeen []string
	upstreams  map[string]*upstream.Client
	policy     policySource
	holder     *policy.Holder
	metrics    *Metrics
	now        func() time.Time // Options.Now
	// signals asks the providers of the config's signals section (nil
	// when it has none).
	signals *signals.Service

	memory
	// linkGen counts the persistLinks calls that wrote links (from 1): a
	// content grant made at generation g accounts for every manifest
	// linked to its blob then (see BlobGrant.Gen).
	linkGen atomic.Uint64

	// spoolDir holds in-flight downloads; full records directories
	// found full (see storageError).
	spoolDir string
	full     diskFull
	disk     Disk

	closers []func() error
}

// policySource yields the policy in force.
type policySource interface {
	Current() *policy.Policy
}

// Options are optional dependencies of New.
type Options struct {
	// Registerer receives the engine's Prometheus metrics (nil: a private registry).
	Registerer prometheus.Registerer
	// OnUpstreamRequest, when set, returns the observer of one upstream's
	// requests (the HTTP side counts them).
	OnUpstreamRequest func(upstream string) func(method, kind string, status int, err error)
	// Disk replaces the operating system's disk (tests; nil fields: RealDisk's).
	Disk Disk
	// Now is the clock decisions are made at (nil: time.Now): exception
	// expiry, and the expiry of cached decisions and grants.
	Now func() time.Time
	// OnAllowed, when set, sees every allowed manifest decision the
	// engine makes (cold: not one served from the verdict cache, nor one
	// a rule makes without the artifact, nor one about evidence): the
	// proxy's VSA signer. It must not block.
	OnAllowed func(q *Query, dgst digest.Digest, m *Manifest, v Verdict)
	// CheckPolicy, when set, refuses a policy (at start and on every
	// reload, which then keeps the policy in force) that does not fit the
	// rest of pullgate's configuration, beside the engine's own checks.
	CheckPolicy func(*policy.Policy) error
}

// New builds an engine over an open content store: it prepares the spool,
// the upstream clients and loads the policy (refusing an invalid one,
// following the file for changes).
func New(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger, o Options) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Engine{
		cfg: cfg, log: log, store: st, records: records.New(st), onAllowed: o.OnAllowed, upstreams: map[string]*upstream.Client{},
		metrics: newMetrics(reg),
		memory:  newMemory(cfg.Cache.Size),
	}
	s.linkGen.Store(1)
	s.now = time.Now
	if o.Now != nil {
		s.now = o.Now
		s.verdicts.SetClock(o.Now)
		s.blobGrants.SetClock(o.Now)
		s.evidenceGrants.SetClock(o.Now)
	}
	s.disk = RealDisk()
	if o.Disk.SpoolWrite != nil {
		s.disk.SpoolWrite = o.Disk.SpoolWrite
	}
	if o.Disk.CommitBlob != nil {
		s.disk.CommitBlob = o.Disk.CommitBlob
	}
	if o.Disk.FreeSpace != nil {
		s.disk.FreeSpace = o.Disk.FreeSpace
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	local := st.LocalRoot() != ""
	spool := filepath.Join(os.TempDir(), "pullgate-spool")
	if local {
		spool = filepath.Join(st.LocalRoot(), "_spool")
	}
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
		if o.OnUpstreamRequest != nil {
			c.OnRequest = o.OnUpstreamRequest(u.Name)
		}
		s.upstreams[u.Name] = c
	}

	if provs := cfg.SignalProviders(); len(provs) > 0 {
		s.signals, err = signals.NewService(provs, signals.Options{Registerer: reg, Log: log, Now: s.now})
		if err != nil {
			return nil, fmt.Errorf("signals: %w", err)
		}
		s.closers = append(s.closers, func() error { s.signals.Close(); return nil })
		// A provider's new version or database makes the decisions made on
		// its older answers stale.
		s.signals.OnVersionChange(s.signalsChanged)
	}

	check := s.checkSignals
	if o.CheckPolicy != nil {
		check = func(p *policy.Policy) error { return errors.Join(s.checkSignals(p), o.CheckPolicy(p)) }
	}
	ps, closePolicy, err := loadPolicy(ctx, cfg.Resolve(cfg.Policy), log, s.metrics, check)
	if err != nil {
		return nil, err
	}
	s.policy, s.holder = ps, ps
	s.closers = append(s.closers, closePolicy)
	ok = true
	return s, nil
}

// Close stops following the policy and removes the spool.
func (s *Engine) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		errs = append(errs, s.closers[i]())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// Policy is the policy in force.
func (s *Engine) Policy() *policy.Policy {
	if s.policy == nil {
		return nil
	}
	return s.policy.Current()
}

// ReloadPolicy re-reads the policy now (SIGHUP). An invalid policy keeps the
// one in force and returns the error.
func (s *Engine) ReloadPolicy() error { return s.holder.ReloadFrom("signal") }

// Upstream is the configured upstream client of that name.
func (s *Engine) Upstream(name string) (*upstream.Client, bool) {
	up, ok := s.upstreams[name]
	return up, ok
}

// Subject is what one decision is about: a repository of a configured
// upstream, and the reference it was asked by.
type Subject struct {
	Upstream string        // the configured upstream's name
	Repo     string        // the repository at the upstream (Docker Hub's "library/" applied)
	Tag      string        // the tag it was asked by ("" when asked by digest)
	Digest   digest.Digest // the digest it was asked by (a blob's, or a manifest's by digest)
}

// NewSubject is the subject of a pull of upstream/repo:ref as a client
// names it: ref a tag or a digest, Docker Hub's implicit "library/"
// namespace applied.
func (s *Engine) NewSubject(upstreamName, repo, ref string) (Subject, error) {
	up, ok := s.upstreams[upstreamName]
	if !ok {
		return Subject{}, fmt.Errorf("unknown upstream %q", upstreamName)
	}
	rt, err := route.Parse("/v2/"+repo+"/manifests/"+ref, upstreamName)
	if err != nil {
		return Subject{}, err
	}
	sub := Subject{Upstream: upstreamName, Repo: NormalizeRepo(up, rt.Repo), Digest: rt.Digest}
	if rt.Digest == "" {
		sub.Tag = rt.Reference
	}
	return sub, nil
}

// NormalizeRepo applies Docker Hub's implicit "library/" namespace.
func NormalizeRepo(up *upstream.Client, repo string) string {
	if up.IsDockerHub() && !strings.Contains(repo, "/") {
		return "library/" + repo
	}
	return repo
}

// Repository is the repository as policy sees it: upstream/repo.
func (sub Subject) Repository() string { return sub.Upstream + "/" + sub.Repo }

// Reference is how the subject was asked for: its tag, or its digest.
func (sub Subject) Reference() string {
	if sub.Tag != "" {
		return sub.Tag
	}
	return sub.Digest.String()
}

// Query is one decision under way: a subject, the upstream it comes from,
// and the policy (and rule) in force when it began, which every decision
// it causes uses.
type Query struct {
	c     context.Context
	sub   Subject
	rep   string // sub.Repository(), once
	up    *upstream.Client
	pol   *policy.Policy
	rule  *policy.Rule
	depth int // nesting while deciding index children and evidence subjects

	// ruleV, ruleOK: RuleVerdict's result, once ruled.
	ruleV  Verdict
	ruleOK bool
	ruled  bool
}

// Query starts a decision about sub under the policy in force. ok is false
// for an upstream that is not configured.
func (s *Engine) Query(ctx context.Context, sub Subject) (*Query, bool) {
	up, ok := s.upstreams[sub.Upstream]
	if !ok {
		return nil, false
	}
	pol, rep := s.Policy(), sub.Repository()
	return &Query{c: ctx, sub: sub, rep: rep, up: up, pol: pol, rule: pol.Match(rep)}, true
}

// Subject is what the query is about.
func (q *Query) Subject() Subject { return q.sub }

// Upstream is the subject's upstream client.
func (q *Query) Upstream() *upstream.Client { return q.up }

// Policy is the policy the query is decided under.
func (q *Query) Policy() *policy.Policy { return q.pol }

// Rule is the rule matching the subject's repository (nil: none matches).
func (q *Query) Rule() *policy.Rule { return q.rule }

func (q *Query) ctx() context.Context { return q.c }

// repository is the subject's repository as policy sees it.
func (q *Query) repository() string {
	if q.rep == "" {
		return q.sub.Repository()
	}
	return q.rep
}

// About is the query about another manifest of the same repository, by
// digest, at the same depth (an index's child served in its place).
func (q *Query) About(dgst digest.Digest) *Query {
	cq := *q
	cq.sub.Tag, cq.sub.Digest = "", dgst
	return &cq
}

// with returns a copy of the query about another manifest of the same
// repository, one level deeper.
func (q *Query) with(dgst digest.Digest) *Query {
	cq := *q
	cq.depth++
	cq.sub.Tag, cq.sub.Digest = "", dgst
	return &cq
}

// Depth limits of one decision: the work one request can cause is bounded.
const (
	// maxEvidenceDepth is how deep evidence about evidence is decided
	// (a signature of an attestation of an image: 2).
	maxEvidenceDepth = 2
	// maxParentDepth is how many index levels above a manifest are looked
	// at for an allowed parent that covers it.
	maxParentDepth = 4
)

// ownSpool makes the directory this process spools downloads into, below
// parent. Spool files are partial downloads, never content. A local store
// belongs to one process: whatever its spool holds is a previous run's and
// is removed. A store on a driver may be shared by replicas on one host
// (or one volume): each process spools into a directory of its own, and
// removes only directories of others that are too old to be in use.
func ownSpool(parent string, local bool) (string, error) {
	if local {
		_ = os.RemoveAll(parent)
		return parent, os.MkdirAll(parent, 0o750)
	}
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return "", err
	}
	if old, err := os.ReadDir(parent); err == nil {
		for _, e := range old {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), "run-") && time.Since(fi.ModTime()) > store.StaleUpload {
				_ = os.RemoveAll(filepath.Join(parent, e.Name()))
			}
		}
	}
	return os.MkdirTemp(parent, "run-")
}

// loadPolicy loads the policy file and follows it (and every trust file it
// names) for changes; the server refuses to start on an invalid policy, and
// a reload with an invalid one keeps the old policy (logged and counted).
func loadPolicy(ctx context.Context, path string, log *slog.Logger, m *Metrics, check func(*policy.Policy) error) (*policy.Holder, func() error, error) {
	h, err := policy.NewHolder(path, policy.HolderOptions{
		Logger: log,
		Check:  check,
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
