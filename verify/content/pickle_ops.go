package content

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

// ---- opcodes ------------------------------------------------------------------
//
// The walker is driven by pickleOps: for each opcode, the shape of the
// argument that follows it in the stream (the argument descriptors of the
// opcodes list in CPython's Lib/pickletools.py) and a handler for what it
// does to the stack and memo. feed reads every argument the same way (input
// that ends inside it, arguments that run past the frame) and then calls
// the handler with the argument's bytes.

// argument shapes
const (
	shapeNone          uint8 = iota // no argument
	shapeFixed                      // n bytes: uint1, uint2, int4, uint4, float8, uint8
	shapeCounted                    // an n-byte unsigned length, then as many bytes: string1, bytes1/4/8, unicodestring1/4/8, bytearray8, long1
	shapeCountedSigned              // a signed int4 length (negative refused), then as many bytes: string4, long4
	shapeLine                       // a line up to '\n': decimalnl_short/long, floatnl, stringnl, stringnl_noescape, unicodestringnl
	shapeLines                      // two lines: stringnl_noescape_pair
)

// opHandler applies opcode op found at absolute offset off. arg is its
// argument: the fixed bytes, the counted payload (without the length), or
// the text line (for two lines, both with the '\n' between them).
type opHandler func(w *pickleWalker, op byte, off int64, arg []byte) error

type opSpec struct {
	shape uint8
	n     uint8 // shapeFixed: the width; shapeCounted(Signed): the width of the length
	// pre, when set, checks the opcode before its argument is read (arg is
	// nil): a refused opcode (or a byte that is no opcode) is refused
	// whatever follows it, and has no do.
	pre opHandler
	// do applies the opcode; it may set w.event.
	do opHandler
	// skip: do never reads the counted payload (bytes), so a payload the
	// input does not hold yet is skipped as it streams (evSkip), not
	// buffered: a 16 MiB BINBYTES8 costs no 16 MiB.
	skip bool
}

// pickleOps maps each opcode (named in opNames) to its argument shape and
// handler; protocol 0 and 1 opcodes first, then those of protocols 2 to 5.
var pickleOps = [256]opSpec{
	'(': {do: doMark},                                 // MARK
	'.': {do: doStop},                                 // STOP
	'0': {do: doPop},                                  // POP
	'1': {do: doPopMark},                              // POP_MARK
	'2': {do: doDup},                                  // DUP
	'F': {shape: shapeLine, do: doFloat},              // FLOAT floatnl
	'I': {shape: shapeLine, do: doIntLine},            // INT decimalnl_short
	'J': {shape: shapeFixed, n: 4, do: doBinInt},      // BININT int4
	'K': {shape: shapeFixed, n: 1, do: doBinInt},      // BININT1 uint1
	'L': {shape: shapeLine, do: doIntLine},            // LONG decimalnl_long
	'M': {shape: shapeFixed, n: 2, do: doBinInt},      // BININT2 uint2
	'N': {do: doNone},                                 // NONE
	'P': {shape: shapeLine, pre: refusePersid},        // PERSID stringnl_noescape
	'Q': {do: doBinPersid},                            // BINPERSID
	'R': {do: doReduce},                               // REDUCE
	'S': {shape: shapeLine, do: doString},             // STRING stringnl
	'T': {shape: shapeCountedSigned, n: 4, do: doStr}, // BINSTRING string4
	'U': {shape: shapeCounted, n: 1, do: doStr},       // SHORT_BINSTRING string1
	'V': {shape: shapeLine, do: doUnicode},            // UNICODE unicodestringnl
	'X': {shape: shapeCounted, n: 4, do: doStr},       // BINUNICODE unicodestring4
	'a': {do: doAppend},                               // APPEND
	'b': {do: doBuild},                                // BUILD
	'c': {shape: shapeLines, do: doGlobal},            // GLOBAL stringnl_noescape_pair
	'd': {do: doCollect},                              // DICT
	'}': {do: doEmpty},                                // EMPTY_DICT
	'e': {do: doFill},                                 // APPENDS
	'g': {shape: shapeLine, do: doGet},                // GET decimalnl_short
	'h': {shape: shapeFixed, n: 1, do: doGet},         // BINGET uint1
	'i': {shape: shapeLines, do: doInst},              // INST stringnl_noescape_pair
	'j': {shape: shapeFixed, n: 4, do: doGet},         // LONG_BINGET uint4
	'l': {do: doCollect},                              // LIST
	']': {do: doEmpty},                                // EMPTY_LIST
	'o': {do: doObj},                                  // OBJ
	'p': {shape: shapeLine, do: doPut},                // PUT decimalnl_short
	'q': {shape: shapeFixed, n: 1, do: doPut},         // BINPUT uint1
	'r': {shape: shapeFixed, n: 4, do: doPut},         // LONG_BINPUT uint4
	's': {do: doSetItem},                              // SETITEM
	't': {do: doCollect},                              // TUPLE
	')': {do: doEmpty},                                // EMPTY_TUPLE
	'u': {do: doFill},                                 // SETITEMS
	'G': {shape: shapeFixed, n: 8, do: doBinFloat},    // BINFLOAT float8

	0x80: {shape: shapeFixed, n: 1, do: doProto},                      // PROTO uint1
	0x81: {do: doNewObj},                                              // NEWOBJ
	0x82: {shape: shapeFixed, n: 1, pre: refuseExt},                   // EXT1 uint1
	0x83: {shape: shapeFixed, n: 2, pre: refuseExt},                   // EXT2 uint2
	0x84: {shape: shapeFixed, n: 4, pre: refuseExt},                   // EXT4 int4
	0x85: {do: doTupleN},                                              // TUPLE1
	0x86: {do: doTupleN},                                              // TUPLE2
	0x87: {do: doTupleN},                                              // TUPLE3
	0x88: {do: doBool},                                                // NEWTRUE
	0x89: {do: doBool},                                                // NEWFALSE
	0x8a: {shape: shapeCounted, n: 1, do: doBinLong},                  // LONG1 long1
	0x8b: {shape: shapeCountedSigned, n: 4, do: doBinLong},            // LONG4 long4
	'B':  {shape: shapeCounted, n: 4, do: doBytes, skip: true},        // BINBYTES bytes4
	'C':  {shape: shapeCounted, n: 1, do: doBytes},                    // SHORT_BINBYTES bytes1
	0x8c: {shape: shapeCounted, n: 1, do: doStr},                      // SHORT_BINUNICODE unicodestring1
	0x8d: {shape: shapeCounted, n: 8, do: doStr},                      // BINUNICODE8 unicodestring8
	0x8e: {shape: shapeCounted, n: 8, do: doBytes, skip: true},        // BINBYTES8 bytes8
	0x8f: {do: doEmpty},                                               // EMPTY_SET
	0x90: {do: doFill},                                                // ADDITEMS
	0x91: {do: doCollect},                                             // FROZENSET
	0x92: {do: doNewObj},                                              // NEWOBJ_EX
	0x93: {do: doStackGlobal},                                         // STACK_GLOBAL
	0x94: {do: doPut},                                                 // MEMOIZE
	0x95: {shape: shapeFixed, n: 8, pre: checkFrameOpen, do: doFrame}, // FRAME uint8
	0x96: {shape: shapeCounted, n: 8, do: doBytes, skip: true},        // BYTEARRAY8 bytearray8
	0x97: {pre: refuseBuffer},                                         // NEXT_BUFFER
	0x98: {pre: refuseBuffer},                                         // READONLY_BUFFER
}

func init() {
	for op := range pickleOps {
		if pickleOps[op].do == nil && pickleOps[op].pre == nil {
			pickleOps[op].pre = refuseInvalid
		}
	}
}

// feed walks complete opcodes in b, whose first byte is at absolute offset
// base. It returns the number of bytes consumed and an event: evStop after
// a STOP (consumption stops right after it), evArray after a joblib array
// wrapper was built (its array bytes follow), evSkip when b ends inside a
// bytes payload (w.skipLeft more payload bytes follow, to be skipped),
// evMore otherwise; then, if
// consumed < len(b), the next opcode is incomplete: call again with more
// bytes appended.
func (w *pickleWalker) feed(b []byte, base int64) (consumed int, ev uint8, err error) {
	i := 0
	for i < len(b) {
		op, off := b[i], base+int64(i)
		if w.frameEnd >= 0 && off >= w.frameEnd {
			w.frameEnd = -1 // the frame ended exactly here
		}
		w.ops++
		if w.ops > w.maxOps {
			return i, evMore, w.errAt(off, "more than %d opcodes", w.maxOps)
		}
		if !w.inPickle {
			w.inPickle = true
			w.pickles++
		}
		s := &pickleOps[op]
		if s.pre != nil {
			if err := s.pre(w, op, off, nil); err != nil {
				return i, evMore, err
			}
		}
		arg, next := []byte(nil), i+1
		if s.skip && w.frameEnd < 0 {
			// Outside a frame, a bytes payload that b does not hold whole
			// is skipped as it arrives (within the same length limit);
			// inside a frame it is read whole as before (the frame's end
			// decides overruns from offsets alone).
			if start := next + int(s.n); start <= len(b) {
				if ln := leUint(b[next:start]); ln <= uint64(w.maxString) && uint64(len(b)-start) < ln {
					if err := s.do(w, op, off, nil); err != nil {
						return i, evMore, err
					}
					w.skipLeft = int64(ln) - int64(len(b)-start)
					return len(b), evSkip, nil
				}
			}
		}
		if end := next + int(s.n); s.shape == shapeFixed && w.fits(b, base, end) {
			arg, next = b[next:end], end // the common case, without a call
		} else if s.shape != shapeNone {
			if arg, next, err = w.readArg(s, b, next, base, op, off); err != nil {
				return i, evMore, err
			}
			if next < 0 {
				// walked again (and counted again) with more bytes
				w.ops--
				return i, evMore, nil
			}
		}
		if err := s.do(w, op, off, arg); err != nil {
			return i, evMore, err
		}
		i = next
		if w.event != evMore {
			ev, w.event = w.event, evMore
			return i, ev, nil
		}
	}
	return i, evMore, nil
}

// readArg reads the argument at b[i:] of opcode op (at offset off; its
// shape per s) and returns it and the index after it. next < 0 means b ends
// inside the argument: the opcode is walked again with more bytes. An
// argument that would run past the current frame is an error instead,
// decided from offsets alone, so the finding does not depend on how the
// stream is chunked.
func (w *pickleWalker) readArg(s *opSpec, b []byte, i int, base int64, op byte, off int64) (arg []byte, next int, err error) {
	switch s.shape {
	case shapeNone:
		return nil, i, nil
	case shapeFixed:
		end := i + int(s.n)
		if !w.fits(b, base, end) {
			return nil, -1, w.overrun(base, end, op, off)
		}
		return b[i:end], end, nil
	case shapeCounted, shapeCountedSigned:
		start := i + int(s.n)
		if !w.fits(b, base, start) {
			return nil, -1, w.overrun(base, start, op, off)
		}
		ln := leUint(b[i:start])
		if s.shape == shapeCountedSigned && int32(ln) < 0 {
			return nil, 0, w.errAt(off, "%s with negative length %d", opName(op), int32(ln))
		}
		if ln > uint64(w.maxString) {
			name := opName(op)
			if op == 0x8a {
				name = "LONG4" // LONG1 reports as LONG4, as the walker always did
			}
			return nil, 0, w.errAt(off, "%s of %d bytes exceeds the limit of %d", name, ln, w.maxString)
		}
		end := start + int(ln)
		if !w.fits(b, base, end) {
			return nil, -1, w.overrun(base, end, op, off)
		}
		return b[start:end], end, nil
	}
	arg, next, err = w.line(b, i, base, off, op)
	if err != nil || next < 0 || s.shape == shapeLine {
		return arg, next, err
	}
	_, next, err = w.line(b, next, base, off, op)
	if err != nil || next < 0 {
		return nil, next, err
	}
	return b[i : next-1], next, nil
}

// fits reports whether b holds the opcode's bytes up to index end, inside
// the current frame.
func (w *pickleWalker) fits(b []byte, base int64, end int) bool {
	return end <= len(b) && (w.frameEnd < 0 || base+int64(end) <= w.frameEnd)
}

// overrun is the error of an opcode whose argument, ending at b[end],
// would run past the current frame (nil when it only needs more bytes).
func (w *pickleWalker) overrun(base int64, end int, op byte, off int64) error {
	if w.frameEnd >= 0 && base+int64(end) > w.frameEnd {
		return w.frameErr(off, op)
	}
	return nil
}

// line returns the bytes of b[i:] up to '\n' (excluded) and the index after
// the newline; next < 0 means more bytes are needed. The line must end
// within the current frame.
func (w *pickleWalker) line(b []byte, i int, base, off int64, op byte) (line []byte, next int, err error) {
	lim := min(len(b), i+maxLineArg+1)
	frameLim := int64(-1)
	if w.frameEnd >= 0 {
		frameLim = w.frameEnd - base
		if frameLim < int64(lim) {
			lim = int(max(frameLim, int64(i)))
		}
	}
	if k := bytes.IndexByte(b[i:lim], '\n'); k >= 0 {
		return b[i : i+k], i + k + 1, nil
	}
	if frameLim >= 0 && frameLim <= int64(len(b)) && frameLim-int64(i) <= maxLineArg {
		return nil, 0, w.frameErr(off, op)
	}
	if len(b)-i > maxLineArg {
		return nil, 0, w.errAt(off, "text argument longer than %d bytes", maxLineArg)
	}
	return nil, -1, nil
}

// leUint decodes a 1-, 2-, 4- or 8-byte little-endian unsigned integer.
func leUint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b)
}

// ---- opcodes refused whatever their argument --------------------------------

func refuseInvalid(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.errAt(off, "invalid pickle opcode 0x%02x", op)
}

func refusePersid(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.errAt(off, "PERSID (text persistent id) is not a torch storage reference; no loader of model files accepts it")
}

func refuseExt(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.errAt(off, "%s opcode (copyreg extension registry) cannot be resolved statically", opName(op))
}

func refuseBuffer(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.errAt(off, "%s opcode (out-of-band buffer) is not allowed", opName(op))
}

// ---- stack, frame and protocol ------------------------------------------------

func doMark(w *pickleWalker, op byte, off int64, arg []byte) error {
	if len(w.marks)+len(w.stack) >= w.maxStack {
		return w.stackFull(off)
	}
	w.marks = append(w.marks, len(w.stack))
	return nil
}

func doStop(w *pickleWalker, op byte, off int64, arg []byte) error {
	if len(w.marks) != 0 || len(w.stack) != 1 {
		return w.errAt(off, "STOP with %d stack items and %d marks (want exactly one value)", len(w.stack), len(w.marks))
	}
	if w.frameEnd >= 0 && off+1 != w.frameEnd {
		return w.errAt(off, "STOP %d bytes before the end of its FRAME (the loaders disagree on what follows)", w.frameEnd-off-1)
	}
	w.result = w.stack[0]
	w.reset()
	w.event = evStop
	return nil
}

// doPop pops the top item; on an empty stack frame it pops the mark, as
// CPython's unpicklers do.
func doPop(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() > 0 {
		w.stack = w.stack[:len(w.stack)-1]
		return nil
	}
	if len(w.marks) == 0 {
		return w.errAt(off, "POP on an empty stack")
	}
	w.marks = w.marks[:len(w.marks)-1]
	return nil
}

func doPopMark(w *pickleWalker, op byte, off int64, arg []byte) error {
	_, err := w.popMark(off)
	return err
}

func doDup(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() == 0 {
		return w.errAt(off, "DUP on an empty stack")
	}
	return w.push(off, w.stack[len(w.stack)-1])
}

func doProto(w *pickleWalker, op byte, off int64, arg []byte) error {
	if arg[0] > 5 {
		return w.errAt(off, "unsupported pickle protocol %d", arg[0])
	}
	w.proto = int(arg[0])
	return nil
}

func checkFrameOpen(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameEnd >= 0 {
		return w.errAt(off, "FRAME opened %d bytes before the previous FRAME ends (CPython since gh-154848 refuses it)", w.frameEnd-off)
	}
	return nil
}

func doFrame(w *pickleWalker, op byte, off int64, arg []byte) error {
	fl := leUint(arg)
	if fl > 1<<40 {
		return w.errAt(off, "FRAME of %d bytes", fl)
	}
	w.frameEnd = off + 9 + int64(fl) // after the opcode and its 8 bytes
	return nil
}

// ---- values -------------------------------------------------------------------

func doNone(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.push(off, pval{kind: vNone})
}

// doBool pushes NEWTRUE or NEWFALSE.
func doBool(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.push(off, pval{kind: vBool, n: int64(0x89 - int(op))})
}

// doBinFloat pushes BINFLOAT (its value is not kept).
func doBinFloat(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.push(off, pval{kind: vFloat})
}

// doBytes pushes bytes or a bytearray (not kept).
func doBytes(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.push(off, pval{kind: vBytes})
}

func doEmpty(w *pickleWalker, op byte, off int64, arg []byte) error {
	var v pval
	switch op {
	case ')':
		v = pval{kind: vTuple, ref: int32(len(w.tuples))}
	case ']':
		v = pval{kind: vList}
	case '}':
		v = w.newDict(nil)
	default: // EMPTY_SET
		v = pval{kind: vSet}
	}
	return w.push(off, v)
}

func doBinInt(w *pickleWalker, op byte, off int64, arg []byte) error {
	n := int64(leUint(arg))
	if len(arg) == 4 {
		n = int64(int32(n)) // BININT is signed
	}
	return w.push(off, pval{kind: vInt, n: n})
}

func doFloat(w *pickleWalker, op byte, off int64, arg []byte) error {
	if _, err := strconv.ParseFloat(string(arg), 64); err != nil {
		return w.errAt(off, "invalid float literal %q", truncate(string(arg)))
	}
	return w.push(off, pval{kind: vFloat})
}

// doIntLine pushes the decimal INT or LONG: INT 00 and 01 are False and
// True; values past int64 are kept as unknown longs.
func doIntLine(w *pickleWalker, op byte, off int64, arg []byte) error {
	s := string(arg)
	if op == 'L' {
		s = strings.TrimSuffix(s, "L")
	}
	v := pval{kind: vInt}
	switch {
	case op == 'I' && s == "00":
		v = pval{kind: vBool, n: 0}
	case op == 'I' && s == "01":
		v = pval{kind: vBool, n: 1}
	default:
		x, err := strconv.ParseInt(s, 10, 64)
		if err == nil {
			v.n = x
		} else if isDecimal(s) {
			v = pval{kind: vLong, ref: -1}
		} else {
			return w.errAt(off, "invalid integer literal %q", truncate(s))
		}
	}
	return w.push(off, v)
}

// doBinLong pushes LONG1 / LONG4 (two's complement, little-endian): an int
// up to 8 bytes, kept bytes up to 16, an unknown long past that.
func doBinLong(w *pickleWalker, op byte, off int64, arg []byte) error {
	data, ln := arg, len(arg)
	v := pval{kind: vLong, ref: -1}
	if ln <= 8 {
		var x uint64
		for k := ln - 1; k >= 0; k-- {
			x = x<<8 | uint64(data[k])
		}
		if ln > 0 && ln < 8 && data[ln-1]&0x80 != 0 { // sign-extend
			x |= ^uint64(0) << (8 * ln)
		}
		v = pval{kind: vInt, n: int64(x)}
	} else if ln <= 16 {
		var err error
		if v, err = w.keep(off, vLong, data); err != nil {
			return err
		}
	}
	return w.push(off, v)
}

// doStr pushes a counted str (BINSTRING and the BINUNICODEs).
func doStr(w *pickleWalker, op byte, off int64, arg []byte) error { return w.pushStr(off, arg, true) }

// doString pushes STRING, a quoted repr.
func doString(w *pickleWalker, op byte, off int64, arg []byte) error {
	line := arg
	if len(line) < 2 || (line[0] != '\'' && line[0] != '"') || line[len(line)-1] != line[0] {
		return w.errAt(off, "STRING argument is not quoted")
	}
	return w.pushStr(off, line[1:len(line)-1], bytes.IndexByte(line, '\\') < 0)
}

// doUnicode pushes UNICODE, a raw-unicode-escape line.
func doUnicode(w *pickleWalker, op byte, off int64, arg []byte) error {
	return w.pushStr(off, arg, bytes.IndexByte(arg, '\\') < 0)
}

// ---- memo -----------------------------------------------------------------------

func doGet(w *pickleWalker, op byte, off int64, arg []byte) error {
	idx, err := w.memoIndex(op, off, arg)
	if err != nil {
		return err
	}
	v, ok := w.memoGet(idx)
	if !ok {
		return w.errAt(off, "%s of memo index %d that was never stored", opName(op), idx)
	}
	return w.push(off, v)
}

// doPut stores the top of the stack: PUT family at its index, MEMOIZE at
// the number of entries.
func doPut(w *pickleWalker, op byte, off int64, arg []byte) error {
	idx := uint64(w.memoCount)
	if op != 0x94 {
		var err error
		if idx, err = w.memoIndex(op, off, arg); err != nil {
			return err
		}
	}
	if w.frameLen() == 0 {
		return w.errAt(off, "%s on an empty stack", opName(op))
	}
	return w.memoPut(off, idx, w.stack[len(w.stack)-1])
}

// memoIndex is the memo index argument of a GET or PUT: a decimal line
// (GET, PUT) or little-endian bytes.
func (w *pickleWalker) memoIndex(op byte, off int64, arg []byte) (uint64, error) {
	if op != 'g' && op != 'p' {
		return leUint(arg), nil
	}
	x, err := strconv.ParseUint(string(arg), 10, 32)
	if err != nil {
		return 0, w.errAt(off, "invalid memo index %q", truncate(string(arg)))
	}
	return x, nil
}

// ---- containers -----------------------------------------------------------------

func doAppend(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() < 2 {
		return w.errAt(off, "APPEND needs 2 stack items")
	}
	if err := w.checkTarget(off, "APPEND", w.stack[len(w.stack)-2], vList); err != nil {
		return err
	}
	w.stack = w.stack[:len(w.stack)-1]
	return nil
}

func doSetItem(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() < 3 {
		return w.errAt(off, "SETITEM needs 3 stack items")
	}
	t := w.stack[len(w.stack)-3]
	if err := w.checkTarget(off, "SETITEM", t, vDict); err != nil {
		return err
	}
	w.dictAdd(t, w.stack[len(w.stack)-2:])
	w.stack = w.stack[:len(w.stack)-2]
	return nil
}

// markItems pops the items above the topmost mark (see popMark); with
// pairs, they must be key/value pairs.
func (w *pickleWalker) markItems(op byte, off int64, pairs bool) ([]pval, error) {
	items, err := w.popMark(off)
	if err == nil && pairs && len(items)%2 != 0 {
		err = w.errAt(off, "%s with an odd number of items", opName(op))
	}
	return items, err
}

// doFill applies APPENDS, SETITEMS and ADDITEMS: the items above the mark
// go into the container below it.
func doFill(w *pickleWalker, op byte, off int64, arg []byte) error {
	items, err := w.markItems(op, off, op == 'u')
	if err != nil {
		return err
	}
	if w.frameLen() == 0 {
		return w.errAt(off, "%s without a target container", opName(op))
	}
	t := w.stack[len(w.stack)-1]
	want := vList
	switch op {
	case 'u':
		want = vDict
	case 0x90:
		want = vSet
	}
	if err := w.checkTarget(off, opName(op), t, want); err != nil {
		return err
	}
	if op == 'u' {
		w.dictAdd(t, items)
	}
	return nil
}

// doCollect applies DICT, LIST, TUPLE and FROZENSET: the items above the
// mark become one container.
func doCollect(w *pickleWalker, op byte, off int64, arg []byte) error {
	items, err := w.markItems(op, off, op == 'd')
	if err != nil {
		return err
	}
	var v pval
	switch op {
	case 't':
		v = w.tuple(items)
	case 'd':
		v = w.newDict(items)
	case 'l':
		v = pval{kind: vList}
	default:
		v = pval{kind: vFrozenset}
	}
	w.stack = append(w.stack, v)
	return nil
}

func doTupleN(w *pickleWalker, op byte, off int64, arg []byte) error {
	k := int(op-0x85) + 1
	if w.frameLen() < k {
		return w.errAt(off, "TUPLE%d needs %d stack items", k, k)
	}
	v := w.tuple(w.stack[len(w.stack)-k:])
	w.stack = append(w.stack[:len(w.stack)-k], v)
	return nil
}

// ---- imports, calls and state -------------------------------------------------------

// resolveLines resolves the "module\nname" argument of GLOBAL and INST.
func (w *pickleWalker) resolveLines(op byte, off int64, arg []byte) (pval, error) {
	module, name, _ := bytes.Cut(arg, []byte{'\n'})
	return w.resolve(off, module, name, opName(op))
}

func doGlobal(w *pickleWalker, op byte, off int64, arg []byte) error {
	g, err := w.resolveLines(op, off, arg)
	if err != nil {
		return err
	}
	return w.push(off, g)
}

func doStackGlobal(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() < 2 {
		return w.errAt(off, "STACK_GLOBAL needs 2 stack items")
	}
	mod, nm := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
	if mod.kind != vStr || nm.kind != vStr {
		return w.errAt(off, "STACK_GLOBAL with a module or name that is not a literal string (cannot be resolved statically)")
	}
	g, err := w.resolve(off, w.arena[mod.ref:int64(mod.ref)+mod.n], w.arena[nm.ref:int64(nm.ref)+nm.n], "STACK_GLOBAL")
	if err != nil {
		return err
	}
	w.stack = append(w.stack[:len(w.stack)-2], g)
	return nil
}

// doInst applies INST: GLOBAL, then a call with the items above the mark.
func doInst(w *pickleWalker, op byte, off int64, arg []byte) error {
	g, err := w.resolveLines(op, off, arg)
	if err != nil {
		return err
	}
	items, err := w.popMark(off)
	if err != nil {
		return err
	}
	res, err := w.callItems(off, "INST", g, items)
	if err != nil {
		return err
	}
	w.stack = append(w.stack, res)
	return nil
}

// doObj applies OBJ: the first item above the mark called with the rest.
func doObj(w *pickleWalker, op byte, off int64, arg []byte) error {
	items, err := w.popMark(off)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return w.errAt(off, "OBJ instantiates a value that is not an allowlisted global")
	}
	res, err := w.callItems(off, "OBJ", items[0], items[1:])
	if err != nil {
		return err
	}
	w.stack = append(w.stack, res)
	return nil
}

func doReduce(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() < 2 {
		return w.errAt(off, "REDUCE needs 2 stack items")
	}
	fn, args := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
	res, err := w.call(off, "REDUCE", fn, args)
	if err != nil {
		return err
	}
	w.stack = append(w.stack[:len(w.stack)-2], res)
	return nil
}

// doNewObj applies NEWOBJ (cls, args) and NEWOBJ_EX (cls, args, kwargs).
func doNewObj(w *pickleWalker, op byte, off int64, arg []byte) error {
	n := 2
	if op == 0x92 {
		n = 3
	}
	if w.frameLen() < n {
		return w.errAt(off, "%s needs %d stack items", opName(op), n)
	}
	top := w.stack[len(w.stack)-n:]
	res, err := w.newObj(off, opName(op), top[0], top[1])
	if err != nil {
		return err
	}
	if op == 0x92 && top[2].kind != vDict {
		return w.errAt(off, "NEWOBJ_EX keyword arguments are %s, not a dict", w.describe(top[2]))
	}
	w.stack = append(w.stack[:len(w.stack)-n], res)
	return nil
}

func doBinPersid(w *pickleWalker, op byte, off int64, arg []byte) error {
	v, err := w.pop(off, "BINPERSID")
	if err != nil {
		return err
	}
	if err := w.persistentID(off, v); err != nil {
		return err
	}
	w.stack = append(w.stack, pval{kind: vPersist})
	return nil
}

func doBuild(w *pickleWalker, op byte, off int64, arg []byte) error {
	if w.frameLen() < 2 {
		return w.errAt(off, "BUILD needs 2 stack items")
	}
	inst, state := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
	res, array, err := w.build(off, inst, state)
	if err != nil {
		return err
	}
	w.stack = w.stack[:len(w.stack)-1]
	if !array {
		return nil
	}
	// joblib replaces the wrapper with the array it reads; the array bytes
	// follow outside any frame.
	if end := off + 1; w.frameEnd >= 0 && end != w.frameEnd {
		return w.errAt(off, "joblib array wrapper built %d bytes before the end of its FRAME (the array bytes must follow the frame)", w.frameEnd-end)
	}
	w.frameEnd = -1
	w.stack[len(w.stack)-1] = res
	w.event = evArray
	return nil
}
