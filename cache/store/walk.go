package store

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// The index of the content already stored when the store opens is built
// in the background (fill), so that a restart on a large store serves at
// once. Until the walk is complete:
//   - a lookup of content not indexed yet finds it on the driver
//     (discover) and indexes it as recently used; the walk does not index
//     it again;
//   - what the walk found is indexed as it goes, in a tier older than
//     anything used since the start (see index.go), so that the size
//     limit is enforced over what is known so far, oldest first;
//   - content removed by this process (eviction, Delete, a copy found
//     missing) is remembered (Store.gone), so that a walk that saw it
//     before it went does not index it again;
//   - Rescan waits for the walk.
// Once the walk is complete the limit holds over the whole store.

// IndexStatus says how far the index of the content found at start is.
type IndexStatus struct {
	// Complete is true once the walk of the content found at start is
	// done: from then on the size limit holds over the whole store.
	Complete bool
	// Fraction of the store the walk has covered (by digest prefix).
	Fraction float64
	// Walked is the number of blobs the walk found so far.
	Walked int64
	// Blobs and Bytes are what the index holds now (found by the walk,
	// committed, or looked up on the driver).
	Blobs int
	Bytes int64
	// Elapsed is how long the walk took, or has been running.
	Elapsed time.Duration
	// Err is the last failure of the walk (it is retried), nil when
	// none.
	Err error
}

// IndexStatus reports how far the index of the content found at start is.
func (s *Store) IndexStatus() IndexStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := IndexStatus{Complete: s.fill.complete, Fraction: s.fill.fraction, Walked: s.fill.walked,
		Blobs: len(s.items), Bytes: s.total, Err: s.fill.err}
	if st.Complete {
		st.Fraction = 1
		st.Elapsed = s.fill.end.Sub(s.fill.start)
	} else {
		st.Elapsed = time.Since(s.fill.start)
	}
	return st
}

// WaitIndexed waits until the index of the content found at start is
// complete.
func (s *Store) WaitIndexed(ctx context.Context) error {
	select {
	case <-s.fill.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if st := s.IndexStatus(); !st.Complete {
		return errors.New("store: closed before its index was complete")
	}
	return nil
}

// Close stops the walk of the content found at start, if it still runs.
func (s *Store) Close() error {
	s.fill.cancel()
	<-s.fill.done
	return nil
}

// fillState is the progress of the walk of the content found at start.
type fillState struct {
	cancel     context.CancelFunc
	done       chan struct{}
	start, end time.Time
	complete   bool
	walked     int64
	fraction   float64
	err        error
}

// startFill starts the walk of the content already stored.
func (s *Store) startFill() {
	ctx, cancel := context.WithCancel(context.Background())
	s.fill = fillState{cancel: cancel, done: make(chan struct{}), start: time.Now()}
	s.gone = map[key]struct{}{}
	go s.runFill(ctx)
}

func (s *Store) runFill(ctx context.Context) {
	defer close(s.fill.done)
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		err := s.walk(ctx, nil, func(batch []found, fraction float64) {
			if s.opts.beforeBatch != nil {
				s.opts.beforeBatch()
			}
			s.mu.Lock()
			for _, f := range batch {
				if _, ok := s.items[f.k]; ok {
					continue // looked up or committed meanwhile
				}
				if _, ok := s.gone[f.k]; ok || s.evicting[f.k] > 0 {
					continue // removed since the walk saw it
				}
				mtime := f.mtime
				s.insertLocked(f.k, f.long, f.size, &mtime)
			}
			s.fill.walked += int64(len(batch))
			s.fill.fraction = max(s.fill.fraction, fraction)
			evict := s.overLimitLocked(nil)
			s.mu.Unlock()
			s.evict(ctx, evict)
		})
		if err == nil {
			break
		}
		s.mu.Lock()
		s.fill.err = err
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("store: indexing the stored content failed; retrying (content is served meanwhile)", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
	s.mu.Lock()
	s.gone = nil
	s.fill.complete, s.fill.err, s.fill.end = true, nil, time.Now()
	blobs, bytes, took := len(s.items), s.total, s.fill.end.Sub(s.fill.start)
	evict := s.overLimitLocked(nil)
	s.mu.Unlock()
	s.evict(ctx, evict)
	s.log.Info("store: index complete", "blobs", blobs, "bytes", bytes, "took", took.Round(time.Millisecond))
	// Uploads that never committed (a crash) are not content. A store on
	// a driver may be shared: only uploads too old to be another
	// replica's commit in progress are removed.
	if s.localRoot == "" {
		s.removeStaleUploads(ctx)
	}
}

// found is a blob the walk found.
type found struct {
	k     key
	long  digest.Digest // set for a digest of another algorithm than sha256
	size  int64
	mtime int64 // Unix nanoseconds
}

// foundBlob makes a found from a blob's algorithm and hex, nil when they
// are not a valid digest.
func foundBlob(alg, hx string, size int64, mtime time.Time) (found, bool) {
	f := found{size: size, mtime: mtime.UnixNano()}
	if alg == string(digest.SHA256) {
		// the common case, without building the digest string
		if len(hx) != 2*len(f.k) || !lowerHex(hx) {
			return f, false
		}
		_, err := hex.Decode(f.k[:], []byte(hx))
		return f, err == nil
	}
	k, long, ok := keyOf(digest.NewDigestFromEncoded(digest.Algorithm(alg), hx))
	f.k, f.long = k, long
	return f, ok && long != ""
}

// walkBatch is how many blobs a driver's walk hands over at a time.
const walkBatch = 4096

// walk lists the blobs on the store, in batches, with the fraction of the
// store covered so far. begin, if not nil, runs before each attempt: a
// driver's walk that a concurrent removal cut short (drivers that walk by
// List, as GCS, Azure and the filesystem do, fail the whole walk with
// PathNotFound when a directory goes between the listing of its parent and
// its own) is not taken for the whole store: it is walked again, or it is
// an error.
func (s *Store) walk(ctx context.Context, begin func(), emit func([]found, float64)) error {
	if s.localRoot != "" {
		if begin != nil {
			begin()
		}
		return s.walkLocal(ctx, emit)
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if begin != nil {
			begin()
		}
		if err = s.walkDriver(ctx, emit); err == nil {
			return nil
		}
		var nf storagedriver.PathNotFoundError
		if !errors.As(err, &nf) {
			return err
		}
		if _, serr := s.d.Stat(ctx, "/blobs"); errors.As(serr, &nf) {
			return nil // no content yet
		}
	}
	return fmt.Errorf("store: walking the content: %w", err)
}

func (s *Store) walkDriver(ctx context.Context, emit func([]found, float64)) error {
	var batch []found
	fraction := 0.0
	err := s.d.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || path.Base(fi.Path()) != "data" {
			return nil
		}
		parts := strings.Split(strings.TrimPrefix(fi.Path(), "/"), "/")
		if len(parts) != 5 || parts[2] != parts[3][:min(2, len(parts[3]))] {
			return nil
		}
		f, ok := foundBlob(parts[1], parts[3], fi.Size(), fi.ModTime())
		if !ok {
			return nil
		}
		if parts[1] == string(digest.SHA256) {
			if p, err := strconv.ParseUint(parts[3][:4], 16, 16); err == nil {
				fraction = float64(p+1) / (1 << 16)
			}
		}
		if batch = append(batch, f); len(batch) == walkBatch {
			emit(batch, fraction)
			batch = batch[:0]
		}
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	emit(batch, fraction)
	return nil
}

// walkLocal walks a filesystem store directly (one directory read per
// digest prefix and one lstat per blob), handing over a batch per prefix.
// Directories removed meanwhile (eviction) are skipped.
func (s *Store) walkLocal(ctx context.Context, emit func([]found, float64)) error {
	root := filepath.Join(s.localRoot, "blobs")
	algs, err := readDirNames(root)
	if err != nil {
		return err
	}
	var batch []found
	for _, alg := range algs {
		if !digest.Algorithm(alg).Available() {
			continue
		}
		prefixes, err := readDirNames(filepath.Join(root, alg))
		if err != nil {
			return err
		}
		for i, prefix := range prefixes {
			if err := ctx.Err(); err != nil {
				return err
			}
			if len(prefix) != 2 {
				continue
			}
			dir := filepath.Join(root, alg, prefix)
			names, err := readDirNames(dir)
			if err != nil {
				return err
			}
			batch = batch[:0]
			for _, hx := range names {
				if !strings.HasPrefix(hx, prefix) {
					continue
				}
				// Not there (evicted meanwhile), or not a blob: not
				// content. A blob that cannot be read is found, if ever,
				// by a lookup.
				fi, err := os.Lstat(filepath.Join(dir, hx, "data"))
				if err != nil || !fi.Mode().IsRegular() {
					continue
				}
				if f, ok := foundBlob(alg, hx, fi.Size(), fi.ModTime()); ok {
					batch = append(batch, f)
				}
			}
			fraction := -1.0
			if alg == string(digest.SHA256) {
				fraction = float64(i+1) / float64(len(prefixes))
			}
			emit(batch, fraction)
		}
	}
	return nil
}

// readDirNames lists a directory, sorted; a directory that does not exist
// (not created yet, or removed meanwhile) is empty.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// Rescan brings the index up to date with the driver, for a store that
// other replicas write to as well: blobs they committed are indexed (as
// recently used: another replica just stored them), blobs they evicted
// are dropped, and the size limit is enforced over the whole store again.
// Uploads left behind for longer than StaleUpload (a replica that crashed
// mid-commit) are removed. It waits for the index of the content found at
// start to be complete.
func (s *Store) Rescan(ctx context.Context) error {
	if err := s.WaitIndexed(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	before := make(map[key]struct{}, len(s.items))
	for k := range s.items {
		before[k] = struct{}{}
	}
	s.mu.Unlock()
	var all []found
	err := s.walk(ctx, func() { all = all[:0] }, func(batch []found, _ float64) { all = append(all, batch...) })
	if err != nil {
		return err
	}
	// Oldest first, so that the newest ends at the front.
	slices.SortFunc(all, func(a, b found) int { return cmp.Compare(a.mtime, b.mtime) })
	s.mu.Lock()
	seen := make(map[key]struct{}, len(all))
	for _, f := range all {
		seen[f.k] = struct{}{}
		if _, ok := s.items[f.k]; !ok && s.evicting[f.k] == 0 {
			s.insertLocked(f.k, f.long, f.size, nil)
		}
	}
	// Only what was indexed before the walk can have been missed by it
	// for having gone; what was committed meanwhile stays.
	for k := range before {
		if _, ok := seen[k]; ok {
			continue
		}
		if n, ok := s.items[k]; ok {
			s.forgetNodeLocked(n)
		}
	}
	evict := s.overLimitLocked(nil)
	s.mu.Unlock()
	s.evict(ctx, evict)
	s.removeStaleUploads(ctx)
	return nil
}

// StaleUpload is how old an upload must be before it is taken for the
// leftover of a crash (uploads are moved into place right after they are
// written, and a download is abandoned after two hours).
const StaleUpload = 3 * time.Hour

// removeStaleUploads deletes uploads older than StaleUpload. Younger ones
// may belong to another replica committing right now.
func (s *Store) removeStaleUploads(ctx context.Context) {
	dirs, err := s.d.List(ctx, "/_uploads")
	if err != nil {
		return
	}
	for _, dir := range dirs {
		fi, err := s.d.Stat(ctx, path.Join(dir, "data"))
		var nf storagedriver.PathNotFoundError
		switch {
		case errors.As(err, &nf):
			// an empty upload directory (or one being written): judge the
			// directory itself
			if fi, err = s.d.Stat(ctx, dir); err != nil {
				continue
			}
		case err != nil:
			continue
		}
		if !fi.ModTime().IsZero() && time.Since(fi.ModTime()) > StaleUpload {
			_ = s.d.Delete(ctx, dir)
		}
	}
}
