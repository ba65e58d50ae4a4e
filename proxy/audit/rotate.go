package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// rotator is a file that is renamed to path.1 (path.1 to path.2, ...) before
// a write would take it past max bytes. Log serialises calls to Write, and
// every event is one Write, so files always hold whole lines.
type rotator struct {
	path  string
	max   int64
	files int
	f     *os.File
	size  int64
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
	r.f, r.size = f, st.Size()
	return nil
}

// RotatedName is the name of the n-th rotated file of path (n ≥ 1; 1 is
// the newest).
func RotatedName(path string, n int) string { return fmt.Sprintf("%s.%d", path, n) }

func (r *rotator) Write(p []byte) (int, error) {
	var rerr error
	if r.size > 0 && r.size+int64(len(p)) > r.max {
		if err := r.rotate(); err != nil {
			// Keep the event: write it to the file still open.
			rerr = fmt.Errorf("rotate %s: %w (event kept in the current file)", r.path, err)
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	if err != nil {
		return n, errors.Join(err, rerr)
	}
	return n, rerr
}

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
