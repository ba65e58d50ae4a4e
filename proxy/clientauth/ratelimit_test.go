package clientauth

import (
	"context"
	"testing"
	"time"
)

// An attempt that finds every token held by attempts in flight waits: a
// success lets it in, failures that empty the bucket refuse it with the
// time to wait, and the wait ends with the request or after maxWait.
func TestLimiterWaitsForAttemptsInFlight(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newLimiter(10.0/60, 2, func() time.Time { return now })
	ctx := context.Background()
	begin := func() *attempt {
		t.Helper()
		a, wait, err := l.begin(ctx, "k")
		if a == nil || wait != 0 || err != nil {
			t.Fatalf("begin: %v %v %v", a, wait, err)
		}
		return a
	}
	type result struct {
		a    *attempt
		wait time.Duration
		err  error
	}
	waiting := func(ctx context.Context) chan result {
		ch := make(chan result, 1)
		go func() {
			a, wait, err := l.begin(ctx, "k")
			ch <- result{a, wait, err}
		}()
		return ch
	}
	// Whether a waiter is still blocked cannot be seen from outside
	// without a race; the checks below only rely on what it returns.
	a1, a2 := begin(), begin()
	w := waiting(ctx)
	a1.end(false) // success: its room is free again
	r := <-w
	if r.a == nil || r.err != nil {
		t.Fatalf("after a success: %+v", r)
	}
	w = waiting(ctx)
	a2.end(true)
	r.a.end(true) // two failures: the bucket is empty
	if r := <-w; r.a != nil || r.err != nil || r.wait != 6*time.Second {
		t.Fatalf("after the bucket emptied: %+v, want a 6s wait", r)
	}

	now = now.Add(time.Hour)
	b1, b2 := begin(), begin()
	cctx, cancel := context.WithCancel(ctx)
	w = waiting(cctx)
	cancel()
	if r := <-w; r.a != nil || r.err != errLoginBusy {
		t.Fatalf("after the request ended: %+v", r)
	}
	l.maxWait = 50 * time.Millisecond
	start := time.Now()
	if a, _, err := l.begin(ctx, "k"); a != nil || err != errLoginBusy {
		t.Fatalf("no room for maxWait: %v %v", a, err)
	}
	if d := time.Since(start); d < l.maxWait {
		t.Fatalf("gave up after %v, before maxWait", d)
	}
	// Other keys are not held up.
	if a, _, err := l.begin(ctx, "other"); a == nil || err != nil {
		t.Fatalf("other key: %v %v", a, err)
	}
	b1.end(false)
	b2.end(false)
	begin().end(false)
	if b := l.get("k"); b.inflight != 0 || b.tokens != 2 {
		t.Fatalf("bucket %+v after every attempt ended", b)
	}
}
