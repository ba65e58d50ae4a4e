// Package verified is the one place pullgate hashes bytes it sends or
// stores: a Checker hashes what is written to it and compares the result
// with a digest and an expected size; a Reader verifies a stream as it is
// read and can hold back its final bytes until the whole stream matched;
// ReadAll reads a small object whole, bounded, and verifies it.
//
// A stream that does not hash to its digest, or whose size is not the
// expected one, ends with a *MismatchError instead of io.EOF. Nothing here
// decides what to do about it (remove a stored copy, refuse an upstream).
package verified

import (
	_ "crypto/sha256" // the algorithms digests name
	_ "crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// MismatchError is content that is not what its digest names: other bytes
// (Got differs from Digest) or another size (GotSize differs from Size).
// Size is -1 when no size was expected. Got is the digest of the bytes
// received (of those read so far when the stream ran past Size); it is
// empty when the check stopped before the end of the stream.
type MismatchError struct {
	Digest  digest.Digest
	Got     digest.Digest
	Size    int64
	GotSize int64
}

func (e *MismatchError) Error() string {
	switch {
	case e.Size >= 0 && e.GotSize > e.Size:
		return fmt.Sprintf("content of %s: more than the %d bytes expected", e.Digest, e.Size)
	case e.Size >= 0 && e.GotSize != e.Size:
		return fmt.Sprintf("content of %s: %d bytes, %d expected", e.Digest, e.GotSize, e.Size)
	default:
		return fmt.Sprintf("content of %s hashes to %s", e.Digest, e.Got)
	}
}

// ErrTooLarge is an object ReadAll found larger than its limit.
var ErrTooLarge = errors.New("content exceeds the size limit")

// UnavailableError is a digest whose algorithm this build cannot compute
// (or a malformed digest).
type UnavailableError struct{ Digest digest.Digest }

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("digest %q: algorithm not available or digest malformed", e.Digest.String())
}

// Checker hashes the bytes written to it; Check compares them with the
// digest and size it was made for.
type Checker struct {
	dgst digest.Digest
	size int64
	h    hash.Hash
	n    int64
}

// NewChecker checks content against dgst, of size bytes (-1: any size). It
// refuses a digest whose algorithm is not available, or a malformed one.
func NewChecker(dgst digest.Digest, size int64) (*Checker, error) {
	if err := dgst.Validate(); err != nil {
		return nil, &UnavailableError{dgst}
	}
	return &Checker{dgst: dgst, size: size, h: dgst.Algorithm().Hash()}, nil
}

// Write hashes p; it never fails.
func (c *Checker) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

// Written is how many bytes were hashed.
func (c *Checker) Written() int64 { return c.n }

// Sum is the digest of the bytes hashed so far.
func (c *Checker) Sum() digest.Digest { return digest.NewDigest(c.dgst.Algorithm(), c.h) }

// Check reports a *MismatchError unless the bytes hashed are of the
// expected size and hash to the digest.
func (c *Checker) Check() error {
	got := c.Sum()
	if (c.size >= 0 && c.n != c.size) || got != c.dgst {
		return &MismatchError{Digest: c.dgst, Got: got, Size: c.size, GotSize: c.n}
	}
	return nil
}

// Option configures a Reader.
type Option func(*Reader)

// Holdback makes a Reader keep the final n bytes of the stream (all of a
// stream not longer than n) from its caller until the whole stream was read
// and verified: a caller never holds a complete copy of content that does
// not match its digest.
func Holdback(n int64) Option { return func(r *Reader) { r.hold = max(n, 0) } }

// Reader reads a stream while verifying it against a digest and size. It
// returns io.EOF only after every byte hashed to the digest and the size
// was the expected one, a *MismatchError otherwise (as soon as the stream
// runs past the expected size). Errors of the underlying reader are
// returned as they are. The first error is returned by every later Read.
type Reader struct {
	r     io.Reader
	c     *Checker
	hold  int64
	tail  []byte // the verified held-back bytes not yet returned
	state int
	err   error // once done: io.EOF, a mismatch or the reader's error
}

const (
	reading   = iota
	releasing // the stream was verified; the tail is being returned
	done
)

// NewReader verifies r against dgst and size. size may be -1 (any size)
// only without Holdback.
func NewReader(r io.Reader, dgst digest.Digest, size int64, opts ...Option) (*Reader, error) {
	c, err := NewChecker(dgst, size)
	if err != nil {
		return nil, err
	}
	vr := &Reader{r: r, c: c}
	for _, o := range opts {
		o(vr)
	}
	if vr.hold > 0 && size < 0 {
		return nil, errors.New("verified: a held-back tail needs the expected size")
	}
	return vr, nil
}

// Verified reports whether the whole stream was read and matched (the
// held-back tail may not all have been returned yet).
func (r *Reader) Verified() bool { return r.state == releasing || r.err == io.EOF }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	switch r.state {
	case releasing:
		if len(r.tail) == 0 {
			r.state = done
			return 0, r.err
		}
		n := copy(p, r.tail)
		r.tail = r.tail[n:]
		return n, nil
	case done:
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	size := r.c.size
	if r.hold > 0 {
		if left := max(size-r.hold, 0) - r.c.n; left > 0 {
			n, err := r.r.Read(p[:min(int64(len(p)), left)])
			r.c.Write(p[:n])
			if err != nil {
				return n, r.finish(err)
			}
			return n, nil
		}
		// The tail: read it whole and verify the stream before any of it
		// is returned.
		tail := make([]byte, size-r.c.n)
		n, err := io.ReadFull(r.r, tail)
		r.c.Write(tail[:n])
		switch err {
		case nil:
			err = r.probe()
		case io.EOF, io.ErrUnexpectedEOF:
			err = io.EOF // short: the check reports it
		}
		if err = r.finish(err); err != io.EOF {
			return 0, err
		}
		r.tail, r.state = tail, releasing
		return r.Read(p)
	}
	if size >= 0 && r.c.n == size {
		return 0, r.finish(r.probe())
	}
	q := p
	if size >= 0 {
		q = p[:min(int64(len(p)), size-r.c.n)]
	}
	n, err := r.r.Read(q)
	r.c.Write(q[:n])
	if err != nil {
		return n, r.finish(err)
	}
	return n, nil
}

// probe reads past the expected end: io.EOF when the stream ends there
// (or goes on: the byte read makes the check fail), the reader's error
// otherwise.
func (r *Reader) probe() error {
	var b [1]byte
	for range 100 {
		n, err := r.r.Read(b[:])
		if n > 0 {
			r.c.Write(b[:n])
			return io.EOF
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// finish ends the stream at err: io.EOF becomes the verdict of the check.
func (r *Reader) finish(err error) error {
	if err == io.EOF {
		if cerr := r.c.Check(); cerr != nil {
			err = cerr
		}
	}
	r.state, r.err = done, err
	return err
}

// ReadAll reads r whole, at most limit bytes (ErrTooLarge beyond), and
// verifies it against dgst (a *MismatchError when the bytes do not hash to
// it). The bytes are returned only when they match.
func ReadAll(r io.Reader, dgst digest.Digest, limit int64) ([]byte, error) {
	c, err := NewChecker(dgst, -1)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, ErrTooLarge
	}
	c.Write(b)
	if err := c.Check(); err != nil {
		return nil, err
	}
	return b, nil
}

// Check verifies a whole object held in memory against dgst.
func Check(dgst digest.Digest, b []byte) error {
	c, err := NewChecker(dgst, -1)
	if err != nil {
		return err
	}
	c.Write(b)
	return c.Check()
}
