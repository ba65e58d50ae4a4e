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

// A sha512 digest and a sha256 blob whose content is that digest's text
// are two entries of the index (a key derived from the digest's text
// made them one: Has answered for the other blob, the size limit missed
// one of them); a digest made up to share a stored blob's first 32 bytes
// finds nothing.
func TestIndexKeepsSHA512ApartFromSHA256(t *testing.T) {
	ctx := context.Background()
	s, err := OpenFilesystem(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	victim := []byte(`{"schemaVersion":2,"victim":true}`)
	d512 := digest.SHA512.FromBytes(victim)
	evil := []byte(d512.String())
	d256 := digest.SHA256.FromBytes(evil)
	put := func(d digest.Digest, b []byte) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "blob")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.CommitFile(ctx, d, f, int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	put(d256, evil)
	if sz, ok := s.Has(d512); ok {
		t.Errorf("Has(%s) = %d, true before it was stored", d512, sz)
	}
	madeUp := digest.NewDigestFromEncoded(digest.SHA512, d256.Encoded()+d256.Encoded())
	if sz, ok := s.Has(madeUp); ok {
		t.Errorf("Has(%s), a made-up digest sharing %s's first 32 bytes = %d, true", madeUp, d256, sz)
	}
	put(d512, victim)
	if got, want := s.Size(), int64(len(evil)+len(victim)); got != want {
		t.Errorf("store size %d, want %d (both blobs indexed)", got, want)
	}
	for d, want := range map[digest.Digest]int{d512: len(victim), d256: len(evil)} {
		if sz, ok := s.Has(d); !ok || sz != int64(want) {
			t.Errorf("Has(%s) = %d, %v; want %d", d, sz, ok, want)
		}
	}
}
