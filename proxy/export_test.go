package proxy

import (
	"context"
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/engine"
)

// DiskFault makes the disk look full on demand where no small filesystem
// can be mounted: while full, spool writes (and/or commits) fail with
// ENOSPC after writing part of their bytes, as the kernel's do, and every
// directory reads as having no free space.
type DiskFault struct{ full atomic.Bool }

// InjectDiskFault installs a DiskFault for spool writes and/or commits
// until the test ends. Install it before opening the proxy.
func InjectDiskFault(t testing.TB, spool, commit bool) *DiskFault {
	d := &DiskFault{}
	real := engine.RealDisk()
	sw, cb, fr := real.SpoolWrite, real.CommitBlob, real.FreeSpace
	enospc := func(op, path string) error { return &fs.PathError{Op: op, Path: path, Err: syscall.ENOSPC} }
	if spool {
		testDisk.SpoolWrite = func(f *inflight.Fetch, p []byte) (int, error) {
			if d.full.Load() {
				n, _ := sw(f, p[:len(p)/2])
				return n, enospc("write", f.Path())
			}
			return sw(f, p)
		}
	}
	if commit {
		testDisk.CommitBlob = func(s *store.Store, ctx context.Context, dgst digest.Digest, file string, size int64) error {
			if d.full.Load() {
				return enospc("write", file)
			}
			return cb(s, ctx, dgst, file, size)
		}
	}
	testDisk.FreeSpace = func(dir string) (int64, int64, error) {
		if d.full.Load() {
			_, total, err := fr(dir)
			return 0, total, err
		}
		return fr(dir)
	}
	t.Cleanup(func() { testDisk = engine.Disk{} })
	return d
}

// Fill makes the disk full; Free gives the space back.
func (d *DiskFault) Fill() { d.full.Store(true) }
func (d *DiskFault) Free() { d.full.Store(false) }

// InjectSmallDisk models, where none can be mounted, a filesystem of
// capacity bytes holding root (the proxy's storage directory) until the
// test ends: its usage is the size of the files below root (each file
// once, however many links it has); a spool write past the capacity
// writes what fits and fails with ENOSPC, and the free space of a
// directory below root is what the capacity leaves. Install it before
// opening the proxy.
func InjectSmallDisk(t testing.TB, root string, capacity int64) {
	real := engine.RealDisk()
	sw, fr := real.SpoolWrite, real.FreeSpace
	used := func() int64 {
		seen := map[store.FileID]bool{}
		var n int64
		_ = filepath.WalkDir(root, func(_ string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return nil
			}
			if fi, err := e.Info(); err == nil {
				id := store.LocalFileID(fi)
				id.ModTime, id.Size = 0, 0
				if !seen[id] {
					seen[id] = true
					n += fi.Size()
				}
			}
			return nil
		})
		return n
	}
	testDisk.SpoolWrite = func(f *inflight.Fetch, p []byte) (int, error) {
		if left := capacity - used(); int64(len(p)) > left {
			n, _ := sw(f, p[:max(left, 0)])
			return n, &fs.PathError{Op: "write", Path: f.Path(), Err: syscall.ENOSPC}
		}
		return sw(f, p)
	}
	testDisk.FreeSpace = func(dir string) (int64, int64, error) {
		if rel, err := filepath.Rel(root, dir); err == nil && filepath.IsLocal(rel) {
			return max(capacity-used(), 0), capacity, nil
		}
		return fr(dir)
	}
	t.Cleanup(func() { testDisk = engine.Disk{} })
}
