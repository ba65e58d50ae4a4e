package clientauth

import (
	"math"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// limiter is a token bucket per key (client IP, user name) that failed
// logins drain. A key whose bucket holds less than one token is refused
// until it refills; successful logins cost nothing (their token is
// refunded).
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets *lru.Cache[string, *bucket]
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxTrackedKeys bounds the limiter's memory; the least recently seen keys
// are forgotten first.
const maxTrackedKeys = 100000

func newLimiter(rate, burst float64, now func() time.Time) *limiter {
	c, _ := lru.New[string, *bucket](maxTrackedKeys)
	return &limiter{rate: rate, burst: burst, now: now, buckets: c}
}

// refill brings b up to date (caller holds mu).
func (l *limiter) refill(b *bucket, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
}

// take spends one token of key's bucket for a login attempt: 0 when the
// attempt may proceed, else how long until it may. Spending before the
// password is checked bounds concurrent guesses too; a successful attempt
// gives its token back (refund).
func (l *limiter) take(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets.Add(key, b)
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// refund returns the token of an attempt that succeeded or never checked a
// password.
func (l *limiter) refund(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets.Get(key); ok {
		l.refill(b, l.now())
		b.tokens = math.Min(l.burst, b.tokens+1)
	}
}

// fail records a failed attempt that did not go through take (malformed
// requests).
func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets.Get(key)
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets.Add(key, b)
	}
	l.refill(b, now)
	b.tokens = math.Max(0, b.tokens-1)
}
