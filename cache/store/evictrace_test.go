package store

import (
	"context"
	"path"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// slowDelete holds the deletion of one path until release is closed (an
// object store's Delete takes a while; eviction deletes after dropping
// the entry from the index).
type slowDelete struct {
	storagedriver.StorageDriver
	hold    string
	started chan struct{}
	release chan struct{}
}

func (d *slowDelete) Delete(ctx context.Context, p string) error {
	if p == d.hold {
		close(d.started)
		<-d.release
	}
	return d.StorageDriver.Delete(ctx, p)
}

// A lookup of content being evicted (dropped from the index, not deleted
// yet) does not index it again from the driver: that evicted another blob
// to make room for one deleted a moment later, and kept a phantom entry
// counted against the limit.
func TestHasDuringEvictionResurrects(t *testing.T) {
	ctx := context.Background()
	pa, da := blob(300, 'a')
	pb, db := blob(300, 'b')
	pc, dc := blob(300, 'c')
	d := &slowDelete{StorageDriver: inmemory.New(), hold: path.Dir(blobPath(da)),
		started: make(chan struct{}), release: make(chan struct{})}
	s, err := Open(ctx, d, Options{MaxBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutBytes(ctx, da, pa); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if err := s.PutBytes(ctx, db, pb); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.PutBytes(ctx, dc, pc) }() // evicts a; its Delete is held
	<-d.started
	s.Has(da) // a client asks for a meanwhile
	close(d.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	onDriver := int64(0)
	for _, dg := range []string{blobPath(da), blobPath(db), blobPath(dc)} {
		if fi, err := d.StorageDriver.Stat(ctx, dg); err == nil {
			onDriver += fi.Size()
		}
	}
	if _, err := d.StorageDriver.Stat(ctx, blobPath(db)); err != nil {
		t.Errorf("b was evicted although a, not b, had to go (the store holds %d bytes of its 600)", onDriver)
	}
	if s.Size() != onDriver {
		t.Errorf("the index counts %d bytes, the store holds %d", s.Size(), onDriver)
	}
}
