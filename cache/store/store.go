// Package store is pullgate's content-addressed store for manifests and blobs,
// on top of a distribution/v3 storage driver (the local filesystem by default,
// an object store shared by replicas otherwise).
//
// Content becomes visible only through Commit*, after its digest was checked:
// a crash or a failed fetch leaves nothing partial behind. The store has a size
// limit and evicts the least recently used content past it.
//
// Content can still change at rest (disk faults, other writers). The store
// keeps a bounded per-process record of the blob copies whose bytes were
// verified (MarkVerified, and every CommitFile), keyed by digest and the
// copy's FileID; callers re-hash a copy without a matching record before
// trusting it.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"github.com/pullgate/pullgate/cache/verified"
)

// Options configure a Store.
type Options struct {
	// MaxBytes bounds the content (0 = unbounded).
	MaxBytes int64
	// Log receives eviction and recovery messages.
	Log *slog.Logger
	// VerifiedEntries bounds the record of verified blob copies
	// (0 = DefaultVerifiedEntries).
	VerifiedEntries int
	// Objects, for a driver that has it (S3, see S3Objects), binds the
	// record of verified blob copies to what was written.
	Objects Objects

	// beforeBatch, if set, runs before the walk at start indexes each
	// batch of what it found (tests hold the walk there).
	beforeBatch func()
}

// Store is safe for concurrent use.
type Store struct {
	d         storagedriver.StorageDriver
	localRoot string // set for the filesystem driver: commits are renames
	max       int64
	log       *slog.Logger
	opts      Options

	mu    sync.Mutex
	items map[key]*node
	long  map[key]digest.Digest // digests of other algorithms than sha256
	lru   lruList               // content used, committed or looked up since the start
	pend  pendingHeap           // content the walk found, not used since
	// pendLive counts the nodes of pend still pending.
	pendLive int
	total    int64

	// verified maps a blob to the identity of the stored copy this process
	// hashed to its digest (see MarkVerified).
	verified *lru.Cache[digest.Digest, FileID]

	// evicting is content dropped from the index whose deletion has not
	// finished: discover and the walk must not index it again, and a
	// commit of it waits (commitDone) until the deletion is over.
	evicting map[key]int
	// committing is content being committed: it is not evicted.
	committing map[key]int
	commitDone *sync.Cond

	// objects is direct access to the driver's objects (S3), or nil.
	objects Objects

	// fill is the walk of the content found at start; gone is the
	// content removed while it runs (nil once it is complete).
	fill fillState
	gone map[key]struct{}
}

// ErrNotFound is returned for content the store does not hold.
var ErrNotFound = errors.New("not in store")

// OpenFilesystem opens (creating) a store in a local directory.
func OpenFilesystem(ctx context.Context, dir string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, err
	}
	d := filesystem.New(filesystem.DriverParameters{RootDirectory: abs, MaxThreads: 100})
	s, err := open(ctx, d, abs, opts)
	if err != nil {
		return nil, err
	}
	// Leftovers of a crash: uploads that never committed.
	_ = os.RemoveAll(filepath.Join(abs, "_uploads"))
	return s, nil
}

// Open opens a store on any storage driver (S3, GCS, Azure, in-memory).
func Open(ctx context.Context, d storagedriver.StorageDriver, opts Options) (*Store, error) {
	return open(ctx, d, "", opts)
}

func open(ctx context.Context, d storagedriver.StorageDriver, localRoot string, opts Options) (*Store, error) {
	s := &Store{d: d, localRoot: localRoot, max: opts.MaxBytes, log: opts.Log, opts: opts,
		items: map[key]*node{}, long: map[key]digest.Digest{}, verified: newVerifiedRecord(opts.VerifiedEntries),
		evicting: map[key]int{}, committing: map[key]int{}, objects: opts.Objects}
	s.lru.init()
	s.commitDone = sync.NewCond(&s.mu)
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	// A store that cannot be read at all is a configuration error, said
	// at once; the content itself is indexed in the background.
	if _, err := d.Stat(ctx, "/blobs"); err != nil {
		var nf storagedriver.PathNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("store: reading existing content: %w", err)
		}
	}
	s.startFill()
	return s, nil
}

// Driver is the underlying storage driver.
func (s *Store) Driver() storagedriver.StorageDriver { return s.d }

// LocalRoot is the filesystem root of a local store, "" otherwise.
func (s *Store) LocalRoot() string { return s.localRoot }

func blobPath(d digest.Digest) string {
	hex := d.Encoded()
	return path.Join("/blobs", d.Algorithm().String(), hex[:2], hex, "data")
}

// Has reports whether the store holds the digest, and its size. Content
// not in this process's index is looked up on the driver, so that content
// another replica committed to a shared store, or content the walk at
// start has not reached yet, is found (and indexed).
func (s *Store) Has(dgst digest.Digest) (int64, bool) {
	s.mu.Lock()
	n, _, ok := s.lookupLocked(dgst)
	var size int64
	if ok {
		size = n.size
	}
	s.mu.Unlock()
	if ok {
		return size, true
	}
	return s.discover(dgst)
}

// discover indexes content committed by another process, if the driver
// has it. Commits are atomic (a move into place), so what is there is
// whole; it is not verified by this process (see Verified).
func (s *Store) discover(dgst digest.Digest) (int64, bool) {
	if dgst.Validate() != nil {
		return 0, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), discoverTimeout)
	defer cancel()
	fi, err := s.d.Stat(ctx, blobPath(dgst))
	if err != nil || fi.IsDir() {
		return 0, false
	}
	if !s.index(ctx, dgst, fi.Size(), true) {
		return 0, false // found just before its eviction deleted it
	}
	return fi.Size(), true
}

// discoverTimeout bounds one lookup of content on the driver.
const discoverTimeout = 10 * time.Second

func (s *Store) touch(dgst digest.Digest) {
	s.mu.Lock()
	if n, _, ok := s.lookupLocked(dgst); ok {
		s.useLocked(n)
	}
	s.mu.Unlock()
}

// Size is the total size of stored content.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Get reads a whole small object (a manifest) and re-checks its digest.
func (s *Store) Get(ctx context.Context, dgst digest.Digest) ([]byte, error) {
	if _, ok := s.Has(dgst); !ok {
		return nil, ErrNotFound
	}
	b, err := s.d.GetContent(ctx, blobPath(dgst))
	if err != nil {
		s.forget(dgst)
		return nil, ErrNotFound
	}
	if verified.Check(dgst, b) != nil {
		// Corrupted at rest: never serve it.
		s.log.Error("store: content does not match its digest; removing it", "digest", dgst)
		_ = s.Delete(ctx, dgst)
		return nil, ErrNotFound
	}
	s.touch(dgst)
	return b, nil
}

// Reader opens stored content at an offset.
func (s *Store) Reader(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	if _, ok := s.Has(dgst); !ok {
		return nil, ErrNotFound
	}
	rc, err := s.d.Reader(ctx, blobPath(dgst), offset)
	if err != nil {
		s.forget(dgst)
		return nil, ErrNotFound
	}
	s.touch(dgst)
	return rc, nil
}

// OpenLocal opens stored content as a local file (filesystem store only),
// so that it can be sent with sendfile. Other stores return ErrNotFound.
// The file is trusted only if Verified(dgst, LocalFileID(f.Stat())).
func (s *Store) OpenLocal(dgst digest.Digest) (*os.File, error) {
	if s.localRoot == "" {
		return nil, ErrNotFound
	}
	if _, ok := s.Has(dgst); !ok {
		return nil, ErrNotFound
	}
	f, err := os.Open(s.localPath(dgst))
	if err != nil {
		s.forget(dgst)
		return nil, ErrNotFound
	}
	s.touch(dgst)
	return f, nil
}

// WriteProbe checks that the store accepts writes (readiness).
func (s *Store) WriteProbe(ctx context.Context) error {
	p := "/_probe/" + uuid.NewString()
	if err := s.d.PutContent(ctx, p, []byte("ok")); err != nil {
		return fmt.Errorf("store not writable: %w", err)
	}
	_ = s.d.Delete(ctx, p)
	return nil
}

// PutBytes commits small verified content (manifests). The digest (of any
// available algorithm: sha256, sha512) is checked.
func (s *Store) PutBytes(ctx context.Context, dgst digest.Digest, b []byte) error {
	if verified.Check(dgst, b) != nil {
		return fmt.Errorf("store: content does not match digest %s", dgst)
	}
	defer s.beginCommit(dgst)()
	if _, ok := s.Has(dgst); ok {
		s.touch(dgst)
		return nil
	}
	up := path.Join("/_uploads", uuid.NewString(), "data")
	if err := s.d.PutContent(ctx, up, b); err != nil {
		_ = s.d.Delete(ctx, path.Dir(up)) // a partial upload (disk full) is not left behind
		return err
	}
	if err := s.d.Move(ctx, up, blobPath(dgst)); err != nil {
		_ = s.d.Delete(ctx, path.Dir(up))
		return err
	}
	_ = s.d.Delete(ctx, path.Dir(up))
	s.add(ctx, dgst, int64(len(b)))
	return nil
}

// CommitFile moves a fully written and already verified local file into the
// store under dgst, and records the committed copy as verified. For the
// filesystem driver this is a hard link (the file should be on the same
// filesystem, see SpoolDir; otherwise a copy) renamed into place atomically;
// otherwise the file is uploaded and moved into place. A copy already in
// the store is kept only if this process verified it (its record matches);
// any other copy is replaced by the file. The caller keeps ownership of the
// file.
func (s *Store) CommitFile(ctx context.Context, dgst digest.Digest, file string, size int64) error {
	defer s.beginCommit(dgst)()
	if s.localRoot != "" {
		return s.commitLocal(ctx, dgst, file, size)
	}
	if s.keepVerified(ctx, dgst) {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if s.objects != nil {
		return s.commitObject(ctx, dgst, f, size)
	}
	up := path.Join("/_uploads", uuid.NewString(), "data")
	w, err := s.d.Writer(ctx, up, false)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, f); err != nil {
		_ = w.Cancel(ctx)
		_ = w.Close()
		return err
	}
	if err := w.Commit(ctx); err != nil {
		_ = w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := s.d.Move(ctx, up, blobPath(dgst)); err != nil {
		_ = s.d.Delete(ctx, path.Dir(up))
		return err
	}
	_ = s.d.Delete(ctx, path.Dir(up))
	s.add(ctx, dgst, size)
	if fi, err := s.d.Stat(ctx, blobPath(dgst)); err == nil && fi.Size() == size {
		s.MarkVerified(dgst, driverFileID(fi))
	}
	return nil
}

func (s *Store) commitLocal(ctx context.Context, dgst digest.Digest, file string, size int64) error {
	dst := s.localPath(dgst)
	if fi, err := os.Stat(dst); err == nil && s.Verified(dgst, LocalFileID(fi)) {
		s.add(ctx, dgst, size)
		return nil
	}
	// Link rather than rename: the spool file stays valid for readers
	// still streaming it. The link is made under a temporary name in
	// _uploads (removed whole when the store opens: a crash leaves
	// nothing behind among the blobs) and renamed over dst, so that the
	// entry appears (or an unverified copy is replaced) atomically.
	uploads := filepath.Join(s.localRoot, "_uploads")
	if err := os.MkdirAll(uploads, 0o750); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return err
	}
	tmp := filepath.Join(uploads, uuid.NewString())
	if err := os.Link(file, tmp); err != nil {
		if err := copyFile(file, tmp); err != nil {
			return err
		}
	}
	// Identity of the verified bytes, taken before they become visible:
	// whatever is at dst later must match it to be trusted.
	fi, err := os.Stat(tmp)
	if err == nil && fi.Size() != size {
		err = fmt.Errorf("store: %s has %d bytes, want %d", file, fi.Size(), size)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	s.add(ctx, dgst, size)
	s.MarkVerified(dgst, LocalFileID(fi))
	return nil
}

// copyFile copies src to a new file dst (removed again on error).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

func (s *Store) add(ctx context.Context, dgst digest.Digest, size int64) {
	s.index(ctx, dgst, size, false)
}

// index makes dgst the most recently used content and enforces the size
// limit. Content found on the driver (found) is not indexed while this
// process is evicting it; it reports whether dgst is indexed.
func (s *Store) index(ctx context.Context, dgst digest.Digest, size int64, found bool) bool {
	k, long, ok := keyOf(dgst)
	if !ok {
		return false
	}
	s.mu.Lock()
	if found && s.evicting[k] > 0 {
		s.mu.Unlock()
		return false
	}
	n, ok := s.items[k]
	if ok {
		s.useLocked(n)
	} else {
		n = s.insertLocked(k, long, size, nil)
	}
	evict := s.overLimitLocked(n)
	s.mu.Unlock()
	s.evict(ctx, evict)
	return true
}

// overLimitLocked drops entries from the index until the content fits the
// limit, the oldest the walk found first, then the least recently used;
// never keep, content being committed, or the last entry. It returns them
// for evict.
func (s *Store) overLimitLocked(keep *node) []digest.Digest {
	var evict []digest.Digest
	skip := func(n *node) bool { return n == keep || s.committing[n.k] > 0 }
	for s.max > 0 && s.total > s.max && len(s.items) > 1 {
		n := s.victimLocked(skip)
		if n == nil {
			break
		}
		d := s.digestOf(n)
		s.forgetNodeLocked(n)
		s.evicting[n.k]++
		evict = append(evict, d)
	}
	return evict
}

// MakeRoom evicts the least recently used content (never content being
// committed) until at least n bytes were evicted, for a caller whose
// writes found the disk under the store full. If the store cannot free n
// bytes it evicts nothing (emptying the cache would not make the room) and
// returns 0; otherwise it returns the bytes evicted.
func (s *Store) MakeRoom(ctx context.Context, n int64) int64 {
	if n <= 0 {
		return 0
	}
	s.mu.Lock()
	evictable := s.total
	for k := range s.committing {
		if c, ok := s.items[k]; ok && c.size > 0 {
			evictable -= c.size
		}
	}
	if evictable < n {
		s.mu.Unlock()
		return 0
	}
	var evict []digest.Digest
	var freed int64
	skip := func(c *node) bool { return s.committing[c.k] > 0 }
	for freed < n {
		c := s.victimLocked(skip)
		if c == nil {
			break
		}
		evict = append(evict, s.digestOf(c))
		freed += max(c.size, 0)
		s.forgetNodeLocked(c)
		s.evicting[c.k]++
	}
	s.mu.Unlock()
	s.evict(ctx, evict)
	return freed
}

// evict deletes content dropped from the index.
func (s *Store) evict(ctx context.Context, digests []digest.Digest) {
	for _, d := range digests {
		s.log.Info("store: evicting least recently used content", "digest", d)
		if err := s.d.Delete(ctx, path.Dir(blobPath(d))); err != nil {
			s.log.Warn("store: eviction failed", "digest", d, "err", err)
		}
		k, _, _ := keyOf(d)
		s.mu.Lock()
		if s.evicting[k]--; s.evicting[k] <= 0 {
			delete(s.evicting, k)
			s.commitDone.Broadcast()
		}
		s.mu.Unlock()
	}
}

// beginCommit marks dgst as being committed, once no eviction of it is
// under way (its deletion would remove the new copy); the returned
// function ends it.
func (s *Store) beginCommit(dgst digest.Digest) func() {
	k, _, ok := keyOf(dgst)
	if !ok {
		return func() {}
	}
	s.mu.Lock()
	for s.evicting[k] > 0 {
		s.commitDone.Wait()
	}
	s.committing[k]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.committing[k]--; s.committing[k] <= 0 {
			delete(s.committing, k)
		}
		s.mu.Unlock()
	}
}

func (s *Store) forget(dgst digest.Digest) {
	s.mu.Lock()
	s.forgetLocked(dgst)
	s.mu.Unlock()
}

// forgetLocked drops dgst from the index and the verified record.
func (s *Store) forgetLocked(dgst digest.Digest) {
	if n, k, ok := s.lookupLocked(dgst); ok {
		s.forgetNodeLocked(n)
	} else if _, _, valid := keyOf(dgst); valid {
		s.verified.Remove(dgst)
		if s.gone != nil {
			s.gone[k] = struct{}{} // the walk may have seen it already
		}
	}
}

// forgetNodeLocked drops n from the index and its digest from the
// verified record.
func (s *Store) forgetNodeLocked(n *node) {
	s.verified.Remove(s.digestOf(n))
	if s.gone != nil {
		s.gone[n.k] = struct{}{}
	}
	s.removeLocked(n)
}

// Delete removes content.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	s.forget(dgst)
	err := s.d.Delete(ctx, path.Dir(blobPath(dgst)))
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	return err
}

// PutMeta stores a small metadata record (tags, links) under a key made of
// safe path segments.
func (s *Store) PutMeta(ctx context.Context, key string, value []byte) error {
	p, err := metaPath(key)
	if err != nil {
		return err
	}
	return s.d.PutContent(ctx, p, value)
}

// GetMeta reads a metadata record; ErrNotFound when absent.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	p, err := metaPath(key)
	if err != nil {
		return nil, err
	}
	b, err := s.d.GetContent(ctx, p)
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return nil, ErrNotFound
	}
	return b, err
}

// ListMeta lists the direct children names of a metadata key.
func (s *Store) ListMeta(ctx context.Context, key string) ([]string, error) {
	p, err := metaPath(key)
	if err != nil {
		return nil, err
	}
	names, err := s.d.List(ctx, p)
	var nf storagedriver.PathNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for i, n := range names {
		names[i] = path.Base(n)
	}
	return names, nil
}

// MetaKey joins segments into a metadata key, escaping characters the
// storage drivers do not accept in paths.
func MetaKey(segments ...string) string {
	out := make([]string, 0, len(segments))
	for _, seg := range segments {
		for _, part := range strings.Split(seg, "/") {
			out = append(out, escapeSegment(part))
		}
	}
	return strings.Join(out, "/")
}

func escapeSegment(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "_%02x", r)
		}
	}
	if s == "" || s == "." || s == ".." {
		return "_" + fmt.Sprintf("%x", sha256.Sum256([]byte(s)))[:8]
	}
	return b.String()
}

var safeSegment = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func metaPath(key string) (string, error) {
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." || !safeSegment.MatchString(seg) {
			return "", fmt.Errorf("store: invalid metadata key %q", key)
		}
	}
	return "/meta/" + key, nil
}
