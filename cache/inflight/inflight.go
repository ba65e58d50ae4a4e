// Package inflight coalesces concurrent fetches of the same uncached blob:
// one upstream download per key, spooled to a local file, streamed to every
// waiting client as it arrives. Readers never see the bytes a fetch holds
// back (its tail, and everything past what Ungate or ReleaseUpTo released),
// so no client can hold a complete blob before the fetch has verified it.
package inflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"sync"
	"time"
)

// Readers are woken when at least announceEvery new bytes were written, and
// otherwise within announceDelay of a write: few wake-ups (each one a
// sendfile per reader) on a fast stream, and no bytes kept from readers
// while a slow upstream pauses.
const (
	announceEvery = 512 << 10
	announceDelay = 2 * time.Millisecond
)

// Group is a set of in-flight fetches keyed by blob digest.
type Group struct {
	dir string
	mu  sync.Mutex
	m   map[string]*Fetch
}

// New makes a group that spools into dir (created if missing).
func New(dir string) (*Group, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	return &Group{dir: dir, m: map[string]*Fetch{}}, nil
}

// InFlight is the number of fetches under way.
func (g *Group) InFlight() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// Do returns the fetch for key and whether it was already under way. When
// it was not, run is started in its own goroutine with the new Fetch; run
// must end with Finish. The caller must Release the fetch when done with it.
func (g *Group) Do(key string, holdback int64, run func(f *Fetch)) (*Fetch, bool, error) {
	g.mu.Lock()
	if f, ok := g.m[key]; ok {
		f.acquire()
		g.mu.Unlock()
		return f, true, nil
	}
	file, err := os.CreateTemp(g.dir, "spool-*")
	if errors.Is(err, fs.ErrNotExist) {
		// Removed under us (another process cleaned up what it took for
		// an abandoned spool): make it again.
		if err = os.MkdirAll(g.dir, 0o750); err == nil {
			file, err = os.CreateTemp(g.dir, "spool-*")
		}
	}
	if err != nil {
		g.mu.Unlock()
		return nil, false, fmt.Errorf("inflight: spool: %w", err)
	}
	f := &Fetch{g: g, key: key, file: file, size: -1, holdback: holdback, changed: make(chan struct{}), refs: 2}
	g.m[key] = f
	g.mu.Unlock()
	go func() {
		defer f.Release() // run's reference
		run(f)
	}()
	return f, false, nil
}

// Fetch is one download being spooled and fanned out.
type Fetch struct {
	g        *Group
	key      string
	file     *os.File
	holdback int64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change
	size    int64         // declared size, -1 until Begin
	written int64
	// announced is what written was at the last wake-up; flush (pending
	// while flushing) wakes readers for bytes written since.
	announced int64
	flush     *time.Timer
	flushing  bool
	ungated   bool
	// released is how many bytes from the start readers may see (before
	// the held-back tail): ReleaseUpTo raises it, Ungate makes it all.
	released int64
	done     bool
	err      error
	refs     int
	closed   bool
}

func (f *Fetch) acquire() {
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
}

// Release drops a reference; the spool file goes away with the last one.
func (f *Fetch) Release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0 && f.done
	if last && !f.closed {
		f.closed = true
	} else {
		last = false
	}
	f.mu.Unlock()
	if last {
		f.file.Close()
		os.Remove(f.file.Name())
	}
}

func (f *Fetch) broadcastLocked() {
	f.announced = f.written
	close(f.changed)
	f.changed = make(chan struct{})
}

// Path is the spool file (complete once all bytes were written).
func (f *Fetch) Path() string { return f.file.Name() }

// Begin declares the size of the blob.
func (f *Fetch) Begin(size int64) {
	f.mu.Lock()
	f.size = size
	f.broadcastLocked()
	f.mu.Unlock()
}

// Write appends to the spool. Readers see the bytes within announceDelay.
func (f *Fetch) Write(p []byte) (int, error) {
	n, err := f.file.Write(p)
	f.mu.Lock()
	f.written += int64(n)
	switch {
	case f.released == 0 || f.done:
	case f.written-f.announced >= announceEvery:
		f.broadcastLocked()
	case f.flushing:
		// A pending wake-up covers these bytes too.
	case f.flush == nil:
		f.flushing = true
		f.flush = time.AfterFunc(announceDelay, f.announce)
	default:
		f.flushing = true
		f.flush.Reset(announceDelay)
	}
	f.mu.Unlock()
	return n, err
}

// announce wakes readers for bytes written since the last wake-up.
func (f *Fetch) announce() {
	f.mu.Lock()
	f.flushing = false
	if !f.done && f.written > f.announced {
		f.broadcastLocked()
	}
	f.mu.Unlock()
}

// Ungated reports whether readers may start (see Ungate).
func (f *Fetch) Ungated() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ungated
}

// Ungate lets readers start (the header was inspected and accepted).
func (f *Fetch) Ungate() {
	f.mu.Lock()
	if !f.ungated {
		f.ungated = true
		f.released = math.MaxInt64
		f.broadcastLocked()
	}
	f.mu.Unlock()
}

// ReleaseUpTo lets readers see the bytes before offset n (never past the
// held-back tail) before the fetch is ungated: every byte before n was
// inspected and may be served. The limit only grows; Ungate releases
// everything. Wait returns once any byte is released.
func (f *Fetch) ReleaseUpTo(n int64) {
	f.mu.Lock()
	if n > f.released {
		before := f.visibleLocked()
		f.released = n
		if f.visibleLocked() > before {
			f.broadcastLocked()
		}
	}
	f.mu.Unlock()
}

// Released is the release limit: 0 before anything was released,
// math.MaxInt64 once ungated.
func (f *Fetch) Released() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.released
}

// Finish ends the fetch. With nil, every byte becomes visible; with an
// error, readers fail with it. The key is released for new fetches either way.
func (f *Fetch) Finish(err error) {
	f.g.mu.Lock()
	if f.g.m[f.key] == f {
		delete(f.g.m, f.key)
	}
	f.g.mu.Unlock()
	f.mu.Lock()
	if !f.done {
		f.done = true
		f.err = err
		if err == nil {
			f.ungated = true
			f.released = math.MaxInt64
		}
		if f.flush != nil {
			f.flush.Stop()
		}
		f.broadcastLocked()
	}
	f.mu.Unlock()
}

// visibleLocked is how many bytes readers may read now.
func (f *Fetch) visibleLocked() int64 {
	if f.done && f.err == nil {
		return f.written
	}
	limit := min(f.written, f.released)
	if f.size >= 0 {
		limit = min(limit, f.size-f.holdback)
	} else {
		limit -= f.holdback
	}
	return max(limit, 0)
}

// Wait blocks until clients may be answered: the header was accepted
// (Ungate), a first part of the blob was released (ReleaseUpTo: readers
// then follow the release limit) or the fetch ended. It returns the
// declared size, or the error that ended the fetch.
func (f *Fetch) Wait(ctx context.Context) (int64, error) {
	for {
		f.mu.Lock()
		released, done, err, size, ch := f.released, f.done, f.err, f.size, f.changed
		f.mu.Unlock()
		if done && err != nil {
			return 0, err
		}
		if released > 0 && size >= 0 {
			return size, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// Verified blocks until the fetch ended and returns nil when every byte was
// verified, or the error that ended it. A reader whose response would be
// complete before the blob's end (a range that stops short of it, an empty
// blob) waits for this first: the held-back tail protects only responses
// that run to the end.
func (f *Fetch) Verified(ctx context.Context) error {
	for {
		f.mu.Lock()
		done, err, ch := f.done, f.err, f.changed
		f.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitVisible blocks until more than off bytes may be read, and returns how
// many may be (the verified end once the fetch is done); io.EOF when off is
// at the verified end; the fetch's error (wrapping ErrAborted) if it failed.
func (f *Fetch) waitVisible(ctx context.Context, off int64) (int64, error) {
	for {
		f.mu.Lock()
		vis, done, err, ch := f.visibleLocked(), f.done, f.err, f.changed
		f.mu.Unlock()
		if done && err != nil {
			return 0, fmt.Errorf("%w: %v", ErrAborted, err)
		}
		if off < vis {
			return vis, nil
		}
		if done {
			return vis, io.EOF
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// CopyTo writes n bytes of the blob from start to w as they become
// visible: never past the held-back tail or the release limit before the
// fetch is verified, and nothing more once it failed (the error wraps ErrAborted).
// The bytes come from the spool file through its own descriptor, so that a
// network writer can send them with sendfile. The caller holds a reference
// to the fetch while it copies.
func (f *Fetch) CopyTo(ctx context.Context, w io.Writer, start, n int64) (int64, error) {
	fd, err := os.Open(f.file.Name())
	if err != nil {
		return 0, err
	}
	defer fd.Close()
	off, end := start, start+n
	for off < end {
		vis, err := f.waitVisible(ctx, off)
		if err != nil && !(errors.Is(err, io.EOF) && vis > off) {
			return off - start, err
		}
		if _, err := fd.Seek(off, io.SeekStart); err != nil {
			return off - start, err
		}
		m, err := io.Copy(w, &io.LimitedReader{R: fd, N: min(vis, end) - off})
		off += m
		if err != nil {
			return off - start, err
		}
		if m == 0 {
			return off - start, io.ErrUnexpectedEOF
		}
	}
	return n, nil
}

// ErrAborted wraps the error of a fetch that failed while a reader streamed.
var ErrAborted = errors.New("fetch aborted")
