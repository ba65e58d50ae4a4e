package store

import (
	"context"
	"path"
	"slices"
	"sync"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// fallbackWalker walks as the GCS, Azure and filesystem drivers do
// (storagedriver.WalkFallback: List and Stat per directory). onList runs
// before each List (a test removes a directory there, as another replica
// evicting a blob between the listing of its parent and its own would).
type fallbackWalker struct {
	storagedriver.StorageDriver
	mu     sync.Mutex
	onList func(p string)
}

func (w *fallbackWalker) List(ctx context.Context, p string) ([]string, error) {
	w.mu.Lock()
	hook := w.onList
	w.mu.Unlock()
	if hook != nil {
		hook(p)
	}
	return w.StorageDriver.List(ctx, p)
}

func (w *fallbackWalker) Walk(ctx context.Context, p string, f storagedriver.WalkFn, opts ...func(*storagedriver.WalkOptions)) error {
	return storagedriver.WalkFallback(ctx, w, p, f, opts...)
}

// A blob another replica evicts while this replica's Rescan walks the
// store makes the walk end early with PathNotFound; Rescan takes what it
// walked so far for the whole store and drops every indexed blob it had
// not reached yet, although they are all still there (and stops
// enforcing the size limit over them).
func TestRescanWalkInterruptedByEviction(t *testing.T) {
	ctx := context.Background()
	mem := inmemory.New()
	a, err := Open(ctx, mem, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ds []digest.Digest
	for i := 0; i < 6; i++ {
		p, d := blob(300, byte('a'+i))
		if err := a.PutBytes(ctx, d, p); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(x, y digest.Digest) int { return compare(x.Encoded(), y.Encoded()) })
	victim := ds[0] // the first one the walk reaches

	w := &fallbackWalker{StorageDriver: mem}
	b, err := Open(ctx, w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Size() != 6*300 {
		t.Fatalf("b indexes %d bytes", b.Size())
	}
	w.onList = func(p string) {
		if p == path.Dir(blobPath(victim)) {
			// another replica evicts it right now
			_ = mem.Delete(ctx, p)
		}
	}
	if err := b.Rescan(ctx); err != nil {
		t.Logf("Rescan: %v", err) // an error (index left alone) would be fine too
	}
	for _, d := range ds[1:] {
		if _, err := mem.Stat(ctx, blobPath(d)); err != nil {
			t.Fatalf("test setup: %s gone: %v", d, err)
		}
		if !indexed(b, d) {
			t.Errorf("Rescan dropped %s, still in the store, from the index", d)
		}
	}
	if b.Size() < 5*300 {
		t.Errorf("b indexes %d bytes after the rescan; the store holds %d", b.Size(), 5*300)
	}
}

// indexed reports whether s's index holds d (without looking it up on the
// driver, as Has does).
func indexed(s *Store, d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, ok := s.lookupLocked(d)
	return ok
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
