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

// Small content (manifests) addressed by sha512 is stored, read back
// after a restart, checked by its own algorithm, and removed when it no
// longer matches; a digest that is not valid is refused.
func TestPutGetSHA512(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := bytes.Repeat([]byte{'m'}, 100)
	d := digest.SHA512.FromBytes(p)
	if err := s.PutBytes(ctx, d, p[:99]); err == nil {
		t.Fatal("PutBytes accepted bytes that do not match the sha512 digest")
	}
	for _, bad := range []digest.Digest{"sha512:abc", "md5:" + digest.Digest(d.Encoded()[:32]), "sha256:" + digest.Digest(d.Encoded())} {
		if err := s.PutBytes(ctx, bad, p); err == nil {
			t.Errorf("PutBytes(%q) accepted", bad)
		}
	}
	if err := s.PutBytes(ctx, d, p); err != nil {
		t.Fatalf("PutBytes(sha512): %v", err)
	}
	s.Close()
	s, err = OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Get(ctx, d); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("Get(sha512) after a restart = %d bytes, %v", len(got), err)
	}
	file := filepath.Join(dir, "blobs", "sha512", d.Encoded()[:2], d.Encoded(), "data")
	if err := os.WriteFile(file, bytes.Repeat([]byte{'y'}, 100), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, d); err != ErrNotFound {
		t.Fatalf("corrupted sha512 content: Get err = %v, want ErrNotFound", err)
	}
}
