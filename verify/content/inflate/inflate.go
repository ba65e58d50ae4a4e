// Package inflate is a push-style, resumable DEFLATE (RFC 1951) decoder:
// the compressed stream is handed over in pieces of any size as it
// arrives (Write), and the inflated bytes go to a callback as they are
// decoded. It holds a 32 KiB window, the Huffman tables of the current
// block (3 first-level tables of 4 KiB, second-level ones for codes over
// 10 bits: at most 41 KiB) and at most a few hundred bytes of input it
// could not decode yet (an incomplete symbol, or an incomplete block
// header that is parsed again from its start when more bytes arrive), plus
// up to 1 KiB during a Write: at most 88 KiB whatever the stream's size.
//
// It accepts exactly what compress/flate accepts and reports the end of
// the stream at the same byte: a stream compress/flate rejects as corrupt
// is rejected (block type 3, over-subscribed or incomplete code-length,
// literal/length or distance codes other than a single code of one bit,
// a repeat with no previous length, repeats past the declared counts,
// length symbols 286 and 287, distance symbols 30 and 31, a distance
// before the start of the output, a stored block whose NLEN is not the
// complement of LEN).
package inflate

import (
	"errors"
	"math/bits"
)

// windowSize is the DEFLATE window: the farthest back a match may copy.
const windowSize = 32 << 10

// CorruptError reports invalid DEFLATE data; Offset is the input byte (from
// the start of the stream) at which the problem was found.
type CorruptError struct {
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return "flate: corrupt input: " + e.Reason
}

// ErrDone is returned by Write when it is called after the stream ended.
var ErrDone = errors.New("inflate: write after the end of the deflate stream")

const (
	stHeader = iota // at a block header
	stStored        // copying a stored block
	stHuff          // decoding a Huffman block
	stDone          // the final block ended
)

// Inflater decodes one DEFLATE stream pushed to it with Write.
type Inflater struct {
	out   func([]byte) error
	state int
	final bool
	err   error

	storedLeft int   // bytes of the current stored block still to copy
	hl, hd     *huff // current literal/length and distance tables
	lit, dist  huff  // the dynamic block's tables
	clen       huff  // code-length code
	lens       [286 + 30]uint8

	hist [windowSize]byte
	wp   int  // write position in hist
	rp   int  // hist[rp:wp] not given to out yet
	full bool // hist wrapped at least once

	hold   []byte // input from the checkpoint on, not decoded yet
	bitOff uint   // bits of the checkpoint byte already used
	pos    int64  // input offset of the checkpoint byte
	outN   int64  // bytes inflated
}

// New returns an Inflater that hands the inflated bytes to out, in pieces of
// at most 32 KiB (the slice is only valid during the call). An error from
// out stops the decoding and is returned by Write.
func New(out func([]byte) error) *Inflater {
	return &Inflater{out: out}
}

// Reset makes f ready for a new stream, keeping its buffers.
func (f *Inflater) Reset(out func([]byte) error) {
	f.out, f.state, f.final, f.err = out, stHeader, false, nil
	f.storedLeft, f.hl, f.hd = 0, nil, nil
	f.wp, f.rp, f.full = 0, 0, false
	f.hold, f.bitOff, f.pos, f.outN = f.hold[:0], 0, 0, 0
}

// Done reports whether the final block ended.
func (f *Inflater) Done() bool { return f.state == stDone && f.err == nil }

// InputUsed is the number of input bytes Write accepted so far; after Done,
// the exact compressed length of the stream (the byte that holds its last
// bit included), as compress/flate reads it.
func (f *Inflater) InputUsed() int64 {
	if f.state == stDone {
		return f.pos
	}
	return f.pos + int64(len(f.hold))
}

// Output is the number of bytes inflated so far.
func (f *Inflater) Output() int64 { return f.outN }

// Err is the error that stopped the decoding, if any.
func (f *Inflater) Err() error { return f.err }

// joinMax is how many bytes of a Write are appended to the held tail at a
// time: more than the longest unit decoded at once (a dynamic block header
// is at most 3+14+19*3+316*7 bits, under 300 bytes; a symbol with its
// distance and extra bits 48 bits).
const joinMax = 1024

// Write decodes p as far as possible and hands what it inflated to the
// callback. It returns how many bytes of p belong to the stream: len(p)
// while the stream has not ended (bytes that do not complete a symbol or
// a block header are kept for the next Write), fewer when the stream ended
// within p (the rest follows the stream). After the end, Write returns 0,
// ErrDone. An error (corrupt data, or the callback's) is final.
func (f *Inflater) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if f.state == stDone {
		return 0, ErrDone
	}
	used := 0
	for len(f.hold) > 0 && used < len(p) {
		// the held tail and the next bytes of p
		old := len(f.hold)
		k := min(len(p)-used, joinMax)
		f.hold = append(f.hold, p[used:used+k]...)
		end, err := f.run(f.hold, f.bitOff)
		if err != nil {
			return used, f.fail(err)
		}
		if f.state == stDone {
			n := (end + 7) / 8
			f.pos += int64(n)
			f.hold = f.hold[:0]
			return used + n - old, f.flush()
		}
		eb := end / 8
		f.pos += int64(eb)
		f.bitOff = uint(end % 8)
		if eb < old {
			f.hold = append(f.hold[:0], f.hold[eb:]...)
			used += k
			continue
		}
		used += eb - old
		f.hold = f.hold[:0]
	}
	if used == len(p) {
		return used, f.flush()
	}
	// no held tail: decode p in place
	src := p[used:]
	end, err := f.run(src, f.bitOff)
	if err != nil {
		return used, f.fail(err)
	}
	if f.state == stDone {
		n := (end + 7) / 8
		f.pos += int64(n)
		return used + n, f.flush()
	}
	eb := end / 8
	f.pos += int64(eb)
	f.bitOff = uint(end % 8)
	f.hold = append(f.hold[:0], src[eb:]...)
	return len(p), f.flush()
}

// fail ends the decoding with err. Before a corrupt-data error, what was
// inflated before it goes to the callback (as compress/flate returns it
// before the error), so the callback sees the same bytes however the input
// was split; an error of the callback then wins.
func (f *Inflater) fail(err error) error {
	if _, ok := err.(*CorruptError); ok {
		if ferr := f.flush(); ferr != nil {
			return ferr
		}
	}
	f.err = err
	return err
}

// flush gives the window's undelivered bytes to the callback.
func (f *Inflater) flush() error {
	if f.wp > f.rp {
		p := f.hist[f.rp:f.wp]
		f.outN += int64(len(p))
		f.rp = f.wp
		if err := f.out(p); err != nil {
			f.err = err
			return err
		}
	}
	if f.wp == windowSize {
		f.wp, f.rp, f.full = 0, 0, true
	}
	return nil
}

// bitReader reads src least significant bit first. acc holds n unread
// bits (bits above n are zero or the true next bits); pos is the next byte
// of src to load.
type bitReader struct {
	src []byte
	pos int
	acc uint64
	n   uint
}

// bitPos is the position in bits of the next unread bit.
func (b *bitReader) bitPos() int { return b.pos*8 - int(b.n) }

// need loads bytes until k bits are available; false if src ends first.
func (b *bitReader) need(k uint) bool {
	for b.n < k {
		if b.pos >= len(b.src) {
			return false
		}
		b.acc |= uint64(b.src[b.pos]) << b.n
		b.pos++
		b.n += 8
	}
	return true
}

func (b *bitReader) drop(k uint) {
	b.acc >>= k
	b.n -= k
}

// sym decodes one symbol of h as compress/flate's huffSym does: h.min bits
// are read before the first lookup, then as many as the code needs; bits
// that start no code are corrupt. ok is false when src ends first.
func (b *bitReader) sym(h *huff) (s int, ok bool, err error) {
	need := h.min
	for {
		if !b.need(need) {
			return 0, false, nil
		}
		e := h.lookup(b.acc)
		n := uint(e & 0x7f)
		if n <= b.n {
			if n == 0 {
				return 0, false, errCode
			}
			b.drop(n)
			return int(e >> 8), true, nil
		}
		need = n
	}
}

var (
	errCode      = &CorruptError{Reason: "invalid Huffman code"}
	errBlockType = &CorruptError{Reason: "invalid block type 3"}
	errCounts    = &CorruptError{Reason: "too many literal/length or distance codes"}
	errRepeat    = &CorruptError{Reason: "invalid code length repeat"}
	errStored    = &CorruptError{Reason: "stored block length does not match its complement"}
	errLenSym    = &CorruptError{Reason: "invalid length symbol"}
	errDistSym   = &CorruptError{Reason: "invalid distance symbol"}
	errDistFar   = &CorruptError{Reason: "distance before the start of the output"}
)

// corrupt returns a CorruptError at the reader's position.
func (f *Inflater) corrupt(b *bitReader, e *CorruptError) error {
	return &CorruptError{Offset: f.pos + int64(b.pos), Reason: e.Reason}
}

// run decodes src, whose first bitOff bits were already used, until it
// ends, the stream ends or an error. It returns the bit position (in src)
// the next call starts from: the end of the last block header, symbol or
// stored byte decoded whole (the end of the stream once done).
func (f *Inflater) run(src []byte, bitOff uint) (int, error) {
	br := bitReader{src: src}
	if bitOff > 0 {
		br.need(8)
		br.drop(bitOff)
	}
	for {
		cp := br.bitPos()
		switch f.state {
		case stDone:
			return cp, nil
		case stHeader:
			ok, err := f.header(&br)
			if err != nil {
				return cp, err
			}
			if !ok {
				return cp, nil
			}
		case stStored:
			// byte aligned: nothing is left in the accumulator
			k := min(f.storedLeft, len(src)-br.pos, windowSize-f.wp)
			if k == 0 {
				return cp, nil
			}
			copy(f.hist[f.wp:], src[br.pos:br.pos+k])
			f.wp += k
			br.pos += k
			f.storedLeft -= k
			if f.wp == windowSize {
				if err := f.flush(); err != nil {
					return br.bitPos(), err
				}
			}
			if f.storedLeft == 0 {
				f.endBlock()
			}
		case stHuff:
			end, err := f.huffBlock(&br)
			if err != nil || f.state == stHuff {
				return end, err
			}
		}
	}
}

func (f *Inflater) endBlock() {
	if f.final {
		f.state = stDone
	} else {
		f.state = stHeader
	}
}

var codeOrder = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// header parses a block header whole; false (nothing decided) when src
// ends first: it is parsed again from its start with more bytes.
func (f *Inflater) header(br *bitReader) (bool, error) {
	if !br.need(3) {
		return false, nil
	}
	f.final = br.acc&1 == 1
	typ := br.acc >> 1 & 3
	br.drop(3)
	switch typ {
	case 0:
		// skip to the byte boundary and give back the whole bytes loaded
		br.drop(br.n % 8)
		br.pos -= int(br.n / 8)
		br.acc, br.n = 0, 0
		if len(br.src)-br.pos < 4 {
			return false, nil
		}
		s := br.src[br.pos:]
		n := int(s[0]) | int(s[1])<<8
		nn := int(s[2]) | int(s[3])<<8
		br.pos += 4
		if uint16(nn) != uint16(^n) {
			return false, f.corrupt(br, errStored)
		}
		if n == 0 {
			f.endBlock()
			return true, nil
		}
		f.storedLeft = n
		f.state = stStored
		return true, nil
	case 1:
		f.hl, f.hd = &fixedLit, &fixedDist
		f.state = stHuff
		return true, nil
	case 3:
		return false, f.corrupt(br, errBlockType)
	}
	if !br.need(5 + 5 + 4) {
		return false, nil
	}
	nlit := int(br.acc&0x1f) + 257
	ndist := int(br.acc>>5&0x1f) + 1
	if nlit > 286 || ndist > 30 {
		return false, f.corrupt(br, errCounts)
	}
	nclen := int(br.acc>>10&0xf) + 4
	br.drop(14)
	var cl [19]uint8
	for i := 0; i < nclen; i++ {
		if !br.need(3) {
			return false, nil
		}
		cl[codeOrder[i]] = uint8(br.acc & 7)
		br.drop(3)
	}
	if !f.clen.init(cl[:]) {
		return false, f.corrupt(br, errTree)
	}
	lens := f.lens[:nlit+ndist]
	for i := 0; i < len(lens); {
		x, ok, err := br.sym(&f.clen)
		if err != nil || !ok {
			return false, f.corruptAt(br, err)
		}
		if x < 16 {
			lens[i] = uint8(x)
			i++
			continue
		}
		var rep int
		var nb uint
		var v uint8
		switch x {
		case 16:
			rep, nb = 3, 2
			if i == 0 {
				return false, f.corrupt(br, errRepeat)
			}
			v = lens[i-1]
		case 17:
			rep, nb = 3, 3
		default:
			rep, nb = 11, 7
		}
		if !br.need(nb) {
			return false, nil
		}
		rep += int(br.acc & (1<<nb - 1))
		br.drop(nb)
		if i+rep > len(lens) {
			return false, f.corrupt(br, errRepeat)
		}
		for range rep {
			lens[i] = v
			i++
		}
	}
	if !f.lit.init(lens[:nlit]) || !f.dist.init(lens[nlit:]) {
		return false, f.corrupt(br, errTree)
	}
	if f.lit.min < uint(lens[256]) {
		f.lit.min = uint(lens[256])
	}
	f.hl, f.hd = &f.lit, &f.dist
	f.state = stHuff
	return true, nil
}

// lengthBase and lengthExtra describe length symbols 257..285.
var lengthBase, lengthExtra [29]uint16

// distBase and distExtra describe distance symbols 0..29.
var distBase, distExtra [30]uint32

func init() {
	for s := range 29 {
		switch {
		case s < 8:
			lengthBase[s] = uint16(s + 3)
		case s == 28:
			lengthBase[s] = 258
		default:
			e := uint16(s-4) / 4
			lengthExtra[s] = e
			lengthBase[s] = (4+uint16(s%4))<<e + 3
		}
	}
	for d := range 30 {
		if d < 4 {
			distBase[d] = uint32(d + 1)
			continue
		}
		e := uint32(d-2) / 2
		distExtra[d] = e
		distBase[d] = (2+uint32(d&1))<<e + 1
	}
}

// huffBlock decodes symbols of the current Huffman block until its end of
// block, the end of src (returning the position after the last whole
// symbol) or an error.
func (f *Inflater) huffBlock(br *bitReader) (int, error) {
	hl, hd := f.hl, f.hd
	src := br.src
	for {
		cp := br.bitPos()
		// fast path: with 8 bytes left, 56 bits or more cover a length, a
		// distance and their extra bits (at most 48); near the end of src,
		// bits are read as compress/flate reads them
		fast := len(src)-br.pos >= 8
		var s int
		if fast {
			br.acc |= le64(src[br.pos:]) << br.n
			br.pos += int(63-br.n) >> 3
			br.n |= 56
			e := hl.lookup(br.acc)
			n := uint(e & 0x7f)
			if n == 0 {
				return cp, f.corrupt(br, errCode)
			}
			br.drop(n)
			s = int(e >> 8)
		} else {
			var ok bool
			var err error
			if s, ok, err = br.sym(hl); err != nil || !ok {
				return cp, f.corruptAt(br, err)
			}
		}
		if s < 256 {
			f.hist[f.wp] = byte(s)
			f.wp++
			if f.wp == windowSize {
				if err := f.flush(); err != nil {
					return br.bitPos(), err
				}
			}
			continue
		}
		if s == 256 {
			f.endBlock()
			return br.bitPos(), nil
		}
		s -= 257
		if s >= 29 {
			return cp, f.corrupt(br, errLenSym)
		}
		eb := uint(lengthExtra[s])
		var d int
		if fast {
			length := int(lengthBase[s]) + int(br.acc&(1<<eb-1))
			br.drop(eb)
			e := hd.lookup(br.acc)
			n := uint(e & 0x7f)
			if n == 0 {
				return cp, f.corrupt(br, errCode)
			}
			br.drop(n)
			if d = int(e >> 8); d >= 30 {
				return cp, f.corrupt(br, errDistSym)
			}
			s = length
		} else {
			if !br.need(eb) {
				return cp, nil
			}
			length := int(lengthBase[s]) + int(br.acc&(1<<eb-1))
			br.drop(eb)
			var ok bool
			var err error
			if d, ok, err = br.sym(hd); err != nil || !ok {
				return cp, f.corruptAt(br, err)
			}
			if d >= 30 {
				return cp, f.corrupt(br, errDistSym)
			}
			if !br.need(uint(distExtra[d])) {
				return cp, nil
			}
			s = length
		}
		eb = uint(distExtra[d])
		dist := int(distBase[d]) + int(br.acc&(1<<eb-1))
		br.drop(eb)
		if dist > windowSize || !f.full && dist > f.wp {
			return cp, f.corrupt(br, errDistFar)
		}
		if err := f.copyMatch(dist, s); err != nil {
			return br.bitPos(), err
		}
	}
}

// corruptAt is f.corrupt for an error of bitReader.sym (nil: src ended).
func (f *Inflater) corruptAt(br *bitReader, err error) error {
	if err == nil {
		return nil
	}
	return f.corrupt(br, err.(*CorruptError))
}

// copyMatch appends length bytes from dist bytes back.
func (f *Inflater) copyMatch(dist, length int) error {
	h := f.hist[:]
	for length > 0 {
		s := f.wp - dist
		if s < 0 {
			s += windowSize
		}
		k := min(length, windowSize-f.wp, windowSize-s)
		w := f.wp
		if s >= w || w-s >= k {
			// no overlap, or the source is ahead (a forward copy; at the
			// window's size back it is the byte itself)
			copy(h[w:w+k], h[s:s+k])
		} else {
			for i := 0; i < k; {
				i += copy(h[w+i:w+k], h[s:w+i])
			}
		}
		f.wp += k
		length -= k
		if f.wp == windowSize {
			if err := f.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// ---- Huffman tables --------------------------------------------------------

const (
	primaryBits = 10
	linkFlag    = 0x80
)

// huff is a canonical Huffman decoding table indexed by the next input bits
// (least significant first). An entry is sym<<8 | code length; length 0
// marks bits that start no code; linkFlag marks a pointer to a second-level
// table (sym is its start in sub) for codes longer than primaryBits.
type huff struct {
	primary [1 << primaryBits]uint32
	sub     []uint32
	subMask uint64
	min     uint // bits read before a lookup (compress/flate's h.min)
}

var errTree = &CorruptError{Reason: "invalid Huffman code lengths"}

// init builds the table for lengths (0: symbol unused). It rejects what
// compress/flate's huffmanDecoder.init rejects: a set of lengths that is
// over-subscribed or incomplete, except a single code of length 1 (zlib
// accepts it); no code at all is accepted, and any lookup in it fails.
func (h *huff) init(lengths []uint8) bool {
	var count [16]int
	var lo, hi uint
	for _, n := range lengths {
		if n == 0 {
			continue
		}
		if lo == 0 || uint(n) < lo {
			lo = uint(n)
		}
		hi = max(hi, uint(n))
		count[n]++
	}
	h.min = lo
	h.primary = [1 << primaryBits]uint32{}
	h.sub = h.sub[:0]
	h.subMask = 0
	if hi == 0 {
		return true
	}
	var next [16]int
	code := 0
	for i := lo; i <= hi; i++ {
		code <<= 1
		next[i] = code
		code += count[i]
	}
	if code != 1<<hi && !(code == 1 && hi == 1) {
		return false
	}
	if hi > primaryBits {
		sb := hi - primaryBits
		h.subMask = 1<<sb - 1
		// one second-level table per primary slot that starts a long code
		nx := next
		for _, n := range lengths {
			if uint(n) <= primaryBits {
				continue
			}
			c := nx[n]
			nx[n]++
			slot := (bits.Reverse16(uint16(c)) >> (16 - n)) & (1<<primaryBits - 1)
			if h.primary[slot] == 0 {
				h.primary[slot] = uint32(len(h.sub))<<8 | linkFlag
				h.sub = append(h.sub, make([]uint32, 1<<sb)...)
			}
		}
	}
	for sym, n := range lengths {
		if n == 0 {
			continue
		}
		c := next[n]
		next[n]++
		rev := uint32(bits.Reverse16(uint16(c)) >> (16 - n))
		e := uint32(sym)<<8 | uint32(n)
		if uint(n) <= primaryBits {
			for i := rev; i < 1<<primaryBits; i += 1 << n {
				h.primary[i] = e
			}
			continue
		}
		base := h.primary[rev&(1<<primaryBits-1)] >> 8
		for i := rev >> primaryBits; i <= uint32(h.subMask); i += 1 << (uint(n) - primaryBits) {
			h.sub[base+i] = e
		}
	}
	return true
}

// lookup returns the entry for the bits in acc (zero beyond the bits read).
func (h *huff) lookup(acc uint64) uint32 {
	e := h.primary[acc&(1<<primaryBits-1)]
	if e&linkFlag != 0 {
		e = h.sub[uint64(e>>8)+(acc>>primaryBits)&h.subMask]
	}
	return e
}

var fixedLit, fixedDist huff

func init() {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	fixedLit.init(l[:])
	var d [32]uint8 // 30 and 31 complete the code; they are rejected when decoded
	for i := range d {
		d[i] = 5
	}
	fixedDist.init(d[:])
}
