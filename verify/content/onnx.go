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

// Bounds of the ONNX walker. Memory is bounded by pbMaxDepth frames,
// onnxMaxString bytes for the one string being collected, and
// onnxMaxDomains distinct domain names (each at most onnxMaxString): about
// 2 * 512 * 4 KiB = 4 MiB, far below 64 MiB, whatever the file size.
// Everything else (raw_data, float_data, doc strings, ...) is skipped
// byte-counted without being held.
const (
	onnxMaxString  = 4096
	onnxMaxDomains = 512
)

var onnxStandardDomains = map[string]bool{"": true, "ai.onnx": true, "ai.onnx.ml": true, "ai.onnx.training": true}

// Message kinds the walker descends into.
const (
	onnxModel protoKind = iota
	onnxGraph
	onnxNode
	onnxAttr
	onnxTensor
	onnxSparse
	onnxFunction
	onnxTraining
	onnxExtEntry // StringStringEntryProto in TensorProto.external_data
)

// onnxSchema says, per message kind, which length-delimited fields are
// messages to descend into and which strings are read (every other field
// is skipped unread).
var onnxSchema = &protoSchema{
	format:   FormatONNX,
	name:     "ONNX",
	kindName: []string{"model", "graph", "node", "attribute", "tensor", "sparse tensor", "function", "training info", "external_data entry"},
	children: map[protoKind]map[protowire.Number]protoKind{
		onnxModel:    {7: onnxGraph, 20: onnxTraining, 25: onnxFunction},
		onnxTraining: {1: onnxGraph, 2: onnxGraph},
		onnxGraph:    {1: onnxNode, 5: onnxTensor, 15: onnxSparse},
		onnxNode:     {5: onnxAttr},
		onnxAttr:     {5: onnxTensor, 6: onnxGraph, 10: onnxTensor, 11: onnxGraph, 22: onnxSparse, 23: onnxSparse},
		onnxTensor:   {13: onnxExtEntry},
		onnxSparse:   {1: onnxTensor, 2: onnxTensor},
		onnxFunction: {7: onnxNode, 11: onnxAttr},
	},
	collect: func(k protoKind, n protowire.Number) int {
		switch {
		case k == onnxNode && (n == 4 || n == 7), // op_type, domain
			k == onnxFunction && (n == 1 || n == 10), // name, domain
			k == onnxExtEntry && (n == 1 || n == 2):  // key, value
			return onnxMaxString
		}
		return 0
	},
}

// ONNXInspector walks an ONNX ModelProto as it streams: it descends into the
// graph, every subgraph (If/Loop/Scan attributes, any graph-valued
// attribute), training graphs and functions, checks every external_data
// location and every node's operator domain, and skips all other bytes
// (initializer data) without holding them. The whole file decides, so
// HeaderDone is true only after a successful Close.
//
// Its first bytes are released before that (Releasable): a prefix of an
// ONNX file ending at a field boundary is a loadable model, so what is
// released must hold only judged content. Releasable stops at the start of
// every node, function, attribute and external_data entry still open and
// of the first node whose custom operator no function has defined yet (a
// function later in the file may): every released byte lies before
// anything not yet judged. A refusal at Close (an undefined custom
// operator) thus finds the client with at most the bytes before that node;
// the held-back tail and the digest still guard the end.
type ONNXInspector struct {
	opts  Options
	w     protoWalker
	sawIR bool

	used    map[string]onnxUse // domain "\x00" op_type of custom operators -> first node
	defined map[string]bool    // domain "\x00" name of the model's functions
	done    bool

	// pending is the field offset of the first node whose custom
	// operator is still undefined (math.MaxInt64: none); stale when a
	// node or function was recorded since. released is the last
	// Releasable.
	pending  int64
	stale    bool
	released int64
}

// onnxUse is where a custom operator is first used: the node message's
// field (at) and its bytes (start, the offset findings give).
type onnxUse struct{ at, start int64 }

// NewONNXInspector returns the ONNX validator for a blob of size bytes
// (-1 if unknown).
func NewONNXInspector(opts Options, size int64) *ONNXInspector {
	o := &ONNXInspector{opts: opts, used: map[string]onnxUse{}, defined: map[string]bool{}, pending: math.MaxInt64}
	o.w = newProtoWalker(onnxSchema, o, onnxModel, size)
	return o
}

func (o *ONNXInspector) HeaderDone() bool { return o.done }

// Releasable is how many first bytes were judged (see ONNXInspector): 0
// until ir_version was read, then the bytes walked, but never past an open
// node, function, attribute or external_data entry, nor past a node whose
// custom operator is still undefined. It never decreases (after a finding
// it stays where it was).
func (o *ONNXInspector) Releasable() int64 {
	if o.w.err != nil || !o.sawIR {
		return o.released
	}
	r := o.w.walked()
	if !o.done {
		for _, f := range o.w.stack[1:] {
			switch f.kind {
			case onnxNode, onnxFunction, onnxAttr, onnxExtEntry:
				r = min(r, f.at)
			}
		}
		if o.stale {
			o.pending, o.stale = math.MaxInt64, false
			for op, u := range o.used {
				if !o.defined[op] {
					o.pending = min(o.pending, u.at)
				}
			}
		}
		r = min(r, o.pending)
		// The first release waits until the walk is onnxFirstRelease
		// bytes in and no custom operator is pending: a graph's nodes
		// come before its initializers, so a model refused for an
		// undefined custom operator there gets a clean 403, not a
		// response cut short.
		if o.released == 0 && (r < onnxFirstRelease || o.pending != math.MaxInt64) {
			r = 0
		}
	}
	o.released = r
	return r
}

// onnxFirstRelease is how far the walk gets before an ONNX model's first
// bytes are released (Releasable).
var onnxFirstRelease int64 = 4 << 20

func (o *ONNXInspector) fail(off int64, reason string, args ...any) error {
	return o.w.fail(off, reason, args...)
}

func (o *ONNXInspector) Write(p []byte) (int, error) { return o.w.Write(p) }

func (o *ONNXInspector) varint(top *protoFrame, num protowire.Number, _ uint64) error {
	if top.kind == onnxModel && num == 1 {
		o.sawIR = true
	}
	return nil
}

// collected records a complete string field.
func (o *ONNXInspector) collected(top *protoFrame, num protowire.Number, s string, _ bool) error {
	switch top.kind {
	case onnxNode:
		// op_type (4) and domain (7): checked as a pair when the node ends.
		if num == 4 {
			top.key = s
		} else {
			top.value = s
		}
	case onnxFunction:
		// name (1) and domain (10): the operator the function defines.
		if num == 1 {
			top.key = s
		} else {
			top.value = s
		}
	case onnxExtEntry:
		if num == 1 {
			top.key, top.hasKey = s, true
		} else {
			top.value = s
		}
	}
	return nil
}

// ended records what a node or function message said once it is whole
// (its fields come in any order): a node's operator (domain, op_type)
// outside the standard and allowed domains, a function's (domain, name).
// A model's function makes only that operator of its domain its own, not
// every operator of the domain.
func (o *ONNXInspector) ended(f, _ *protoFrame) error {
	if f.kind == onnxExtEntry && f.key == "location" {
		if why := onnxBadLocation(f.value); why != "" {
			return o.fail(f.start, "external_data location %q %s; a loader would read (or write) a file outside the model directory; no policy key admits it", f.value, why)
		}
	}
	op := f.value + "\x00" + f.key
	switch {
	case f.kind == onnxNode && !onnxStandardDomains[f.value] && !o.domainAllowed(f.value):
		if _, ok := o.used[op]; !ok {
			if len(o.used) >= onnxMaxOperators {
				return o.fail(f.start, "more than %d distinct custom operators", onnxMaxOperators)
			}
			o.used[op] = onnxUse{at: f.at, start: f.start}
			o.stale = true
		}
	case f.kind == onnxFunction:
		if len(o.defined) >= onnxMaxOperators {
			return o.fail(f.start, "more than %d functions", onnxMaxOperators)
		}
		o.defined[op] = true
		o.stale = true
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
	if err := o.w.closeCheck(); err != nil {
		return err
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
		return o.fail(o.used[bad[0]].start, "node uses operator %s of domain %q, which is not a standard ONNX domain nor an operator one of the model's functions defines; "+
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
