package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"
)

// FollowOptions shape Follow.
type FollowOptions struct {
	// FromStart reads the file from its beginning; otherwise only events
	// written after Follow opened it are delivered.
	FromStart bool
	// Interval between checks for new lines (default 250ms).
	Interval time.Duration
	// Rotated, with FromStart, reads the rotated files first, oldest
	// first: the whole log, then what is written next.
	Rotated bool
	// Started, if set, is called once Follow has first looked at path:
	// opened it (and, without FromStart, reached its end) or found it
	// missing. Events written after that are delivered.
	Started func()
	// Idle, if set, is called whenever Follow has delivered everything
	// written so far and waits for more (the first call: caught up).
	Idle func()
}

// Follow delivers events appended to the audit log at path, like tail -F:
// it keeps reading across rotations (it finishes the rotated file, reads
// every file rotated after it, then the new one from its start) and
// truncation, and waits for the file to appear (every file written after
// its first look is then read whole, rotated ones included). Lines that do
// not decode are skipped. It returns when ctx ends (nil) or on a read
// error. fn is called from Follow's goroutine, in file order.
func Follow(ctx context.Context, path string, o FollowOptions, fn func(Event)) error {
	if path == "" || IsStdout(path) {
		return errors.New("audit: follow needs a file path")
	}
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	wait := func() bool {
		if o.Idle != nil {
			o.Idle()
		}
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
	// Until the next file is open, Follow resumes after the files in
	// older: the next file to read is the oldest rotated file not among
	// them (wherever rotations moved it by then), or else the current one.
	var older []os.FileInfo
	resuming := false
	// First look, at one moment of the directory: the current file from
	// its start or end, or, when there is none yet, whatever is rotated
	// after this moment.
	first, err := newerFiles(path, nil)
	if err != nil {
		return err
	}
	// next is a scan to resume with (nil: scan again).
	var next *scan
	if o.FromStart && o.Rotated {
		// The whole log: every rotated file, then the current one.
		next, resuming = first, true
	} else if f = first.next; f != nil {
		for _, h := range first.between {
			h.Close()
		}
		if !o.FromStart {
			if offset, err = f.Seek(0, io.SeekEnd); err != nil {
				return err
			}
		}
	} else {
		for _, h := range first.between {
			h.Close()
		}
		for _, st := range first.names[1:] {
			if st != nil {
				older = append(older, st)
			}
		}
		resuming = true
	}
	if o.Started != nil {
		o.Started()
	}
	for {
		if ctx.Err() != nil {
			if next != nil {
				next.close() // the first scan was never read
			}
			return nil
		}
		if resuming {
			// Read every rotated file newer than older, then follow the
			// current one from its start. Between a rotation's rename and
			// the new file there is no current file: look again later.
			sc := next
			if sc == nil {
				if sc, err = newerFiles(path, older); err != nil {
					return err
				}
			}
			next = nil
			for i, h := range sc.between {
				f, offset, pending = h, 0, nil
				err := drain()
				if err == nil {
					var st os.FileInfo
					if st, err = h.Stat(); err == nil {
						older = []os.FileInfo{st}
					}
				}
				h.Close()
				f = nil
				if err != nil {
					for _, rest := range sc.between[i+1:] {
						rest.Close()
					}
					if sc.next != nil {
						sc.next.Close()
					}
					return err
				}
			}
			if sc.next == nil {
				if !wait() {
					return nil
				}
				continue
			}
			f, offset, pending, older, resuming = sc.next, 0, nil, nil, false
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
			// old file; the files after it are read next.
			if err := drain(); err != nil {
				return err
			}
			f.Close()
			f, older, resuming = nil, []os.FileInfo{cur}, true
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
// rotated files newer than every file in older (all of them when none of
// those is still there), returned oldest first, with what each name was.
// Files are compared by identity, so no file is returned twice.
//
// A scan reads path, path.1, path.2, ... one name at a time while the
// writer may be rotating: renames run from the oldest name down to path,
// so a scan can pass a file that moves up behind it, or meet holes. The
// scan is trusted only when the next one sees the same file (or the same
// hole) under every name: no rename or creation can fall between two such
// scans without changing some name, so the names then show one moment of
// the directory, in which rotated files are ordered by age.
func newerFiles(path string, older []os.FileInfo) (*scan, error) {
	var prev []os.FileInfo
	for attempt := 0; ; attempt++ {
		sc, err := scanNewer(path, older)
		if err != nil {
			return nil, err
		}
		if sameScan(prev, sc.names) || attempt == 100 {
			return sc, nil
		}
		sc.close()
		prev = sc.names
	}
}

// scan is one pass of newerFiles over path's names.
type scan struct {
	next    *os.File
	between []*os.File    // newer than older, oldest first
	names   []os.FileInfo // what each name read was, nil for a missing one
}

func (sc *scan) close() {
	if sc.next != nil {
		sc.next.Close()
	}
	for _, h := range sc.between {
		h.Close()
	}
}

// sameScan reports whether two scans read the same file or hole under
// every name.
func sameScan(a, b []os.FileInfo) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) || a[i] != nil && !os.SameFile(a[i], b[i]) {
			return false
		}
	}
	return true
}

// scanNewer reads path and its rotated names up to a file of older, or up to two
// missing names in a row (the end: one instant of the directory has at most
// one hole, the name a rotation is moving).
func scanNewer(path string, older []os.FileInfo) (*scan, error) {
	sc := &scan{}
	var opened []*os.File
	fail := func(err error) (*scan, error) {
		for _, h := range opened {
			h.Close()
		}
		return nil, err
	}
	open := func(name string) (*os.File, os.FileInfo, error) {
		h, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		st, err := h.Stat()
		if err != nil {
			h.Close()
			return nil, nil, err
		}
		return h, st, nil
	}
	next, st, err := open(path)
	if err != nil {
		return fail(err)
	}
	sc.names = append(sc.names, st)
	if next != nil {
		opened = append(opened, next)
		sc.next = next
	}
	misses := 0
	for i := 1; misses < 2; i++ {
		h, st, err := open(RotatedName(path, i))
		if err != nil {
			return fail(err)
		}
		sc.names = append(sc.names, st)
		if h == nil {
			misses++
			continue
		}
		misses = 0
		if slices.ContainsFunc(older, func(o os.FileInfo) bool { return os.SameFile(st, o) }) {
			h.Close()
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
		sc.between = append(sc.between, h)
	}
	for i, j := 0, len(sc.between)-1; i < j; i, j = i+1, j-1 {
		sc.between[i], sc.between[j] = sc.between[j], sc.between[i]
	}
	return sc, nil
}

// Tail delivers the last n decisions of the whole log that q selects (all
// of them when n is 0) once it has read the log, then every new one as it
// is written, across rotations, until ctx ends (nil) or fn fails (its
// error). It is `pullgate audit --follow`.
func Tail(ctx context.Context, path string, q Query, n int, interval time.Duration, fn func(Event) error) error {
	m, err := q.Compile()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		history []Event
		last    *lastN
		caught  bool
		ferr    error
	)
	if n > 0 {
		last = newLastN(n)
	}
	deliver := func(e Event) {
		if ferr == nil {
			if ferr = fn(e); ferr != nil {
				cancel()
			}
		}
	}
	// Follow calls both from its own goroutine, one at a time.
	o := FollowOptions{FromStart: true, Rotated: true, Interval: interval, Idle: func() {
		if caught {
			return
		}
		caught = true
		if last != nil {
			history = last.events()
		}
		for _, e := range history {
			deliver(e)
		}
		history = nil
	}}
	err = Follow(ctx, path, o, func(e Event) {
		switch {
		case !m.Match(e):
		case caught:
			deliver(e)
		case last != nil:
			last.add(e)
		default:
			history = append(history, e)
		}
	})
	if ferr != nil {
		return ferr
	}
	return err
}
