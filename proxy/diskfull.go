package proxy

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/ocierr"
)

// Storage write operations, for pullgate_storage_write_errors_total and
// /readyz.
const (
	opSpool    = "spool"    // a download written to the spool
	opCommit   = "commit"   // a verified blob moved or copied into the store
	opManifest = "manifest" // a verified manifest written to the store
)

// Seams of the disk, replaced by tests that fail on demand where no small
// filesystem can be mounted.
var (
	spoolWrite = (*inflight.Fetch).Write
	commitBlob = (*store.Store).CommitFile
	freeSpace  = freeBytes
)

// diskFull remembers the directories where a write found no space, with
// the size that did not fit: /readyz reports them until that much is free
// again (or a later write there succeeded), checked on every probe so
// that a replica becomes ready again as soon as space is freed.
type diskFull struct {
	mu   sync.Mutex
	dirs map[string]fullDir
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
func (s *Server) storageError(op, dir string, need int64, err error) {
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
func (s *Server) storageOK(dirs ...string) {
	s.full.mu.Lock()
	defer s.full.mu.Unlock()
	for _, d := range dirs {
		if f, ok := s.full.dirs[d]; ok {
			delete(s.full.dirs, d)
			s.log.Info("storage writable again", "dir", d, "op", f.op)
		}
	}
}

// storageFull is the /readyz error while a directory found full has less
// free space than the write that failed there needed.
func (s *Server) storageFull() error {
	s.full.mu.Lock()
	defer s.full.mu.Unlock()
	var msgs []string
	for dir, f := range s.full.dirs {
		free, err := freeSpace(dir)
		if err == nil && free >= f.need {
			delete(s.full.dirs, dir)
			s.log.Info("storage has space again", "dir", dir, "op", f.op, "free", free, "need", f.need)
			continue
		}
		msgs = append(msgs, fmt.Sprintf("no space left in %s (%s of %d bytes failed at %s; %d bytes free): cold pulls fail until space is freed",
			dir, f.op, f.need, f.at.UTC().Format(time.RFC3339), free))
	}
	if len(msgs) == 0 {
		return nil
	}
	sort.Strings(msgs)
	return fmt.Errorf("storage: %s", strings.Join(msgs, "; "))
}

// spoolFullError is a download that did not fit in the spool: clients are
// told to retry (or use another replica), not that the blob is bad.
type spoolFullError struct {
	dgst digest.Digest
	size int64
	err  error
}

func (e *spoolFullError) Error() string {
	return fmt.Sprintf("pullgate has no space left to spool blob %s (%d bytes); nothing was served or cached; retry later or pull through another replica", e.dgst, e.size)
}

func (e *spoolFullError) Unwrap() error { return e.err }

func writeSpoolFull(w http.ResponseWriter, r *http.Request, e *spoolFullError) {
	w.Header().Set("Retry-After", "60")
	ocierr.Write(w, r, ocierr.New(http.StatusServiceUnavailable, ocierr.Unavailable, "%s", e.Error()))
}
