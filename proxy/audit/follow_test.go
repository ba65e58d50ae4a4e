package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type collector struct {
	mu   sync.Mutex
	refs []string
}

func (c *collector) add(e Event) {
	c.mu.Lock()
	c.refs = append(c.refs, e.Reference)
	c.mu.Unlock()
}

func (c *collector) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := append([]string(nil), c.refs...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("followed %d events, want %d: %v", len(got), n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowAcrossRotations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	var c collector
	done := make(chan error, 1)
	// Started before the file exists: it waits, then reads it whole.
	started := make(chan struct{})
	o := FollowOptions{Interval: 5 * time.Millisecond, Started: func() { close(started) }}
	go func() { done <- Follow(ctx, path, o, c.add) }()
	<-started

	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 50})
	if err != nil {
		t.Fatal(err)
	}
	const n = 120
	var want []string
	for i := 0; i < n; i++ {
		e := ev(i, "deny", "blocked", "up/x", strings.Repeat("z", 150))
		want = append(want, e.Reference)
		if err := l.Write(e); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			time.Sleep(3 * time.Millisecond) // let Follow interleave with rotations
		}
	}
	l.Close()
	if m, _ := filepath.Glob(path + ".*"); len(m) < 5 {
		t.Fatalf("only %d rotations", len(m))
	}
	got := c.waitFor(t, n)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("followed\n%v\nwant\n%v", got, want)
	}
}

func TestFollowFromEndAndTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, _ := Open(path)
	l.Write(ev(1, "allow", "open", "up/a"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var c collector
	done := make(chan error, 1)
	started := make(chan struct{})
	o := FollowOptions{Interval: 5 * time.Millisecond, Started: func() { close(started) }}
	go func() { done <- Follow(ctx, path, o, c.add) }()
	<-started // Follow is at the end now
	l.Write(ev(2, "deny", "blocked", "up/b"))
	if got := c.waitFor(t, 1); got[0] != "v2" {
		t.Fatalf("got %v: the event before Follow started was delivered", got)
	}
	l.Close()
	// Truncated in place (copytruncate): Follow starts over.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	l, _ = Open(path)
	l.Write(ev(3, "deny", "blocked", "up/c"))
	l.Close()
	if got := c.waitFor(t, 2); got[1] != "v3" {
		t.Fatalf("after truncation got %v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Follow(context.Background(), "-", FollowOptions{}, func(Event) {}); err == nil {
		t.Fatal("following stdout accepted")
	}
}

// A log whose current file is missing at the start (moved away, say) but
// whose rotated files are there: those are history, not what Follow waits
// for; everything written after its first look is delivered, including a
// file rotated away before Follow looked again.
func TestFollowMissingFileSkipsOlderRotations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		l.Write(ev(i, "allow", "open", "up/old", strings.Repeat("o", 1500)))
	}
	l.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var c collector
	done := make(chan error, 1)
	started := make(chan struct{})
	// A long interval: the writes below all happen before Follow looks again.
	o := FollowOptions{Interval: 300 * time.Millisecond, Started: func() { close(started) }}
	go func() { done <- Follow(ctx, path, o, c.add) }()
	<-started
	l, err = OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 100; i < 108; i++ {
		e := ev(i, "deny", "blocked", "up/new", strings.Repeat("n", 1500))
		want = append(want, e.Reference)
		l.Write(e)
	}
	l.Close()
	if m, _ := filepath.Glob(path + ".*"); len(m) < 5 {
		t.Fatalf("only %d rotated files", len(m))
	}
	got := c.waitFor(t, len(want))
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if fmt.Sprint(c.refs) != fmt.Sprint(want) {
		t.Fatalf("followed %v, want %v (first wait saw %v)", c.refs, want, got)
	}
}

// With FromStart and Rotated, Follow reads the whole log, rotated files
// first, says when it has caught up (Idle), then delivers what comes next.
func TestFollowWholeLogThenNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < 12; i++ {
		e := ev(i, "deny", "blocked", "up/x", strings.Repeat("h", 1500))
		want = append(want, e.Reference)
		l.Write(e)
	}
	if m, _ := filepath.Glob(path + ".*"); len(m) < 4 {
		t.Fatalf("only %d rotated files", len(m))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var c collector
	caught := make(chan int, 1)
	o := FollowOptions{FromStart: true, Rotated: true, Interval: 5 * time.Millisecond, Idle: func() {
		c.mu.Lock()
		n := len(c.refs)
		c.mu.Unlock()
		select {
		case caught <- n:
		default:
		}
	}}
	done := make(chan error, 1)
	go func() { done <- Follow(ctx, path, o, c.add) }()
	if n := <-caught; n != len(want) {
		t.Fatalf("caught up after %d events, want %d", n, len(want))
	}
	for i := 12; i < 20; i++ {
		e := ev(i, "allow", "open", "up/y", strings.Repeat("n", 1500))
		want = append(want, e.Reference)
		l.Write(e)
	}
	l.Close()
	got := c.waitFor(t, len(want))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("followed %v, want %v", got, want)
	}
}

// Tail: the last n selected decisions of the whole log (rotated files
// included), then each new selected one.
func TestTailLastThenNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := OpenWith(Options{Path: path, MaxSize: 4 << 10, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 16; i++ {
		d := "allow"
		if i%2 == 0 {
			d = "deny"
		}
		l.Write(ev(i, d, "r", "up/x", strings.Repeat("t", 1200)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var c collector
	done := make(chan error, 1)
	go func() {
		done <- Tail(ctx, path, Query{Decision: "deny"}, 3, 5*time.Millisecond, func(e Event) error { c.add(e); return nil })
	}()
	if got := c.waitFor(t, 3); fmt.Sprint(got) != "[v10 v12 v14]" {
		t.Fatalf("history: %v, want the last 3 denials", got)
	}
	l.Write(ev(16, "allow", "r", "up/x"))
	l.Write(ev(17, "deny", "r", "up/x"))
	l.Close()
	got := c.waitFor(t, 4)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[v10 v12 v14 v17]" {
		t.Fatalf("followed %v", got)
	}
	// fn's error ends Tail with it.
	stop := fmt.Errorf("stop")
	if err := Tail(context.Background(), path, Query{}, 1, time.Millisecond, func(Event) error { return stop }); err != stop {
		t.Fatalf("Tail returned %v, want fn's error", err)
	}
}
