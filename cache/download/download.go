// Package download runs one upstream blob download into an in-flight fetch
// (cache/inflight): every read is written to the spool at once (readers
// follow it, never past the held-back tail), while the same buffers are
// hashed (cache/verified) and inspected on a goroutine of their own. The
// fetch ends with nil only for bytes of the announced size that hash to
// the digest; what to do with the verified spool file (inspect it further,
// commit it to the store) is the caller's.
package download

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/verified"
)

// Inspector inspects a blob's bytes as they stream (content.Inspector):
// Write fails with a finding, HeaderDone reports that readers may start.
// Closing it is the caller's.
type Inspector interface {
	Write(p []byte) (int, error)
	HeaderDone() bool
}

// Releasable is an Inspector that can release a blob's first bytes before
// HeaderDone (content.Releasable): every byte before Releasable() was
// inspected and may be served. The download releases them (Fetch.ReleaseUpTo)
// after each chunk; an inspector without it releases nothing before
// HeaderDone.
type Releasable interface {
	Releasable() int64
}

// SpoolError is a write to the spool that failed after Spooled bytes were
// written by earlier reads.
type SpoolError struct {
	Spooled int64
	Err     error
}

func (e *SpoolError) Error() string { return "spool: " + e.Err.Error() }
func (e *SpoolError) Unwrap() error { return e.Err }

// ReadError is a body that failed after Received bytes; Stalled when it
// was abandoned for sending nothing (StallReader).
type ReadError struct {
	Received int64
	Stalled  bool
	Err      error
}

func (e *ReadError) Error() string { return e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// Download is one blob download.
type Download struct {
	Body      io.Reader // the upstream body (a StallReader reports stalls)
	Size      int64     // the size announced (and checked)
	Digest    digest.Digest
	Inspector Inspector       // nil: the bytes are only hashed
	Fetch     *inflight.Fetch // the spool and its readers
	// SpoolWrite writes to the spool (nil: Fetch.Write).
	SpoolWrite func(f *inflight.Fetch, p []byte) (int, error)
	// Finding turns an inspection error into the error the fetch fails
	// with once the whole stream hashed to the digest (nil: as it is).
	Finding func(error) error
}

// Run begins the fetch, downloads the body into the spool, hashing and
// inspecting it, and returns nil when the whole body was spooled, is of
// the announced size, hashed to the digest and passed inspection.
// Otherwise the error is a *verified.MismatchError (more bytes than
// announced, fewer, other bytes), a *SpoolError, a *ReadError, or the
// inspection's finding (once the whole stream hashed to the digest: an
// upstream sending other bytes must not get a good blob marked bad; the
// fetch's readers were failed with it as soon as it was known). spooled
// reports that every byte fit in the spool.
func (d *Download) Run() (spooled bool, err error) {
	size, f := d.Size, d.Fetch
	sum, err := verified.NewChecker(d.Digest, size)
	if err != nil {
		return false, err
	}
	write := d.SpoolWrite
	if write == nil {
		write = (*inflight.Fetch).Write
	}
	asFinding := d.Finding
	if asFinding == nil {
		asFinding = func(err error) error { return err }
	}
	f.Begin(size)
	if d.Inspector == nil {
		f.Ungate()
	}
	check := newStreamCheck(sum, d.Inspector, f)
	var finding error
	var total int64
	// Every read goes to the spool at once (readers follow it); chunks of
	// at least chunkMin go to the check, or every read while readers wait
	// for the first bytes to be released.
	buf, n := check.buffer(), 0
	for {
		m, rerr := d.Body.Read(buf[n:])
		if m > 0 {
			total += int64(m)
			if total > size {
				check.stop()
				return false, &verified.MismatchError{Digest: d.Digest, Size: size, GotSize: total}
			}
			if finding == nil {
				if _, werr := write(f, buf[n:n+m]); werr != nil {
					check.stop()
					// The spool file (total-m bytes) goes when the fetch ends.
					return false, &SpoolError{Spooled: total - int64(m), Err: werr}
				}
			}
			n += m
		}
		if n > 0 && (n >= chunkMin || n == len(buf) || rerr != nil || f.Released() == 0) {
			if ierr := check.submit(buf[:n]); ierr != nil && finding == nil {
				// Nothing more reaches the spool or the readers, but the
				// fetch ends only once the stream hashed: the readers
				// then learn the mismatch of an upstream sending other
				// bytes, never a finding about bytes that are not the blob.
				finding = asFinding(ierr)
			}
			buf, n = check.buffer(), 0
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			check.stop()
			re := &ReadError{Received: total, Err: rerr}
			if s, ok := d.Body.(*StallReader); ok {
				re.Stalled = s.Stalled()
			}
			return false, re
		}
	}
	check.release(buf)
	spooled = finding == nil && total == size
	if ierr := check.finish(); ierr != nil && finding == nil {
		finding = asFinding(ierr)
	}
	if err := sum.Check(); err != nil {
		return spooled, err
	}
	return spooled, finding
}

// StallReader cancels a fetch whose body sends nothing for stall.
type StallReader struct {
	r       io.Reader
	stall   time.Duration
	cancel  context.CancelFunc
	timer   *time.Timer
	stalled atomic.Bool
}

// NewStallReader reads r, calling cancel when a read waits longer than
// stall (0: never).
func NewStallReader(r io.Reader, stall time.Duration, cancel context.CancelFunc) *StallReader {
	return &StallReader{r: r, stall: stall, cancel: cancel}
}

func (s *StallReader) Read(p []byte) (int, error) {
	if s.timer == nil && s.stall > 0 {
		s.timer = time.AfterFunc(s.stall, func() { s.stalled.Store(true); s.cancel() })
	}
	n, err := s.r.Read(p)
	if n > 0 && s.timer != nil {
		s.timer.Reset(s.stall)
	}
	return n, err
}

// Stalled reports whether the read was abandoned for a stall.
func (s *StallReader) Stalled() bool { return s.stalled.Load() }

// Stop stops the stall timer.
func (s *StallReader) Stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
}

// streamCheck hashes and inspects a blob's chunks on its own goroutine, in
// order, while the fetch keeps reading and spooling. Buffers circulate
// between the two through a small pool, which bounds memory per fetch.
type streamCheck struct {
	sum    *verified.Checker
	in     Inspector
	f      *inflight.Fetch
	work   chan []byte
	free   chan []byte
	done   chan struct{}
	err    error // written by the goroutine before failed is set
	failed atomic.Bool
}

const (
	checkBuffers   = 4
	checkBufferLen = 1 << 20
	chunkMin       = 512 << 10
)

func newStreamCheck(sum *verified.Checker, in Inspector, f *inflight.Fetch) *streamCheck {
	c := &streamCheck{sum: sum, in: in, f: f, work: make(chan []byte, checkBuffers), free: make(chan []byte, checkBuffers), done: make(chan struct{})}
	for range checkBuffers {
		c.free <- make([]byte, checkBufferLen)
	}
	go c.run()
	return c
}

func (c *streamCheck) run() {
	defer close(c.done)
	for b := range c.work {
		c.sum.Write(b)
		if c.in != nil && c.err == nil {
			if _, err := c.in.Write(b); err != nil {
				c.err = err
				c.failed.Store(true)
			} else if c.in.HeaderDone() {
				c.f.Ungate()
			} else if r, ok := c.in.(Releasable); ok {
				c.f.ReleaseUpTo(r.Releasable())
			}
		}
		c.free <- b[:cap(b)]
	}
}

// buffer waits for a free buffer.
func (c *streamCheck) buffer() []byte { return <-c.free }

// release returns an unused buffer.
func (c *streamCheck) release(b []byte) { c.free <- b[:cap(b)] }

// submit queues a filled buffer (every byte is hashed); it reports an
// inspection failure as soon as one is known.
func (c *streamCheck) submit(b []byte) error {
	c.work <- b
	if c.failed.Load() {
		return c.err
	}
	return nil
}

// finish waits for every chunk and returns any inspection error.
func (c *streamCheck) finish() error {
	close(c.work)
	<-c.done
	return c.err
}

// stop ends the goroutine after a failure elsewhere.
func (c *streamCheck) stop() {
	close(c.work)
	<-c.done
}
