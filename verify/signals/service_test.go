package signals

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestCoalesce(t *testing.T) {
	tp := newTestProvider(t)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the server closes: a failing test must not hang
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		<-release
		w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", `"verdict":"clean"`)))
	})
	p := tp.provider()
	p.Timeout = time.Minute
	s := newService(t, Options{}, p)
	k := key{"sandbox", digestA}
	waiters := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c := s.inflight[k]; c != nil {
			return c.waiters
		}
		return 0
	}
	// The first asker gives up while the call is in flight: the others
	// still get the answer.
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan Result)
	go func() { first <- s.Ask(firstCtx, "sandbox", request(digestA)) }()
	waitFor(t, "the first ask", func() bool { return waiters() == 1 })
	var wg sync.WaitGroup
	results := make([]Result, 99)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.Ask(context.Background(), "sandbox", request(digestA))
		}()
	}
	waitFor(t, "100 asks sharing the call", func() bool { return waiters() == 100 })
	cancelFirst()
	wantKind(t, <-first, KindTimeout, "context canceled")
	unblock()
	wg.Wait()
	for i, r := range results {
		if r.Err != nil || r.Answer.Verdict != "clean" {
			t.Fatalf("ask %d: %+v %v", i, r.Answer, r.Err)
		}
	}
	if n := tp.calls.Load(); n != 1 {
		t.Fatalf("%d provider calls for 100 concurrent asks of one digest", n)
	}
	if r := s.Ask(context.Background(), "sandbox", request(digestA)); !r.Cached || tp.calls.Load() != 1 {
		t.Fatalf("not reused from the cache: %+v", r)
	}
}

func TestCacheAndVersions(t *testing.T) {
	tp := newTestProvider(t)
	var db atomic.Value
	db.Store("db-1")
	var ttl atomic.Int64
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		extra := `"verdict":"clean"`
		if v := ttl.Load(); v > 0 {
			extra += `,"ttl":` + string(rune('0'+v))
		}
		w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, db.Load().(string), extra)))
	})
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	reg := prometheus.NewRegistry()
	s := newService(t, Options{Now: clock, Registerer: reg}, tp.provider())
	var changed []string
	s.OnVersionChange(func(p string) { changed = append(changed, p) })
	ctx := context.Background()
	ask := func(dg string, wantCached bool, wantCalls int64) Result {
		t.Helper()
		r := s.Ask(ctx, "sandbox", request(dg))
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if r.Cached != wantCached || tp.calls.Load() != wantCalls {
			t.Fatalf("%s: cached %v after %d calls, want %v after %d", dg, r.Cached, tp.calls.Load(), wantCached, wantCalls)
		}
		return r
	}
	ask(digestA, false, 1)
	ask(digestA, true, 1)
	// The provider's database advances; an answer about another digest
	// shows it, and the older answer about A is stale.
	db.Store("db-2")
	ask(digestB, false, 2)
	if len(changed) != 1 || changed[0] != "sandbox" {
		t.Fatalf("OnVersionChange calls: %v", changed)
	}
	if r := ask(digestA, false, 3); r.Answer.Provider.DBVersion != "db-2" {
		t.Fatalf("stale answer: %+v", r.Answer.Provider)
	}
	ask(digestA, true, 3)
	// cacheTTL bounds reuse.
	advance(time.Hour)
	ask(digestA, false, 4)
	// The answer's ttl shortens it.
	ttl.Store(5)
	s.Forget(digestA)
	ask(digestA, false, 5)
	advance(4 * time.Second)
	ask(digestA, true, 5)
	advance(time.Second)
	ask(digestA, false, 6)
	// Admin: forget a digest, invalidate a provider.
	ttl.Store(0)
	ask(digestB, false, 7)
	ask(digestB, true, 7)
	s.Forget(digestB)
	ask(digestB, false, 8)
	s.Invalidate("sandbox")
	ask(digestA, false, 9)
	ask(digestB, false, 10)
	if len(changed) != 1 {
		t.Fatalf("OnVersionChange without a change: %v", changed)
	}
	// Errors are not cached.
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		http.Error(w, "down", http.StatusBadGateway)
	})
	dgC := "sha256:" + strings.Repeat("c", 64)
	for range 2 {
		s.Ask(ctx, "sandbox", request(dgC))
	}
	if n := tp.calls.Load(); n != 10+2*2 {
		t.Fatalf("%d calls: an error was reused", n)
	}

	// Metrics.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			got[name] = value(m)
		}
	}
	for name, want := range map[string]float64{
		"pullgate_signal_requests_total,outcome=done,provider=sandbox":   10,
		"pullgate_signal_requests_total,outcome=status,provider=sandbox": 2,
		"pullgate_signal_cache_hits_total,provider=sandbox":              4,
		"pullgate_signal_duration_seconds,provider=sandbox":              12,
		"pullgate_signal_inflight,provider=sandbox":                      0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func TestAskAllAndInvalid(t *testing.T) {
	tp := newTestProvider(t)
	sc := script(t, `cat >/dev/null; printf '%s' '`+answerJSON(digestA, StatusDone, "1", `"verdict":"suspicious"`)+`'`)
	s := newService(t, Options{}, tp.provider(), Provider{Name: "scanner", Exec: sc})
	if got := strings.Join(s.Names(), ","); got != "sandbox,scanner" {
		t.Fatalf("Names: %s", got)
	}
	if p, ok := s.Provider("scanner"); !ok || p.Timeout != DefaultTimeout || p.MaxConcurrent != 8 || p.Retries != 1 || p.OnError != OnDeny || p.OnPending != OnDeny {
		t.Fatalf("defaults: %+v", p)
	}
	rs := s.AskAll(context.Background(), []string{"sandbox", "scanner", "nope"}, request(digestA))
	if len(rs) != 3 || rs["sandbox"].Answer.Verdict != "clean" || rs["scanner"].Answer.Verdict != "suspicious" {
		t.Fatalf("%+v", rs)
	}
	wantKind(t, rs["nope"], KindInvalid, "no signal provider")
	wantKind(t, s.Ask(context.Background(), "sandbox", request("latest")), KindInvalid, "digest")
}

func TestNewServiceRefuses(t *testing.T) {
	tp := newTestProvider(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyTok := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyTok, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ok := tp.provider()
	for name, c := range map[string]struct {
		mod  func(p *Provider)
		want string
	}{
		"bad name":    {func(p *Provider) { p.Name = "Sand-box" }, "must match"},
		"both":        {func(p *Provider) { p.Exec = "/bin/true" }, "exactly one of url and exec"},
		"neither":     {func(p *Provider) { p.URL = "" }, "exactly one of url and exec"},
		"http":        {func(p *Provider) { p.URL = "http://127.0.0.1/x" }, "scheme must be https"},
		"credentials": {func(p *Provider) { p.URL = "https://u:p@127.0.0.1/x" }, "credentials"},
		"ca missing":  {func(p *Provider) { p.CA = filepath.Join(dir, "nope.pem") }, "ca: open"},
		"ca not PEM":  {func(p *Provider) { p.CA = notPEM }, "no PEM certificate"},
		"key missing": {func(p *Provider) { p.ClientKey = "" }, "go together"},
		"key not PEM": {func(p *Provider) { p.ClientKey = notPEM }, "clientCert/clientKey"},
		"token empty": {func(p *Provider) { p.TokenFile = emptyTok }, "one non-empty line"},
		"relative ca": {func(p *Provider) { p.CA = "ca.pem" }, "absolute"},
		"onError":     {func(p *Provider) { p.OnError = "allow" }, "use deny or ignore"},
		"relative exec": {func(p *Provider) {
			p.URL = ""
			p.CA, p.ClientCert, p.ClientKey, p.TokenFile = "", "", "", ""
			p.Exec = "scan"
		}, "absolute"},
	} {
		p := ok
		c.mod(&p)
		_, err := NewService([]Provider{p}, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if _, err := NewService([]Provider{ok, ok}, Options{}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestConcurrencyCap(t *testing.T) {
	tp := newTestProvider(t)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var cur, peak atomic.Int64
	tp.reply(func(w http.ResponseWriter, r *http.Request, req Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		w.Write([]byte(answerJSON(req.Subject.Digest, StatusDone, "db-1", "")))
	})
	p := tp.provider()
	p.MaxConcurrent = 2
	p.Timeout = time.Minute
	s := newService(t, Options{}, p)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dg := "sha256:" + strings.Repeat(string(rune('0'+i)), 64)
			if r := s.Ask(context.Background(), "sandbox", request(dg)); r.Err != nil {
				t.Error(r.Err)
			}
		}()
	}
	sem := s.provs["sandbox"].sem
	waitFor(t, "2 calls at the provider and 8 waiting", func() bool {
		s.mu.Lock()
		calls := len(s.inflight)
		s.mu.Unlock()
		return calls == 10 && len(sem) == 2 && cur.Load() == 2
	})
	unblock()
	wg.Wait()
	if peak.Load() != 2 || tp.calls.Load() != 10 {
		t.Fatalf("peak %d concurrent calls (cap 2), %d calls", peak.Load(), tp.calls.Load())
	}
}
