package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A blob stored under a sha512 digest is read back whole by Get (hashed
// with its own algorithm), and a corrupt one is still refused.
func TestGetSHA512(t *testing.T) {
	ctx := context.Background()
	s, err := OpenFilesystem(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"schemaVersion":2}`)
	d := digest.SHA512.FromBytes(data)
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitFile(ctx, d, f, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if err := os.WriteFile(s.localPath(d), []byte(`{"schemaVersion":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, d); err != ErrNotFound {
		t.Fatalf("Get of a corrupt sha512 copy: %v", err)
	}
	if _, ok := s.Has(d); ok {
		t.Fatal("the corrupt copy was kept")
	}
}
