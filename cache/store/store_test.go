package store

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

func blob(n int, b byte) ([]byte, digest.Digest) {
	p := bytes.Repeat([]byte{b}, n)
	return p, digest.FromBytes(p)
}

func TestPutGetAndDigestCheck(t *testing.T) {
	ctx := context.Background()
	s, err := OpenFilesystem(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, d := blob(100, 'a')
	if err := s.PutBytes(ctx, d, p[:99]); err == nil {
		t.Fatal("PutBytes accepted bytes that do not match the digest")
	}
	if _, ok := s.Has(d); ok {
		t.Fatal("failed put left an entry")
	}
	if err := s.PutBytes(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, d)
	if err != nil || !bytes.Equal(got, p) {
		t.Fatalf("Get = %d bytes, %v", len(got), err)
	}
	rc, err := s.Reader(ctx, d, 90)
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(rc)
	rc.Close()
	if len(tail) != 10 {
		t.Fatalf("Reader at 90 read %d bytes", len(tail))
	}
}

func TestCorruptionAtRestIsNotServed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, d := blob(64, 'x')
	if err := s.PutBytes(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
	if err := os.WriteFile(file, bytes.Repeat([]byte{'y'}, 64), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, d); err != ErrNotFound {
		t.Fatalf("corrupted content: Get err = %v, want ErrNotFound", err)
	}
	if _, ok := s.Has(d); ok {
		t.Fatal("corrupted content still indexed")
	}
}

func TestCommitFileAtomicAndSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, d := blob(4096, 'z')
	spool := filepath.Join(dir, "_spool")
	os.MkdirAll(spool, 0o750)
	f := filepath.Join(spool, "x")
	os.WriteFile(f, p, 0o640)
	if err := s.CommitFile(ctx, d, f, int64(len(p))); err != nil {
		t.Fatal(err)
	}
	// Leftover partial upload from a "crash" must not become content.
	os.MkdirAll(filepath.Join(dir, "_uploads", "dead"), 0o750)
	os.WriteFile(filepath.Join(dir, "_uploads", "dead", "data"), []byte("partial"), 0o640)

	s2, err := OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s2.Has(d); !ok || n != int64(len(p)) {
		t.Fatalf("after restart Has = %d, %v", n, ok)
	}
	if s2.Size() != int64(len(p)) {
		t.Fatalf("after restart Size = %d, want %d", s2.Size(), len(p))
	}
	if _, err := os.Stat(filepath.Join(dir, "_uploads")); !os.IsNotExist(err) {
		t.Fatalf("partial uploads survived reopening: %v", err)
	}
}

func TestEvictionLRU(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, inmemory.New(), Options{MaxBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	a, da := blob(100, 'a')
	b, db := blob(100, 'b')
	c, dc := blob(100, 'c')
	e, de := blob(100, 'e')
	for _, x := range []struct {
		p []byte
		d digest.Digest
	}{{a, da}, {b, db}, {c, dc}} {
		if err := s.PutBytes(ctx, x.d, x.p); err != nil {
			t.Fatal(err)
		}
	}
	// Touch a so that b is the least recently used.
	if _, err := s.Get(ctx, da); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBytes(ctx, de, e); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Has(db); ok {
		t.Error("least recently used blob b was not evicted")
	}
	for _, d := range []digest.Digest{da, dc, de} {
		if _, ok := s.Has(d); !ok {
			t.Errorf("%s evicted, want kept", d)
		}
	}
	if s.Size() != 300 {
		t.Errorf("Size = %d, want 300", s.Size())
	}
	if _, err := s.Driver().GetContent(ctx, blobPath(db)); err == nil {
		t.Error("evicted blob still in the driver")
	}
}

// MakeRoom evicts the least recently used content, never content being
// committed, and nothing at all when it cannot free what was asked.
func TestMakeRoom(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, inmemory.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ds []digest.Digest
	for _, c := range []byte("abc") {
		p, d := blob(100, c)
		if err := s.PutBytes(ctx, d, p); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if _, err := s.Get(ctx, ds[0]); err != nil { // b is now the least recently used
		t.Fatal(err)
	}
	end := s.beginCommit(ds[1]) // but it is being committed
	if got := s.MakeRoom(ctx, 250); got != 0 || s.Size() != 300 {
		t.Fatalf("MakeRoom(250) with 200 bytes evictable: evicted %d, %d left", got, s.Size())
	}
	if got := s.MakeRoom(ctx, 50); got != 100 {
		t.Fatalf("MakeRoom(50) evicted %d bytes, want 100", got)
	}
	if _, ok := s.Has(ds[2]); ok {
		t.Error("c, the least recently used not being committed, was not evicted")
	}
	if _, err := s.Driver().GetContent(ctx, blobPath(ds[2])); err == nil {
		t.Error("evicted blob still in the driver")
	}
	for _, d := range ds[:2] {
		if _, ok := s.Has(d); !ok {
			t.Errorf("%s evicted, want kept", d)
		}
	}
	end()
	if got := s.MakeRoom(ctx, 150); got != 200 || s.Size() != 0 {
		t.Errorf("MakeRoom(150) evicted %d, %d left", got, s.Size())
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, inmemory.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	k := MetaKey("tags", "127.0.0.1:5001", "a/b", "v1_0")
	if err := s.PutMeta(ctx, k, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetMeta(ctx, k); err != nil || string(b) != "x" {
		t.Fatalf("GetMeta = %q, %v", b, err)
	}
	if _, err := s.GetMeta(ctx, MetaKey("tags", "none")); err != ErrNotFound {
		t.Fatalf("missing meta: %v", err)
	}
	names, err := s.ListMeta(ctx, MetaKey("tags", "127.0.0.1:5001", "a/b"))
	if err != nil || len(names) != 1 || names[0] != "v1_5f0" {
		t.Fatalf("ListMeta = %v, %v", names, err)
	}
	for _, bad := range []string{"../x", "a//b", "a/./b", "a b"} {
		if err := s.PutMeta(ctx, bad, nil); err == nil {
			t.Errorf("PutMeta(%q) accepted", bad)
		}
	}
	if MetaKey("..") == ".." || MetaKey(".") == "." {
		t.Error("dot segments not escaped")
	}
}

// CommitFile records the committed copy as verified; a copy rewritten or
// replaced afterwards no longer matches the record.
func TestCommitRecordsVerifiedCopy(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFilesystem(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, d := blob(4096, 'v')
	f := filepath.Join(dir, "spool")
	os.WriteFile(f, p, 0o640)
	if err := s.CommitFile(ctx, d, f, int64(len(p))); err != nil {
		t.Fatal(err)
	}
	id, err := s.Identify(ctx, d)
	if err != nil || !s.Verified(d, id) {
		t.Fatalf("committed copy not recorded: %+v %v", id, err)
	}
	// Replaced by another file (new inode): not the verified copy.
	stored := filepath.Join(dir, "blobs", "sha256", d.Encoded()[:2], d.Encoded(), "data")
	tmp := stored + ".x"
	os.WriteFile(tmp, bytes.Repeat([]byte{'w'}, len(p)), 0o640)
	fi, _ := os.Stat(stored)
	os.Chtimes(tmp, fi.ModTime(), fi.ModTime())
	os.Rename(tmp, stored)
	if id, err := s.Identify(ctx, d); err != nil || s.Verified(d, id) {
		t.Fatalf("replaced copy still counts as verified (%v)", err)
	}
	// Deleted content forgets its record.
	if err := s.CommitFile(ctx, d, f, int64(len(p))); err != nil {
		t.Fatal(err)
	}
	id, _ = s.Identify(ctx, d)
	s.Delete(ctx, d)
	if s.Verified(d, id) {
		t.Fatal("record survived Delete")
	}
}

// CommitFile replaces a copy it has no record of (here: found at startup
// and corrupted) with the verified file, and keeps a recorded one.
func TestCommitFileReplacesUnverifiedCopy(t *testing.T) {
	for _, name := range []string{"filesystem", "inmemory"} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var s *Store
			var err error
			if name == "filesystem" {
				s, err = OpenFilesystem(ctx, dir, Options{})
			} else {
				s, err = Open(ctx, inmemory.New(), Options{})
			}
			if err != nil {
				t.Fatal(err)
			}
			p, d := blob(4096, 'r')
			// A copy nobody verified (another replica, a previous
			// process), and corrupt.
			bad := bytes.Repeat([]byte{'j'}, len(p))
			if err := s.d.PutContent(ctx, blobPath(d), bad); err != nil {
				t.Fatal(err)
			}
			s.add(ctx, d, int64(len(p)))
			f := filepath.Join(dir, "spool")
			os.WriteFile(f, p, 0o640)
			if err := s.CommitFile(ctx, d, f, int64(len(p))); err != nil {
				t.Fatal(err)
			}
			got, err := s.d.GetContent(ctx, blobPath(d))
			if err != nil || !bytes.Equal(got, p) {
				t.Fatalf("unverified copy kept: %q..., %v", got[:4], err)
			}
			id, _ := s.Identify(ctx, d)
			if !s.Verified(d, id) {
				t.Fatal("replacement not recorded")
			}
			// Recorded: a second commit keeps it as is.
			if err := s.CommitFile(ctx, d, f, int64(len(p))); err != nil {
				t.Fatal(err)
			}
			if id2, _ := s.Identify(ctx, d); id2 != id {
				t.Fatalf("verified copy replaced: %+v -> %+v", id, id2)
			}
			if s.Size() != int64(len(p)) {
				t.Fatalf("Size = %d after replacing", s.Size())
			}
		})
	}
}
