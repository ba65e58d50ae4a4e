package inflight

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// capWriter records what a reader received and fails the test when it
// receives more than the fetch released.
type capWriter struct {
	t     *testing.T
	mu    sync.Mutex
	n     int64
	limit func() int64
	at    map[int64]chan struct{}
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += int64(len(p))
	if l := w.limit(); w.n > l {
		w.t.Errorf("reader holds %d bytes, only %d released", w.n, l)
	}
	for n, ch := range w.at {
		if w.n >= n {
			close(ch)
			delete(w.at, n)
		}
	}
	return len(p), nil
}

// reached returns a channel closed once the reader holds n bytes.
func (w *capWriter) reached(n int64) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if w.n >= n {
		close(ch)
	} else {
		w.at[n] = ch
	}
	return ch
}

func waitFor(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// ReleaseUpTo shows readers the bytes before its limit only, never lowers
// it, and a failed fetch still fails its readers.
func TestReleaseUpTo(t *testing.T) {
	for _, end := range []string{"fail", "verify"} {
		t.Run(end, func(t *testing.T) {
			g, _ := New(t.TempDir())
			const size, hold = 10000, 100
			step := make(chan func(f *Fetch))
			f, _, _ := g.Do("k", hold, func(f *Fetch) {
				f.Begin(size)
				f.Write(make([]byte, 6000)) // spooled ahead of the release
				for s := range step {
					s(f)
				}
			})
			defer f.Release()
			var mu sync.Mutex
			released, verified := int64(0), false
			do := func(n int64, more func(f *Fetch)) {
				mu.Lock()
				released = max(released, n)
				mu.Unlock()
				step <- func(f *Fetch) {
					if more != nil {
						more(f)
					}
					f.ReleaseUpTo(n)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if _, err := f.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait before any release = %v, want to block", err)
			}
			do(3000, nil)
			wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer wcancel()
			if n, err := f.Wait(wctx); err != nil || n != size {
				t.Fatalf("Wait after a release = %d, %v", n, err)
			}
			if f.Ungated() {
				t.Fatal("a partial release ungated the fetch")
			}
			w := &capWriter{t: t, at: map[int64]chan struct{}{}, limit: func() int64 {
				mu.Lock()
				defer mu.Unlock()
				if verified {
					return size
				}
				return min(released, size-hold)
			}}
			copied := make(chan error, 1)
			go func() { _, err := f.CopyTo(wctx, w, 0, size); copied <- err }()
			waitFor(t, w.reached(3000), "the first 3000 bytes")
			do(2000, nil) // lower: ignored
			do(5000, nil)
			waitFor(t, w.reached(5000), "5000 bytes")
			do(size+1, func(f *Fetch) { f.Write(make([]byte, 4000)) }) // all written and released: the tail is held
			waitFor(t, w.reached(size-hold), "all but the tail")
			if end == "fail" {
				step <- func(f *Fetch) { f.Finish(errors.New("custom operator refused")) }
				if err := <-copied; !errors.Is(err, ErrAborted) {
					t.Fatalf("reader of a failed fetch: %v", err)
				}
			} else {
				mu.Lock()
				verified = true
				mu.Unlock()
				step <- func(f *Fetch) { f.Finish(nil) }
				if err := <-copied; err != nil || w.n != size {
					t.Fatalf("reader of a verified fetch: %d bytes, %v", w.n, err)
				}
			}
			close(step)
		})
	}
}
