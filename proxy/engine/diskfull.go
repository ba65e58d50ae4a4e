package engine

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
)

// Storage write operations, for pullgate_storage_write_errors_total and
// /readyz.
const (
	opSpool    = "spool"    // a download written to the spool
	opCommit   = "commit"   // a verified blob moved or copied into the store
	opManifest = "manifest" // a verified manifest written to the store
)

// Disk is the engine's seam of the disk: the writes that can find it full
// and the free-space probe. Tests replace it (Options.Disk) to make the
// disk fail on demand where no small filesystem can be mounted.
type Disk struct {
	SpoolWrite func(f *inflight.Fetch, p []byte) (int, error)
	CommitBlob func(st *store.Store, ctx context.Context, dgst digest.Digest, file string, size int64) error
	FreeSpace  func(dir string) (free, total int64, err error)
}

// RealDisk is the disk as the operating system reports it.
func RealDisk() Disk {
	return Disk{SpoolWrite: (*inflight.Fetch).Write, CommitBlob: (*store.Store).CommitFile, FreeSpace: freeBytes}
}

// The free space a directory found full must have again for /readyz: the
// size of the write that failed, but never more than a quarter of its
// filesystem nor readyReserveMax. A replica is taken out of rotation while
// it cannot cache, not until it could cache one particular blob: a blob
// larger than the filesystem (or than what other files leave of it) would
// keep it out for good, and an unready replica gets no pull whose success
// could bring it back.
const (
	readyReserveMax   = 1 << 30
	readyReserveShare = 4
)

func readyReserve(need, total int64) int64 {
	return min(need, total/readyReserveShare, readyReserveMax)
}

// diskFull remembers the directories where a write found no space, with
// the size that did not fit: /readyz reports them until the reserve for
// that size (readyReserve) is free again or a later write there succeeded,
// checked on every probe so that a replica becomes ready again as soon as
// space is freed. While a local store shares the filesystem, a probe that
// finds too little free space evicts the store's least recently used
// content to make the room (makeRoom).
type diskFull struct {
	mu   sync.Mutex
	dirs map[string]fullDir
	// evicting serialises makeRoom.
	evicting sync.Mutex
}

type fullDir struct {
	op   string
	need int64
	at   time.Time
	err  string
}

// storageError counts a failed storage write, and records and logs (once
// per episode) one that found the disk full. dir is the local directory
// written to ("" for a store on a driver), need the bytes that did not fit.
func (s *Engine) storageError(op, dir string, need int64, err error) {
	full := store.IsNoSpace(err)
	reason := "other"
	if full {
		reason = "no_space"
	}
	s.metrics.storageErrors.WithLabelValues(op, reason).Inc()
	if !full || dir == "" {
		return
	}
	s.full.mu.Lock()
	_, known := s.full.dirs[dir]
	if s.full.dirs == nil {
		s.full.dirs = map[string]fullDir{}
	}
	if prev, ok := s.full.dirs[dir]; !ok || need > prev.need {
		s.full.dirs[dir] = fullDir{op: op, need: need, at: time.Now(), err: err.Error()}
	}
	s.full.mu.Unlock()
	if !known {
		s.log.Error("storage full: cold pulls fail until space is freed; /readyz reports it", "op", op, "dir", dir, "need", need, "err", err)
	}
}

// storageOK forgets a full directory once a write there succeeded.
func (s *Engine) storageOK(dirs ...string) {
	s.full.mu.Lock()
	defer s.full.mu.Unlock()
	for _, d := range dirs {
		if f, ok := s.full.dirs[d]; ok {
			delete(s.full.dirs, d)
			s.log.Info("storage writable again", "dir", d, "op", f.op)
		}
	}
}

// roomFor makes room in dir, after a write of size bytes there found no
// space, for the next try of that write: held is what the failed write
// still occupies and gives back. Nothing is evicted for a write larger
// than the filesystem.
func (s *Engine) roomFor(dir string, size, held int64) {
	free, total, err := s.disk.FreeSpace(dir)
	if err != nil || size > total {
		return
	}
	s.makeRoom(dir, size-free-held)
}

// makeRoom evicts n bytes of the store's least recently used content if
// the store is local and on dir's filesystem, and can free that much.
func (s *Engine) makeRoom(dir string, n int64) bool {
	root := s.store.LocalRoot()
	if n <= 0 || root == "" || !sameFilesystem(dir, root) {
		return false
	}
	s.full.evicting.Lock()
	defer s.full.evicting.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	freed := s.store.MakeRoom(ctx, n)
	if freed > 0 {
		s.log.Warn("storage full: evicted least recently used content to make room", "dir", dir, "need", n, "evicted", freed)
	}
	return freed > 0
}

// storageFull is the /readyz error while a directory found full has less
// free space than the reserve for the write that failed there (after the
// store evicted what it could to make it).
func (s *Engine) storageFull() error {
	s.full.mu.Lock()
	dirs := maps.Clone(s.full.dirs)
	s.full.mu.Unlock()
	var msgs []string
	for dir, f := range dirs {
		free, total, err := s.disk.FreeSpace(dir)
		reserve := readyReserve(f.need, total)
		if err == nil && free < reserve && s.makeRoom(dir, reserve-free) {
			free, total, err = s.disk.FreeSpace(dir)
			reserve = readyReserve(f.need, total)
		}
		if err == nil && free >= reserve {
			s.full.mu.Lock()
			if cur, ok := s.full.dirs[dir]; ok && cur == f {
				delete(s.full.dirs, dir)
				s.log.Info("storage has space again", "dir", dir, "op", f.op, "free", free, "reserve", reserve, "need", f.need)
			}
			s.full.mu.Unlock()
			continue
		}
		msgs = append(msgs, fmt.Sprintf("no space left in %s (%s of %d bytes failed at %s; %d bytes free, %d wanted): cold pulls fail until space is freed",
			dir, f.op, f.need, f.at.UTC().Format(time.RFC3339), free, reserve))
	}
	if len(msgs) == 0 {
		return nil
	}
	sort.Strings(msgs)
	return fmt.Errorf("storage: %s", strings.Join(msgs, "; "))
}

// SpoolFullError is a download that did not fit in the spool: clients are
// told to retry (or use another replica), not that the blob is bad.
type SpoolFullError struct {
	dgst digest.Digest
	size int64
	err  error
}

func (e *SpoolFullError) Error() string {
	return fmt.Sprintf("pullgate has no space left to spool blob %s (%d bytes); nothing was served or cached; retry later or pull through another replica", e.dgst, e.size)
}

func (e *SpoolFullError) Unwrap() error { return e.err }
