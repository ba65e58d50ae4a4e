package proxy

import (
	"context"
	"io/fs"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
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
	sw, cb, fr := spoolWrite, commitBlob, freeSpace
	enospc := func(op, path string) error { return &fs.PathError{Op: op, Path: path, Err: syscall.ENOSPC} }
	if spool {
		spoolWrite = func(f *inflight.Fetch, p []byte) (int, error) {
			if d.full.Load() {
				n, _ := sw(f, p[:len(p)/2])
				return n, enospc("write", f.Path())
			}
			return sw(f, p)
		}
	}
	if commit {
		commitBlob = func(s *store.Store, ctx context.Context, dgst digest.Digest, file string, size int64) error {
			if d.full.Load() {
				return enospc("write", file)
			}
			return cb(s, ctx, dgst, file, size)
		}
	}
	freeSpace = func(dir string) (int64, error) {
		if d.full.Load() {
			return 0, nil
		}
		return fr(dir)
	}
	t.Cleanup(func() { spoolWrite, commitBlob, freeSpace = sw, cb, fr })
	return d
}

// Fill makes the disk full; Free gives the space back.
func (d *DiskFault) Fill() { d.full.Store(true) }
func (d *DiskFault) Free() { d.full.Store(false) }
