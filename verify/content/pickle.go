package content

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DefaultPickleAllow is the default global allowlist: what a PyTorch
// state_dict needs (torch's weights_only set, narrowed): tensor and parameter
// rebuild functions, typed storages, torch.Size/device/dtypes and
// collections.OrderedDict. numpy is deliberately absent.
var DefaultPickleAllow = func() []string {
	a := []string{
		"collections.OrderedDict",
		"torch._utils._rebuild_tensor_v2",
		"torch._utils._rebuild_parameter",
		"torch._utils._rebuild_parameter_with_state",
		"torch.Size",
		"torch.device",
	}
	for _, s := range torchStorageNames {
		a = append(a, "torch."+s)
	}
	for _, d := range []string{"float32", "float", "float64", "double", "float16", "half", "bfloat16",
		"int8", "int16", "short", "int32", "int", "int64", "long", "uint8", "bool",
		"complex64", "cfloat", "complex128", "cdouble"} {
		a = append(a, "torch."+d)
	}
	return a
}()

// torchStorageNames lists the typed storage classes and their element size.
var torchStorageNames = []string{"LongStorage", "FloatStorage", "HalfStorage", "QUInt2x4Storage", "QUInt4x2Storage",
	"QInt32Storage", "QInt8Storage", "QUInt8Storage", "ComplexFloatStorage", "ComplexDoubleStorage",
	"DoubleStorage", "BFloat16Storage", "BoolStorage", "CharStorage", "ShortStorage", "IntStorage", "ByteStorage"}

var torchStorageElemSize = map[string]int64{
	"torch.LongStorage": 8, "torch.FloatStorage": 4, "torch.HalfStorage": 2, "torch.QUInt2x4Storage": 1,
	"torch.QUInt4x2Storage": 1, "torch.QInt32Storage": 4, "torch.QInt8Storage": 1, "torch.QUInt8Storage": 1,
	"torch.ComplexFloatStorage": 8, "torch.ComplexDoubleStorage": 16, "torch.DoubleStorage": 8,
	"torch.BFloat16Storage": 2, "torch.BoolStorage": 1, "torch.CharStorage": 1, "torch.ShortStorage": 2,
	"torch.IntStorage": 4, "torch.ByteStorage": 1,
}

// value kinds tracked on the symbolic stack.
const (
	vOther   uint8 = iota
	vStr           // str with known value (s)
	vStrLong       // str too long to keep, or with escapes we do not decode
	vBytes
	vInt    // n
	vLong   // s holds the little-endian two's complement bytes
	vGlobal // s holds "module.name" (already allowlisted)
	vTuple  // a tuple; ref >= 0 indexes w.tuples when it may be a persistent id
	vNone
	vUnset uint8 = 255 // memo hole
)

const maxKeptString = 256

// maxLineArg caps newline-terminated arguments (protocol 0 text opcodes).
const maxLineArg = 64 << 10

// pval is one symbolic stack/memo value. It holds no pointers (strings live
// in the walker's arena), so the stack and memo grow with plain memmoves and
// cost the garbage collector nothing.
type pval struct {
	kind uint8
	ref  int32 // vTuple: index into tupleArena (-1: not a persistent id); strings: arena offset
	n    int64 // vInt value; string length
}

// maxArena caps the bytes of strings kept for resolution.
const maxArena = 256 << 20

// storageRef is a persistent id ('storage', StorageType, key, location, numel).
type storageRef struct {
	Type  string
	Key   string
	Numel int64
}

// pickleWalker statically walks pickle opcodes (protocols 0-5) without
// executing anything. It resolves every import (GLOBAL, STACK_GLOBAL, INST),
// including through the memo, and refuses anything not allowlisted.
type pickleWalker struct {
	allow     map[string]bool
	maxOps    int64
	maxStack  int
	maxMemo   int
	maxString int64
	format    string

	stack      []pval
	marks      []int
	memo       []pval // dense memo; kind vUnset marks holes
	memoSparse map[uint64]pval
	memoCount  int
	tuples     []pval // persistent-id tuple items, 6 slots each
	arena      []byte // kept strings (module/name candidates, keys)
	ops        int64
	inPickle   bool
	result     pval // value returned by the last STOP
	globals    map[string]bool
	storages   []storageRef
	collect    *[]string // when set, every str pushed is appended
	pickles    int
}

func newPickleWalker(opts Options, format string) *pickleWalker {
	allowList := opts.Pickle.Allow
	if allowList == nil {
		allowList = DefaultPickleAllow
	}
	allow := make(map[string]bool, len(allowList))
	for _, a := range allowList {
		allow[a] = true
	}
	return &pickleWalker{
		allow:     allow,
		maxOps:    def64(opts.Pickle.MaxOps, 1<<26),
		maxStack:  defInt(opts.Pickle.MaxStack, 1<<16),
		maxMemo:   defInt(opts.Pickle.MaxMemo, 1<<20),
		maxString: def64(opts.Pickle.MaxString, 16<<20),
		format:    format,
		globals:   map[string]bool{},
	}
}

func (w *pickleWalker) reset() {
	w.stack = w.stack[:0]
	w.marks = w.marks[:0]
	w.memo = w.memo[:0]
	w.memoSparse = nil
	w.memoCount = 0
	w.inPickle = false
}

// Globals returns the sorted set of imports seen so far.
func (w *pickleWalker) Globals() []string {
	out := make([]string, 0, len(w.globals))
	for g := range w.globals {
		out = append(out, g)
	}
	sortStrings(out)
	return out
}

type walkErr struct {
	off    int64
	reason string
}

func (w *pickleWalker) errAt(off int64, reason string, args ...any) error {
	return newFinding(w.format, off, reason, args...)
}

// feed walks complete opcodes in b, whose first byte is at absolute offset
// base. It returns the number of bytes consumed and whether a STOP opcode
// ended a pickle (then consumption stops right after it). If consumed <
// len(b) and !stopped, the next opcode is incomplete: call again with more
// bytes appended.
func (w *pickleWalker) feed(b []byte, base int64) (consumed int, stopped bool, err error) {
	i := 0
	for i < len(b) {
		start := i
		op := b[i]
		off := base + int64(i)
		i++
		w.ops++
		if w.ops > w.maxOps {
			return start, false, w.errAt(off, "more than %d opcodes", w.maxOps)
		}
		if !w.inPickle {
			w.inPickle = true
			w.pickles++
		}
		switch op {
		case '(': // MARK
			if len(w.marks)+len(w.stack) >= w.maxStack {
				return start, false, w.errAt(off, "stack depth exceeds %d", w.maxStack)
			}
			w.marks = append(w.marks, len(w.stack))
		case '.': // STOP
			if len(w.marks) != 0 || len(w.stack) != 1 {
				return start, false, w.errAt(off, "STOP with %d stack items and %d marks (want exactly one value)", len(w.stack), len(w.marks))
			}
			w.result = w.stack[0]
			w.reset()
			return i, true, nil
		case '0': // POP
			if w.frameLen() == 0 {
				if len(w.marks) == 0 {
					return start, false, w.errAt(off, "POP on an empty stack")
				}
				w.marks = w.marks[:len(w.marks)-1]
			} else {
				w.stack = w.stack[:len(w.stack)-1]
			}
		case '1': // POP_MARK
			if _, err := w.popMark(off); err != nil {
				return start, false, err
			}
		case '2': // DUP
			if w.frameLen() == 0 {
				return start, false, w.errAt(off, "DUP on an empty stack")
			}
			if err := w.push(off, w.stack[len(w.stack)-1]); err != nil {
				return start, false, err
			}
		case 'F', 'I', 'L': // FLOAT, INT, LONG (decimal lines)
			line, n, err := w.line(b[i:], off)
			if err != nil {
				return start, false, err
			}
			if n < 0 {
				return start, false, nil
			}
			i += n
			v := pval{kind: vOther}
			if op != 'F' {
				s := strings.TrimSuffix(string(line), "L")
				switch {
				case op == 'I' && s == "00":
					v = pval{kind: vInt, n: 0}
				case op == 'I' && s == "01":
					v = pval{kind: vInt, n: 1}
				default:
					x, perr := strconv.ParseInt(s, 10, 64)
					if perr != nil {
						if !isDecimal(s) {
							return start, false, w.errAt(off, "invalid integer literal %q", truncate(s))
						}
					} else {
						v = pval{kind: vInt, n: x}
					}
				}
			} else if _, perr := strconv.ParseFloat(string(line), 64); perr != nil {
				return start, false, w.errAt(off, "invalid float literal %q", truncate(string(line)))
			}
			if err := w.push(off, v); err != nil {
				return start, false, err
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
			if len(b)-i < n {
				return start, false, nil
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
				v = pval{kind: vOther}
			}
			i += n
			if err := w.push(off, v); err != nil {
				return start, false, err
			}
		case 'N':
			if err := w.push(off, pval{kind: vNone}); err != nil {
				return start, false, err
			}
		case 0x88, 0x89: // NEWTRUE, NEWFALSE
			if err := w.push(off, pval{kind: vInt, n: int64(0x89 - int(op))}); err != nil {
				return start, false, err
			}
		case ')', ']', '}', 0x8f: // EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, EMPTY_SET
			v := pval{kind: vOther}
			if op == ')' {
				v = pval{kind: vTuple, ref: -1}
			}
			if err := w.push(off, v); err != nil {
				return start, false, err
			}
		case 'P': // PERSID
			_, n, err := w.line(b[i:], off)
			if err != nil {
				return start, false, err
			}
			if n < 0 {
				return start, false, nil
			}
			i += n
			if err := w.push(off, pval{kind: vOther}); err != nil {
				return start, false, err
			}
		case 'Q': // BINPERSID
			v, err := w.pop(off, "BINPERSID")
			if err != nil {
				return start, false, err
			}
			if v.kind == vTuple && v.ref >= 0 {
				t := w.tuples[v.ref : v.ref+6]
				if t[1].kind == vGlobal && t[2].kind == vStr && t[4].kind == vInt {
					w.storages = append(w.storages, storageRef{Type: w.str(t[1]), Key: w.str(t[2]), Numel: t[4].n})
				}
			}
			w.stack = append(w.stack, pval{kind: vOther})
		case 'R': // REDUCE
			if err := w.applyGlobal(off, 2, "REDUCE", "calls a value that is not an allowlisted global (cannot be resolved statically)"); err != nil {
				return start, false, err
			}
		case 0x81: // NEWOBJ
			if err := w.applyGlobal(off, 2, "NEWOBJ", "instantiates a value that is not an allowlisted global"); err != nil {
				return start, false, err
			}
		case 0x92: // NEWOBJ_EX
			if err := w.applyGlobal(off, 3, "NEWOBJ_EX", "instantiates a value that is not an allowlisted global"); err != nil {
				return start, false, err
			}
		case 'S': // STRING (quoted repr)
			line, n, err := w.line(b[i:], off)
			if err != nil {
				return start, false, err
			}
			if n < 0 {
				return start, false, nil
			}
			i += n
			if len(line) < 2 || (line[0] != '\'' && line[0] != '"') || line[len(line)-1] != line[0] {
				return start, false, w.errAt(off, "STRING argument is not quoted")
			}
			if err := w.pushStr(off, line[1:len(line)-1], bytes.IndexByte(line, '\\') < 0); err != nil {
				return start, false, err
			}
		case 'V': // UNICODE (raw-unicode-escape line)
			line, n, err := w.line(b[i:], off)
			if err != nil {
				return start, false, err
			}
			if n < 0 {
				return start, false, nil
			}
			i += n
			if err := w.pushStr(off, line, bytes.IndexByte(line, '\\') < 0); err != nil {
				return start, false, err
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
			if len(b)-i < lenSize {
				return start, false, nil
			}
			var ln uint64
			switch lenSize {
			case 1:
				ln = uint64(b[i])
			case 4:
				if op == 'T' {
					if x := int32(binary.LittleEndian.Uint32(b[i:])); x < 0 {
						return start, false, w.errAt(off, "BINSTRING with negative length %d", x)
					}
				}
				ln = uint64(binary.LittleEndian.Uint32(b[i:]))
			default:
				ln = binary.LittleEndian.Uint64(b[i:])
			}
			if ln > uint64(w.maxString) {
				return start, false, w.errAt(off, "%s of %d bytes exceeds the limit of %d", opName(op), ln, w.maxString)
			}
			if uint64(len(b)-i-lenSize) < ln {
				return start, false, nil
			}
			data := b[i+lenSize : i+lenSize+int(ln)]
			i += lenSize + int(ln)
			var err error
			switch op {
			case 'B', 'C', 0x8e, 0x96:
				err = w.push(off, pval{kind: vBytes})
			default:
				err = w.pushStr(off, data, true)
			}
			if err != nil {
				return start, false, err
			}
		case 0x8a, 0x8b: // LONG1, LONG4
			lenSize := 1
			if op == 0x8b {
				lenSize = 4
			}
			if len(b)-i < lenSize {
				return start, false, nil
			}
			ln := uint64(b[i])
			if op == 0x8b {
				x := int32(binary.LittleEndian.Uint32(b[i:]))
				if x < 0 {
					return start, false, w.errAt(off, "LONG4 with negative length %d", x)
				}
				ln = uint64(x)
			}
			if ln > uint64(w.maxString) {
				return start, false, w.errAt(off, "LONG4 of %d bytes exceeds the limit of %d", ln, w.maxString)
			}
			if uint64(len(b)-i-lenSize) < ln {
				return start, false, nil
			}
			data := b[i+lenSize : i+lenSize+int(ln)]
			i += lenSize + int(ln)
			v := pval{kind: vOther}
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
					return start, false, err
				}
			}
			if err := w.push(off, v); err != nil {
				return start, false, err
			}
		case 'a': // APPEND
			if w.frameLen() < 2 {
				return start, false, w.errAt(off, "APPEND needs 2 stack items")
			}
			w.stack = w.stack[:len(w.stack)-1]
		case 'b': // BUILD
			if w.frameLen() < 2 {
				return start, false, w.errAt(off, "BUILD needs 2 stack items")
			}
			w.stack = w.stack[:len(w.stack)-1]
		case 's': // SETITEM
			if w.frameLen() < 3 {
				return start, false, w.errAt(off, "SETITEM needs 3 stack items")
			}
			w.stack = w.stack[:len(w.stack)-2]
		case 'e', 'u', 0x90: // APPENDS, SETITEMS, ADDITEMS
			items, err := w.popMark(off)
			if err != nil {
				return start, false, err
			}
			if op == 'u' && len(items)%2 != 0 {
				return start, false, w.errAt(off, "SETITEMS with an odd number of items")
			}
			if w.frameLen() == 0 {
				return start, false, w.errAt(off, "%s without a target container", opName(op))
			}
		case 'd', 'l', 't', 0x91: // DICT, LIST, TUPLE, FROZENSET
			items, err := w.popMark(off)
			if err != nil {
				return start, false, err
			}
			if op == 'd' && len(items)%2 != 0 {
				return start, false, w.errAt(off, "DICT with an odd number of items")
			}
			v := pval{kind: vOther}
			if op == 't' {
				v = w.tuple(items)
			}
			w.stack = append(w.stack, v)
		case 0x85, 0x86, 0x87: // TUPLE1..3
			k := int(op-0x85) + 1
			if w.frameLen() < k {
				return start, false, w.errAt(off, "TUPLE%d needs %d stack items", k, k)
			}
			items := w.stack[len(w.stack)-k:]
			v := w.tuple(items)
			w.stack = w.stack[:len(w.stack)-k]
			w.stack = append(w.stack, v)
		case 'c', 'i': // GLOBAL, INST
			l1, n1, err := w.line(b[i:], off)
			if err != nil {
				return start, false, err
			}
			if n1 < 0 {
				return start, false, nil
			}
			l2, n2, err := w.line(b[i+n1:], off)
			if err != nil {
				return start, false, err
			}
			if n2 < 0 {
				return start, false, nil
			}
			i += n1 + n2
			name, err := w.resolve(off, string(l1), string(l2), opName(op))
			if err != nil {
				return start, false, err
			}
			if op == 'c' {
				g, err := w.keep(off, vGlobal, []byte(name))
				if err != nil {
					return start, false, err
				}
				if err := w.push(off, g); err != nil {
					return start, false, err
				}
			} else {
				if _, err := w.popMark(off); err != nil {
					return start, false, err
				}
				w.stack = append(w.stack, pval{kind: vOther})
			}
		case 0x93: // STACK_GLOBAL
			if w.frameLen() < 2 {
				return start, false, w.errAt(off, "STACK_GLOBAL needs 2 stack items")
			}
			mod, nm := w.stack[len(w.stack)-2], w.stack[len(w.stack)-1]
			if mod.kind != vStr || nm.kind != vStr {
				return start, false, w.errAt(off, "STACK_GLOBAL with a module or name that is not a literal string (cannot be resolved statically)")
			}
			name, err := w.resolve(off, w.str(mod), w.str(nm), "STACK_GLOBAL")
			if err != nil {
				return start, false, err
			}
			g, err := w.keep(off, vGlobal, []byte(name))
			if err != nil {
				return start, false, err
			}
			w.stack = w.stack[:len(w.stack)-2]
			w.stack = append(w.stack, g)
		case 'o': // OBJ
			items, err := w.popMark(off)
			if err != nil {
				return start, false, err
			}
			if len(items) == 0 || items[0].kind != vGlobal {
				return start, false, w.errAt(off, "OBJ instantiates a value that is not an allowlisted global")
			}
			w.stack = append(w.stack, pval{kind: vOther})
		case 'g', 'h', 'j': // GET, BINGET, LONG_BINGET
			idx, n, err := w.memoIndex(op, b[i:], off)
			if err != nil {
				return start, false, err
			}
			if n < 0 {
				return start, false, nil
			}
			i += n
			v, ok := w.memoGet(idx)
			if !ok {
				return start, false, w.errAt(off, "%s of memo index %d that was never stored", opName(op), idx)
			}
			if err := w.push(off, v); err != nil {
				return start, false, err
			}
		case 'p', 'q', 'r', 0x94: // PUT, BINPUT, LONG_BINPUT, MEMOIZE
			var idx uint64
			if op == 0x94 {
				idx = uint64(w.memoCount)
			} else {
				x, n, err := w.memoIndex(op, b[i:], off)
				if err != nil {
					return start, false, err
				}
				if n < 0 {
					return start, false, nil
				}
				i += n
				idx = x
			}
			if w.frameLen() == 0 {
				return start, false, w.errAt(off, "%s on an empty stack", opName(op))
			}
			if err := w.memoPut(off, idx, w.stack[len(w.stack)-1]); err != nil {
				return start, false, err
			}
		case 0x80: // PROTO
			if len(b)-i < 1 {
				return start, false, nil
			}
			if b[i] > 5 {
				return start, false, w.errAt(off, "unsupported pickle protocol %d", b[i])
			}
			i++
		case 0x95: // FRAME
			if len(b)-i < 8 {
				return start, false, nil
			}
			if fl := binary.LittleEndian.Uint64(b[i:]); fl > 1<<40 {
				return start, false, w.errAt(off, "FRAME of %d bytes", fl)
			}
			i += 8
		case 0x82, 0x83, 0x84:
			return start, false, w.errAt(off, "%s opcode (copyreg extension registry) cannot be resolved statically", opName(op))
		case 0x97, 0x98:
			return start, false, w.errAt(off, "%s opcode (out-of-band buffer) is not allowed", opName(op))
		default:
			return start, false, w.errAt(off, "invalid pickle opcode 0x%02x", op)
		}
	}
	return i, false, nil
}

// applyGlobal is REDUCE / NEWOBJ / NEWOBJ_EX: the n topmost items are a
// callable (or class), which must be an allowlisted global, and its
// arguments; they are replaced by the (opaque) result.
func (w *pickleWalker) applyGlobal(off int64, n int, op, notGlobal string) error {
	if w.frameLen() < n {
		return w.errAt(off, "%s needs %d stack items", op, n)
	}
	if w.stack[len(w.stack)-n].kind != vGlobal {
		return w.errAt(off, "%s %s", op, notGlobal)
	}
	w.stack = append(w.stack[:len(w.stack)-n], pval{kind: vOther})
	return nil
}

func (w *pickleWalker) frameLen() int {
	if len(w.marks) == 0 {
		return len(w.stack)
	}
	return len(w.stack) - w.marks[len(w.marks)-1]
}

func (w *pickleWalker) push(off int64, v pval) error {
	if len(w.stack)+len(w.marks) >= w.maxStack {
		return w.errAt(off, "stack depth exceeds %d", w.maxStack)
	}
	w.stack = append(w.stack, v)
	return nil
}

func (w *pickleWalker) pushStr(off int64, data []byte, plain bool) error {
	v := pval{kind: vStrLong}
	if plain && len(data) <= maxKeptString {
		var err error
		if v, err = w.keep(off, vStr, data); err != nil {
			return err
		}
		if w.collect != nil {
			*w.collect = append(*w.collect, string(data))
		}
	}
	return w.push(off, v)
}

// keep stores b in the arena and returns a value of the given kind
// referring to it.
func (w *pickleWalker) keep(off int64, kind uint8, b []byte) (pval, error) {
	if len(w.arena)+len(b) > maxArena {
		return pval{}, w.errAt(off, "more than %d bytes of strings", maxArena)
	}
	v := pval{kind: kind, ref: int32(len(w.arena)), n: int64(len(b))}
	w.arena = append(w.arena, b...)
	return v, nil
}

// str returns the kept string of v (allocates; used on the rare paths).
func (w *pickleWalker) str(v pval) string {
	switch v.kind {
	case vStr, vGlobal, vLong:
		return string(w.arena[v.ref : int64(v.ref)+v.n])
	}
	return ""
}

// isStr reports whether v is the kept string s (no allocation).
func (w *pickleWalker) isStr(v pval, s string) bool {
	return v.kind == vStr && int(v.n) == len(s) && string(w.arena[v.ref:int64(v.ref)+v.n]) == s
}

func (w *pickleWalker) pop(off int64, what string) (pval, error) {
	if w.frameLen() == 0 {
		return pval{}, w.errAt(off, "%s on an empty stack", what)
	}
	v := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	return v, nil
}

// popMark removes the items above the topmost mark and the mark itself. The
// returned slice aliases the stack and is valid until the next push.
func (w *pickleWalker) popMark(off int64) ([]pval, error) {
	if len(w.marks) == 0 {
		return nil, w.errAt(off, "MARK expected but the mark stack is empty")
	}
	m := w.marks[len(w.marks)-1]
	w.marks = w.marks[:len(w.marks)-1]
	items := w.stack[m:]
	w.stack = w.stack[:m]
	return items, nil
}

func (w *pickleWalker) tuple(items []pval) pval {
	if len(items) >= 5 && len(items) <= 6 && w.isStr(items[0], "storage") && len(w.tuples) < math.MaxInt32-6 {
		ref := int32(len(w.tuples))
		w.tuples = append(w.tuples, items...)
		for k := len(items); k < 6; k++ {
			w.tuples = append(w.tuples, pval{kind: vNone})
		}
		return pval{kind: vTuple, ref: ref}
	}
	return pval{kind: vTuple, ref: -1}
}

// line returns the bytes up to '\n' (excluded) and the count consumed
// including the newline; n < 0 means more bytes are needed.
func (w *pickleWalker) line(b []byte, off int64) ([]byte, int, error) {
	lim := min(len(b), maxLineArg+1)
	k := bytes.IndexByte(b[:lim], '\n')
	if k < 0 {
		if len(b) > maxLineArg {
			return nil, 0, w.errAt(off, "text argument longer than %d bytes", maxLineArg)
		}
		return nil, -1, nil
	}
	return b[:k], k + 1, nil
}

func (w *pickleWalker) memoIndex(op byte, b []byte, off int64) (uint64, int, error) {
	switch op {
	case 'h', 'q':
		if len(b) < 1 {
			return 0, -1, nil
		}
		return uint64(b[0]), 1, nil
	case 'j', 'r':
		if len(b) < 4 {
			return 0, -1, nil
		}
		return uint64(binary.LittleEndian.Uint32(b)), 4, nil
	}
	line, n, err := w.line(b, off)
	if err != nil || n < 0 {
		return 0, n, err
	}
	x, perr := strconv.ParseUint(string(line), 10, 32)
	if perr != nil {
		return 0, 0, w.errAt(off, "invalid memo index %q", truncate(string(line)))
	}
	return x, n, nil
}

func (w *pickleWalker) memoGet(idx uint64) (pval, bool) {
	if idx < uint64(len(w.memo)) {
		v := w.memo[idx]
		return v, v.kind != vUnset
	}
	v, ok := w.memoSparse[idx]
	return v, ok
}

func (w *pickleWalker) memoPut(off int64, idx uint64, v pval) error {
	if idx < uint64(len(w.memo)) {
		if w.memo[idx].kind == vUnset {
			w.memoCount++
		}
		w.memo[idx] = v
		return nil
	}
	if idx < uint64(len(w.memo))+1024 {
		if w.memoCount >= w.maxMemo {
			return w.errAt(off, "memo exceeds %d entries", w.maxMemo)
		}
		for uint64(len(w.memo)) < idx {
			w.memo = append(w.memo, pval{kind: vUnset})
		}
		w.memo = append(w.memo, v)
		w.memoCount++
		return nil
	}
	if w.memoSparse == nil {
		w.memoSparse = map[uint64]pval{}
	}
	if _, ok := w.memoSparse[idx]; !ok {
		if w.memoCount >= w.maxMemo {
			return w.errAt(off, "memo exceeds %d entries", w.maxMemo)
		}
		w.memoCount++
	}
	w.memoSparse[idx] = v
	return nil
}

// resolve checks an import against the allowlist.
func (w *pickleWalker) resolve(off int64, module, name, via string) (string, error) {
	if !isDottedIdent(module) || !isDottedIdent(name) {
		return "", w.errAt(off, "%s with malformed module or name %q %q", via, truncate(module), truncate(name))
	}
	full := module + "." + name
	if !w.allow[full] {
		return "", w.errAt(off, "%s imports %s, which is not in the allowlist", via, full)
	}
	w.globals[full] = true
	return full, nil
}

func isDottedIdent(s string) bool {
	if s == "" || len(s) > maxKeptString {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s[0] != '.' && s[len(s)-1] != '.' && !strings.Contains(s, "..")
}

func isDecimal(s string) bool {
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

var opNames = map[byte]string{
	'T': "BINSTRING", 'U': "SHORT_BINSTRING", 'X': "BINUNICODE", 0x8c: "SHORT_BINUNICODE",
	0x8d: "BINUNICODE8", 'B': "BINBYTES", 'C': "SHORT_BINBYTES", 0x8e: "BINBYTES8", 0x96: "BYTEARRAY8",
	'e': "APPENDS", 'u': "SETITEMS", 0x90: "ADDITEMS", 'c': "GLOBAL", 'i': "INST",
	'g': "GET", 'h': "BINGET", 'j': "LONG_BINGET", 'p': "PUT", 'q': "BINPUT", 'r': "LONG_BINPUT",
	0x94: "MEMOIZE", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("opcode 0x%02x", op)
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// streamBuf accumulates bytes that a parser could not consume yet.
type streamBuf struct {
	b    []byte
	base int64 // absolute offset of b[0]
}

func (s *streamBuf) consume(n int) {
	s.b = s.b[n:]
	s.base += int64(n)
	if len(s.b) == 0 {
		s.b = s.b[:0:0]
	}
}

// PickleInspector validates a raw pickle stream (one pickle; with Legacy,
// the legacy torch.save layout of several pickles followed by storages).
type PickleInspector struct {
	w      *pickleWalker
	buf    streamBuf
	size   int64
	seen   int64
	err    error
	legacy bool
	// legacy state
	stage    int // pickles completed
	keys     []string
	storage  int   // index of the storage being read
	need     int64 // raw bytes left in the current storage
	pending  []byte
	refs     map[string]storageRef
	finished bool // single pickle finished (non legacy) or all storages read
	retryAt  int  // buffered length at which to re-walk an incomplete opcode
}

// legacyTorchMagic is torch's MAGIC_NUMBER 0x1950a86a20f9469cfc6c as LONG1
// little-endian bytes.
var legacyTorchMagic = string([]byte{0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19})

// NewPickleInspector returns an opcode-walking inspector for a raw pickle.
// The walker runs regardless of opts.Pickle.Mode; the mode is applied by
// NewInspector.
func NewPickleInspector(opts Options, size int64) *PickleInspector {
	w := newPickleWalker(opts, FormatPickle)
	w.presize(size)
	return &PickleInspector{w: w, size: size}
}

// presize reserves memo, string arena and tuple space in proportion to the
// declared size (bounded), so that typical state dicts never regrow them.
func (w *pickleWalker) presize(size int64) {
	if size <= 0 {
		return
	}
	h := min(size, 8<<20)
	w.memo = make([]pval, 0, h/16)
	w.arena = make([]byte, 0, h/4)
	w.tuples = make([]pval, 0, h/16)          // 6 slots per tensor (~130 pickle bytes)
	w.storages = make([]storageRef, 0, h/128) // one per tensor
	w.stack = make([]pval, 0, 2048)
}

// NewLegacyTorchInspector validates the legacy (pre-1.6) torch.save layout:
// magic pickle, protocol 1001, sys_info, the object pickle, the storage key
// list, then for each key an 8-byte element count and the raw storage.
func NewLegacyTorchInspector(opts Options, size int64) *PickleInspector {
	w := newPickleWalker(opts, FormatLegacyTorch)
	w.presize(size)
	return &PickleInspector{w: w, size: size, legacy: true}
}

func (p *PickleInspector) Format() string { return p.w.format }

// HeaderDone is true once every pickle has been walked (for a raw pickle,
// that is the whole blob; for legacy torch, before the raw storages).
func (p *PickleInspector) HeaderDone() bool {
	if p.legacy {
		return p.stage >= 5
	}
	return p.finished
}

// Globals lists the imports the pickle(s) make.
func (p *PickleInspector) Globals() []string { return p.w.Globals() }

func (p *PickleInspector) fail(off int64, reason string, args ...any) error {
	p.err = newFinding(p.w.format, off, reason, args...)
	return p.err
}

func (p *PickleInspector) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n := len(b)
	start := p.seen
	p.seen += int64(n)
	if p.size >= 0 && p.seen > p.size {
		return 0, p.fail(p.size, "more bytes than the declared size %d", p.size)
	}
	if p.legacy && p.stage >= 5 {
		return n, p.storages(b, start)
	}
	if p.finished {
		return 0, p.fail(start, "%s", trailingReason(p.size, start, "the pickle STOP opcode"))
	}
	if len(p.buf.b) == 0 {
		p.buf.base = start
		rest, err := p.walk(b)
		if err != nil {
			return 0, err
		}
		p.buf.b = append(p.buf.b[:0:0], rest...)
		if len(rest) > 0 && len(rest) == len(b) {
			p.retryAt = 2 * len(rest)
		}
		return n, nil
	}
	p.buf.b = append(p.buf.b, b...)
	// An opcode argument is still incomplete: re-walk only once the buffer
	// has doubled, so dribbled bytes cost linear, not quadratic, time.
	if len(p.buf.b) < p.retryAt {
		return n, nil
	}
	before := len(p.buf.b)
	rest, err := p.walk(p.buf.b)
	if err != nil {
		return 0, err
	}
	p.retryAt = 0
	if len(rest) == before {
		p.retryAt = 2 * before
	}
	p.buf.b = rest
	return n, nil
}

// walk feeds data to the walker; it returns the unconsumed tail (an
// incomplete opcode). p.buf.base must be the offset of data[0].
func (p *PickleInspector) walk(data []byte) ([]byte, error) {
	for len(data) > 0 {
		c, stopped, err := p.w.feed(data, p.buf.base)
		if err != nil {
			p.err = err
			return nil, err
		}
		data = data[c:]
		p.buf.base += int64(c)
		if !stopped {
			return data, nil
		}
		if err := p.afterStop(p.buf.base); err != nil {
			return nil, err
		}
		if p.finished {
			if len(data) > 0 {
				return nil, p.fail(p.buf.base, "%s", trailingReason(p.size, p.buf.base, "the pickle STOP opcode"))
			}
			return nil, nil
		}
		if p.legacy && p.stage >= 5 {
			if err := p.storages(data, p.buf.base); err != nil {
				return nil, err
			}
			return nil, nil
		}
	}
	return nil, nil
}

func (p *PickleInspector) afterStop(off int64) error {
	if !p.legacy {
		p.finished = true
		return nil
	}
	r := p.w.result
	switch p.stage {
	case 0:
		if r.kind != vLong || p.w.str(r) != legacyTorchMagic {
			return p.fail(off, "first pickle is not the torch legacy magic number")
		}
	case 1:
		if r.kind != vInt || r.n != 1001 {
			return p.fail(off, "second pickle is not torch legacy protocol version 1001")
		}
	case 3:
		// object pickle done; next pickle lists storage keys
		p.w.collect = &p.keys
	case 4:
		p.w.collect = nil
		p.refs = map[string]storageRef{}
		for _, s := range p.w.storages {
			if old, dup := p.refs[s.Key]; dup && old != s {
				return p.fail(off, "storage %q referenced with conflicting types or sizes", s.Key)
			}
			p.refs[s.Key] = s
		}
		seen := map[string]bool{}
		for _, k := range p.keys {
			if seen[k] {
				return p.fail(off, "storage key %q listed twice", k)
			}
			seen[k] = true
			if _, ok := p.refs[k]; !ok {
				return p.fail(off, "storage key %q is not referenced by the object pickle", k)
			}
		}
		if len(seen) != len(p.refs) {
			return p.fail(off, "object pickle references %d storages but the key list has %d", len(p.refs), len(seen))
		}
	}
	p.stage++
	return nil
}

// storages consumes the raw storage section of a legacy torch file.
func (p *PickleInspector) storages(b []byte, off int64) error {
	for len(b) > 0 {
		if p.storage >= len(p.keys) && p.need == 0 && len(p.pending) == 0 {
			return p.fail(off, "%s", trailingReason(p.size, off, "the last storage"))
		}
		if p.need > 0 {
			k := min(p.need, int64(len(b)))
			p.need -= k
			b = b[k:]
			off += k
			continue
		}
		k := min(8-len(p.pending), len(b))
		p.pending = append(p.pending, b[:k]...)
		b = b[k:]
		off += int64(k)
		if len(p.pending) < 8 {
			continue
		}
		numel := int64(binary.LittleEndian.Uint64(p.pending))
		p.pending = p.pending[:0]
		ref := p.refs[p.keys[p.storage]]
		if numel != ref.Numel {
			return p.fail(off-8, "storage %q has %d elements but the pickle declares %d", ref.Key, numel, ref.Numel)
		}
		es, ok := torchStorageElemSize[ref.Type]
		if !ok {
			return p.fail(off-8, "storage %q has unknown type %s", ref.Key, ref.Type)
		}
		if numel < 0 || numel > math.MaxInt64/es {
			return p.fail(off-8, "storage %q size overflows", ref.Key)
		}
		p.need = numel * es
		p.storage++
	}
	return nil
}

func (p *PickleInspector) Close() error {
	if p.err != nil {
		return p.err
	}
	if len(p.buf.b) > 0 {
		rest, err := p.walk(p.buf.b)
		if err != nil {
			return err
		}
		p.buf.b = rest
	}
	if p.size >= 0 && p.seen != p.size {
		return p.fail(p.seen, "truncated: %d of %d bytes", p.seen, p.size)
	}
	if p.legacy {
		if p.stage < 5 {
			return p.fail(p.seen, "truncated legacy torch file: %d of 5 pickles complete", p.stage)
		}
		if p.need > 0 || len(p.pending) > 0 || p.storage < len(p.keys) {
			return p.fail(p.seen, "truncated legacy torch file: storage data incomplete (%d of %d storages)", p.storage, len(p.keys))
		}
		return nil
	}
	if !p.finished {
		if p.w.ops == 0 {
			return p.fail(p.seen, "empty pickle")
		}
		return p.fail(p.seen, "truncated pickle: stream ends before the STOP opcode")
	}
	return nil
}
