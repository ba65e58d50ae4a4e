package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A writer rotating continuously while a reader follows the log: every
// event the reader is meant to get, exactly once, in order.
func TestStressFollowWhileRotating(t *testing.T) {
	cases := []struct {
		name string
		pre  int // events written before the reader starts (and expected)
		// follow runs the reader; ready is closed once events written from
		// then on are expected.
		follow func(ctx context.Context, path string, add func(Event), ready chan struct{}) error
	}{
		{"whole log", 40, func(ctx context.Context, path string, add func(Event), ready chan struct{}) error {
			close(ready)
			return Follow(ctx, path, FollowOptions{FromStart: true, Rotated: true, Interval: time.Millisecond}, add)
		}},
		{"tail everything", 40, func(ctx context.Context, path string, add func(Event), ready chan struct{}) error {
			close(ready)
			return Tail(ctx, path, Query{}, 0, time.Millisecond, func(e Event) error { add(e); return nil })
		}},
		{"from the end", 0, func(ctx context.Context, path string, add func(Event), ready chan struct{}) error {
			return Follow(ctx, path, FollowOptions{Interval: time.Millisecond, Started: func() { close(ready) }}, add)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for iter := 0; iter < 8; iter++ {
				path := filepath.Join(t.TempDir(), "audit.jsonl")
				l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 1000})
				if err != nil {
					t.Fatal(err)
				}
				const n = 400
				var want []string
				write := func(i int) {
					e := ev(i, "deny", "b", "up/x", strings.Repeat("z", 300))
					want = append(want, e.Reference)
					l.Write(e)
				}
				for i := 0; i < tc.pre; i++ {
					write(i)
				}
				ctx, cancel := context.WithCancel(context.Background())
				var c collector
				done, ready := make(chan error, 1), make(chan struct{})
				go func() { done <- tc.follow(ctx, path, c.add, ready) }()
				<-ready
				for i := tc.pre; i < n; i++ {
					write(i)
					if i%5 == 0 {
						time.Sleep(50 * time.Microsecond)
					}
				}
				l.Close()
				c.waitFor(t, n)
				time.Sleep(20 * time.Millisecond) // nothing more may arrive
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				c.mu.Lock()
				if fmt.Sprint(c.refs) != fmt.Sprint(want) {
					t.Fatalf("iter %d: got %d events\n%v\nwant %d", iter, len(c.refs), c.refs, len(want))
				}
				c.mu.Unlock()
			}
		})
	}
}
