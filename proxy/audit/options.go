package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultMaxFiles is how many rotated files are kept when MaxSize is set and
// MaxFiles is not.
const DefaultMaxFiles = 5

// Options configure the audit log (the audit section of pullgate.yaml).
type Options struct {
	// Path of the JSONL file; "-" or "stdout" writes to standard output;
	// "" disables the file (OnEvent still sees every event).
	Path string
	// MaxSize rotates the file before a write would take it past this many
	// bytes (0: never rotate). The current file is renamed to Path.1, Path.1
	// to Path.2, and so on.
	MaxSize int64
	// MaxFiles is how many rotated files (Path.1 ... Path.N) are kept besides
	// the current one (0: DefaultMaxFiles). The oldest is deleted.
	MaxFiles int
}

// IsStdout reports whether path names standard output.
func IsStdout(path string) bool { return path == "-" || path == "stdout" }

// Validate reports a configuration that cannot work.
func (o Options) Validate() error {
	var errs []error
	if o.MaxSize < 0 {
		errs = append(errs, fmt.Errorf("audit.maxSize: must not be negative"))
	}
	if o.MaxFiles < 0 {
		errs = append(errs, fmt.Errorf("audit.maxFiles: must not be negative"))
	}
	if o.MaxSize > 0 && o.MaxSize < minRotateSize {
		errs = append(errs, fmt.Errorf("audit.maxSize: %d bytes is too small; use at least %d (e.g. 100MiB)", o.MaxSize, minRotateSize))
	}
	if (o.MaxSize > 0 || o.MaxFiles > 0) && (o.Path == "" || IsStdout(o.Path)) {
		errs = append(errs, errors.New("audit.maxSize/maxFiles: rotation needs a file path (not stdout)"))
	}
	return errors.Join(errs...)
}

// minRotateSize is the smallest MaxSize accepted: below it most events
// would get a file of their own.
const minRotateSize = 4 << 10

func (o Options) maxFiles() int {
	if o.MaxFiles > 0 {
		return o.MaxFiles
	}
	return DefaultMaxFiles
}

// OpenWith opens the audit log described by o: standard output, a file
// appended to, or a file rotated by size.
func OpenWith(o Options) (*Log, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	switch {
	case o.Path == "":
		return &Log{}, nil
	case IsStdout(o.Path):
		return newLog(os.Stdout, nil), nil
	}
	if dir := filepath.Dir(o.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
	}
	// Without MaxSize the file is never rotated, but it is still reopened
	// when removed and written again after a failure (see rotator).
	r, err := openRotator(o.Path, max(o.MaxSize, 0), o.maxFiles())
	if err != nil {
		return nil, err
	}
	return newLog(r, r), nil
}
