package content

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sort"
)

// FormatHDF5 is an HDF5 file: legacy Keras models (.h5, tf.keras
// model.save), Keras weights files (model.weights.h5 inside a .keras
// archive), any h5py-written weights.
const FormatHDF5 = "hdf5"

var magicHDF5 = []byte("\x89HDF\r\n\x1a\n")

// Bounds of the HDF5 reader. It holds at most one object header chunk of
// the root group (hdf5MaxChunk), the global heap collections that may hold
// a root attribute's variable-length string (hdf5SpecBudget for
// collections not yet known to be needed, hdf5MaxCollection for each of at
// most two that are, each held at its size), the two configuration values
// (slices of their collections; a fixed-length string is copied out of
// its header chunk, at most hdf5MaxChunk), the superblock and a zip
// end-record tail (2*maxEOCDTail): below 4 + 16 + 2*8 + 2*4 + 1 = 45 MiB,
// plus the parse of one Keras configuration at a time (the collections
// are dropped first; kerasMaxValues bounds it: TestHeldConfigPeakMemory
// measures the whole), whatever the file size. Dataset raw data and every
// other object are counted, never held.
const (
	hdf5MaxChunk      = 4 << 20
	hdf5MaxChunks     = 1024    // root object header chunks
	hdf5MaxMessages   = 1 << 16 // root object header messages
	hdf5MaxCollection = 8 << 20 // one global heap collection
	hdf5SpecBudget    = 16 << 20
	hdf5MaxCandidates = 4096 // "GCOL" signatures remembered
)

// The root attributes Keras reads (legacy HDF5 format,
// keras.src.legacy.saving.legacy_h5_format / tf.keras hdf5_format).
var hdf5KerasAttrs = map[string]bool{"model_config": true, "training_config": true}

// HDF5Inspector reads an HDF5 file in one forward pass: the superblock,
// the root group's object header (every chunk, wherever the continuation
// messages put it later in the file) and the global heap collections that
// hold its variable-length string attributes. The model_config and
// training_config root attributes, the only configuration Keras's legacy
// loader deserialises, are handed to the Keras configuration check.
//
// It is strict: only a superblock at offset 0 (no userblock, which can
// carry a second format), base address 0, no superblock extension or
// driver block, an end-of-file address equal to the blob size, checksums of
// version 2 structures verified, every structure inside the file. A
// structure the root header needs that lies before the bytes already
// streamed (a continuation pointing backwards: cycles included) is refused,
// except global heap collections, which are retained as they pass
// (signature-led, bounded) because libhdf5 writes them before the
// continuation chunks that refer to them. Dense attribute storage (fractal
// heap, libver "latest" with more than 8 attributes or one above 64 KiB)
// and shared attribute messages are not read and are refused.
//
// HeaderDone is true once the root object header and the strings it refers
// to were read and checked: right after the header for h5py's usual layout
// (metadata first), at the end when a continuation chunk lies there.
type HDF5Inspector struct {
	opts Options
	size int64
	pos  int64
	err  error

	sbDone           bool
	offSize, lenSize int
	eof              int64

	needs   []*h5need
	chunks  int
	msgs    int
	v1Decl  int // messages a version 1 header declares
	v1Seen  int
	rootV1  bool
	seenCfg map[string]bool
	values  map[string][]byte // Keras configuration attributes read
	refs    []*h5ref
	done    bool

	// global heap collections ("GCOL"), retained as they stream past
	carry    []byte
	carryAt  int64
	cands    map[int64]*h5gcol
	active   []*h5gcol
	specUsed int64

	tail []byte
}

// h5need is a structure to collect when the stream reaches addr.
type h5need struct {
	addr  int64
	want  int
	buf   []byte
	parse func(b []byte) (more int, err error) // more > len(b): collect more
}

// h5ref is a root attribute whose value is a variable-length string in a
// global heap collection.
type h5ref struct {
	name   string
	coll   int64
	index  uint32
	seqLen uint32
}

type h5gcol struct {
	addr    int64
	want    int
	buf     []byte
	sized   bool // want is the collection size
	full    bool
	dropped string // why it was not retained
}

// NewHDF5Inspector returns the HDF5 validator for a blob of the given size
// (-1 if unknown).
func NewHDF5Inspector(opts Options, size int64) *HDF5Inspector {
	h := &HDF5Inspector{opts: opts, size: size, eof: -1, seenCfg: map[string]bool{}, values: map[string][]byte{}, cands: map[int64]*h5gcol{}}
	h.needs = []*h5need{{addr: 0, want: 9, parse: h.superblock}}
	return h
}

func (h *HDF5Inspector) HeaderDone() bool { return h.err == nil && h.done }

func (h *HDF5Inspector) fail(off int64, reason string, args ...any) error {
	h.err = newFinding(FormatHDF5, off, reason, args...)
	return h.err
}

func (h *HDF5Inspector) Write(p []byte) (int, error) {
	if h.err != nil {
		return 0, h.err
	}
	n := len(p)
	// The stream is cut where the next structure is complete (or a
	// referenced collection decided), so that collections are retained,
	// structures parsed and references resolved in stream order however
	// the bytes arrive: findings do not depend on chunking.
	for len(p) > 0 {
		seg := len(p)
		if end := h.nextEvent(); end-h.pos < int64(seg) {
			seg = int(end - h.pos)
		}
		if err := h.segment(p[:seg]); err != nil {
			h.err = err
			return 0, err
		}
		p = p[seg:]
	}
	return n, nil
}

// nextEvent returns the next offset after pos where a structure is
// complete or a referenced collection is found, sized or complete (or
// found missing).
func (h *HDF5Inspector) nextEvent() int64 {
	next := int64(1<<63 - 1)
	at := func(e int64) {
		if e > h.pos && e < next {
			next = e
		}
	}
	if len(h.needs) > 0 {
		at(h.needs[0].addr + int64(h.needs[0].want))
	}
	at(h.eof)
	at(h.size)
	for _, r := range h.refs {
		at(r.coll + 4)
		at(r.coll + 8 + int64(h.lenSize))
		if c := h.cands[r.coll]; c != nil && c.sized {
			at(c.addr + int64(c.want))
		}
	}
	return next
}

func (h *HDF5Inspector) segment(p []byte) error {
	start := h.pos
	h.pos += int64(len(p))
	if h.size >= 0 && h.pos > h.size {
		return newFinding(FormatHDF5, h.size, "more bytes than the declared size %d", h.size)
	}
	if h.eof >= 0 && h.pos > h.eof {
		return newFinding(FormatHDF5, h.eof, "%s", trailingReason(h.size, h.eof, "the HDF5 end-of-file address"))
	}
	if !h.done {
		h.scan(p, start)
	}
	for len(h.needs) > 0 {
		n := h.needs[0]
		next := n.addr + int64(len(n.buf))
		if next >= h.pos {
			break
		}
		end := min(n.addr+int64(n.want), h.pos)
		n.buf = append(n.buf, p[next-start:end-start]...)
		if len(n.buf) < n.want {
			break
		}
		more, err := n.parse(n.buf)
		if err != nil {
			return err
		}
		if more > n.want {
			n.want = more
			continue
		}
		h.needs = h.needs[1:]
	}
	if !h.done {
		if err := h.resolve(false); err != nil {
			return err
		}
		if err := h.checkDone(); err != nil {
			return err
		}
	}
	// the last maxEOCDTail bytes (at most twice that held), for Close
	if len(p) >= maxEOCDTail {
		h.tail = append(h.tail[:0], p[len(p)-maxEOCDTail:]...)
	} else if h.tail = append(h.tail, p...); len(h.tail) > 2*maxEOCDTail {
		h.tail = h.tail[:copy(h.tail, h.tail[len(h.tail)-maxEOCDTail:])]
	}
	return nil
}

func (h *HDF5Inspector) checkDone() error {
	if h.sbDone && len(h.needs) == 0 && len(h.refs) == 0 {
		if h.rootV1 && h.v1Seen != h.v1Decl {
			return h.fail(-1, "root object header holds %d messages but declares %d", h.v1Seen, h.v1Decl)
		}
		// Every reference is resolved: the collections are no longer
		// needed, and go before the configurations are parsed (the
		// parse's peak is then the two values and one parse).
		h.cands, h.active, h.carry = nil, nil, nil
		// checked once all were read, in one order: the finding does not
		// depend on where each value lay
		for _, name := range []string{"model_config", "training_config"} {
			if v, ok := h.values[name]; ok {
				if err := checkKerasConfig(h.opts, FormatHDF5, "root attribute "+name, v); err != nil {
					h.err = err
					return err
				}
				delete(h.values, name) // checked: not held for the next parse
			}
		}
		h.values = nil
		h.done = true
	}
	return nil
}

func (h *HDF5Inspector) Close() error {
	if h.err != nil {
		return h.err
	}
	if h.size >= 0 && h.pos != h.size {
		return h.fail(h.pos, "truncated: %d of %d bytes", h.pos, h.size)
	}
	if !h.sbDone || h.pos < h.eof {
		want := h.eof
		if !h.sbDone {
			want = h.needs[0].addr + int64(h.needs[0].want)
		}
		return h.fail(h.pos, "truncated HDF5 file: %d bytes, its structures need %d", h.pos, want)
	}
	if len(h.needs) > 0 {
		n := h.needs[0]
		return h.fail(n.addr, "root object header chunk at %d ends beyond the file", n.addr)
	}
	if err := h.resolve(true); err != nil {
		return err
	}
	if err := h.checkDone(); err != nil {
		return err
	}
	if back := embeddedZip(h.tail); back >= 0 {
		return h.fail(h.pos-int64(back), "a zip archive ends this HDF5 file (polyglot: zip readers see another file)")
	}
	return nil
}

// addNeed schedules a structure at [addr, addr+want) that must be read
// once the stream reaches it; at is where the stream's reading stands.
func (h *HDF5Inspector) addNeed(at, addr int64, want int, what string, parse func([]byte) (int, error)) error {
	if addr < 0 || h.eof >= 0 && addr+int64(want) > h.eof {
		return newFinding(FormatHDF5, at, "%s at address %d lies outside the file (end-of-file address %d)", what, addr, h.eof)
	}
	if addr < at {
		return newFinding(FormatHDF5, at, "%s at address %d lies before offset %d, already streamed: pullgate reads HDF5 in one forward pass and refuses headers that point backwards (libhdf5 writes them forwards)", what, addr, at)
	}
	i := sort.Search(len(h.needs), func(i int) bool { return h.needs[i].addr >= addr })
	if i < len(h.needs) && h.needs[i].addr < addr+int64(want) || i > 0 && h.needs[i-1].addr+int64(h.needs[i-1].want) > addr {
		return newFinding(FormatHDF5, at, "%s at address %d overlaps another root object header chunk", what, addr)
	}
	h.needs = append(h.needs, nil)
	copy(h.needs[i+1:], h.needs[i:])
	h.needs[i] = &h5need{addr: addr, want: want, parse: parse}
	return nil
}

func (h *HDF5Inspector) uint(b []byte, n int) uint64 {
	switch n {
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// addr decodes an address (offSize bytes); undefined (all ones) and
// values beyond int64 return -1.
func (h *HDF5Inspector) addr(b []byte) int64 {
	v := h.uint(b, h.offSize)
	if h.offSize < 8 && v == 1<<(8*h.offSize)-1 || v > 1<<62 {
		return -1
	}
	return int64(v)
}

func (h *HDF5Inspector) superblock(b []byte) (int, error) {
	if !bytes.Equal(b[:8], magicHDF5) {
		if look := 2048 + 8; len(b) < look && (h.size < 0 || int64(len(b)) < h.size) {
			if h.size >= 0 {
				look = int(min(int64(look), h.size))
			}
			return look, nil
		}
		if u := hdf5Userblock(b); u > 0 {
			return 0, newFinding(FormatHDF5, 0, "HDF5 superblock at offset %d after a %d-byte userblock: a userblock can carry another format; HDF5 files with a userblock are not served", u, u)
		}
		return 0, newFinding(FormatHDF5, 0, "no HDF5 signature at offset 0")
	}
	ver := b[8]
	var need int
	switch ver {
	case 0, 1:
		if len(b) < 16 {
			return 16, nil
		}
		h.offSize, h.lenSize = int(b[13]), int(b[14])
		need = 24 + 6*h.offSize + 24
		if ver == 1 {
			need += 4
		}
	case 2, 3:
		if len(b) < 12 {
			return 12, nil
		}
		h.offSize, h.lenSize = int(b[9]), int(b[10])
		need = 12 + 4*h.offSize + 4
	default:
		return 0, newFinding(FormatHDF5, 8, "superblock version %d is not supported (0 to 3)", ver)
	}
	// Only libhdf5's default sizes (h5py, Keras, netCDF and MATLAB write
	// no others; H5Pset_sizes changes them): libhdf5 encodes some fields
	// the format document gives as offsets with the size of lengths (a
	// symbol table entry's link name offset, H5G_ent_encode), so with
	// other sizes this reader and libhdf5 would follow different root
	// headers.
	if h.offSize != 8 || h.lenSize != 8 {
		return 0, newFinding(FormatHDF5, 13, "superblock: size of offsets %d / lengths %d not supported (only 8, libhdf5's default)", h.offSize, h.lenSize)
	}
	if len(b) < need {
		return need, nil
	}
	o := h.offSize
	var base, eof, root, ext, drv int64
	switch ver {
	case 0, 1:
		if b[9] != 0 || b[10] != 0 || b[12] != 0 {
			return 0, newFinding(FormatHDF5, 9, "superblock: free-space, symbol table or shared header version is not 0")
		}
		a := 24
		if ver == 1 {
			a = 28
		}
		base, eof, drv = h.addr(b[a:]), h.addr(b[a+2*o:]), h.addr(b[a+3*o:])
		root = h.addr(b[a+5*o:])
		ext = -1
		if uint64(base) != 0 || eof < 0 {
			return 0, newFinding(FormatHDF5, int64(a), "superblock: base address must be 0 and the end-of-file address defined")
		}
	case 2, 3:
		if sum := binary.LittleEndian.Uint32(b[need-4:]); sum != lookup3(b[:need-4]) {
			return 0, newFinding(FormatHDF5, int64(need-4), "superblock checksum mismatch")
		}
		base, ext, eof, root = h.addr(b[12:]), h.addr(b[12+o:]), h.addr(b[12+2*o:]), h.addr(b[12+3*o:])
		drv = -1
		if base != 0 || eof < 0 {
			return 0, newFinding(FormatHDF5, 12, "superblock: base address must be 0 and the end-of-file address defined")
		}
	}
	if ext >= 0 {
		return 0, newFinding(FormatHDF5, 12+int64(o), "superblock extension at %d is not read (shared messages, file space settings); refused", ext)
	}
	if drv >= 0 {
		return 0, newFinding(FormatHDF5, 0, "driver information block at %d (multi-file drivers) is not supported", drv)
	}
	if h.size >= 0 && eof != h.size {
		if eof > h.size {
			return 0, newFinding(FormatHDF5, 0, "truncated: the HDF5 end-of-file address is %d but the blob has %d bytes", eof, h.size)
		}
		return 0, newFinding(FormatHDF5, eof, "%s", trailingReason(h.size, eof, "the HDF5 end-of-file address"))
	}
	if eof < int64(need) {
		return 0, newFinding(FormatHDF5, 0, "end-of-file address %d inside the superblock", eof)
	}
	h.eof = eof
	h.sbDone = true
	if root < 0 {
		return 0, newFinding(FormatHDF5, 0, "root group object header address undefined")
	}
	return 0, h.addNeed(int64(need), root, 6, "root group object header", h.rootHeader)
}

// rootHeader reads the root object header's first chunk (version 1 or 2).
func (h *HDF5Inspector) rootHeader(b []byte) (int, error) {
	at := h.needs[0].addr
	if string(b[:4]) == "OHDR" {
		if b[4] != 2 {
			return 0, newFinding(FormatHDF5, at, "object header version %d not supported", b[4])
		}
		fl := b[5]
		if fl&^0x3f != 0 {
			return 0, newFinding(FormatHDF5, at, "object header flags %#x: reserved bits set", fl)
		}
		pre := 6 + 1<<(fl&3)
		if fl&0x20 != 0 {
			pre += 16
		}
		if fl&0x10 != 0 {
			pre += 4
		}
		if len(b) < pre {
			return pre, nil
		}
		w := 1 << (fl & 3)
		sz := uint64(b[pre-w])
		if w > 1 {
			sz = h.uint(b[pre-w:], w)
		}
		if sz > hdf5MaxChunk {
			return 0, newFinding(FormatHDF5, at, "root object header chunk of %d bytes exceeds the %d-byte limit", sz, hdf5MaxChunk)
		}
		total := pre + int(sz) + 4
		if len(b) < total {
			return total, nil
		}
		return 0, h.chunkV2(at, b, pre, fl&0x04 != 0)
	}
	if b[0] != 1 {
		return 0, newFinding(FormatHDF5, at, "root group object header: neither version 1 nor OHDR")
	}
	if len(b) < 16 {
		return 16, nil
	}
	if b[1] != 0 {
		return 0, newFinding(FormatHDF5, at+1, "object header: reserved byte not 0")
	}
	h.rootV1 = true
	h.v1Decl = int(binary.LittleEndian.Uint16(b[2:]))
	sz := binary.LittleEndian.Uint32(b[8:])
	if sz > hdf5MaxChunk {
		return 0, newFinding(FormatHDF5, at, "root object header chunk of %d bytes exceeds the %d-byte limit", sz, hdf5MaxChunk)
	}
	if len(b) < 16+int(sz) {
		return 16 + int(sz), nil
	}
	return 0, h.messagesV1(at+16, b[16:])
}

func (h *HDF5Inspector) countChunk(at int64) error {
	h.chunks++
	if h.chunks > hdf5MaxChunks {
		return newFinding(FormatHDF5, at, "root object header has more than %d chunks", hdf5MaxChunks)
	}
	return nil
}

// chunkV2 checks a version 2 chunk (OHDR or OCHK) whose messages start at
// pre and reads them.
func (h *HDF5Inspector) chunkV2(at int64, b []byte, pre int, crtOrder bool) error {
	if err := h.countChunk(at); err != nil {
		return err
	}
	n := len(b) - 4
	if binary.LittleEndian.Uint32(b[n:]) != lookup3(b[:n]) {
		return newFinding(FormatHDF5, at, "object header chunk at %d: checksum mismatch", at)
	}
	hs := 4
	if crtOrder {
		hs = 6
	}
	m := b[pre:n]
	for off := 0; len(m)-off >= hs; {
		typ, sz, fl := int(m[off]), int(binary.LittleEndian.Uint16(m[off+1:])), m[off+3]
		d := off + hs
		if d+sz > len(m) {
			return newFinding(FormatHDF5, at+int64(pre+off), "object header message of %d bytes overruns its chunk", sz)
		}
		if err := h.message(at+int64(pre+d), typ, fl, m[d:d+sz], crtOrder); err != nil {
			return err
		}
		off = d + sz
	}
	return nil
}

func (h *HDF5Inspector) messagesV1(at int64, m []byte) error {
	if err := h.countChunk(at); err != nil {
		return err
	}
	for off := 0; off < len(m); {
		if len(m)-off < 8 {
			return newFinding(FormatHDF5, at+int64(off), "object header: %d stray bytes at the end of a chunk", len(m)-off)
		}
		typ, sz, fl := int(binary.LittleEndian.Uint16(m[off:])), int(binary.LittleEndian.Uint16(m[off+2:])), m[off+4]
		d := off + 8
		if sz%8 != 0 || d+sz > len(m) {
			return newFinding(FormatHDF5, at+int64(off), "object header message of %d bytes is unaligned or overruns its chunk", sz)
		}
		h.v1Seen++
		if h.v1Seen > h.v1Decl {
			return newFinding(FormatHDF5, at+int64(off), "object header holds more messages than the %d it declares", h.v1Decl)
		}
		if err := h.message(at+int64(d), typ, fl, m[d:d+sz], false); err != nil {
			return err
		}
		off = d + sz
	}
	return nil
}

// message handles one root object header message.
func (h *HDF5Inspector) message(at int64, typ int, fl byte, d []byte, crtOrder bool) error {
	h.msgs++
	if h.msgs > hdf5MaxMessages {
		return newFinding(FormatHDF5, at, "root object header has more than %d messages", hdf5MaxMessages)
	}
	o, l := h.offSize, h.lenSize
	switch typ {
	case 0x10: // continuation
		if len(d) < o+l {
			return newFinding(FormatHDF5, at, "continuation message too short")
		}
		addr, ln := h.addr(d), h.uint(d[o:], l)
		if ln > hdf5MaxChunk {
			return newFinding(FormatHDF5, at, "root object header continuation of %d bytes exceeds the %d-byte limit", ln, hdf5MaxChunk)
		}
		from := h.needs[0].addr + int64(h.needs[0].want)
		if addr < 0 {
			return newFinding(FormatHDF5, at, "continuation message: undefined address")
		}
		if h.rootV1 {
			return h.addNeed(from, addr, int(ln), "object header continuation", func(b []byte) (int, error) {
				return 0, h.messagesV1(addr, b)
			})
		}
		if ln < 8 {
			return newFinding(FormatHDF5, at, "continuation chunk of %d bytes", ln)
		}
		return h.addNeed(from, addr, int(ln), "object header continuation", func(b []byte) (int, error) {
			if string(b[:4]) != "OCHK" {
				return 0, newFinding(FormatHDF5, addr, "continuation chunk at %d has no OCHK signature", addr)
			}
			return 0, h.chunkV2(addr, b, 4, crtOrder)
		})
	case 0x15: // attribute info
		if len(d) < 2 || d[0] != 0 {
			return newFinding(FormatHDF5, at, "attribute info message: version not 0")
		}
		p := 2
		if d[1]&1 != 0 {
			p += 2
		}
		if len(d) < p+o {
			return newFinding(FormatHDF5, at, "attribute info message too short")
		}
		if heap := h.addr(d[p:]); heap >= 0 {
			return newFinding(FormatHDF5, at, "root group attributes in dense storage (fractal heap at %d) are not read; a model gate refuses what it cannot inspect (write the file with h5py's default libver, or fewer attributes)", heap)
		}
	case 0x0C: // attribute
		if fl&0x02 != 0 {
			return newFinding(FormatHDF5, at, "root attribute stored as a shared message is not read; refused")
		}
		return h.attribute(at, d)
	}
	return nil
}

// attribute reads one attribute message; only the Keras configuration
// attributes' values are decoded.
func (h *HDF5Inspector) attribute(at int64, d []byte) error {
	if len(d) < 8 {
		return newFinding(FormatHDF5, at, "attribute message too short")
	}
	ver, fl := d[0], d[1]
	nameLen, dtLen, dsLen := int(binary.LittleEndian.Uint16(d[2:])), int(binary.LittleEndian.Uint16(d[4:])), int(binary.LittleEndian.Uint16(d[6:]))
	pad := func(n int) int { return n }
	p := 8
	switch ver {
	case 1:
		pad = func(n int) int { return (n + 7) &^ 7 }
	case 2:
	case 3:
		p = 9
	default:
		return newFinding(FormatHDF5, at, "attribute message version %d not supported", ver)
	}
	if nameLen < 1 || len(d) < p+pad(nameLen)+pad(dtLen)+pad(dsLen) {
		return newFinding(FormatHDF5, at, "attribute message: name, datatype and dataspace overrun the message")
	}
	raw := d[p : p+nameLen]
	if raw[nameLen-1] != 0 || bytes.IndexByte(raw[:nameLen-1], 0) >= 0 {
		return newFinding(FormatHDF5, at, "attribute name is not one NUL-terminated string")
	}
	name := string(raw[:nameLen-1])
	if !hdf5KerasAttrs[name] {
		return nil
	}
	if h.seenCfg[name] {
		return newFinding(FormatHDF5, at, "root attribute %s appears twice", name)
	}
	h.seenCfg[name] = true
	where := "root attribute " + name
	if ver >= 2 && fl&0x03 != 0 || ver == 1 && fl != 0 {
		return newFinding(FormatHDF5, at, "%s: shared datatype or dataspace is not read; refused", where)
	}
	p += pad(nameLen)
	dt := d[p : p+dtLen]
	p += pad(dtLen)
	ds := d[p : p+dsLen]
	p += pad(dsLen)
	data := d[p:]
	if !h.scalar(ds) {
		return newFinding(FormatHDF5, at, "%s is not a scalar (Keras reads one string)", where)
	}
	if len(dt) < 8 {
		return newFinding(FormatHDF5, at, "%s: datatype too short", where)
	}
	class, bf, size := dt[0]&0x0f, int(dt[1])|int(dt[2])<<8, binary.LittleEndian.Uint32(dt[4:])
	switch class {
	case 3: // fixed-length string
		if uint64(size) > uint64(len(data)) {
			return newFinding(FormatHDF5, at, "%s: string of %d bytes overruns the message", where, size)
		}
		v := data[:size]
		switch bf & 0x0f {
		case 0: // null-terminated: libhdf5 converts up to the first NUL
			if i := bytes.IndexByte(v, 0); i >= 0 {
				v = v[:i]
			}
		case 1: // null-padded: numpy drops trailing NULs
			v = bytes.TrimRight(v, "\x00")
		case 2: // space-padded
			v = bytes.TrimRight(v, " ")
		default:
			return newFinding(FormatHDF5, at, "%s: string padding %d unknown", where, bf&0x0f)
		}
		h.values[name] = bytes.Clone(v)
		return nil
	case 9: // variable-length
		if bf&0x0f != 1 {
			return newFinding(FormatHDF5, at, "%s is a variable-length sequence, not a string", where)
		}
		base := dt[8:]
		if len(base) < 8 || base[0]&0x0f != 0 && base[0]&0x0f != 3 || binary.LittleEndian.Uint32(base[4:]) != 1 {
			return newFinding(FormatHDF5, at, "%s: variable-length string of elements other than bytes", where)
		}
		if len(data) < 4+h.offSize+4 {
			return newFinding(FormatHDF5, at, "%s: variable-length string reference overruns the message", where)
		}
		r := &h5ref{name: name, seqLen: binary.LittleEndian.Uint32(data), coll: h.addr(data[4:]), index: binary.LittleEndian.Uint32(data[4+h.offSize:])}
		if r.seqLen == 0 {
			h.values[name] = nil
			return nil
		}
		if r.coll < 0 || r.coll >= h.eof {
			return newFinding(FormatHDF5, at, "%s: global heap collection at %d lies outside the file", where, r.coll)
		}
		h.refs = append(h.refs, r)
		return nil
	}
	return newFinding(FormatHDF5, at, "%s is not a string (datatype class %d)", where, class)
}

// scalar reports whether a dataspace message describes a scalar.
func (h *HDF5Inspector) scalar(ds []byte) bool {
	if len(ds) < 4 {
		return false
	}
	switch ds[0] {
	case 1:
		return ds[1] == 0
	case 2:
		return ds[1] == 0 && ds[3] == 0
	}
	return false
}

// scan retains global heap collections ("GCOL" signature, version 1) as
// the stream passes them, within the budget.
func (h *HDF5Inspector) scan(p []byte, start int64) {
	// feed collections in progress
	keep := h.active[:0]
	for _, c := range h.active {
		h.feed(c, p, start)
		if !c.full && c.dropped == "" {
			keep = append(keep, c)
		}
	}
	h.active = keep
	// signatures across the previous write's end
	if len(h.carry) > 0 {
		j := append(append([]byte(nil), h.carry...), p[:min(3, len(p))]...)
		for i := 0; i+4 <= len(j) && i < len(h.carry); i++ {
			if string(j[i:i+4]) == "GCOL" {
				h.candidate(h.carryAt+int64(i), h.carry[i:], p, start)
			}
		}
	}
	for off := 0; ; {
		i := bytes.Index(p[off:], []byte("GCOL"))
		if i < 0 {
			break
		}
		h.candidate(start+int64(off+i), nil, p, start)
		off += i + 1
	}
	if len(p) >= 3 {
		h.carry = append(h.carry[:0], p[len(p)-3:]...)
	} else {
		all := append(append([]byte(nil), h.carry...), p...)
		h.carry = append(h.carry[:0], all[max(0, len(all)-3):]...)
	}
	h.carryAt = h.pos - int64(len(h.carry))
}

func (h *HDF5Inspector) candidate(at int64, prefix, p []byte, start int64) {
	if _, ok := h.cands[at]; ok || len(h.cands) >= hdf5MaxCandidates && !h.referenced(at) {
		return
	}
	c := &h5gcol{addr: at, want: 8 + h.lenSize, buf: append([]byte(nil), prefix...)}
	if h.lenSize == 0 {
		// before the superblock's sizes are known: inside the superblock
		c.dropped = "it overlaps the superblock"
		h.cands[at] = c
		return
	}
	h.cands[at] = c
	h.feed(c, p, start)
	if !c.full && c.dropped == "" {
		h.active = append(h.active, c)
	}
}

// feed appends the bytes of p (at absolute start) that c still wants.
func (h *HDF5Inspector) feed(c *h5gcol, p []byte, start int64) {
	for !c.full && c.dropped == "" {
		next := c.addr + int64(len(c.buf))
		end := min(c.addr+int64(c.want), start+int64(len(p)))
		if next >= end || next < start {
			return
		}
		c.buf = append(c.buf, p[next-start:end-start]...)
		if len(c.buf) < c.want {
			return
		}
		if c.sized {
			c.full = true
			return
		}
		c.sized = true
		sz := h.uint(c.buf[8:], h.lenSize)
		switch {
		case c.buf[4] != 1:
			c.dropped = "not a version 1 global heap collection"
		case sz < uint64(8+h.lenSize) || sz > hdf5MaxCollection:
			c.dropped = fmt.Sprintf("its size %d is not between %d and %d bytes", sz, 8+h.lenSize, hdf5MaxCollection)
		case c.addr+int64(sz) > h.eof:
			c.dropped = fmt.Sprintf("it ends beyond the end of the file (size %d)", sz)
		case !h.referenced(c.addr) && h.specUsed+int64(sz) > hdf5SpecBudget:
			c.dropped = fmt.Sprintf("the %d bytes retained for collections ahead of their use are used up", hdf5SpecBudget)
		}
		if c.dropped != "" {
			c.buf = nil
			return
		}
		if !h.referenced(c.addr) {
			h.specUsed += int64(sz)
		}
		c.want = int(sz)
		c.full = c.want == len(c.buf)
		// Held at its size, not through append's doublings.
		c.buf = slices.Grow(c.buf, c.want-len(c.buf))
	}
}

func (h *HDF5Inspector) referenced(addr int64) bool {
	for _, r := range h.refs {
		if r.coll == addr {
			return true
		}
	}
	return false
}

// resolve checks the variable-length root attributes whose collection has
// been read. At the end (final), every reference must resolve.
func (h *HDF5Inspector) resolve(final bool) error {
	keep := h.refs[:0]
	for _, r := range h.refs {
		where := "root attribute " + r.name
		c := h.cands[r.coll]
		switch {
		case c != nil && c.dropped != "":
			return h.fail(r.coll, "%s: global heap collection at %d was not retained: %s", where, r.coll, c.dropped)
		case c != nil && c.full:
			v, err := h.heapObject(c, r)
			if err != nil {
				h.err = err
				return err
			}
			// Not copied: the collection is complete and never
			// written again, and the value keeps it (only it) alive.
			h.values[r.name] = v
			continue
		case c == nil && (r.coll+4 <= h.pos || final):
			if len(h.cands) >= hdf5MaxCandidates {
				return h.fail(r.coll, "%s: global heap collection at %d was not retained: more than %d collection signatures before it", where, r.coll, hdf5MaxCandidates)
			}
			return h.fail(r.coll, "%s: no global heap collection at address %d", where, r.coll)
		case final:
			return h.fail(r.coll, "%s: global heap collection at %d ends beyond the file", where, r.coll)
		}
		keep = append(keep, r)
	}
	h.refs = keep
	return nil
}

// heapObject finds object r.index in collection c, walking the collection
// as libhdf5 does (H5HG__cache_heap_deserialize): the collection header is
// H5HG_ALIGN(8 + size of lengths) = 16 bytes whatever the size of lengths
// (2, 4 or 8), and so is each object's header (index, reference count,
// reserved, length); an object's data follows its header, padded to 8.
// Index 0 is the free space, whose length includes its header; fewer than
// 16 bytes left at the end are free space too. libhdf5 reads on past the
// free space and keeps the LAST object of an index, so a reader that stops
// at the free space or takes the first object of an index would check
// other bytes than Keras loads: an index that occurs twice, a second free
// space, or a walk that does not end exactly at the collection's end is
// refused (h5py never writes any of them).
func (h *HDF5Inspector) heapObject(c *h5gcol, r *h5ref) ([]byte, error) {
	const hdr = 16 // H5HG_SIZEOF_HDR and H5HG_SIZEOF_OBJHDR
	b, l := c.buf, h.lenSize
	var found []byte
	foundAt, foundSz := -1, uint64(0)
	seen := map[uint16]bool{}
	free := false
	for off := hdr; off < len(b); {
		at := c.addr + int64(off)
		if off+hdr > len(b) {
			if free {
				return nil, newFinding(FormatHDF5, at, "global heap collection at %d has two free-space objects (libhdf5 refuses it)", c.addr)
			}
			break // the tail, too short for an object: free space
		}
		idx := binary.LittleEndian.Uint16(b[off:])
		sz := h.uint(b[off+8:], l)
		if sz > uint64(len(b)) {
			return nil, newFinding(FormatHDF5, at, "global heap object %d overruns its collection", idx)
		}
		need := sz
		if idx == 0 {
			if free || sz < hdr || sz%8 != 0 {
				return nil, newFinding(FormatHDF5, at, "global heap collection at %d: free-space object of %d bytes is a second one, shorter than its header or unaligned", c.addr, sz)
			}
			free = true
		} else {
			if seen[idx] {
				return nil, newFinding(FormatHDF5, at, "global heap collection at %d holds object %d twice (libhdf5 reads the last, a reader that stops at the first checks other bytes)", c.addr, idx)
			}
			seen[idx] = true
			need = hdr + (sz+7)&^7
		}
		if need > uint64(len(b)-off) {
			return nil, newFinding(FormatHDF5, at, "global heap object %d overruns its collection", idx)
		}
		if idx != 0 && uint32(idx) == r.index {
			found, foundAt, foundSz = b[off+hdr:off+hdr+int(sz)], off, sz
		}
		off += int(need)
	}
	if foundAt < 0 {
		return nil, newFinding(FormatHDF5, c.addr, "root attribute %s: object %d not found in the global heap collection at %d", r.name, r.index, c.addr)
	}
	if foundSz != uint64(r.seqLen) {
		return nil, newFinding(FormatHDF5, c.addr+int64(foundAt), "root attribute %s: string length %d differs from its heap object's %d bytes", r.name, r.seqLen, foundSz)
	}
	return found, nil
}

// hdf5Userblock returns the offset of an HDF5 signature after a userblock
// (512, 1024, 2048 bytes) within h, or 0.
func hdf5Userblock(h []byte) int {
	for u := 512; u+8 <= len(h); u *= 2 {
		if bytes.Equal(h[u:u+8], magicHDF5) {
			return u
		}
	}
	return 0
}

// lookup3 is Bob Jenkins' hashlittle with initial value 0, the checksum
// of HDF5's version 2 structures (H5_checksum_lookup3).
func lookup3(k []byte) uint32 {
	a := 0xdeadbeef + uint32(len(k))
	b, c := a, a
	for len(k) > 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a -= c
		a ^= bits.RotateLeft32(c, 4)
		c += b
		b -= a
		b ^= bits.RotateLeft32(a, 6)
		a += c
		c -= b
		c ^= bits.RotateLeft32(b, 8)
		b += a
		a -= c
		a ^= bits.RotateLeft32(c, 16)
		c += b
		b -= a
		b ^= bits.RotateLeft32(a, 19)
		a += c
		c -= b
		c ^= bits.RotateLeft32(b, 4)
		b += a
		k = k[12:]
	}
	if len(k) == 0 {
		return c
	}
	var t [12]byte
	copy(t[:], k)
	a += binary.LittleEndian.Uint32(t[:])
	b += binary.LittleEndian.Uint32(t[4:])
	c += binary.LittleEndian.Uint32(t[8:])
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}
