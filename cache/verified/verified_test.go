package verified

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

// chunkReader returns reads of the lengths in sizes (cycling), never more
// than asked.
type chunkReader struct {
	b     []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[c.i%len(c.sizes)]))
		c.i++
	}
	n = copy(p[:n], c.b)
	c.b = c.b[n:]
	return n, nil
}

// readSteps reads r to its end with buffers of bufLen, returning every byte
// released and the final error, and checking that no byte beyond released
// is ever returned before the reader verified (when hold > 0).
func readSteps(t testing.TB, r *Reader, bufLen int, total, hold int64) ([]byte, error) {
	var out []byte
	buf := make([]byte, bufLen)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if hold > 0 && !r.Verified() && int64(len(out)) > max(total-hold, 0) {
			t.Fatalf("released %d bytes of %d before verification (holdback %d)", len(out), total, hold)
		}
		if err != nil {
			return out, err
		}
	}
}

func TestReader(t *testing.T) {
	data := make([]byte, 10000)
	rand.Read(data)
	const hold = 1000
	for _, tc := range []struct {
		name    string
		content []byte // what the stream carries
		size    int64  // expected
		dgstOf  []byte // the digest is of these bytes
		ok      bool
	}{
		{"empty", nil, 0, nil, true},
		{"empty-wrong-digest", nil, 0, []byte("x"), false},
		{"smaller-than-holdback", data[:hold-1], hold - 1, data[:hold-1], true},
		{"equal-to-holdback", data[:hold], hold, data[:hold], true},
		{"one-more-than-holdback", data[:hold+1], hold + 1, data[:hold+1], true},
		{"large", data, int64(len(data)), data, true},
		{"short-read", data[:len(data)-1], int64(len(data)), data, false},
		{"short-small", data[:10], 11, data[:11], false},
		{"extra-bytes", data, int64(len(data)) - 1, data[:len(data)-1], false},
		{"extra-small", data[:11], 10, data[:10], false},
		{"wrong-digest", data, int64(len(data)), data[1:], false},
		{"flipped-byte", append(append([]byte{}, data[:5000]...), append([]byte{data[5000] ^ 1}, data[5001:]...)...), int64(len(data)), data, false},
	} {
		for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
			for _, h := range []int64{0, hold} {
				for _, bl := range []int{1, 7, 512, 1 << 20} {
					dgst := alg.FromBytes(tc.dgstOf)
					var opts []Option
					if h > 0 {
						opts = append(opts, Holdback(h))
					}
					r, err := NewReader(&chunkReader{b: tc.content, sizes: []byte{3, 250, 1, 77}}, dgst, tc.size, opts...)
					if err != nil {
						t.Fatal(err)
					}
					out, err := readSteps(t, r, bl, tc.size, h)
					if tc.ok {
						if err != io.EOF || !bytes.Equal(out, tc.content) {
							t.Errorf("%s/%s/hold %d/buf %d: got %d bytes, %v; want all, EOF", tc.name, alg, h, bl, len(out), err)
						}
						continue
					}
					var mm *MismatchError
					if !errors.As(err, &mm) || mm.Digest != dgst || mm.Size != tc.size {
						t.Errorf("%s/%s/hold %d/buf %d: err %v, want a mismatch", tc.name, alg, h, bl, err)
						continue
					}
					if !bytes.HasPrefix(tc.content, out) {
						t.Errorf("%s: released bytes are not a prefix of the stream", tc.name)
					}
					if h > 0 && int64(len(out)) > max(tc.size-h, 0) {
						t.Errorf("%s/%s/hold %d/buf %d: %d bytes released of a mismatching stream of %d", tc.name, alg, h, bl, len(out), tc.size)
					}
					if h > 0 && len(out) > 0 && len(out) == len(tc.content) && int64(len(out)) == tc.size {
						t.Errorf("%s: a mismatching stream was released whole", tc.name)
					}
					if _, err2 := r.Read(make([]byte, 10)); err2 != err {
						t.Errorf("%s: the error is not sticky: %v then %v", tc.name, err, err2)
					}
				}
			}
		}
	}
}

func TestMismatchDetails(t *testing.T) {
	d := digest.FromString("abc")
	_, err := io.ReadAll(mustReader(t, strings.NewReader("abd"), d, 3))
	var mm *MismatchError
	if !errors.As(err, &mm) || mm.Got != digest.FromString("abd") || mm.GotSize != 3 || mm.Size != 3 {
		t.Fatalf("got %#v", err)
	}
	if !strings.Contains(err.Error(), "hashes to "+digest.FromString("abd").String()) {
		t.Errorf("message %q", err)
	}
	_, err = io.ReadAll(mustReader(t, strings.NewReader("ab"), d, 3))
	if !errors.As(err, &mm) || mm.GotSize != 2 || !strings.Contains(err.Error(), "2 bytes, 3 expected") {
		t.Errorf("short: %v", err)
	}
	_, err = io.ReadAll(mustReader(t, strings.NewReader("abcd"), d, 3))
	if !errors.As(err, &mm) || mm.GotSize != 4 || !strings.Contains(err.Error(), "more than the 3 bytes") {
		t.Errorf("extra: %v", err)
	}
	// Any size (-1): the digest decides.
	if b, err := io.ReadAll(mustReader(t, strings.NewReader("abc"), d, -1)); err != nil || string(b) != "abc" {
		t.Errorf("any size: %q %v", b, err)
	}
}

func mustReader(t *testing.T, r io.Reader, d digest.Digest, size int64, opts ...Option) *Reader {
	t.Helper()
	vr, err := NewReader(r, d, size, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return vr
}

func TestRefusedDigests(t *testing.T) {
	for _, d := range []digest.Digest{"", "md5:900150983cd24fb0d6963f7d28e17f72", "sha256:xyz"} {
		var ue *UnavailableError
		if _, err := NewReader(strings.NewReader("abc"), d, 3); !errors.As(err, &ue) {
			t.Errorf("%q: %v, want UnavailableError", d, err)
		}
		if _, err := ReadAll(strings.NewReader("abc"), d, 10); !errors.As(err, &ue) {
			t.Errorf("ReadAll %q: %v", d, err)
		}
	}
	if _, err := NewReader(strings.NewReader("abc"), digest.FromString("abc"), -1, Holdback(1)); err == nil {
		t.Error("a held-back tail of a stream of unknown size was accepted")
	}
}

func TestReaderErrors(t *testing.T) {
	boom := errors.New("boom")
	d := digest.FromString("abcdef")
	for _, h := range []int64{0, 2, 100} {
		r := mustReader(t, io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), d, 6, Holdback(h))
		out, err := io.ReadAll(r)
		if !errors.Is(err, boom) || len(out) > 3 || (h > 0 && len(out) > max(6-int(h), 0)) {
			t.Errorf("hold %d: %q %v", h, out, err)
		}
	}
	// A reader that never progresses past the end.
	r := mustReader(t, io.MultiReader(strings.NewReader("abcdef"), zeroReader{}), d, 6, Holdback(2))
	if _, err := io.ReadAll(r); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("no progress: %v", err)
	}
	// Data returned with EOF counts.
	r = mustReader(t, iotest.DataErrReader(strings.NewReader("abcdef")), d, 6)
	if b, err := io.ReadAll(r); err != nil || string(b) != "abcdef" {
		t.Errorf("data with EOF: %q %v", b, err)
	}
	if err := iotest.TestReader(mustReader(t, strings.NewReader("abcdef"), d, 6, Holdback(4)), []byte("abcdef")); err != nil {
		t.Error(err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReadAll(t *testing.T) {
	b := []byte(`{"a":1}`)
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		d := alg.FromBytes(b)
		if got, err := ReadAll(bytes.NewReader(b), d, int64(len(b))); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: %q %v", alg, got, err)
		}
		if _, err := ReadAll(bytes.NewReader(b), d, int64(len(b))-1); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s over the limit: %v", alg, err)
		}
		var mm *MismatchError
		if got, err := ReadAll(bytes.NewReader(b[1:]), d, 100); !errors.As(err, &mm) || got != nil {
			t.Errorf("%s mismatch: %q %v", alg, got, err)
		}
		if err := Check(d, b); err != nil {
			t.Error(err)
		}
		if err := Check(d, b[1:]); !errors.As(err, &mm) {
			t.Error(err)
		}
	}
	if _, err := ReadAll(iotest.ErrReader(io.ErrClosedPipe), digest.FromString(""), 10); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("read error: %v", err)
	}
}

// FuzzReader: whatever the stream, the chunking, the expected size and the
// held-back tail, the bytes released are a prefix of the stream; all of it
// is released (and io.EOF returned) iff it is the expected size and hashes
// to the digest; with a held-back tail, no more than size-hold bytes are
// released before that.
func FuzzReader(f *testing.F) {
	f.Add([]byte("hello world"), []byte("hello world"), int64(11), int64(4), []byte{3, 1, 200}, 5, false)
	f.Add([]byte("hello world"), []byte("hello worle"), int64(11), int64(4), []byte{1}, 1, false)
	f.Add([]byte(""), []byte(""), int64(0), int64(64), []byte{}, 8, true)
	f.Add([]byte("abc"), []byte("abc"), int64(3), int64(3), []byte{2}, 2, true)
	f.Add([]byte("abc"), []byte("abc"), int64(3), int64(64), []byte{1}, 1, false)
	f.Add([]byte("abcd"), []byte("abc"), int64(3), int64(2), []byte{9}, 9, false)
	f.Add([]byte("ab"), []byte("abc"), int64(3), int64(1), []byte{1, 2}, 3, true)
	f.Add(bytes.Repeat([]byte("x"), 5000), bytes.Repeat([]byte("x"), 5000), int64(5000), int64(1024), []byte{255, 17, 3}, 4096, true)
	f.Fuzz(func(t *testing.T, stream, digested []byte, size, hold int64, chunks []byte, bufLen int, sha512 bool) {
		if size < 0 || size > 1<<16 || hold < 0 || hold > 1<<16 {
			return
		}
		bufLen = 1 + abs(bufLen)%8192
		alg := digest.SHA256
		if sha512 {
			alg = digest.SHA512
		}
		dgst := alg.FromBytes(digested)
		// The fuzzing engine may hand the three byte slices over sharing
		// one array: change a copy of chunks, never stream or digested.
		chunks = bytes.Clone(chunks)
		for i := range chunks {
			if chunks[i] == 0 {
				chunks[i] = 1
			}
		}
		r, err := NewReader(&chunkReader{b: stream, sizes: chunks}, dgst, size, Holdback(hold))
		if err != nil {
			t.Fatal(err)
		}
		out, err := readSteps(t, r, bufLen, size, hold)
		if !bytes.HasPrefix(stream, out) {
			t.Fatal("released bytes are not a prefix of the stream")
		}
		match := int64(len(stream)) == size && bytes.Equal(stream, digested)
		whole := len(out) == len(stream)
		if match != (err == io.EOF) || (match && !whole) {
			t.Fatalf("match %v, released %d of %d, err %v", match, len(out), len(stream), err)
		}
		if !match {
			var mm *MismatchError
			if !errors.As(err, &mm) {
				t.Fatalf("err %v, want a mismatch", err)
			}
			if int64(len(out)) > max(size-hold, 0) {
				t.Fatalf("released %d bytes of a mismatching stream (size %d, hold %d)", len(out), size, hold)
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func BenchmarkReader(b *testing.B) {
	data := make([]byte, 64<<20)
	d := digest.FromBytes(data)
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r, _ := NewReader(bytes.NewReader(data), d, int64(len(data)), Holdback(64<<10))
		for {
			if _, err := r.Read(buf); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

// BenchmarkHashOnly is the baseline of BenchmarkReader: the hash alone.
func BenchmarkHashOnly(b *testing.B) {
	data := make([]byte, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		h := digest.SHA256.Hash()
		for off := 0; off < len(data); off += 1 << 20 {
			h.Write(data[off : off+1<<20])
		}
		_ = h.Sum(nil)
	}
}
