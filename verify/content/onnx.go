package content

import (
	"math"
	"sort"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// FormatONNX is an ONNX model (a serialized onnx.ModelProto).
const FormatONNX = "onnx"

// ONNXOptions configure the ONNX validator.
type ONNXOptions struct {
	// Domains lists operator domains allowed besides the standard ones
	// ("", ai.onnx, ai.onnx.ml, ai.onnx.training) and the domains of the
	// model's own functions. Custom-op domains make runtimes load native
	// kernels (policy key content.formats.onnx.domains).
	Domains []string
}

// Bounds of the ONNX walker. Memory is bounded by onnxMaxDepth frames,
// onnxMaxString bytes for the one string being collected, and
// onnxMaxDomains distinct domain names (each at most onnxMaxString): about
// 2 * 512 * 4 KiB = 4 MiB, far below 64 MiB, whatever the file size.
// Everything else (raw_data, float_data, doc strings, ...) is skipped
// byte-counted without being held.
const (
	onnxMaxDepth   = 64
	onnxMaxString  = 4096
	onnxMaxDomains = 512
)

var onnxStandardDomains = map[string]bool{"": true, "ai.onnx": true, "ai.onnx.ml": true, "ai.onnx.training": true}

// Message kinds the walker descends into.
type onnxKind uint8

const (
	onnxModel onnxKind = iota
	onnxGraph
	onnxNode
	onnxAttr
	onnxTensor
	onnxSparse
	onnxFunction
	onnxTraining
	onnxExtEntry // StringStringEntryProto in TensorProto.external_data
)

var onnxKindName = [...]string{"model", "graph", "node", "attribute", "tensor", "sparse tensor", "function", "training info", "external_data entry"}

// onnxChildren says, per message kind, which length-delimited fields are
// messages to descend into (every other field is skipped unread).
var onnxChildren = map[onnxKind]map[protowire.Number]onnxKind{
	onnxModel:    {7: onnxGraph, 20: onnxTraining, 25: onnxFunction},
	onnxTraining: {1: onnxGraph, 2: onnxGraph},
	onnxGraph:    {1: onnxNode, 5: onnxTensor, 15: onnxSparse},
	onnxNode:     {5: onnxAttr},
	onnxAttr:     {5: onnxTensor, 6: onnxGraph, 10: onnxTensor, 11: onnxGraph, 22: onnxSparse, 23: onnxSparse},
	onnxTensor:   {13: onnxExtEntry},
	onnxSparse:   {1: onnxTensor, 2: onnxTensor},
	onnxFunction: {7: onnxNode, 11: onnxAttr},
}

// onnxCollects reports the string fields the walker reads (bounded).
func onnxCollects(k onnxKind, n protowire.Number) bool {
	switch k {
	case onnxNode:
		return n == 4 || n == 7 // op_type, domain
	case onnxFunction:
		return n == 1 || n == 10 // name, domain
	case onnxExtEntry:
		return n == 1 || n == 2 // key, value
	}
	return false
}

type onnxFrame struct {
	kind       onnxKind
	end        int64 // absolute offset where the message ends
	start      int64
	key, value string // onnxExtEntry
	hasKey     bool
}

const (
	onnxStTag = iota
	onnxStLen
	onnxStVarint
	onnxStSkip
	onnxStCollect
)

// ONNXInspector walks an ONNX ModelProto as it streams: it descends into the
// graph, every subgraph (If/Loop/Scan attributes, any graph-valued
// attribute), training graphs and functions, checks every external_data
// location and every node's operator domain, and skips all other bytes
// (initializer data) without holding them. The whole file decides, so
// HeaderDone is true only after a successful Close.
type ONNXInspector struct {
	opts  Options
	size  int64
	off   int64
	stack []onnxFrame
	st    int
	vbuf  [binaryVarintMax]byte
	vn    int
	num   protowire.Number
	skip  int64
	coll  []byte
	cnum  protowire.Number
	sawIR bool

	used    map[string]int64 // domain "\x00" op_type of custom operators -> first offset
	defined map[string]bool  // domain "\x00" name of the model's functions
	done    bool
	err     error
}

const binaryVarintMax = 10

// NewONNXInspector returns the ONNX validator for a blob of size bytes
// (-1 if unknown).
func NewONNXInspector(opts Options, size int64) *ONNXInspector {
	end := size
	if end < 0 {
		end = math.MaxInt64
	}
	return &ONNXInspector{opts: opts, size: size, stack: []onnxFrame{{kind: onnxModel, end: end}},
		used: map[string]int64{}, defined: map[string]bool{}}
}

func (o *ONNXInspector) HeaderDone() bool { return o.done }

func (o *ONNXInspector) fail(off int64, reason string, args ...any) error {
	o.err = newFinding(FormatONNX, off, reason, args...)
	return o.err
}

func (o *ONNXInspector) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n := len(p)
	for len(p) > 0 {
		top := &o.stack[len(o.stack)-1]
		if o.off >= top.end {
			return 0, o.fail(o.off, "more bytes than the declared size %d", o.size)
		}
		switch o.st {
		case onnxStTag, onnxStLen, onnxStVarint:
			o.vbuf[o.vn] = p[0]
			o.vn++
			o.off++
			p = p[1:]
			if o.vbuf[o.vn-1]&0x80 != 0 {
				if o.vn == binaryVarintMax {
					return 0, o.fail(o.off-int64(o.vn), "malformed varint (longer than 10 bytes)")
				}
				if o.off >= top.end {
					return 0, o.fail(o.off-int64(o.vn), "varint crosses the end of its %s message", onnxKindName[top.kind])
				}
				continue
			}
			v, m := protowire.ConsumeVarint(o.vbuf[:o.vn])
			if m < 0 {
				return 0, o.fail(o.off-int64(o.vn), "malformed varint")
			}
			o.vn = 0
			if err := o.varint(v); err != nil {
				return 0, err
			}
		case onnxStSkip:
			k := int64(len(p))
			if k > o.skip {
				k = o.skip
			}
			o.skip -= k
			o.off += k
			p = p[k:]
			if o.skip == 0 {
				o.st = onnxStTag
				if err := o.pop(); err != nil {
					return 0, err
				}
			}
		case onnxStCollect:
			k := int64(len(p))
			if k > o.skip {
				k = o.skip
			}
			o.coll = append(o.coll, p[:k]...)
			o.skip -= k
			o.off += k
			p = p[k:]
			if o.skip == 0 {
				o.st = onnxStTag
				if err := o.collected(); err != nil {
					return 0, err
				}
				if err := o.pop(); err != nil {
					return 0, err
				}
			}
		}
	}
	return n, nil
}

// varint handles a complete varint in the current state.
func (o *ONNXInspector) varint(v uint64) error {
	top := &o.stack[len(o.stack)-1]
	vstart := o.off
	switch o.st {
	case onnxStTag:
		num, typ := protowire.DecodeTag(v)
		if num < protowire.MinValidNumber || num > protowire.MaxValidNumber || v>>3 > uint64(protowire.MaxValidNumber) {
			return o.fail(vstart, "invalid field number in %s message", onnxKindName[top.kind])
		}
		o.num = num
		switch typ {
		case protowire.VarintType:
			o.st = onnxStVarint
		case protowire.Fixed64Type:
			return o.skipN(8)
		case protowire.Fixed32Type:
			return o.skipN(4)
		case protowire.BytesType:
			o.st = onnxStLen
		default:
			return o.fail(vstart, "field %d of a %s message has wire type %d (groups are not used by ONNX)", num, onnxKindName[top.kind], typ)
		}
	case onnxStVarint:
		o.st = onnxStTag
		if top.kind == onnxModel && o.num == 1 {
			o.sawIR = true
		}
		return o.pop()
	case onnxStLen:
		if v > uint64(top.end-o.off) {
			if top.end == o.size || top.end == math.MaxInt64 {
				return o.fail(vstart, "field %d of a %s message is %d bytes long but only %d remain (truncated or malformed)", o.num, onnxKindName[top.kind], v, top.end-o.off)
			}
			return o.fail(vstart, "field %d of a %s message is %d bytes long, past the end of its enclosing message", o.num, onnxKindName[top.kind], v)
		}
		l := int64(v)
		if child, ok := onnxChildren[top.kind][o.num]; ok {
			if len(o.stack) >= onnxMaxDepth {
				return o.fail(vstart, "messages nested deeper than %d levels", onnxMaxDepth)
			}
			o.stack = append(o.stack, onnxFrame{kind: child, start: o.off, end: o.off + l})
			o.st = onnxStTag
			return o.pop() // an empty message ends at once
		}
		if onnxCollects(top.kind, o.num) {
			if l > onnxMaxString {
				return o.fail(vstart, "%s string field %d is %d bytes long (limit %d)", onnxKindName[top.kind], o.num, l, onnxMaxString)
			}
			o.cnum = o.num
			o.coll = o.coll[:0]
			o.skip = l
			o.st = onnxStCollect
			if l == 0 {
				o.st = onnxStTag
				if err := o.collected(); err != nil {
					return err
				}
				return o.pop()
			}
			return nil
		}
		return o.skipN(l)
	}
	return nil
}

func (o *ONNXInspector) skipN(l int64) error {
	top := &o.stack[len(o.stack)-1]
	if l > top.end-o.off {
		return o.fail(o.off, "fixed-size field %d crosses the end of its %s message (truncated or malformed)", o.num, onnxKindName[top.kind])
	}
	o.skip = l
	o.st = onnxStSkip
	if l == 0 {
		o.st = onnxStTag
		return o.pop()
	}
	return nil
}

// collected handles a complete string field.
func (o *ONNXInspector) collected() error {
	top := &o.stack[len(o.stack)-1]
	s := string(o.coll)
	switch top.kind {
	case onnxNode:
		// op_type (4) and domain (7): checked as a pair when the node ends.
		if o.cnum == 4 {
			top.key = s
		} else {
			top.value = s
		}
	case onnxFunction:
		// name (1) and domain (10): the operator the function defines.
		if o.cnum == 1 {
			top.key = s
		} else {
			top.value = s
		}
	case onnxExtEntry:
		if o.cnum == 1 {
			top.key, top.hasKey = s, true
		} else {
			top.value = s
		}
	}
	return nil
}

// pop closes every message that ends at the current offset.
func (o *ONNXInspector) pop() error {
	for len(o.stack) > 1 {
		top := &o.stack[len(o.stack)-1]
		if o.off < top.end {
			return nil
		}
		if err := o.ended(top); err != nil {
			return err
		}
		if top.kind == onnxExtEntry && top.key == "location" {
			if why := onnxBadLocation(top.value); why != "" {
				return o.fail(top.start, "external_data location %q %s; a loader would read (or write) a file outside the model directory; no policy key admits it", top.value, why)
			}
		}
		o.stack = o.stack[:len(o.stack)-1]
	}
	return nil
}

// ended records what a node or function message said once it is whole
// (its fields come in any order): a node's operator (domain, op_type)
// outside the standard and allowed domains, a function's (domain, name).
// A model's function makes only that operator of its domain its own, not
// every operator of the domain.
func (o *ONNXInspector) ended(f *onnxFrame) error {
	op := f.value + "\x00" + f.key
	switch {
	case f.kind == onnxNode && !onnxStandardDomains[f.value] && !o.domainAllowed(f.value):
		if _, ok := o.used[op]; !ok {
			if len(o.used) >= onnxMaxOperators {
				return o.fail(f.start, "more than %d distinct custom operators", onnxMaxOperators)
			}
			o.used[op] = f.start
		}
	case f.kind == onnxFunction:
		if len(o.defined) >= onnxMaxOperators {
			return o.fail(f.start, "more than %d functions", onnxMaxOperators)
		}
		o.defined[op] = true
	}
	return nil
}

// onnxMaxOperators bounds the custom operators and functions remembered
// (each two strings of at most onnxMaxString: 32 MiB at most).
const onnxMaxOperators = 4096

func (o *ONNXInspector) domainAllowed(d string) bool {
	for _, a := range o.opts.ONNX.Domains {
		if a == d {
			return true
		}
	}
	return false
}

// onnxBadLocation says why an external_data location is not a clean
// relative path inside the model directory, or "".
func onnxBadLocation(loc string) string {
	switch {
	case loc == "":
		return "is empty"
	case strings.ContainsRune(loc, 0):
		return "contains a NUL byte"
	case strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, `\`):
		return "is an absolute path"
	case len(loc) >= 2 && loc[1] == ':':
		return "names a drive"
	case strings.Contains(loc, "://") || strings.HasPrefix(strings.ToLower(loc), "file:"):
		return "is a URL"
	}
	for _, part := range strings.FieldsFunc(loc, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return "contains \"..\""
		}
		if part != "." && strings.Trim(part, ". ") == "" {
			return "has an element of only dots and spaces (Windows strips trailing dots and spaces from path elements)"
		}
		if strings.Contains(part, ":") {
			return "contains ':' (a drive, scheme or alternate data stream)"
		}
		if windowsDevice(part) {
			return "names a Windows device (" + part + ")"
		}
	}
	if strings.Contains(loc, "//") || strings.Contains(loc, `\\`) {
		return "contains an empty path element"
	}
	return ""
}

// windowsDevice reports a path element Windows opens as a device whatever
// its directory or extension (CON, NUL, COM1.bin, ...).
func windowsDevice(part string) bool {
	base, _, _ := strings.Cut(strings.ToUpper(strings.TrimRight(part, ". ")), ".")
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	return len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) && base[3] >= '0' && base[3] <= '9'
}

func (o *ONNXInspector) Close() error {
	if o.err != nil {
		return o.err
	}
	if o.size >= 0 && o.off != o.size {
		return o.fail(o.off, "truncated: %d of %d bytes", o.off, o.size)
	}
	if o.st != onnxStTag || o.vn != 0 || len(o.stack) != 1 {
		top := o.stack[len(o.stack)-1]
		return o.fail(o.off, "truncated inside a %s message (field %d incomplete)", onnxKindName[top.kind], o.num)
	}
	if !o.sawIR {
		return o.fail(0, "no ir_version (field 1): not an ONNX model")
	}
	var bad []string
	for d := range o.used {
		if !o.defined[d] {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		domain, opType, _ := strings.Cut(bad[0], "\x00")
		return o.fail(o.used[bad[0]], "node uses operator %s of domain %q, which is not a standard ONNX domain nor an operator one of the model's functions defines; "+
			"custom operators load native code (content.formats.onnx.domains allows a domain)", opType, domain)
	}
	o.done = true
	return nil
}

// sniffONNX recognises a serialized ModelProto by structure: it starts
// with ir_version (field 1, varint, 1..64 as every exporter writes it
// first) followed by a well-formed field of ModelProto (or the end).
func sniffONNX(h []byte) bool {
	if len(h) < 2 || h[0] != 0x08 {
		return false
	}
	v, n := protowire.ConsumeVarint(h[1:])
	if n < 0 || v < 1 || v > 64 {
		return false
	}
	rest := h[1+n:]
	if len(rest) == 0 {
		return true
	}
	num, typ, m := protowire.ConsumeTag(rest)
	if m < 0 {
		return false
	}
	switch num {
	case 2, 3, 4, 6, 7, 8, 14, 20, 25, 26:
		return typ == protowire.BytesType
	case 5:
		return typ == protowire.VarintType
	}
	return false
}
