package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// fileWrite writes to the audit file; tests replace it to fail on demand.
var fileWrite = (*os.File).Write

// maxPending bounds the events kept in memory while the file cannot be
// written (disk full, directory gone); older ones are dropped past it.
const maxPending = 8 << 20

// rotator is the audit file. With max > 0 it is renamed to path.1 (path.1
// to path.2, ...) before a write would take it past max bytes. Log
// serialises calls to Write, and every event is one Write, so files always
// hold whole lines.
//
// It survives its disk and its operator: when the file at path was removed
// or replaced, the next event reopens (creates) path; when a write fails
// (ENOSPC), what was not written is kept (up to maxPending) and written
// before the next event, so that writing resumes, with nothing lost and
// every line whole, once space is freed.
type rotator struct {
	path  string
	max   int64
	files int
	f     *os.File
	fi    os.FileInfo // identity of f, to notice path removed or replaced
	size  int64
	// pending is what failed to be written, whole lines except that its
	// first line may be the tail of one partly written to f (midLine).
	pending []byte
	midLine bool
	dropped uint64
}

func openRotator(path string, max int64, files int) (*rotator, error) {
	r := &rotator{path: path, max: max, files: files}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotator) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.fi, r.size = f, st, st.Size()
	return nil
}

// reopenIfMoved opens path again when the file there is not the one open
// (removed, renamed away, replaced).
func (r *rotator) reopenIfMoved() error {
	if st, err := os.Stat(r.path); err == nil && os.SameFile(st, r.fi) {
		return nil
	}
	old := r.f
	if err := r.open(); err != nil {
		return err
	}
	_ = old.Close()
	if r.midLine {
		// The head of that line went to the old file: keep the new one
		// made of whole lines.
		if i := bytes.IndexByte(r.pending, '\n'); i >= 0 {
			r.pending = r.pending[i+1:]
		} else {
			r.pending = nil
		}
		r.midLine = false
	}
	return nil
}

// Dropped is how many events were dropped because the file could not be
// written for longer than maxPending bytes of events.
func (r *rotator) Dropped() uint64 { return r.dropped }

// RotatedName is the name of the n-th rotated file of path (n ≥ 1; 1 is
// the newest).
func RotatedName(path string, n int) string { return fmt.Sprintf("%s.%d", path, n) }

func (r *rotator) Write(p []byte) (int, error) {
	if err := r.reopenIfMoved(); err != nil {
		return 0, r.keep(p, fmt.Errorf("reopen %s: %w", r.path, err))
	}
	var rotErr error
	if len(r.pending) > 0 {
		flushed := r.pending
		n, err := r.writeFile(flushed)
		r.pending = r.pending[n:]
		if written(err) {
			rotErr = err
		} else {
			r.midLine = endsMidLine(flushed[:n], r.midLine)
			return 0, r.keep(p, err)
		}
		r.pending, r.midLine = nil, false
	}
	n, err := r.writeFile(p)
	if !written(err) {
		r.midLine = endsMidLine(p[:n], false)
		return 0, r.keep(p[n:], err)
	}
	if err == nil {
		err = rotErr
	}
	return n, err
}

// endsMidLine reports whether the file ends inside a line after a write
// of b that followed a file ending inside a line (was): a write that
// stopped just after a '\n' leaves whole lines, however much it wrote.
func endsMidLine(b []byte, was bool) bool {
	if len(b) == 0 {
		return was
	}
	return b[len(b)-1] != '\n'
}

// written reports a write that succeeded (possibly without its rotation).
func written(err error) bool {
	var re *rotateError
	return err == nil || errors.As(err, &re)
}

// keep holds p (whole lines, or the tail of one written in part) for the
// next write, dropping the oldest whole lines past maxPending.
func (r *rotator) keep(p []byte, err error) error {
	r.pending = append(r.pending, p...)
	for len(r.pending) > maxPending {
		// Drop the oldest whole event. While the file ends inside a line,
		// the first line of pending is that line's tail: it stays, or the
		// next event would be appended to the half line.
		start := 0
		if r.midLine {
			start = bytes.IndexByte(r.pending, '\n') + 1
			if start == 0 {
				break // only the tail waits
			}
		}
		end := len(r.pending)
		if i := bytes.IndexByte(r.pending[start:], '\n'); i >= 0 {
			end = start + i + 1
		}
		if start == end {
			break
		}
		r.pending = append(r.pending[:start], r.pending[end:]...)
		r.dropped++
	}
	return fmt.Errorf("%w (the event is kept and written when the file can be written again)", err)
}

// writeFile writes to the current file, rotating first when that would
// take it past max.
func (r *rotator) writeFile(p []byte) (int, error) {
	var rerr error
	if r.max > 0 && r.size > 0 && r.size+int64(len(p)) > r.max && !r.midLine {
		if err := r.rotate(); err != nil {
			// Keep the event: write it to the file still open.
			rerr = fmt.Errorf("rotate %s: %w (event kept in the current file)", r.path, err)
		}
	}
	n, err := fileWrite(r.f, p)
	r.size += int64(n)
	if err != nil {
		return n, errors.Join(err, rerr)
	}
	if rerr != nil {
		// The event was written: report the rotation only.
		return n, &rotateError{rerr}
	}
	return n, nil
}

// rotateError is a failed rotation; the event was written anyway.
type rotateError struct{ err error }

func (e *rotateError) Error() string { return e.err.Error() }
func (e *rotateError) Unwrap() error { return e.err }

// rotate shifts path.(N-1) → path.N, ..., path → path.1 and opens a new path.
// The current file is renamed while open, so if opening the new one fails
// writes continue in path.1, which is still the newest rotated file.
func (r *rotator) rotate() error {
	// The current file removed (or replaced) under the writer: shifting
	// the rotated files would only delete history; start a new file.
	if cur, err := r.f.Stat(); err == nil {
		if st, err := os.Stat(r.path); err != nil || !os.SameFile(cur, st) {
			old := r.f
			if err := r.open(); err != nil {
				r.size = 0
				return err
			}
			return old.Close()
		}
	}
	if err := os.Remove(RotatedName(r.path, r.files)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i := r.files - 1; i >= 1; i-- {
		if err := os.Rename(RotatedName(r.path, i), RotatedName(r.path, i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(r.path, RotatedName(r.path, 1)); err != nil {
		return err
	}
	old := r.f
	if err := r.open(); err != nil {
		r.size = 0 // keep writing to the renamed file; retry at the next limit
		return err
	}
	return old.Close()
}

func (r *rotator) Close() error { return r.f.Close() }
