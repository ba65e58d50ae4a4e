package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A writer rotating continuously while Follow reads the whole log
// (FromStart+Rotated): every event exactly once, in order.
func TestStressFollowWholeLogConcurrent(t *testing.T) {
	for iter := 0; iter < 8; iter++ {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 1000})
		if err != nil {
			t.Fatal(err)
		}
		const pre, n = 40, 400
		var want []string
		for i := 0; i < pre; i++ {
			e := ev(i, "deny", "b", "up/x", strings.Repeat("z", 300))
			want = append(want, e.Reference)
			l.Write(e)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var c collector
		done := make(chan error, 1)
		o := FollowOptions{FromStart: true, Rotated: true, Interval: time.Millisecond}
		go func() { done <- Follow(ctx, path, o, c.add) }()
		for i := pre; i < n; i++ {
			e := ev(i, "deny", "b", "up/x", strings.Repeat("z", 300))
			want = append(want, e.Reference)
			l.Write(e)
			if i%5 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
		l.Close()
		got := c.waitFor(t, n)
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		if fmt.Sprint(c.refs) != fmt.Sprint(want) {
			t.Fatalf("iter %d: followed %d events\n%v\nwant %d", iter, len(c.refs), c.refs, len(want))
		}
		c.mu.Unlock()
		_ = got
	}
}

// Tail with n=0 (every event) while the writer rotates concurrently.
func TestStressTailAllConcurrent(t *testing.T) {
	for iter := 0; iter < 8; iter++ {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 1000})
		if err != nil {
			t.Fatal(err)
		}
		const pre, n = 40, 400
		var want []string
		for i := 0; i < pre; i++ {
			e := ev(i, "deny", "b", "up/x", strings.Repeat("z", 300))
			want = append(want, e.Reference)
			l.Write(e)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var c collector
		done := make(chan error, 1)
		go func() {
			done <- Tail(ctx, path, Query{}, 0, time.Millisecond, func(e Event) error { c.add(e); return nil })
		}()
		for i := pre; i < n; i++ {
			e := ev(i, "deny", "b", "up/x", strings.Repeat("z", 300))
			want = append(want, e.Reference)
			l.Write(e)
			if i%5 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
		l.Close()
		c.waitFor(t, n)
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		if fmt.Sprint(c.refs) != fmt.Sprint(want) {
			t.Fatalf("iter %d: tailed %d events\n%v\nwant %d", iter, len(c.refs), c.refs, len(want))
		}
		c.mu.Unlock()
	}
}

// Follow (from the end) started while the writer rotates continuously:
// everything after Started exactly once, in order (a suffix of want).
func TestStressFollowFromEndConcurrent(t *testing.T) {
	for iter := 0; iter < 8; iter++ {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 1000})
		if err != nil {
			t.Fatal(err)
		}
		const n = 400
		var want []string
		ctx, cancel := context.WithCancel(context.Background())
		var c collector
		done := make(chan error, 1)
		started := make(chan struct{})
		o := FollowOptions{Interval: time.Millisecond, Started: func() { close(started) }}
		go func() { done <- Follow(ctx, path, o, c.add) }()
		<-started
		for i := 0; i < n; i++ {
			e := ev(i, "deny", "b", "up/x", strings.Repeat("z", 300))
			want = append(want, e.Reference)
			l.Write(e)
			if i%5 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
		l.Close()
		c.waitFor(t, n)
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		if fmt.Sprint(c.refs) != fmt.Sprint(want) {
			t.Fatalf("iter %d: followed %d events\n%v\nwant %d", iter, len(c.refs), c.refs, len(want))
		}
		c.mu.Unlock()
	}
}
