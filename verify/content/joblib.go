package content

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"math"
	"runtime"
	"sync"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// FormatJoblib is the format of joblib dumps (joblib.dump, e.g. scikit-learn
// models): a pickle in which every numpy array is replaced by a
// joblib.numpy_pickle.NumpyArrayWrapper followed, in the stream, by the
// array's bytes; the whole file optionally compressed.
const FormatJoblib = "joblib"

// The layout, as joblib writes and reads it (joblib/numpy_pickle.py and
// numpy_pickle_utils.py at joblib 53cea7b, 2026; unchanged in substance
// since joblib 0.10):
//
//   - NumpyPickler.save pickles a NumpyArrayWrapper instead of each
//     ndarray/matrix/memmap: NEWOBJ of the class with () and a BUILD with the
//     state dict {subclass, shape, order, dtype, allow_mmap,
//     numpy_array_alignment_bytes}; for protocol >= 4 it commits the frame
//     right after that BUILD, then wrapper.write_array writes the array.
//   - write_array: for an object dtype, a complete nested pickle of the
//     array (pickle.dump(array, protocol=5; protocol 2 in older joblib));
//     otherwise, when numpy_array_alignment_bytes is not None (joblib >=
//     1.2 writing to a seekable file), one byte holding a padding length
//     (1..16) and that many 0xff bytes, then the raw items in the wrapper's
//     order (count * dtype.itemsize bytes).
//   - NumpyUnpickler.load_build runs the normal BUILD, then, if the object
//     built is a NumpyArrayWrapper, reads the array from the file (read_array:
//     the padding byte is read whenever numpy_array_alignment_bytes is not
//     None, whatever its value; the nested pickle with a fresh Unpickler) and
//     replaces the wrapper on the stack by the array.
//   - _detect_compressor picks the decompressor from the first bytes: "ZF"
//     (joblib < 0.9.3), 0x78 zlib, 1f 8b gzip, "BZ" bz2, 5d 00 lzma,
//     fd 37 7a 58 5a xz, 04 22 4d 18 lz4; anything else is read as is.
//
// The joblib inspector walks the outer pickle with the allowlist plus
// NumpyArrayWrapper (and numpy.memmap / numpy.matrix as wrapper
// subclasses), computes each array's byte count from the wrapper's dtype
// and shape exactly as numpy does (the dtype's state is validated, so its
// itemsize cannot be forged), skips the raw bytes without buffering them,
// walks nested object-array pickles with the allowlist, and decompresses
// zlib, gzip, bz2, xz and lzma inline (xz and lzma with
// github.com/ulikunitz/xz). lz4 is refused: no decoder is linked in.

// wrapRec holds the attributes BUILDs set on one NumpyArrayWrapper (a later
// BUILD updates the same __dict__).
type wrapRec struct {
	attrs []pval // key, value pairs
}

// arrayBlock is what follows a built wrapper.
type arrayBlock struct {
	size   int64 // raw item bytes
	padded bool  // a padding-length byte and padding come first
	object bool  // a nested pickle instead of raw bytes
}

const maxWrappers = 1 << 20

func (w *pickleWalker) newWrapper(off int64, cls pval) (pval, error) {
	if len(w.wrappers) >= maxWrappers {
		return pval{}, w.errAt(off, "more than %d joblib array wrappers", maxWrappers)
	}
	w.wrappers = append(w.wrappers, wrapRec{})
	return pval{kind: vObj, ref: cls.ref, n: int64(len(w.wrappers) - 1)}, nil
}

func (w *pickleWalker) wrapAttr(r *wrapRec, k string) (pval, bool) {
	for j := len(r.attrs) - 2; j >= 0; j -= 2 {
		if w.isStr(r.attrs[j], k) {
			return r.attrs[j+1], true
		}
	}
	return pval{}, false
}

// buildWrapper applies a BUILD to a NumpyArrayWrapper and announces the
// array that joblib then reads.
func (w *pickleWalker) buildWrapper(off int64, inst, state pval) (pval, bool, error) {
	if !w.joblib || inst.n < 0 {
		return pval{}, false, w.errAt(off, "BUILD sets the state of a joblib array wrapper outside a joblib file")
	}
	if state.kind != vDict || state.ref < 0 || w.dicts[state.ref].over {
		return pval{}, false, w.errAt(off, "BUILD sets the state of a joblib array wrapper from %s, not a dict of its attributes", w.describe(state))
	}
	r := &w.wrappers[inst.n]
	kv := w.dicts[state.ref].items
	for j := 0; j < len(kv); j += 2 {
		if kv[j].kind != vStr {
			return pval{}, false, w.errAt(off, "joblib array wrapper state with a key that is %s, not a str", w.describe(kv[j]))
		}
	}
	if len(r.attrs)+len(kv) > 2*maxEntriesInOne {
		return pval{}, false, w.errAt(off, "joblib array wrapper with more than %d attributes", maxEntriesInOne)
	}
	r.attrs = append(r.attrs, kv...)
	bad := func(why string, args ...any) (pval, bool, error) {
		return pval{}, false, w.errAt(off, "joblib array wrapper "+why, args...)
	}
	sub, ok := w.wrapAttr(r, "subclass")
	if !ok || sub.kind != vGlobal || (w.entry(sub).tag != tagNdarray && w.entry(sub).tag != tagMemmap && w.entry(sub).tag != tagMatrix) {
		return bad("whose subclass is %s, not numpy.ndarray, numpy.memmap or numpy.matrix", w.describeAttr(sub, ok))
	}
	shape, ok := w.wrapAttr(r, "shape")
	count, countOK := w.shapeCount(shape, false)
	if !ok || !countOK {
		return bad("whose shape is %s, not a tuple of non-negative ints (with a product that fits 64 bits)", w.describeAttr(shape, ok))
	}
	dt, ok := w.wrapAttr(r, "dtype")
	if !ok || !w.isDtype(dt) {
		return bad("whose dtype is %s, not a numpy.dtype", w.describeAttr(dt, ok))
	}
	order, ok := w.wrapAttr(r, "order")
	if !ok || !(w.isStr(order, "C") || w.isStr(order, "F")) {
		return bad(`whose order is %s, not "C" or "F"`, w.describeAttr(order, ok))
	}
	if mm, ok := w.wrapAttr(r, "allow_mmap"); !ok || mm.kind != vBool {
		return bad("whose allow_mmap is %s, not a bool", w.describeAttr(mm, ok))
	}
	blk := arrayBlock{object: dtypeKind(dt) == 'O'}
	if al, ok := w.wrapAttr(r, "numpy_array_alignment_bytes"); ok && al.kind != vNone {
		if al.kind != vInt || al.n <= 0 {
			return bad("whose numpy_array_alignment_bytes is %s, not None or a positive int", w.describe(al))
		}
		blk.padded = !blk.object
	}
	if !blk.object {
		es := dtypeItemsize(dt)
		if count > math.MaxInt64/es {
			return bad("of %d items of %d bytes overflows", count, es)
		}
		blk.size = count * es
	}
	w.block = blk
	return pval{kind: vObj, ref: sub.ref, n: -1}, true, nil
}

func (w *pickleWalker) describeAttr(v pval, ok bool) string {
	if !ok {
		return "missing"
	}
	return w.describe(v)
}

// isPickleOpcode reports whether c starts an opcode.
func isPickleOpcode(c byte) bool {
	_, ok := opNames[c]
	return ok
}

// startArray begins reading the array a wrapper announced.
func (p *PickleInspector) startArray() error {
	blk := p.w.block
	if blk.object {
		n := newPickleWalkerWith(p.opts, p.w.format, pickleAllowFor(p.opts, false), false)
		n.ops = p.w.ops
		p.nested = n
		return nil
	}
	p.padPending = blk.padded
	p.rawLeft = blk.size
	return nil
}

// arrayBytes consumes raw array bytes (and the padding before them).
func (p *PickleInspector) arrayBytes(b []byte, off int64) (int, error) {
	k := 0
	if p.padPending {
		pad := b[0]
		// joblib writes 1..16; any byte that is not an opcode makes a
		// loader other than joblib stop here instead of running the array
		// bytes as opcodes.
		if isPickleOpcode(pad) {
			return 0, p.fail(off, "joblib padding length %d is a pickle opcode (joblib writes 1 to 16): a plain pickle loader would run the array bytes", pad)
		}
		p.padPending = false
		p.rawLeft += int64(pad)
		k = 1
	}
	s := min(p.rawLeft, int64(len(b)-k))
	p.rawLeft -= s
	return k + int(s), nil
}

// ---- joblib files ------------------------------------------------------------

// JoblibInspector validates a joblib dump, compressed or not. Its verdict
// is final at Close (HeaderDone before that is false): like any pickle, a
// partly delivered joblib file can already be dangerous.
type JoblibInspector struct {
	opts  Options
	size  int64
	seen  int64
	head  []byte
	inner Inspector
	dec   *joblibDecoder
	err   error
	done  bool
}

// NewJoblibInspector returns the inspector for a joblib file of the given
// size (-1 if unknown). The pickle is walked whatever opts.Pickle.Mode
// says; the caller applies the mode (a joblib file is pickle content).
func NewJoblibInspector(opts Options, size int64) Inspector {
	return &JoblibInspector{opts: opts, size: size}
}

func newJoblibPickle(opts Options, size int64) *PickleInspector {
	w := newPickleWalkerWith(opts, FormatJoblib, pickleAllowFor(opts, true), true)
	w.presize(size)
	return &PickleInspector{w: w, opts: opts, size: size}
}

func (j *JoblibInspector) Format() string { return FormatJoblib }

// HeaderDone is true once Close accepted the file.
func (j *JoblibInspector) HeaderDone() bool { return j.done }

// Globals lists the imports the pickles make.
func (j *JoblibInspector) Globals() []string {
	switch in := j.inner.(type) {
	case *PickleInspector:
		return in.Globals()
	}
	if j.dec != nil {
		j.dec.mu.Lock()
		defer j.dec.mu.Unlock()
		return j.dec.globals
	}
	return nil
}

func (j *JoblibInspector) fail(off int64, reason string, args ...any) error {
	j.err = newFinding(FormatJoblib, off, reason, args...)
	return j.err
}

// joblibPrefixLen is the longest compressor magic joblib looks for.
const joblibPrefixLen = 5

func (j *JoblibInspector) Write(p []byte) (int, error) {
	if j.err != nil {
		return 0, j.err
	}
	n := len(p)
	j.seen += int64(n)
	if j.size >= 0 && j.seen > j.size {
		err := j.fail(j.size, "more bytes than the declared size %d", j.size)
		if j.dec != nil {
			j.dec.abort(err)
		}
		return 0, err
	}
	if j.inner == nil {
		j.head = append(j.head, p...)
		if len(j.head) < joblibPrefixLen && (j.size < 0 || j.seen < j.size) {
			return n, nil
		}
		if err := j.start(); err != nil {
			return 0, err
		}
		p, j.head = j.head, nil
	}
	if _, err := j.inner.Write(p); err != nil {
		j.err = err
		return 0, err
	}
	return n, nil
}

// start picks the reader from the first bytes, as joblib's
// _detect_compressor does.
func (j *JoblibInspector) start() error {
	h := j.head
	switch {
	case bytes.HasPrefix(h, []byte("ZF")):
		return j.fail(0, "joblib file from joblib < 0.9.3 (ZF header) keeps its arrays in companion files; it cannot be inspected")
	case len(h) > 0 && h[0] == 0x78:
		j.dec = newJoblibDecoder(j.opts, j.size, "zlib")
	case bytes.HasPrefix(h, []byte{0x1f, 0x8b}):
		j.dec = newJoblibDecoder(j.opts, j.size, "gzip")
	case bytes.HasPrefix(h, []byte("BZ")):
		j.dec = newJoblibDecoder(j.opts, j.size, "bz2")
	case bytes.HasPrefix(h, []byte{0x5d, 0x00}):
		j.dec = newJoblibDecoder(j.opts, j.size, "lzma")
	case bytes.HasPrefix(h, []byte{0xfd, '7', 'z', 'X', 'Z'}):
		j.dec = newJoblibDecoder(j.opts, j.size, "xz")
	case bytes.HasPrefix(h, []byte{0x04, 0x22, 0x4d, 0x18}):
		return j.fail(0, "joblib file compressed with lz4: no lz4 decoder is available, so its pickle cannot be walked; dump it with compress=('gzip', 3), 'zlib' or 'bz2'")
	default:
		j.inner = newJoblibPickle(j.opts, j.size)
		return nil
	}
	// stop the decompressing goroutine if the inspector is abandoned
	runtime.AddCleanup(j, func(pw *io.PipeWriter) { pw.CloseWithError(errors.New("inspector abandoned")) }, j.dec.pw)
	j.inner = j.dec
	return nil
}

func (j *JoblibInspector) Close() error {
	if j.err != nil {
		return j.err
	}
	if j.inner == nil {
		if j.size >= 0 && j.seen != j.size {
			return j.fail(j.seen, "truncated: %d of %d bytes", j.seen, j.size)
		}
		if err := j.start(); err != nil {
			return err
		}
		if _, err := j.inner.Write(j.head); err != nil {
			j.err = err
			return err
		}
		j.head = nil
	}
	if j.size >= 0 && j.seen != j.size {
		err := j.fail(j.seen, "truncated: %d of %d bytes", j.seen, j.size)
		if j.dec != nil {
			j.dec.abort(err)
		}
		return err
	}
	if err := j.inner.Close(); err != nil {
		j.err = err
		return err
	}
	j.done = true
	return nil
}

// joblibDecoder decompresses a joblib file as it arrives (in a goroutine
// fed by a pipe, since the Go decompressors pull their input) and walks the
// result with a joblib PickleInspector. Nothing may follow the compressed
// stream. Its findings carry offset -1 (they refer to decompressed bytes).
type joblibDecoder struct {
	kind    string
	pw      *io.PipeWriter
	done    chan error
	mu      sync.Mutex
	in      int64 // compressed bytes written
	out     int64
	size    int64
	err     error
	closed  bool
	pick    *PickleInspector
	globals []string
}

// joblib arrays of zeros compress well; beyond 64 MiB of output, more than
// 1024x the compressed size is taken as a decompression bomb (zlib and gzip
// cannot exceed ~1032x; bzip2 reaches millions, and decompressing costs CPU
// even though the walker buffers nothing).
const (
	maxJoblibRatio   = 1024
	joblibRatioAfter = 64 << 20
)

func newJoblibDecoder(opts Options, size int64, kind string) *joblibDecoder {
	pr, pw := io.Pipe()
	d := &joblibDecoder{kind: kind, pw: pw, done: make(chan error, 1), size: size, pick: newJoblibPickle(opts, -1)}
	go d.run(pr)
	return d
}

func (d *joblibDecoder) run(pr *io.PipeReader) {
	err := d.decompress(pr)
	if err != nil {
		pr.CloseWithError(err)
	} else {
		pr.Close()
	}
	d.mu.Lock()
	d.globals = d.pick.Globals()
	d.mu.Unlock()
	d.done <- err
}

func (d *joblibDecoder) finding(reason string, args ...any) error {
	return newFinding(FormatJoblib, -1, reason, args...)
}

func (d *joblibDecoder) decompress(pr *io.PipeReader) error {
	br := bufio.NewReader(pr) // the decompressors read through it (io.ByteReader), so it shows what follows the stream
	var zr io.Reader
	switch d.kind {
	case "zlib":
		r, err := zlib.NewReader(br)
		if err != nil {
			return d.finding("not a valid zlib stream: %v", err)
		}
		zr = r
	case "gzip":
		r, err := gzip.NewReader(br)
		if err != nil {
			return d.finding("not a valid gzip stream: %v", err)
		}
		r.Multistream(false)
		zr = r
	case "xz":
		// Python's LZMAFile (FORMAT_XZ) reads concatenated streams, as
		// xz.Reader does by default.
		r, err := xz.NewReader(br)
		if err != nil {
			return d.finding("not a valid xz stream: %v", err)
		}
		zr = r
	case "lzma":
		r, err := lzma.NewReader(br)
		if err != nil {
			return d.finding("not a valid lzma stream: %v", err)
		}
		zr = r
	default:
		zr = bzip2.NewReader(br)
	}
	buf := make([]byte, 256<<10)
	for {
		n, rerr := zr.Read(buf)
		if n > 0 {
			d.mu.Lock()
			d.out += int64(n)
			out, in := d.out, d.in
			d.mu.Unlock()
			if d.size >= 0 {
				in = d.size // decide from the blob size, not from how far it has arrived
			}
			if out > joblibRatioAfter && out > maxJoblibRatio*in {
				return d.finding("%s stream expands more than %dx beyond %d MiB (decompression bomb)", d.kind, maxJoblibRatio, joblibRatioAfter>>20)
			}
			if _, err := d.pick.Write(buf[:n]); err != nil {
				return decompressedFinding(err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return d.finding("corrupt %s stream: %v", d.kind, rerr)
		}
	}
	if d.kind != "bz2" && d.kind != "xz" { // these readers take concatenated streams themselves, as Python's BZ2File and LZMAFile do
		if _, err := br.ReadByte(); err == nil {
			return d.finding("data after the end of the %s stream", d.kind)
		}
	}
	return decompressedFinding(d.pick.Close())
}

func (d *joblibDecoder) HeaderDone() bool { return false }

func (d *joblibDecoder) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	d.mu.Lock()
	d.in += int64(len(p))
	d.mu.Unlock()
	if _, err := d.pw.Write(p); err != nil {
		d.err, d.closed = <-d.done, true
		if d.err == nil {
			d.err = err
		}
		return 0, d.err
	}
	return len(p), nil
}

func (d *joblibDecoder) Close() error {
	if d.err != nil || d.closed {
		return d.err
	}
	d.pw.Close()
	d.err, d.closed = <-d.done, true
	return d.err
}

// abort stops the goroutine after a finding outside the stream.
func (d *joblibDecoder) abort(err error) {
	if d.closed {
		return
	}
	d.pw.CloseWithError(err)
	<-d.done
	d.err, d.closed = err, true
}
