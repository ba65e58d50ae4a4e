package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxLineBytes bounds one line read back from an audit file; a longer line
// is counted as malformed and skipped.
const MaxLineBytes = 16 << 20

// Reader streams the events of an audit log, oldest first: the rotated
// files (path.N ... path.1) and then the current file. All files are opened
// when the reader is created, newest first, so a rotation while reading
// neither loses nor repeats a file; events written after that are not seen.
type Reader struct {
	files     []*os.File // oldest first
	names     []string
	cur       int
	br        *bufio.Reader
	line      int
	malformed int
	lastErr   error
}

// OpenReader opens the audit log at path and every rotated file next to it.
// A missing current file is not an error when rotated files exist.
func OpenReader(path string) (*Reader, error) {
	if path == "" || IsStdout(path) {
		return nil, fmt.Errorf("audit log %q is not a file: query it where standard output is collected", path)
	}
	var files []*os.File
	var names []string
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	seen := func(f *os.File) bool {
		st, err := f.Stat()
		if err != nil {
			return false
		}
		for _, g := range files {
			if gs, err := g.Stat(); err == nil && os.SameFile(st, gs) {
				return true
			}
		}
		return false
	}
	current := false
	misses := 0
	for n := 0; ; n++ {
		name := path
		if n > 0 {
			name = RotatedName(path, n)
		}
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) {
			if n == 0 {
				continue
			}
			// Rotated files are numbered without gaps; allow one (a
			// rotation shifting files under us) before stopping.
			if misses++; misses > 1 {
				break
			}
			continue
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		misses = 0
		if n == 0 {
			current = true
		}
		if seen(f) {
			f.Close()
			continue
		}
		files = append(files, f)
		names = append(names, name)
	}
	if len(files) == 0 && !current {
		return nil, fmt.Errorf("audit log %s: %w", path, fs.ErrNotExist)
	}
	// Newest first → oldest first.
	for i, j := 0, len(files)-1; i < j; i, j = i+1, j-1 {
		files[i], files[j] = files[j], files[i]
		names[i], names[j] = names[j], names[i]
	}
	r := &Reader{files: files, names: names}
	if len(files) > 0 {
		r.br = bufio.NewReaderSize(files[0], 64<<10)
	}
	return r, nil
}

// Files are the files being read, oldest first.
func (r *Reader) Files() []string { return append([]string(nil), r.names...) }

// Malformed is how many lines could not be decoded so far (a torn last line
// of a file being written is not counted).
func (r *Reader) Malformed() int { return r.malformed }

// LastMalformed describes the last malformed line (nil if none).
func (r *Reader) LastMalformed() error { return r.lastErr }

// Next returns the next event, or io.EOF after the last one. Malformed
// lines are skipped and counted.
func (r *Reader) Next() (Event, error) {
	for r.cur < len(r.files) {
		line, complete, err := r.readLine()
		if err == io.EOF && len(line) == 0 {
			r.cur++
			r.line = 0
			if r.cur < len(r.files) {
				r.br.Reset(r.files[r.cur])
			}
			continue
		}
		if err != nil && err != io.EOF {
			return Event{}, fmt.Errorf("%s: %w", r.names[r.cur], err)
		}
		r.line++
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var e Event
		if derr := json.Unmarshal(line, &e); derr != nil {
			if !complete && r.cur == len(r.files)-1 {
				// The end of the file being written: an event torn by a
				// concurrent write, not a malformed one.
				continue
			}
			r.malformed++
			r.lastErr = fmt.Errorf("%s:%d: %v", r.names[r.cur], r.line, derr)
			continue
		}
		return e, nil
	}
	return Event{}, io.EOF
}

// readLine reads one line (without its newline) of at most MaxLineBytes;
// complete is false when the file ended before a newline. A longer line is
// consumed and returned empty with complete true after being counted.
func (r *Reader) readLine() (line []byte, complete bool, err error) {
	var buf []byte
	tooLong := false
	for {
		chunk, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > MaxLineBytes {
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			if tooLong {
				r.malformed++
				r.lastErr = fmt.Errorf("%s:%d: line longer than %d bytes", r.names[r.cur], r.line+1, MaxLineBytes)
				return nil, true, nil
			}
			return buf, false, err
		}
		if tooLong {
			r.malformed++
			r.lastErr = fmt.Errorf("%s:%d: line longer than %d bytes", r.names[r.cur], r.line+1, MaxLineBytes)
			return nil, true, nil
		}
		return bytes.TrimSuffix(buf, []byte("\n")), true, nil
	}
}

// Close closes every file.
func (r *Reader) Close() error {
	var errs []error
	for _, f := range r.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
