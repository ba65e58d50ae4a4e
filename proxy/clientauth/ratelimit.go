package clientauth

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// limiter bounds password guessing with a token bucket per key (client IP,
// user name) that only failed logins drain, and bounds what is in flight:
// an attempt may check a password only while its key's bucket holds a
// whole token for it and for every other attempt of that key still being
// checked. So a key never has more password checks under way than it may
// still fail (at most burst at once), a successful login costs nothing,
// and an attempt that finds the room taken by attempts in flight waits for
// one to finish instead of being refused: a success leaves the room, a
// failure spends a token. A key whose bucket holds less than one token is
// refused until it refills.
type limiter struct {
	rate    float64 // tokens per second
	burst   float64
	now     func() time.Time
	maxWait time.Duration // longest wait for room (wall time)

	mu      sync.Mutex
	buckets *lru.Cache[string, *bucket]
}

type bucket struct {
	tokens   float64
	last     time.Time
	inflight int           // attempts checking a password now
	freed    chan struct{} // closed (and replaced) when one of them ends
}

// maxTrackedKeys bounds the limiter's memory; the least recently seen keys
// are forgotten first.
const maxTrackedKeys = 100000

// maxLoginWait bounds how long a login waits for other attempts of its
// client address or user name to finish (bcrypt checks of a few tens of
// milliseconds each, at most burst at a time per key).
const maxLoginWait = 30 * time.Second

// errLoginBusy is returned by begin when the room did not free up in time
// or the request ended while waiting.
var errLoginBusy = errors.New("too many logins in progress")

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	c, _ := lru.New[string, *bucket](maxTrackedKeys)
	return &limiter{rate: rate, burst: burst, now: now, maxWait: maxLoginWait, buckets: c}
}

// get returns key's bucket, refilled up to now (caller holds mu).
func (l *limiter) get(key string) *bucket {
	now := l.now()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = &bucket{tokens: l.burst, last: now, freed: make(chan struct{})}
		l.buckets.Add(key, b)
	}
	l.refill(b, now)
	return b
}

// refill brings b up to date (caller holds mu).
func (l *limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
}

// attempt is a password check holding room in one key's bucket; end
// releases it.
type attempt struct {
	l *limiter
	b *bucket
}

// begin waits until key's bucket has room for one more password check.
// It returns the attempt when the check may proceed; or how long until the
// key may try again when the bucket is empty (too many failures); or
// errLoginBusy when the room stayed taken for maxWait or ctx ended.
func (l *limiter) begin(ctx context.Context, key string) (*attempt, time.Duration, error) {
	var deadline <-chan time.Time
	for {
		l.mu.Lock()
		b := l.get(key)
		if b.tokens < 1 {
			l.mu.Unlock()
			return nil, time.Duration((1 - b.tokens) / l.rate * float64(time.Second)), nil
		}
		if b.tokens-float64(b.inflight) >= 1 {
			b.inflight++
			l.mu.Unlock()
			return &attempt{l: l, b: b}, 0, nil
		}
		// Every token left is held by an attempt in flight: wait for one
		// to end (a success frees its room, a failure spends its token).
		freed := b.freed
		l.mu.Unlock()
		if deadline == nil {
			t := time.NewTimer(l.maxWait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-freed:
		case <-deadline:
			return nil, 0, errLoginBusy
		case <-ctx.Done():
			return nil, 0, errLoginBusy
		}
	}
}

// end releases the attempt's room; a failed attempt spends a token.
func (a *attempt) end(failed bool) {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	b := a.b
	if failed {
		l.refill(b, l.now())
		b.tokens = math.Max(0, b.tokens-1)
	}
	b.inflight--
	close(b.freed)
	b.freed = make(chan struct{})
}

// fail records a failed attempt that checked no password (malformed
// requests).
func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(key)
	b.tokens = math.Max(0, b.tokens-1)
}
