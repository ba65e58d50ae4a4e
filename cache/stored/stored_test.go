package stored

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/cache/verified"
)

// stores are a filesystem store (sendfile path) and a driver store.
func stores(t *testing.T) map[string]*store.Store {
	ctx := context.Background()
	fs, err := store.OpenFilesystem(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := store.Open(ctx, inmemory.New(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*store.Store{"filesystem": fs, "driver": mem}
}

// put commits data under dgst and returns a function that replaces the
// stored bytes (corruption at rest, same size or not).
func put(t *testing.T, st *store.Store, dgst digest.Digest, data []byte) func([]byte) {
	t.Helper()
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := st.CommitFile(ctx, dgst, f, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return func(b []byte) {
		if root := st.LocalRoot(); root != "" {
			hex := dgst.Encoded()
			p := filepath.Join(root, "blobs", dgst.Algorithm().String(), hex[:2], hex, "data")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
		// The in-memory driver: commit the other bytes under the digest
		// after deleting the copy.
		if err := st.Delete(ctx, dgst); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := st.CommitFile(ctx, dgst, f, int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
}

func open(t *testing.T, st *store.Store, dgst digest.Digest, size int64) *Copy {
	t.Helper()
	c, err := Open(context.Background(), st, dgst, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

const hold = 1000

func TestVerifyStreamInspect(t *testing.T) {
	for name, st := range stores(t) {
		for _, n := range []int{0, hold - 1, hold, hold + 1, 3<<20 + 5} {
			data := make([]byte, n)
			rand.Read(data)
			dgst := digest.FromBytes(data)
			corrupt := put(t, st, dgst, data)
			size := int64(n)

			rs, err := open(t, st, dgst, size).Verify(hold)
			if err != nil {
				t.Fatalf("%s/%d: Verify: %v", name, n, err)
			}
			if got, _ := io.ReadAll(rs); !bytes.Equal(got, data) {
				t.Fatalf("%s/%d: Verify served other bytes", name, n)
			}
			_, small := rs.(*bytes.Reader)
			if small != (size <= hold) {
				t.Errorf("%s/%d: served from memory %v", name, n, small)
			}

			c := open(t, st, dgst, size)
			rc, err := c.Reader()
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			called := false
			if err := c.Stream(&out, rc, hold, func() { called = true }); err != nil || !called || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("%s/%d: Stream: %v, verified %v, %d bytes", name, n, err, called, out.Len())
			}
			rc.Close()

			var in bytes.Buffer
			if ferr, err := open(t, st, dgst, size).Inspect(&in); ferr != nil || err != nil || !bytes.Equal(in.Bytes(), data) {
				t.Fatalf("%s/%d: Inspect: %v %v", name, n, ferr, err)
			}

			if n == 0 {
				continue
			}
			// The same size, other bytes: a mismatch everywhere, and
			// Stream sent at most size-hold bytes.
			other := bytes.Clone(data)
			other[n-1] ^= 1
			corrupt(other)
			var mm *verified.MismatchError
			if _, err := open(t, st, dgst, size).Verify(hold); !errors.As(err, &mm) || mm.Got != digest.FromBytes(other) {
				t.Errorf("%s/%d: Verify of a corrupt copy: %v", name, n, err)
			}
			c = open(t, st, dgst, size)
			rc, _ = c.Reader()
			out.Reset()
			if err := c.Stream(&out, rc, hold, func() { t.Error("a corrupt copy verified") }); !errors.As(err, &mm) || int64(out.Len()) > max(size-hold, 0) {
				t.Errorf("%s/%d: Stream of a corrupt copy: %v, %d bytes sent", name, n, err, out.Len())
			}
			rc.Close()
			if _, err := open(t, st, dgst, size).Inspect(io.Discard); !errors.As(err, &mm) {
				t.Errorf("%s/%d: Inspect of a corrupt copy: %v", name, n, err)
			}
			// Shorter: a read error for Verify and Stream (nothing is
			// concluded), a mismatch for Inspect.
			corrupt(data[:n-1])
			var re *ReadError
			if _, err := open(t, st, dgst, size).Verify(hold); !errors.As(err, &re) {
				t.Errorf("%s/%d: Verify of a short copy: %v", name, n, err)
			}
			c = open(t, st, dgst, size)
			rc, err = c.Reader()
			if err == nil {
				if err := c.Stream(io.Discard, rc, hold, func() { t.Error("a short copy verified") }); !errors.As(err, &re) {
					t.Errorf("%s/%d: Stream of a short copy: %v", name, n, err)
				}
				rc.Close()
			}
			if _, err := open(t, st, dgst, size).Inspect(io.Discard); !errors.As(err, &mm) && !errors.As(err, &re) {
				t.Errorf("%s/%d: Inspect of a short copy: %v", name, n, err)
			}
		}
	}
}

type failWriter struct{ n int }

var errFinding = errors.New("finding")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n > 100 {
		return 0, errFinding
	}
	return len(p), nil
}

func TestInspectFindingStillHashes(t *testing.T) {
	for name, st := range stores(t) {
		data := make([]byte, 3<<20)
		rand.Read(data)
		dgst := digest.FromBytes(data)
		corrupt := put(t, st, dgst, data)
		ferr, err := open(t, st, dgst, int64(len(data))).Inspect(&failWriter{})
		if !errors.Is(ferr, errFinding) || err != nil {
			t.Fatalf("%s: %v %v", name, ferr, err)
		}
		// A finding on a copy that is not the blob is not the blob's.
		other := bytes.Clone(data)
		other[len(other)-1] ^= 1
		corrupt(other)
		var mm *verified.MismatchError
		if ferr, err := open(t, st, dgst, int64(len(data))).Inspect(&failWriter{}); !errors.Is(ferr, errFinding) || !errors.As(err, &mm) {
			t.Fatalf("%s: corrupt: %v %v", name, ferr, err)
		}
	}
}

func TestRecord(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	restart := func() *store.Store {
		st, err := store.OpenFilesystem(ctx, dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	data := []byte("a stored blob")
	dgst := digest.FromBytes(data)
	rewrite := put(t, restart(), dgst, data)
	st := restart() // no record of the commit's hashing
	c := open(t, st, dgst, int64(len(data)))
	if st.Verified(dgst, c.ID()) {
		t.Fatal("recorded before hashing")
	}
	if _, err := c.Verify(0); err != nil {
		t.Fatal(err)
	}
	c.Record()
	if !st.Verified(dgst, c.ID()) {
		t.Fatal("not recorded after hashing")
	}
	// A copy changed after it was opened (here: rewritten with a later
	// modification time) is not recorded.
	st = restart()
	c = open(t, st, dgst, int64(len(data)))
	if _, err := c.Verify(0); err != nil {
		t.Fatal(err)
	}
	rewrite(data)
	hex := dgst.Encoded()
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "blobs", "sha256", hex[:2], hex, "data"), later, later); err != nil {
		t.Fatal(err)
	}
	if c.Unchanged() {
		t.Fatal("a rewritten copy is unchanged")
	}
	c.Record()
	if st.Verified(dgst, c.ID()) {
		t.Fatal("a changed copy was recorded")
	}
}
