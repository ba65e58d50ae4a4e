package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Two replicas on one driver: what one commits, the other finds without a
// restart; what one evicts, the other drops at its next rescan; the size
// limit holds over everything the rescan found.
func TestSharedDriverReplicas(t *testing.T) {
	ctx := context.Background()
	d := inmemory.New()
	a, err := Open(ctx, d, Options{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, d, Options{MaxBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	p1, d1 := blob(300, '1')
	if err := a.PutBytes(ctx, d1, p1); err != nil {
		t.Fatal(err)
	}
	if n, ok := b.Has(d1); !ok || n != 300 {
		t.Fatalf("replica b does not see a's blob: %d %v", n, ok)
	}
	if got, err := b.Get(ctx, d1); err != nil || !bytes.Equal(got, p1) {
		t.Fatalf("b.Get = %d bytes, %v", len(got), err)
	}
	if id, err := b.Identify(ctx, d1); err != nil || b.Verified(d1, id) {
		t.Fatalf("a blob another replica committed counts as verified here: %v", err)
	}

	// a commits two more that b has not looked at; b's rescan indexes them
	p2, d2 := blob(300, '2')
	p3, d3 := blob(300, '3')
	if err := a.PutBytes(ctx, d2, p2); err != nil {
		t.Fatal(err)
	}
	if err := a.PutBytes(ctx, d3, p3); err != nil {
		t.Fatal(err)
	}
	if err := b.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Size() != 900 {
		t.Fatalf("b indexes %d bytes after rescan, want 900", b.Size())
	}

	// a evicts d1 (its least recently used) to make room for d4; b drops
	// d1 at its rescan and indexes d4
	p4, d4 := blob(300, '4')
	if err := a.PutBytes(ctx, d4, p4); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Has(d1); ok {
		t.Fatal("a kept d1 past its limit")
	}
	if err := b.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if ok := indexed(b, d1); ok || b.Size() != 900 {
		t.Fatalf("after a's eviction b still indexes d1 (%v) or %d bytes, want 900", ok, b.Size())
	}

	// A replica with a smaller limit enforces it over what its rescan
	// finds: the oldest goes (d2), the newest stays.
	c, err := Open(ctx, d, Options{MaxBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rescan(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Size() > 600 {
		t.Fatalf("c indexes %d bytes, over its 600 limit", c.Size())
	}
	if _, err := d.Stat(ctx, blobPath(d2)); err == nil {
		t.Fatal("the oldest blob was not evicted")
	}
	if _, ok := c.Has(d4); !ok {
		t.Fatal("the newest blob was evicted")
	}
}

// A store on a driver removes only uploads too old to be another
// replica's commit in progress.
func TestStaleUploadsOnly(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100})
	if err := d.PutContent(ctx, "/_uploads/old/data", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := d.PutContent(ctx, "/_uploads/fresh/data", []byte("y")); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-StaleUpload - time.Hour)
	if err := os.Chtimes(filepath.Join(root, "_uploads", "old", "data"), long, long); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, d, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIndexed(ctx); err != nil { // uploads are removed once the index is complete
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "_uploads", "old")); !os.IsNotExist(err) {
		t.Fatalf("stale upload kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "_uploads", "fresh", "data")); err != nil {
		t.Fatalf("another replica's upload in progress was removed: %v", err)
	}
}
