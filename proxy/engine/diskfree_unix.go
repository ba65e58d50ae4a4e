//go:build unix

package engine

import (
	"os"
	"syscall"
)

// freeBytes is the space an unprivileged writer may still use in dir, and
// the size of its filesystem.
func freeBytes(dir string) (free, total int64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	//nolint:unconvert // types differ by platform
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}

// sameFilesystem reports whether a and b are on one filesystem.
func sameFilesystem(a, b string) bool {
	ai, err := os.Stat(a)
	if err != nil {
		return false
	}
	bi, err := os.Stat(b)
	if err != nil {
		return false
	}
	as, ok1 := ai.Sys().(*syscall.Stat_t)
	bs, ok2 := bi.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && as.Dev == bs.Dev
}
