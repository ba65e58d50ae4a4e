package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pullgate/pullgate/test/harness"
)

// Kind is one kind of request of the mix.
type Kind string

const (
	KindManifestTag    Kind = "manifest by tag"
	KindManifestHead   Kind = "manifest HEAD"
	KindManifestDigest Kind = "manifest by digest"
	KindBlobCold       Kind = "blob, cold"
	KindBlobWarm       Kind = "blob, warm"
	KindBlobDenied     Kind = "blob, denied"
	KindBlobRange      Kind = "blob Range"
	KindReferrers      Kind = "referrers"
	KindTags           Kind = "tag list"
	KindChallenge      Kind = "401 challenge"
	KindToken          Kind = "token"
	KindPrime          Kind = "prime (manifest)"
)

// kindOrder is the order of the report's rows.
var kindOrder = []Kind{KindManifestTag, KindManifestHead, KindManifestDigest, KindBlobCold, KindBlobWarm,
	KindBlobDenied, KindBlobRange, KindReferrers, KindTags, KindChallenge, KindToken, KindPrime}

// mix is the weight of each operation a client picks (blob stands for a
// whole-blob GET, cold or warm).
var mix = []struct {
	kind   Kind
	weight int
}{
	{KindManifestTag, 18}, {KindManifestHead, 8}, {KindManifestDigest, 14}, {KindBlobWarm, 32},
	{KindBlobRange, 12}, {KindReferrers, 8}, {KindTags, 8},
}

// Options bound and shape one run.
type Options struct {
	Clients     int           // concurrent clients
	Duration    time.Duration // the run stops issuing requests after this
	MaxRequests int64         // ... or after this many operations (0: no bound but Duration)
	Rate        float64       // operations per second over all clients (0: as fast as they go)
	WorkingSet  int           // artifacts each client pulls from (default 8)
	SampleEvery time.Duration // resource samples during the run (default 1s)
	IdleWait    time.Duration // how long pullgate may take to return to idle (default 60s)
	// GuestShare is the share of clients that log in as Guest in the token
	// phase (default 0.2).
	GuestShare float64
	// RequestTimeout bounds one request (default 2m).
	RequestTimeout time.Duration
}

func (o *Options) defaults() {
	if o.Clients <= 0 {
		o.Clients = 50
	}
	if o.WorkingSet <= 0 {
		o.WorkingSet = 8
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = time.Second
	}
	if o.IdleWait <= 0 {
		o.IdleWait = time.Minute
	}
	if o.GuestShare == 0 {
		o.GuestShare = 0.2
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Minute
	}
}

// KindStats are the figures of one kind of request.
type KindStats struct {
	Count      int64
	Denied     int64 // expected denials (403 DENIED naming the right rule)
	Unexpected int64 // anything else that was not what the request had to get
	lat        []time.Duration
}

// Percentile returns the p-th percentile latency (0 < p <= 100).
func (k *KindStats) Percentile(p float64) time.Duration {
	if len(k.lat) == 0 {
		return 0
	}
	i := int(float64(len(k.lat)-1) * p / 100)
	return k.lat[i]
}

// Result is what one run did and measured.
type Result struct {
	Phase      Phase
	Options    Options
	Kinds      map[Kind]*KindStats
	Ops        int64    // operations issued
	Unexpected int64    // over all kinds
	Errors     []string // the first unexpected outcomes, for the report
	Elapsed    time.Duration

	Before Sample   // idle, after priming, before the load
	Peak   Sample   // per field, the maximum during the run
	After  Sample   // idle again after the load (or the last try)
	Series []Sample // during the run, every SampleEvery
	// Leak is why pullgate did not return to idle within IdleWait (nil:
	// it did).
	Leak error

	mu sync.Mutex
}

const maxErrors = 30

func (r *Result) record(kind Kind, d time.Duration, denied bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.Kinds[kind]
	if k == nil {
		k = &KindStats{}
		r.Kinds[kind] = k
	}
	k.Count++
	k.lat = append(k.lat, d)
	switch {
	case err != nil:
		k.Unexpected++
		r.Unexpected++
		if len(r.Errors) < maxErrors {
			r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", kind, err))
		}
	case denied:
		k.Denied++
	}
}

// run is one run's shared state.
type run struct {
	p       *Pullgate
	c       *Corpus
	phase   Phase
	o       Options
	res     *Result
	fetched sync.Map // blob digest -> struct{}: served whole once (warm from then on)
	stop    atomic.Bool
	ops     atomic.Int64
}

// Run primes pullgate (every manifest once, by digest, so that blob
// requests have a decided manifest in their repository, as a real pull
// does), measures it idle, runs the mix with o.Clients clients until
// o.Duration or o.MaxRequests, closes the clients' connections, and waits
// for pullgate to return to idle. It checks every response against what
// the corpus says the request must get. Only loopback addresses are
// contacted.
func Run(ctx context.Context, p *Pullgate, c *Corpus, phase Phase, o Options) (*Result, error) {
	o.defaults()
	for _, u := range []string{p.URL, p.AdminURL} {
		if err := loopbackOnly(u); err != nil {
			return nil, err
		}
	}
	r := &run{p: p, c: c, phase: phase, o: o, res: &Result{Phase: phase, Options: o, Kinds: map[Kind]*KindStats{}}}
	rctx, cancel := context.WithTimeout(ctx, o.Duration+o.RequestTimeout+o.IdleWait+time.Minute)
	defer cancel()

	// Prime as the loader (or anonymously when auth is off).
	pc := r.newClient(0, &Loader, c.Artifacts)
	for _, a := range c.Artifacts {
		pc.op(rctx, KindPrime, a)
	}
	pc.close()
	if r.res.Unexpected > 0 {
		return r.res, fmt.Errorf("priming: %d unexpected outcomes: %s", r.res.Unexpected, strings.Join(r.res.Errors, "; "))
	}
	before, err := r.waitIdle(rctx, nil, 30*time.Second)
	if err != nil {
		return r.res, fmt.Errorf("idle before the run: %w", err)
	}
	r.res.Before = before

	// Clients: each with its own transport (its own connections) and a
	// working set of artifacts drawn from the whole corpus.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
	clients := make([]*client, o.Clients)
	nGuests := 0
	if phase == PhaseToken {
		nGuests = int(float64(o.Clients)*o.GuestShare + 0.5)
	}
	for i := range clients {
		set := make([]*Artifact, 0, o.WorkingSet)
		for _, j := range rng.Perm(len(c.Artifacts))[:min(o.WorkingSet, len(c.Artifacts))] {
			set = append(set, c.Artifacts[j])
		}
		user := &Loader
		if i < nGuests {
			user = &Guest
		}
		clients[i] = r.newClient(i+1, user, set)
	}

	start := time.Now()
	// Pacing: operation n starts no earlier than start + n/Rate, so the
	// rate holds on average even when some starts are late (a ticker
	// would drop the ticks a busy machine misses).
	var slot atomic.Int64
	wait := func() bool {
		if o.Rate <= 0 {
			return true
		}
		at := start.Add(time.Duration(float64(slot.Add(1)-1) * float64(time.Second) / o.Rate))
		if d := time.Until(at); d > 0 {
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-rctx.Done():
				return false
			}
		}
		return !r.stop.Load()
	}
	sampDone := make(chan struct{})
	sampStop := make(chan struct{})
	go func() {
		defer close(sampDone)
		tk := time.NewTicker(o.SampleEvery)
		defer tk.Stop()
		for {
			select {
			case <-sampStop:
				return
			case <-tk.C:
			}
			s, err := p.Measure(rctx)
			if err != nil {
				continue
			}
			s.At = time.Since(start)
			r.res.mu.Lock()
			r.res.Series = append(r.res.Series, s)
			r.res.mu.Unlock()
		}
	}()
	deadline := time.AfterFunc(o.Duration, func() { r.stop.Store(true) })
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !r.stop.Load() && rctx.Err() == nil {
				if !wait() {
					return
				}
				if n := r.ops.Add(1); o.MaxRequests > 0 && n > o.MaxRequests {
					r.stop.Store(true)
					return
				}
				cl.op(rctx, cl.pick(), cl.set[cl.rng.IntN(len(cl.set))])
			}
		}()
	}
	wg.Wait()
	deadline.Stop()
	r.res.Elapsed = time.Since(start)
	r.res.Ops = r.ops.Load()
	if o.MaxRequests > 0 {
		r.res.Ops = min(r.res.Ops, o.MaxRequests)
	}
	close(sampStop)
	<-sampDone
	for _, cl := range clients {
		cl.close()
	}
	if p.Exited() {
		return r.res, errors.New("pullgate exited during the run")
	}
	for _, s := range r.res.Series {
		r.res.Peak = maxSample(r.res.Peak, s)
	}
	after, err := r.waitIdle(rctx, &r.res.Before, o.IdleWait)
	r.res.After = after
	r.res.Peak = maxSample(r.res.Peak, after)
	if err != nil {
		r.res.Leak = err
	}
	for _, k := range r.res.Kinds {
		slices.Sort(k.lat)
	}
	return r.res, nil
}

func maxSample(a, b Sample) Sample {
	a.RSS, a.HWM = max(a.RSS, b.RSS), max(a.HWM, b.HWM)
	a.Goroutines, a.FDs = max(a.Goroutines, b.Goroutines), max(a.FDs, b.FDs)
	a.ClientConns, a.UpstreamConns = max(a.ClientConns, b.ClientConns), max(a.UpstreamConns, b.UpstreamConns)
	return a
}

// Idle tolerances. Once its clients are gone, pullgate keeps only its
// keep-alive pool to the upstream (net/http closes idle connections after
// 90 s; at most MaxIdleConnsPerHost, 64, are kept), each connection one
// descriptor and two goroutines (its read and write loops). Anything else
// must return to the baseline, up to a constant slack for work that runs
// on timers independently of the load (a store index flush, a cache
// janitor, a scrape in progress).
const (
	maxUpstreamIdle = 64
	goroutineSlack  = 6
	fdSlack         = 2
)

// idleCheck says why s is not back to idle relative to before (nil base:
// just no client connections).
func idleCheck(before *Sample, s Sample) error {
	if s.ClientConns > 0 {
		return fmt.Errorf("%d registry API connections still open after every client closed its own", s.ClientConns)
	}
	if before == nil {
		return nil
	}
	if s.UpstreamConns > maxUpstreamIdle {
		return fmt.Errorf("%d connections to the upstream, more than the idle pool's %d", s.UpstreamConns, maxUpstreamIdle)
	}
	if s.Others() > before.Others()+fdSlack {
		return fmt.Errorf("%d file descriptors besides connections, %d before the run (slack %d)", s.Others(), before.Others(), fdSlack)
	}
	allow := before.Goroutines + 2*max(0, s.UpstreamConns-before.UpstreamConns) + goroutineSlack
	if s.Goroutines > allow {
		return fmt.Errorf("%d goroutines, %d before the run: at most %d allowed (2 per extra upstream keep-alive connection, slack %d)",
			s.Goroutines, before.Goroutines, allow, goroutineSlack)
	}
	return nil
}

// waitIdle measures until idleCheck passes or the wait is over.
func (r *run) waitIdle(ctx context.Context, before *Sample, wait time.Duration) (Sample, error) {
	end := time.Now().Add(wait)
	var last Sample
	var lastErr error
	for {
		s, err := r.p.Measure(ctx)
		if err == nil {
			last, lastErr = s, idleCheck(before, s)
			if lastErr == nil {
				return s, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return last, fmt.Errorf("not idle after %s: %w", wait, lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("load: %s is not a loopback address; the generator only talks to loopback", raw)
	}
	return nil
}

// client is one registry client: its own connections, user and tokens.
type client struct {
	r     *run
	user  *harness.Credentials // nil when auth is off
	hc    *http.Client
	tr    *http.Transport
	set   []*Artifact
	rng   *rand.Rand
	token map[string]heldToken // repository -> token
}

type heldToken struct {
	value   string
	expires time.Time
}

func (r *run) newClient(id int, user *harness.Credentials, set []*Artifact) *client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	cl := &client{r: r, hc: &http.Client{Transport: tr, Timeout: r.o.RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		tr: tr, set: set, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(id))), token: map[string]heldToken{}}
	if r.phase == PhaseToken {
		cl.user = user
	}
	return cl
}

func (cl *client) close() { cl.tr.CloseIdleConnections() }

func (cl *client) pick() Kind {
	total := 0
	for _, m := range mix {
		total += m.weight
	}
	n := cl.rng.IntN(total)
	for _, m := range mix {
		if n < m.weight {
			return m.kind
		}
		n -= m.weight
	}
	return mix[0].kind
}

// expectation is what a request must get.
type expectation struct {
	allowed bool
	rule    string // the rule a denial names
	reason  string // a substring of the denial's message
}

func (cl *client) expect(a *Artifact, kind Kind) expectation {
	if cl.user == &Guest && !a.Open {
		return expectation{rule: RuleAccess, reason: "no access rule allows it"}
	}
	switch kind {
	case KindTags:
		if a.ListDenied {
			return expectation{rule: a.Rule, reason: a.Reason}
		}
		return expectation{allowed: true}
	case KindReferrers:
		if !a.Allowed {
			return expectation{rule: a.Rule, reason: a.Reason}
		}
	}
	return expectation{allowed: a.Allowed, rule: a.Rule, reason: a.Reason}
}

var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// op issues one operation of kind on a and records its outcome.
func (cl *client) op(ctx context.Context, kind Kind, a *Artifact) {
	base := cl.r.p.URL + "/v2/upstream.local/" + a.Repo
	method, path, hdr := http.MethodGet, "", http.Header{}
	var blob *harness.Blob
	var lo, hi int64
	switch kind {
	case KindManifestTag, KindManifestHead:
		path = "/manifests/" + a.Tag
		hdr.Set("Accept", manifestAccept)
		if kind == KindManifestHead {
			method = http.MethodHead
		}
	case KindManifestDigest, KindPrime:
		path = "/manifests/" + a.Digest
		hdr.Set("Accept", manifestAccept)
	case KindBlobWarm, KindBlobRange:
		blob = &a.Blobs[cl.rng.IntN(len(a.Blobs))]
		path = "/blobs/" + blob.Digest
		if kind == KindBlobWarm {
			// Cold: pullgate has not served this blob whole in this run
			// yet (as far as the clients saw). Blobs a client must be
			// refused are neither.
			if _, warm := cl.r.fetched.Load(blob.Digest); !cl.expect(a, kind).allowed {
				kind = KindBlobDenied
			} else if !warm {
				kind = KindBlobCold
			}
		} else {
			lo = cl.rng.Int64N(blob.Size)
			hi = lo + cl.rng.Int64N(blob.Size-lo)
			hdr.Set("Range", fmt.Sprintf("bytes=%d-%d", lo, hi))
		}
	case KindReferrers:
		path = "/referrers/" + a.Digest
	case KindTags:
		path = "/tags/list"
	}
	want := cl.expect(a, kind)
	start := time.Now()
	resp, err := cl.send(ctx, kind, a, method, base+path, hdr)
	if err != nil {
		cl.r.res.record(kind, time.Since(start), false, fmt.Errorf("%s %s: %w", method, a.Repo+path, err))
		return
	}
	defer resp.Body.Close()
	denied, err := cl.check(resp, a, kind, want, blob, lo, hi)
	cl.r.res.record(kind, time.Since(start), denied, err)
	if err == nil && !denied && blob != nil && resp.StatusCode == http.StatusOK {
		cl.r.fetched.Store(blob.Digest, struct{}{})
	}
}

// send does the request, running the token flow on a 401 challenge when
// auth is on (each step recorded as its own kind).
func (cl *client) send(ctx context.Context, kind Kind, a *Artifact, method, u string, hdr http.Header) (*http.Response, error) {
	do := func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, err
		}
		req.Header = hdr.Clone()
		if t, ok := cl.token[a.Repo]; ok && cl.user != nil {
			req.Header.Set("Authorization", "Bearer "+t.value)
		}
		return cl.hc.Do(req)
	}
	if t, ok := cl.token[a.Repo]; ok && time.Until(t.expires) < 5*time.Second {
		delete(cl.token, a.Repo) // about to expire: log in again
	}
	resp, err := do()
	if err != nil || resp.StatusCode != http.StatusUnauthorized || cl.user == nil {
		return resp, err
	}
	// A 401 is expected only without a token.
	_, held := cl.token[a.Repo]
	ch := resp.Header.Get("WWW-Authenticate")
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	var cerr error
	if held {
		cerr = fmt.Errorf("401 with a token that had not expired (%s)", ch)
	}
	cl.r.res.record(KindChallenge, 0, false, cerr)
	start := time.Now()
	tok, err := cl.fetchToken(ctx, ch)
	cl.r.res.record(KindToken, time.Since(start), false, err)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	cl.token[a.Repo] = tok
	return do()
}

// fetchToken runs the Docker token flow for a Bearer challenge.
func (cl *client) fetchToken(ctx context.Context, challenge string) (heldToken, error) {
	scheme, params, ok := strings.Cut(challenge, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return heldToken{}, fmt.Errorf("not a Bearer challenge: %q", challenge)
	}
	p := map[string]string{}
	for _, kv := range strings.Split(params, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		p[k] = strings.Trim(v, `"`)
	}
	if err := loopbackOnly(p["realm"]); err != nil {
		return heldToken{}, err
	}
	q := url.Values{"service": {p["service"]}}
	if p["scope"] != "" {
		q.Set("scope", p["scope"])
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p["realm"]+"?"+q.Encode(), nil)
	if err != nil {
		return heldToken{}, err
	}
	req.SetBasicAuth(cl.user.Username, cl.user.Password)
	issued := time.Now()
	resp, err := cl.hc.Do(req)
	if err != nil {
		return heldToken{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return heldToken{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return heldToken{}, fmt.Errorf("%s: %s", resp.Status, trunc(b))
	}
	var tr struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal(b, &tr); err != nil || tr.Token == "" {
		return heldToken{}, fmt.Errorf("token response %q: %v", trunc(b), err)
	}
	return heldToken{value: tr.Token, expires: issued.Add(time.Duration(tr.ExpiresIn) * time.Second)}, nil
}

// check compares a response with the expectation; denied reports an
// expected denial.
func (cl *client) check(resp *http.Response, a *Artifact, kind Kind, want expectation, blob *harness.Blob, lo, hi int64) (bool, error) {
	if !want.allowed {
		return true, checkDenial(resp, want)
	}
	switch kind {
	case KindManifestTag, KindManifestDigest, KindPrime, KindManifestHead:
		if resp.StatusCode != http.StatusOK {
			return false, statusErr(resp, http.StatusOK)
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != a.Digest {
			return false, fmt.Errorf("%s: Docker-Content-Digest %q, want %s", a.Repo, got, a.Digest)
		}
		if kind == KindManifestHead {
			if resp.ContentLength != int64(len(a.Manifest)) {
				return false, fmt.Errorf("%s: HEAD Content-Length %d, want %d", a.Repo, resp.ContentLength, len(a.Manifest))
			}
			return false, nil
		}
		return false, hashBody(resp.Body, a.Digest, int64(len(a.Manifest)))
	case KindBlobCold, KindBlobWarm, KindBlobDenied:
		if resp.StatusCode != http.StatusOK {
			return false, statusErr(resp, http.StatusOK)
		}
		return false, hashBody(resp.Body, blob.Digest, blob.Size)
	case KindBlobRange:
		if resp.StatusCode != http.StatusPartialContent {
			return false, statusErr(resp, http.StatusPartialContent)
		}
		if cr, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", lo, hi, blob.Size); cr != want {
			return false, fmt.Errorf("%s: Content-Range %q, want %q", blob.Digest, cr, want)
		}
		got, err := io.ReadAll(io.LimitReader(resp.Body, hi-lo+2))
		if err != nil {
			return false, fmt.Errorf("%s range %d-%d: %w", blob.Digest, lo, hi, err)
		}
		if string(got) != string(blob.Data[lo:hi+1]) {
			return false, fmt.Errorf("%s range %d-%d: %d bytes that differ from the blob's", blob.Digest, lo, hi, len(got))
		}
		return false, nil
	case KindReferrers:
		if resp.StatusCode != http.StatusOK {
			return false, statusErr(resp, http.StatusOK)
		}
		var idx struct {
			Manifests []struct {
				Digest string `json:"digest"`
			} `json:"manifests"`
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			return false, fmt.Errorf("%s referrers: %v: %q", a.Repo, err, trunc(b))
		}
		var got []string
		for _, m := range idx.Manifests {
			got = append(got, m.Digest)
		}
		sort.Strings(got)
		exp := slices.Clone(a.Referrers)
		sort.Strings(exp)
		if !slices.Equal(got, exp) {
			return false, fmt.Errorf("%s referrers %v, want %v", a.Repo, got, exp)
		}
		return false, nil
	case KindTags:
		if resp.StatusCode != http.StatusOK {
			return false, statusErr(resp, http.StatusOK)
		}
		var tl struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return false, err
		}
		if err := json.Unmarshal(b, &tl); err != nil {
			return false, fmt.Errorf("%s tags: %v: %q", a.Repo, err, trunc(b))
		}
		if tl.Name != "upstream.local/"+a.Repo || !slices.Contains(tl.Tags, a.Tag) {
			return false, fmt.Errorf("%s tags: name %q tags %v, want %s among them", a.Repo, tl.Name, tl.Tags, a.Tag)
		}
		return false, nil
	}
	return false, fmt.Errorf("unknown kind %s", kind)
}

// checkDenial: a denial is 403 with the OCI code DENIED; a policy denial
// names its rule (detail.rule, and the status line of a HEAD) and reason.
func checkDenial(resp *http.Response, want expectation) error {
	if resp.StatusCode != http.StatusForbidden {
		return fmt.Errorf("want 403 DENIED by %s: %w", want.rule, statusErr(resp, http.StatusForbidden))
	}
	if resp.Request.Method == http.MethodHead {
		if want.rule != RuleAccess && !strings.Contains(resp.Status, "rule "+want.rule) {
			return fmt.Errorf("HEAD denial %q does not name rule %s", resp.Status, want.rule)
		}
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	e, err := harness.ParseOCIError(b)
	if err != nil {
		return err
	}
	if e.Code != "DENIED" || !strings.Contains(e.Message, want.reason) {
		return fmt.Errorf("denial %s %q, want DENIED with %q", e.Code, e.Message, want.reason)
	}
	if want.rule != RuleAccess {
		d, _ := e.Detail.(map[string]any)
		if d["rule"] != want.rule {
			return fmt.Errorf("denial by rule %v, want %s: %s", d["rule"], want.rule, e.Message)
		}
	}
	return nil
}

func statusErr(resp *http.Response, want int) error {
	var b []byte
	if resp.Request.Method != http.MethodHead {
		b, _ = io.ReadAll(io.LimitReader(resp.Body, 2048))
	}
	return fmt.Errorf("%s %s: %s (want %d): %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, want, trunc(b))
}

// hashBody reads the whole body and checks its length and digest.
func hashBody(body io.Reader, digest string, size int64) error {
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		return fmt.Errorf("%s: after %d of %d bytes: %w", digest, n, size, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != size || got != digest {
		return fmt.Errorf("%s: got %d bytes with digest %s, want %d bytes", digest, n, got, size)
	}
	return nil
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
