//go:build !unix

package engine

import (
	"errors"
	"path/filepath"
	"strings"
)

// freeBytes is unknown here: a full directory is reported until a write
// there succeeds.
func freeBytes(string) (free, total int64, err error) {
	return 0, 0, errors.New("free space unknown on this platform")
}

// sameFilesystem is assumed for a directory below the other.
func sameFilesystem(a, b string) bool {
	a, b = filepath.Clean(a), filepath.Clean(b)
	return a == b || strings.HasPrefix(a, b+string(filepath.Separator)) || strings.HasPrefix(b, a+string(filepath.Separator))
}
