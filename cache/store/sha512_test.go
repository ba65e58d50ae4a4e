package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

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
