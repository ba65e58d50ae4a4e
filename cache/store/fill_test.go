package store

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// walkGate holds the walk at start before it indexes each batch: arrived
// receives when the walk holds a batch, release lets one through; open
// lets every batch through from then on.
type walkGate struct {
	arrived, release chan struct{}
	openOnce         sync.Once
	opened           chan struct{}
}

func newWalkGate() *walkGate {
	return &walkGate{arrived: make(chan struct{}), release: make(chan struct{}), opened: make(chan struct{})}
}

func (g *walkGate) hook() {
	select {
	case g.arrived <- struct{}{}:
	case <-g.opened:
		return
	}
	select {
	case <-g.release:
	case <-g.opened:
	}
}

func (g *walkGate) open() { g.openOnce.Do(func() { close(g.opened) }) }

// closeGated closes s when the test ends, letting its walk go first.
func closeGated(t *testing.T, s *Store, g *walkGate) {
	t.Cleanup(func() {
		g.open()
		s.Close()
	})
}

// wait waits until the walk holds a batch.
func (g *walkGate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(time.Until(deadline(t))):
		t.Fatal("the walk never reached a batch")
	}
}

func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d.Add(-5 * time.Second)
	}
	return time.Now().Add(time.Minute)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), deadline(t))
	t.Cleanup(cancel)
	return ctx
}

// numbered is blob i of a test: size bytes, distinct per i and tag.
func numbered(tag byte, i, size int) ([]byte, digest.Digest) {
	p := bytes.Repeat([]byte{tag}, size)
	binary.LittleEndian.PutUint32(p, uint32(i))
	return p, digest.FromBytes(p)
}

// fill stores n blobs of size bytes through a first store on the driver (or
// directory) and closes it; blob i is modified i minutes after blob 0
// (older blobs first).
func fillStore(t *testing.T, open func(Options) (*Store, error), setTime func(digest.Digest, time.Time), n, size int) []digest.Digest {
	t.Helper()
	ctx := testCtx(t)
	s, err := open(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ds []digest.Digest
	base := time.Now().Add(-time.Duration(n+1) * time.Minute)
	for i := 0; i < n; i++ {
		p, d := numbered('f', i, size)
		if err := s.PutBytes(ctx, d, p); err != nil {
			t.Fatal(err)
		}
		if setTime != nil {
			setTime(d, base.Add(time.Duration(i)*time.Minute))
		} else {
			time.Sleep(2 * time.Millisecond) // driver-set times: keep them apart
		}
		ds = append(ds, d)
	}
	s.Close()
	return ds
}

// storeKinds are a local store (walked directly) and one on a driver
// (walked through the driver).
func storeKinds(t *testing.T) map[string]struct {
	open    func(Options) (*Store, error)
	setTime func(digest.Digest, time.Time)
	onDisk  func() int64
} {
	dir := t.TempDir()
	mem := inmemory.New()
	ctx := context.Background()
	return map[string]struct {
		open    func(Options) (*Store, error)
		setTime func(digest.Digest, time.Time)
		onDisk  func() int64
	}{
		"filesystem": {
			open: func(o Options) (*Store, error) { return OpenFilesystem(ctx, dir, o) },
			setTime: func(d digest.Digest, tm time.Time) {
				if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(blobPath(d))), tm, tm); err != nil {
					t.Fatal(err)
				}
			},
			onDisk: func() int64 {
				var n int64
				_ = filepath.Walk(filepath.Join(dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
					if err == nil && fi.Mode().IsRegular() {
						n += fi.Size()
					}
					return nil
				})
				return n
			},
		},
		"driver": {
			open: func(o Options) (*Store, error) { return Open(ctx, mem, o) },
			onDisk: func() int64 {
				var n int64
				_ = mem.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
					if !fi.IsDir() {
						n += fi.Size()
					}
					return nil
				})
				return n
			},
		},
	}
}

// A reopened store serves its content before the walk at start indexed
// any of it (a restart on a large store served nothing until the whole
// store was walked), and counts a blob it looked up meanwhile once when
// the walk reaches it.
func TestServesWhileIndexing(t *testing.T) {
	for name, k := range storeKinds(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ds := fillStore(t, k.open, k.setTime, 20, 100)
			g := newWalkGate()
			opened := make(chan *Store, 1)
			go func() {
				s, err := k.open(Options{beforeBatch: g.hook})
				if err != nil {
					t.Error(err)
				}
				opened <- s
			}()
			g.wait(t) // the walk holds its first batch
			var s *Store
			select {
			case s = <-opened:
			case <-ctx.Done():
				t.Fatal("Open waits for the walk of the whole store")
			}
			if s == nil {
				return
			}
			closeGated(t, s, g)
			if st := s.IndexStatus(); st.Complete || st.Walked != 0 {
				t.Fatalf("status before any batch: %+v", st)
			}
			want, _ := numbered('f', 7, 100)
			if n, ok := s.Has(ds[7]); !ok || n != 100 {
				t.Fatalf("Has before the walk reached it = %d, %v", n, ok)
			}
			if got, err := s.Get(ctx, ds[7]); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Get before the walk reached it: %v", err)
			}
			if s.Size() != 100 {
				t.Fatalf("Size = %d with one blob looked up", s.Size())
			}
			g.open()
			if err := s.WaitIndexed(ctx); err != nil {
				t.Fatal(err)
			}
			st := s.IndexStatus()
			if !st.Complete || st.Blobs != 20 || st.Bytes != 2000 || st.Walked != 20 || st.Fraction != 1 || st.Err != nil {
				t.Fatalf("status once complete: %+v", st)
			}
			if s.Size() != k.onDisk() {
				t.Fatalf("the index counts %d bytes, the store holds %d", s.Size(), k.onDisk())
			}
		})
	}
}

// With the store over its limit (the limit was lowered, or content
// committed while the walk ran), eviction while the index fills takes the
// oldest content the walk found, never content used or committed since
// the start; once the walk is complete the store fits the limit and the
// index counts exactly what the store holds.
func TestEvictionWhileIndexing(t *testing.T) {
	for name, k := range storeKinds(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ds := fillStore(t, k.open, k.setTime, 20, 100)
			g := newWalkGate()
			s, err := k.open(Options{MaxBytes: 1000, beforeBatch: g.hook})
			if err != nil {
				t.Fatal(err)
			}
			closeGated(t, s, g)
			g.wait(t)
			// Used since the start: the oldest stored blob, and new ones.
			if _, err := s.Get(ctx, ds[0]); err != nil {
				t.Fatal(err)
			}
			var fresh []digest.Digest
			for i := 0; i < 3; i++ {
				p, d := numbered('n', i, 100)
				if err := s.PutBytes(ctx, d, p); err != nil {
					t.Fatal(err)
				}
				fresh = append(fresh, d)
			}
			// The rest of the walk, batch by batch, with commits between
			// batches (no more than fit the limit beside ds[0]).
			g.release <- struct{}{}
			for i := 3; ; i++ {
				select {
				case <-g.arrived:
					if len(fresh) < 9 {
						p, d := numbered('n', i, 100)
						if err := s.PutBytes(ctx, d, p); err != nil {
							t.Fatal(err)
						}
						fresh = append(fresh, d)
					}
					g.release <- struct{}{}
					continue
				case <-s.fill.done:
				case <-ctx.Done():
					t.Fatal(ctx.Err())
				}
				break
			}
			if err := s.WaitIndexed(ctx); err != nil {
				t.Fatal(err)
			}
			if s.Size() > 1000 || k.onDisk() > 1000 {
				t.Fatalf("after the walk the index counts %d bytes and the store holds %d, limit 1000", s.Size(), k.onDisk())
			}
			if s.Size() != k.onDisk() {
				t.Fatalf("the index counts %d bytes, the store holds %d", s.Size(), k.onDisk())
			}
			// 10 blobs fit: the commits and the stored blob read since
			// the start outrank every blob only the walk found.
			keep := append([]digest.Digest{ds[0]}, fresh...)
			for _, d := range keep {
				if !indexed(s, d) {
					t.Errorf("%s, used since the start, was evicted before content the walk found", d)
				}
			}
		})
	}
}

// The walk at start indexes the oldest content as the least recently
// used: over the limit, the oldest goes first.
func TestWalkOrdersByAge(t *testing.T) {
	for name, k := range storeKinds(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ds := fillStore(t, k.open, k.setTime, 20, 100)
			s, err := k.open(Options{MaxBytes: 1000})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.WaitIndexed(ctx); err != nil {
				t.Fatal(err)
			}
			if name == "driver" {
				// one batch: the whole store is known before anything
				// is evicted
				for i, d := range ds {
					if got, want := indexed(s, d), i >= 10; got != want {
						t.Errorf("blob %d of 20 (oldest first): indexed %v, want %v", i, got, want)
					}
				}
			}
			if s.Size() != 1000 || k.onDisk() != 1000 {
				t.Fatalf("index %d bytes, store %d, want 1000", s.Size(), k.onDisk())
			}
			// What is left goes oldest first.
			var left []digest.Digest
			for _, d := range ds {
				if indexed(s, d) {
					left = append(left, d)
				}
			}
			p, d := numbered('z', 0, 100)
			if err := s.PutBytes(ctx, d, p); err != nil {
				t.Fatal(err)
			}
			if indexed(s, left[0]) || !indexed(s, left[1]) {
				t.Fatalf("a commit did not evict the oldest remaining blob first")
			}
		})
	}
}

// Content removed while the walk runs, after the walk saw it and before it
// indexed it, is not indexed again (a phantom counted against the limit,
// and looked for on every request).
func TestRemovedWhileIndexingStaysGone(t *testing.T) {
	for name, k := range storeKinds(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			ds := fillStore(t, k.open, k.setTime, 3, 100)
			g := newWalkGate()
			s, err := k.open(Options{beforeBatch: g.hook})
			if err != nil {
				t.Fatal(err)
			}
			closeGated(t, s, g)
			g.wait(t)
			for _, d := range ds {
				if err := s.Delete(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			g.open()
			if err := s.WaitIndexed(ctx); err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				if indexed(s, d) {
					t.Errorf("%s was deleted while the walk ran and is indexed again", d)
				}
			}
			if s.Size() != 0 || k.onDisk() != 0 {
				t.Fatalf("index %d bytes, store %d, want 0", s.Size(), k.onDisk())
			}
		})
	}
}

// Rescan waits for the walk at start: run meanwhile, it indexed every blob
// as recently used, ahead of what the walk orders by age.
func TestRescanWaitsForIndex(t *testing.T) {
	ctx := testCtx(t)
	mem := inmemory.New()
	open := func(o Options) (*Store, error) { return Open(ctx, mem, o) }
	fillStore(t, open, nil, 3, 100)
	g := newWalkGate()
	s, err := open(Options{beforeBatch: g.hook})
	if err != nil {
		t.Fatal(err)
	}
	closeGated(t, s, g)
	g.wait(t)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Rescan(short); err == nil {
		t.Fatal("Rescan ran while the walk at start was under way")
	}
	done := make(chan error, 1)
	go func() { done <- s.Rescan(ctx) }()
	g.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.IndexStatus(); !st.Complete || st.Bytes != 300 {
		t.Fatalf("after Rescan: %+v", st)
	}
}

// Content being committed is not evicted, even when it is the oldest.
func TestNoEvictionOfContentBeingCommitted(t *testing.T) {
	ctx := testCtx(t)
	s, err := Open(ctx, inmemory.New(), Options{MaxBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ds []digest.Digest
	for i := 0; i < 3; i++ {
		p, d := numbered('c', i, 100)
		if err := s.PutBytes(ctx, d, p); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	end := s.beginCommit(ds[0]) // the oldest, being committed again
	p, d := numbered('c', 3, 100)
	if err := s.PutBytes(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	end()
	if !indexed(s, ds[0]) {
		t.Fatal("content being committed was evicted")
	}
	if indexed(s, ds[1]) || s.Size() != 300 {
		t.Fatalf("the least recently used blob not being committed was not evicted (size %d)", s.Size())
	}
}

// A commit of content whose eviction is under way waits for the deletion:
// otherwise the deletion removed the new copy, which stayed indexed.
func TestCommitWaitsForEviction(t *testing.T) {
	ctx := testCtx(t)
	pa, da := numbered('w', 0, 300)
	pb, db := numbered('w', 1, 300)
	pc, dc := numbered('w', 2, 300)
	d := &slowDelete{StorageDriver: inmemory.New(), hold: path.Dir(blobPath(da)),
		started: make(chan struct{}), release: make(chan struct{})}
	s, err := Open(ctx, d, Options{MaxBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		p []byte
		d digest.Digest
	}{{pa, da}, {pb, db}} {
		if err := s.PutBytes(ctx, x.d, x.p); err != nil {
			t.Fatal(err)
		}
	}
	evicted := make(chan error, 1)
	go func() { evicted <- s.PutBytes(ctx, dc, pc) }() // evicts a; its Delete is held
	<-d.started
	recommitted := make(chan error, 1)
	go func() { recommitted <- s.PutBytes(ctx, da, pa) }() // a is wanted again
	// Give the commit of a the chance to run ahead of the deletion.
	for i := 0; i < 50; i++ {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	close(d.release)
	if err := <-evicted; err != nil {
		t.Fatal(err)
	}
	if err := <-recommitted; err != nil {
		t.Fatal(err)
	}
	var onDriver int64
	for _, x := range []digest.Digest{da, db, dc} {
		fi, err := d.StorageDriver.Stat(ctx, blobPath(x))
		switch {
		case err == nil:
			onDriver += fi.Size()
		case indexed(s, x):
			t.Errorf("%s is indexed but not stored", x)
		}
	}
	if !indexed(s, da) {
		t.Error("the recommitted blob is not indexed")
	}
	if s.Size() != onDriver {
		t.Errorf("the index counts %d bytes, the store holds %d", s.Size(), onDriver)
	}
}

// Content under another algorithm than sha256 is indexed by the walk and
// evicted by its own path.
func TestSHA512Content(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	s, err := OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{'5'}, 512)
	sum := sha512.Sum512(p)
	d := digest.NewDigestFromBytes(digest.SHA512, sum[:])
	f := filepath.Join(dir, "spool")
	if err := os.WriteFile(f, p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitFile(ctx, d, f, int64(len(p))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenFilesystem(ctx, dir, Options{MaxBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	if !indexed(s, d) || s.Size() != 512 {
		t.Fatalf("the walk did not index the sha512 blob (size %d)", s.Size())
	}
	q, e := blob(512, 'e')
	if err := s.PutBytes(ctx, e, q); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.localPath(d)); !os.IsNotExist(err) {
		t.Fatalf("the evicted sha512 blob is still stored: %v", err)
	}
	if s.Size() != 512 || !indexed(s, e) {
		t.Fatalf("size %d after evicting the sha512 blob", s.Size())
	}
}

// The walk's tier drops the entries of blobs used since (moved to the
// list) once they outnumber the pending ones, and still yields the oldest
// pending blob first.
func TestPendingTierCompaction(t *testing.T) {
	s, err := Open(testCtx(t), inmemory.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	var nodes []*node
	for i := 0; i < 3000; i++ {
		var k key
		binary.LittleEndian.PutUint32(k[:], uint32(i))
		mtime := int64(3000 - i) // the last inserted is the oldest
		nodes = append(nodes, s.insertLocked(k, "", 1, &mtime))
	}
	for _, n := range nodes[500:] {
		s.useLocked(n)
	}
	if len(s.pend) >= 2*500 || s.pendLive != 500 {
		t.Fatalf("walk tier: %d entries for %d pending", len(s.pend), s.pendLive)
	}
	if v := s.victimLocked(func(*node) bool { return false }); v != nodes[499] {
		t.Fatalf("victim is not the oldest pending blob")
	}
	for _, n := range nodes[:500] {
		s.removeLocked(n)
	}
	if s.pend != nil || s.pendLive != 0 {
		t.Fatalf("walk tier after every pending blob went: %d entries", len(s.pend))
	}
	if v := s.victimLocked(func(*node) bool { return false }); v != nodes[500] {
		t.Fatalf("victim after the walk tier is not the least recently used")
	}
}
