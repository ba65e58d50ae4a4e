package download

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/cache/inflight"
	"github.com/pullgate/pullgate/cache/verified"
)

// run downloads body as d (Fetch filled in) in a fresh group and returns
// Run's results, the spool file's content when Run succeeded, and what a
// reader of the fetch got.
func run(t *testing.T, d Download) (spooled bool, err error, spool, read []byte) {
	t.Helper()
	g, gerr := inflight.New(t.TempDir())
	if gerr != nil {
		t.Fatal(gerr)
	}
	done := make(chan struct{})
	f, _, gerr := g.Do("k", 64<<10, func(f *inflight.Fetch) {
		defer close(done)
		d.Fetch = f
		spooled, err = d.Run()
		if err == nil {
			spool, _ = os.ReadFile(f.Path())
		}
		f.Finish(err)
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	defer f.Release()
	ctx := context.Background()
	if size, werr := f.Wait(ctx); werr == nil {
		var b bytes.Buffer
		_, _ = f.CopyTo(ctx, &b, 0, size)
		read = b.Bytes()
	}
	<-done
	return spooled, err, spool, read
}

func blob(n int) ([]byte, digest.Digest) {
	b := make([]byte, n)
	rand.Read(b)
	return b, digest.FromBytes(b)
}

func TestRun(t *testing.T) {
	for _, n := range []int{0, 1, 64 << 10, 3<<20 + 17} {
		data, dgst := blob(n)
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(data)
			if chunked {
				body = iotest.HalfReader(body)
			}
			spooled, err, spool, read := run(t, Download{Body: body, Size: int64(n), Digest: dgst})
			if err != nil || !spooled || !bytes.Equal(spool, data) || !bytes.Equal(read, data) {
				t.Fatalf("%d bytes: spooled %v, err %v, spool %d, read %d", n, spooled, err, len(spool), len(read))
			}
		}
	}
}

func TestRunSHA512(t *testing.T) {
	data, _ := blob(1 << 20)
	dgst := digest.SHA512.FromBytes(data)
	if _, err, spool, _ := run(t, Download{Body: bytes.NewReader(data), Size: int64(len(data)), Digest: dgst}); err != nil || !bytes.Equal(spool, data) {
		t.Fatalf("sha512: %v", err)
	}
}

func TestRunMismatch(t *testing.T) {
	data, dgst := blob(2 << 20)
	other := bytes.Clone(data)
	other[len(other)-1] ^= 1
	for _, tc := range []struct {
		name    string
		body    []byte
		size    int64
		gotSize int64
		got     bool // Got is set
	}{
		{"other-bytes", other, int64(len(data)), int64(len(data)), true},
		{"more", append(bytes.Clone(data), 'x'), int64(len(data)), int64(len(data)) + 1, false},
		{"fewer", data[:len(data)-1], int64(len(data)), int64(len(data)) - 1, true},
	} {
		_, err, _, read := run(t, Download{Body: bytes.NewReader(tc.body), Size: tc.size, Digest: dgst})
		var mm *verified.MismatchError
		if !errors.As(err, &mm) || mm.GotSize != tc.gotSize || mm.Size != tc.size || (mm.Got != "") != tc.got {
			t.Errorf("%s: %#v", tc.name, err)
		}
		if int64(len(read)) >= tc.size {
			t.Errorf("%s: a reader got %d bytes of a blob that does not match", tc.name, len(read))
		}
	}
}

func TestRunSpoolError(t *testing.T) {
	data, dgst := blob(3 << 20)
	writes := 0
	enospc := &os.PathError{Op: "write", Path: "spool", Err: syscall.ENOSPC}
	_, err, _, _ := run(t, Download{Body: iotest.HalfReader(bytes.NewReader(data)), Size: int64(len(data)), Digest: dgst,
		SpoolWrite: func(f *inflight.Fetch, p []byte) (int, error) {
			if writes++; writes == 3 {
				return 0, enospc
			}
			return f.Write(p)
		}})
	var se *SpoolError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOSPC) || se.Spooled <= 0 || se.Spooled >= int64(len(data)) {
		t.Fatalf("%#v", err)
	}
}

func TestRunReadErrorAndStall(t *testing.T) {
	data, dgst := blob(1 << 20)
	boom := errors.New("connection reset")
	_, err, _, _ := run(t, Download{Body: io.MultiReader(bytes.NewReader(data[:1000]), iotest.ErrReader(boom)), Size: int64(len(data)), Digest: dgst})
	var re *ReadError
	if !errors.As(err, &re) || !errors.Is(err, boom) || re.Received != 1000 || re.Stalled {
		t.Fatalf("%#v", err)
	}

	// A body that sends nothing: the stall reader cancels it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	body := NewStallReader(io.MultiReader(bytes.NewReader(data[:10]), pr), 50*time.Millisecond, cancel)
	defer body.Stop()
	_, err, _, _ = run(t, Download{Body: body, Size: int64(len(data)), Digest: dgst})
	if !errors.As(err, &re) || !re.Stalled || re.Received != 10 {
		t.Fatalf("stall: %#v", err)
	}
}

// inspector fails at a given offset, or accepts the header after one.
type inspector struct {
	n, failAt, headerAt int64
	writes              int
}

var errFinding = errors.New("finding")

func (in *inspector) Write(p []byte) (int, error) {
	in.writes++
	in.n += int64(len(p))
	if in.failAt >= 0 && in.n > in.failAt {
		return 0, errFinding
	}
	return len(p), nil
}

func (in *inspector) HeaderDone() bool { return in.n >= in.headerAt }

func TestRunInspection(t *testing.T) {
	data, dgst := blob(3 << 20)
	// Accepted: readers start once the header is done and get everything.
	in := &inspector{failAt: -1, headerAt: 100}
	_, err, spool, read := run(t, Download{Body: iotest.HalfReader(bytes.NewReader(data)), Size: int64(len(data)), Digest: dgst, Inspector: in})
	if err != nil || !bytes.Equal(spool, data) || !bytes.Equal(read, data) || in.n != int64(len(data)) {
		t.Fatalf("accepted: %v, inspected %d", err, in.n)
	}
	// A finding is returned (converted) once the stream hashed to the
	// digest; readers get nothing complete.
	var converted int
	finding := func(err error) error { converted++; return &wrapped{err} }
	in = &inspector{failAt: 1 << 20}
	_, err, _, read = run(t, Download{Body: bytes.NewReader(data), Size: int64(len(data)), Digest: dgst, Inspector: in, Finding: finding})
	var w *wrapped
	if !errors.As(err, &w) || !errors.Is(err, errFinding) || converted != 1 || len(read) >= len(data) {
		t.Fatalf("finding: %#v converted %d read %d", err, converted, len(read))
	}
	// Other bytes with a finding: the mismatch wins (the blob is not
	// judged on bytes that are not its own).
	other := bytes.Clone(data)
	other[0] ^= 1
	_, err, _, _ = run(t, Download{Body: bytes.NewReader(other), Size: int64(len(data)), Digest: dgst, Inspector: &inspector{failAt: 10}, Finding: finding})
	var mm *verified.MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("mismatch with a finding: %#v", err)
	}
}

// TestRunReadersSeeTheMismatch: other bytes than the digest names, with a
// finding in the first read that the check reports before the rest
// arrives: the readers of the fetch learn the mismatch, not a finding
// about bytes that are not the blob's (the fetch ends when the stream
// hashed, not at the finding).
func TestRunReadersSeeTheMismatch(t *testing.T) {
	data, dgst := blob(1 << 20)
	other := bytes.Clone(data)
	other[len(other)-1] ^= 1
	g, err := inflight.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := &signalingInspector{failed: make(chan struct{})}
	// The rest of the body comes only once the inspector failed on the
	// first part: the finding is known while the stream goes on.
	body := io.MultiReader(bytes.NewReader(other[:64<<10]), &afterReader{wait: in.failed, r: bytes.NewReader(other[64<<10:])})
	f, _, err := g.Do("k", 64<<10, func(f *inflight.Fetch) {
		_, err := (&Download{Body: body, Size: int64(len(data)), Digest: dgst, Inspector: in, Fetch: f,
			Finding: func(err error) error { return &wrapped{err} }}).Run()
		f.Finish(err)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	seen := f.Verified(context.Background())
	var mm *verified.MismatchError
	if !errors.As(seen, &mm) || errors.Is(seen, errFinding) {
		t.Fatalf("readers saw %v, want the digest mismatch", seen)
	}
}

// signalingInspector fails on its first write and says so.
type signalingInspector struct {
	failed chan struct{}
	once   sync.Once
}

func (in *signalingInspector) Write(p []byte) (int, error) {
	in.once.Do(func() { close(in.failed) })
	return 0, errFinding
}
func (in *signalingInspector) HeaderDone() bool { return false }
func (in *signalingInspector) Close() error     { return nil }

// afterReader reads r once wait is closed.
type afterReader struct {
	wait <-chan struct{}
	r    io.Reader
}

func (a *afterReader) Read(p []byte) (int, error) {
	<-a.wait
	return a.r.Read(p)
}

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "content: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

func TestRunRefusesUnavailableDigest(t *testing.T) {
	_, err, _, _ := run(t, Download{Body: bytes.NewReader(nil), Size: 0, Digest: "md5:d41d8cd98f00b204e9800998ecf8427e"})
	var ue *verified.UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("%#v", err)
	}
}
