package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FollowOptions shape Follow.
type FollowOptions struct {
	// FromStart reads the file from its beginning; otherwise only events
	// written after Follow opened it are delivered.
	FromStart bool
	// Interval between checks for new lines (default 250ms).
	Interval time.Duration
}

// Follow delivers events appended to the audit log at path, like tail -F:
// it keeps reading across rotations (it finishes the rotated file, then
// opens the new one from its start) and truncation, and waits for the file
// to appear. Lines that do not decode are skipped. It returns when ctx ends
// (nil) or on a read error. fn is called from Follow's goroutine, in file
// order.
func Follow(ctx context.Context, path string, o FollowOptions, fn func(Event)) error {
	if path == "" || IsStdout(path) {
		return errors.New("audit: follow needs a file path")
	}
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	wait := func() bool {
		t := time.NewTimer(o.Interval)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	var (
		f       *os.File
		offset  int64
		pending []byte
		buf     = make([]byte, 64<<10)
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	fromStart := o.FromStart
	// drain reads what the open file has now and delivers whole lines.
	drain := func() error {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				offset += int64(n)
				pending = append(pending, buf[:n]...)
				for {
					i := bytes.IndexByte(pending, '\n')
					if i < 0 {
						break
					}
					line := bytes.TrimSpace(pending[:i])
					pending = pending[i+1:]
					if len(line) == 0 {
						continue
					}
					var e Event
					if json.Unmarshal(line, &e) == nil {
						fn(e)
					}
				}
				if len(pending) > MaxLineBytes {
					pending = nil // a runaway line: drop it
				}
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if f == nil {
			nf, err := os.Open(path)
			if errors.Is(err, fs.ErrNotExist) {
				fromStart = true // a file created later is read whole
				if !wait() {
					return nil
				}
				continue
			}
			if err != nil {
				return err
			}
			f, offset, pending = nf, 0, nil
			if !fromStart {
				if offset, err = f.Seek(0, io.SeekEnd); err != nil {
					return err
				}
			}
			fromStart = true // every later file is new: read it whole
		}
		if err := drain(); err != nil {
			return err
		}
		cur, err := f.Stat()
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(cur, st):
			// Rotated, maybe several times since the last check: finish the
			// old file, read every rotated file newer than it, then follow
			// the new current file from its start.
			if err := drain(); err != nil {
				return err
			}
			next, between, err := newerFiles(path, cur)
			if err != nil {
				return err
			}
			f.Close()
			for _, h := range between {
				f, offset, pending = h, 0, nil
				err := drain()
				h.Close()
				if err != nil {
					f = nil
					for _, rest := range between {
						rest.Close()
					}
					return err
				}
			}
			f, offset, pending = next, 0, nil
			continue
		case err != nil:
			return err
		case st.Size() < offset:
			// Truncated in place: start over.
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			offset, pending = 0, nil
			continue
		}
		if !wait() {
			return nil
		}
	}
}

// newerFiles opens the current file at path (nil if there is none) and the
// rotated files newer than the file cur (all of them when cur was already
// deleted), returned oldest first. The current file is opened first and
// files are compared by identity, so a rotation while this runs repeats no
// file.
//
// The scan walks path.1, path.2, ... and stops at cur, or after two missing
// names in a row (the end). Rotations running meanwhile move files up one
// name at a time, so a scan can meet two holes in a row before reaching
// cur; when cur still exists under some rotated name the scan was cut
// short, and it runs again.
func newerFiles(path string, cur os.FileInfo) (*os.File, []*os.File, error) {
	for attempt := 0; ; attempt++ {
		next, between, reached, err := scanNewer(path, cur)
		if err != nil || reached || attempt == 20 || !rotatedExists(path, cur) {
			return next, between, err
		}
		if next != nil {
			next.Close()
		}
		for _, h := range between {
			h.Close()
		}
	}
}

// rotatedExists reports whether the file cur is still one of path's
// rotated files.
func rotatedExists(path string, cur os.FileInfo) bool {
	names, _ := filepath.Glob(path + ".*")
	for _, n := range names {
		if st, err := os.Stat(n); err == nil && os.SameFile(st, cur) {
			return true
		}
	}
	return false
}

// scanNewer is one scan of newerFiles; reached reports that it met cur.
func scanNewer(path string, cur os.FileInfo) (next *os.File, newer []*os.File, reached bool, err error) {
	var opened []*os.File
	fail := func(err error) (*os.File, []*os.File, bool, error) {
		for _, h := range opened {
			if h != nil {
				h.Close()
			}
		}
		return nil, nil, false, err
	}
	next, err = os.Open(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if next != nil {
		opened = append(opened, next)
	}
	var between []*os.File
	misses := 0
	for i := 1; misses < 2; i++ {
		h, err := os.Open(RotatedName(path, i))
		if errors.Is(err, fs.ErrNotExist) {
			misses++
			continue
		}
		if err != nil {
			return fail(err)
		}
		misses = 0
		st, err := h.Stat()
		if err != nil {
			h.Close()
			return fail(err)
		}
		if os.SameFile(st, cur) {
			h.Close()
			reached = true
			break
		}
		dup := false
		for _, o := range opened {
			if ost, err := o.Stat(); err == nil && os.SameFile(st, ost) {
				dup = true
			}
		}
		if dup {
			h.Close()
			continue
		}
		opened = append(opened, h)
		between = append(between, h)
	}
	for i, j := 0, len(between)-1; i < j; i, j = i+1, j-1 {
		between[i], between[j] = between[j], between[i]
	}
	return next, between, reached, nil
}
