package inflight

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCoalesceAndHoldBack(t *testing.T) {
	g, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 10000) // 100000 bytes
	const hold = 1000
	var runs atomic.Int32
	release := make(chan struct{})
	run := func(f *Fetch) {
		runs.Add(1)
		f.Begin(int64(len(data)))
		f.Ungate()
		f.Write(data[:len(data)-10])
		<-release // the verifier has not seen the end yet
		f.Write(data[len(data)-10:])
		f.Finish(nil)
	}
	var wg sync.WaitGroup
	results := make([][]byte, 8)
	for i := range results {
		f, _, err := g.Do("k", hold, run)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int, f *Fetch) {
			defer wg.Done()
			defer f.Release()
			if _, err := f.Wait(context.Background()); err != nil {
				t.Error(err)
				return
			}
			var b bytes.Buffer
			if _, err := f.CopyTo(context.Background(), &b, 0, int64(len(data))); err != nil {
				t.Error(err)
			}
			results[i] = b.Bytes()
		}(i, f)
	}
	// Before the end is verified, readers must not get past size-hold.
	time.Sleep(50 * time.Millisecond)
	f, joined, _ := g.Do("k", hold, run)
	if !joined {
		t.Fatal("second Do did not join the fetch in flight")
	}
	late := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		_, err := f.CopyTo(context.Background(), late, 0, int64(len(data)))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if n := late.Len(); n > len(data)-hold {
		t.Fatalf("reader got %d bytes before verification, hold back is %d", n, hold)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f.Release()
	if !bytes.Equal(late.Bytes(), data) {
		t.Fatal("late reader got different bytes")
	}
	wg.Wait()
	for i, r := range results {
		if !bytes.Equal(r, data) {
			t.Fatalf("reader %d got %d bytes", i, len(r))
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("run started %d times, want 1", runs.Load())
	}
	if g.InFlight() != 0 {
		t.Fatal("finished fetch still in flight")
	}
}

func TestFailureAbortsReaders(t *testing.T) {
	dir := t.TempDir()
	g, _ := New(dir)
	boom := errors.New("digest mismatch")
	started := make(chan struct{})
	f, _, _ := g.Do("k", 10, func(f *Fetch) {
		f.Begin(100)
		f.Ungate()
		f.Write(make([]byte, 95))
		close(started)
		time.Sleep(20 * time.Millisecond)
		f.Finish(boom)
	})
	<-started
	if _, err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_, err := f.CopyTo(context.Background(), &b, 0, 100)
	got := b.Bytes()
	if !errors.Is(err, ErrAborted) {
		t.Fatalf("reader err = %v, want ErrAborted", err)
	}
	if len(got) > 90 {
		t.Fatalf("reader got %d bytes of a failed fetch, more than size-holdback", len(got))
	}
	f.Release()
	// The spool is gone once nobody holds the fetch.
	deadline := time.Now().Add(time.Second)
	for {
		ents, _ := os.ReadDir(dir)
		if len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool files left: %v", ents)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestGateBlocksUntilHeaderAccepted(t *testing.T) {
	g, _ := New(t.TempDir())
	gate := make(chan struct{})
	f, _, _ := g.Do("k", 0, func(f *Fetch) {
		f.Begin(10)
		f.Write([]byte("0123456789"))
		<-gate
		f.Finish(errors.New("header refused"))
	})
	defer f.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before Ungate = %v, want to block", err)
	}
	close(gate)
	if _, err := f.Wait(context.Background()); err == nil || err.Error() != "header refused" {
		t.Fatalf("Wait = %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while another goroutine writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

// Verified waits for the end of the fetch: nil once every byte was
// verified, the fetch's error when it failed, the context's when it ends
// first.
func TestVerified(t *testing.T) {
	g, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []error{nil, errors.New("digest mismatch")} {
		release := make(chan struct{})
		f, _, err := g.Do("v", 16, func(f *Fetch) {
			f.Begin(4)
			f.Ungate()
			f.Write([]byte("data"))
			<-release
			f.Finish(want)
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if err := f.Verified(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("before the end: %v, want the context's deadline", err)
		}
		cancel()
		close(release)
		if err := f.Verified(context.Background()); err != want {
			t.Errorf("after Finish(%v): %v", want, err)
		}
		f.Release()
	}
}

// notifyWriter signals once it holds want bytes.
type notifyWriter struct {
	mu   sync.Mutex
	n    int
	want int
	got  chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(p)
	if w.n >= w.want && w.got != nil {
		close(w.got)
		w.got = nil
	}
	return len(p), nil
}

// Small writes far below announceEvery reach a waiting reader although no
// further write comes (an upstream pausing after a few KiB).
func TestSmallWritesReachWaitingReaders(t *testing.T) {
	g, _ := New(t.TempDir())
	wrote, end := make(chan struct{}), make(chan struct{})
	f, _, _ := g.Do("k", 10, func(f *Fetch) {
		f.Begin(1 << 20)
		f.Ungate()
		for range 3 {
			f.Write(make([]byte, 4096))
		}
		close(wrote)
		<-end
		f.Finish(errors.New("ended by the test"))
	})
	defer f.Release()
	w := &notifyWriter{want: 3*4096 - 10, got: make(chan struct{})}
	done := w.got
	go f.CopyTo(context.Background(), w, 0, 1<<20)
	<-wrote
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("reader did not see the %d bytes written before the pause", w.want)
	}
	close(end)
}

// A spool directory removed under a running group (another process took
// it for an abandoned one) is made again for the next fetch.
func TestSpoolDirRemovedUnderGroup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	g, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	f, _, err := g.Do("k", 0, func(f *Fetch) {
		f.Begin(1)
		f.Write([]byte("x"))
		f.Finish(nil)
	})
	if err != nil {
		t.Fatalf("fetch after the spool directory was removed: %v", err)
	}
	f.Release()
}
