package content

// The pickle walker's opcode loop as it was before it became table-driven
// (a 449-line switch), kept only to check the new one against it
// (FuzzPickleDifferential). Helpers the rewrite did not touch are shared
// through the embedded walker.

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
)

type oldPickleWalker struct{ *pickleWalker }

// fits reports whether b holds the opcode's bytes up to index end, inside
// the current frame. When it does not, incomplete tells why: bytes past the
// frame's end are refused (decided from offsets alone, so the finding does
// not depend on how the stream is chunked); otherwise more bytes are needed.
func (w *oldPickleWalker) fits(b []byte, base int64, end int) bool {
	return end <= len(b) && (w.frameEnd < 0 || base+int64(end) <= w.frameEnd)
}

func (w *oldPickleWalker) incomplete(base int64, end, start int, off int64, op byte) (int, uint8, error) {
	if err := w.overrun(base, end, off, op); err != nil {
		return start, evMore, err
	}
	return w.needMore(start)
}

// needMore answers an opcode that starts at b[start] and is not complete
// in b: it is walked again (and counted again) with more bytes.
func (w *oldPickleWalker) needMore(start int) (int, uint8, error) {
	w.ops--
	return start, evMore, nil
}

// overrun is the error of an opcode whose argument, ending at b[end],
// would run past the current frame (nil when it only needs more bytes).
func (w *oldPickleWalker) overrun(base int64, end int, off int64, op byte) error {
	if w.frameEnd >= 0 && base+int64(end) > w.frameEnd {
		return w.frameErr(off, op)
	}
	return nil
}

// feed walks complete opcodes in b, whose first byte is at absolute offset
// base. It returns the number of bytes consumed and an event: evStop after
// a STOP (consumption stops right after it), evArray after a joblib array
// wrapper was built (its array bytes follow), evMore otherwise; then, if
// consumed < len(b), the next opcode is incomplete: call again with more
// bytes appended.
func (w *oldPickleWalker) feed(b []byte, base int64) (consumed int, ev uint8, err error) {
	i := 0
	for i < len(b) {
		start := i
		op := b[i]
		off := base + int64(i)
		if w.frameEnd >= 0 && off >= w.frameEnd {
			w.frameEnd = -1 // the frame ended exactly here
		}
		i++
		w.ops++
		if w.ops > w.maxOps {
			return start, evMore, w.errAt(off, "more than %d opcodes", w.maxOps)
		}
		if !w.inPickle {
			w.inPickle = true
			w.pickles++
		}
		switch op {
		case '(': // MARK
			if len(w.marks)+len(w.stack) >= w.maxStack {
				return start, evMore, w.errAt(off, "stack depth exceeds %d", w.maxStack)
			}
			w.marks = append(w.marks, len(w.stack))
		case '.': // STOP
			if len(w.marks) != 0 || len(w.stack) != 1 {
				return start, evMore, w.errAt(off, "STOP with %d stack items and %d marks (want exactly one value)", len(w.stack), len(w.marks))
			}
			if w.frameEnd >= 0 && off+1 != w.frameEnd {
				return start, evMore, w.errAt(off, "STOP %d bytes before the end of its FRAME (the loaders disagree on what follows)", w.frameEnd-off-1)
			}
			w.result = w.stack[0]
			w.reset()
			return i, evStop, nil
		case '0': // POP
			if w.frameLen() == 0 {
				if len(w.marks) == 0 {
					return start, evMore, w.errAt(off, "POP on an empty stack")
				}
				w.marks = w.marks[:len(w.marks)-1]
			} else {
				w.stack = w.stack[:len(w.stack)-1]
			}
		case '1': // POP_MARK
			if _, err := w.popMark(off); err != nil {
				return start, evMore, err
			}
		case '2': // DUP
			if w.frameLen() == 0 {
				return start, evMore, w.errAt(off, "DUP on an empty stack")
			}
			if err := w.push(off, w.stack[len(w.stack)-1]); err != nil {
				return start, evMore, err
			}
		case 'F', 'I', 'L': // FLOAT, INT, LONG (decimal lines)
			line, next, err := w.line(b, i, base, off, op)
			if err != nil {
				return start, evMore, err
			}
			if next < 0 {
				return w.needMore(start)
			}
			i = next
			v := pval{kind: vFloat}
			if op != 'F' {
				s := string(line)
				if op == 'L' {
					s = strings.TrimSuffix(s, "L")
				}
				switch {
				case op == 'I' && s == "00":
					v = pval{kind: vBool, n: 0}
				case op == 'I' && s == "01":
					v = pval{kind: vBool, n: 1}
				default:
					x, perr := strconv.ParseInt(s, 10, 64)
					if perr != nil {
						if !isDecimal(s) {
							return start, evMore, w.errAt(off, "invalid integer literal %q", truncate(s))
						}
						v = pval{kind: vLong, ref: -1}
					} else {
						v = pval{kind: vInt, n: x}
					}
				}
			} else if _, perr := strconv.ParseFloat(string(line), 64); perr != nil {
				return start, evMore, w.errAt(off, "invalid float literal %q", truncate(string(line)))
			}
			if err := w.push(off, v); err != nil {
				return start, evMore, err
			}
		case 'J', 'K', 'M', 'G': // BININT, BININT1, BININT2, BINFLOAT
			n := 4
			switch op {
			case 'K':
				n = 1
			case 'M':
				n = 2
			case 'G':
				n = 8
			}
			if !w.fits(b, base, i+n) {
				return w.incomplete(base, i+n, start, off, op)
			}
			v := pval{kind: vInt}
			switch op {
			case 'J':
				v.n = int64(int32(binary.LittleEndian.Uint32(b[i:])))
			case 'K':
				v.n = int64(b[i])
			case 'M':
				v.n = int64(binary.LittleEndian.Uint16(b[i:]))
			case 'G':
				v = pval{kind: vFloat}
			}
			i += n
			if err := w.push(off, v); err != nil {
				return start, evMore, err
			}
		case 'N':
			if err := w.push(off, pval{kind: vNone}); err != nil {
				return start, evMore, err
			}
		case 0x88, 0x89: // NEWTRUE, NEWFALSE
			if err := w.push(off, pval{kind: vBool, n: int64(0x89 - int(op))}); err != nil {
				return start, evMore, err
			}
		case ')', ']', '}', 0x8f: // EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, EMPTY_SET
			var v pval
			switch op {
			case ')':
				v = pval{kind: vTuple, ref: int32(len(w.tuples))}
			case ']':
				v = pval{kind: vList}
			case '}':
				v = w.newDict(nil)
			default:
				v = pval{kind: vSet}
			}
			if err := w.push(off, v); err != nil {
				return start, evMore, err
			}
		case 'P': // PERSID
			return start, evMore, w.errAt(off, "PERSID (text persistent id) is not a torch storage reference; no loader of model files accepts it")
		case 'Q': // BINPERSID
			v, err := w.pop(off, "BINPERSID")
			if err != nil {
				return start, evMore, err
			}
			if err := w.persistentID(off, v); err != nil {
				return start, evMore, err
			}
			w.stack = append(w.stack, pval{kind: vPersist})
		case 'R': // REDUCE
			if w.frameLen() < 2 {
				return start, evMore, w.errAt(off, "REDUCE needs 2 stack items")
			}
			fn, args := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
			res, err := w.call(off, "REDUCE", fn, args)
			if err != nil {
				return start, evMore, err
			}
			w.stack = append(w.stack[:len(w.stack)-2], res)
		case 0x81, 0x92: // NEWOBJ, NEWOBJ_EX
			n := 2
			if op == 0x92 {
				n = 3
			}
			if w.frameLen() < n {
				return start, evMore, w.errAt(off, "%s needs %d stack items", opName(op), n)
			}
			top := w.stack[len(w.stack)-n:]
			res, err := w.newObj(off, opName(op), top[0], top[1])
			if err != nil {
				return start, evMore, err
			}
			if op == 0x92 && top[2].kind != vDict {
				return start, evMore, w.errAt(off, "NEWOBJ_EX keyword arguments are %s, not a dict", w.describe(top[2]))
			}
			w.stack = append(w.stack[:len(w.stack)-n], res)
		case 'S': // STRING (quoted repr)
			line, next, err := w.line(b, i, base, off, op)
			if err != nil {
				return start, evMore, err
			}
			if next < 0 {
				return w.needMore(start)
			}
			i = next
			if len(line) < 2 || (line[0] != '\'' && line[0] != '"') || line[len(line)-1] != line[0] {
				return start, evMore, w.errAt(off, "STRING argument is not quoted")
			}
			if err := w.pushStr(off, line[1:len(line)-1], bytes.IndexByte(line, '\\') < 0); err != nil {
				return start, evMore, err
			}
		case 'V': // UNICODE (raw-unicode-escape line)
			line, next, err := w.line(b, i, base, off, op)
			if err != nil {
				return start, evMore, err
			}
			if next < 0 {
				return w.needMore(start)
			}
			i = next
			if err := w.pushStr(off, line, bytes.IndexByte(line, '\\') < 0); err != nil {
				return start, evMore, err
			}
		case 'T', 'U', 'X', 0x8c, 0x8d, 'B', 'C', 0x8e, 0x96: // counted strings/bytes
			var lenSize int
			switch op {
			case 'U', 0x8c, 'C':
				lenSize = 1
			case 'T', 'X', 'B':
				lenSize = 4
			default:
				lenSize = 8
			}
			if !w.fits(b, base, i+lenSize) {
				return w.incomplete(base, i+lenSize, start, off, op)
			}
			var ln uint64
			switch lenSize {
			case 1:
				ln = uint64(b[i])
			case 4:
				if op == 'T' {
					if x := int32(binary.LittleEndian.Uint32(b[i:])); x < 0 {
						return start, evMore, w.errAt(off, "BINSTRING with negative length %d", x)
					}
				}
				ln = uint64(binary.LittleEndian.Uint32(b[i:]))
			default:
				ln = binary.LittleEndian.Uint64(b[i:])
			}
			if ln > uint64(w.maxString) {
				return start, evMore, w.errAt(off, "%s of %d bytes exceeds the limit of %d", opName(op), ln, w.maxString)
			}
			end := i + lenSize + int(ln)
			if !w.fits(b, base, end) {
				return w.incomplete(base, end, start, off, op)
			}
			data := b[i+lenSize : end]
			i = end
			var err error
			switch op {
			case 'B', 'C', 0x8e, 0x96:
				err = w.push(off, pval{kind: vBytes})
			default:
				err = w.pushStr(off, data, true)
			}
			if err != nil {
				return start, evMore, err
			}
		case 0x8a, 0x8b: // LONG1, LONG4
			lenSize := 1
			if op == 0x8b {
				lenSize = 4
			}
			if !w.fits(b, base, i+lenSize) {
				return w.incomplete(base, i+lenSize, start, off, op)
			}
			ln := uint64(b[i])
			if op == 0x8b {
				x := int32(binary.LittleEndian.Uint32(b[i:]))
				if x < 0 {
					return start, evMore, w.errAt(off, "LONG4 with negative length %d", x)
				}
				ln = uint64(x)
			}
			if ln > uint64(w.maxString) {
				return start, evMore, w.errAt(off, "LONG4 of %d bytes exceeds the limit of %d", ln, w.maxString)
			}
			end := i + lenSize + int(ln)
			if !w.fits(b, base, end) {
				return w.incomplete(base, end, start, off, op)
			}
			data := b[i+lenSize : end]
			i = end
			v := pval{kind: vLong, ref: -1}
			var err error
			if ln <= 8 {
				var x uint64
				for k := int(ln) - 1; k >= 0; k-- {
					x = x<<8 | uint64(data[k])
				}
				if ln > 0 && ln < 8 && data[ln-1]&0x80 != 0 { // sign-extend
					x |= ^uint64(0) << (8 * ln)
				}
				v = pval{kind: vInt, n: int64(x)}
			} else if ln <= 16 {
				v, err = w.keep(off, vLong, data)
				if err != nil {
					return start, evMore, err
				}
			}
			if err := w.push(off, v); err != nil {
				return start, evMore, err
			}
		case 'a': // APPEND
			if w.frameLen() < 2 {
				return start, evMore, w.errAt(off, "APPEND needs 2 stack items")
			}
			if err := w.checkTarget(off, "APPEND", w.stack[len(w.stack)-2], vList); err != nil {
				return start, evMore, err
			}
			w.stack = w.stack[:len(w.stack)-1]
		case 'b': // BUILD
			if w.frameLen() < 2 {
				return start, evMore, w.errAt(off, "BUILD needs 2 stack items")
			}
			inst, state := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
			res, array, err := w.build(off, inst, state)
			if err != nil {
				return start, evMore, err
			}
			w.stack = w.stack[:len(w.stack)-1]
			if array {
				// joblib replaces the wrapper with the array it reads; the
				// array bytes follow outside any frame.
				if w.frameEnd >= 0 && base+int64(i) != w.frameEnd {
					return start, evMore, w.errAt(off, "joblib array wrapper built %d bytes before the end of its FRAME (the array bytes must follow the frame)", w.frameEnd-base-int64(i))
				}
				w.frameEnd = -1
				w.stack[len(w.stack)-1] = res
				return i, evArray, nil
			}
		case 's': // SETITEM
			if w.frameLen() < 3 {
				return start, evMore, w.errAt(off, "SETITEM needs 3 stack items")
			}
			t := w.stack[len(w.stack)-3]
			if err := w.checkTarget(off, "SETITEM", t, vDict); err != nil {
				return start, evMore, err
			}
			w.dictAdd(t, w.stack[len(w.stack)-2:])
			w.stack = w.stack[:len(w.stack)-2]
		case 'e', 'u', 0x90: // APPENDS, SETITEMS, ADDITEMS
			items, err := w.popMark(off)
			if err != nil {
				return start, evMore, err
			}
			if op == 'u' && len(items)%2 != 0 {
				return start, evMore, w.errAt(off, "SETITEMS with an odd number of items")
			}
			if w.frameLen() == 0 {
				return start, evMore, w.errAt(off, "%s without a target container", opName(op))
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
				return start, evMore, err
			}
			if op == 'u' {
				w.dictAdd(t, items)
			}
		case 'd', 'l', 't', 0x91: // DICT, LIST, TUPLE, FROZENSET
			items, err := w.popMark(off)
			if err != nil {
				return start, evMore, err
			}
			if op == 'd' && len(items)%2 != 0 {
				return start, evMore, w.errAt(off, "DICT with an odd number of items")
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
		case 0x85, 0x86, 0x87: // TUPLE1..3
			k := int(op-0x85) + 1
			if w.frameLen() < k {
				return start, evMore, w.errAt(off, "TUPLE%d needs %d stack items", k, k)
			}
			v := w.tuple(w.stack[len(w.stack)-k:])
			w.stack = append(w.stack[:len(w.stack)-k], v)
		case 'c', 'i': // GLOBAL, INST
			l1, n1, err := w.line(b, i, base, off, op)
			if err != nil {
				return start, evMore, err
			}
			if n1 < 0 {
				return w.needMore(start)
			}
			l2, n2, err := w.line(b, n1, base, off, op)
			if err != nil {
				return start, evMore, err
			}
			if n2 < 0 {
				return w.needMore(start)
			}
			i = n2
			g, err := w.resolve(off, l1, l2, opName(op))
			if err != nil {
				return start, evMore, err
			}
			if op == 'c' {
				if err := w.push(off, g); err != nil {
					return start, evMore, err
				}
				break
			}
			items, err := w.popMark(off)
			if err != nil {
				return start, evMore, err
			}
			res, err := w.callItems(off, "INST", g, items)
			if err != nil {
				return start, evMore, err
			}
			w.stack = append(w.stack, res)
		case 0x93: // STACK_GLOBAL
			if w.frameLen() < 2 {
				return start, evMore, w.errAt(off, "STACK_GLOBAL needs 2 stack items")
			}
			mod, nm := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
			if mod.kind != vStr || nm.kind != vStr {
				return start, evMore, w.errAt(off, "STACK_GLOBAL with a module or name that is not a literal string (cannot be resolved statically)")
			}
			g, err := w.resolve(off, w.arena[mod.ref:int64(mod.ref)+mod.n], w.arena[nm.ref:int64(nm.ref)+nm.n], "STACK_GLOBAL")
			if err != nil {
				return start, evMore, err
			}
			w.stack = append(w.stack[:len(w.stack)-2], g)
		case 'o': // OBJ
			items, err := w.popMark(off)
			if err != nil {
				return start, evMore, err
			}
			if len(items) == 0 {
				return start, evMore, w.errAt(off, "OBJ instantiates a value that is not an allowlisted global")
			}
			res, err := w.callItems(off, "OBJ", items[0], items[1:])
			if err != nil {
				return start, evMore, err
			}
			w.stack = append(w.stack, res)
		case 'g', 'h', 'j': // GET, BINGET, LONG_BINGET
			idx, next, err := w.memoArg(b, i, base, off, op)
			if err != nil {
				return start, evMore, err
			}
			if next < 0 {
				return w.needMore(start)
			}
			i = next
			v, ok := w.memoGet(idx)
			if !ok {
				return start, evMore, w.errAt(off, "%s of memo index %d that was never stored", opName(op), idx)
			}
			if err := w.push(off, v); err != nil {
				return start, evMore, err
			}
		case 'p', 'q', 'r', 0x94: // PUT, BINPUT, LONG_BINPUT, MEMOIZE
			idx := uint64(w.memoCount)
			if op != 0x94 {
				x, next, err := w.memoArg(b, i, base, off, op)
				if err != nil {
					return start, evMore, err
				}
				if next < 0 {
					return w.needMore(start)
				}
				idx, i = x, next
			}
			if w.frameLen() == 0 {
				return start, evMore, w.errAt(off, "%s on an empty stack", opName(op))
			}
			if err := w.memoPut(off, idx, w.stack[len(w.stack)-1]); err != nil {
				return start, evMore, err
			}
		case 0x80: // PROTO
			if !w.fits(b, base, i+1) {
				return w.incomplete(base, i+1, start, off, op)
			}
			if b[i] > 5 {
				return start, evMore, w.errAt(off, "unsupported pickle protocol %d", b[i])
			}
			w.proto = int(b[i])
			i++
		case 0x95: // FRAME
			if w.frameEnd >= 0 {
				return start, evMore, w.errAt(off, "FRAME opened %d bytes before the previous FRAME ends (CPython since gh-154848 refuses it)", w.frameEnd-off)
			}
			if len(b)-i < 8 {
				return w.needMore(start)
			}
			fl := binary.LittleEndian.Uint64(b[i:])
			if fl > 1<<40 {
				return start, evMore, w.errAt(off, "FRAME of %d bytes", fl)
			}
			i += 8
			w.frameEnd = base + int64(i) + int64(fl)
		case 0x82, 0x83, 0x84:
			return start, evMore, w.errAt(off, "%s opcode (copyreg extension registry) cannot be resolved statically", opName(op))
		case 0x97, 0x98:
			return start, evMore, w.errAt(off, "%s opcode (out-of-band buffer) is not allowed", opName(op))
		default:
			return start, evMore, w.errAt(off, "invalid pickle opcode 0x%02x", op)
		}
	}
	return i, evMore, nil
}

// line returns the bytes of b[i:] up to '\n' (excluded) and the index after
// the newline; next < 0 means more bytes are needed. The line must end
// within the current frame.
func (w *oldPickleWalker) line(b []byte, i int, base, off int64, op byte) (line []byte, next int, err error) {
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

// memoLine parses the decimal memo index of GET / PUT.
// memoArg reads the memo index argument of a GET or PUT opcode at b[i:]:
// one byte (BINGET, BINPUT), four little-endian bytes (LONG_BINGET,
// LONG_BINPUT) or a decimal line (GET, PUT). next < 0 means b ends inside
// the argument: the opcode is walked again with more bytes (an argument
// that would run past the frame is an error instead).
func (w *oldPickleWalker) memoArg(b []byte, i int, base, off int64, op byte) (idx uint64, next int, err error) {
	width := 0
	switch op {
	case 'h', 'q':
		width = 1
	case 'j', 'r':
		width = 4
	default:
		return w.memoLine(b, i, base, off, op)
	}
	if !w.fits(b, base, i+width) {
		return 0, -1, w.overrun(base, i+width, off, op)
	}
	if width == 1 {
		return uint64(b[i]), i + 1, nil
	}
	return uint64(binary.LittleEndian.Uint32(b[i:])), i + 4, nil
}

func (w *oldPickleWalker) memoLine(b []byte, i int, base, off int64, op byte) (uint64, int, error) {
	line, next, err := w.line(b, i, base, off, op)
	if err != nil || next < 0 {
		return 0, next, err
	}
	x, perr := strconv.ParseUint(string(line), 10, 32)
	if perr != nil {
		return 0, 0, w.errAt(off, "invalid memo index %q", truncate(string(line)))
	}
	return x, next, nil
}
