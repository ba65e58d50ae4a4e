package content

import (
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"runtime"
	"sync"
)

// maxGzipRatio bounds decompression: beyond 64 MiB of output, a gzip layer
// may not expand more than this factor over the compressed bytes seen.
// Model weights compress ~1.1-1.5x and text ~10x; bombs reach 1000x.
const maxGzipRatio = 100

// GzipTarInspector validates a tar+gzip layer (KitOps, ORAS directories,
// ModelPack tar+gzip): the gzip stream is decompressed as it arrives (in a
// goroutine fed by a pipe, since compress/gzip pulls its input) and the tar
// inside is validated by TarInspector. Exactly one gzip member is accepted,
// with nothing after it. The verdict is final at Close.
type GzipTarInspector struct {
	g *gzipTarState
}

type gzipTarState struct {
	pw     *io.PipeWriter
	done   chan error
	mu     sync.Mutex
	in     int64 // compressed bytes written
	out    int64 // decompressed bytes
	size   int64
	err    error
	closed bool
	tar    *TarInspector
}

// NewGzipTarInspector returns the inspector. If the caller abandons it
// without Close, a cleanup stops the decompressing goroutine once the
// inspector is unreachable.
func NewGzipTarInspector(opts Options, size int64) *GzipTarInspector {
	pr, pw := io.Pipe()
	st := &gzipTarState{pw: pw, done: make(chan error, 1), size: size, tar: NewTarInspector(opts, -1)}
	go st.run(pr)
	gi := &GzipTarInspector{g: st}
	runtime.AddCleanup(gi, func(pw *io.PipeWriter) { pw.CloseWithError(errors.New("inspector abandoned")) }, pw)
	return gi
}

func (st *gzipTarState) run(pr *io.PipeReader) {
	err := st.decompress(pr)
	if err != nil {
		pr.CloseWithError(err)
	} else {
		pr.Close()
	}
	st.done <- err
}

func (st *gzipTarState) decompress(pr *io.PipeReader) error {
	br := bufio.NewReader(pr) // gzip reads through it, so its buffer shows what follows the member
	zr, err := gzip.NewReader(br)
	if err != nil {
		return st.finding("not a valid gzip stream: %v", err)
	}
	zr.Multistream(false)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := zr.Read(buf)
		if n > 0 {
			st.mu.Lock()
			st.out += int64(n)
			out, in := st.out, st.in
			st.mu.Unlock()
			// With a known blob size the decision does not depend on
			// how far the compressed stream has arrived.
			if st.size >= 0 {
				in = st.size
			}
			if out > 64<<20 && out > maxGzipRatio*in {
				return st.finding("gzip layer expands more than %dx beyond 64 MiB (decompression bomb)", maxGzipRatio)
			}
			if _, err := st.tar.Write(buf[:n]); err != nil {
				return decompressedFinding(err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return st.finding("corrupt gzip stream: %v", rerr)
		}
	}
	// nothing may follow the gzip member (no second member, no appended data)
	if _, err := br.ReadByte(); err == nil {
		return st.finding("data after the end of the gzip stream")
	}
	return decompressedFinding(st.tar.Close())
}

// decompressedFinding drops offsets that refer to the decompressed stream
// (they would be misread as blob offsets).
func decompressedFinding(err error) error {
	var f *Finding
	if errors.As(err, &f) {
		return &Finding{Format: f.Format, Offset: -1, Reason: f.Reason}
	}
	return err
}

func (st *gzipTarState) finding(reason string, args ...any) error {
	return newFinding(FormatGzip, -1, reason, args...)
}

func (g *GzipTarInspector) Format() string { return FormatGzip }

// References lists the load-time references of the configs inside the
// archive, once Close accepted it.
func (g *GzipTarInspector) References() []Reference {
	if !g.HeaderDone() {
		return nil
	}
	return g.g.tar.References()
}

// HeaderDone is true only after Close accepted the layer.
func (g *GzipTarInspector) HeaderDone() bool {
	st := g.g
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.closed && st.err == nil
}

func (g *GzipTarInspector) Write(p []byte) (int, error) {
	st := g.g
	if st.err != nil {
		return 0, st.err
	}
	if st.size >= 0 && st.in+int64(len(p)) > st.size {
		st.err = newFinding(FormatGzip, st.size, "more bytes than the declared size %d", st.size)
		st.pw.CloseWithError(st.err)
		<-st.done
		return 0, st.err
	}
	st.mu.Lock()
	st.in += int64(len(p))
	st.mu.Unlock()
	if _, err := st.pw.Write(p); err != nil {
		st.err = <-st.done
		if st.err == nil {
			st.err = err
		}
		return 0, st.err
	}
	return len(p), nil
}

func (g *GzipTarInspector) Close() error {
	st := g.g
	if st.err != nil {
		return st.err
	}
	if st.size >= 0 && st.in != st.size {
		st.err = newFinding(FormatGzip, st.in, "truncated: %d of %d bytes", st.in, st.size)
		st.pw.CloseWithError(st.err)
		<-st.done
		return st.err
	}
	st.pw.Close()
	err := <-st.done
	st.mu.Lock()
	st.err, st.closed = err, true
	st.mu.Unlock()
	return err
}
