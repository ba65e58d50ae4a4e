package content

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// FormatTFLite is a TensorFlow Lite model (a tflite.Model flatbuffer,
// file identifier "TFL3").
const FormatTFLite = "tflite"

// TFLiteOptions configure the TFLite validator (policy key
// content.formats.tflite).
type TFLiteOptions struct {
	// CustomOps lists custom op names (OperatorCode.custom_code) admitted:
	// a custom op runs a kernel the application registers, native code the
	// model file does not carry.
	CustomOps []string
	// AllowFlex admits Flex ops (custom ops named Flex..., the TensorFlow
	// kernels "select TF ops" run) whose TensorFlow op passes the
	// TensorFlow denylist. The Flex delegate
	// (tensorflow/lite/delegates/flex/kernel.cc) runs the op named in the
	// operator's custom_options, a flexbuffer vector of the op name and a
	// serialized NodeDef, not the op the custom code spells: the op name,
	// the NodeDef's op and its file and function attributes are checked
	// (as a graph's node is); a Flex op whose custom options are not that
	// vector, or lie after the flatbuffer (large_custom_options), is
	// refused, and so is one whose custom code spells a denied op.
	AllowFlex bool
}

// TFLiteStandardCustomOps are the custom ops whose kernels ship in TFLite
// itself: its standard op resolver (BuiltinOpResolver,
// tensorflow/lite/kernels/register.cc) registers them next to the builtin
// ops, so a model that names one runs TFLite's own kernel, not code the
// application adds. They are admitted without content.formats.tflite
// .customOps: TFLite_Detection_PostProcess ends every SSD detection model,
// Mfcc and AudioSpectrogram the audio models, NumericVerify the
// quantization debugger's models.
var TFLiteStandardCustomOps = []string{"TFLite_Detection_PostProcess", "Mfcc", "AudioSpectrogram", "NumericVerify"}

// tfliteCustom is BuiltinOperator CUSTOM in tensorflow/lite/schema/schema.fbs.
const tfliteCustom = 32

// Field indices (vtable slots) of tensorflow/lite/schema/schema.fbs.
const (
	tflModelVersion       = 0 // version: uint
	tflModelOperatorCodes = 1 // operator_codes: [OperatorCode]
	tflModelBuffers       = 4 // buffers: [Buffer]
	tflBufferData         = 0 // data: [ubyte]
	tflBufferOffset       = 1 // offset: ulong (data after the flatbuffer)
	tflBufferSize         = 2 // size: ulong
	tflOpDeprecatedCode   = 0 // deprecated_builtin_code: byte
	tflOpCustomCode       = 1 // custom_code: string
	tflOpBuiltinCode      = 3 // builtin_code: BuiltinOperator (int)
	tflModelSubgraphs     = 2 // subgraphs: [SubGraph]
	tflSubgraphOperators  = 3 // operators: [Operator]
	tflOperatorOpcode     = 0 // opcode_index: uint
	tflOperatorCustomOpts = 5 // custom_options: [ubyte]
	tflOperatorLargeOff   = 9 // large_custom_options_offset: ulong
	tflOperatorLargeSize  = 10
)

// Bounds of the TFLite reader. A flatbuffer is random access, but every
// offset to a table, vector or string points forward (uoffset_t is
// unsigned); only a table's vtable may precede it, and the builders write
// it right before the table. So the file is read as it streams: each
// structure the check needs (the Model table, operator_codes, each
// OperatorCode and its custom_code) is a pending read, done when the
// stream reaches it; a vtable may lie at most tfliteMaxBackward bytes
// before its table, and the last tfliteWindow bytes are kept for it and
// for the strings and vectors of a table whose (shared) vtable comes
// after it.
// Each Buffer's data (inline vector or offset/size past the flatbuffer)
// must lie inside the file. Memory: the window, plus at most
// tfliteMaxPending pending reads of at most tfliteMaxTable bytes each,
// under 32 MiB, plus tfliteMaxSpec bytes read ahead for tables whose
// vtable follows them, whatever the file size; tensor data is never held.
const (
	tfliteMaxBackward = 64 << 10
	tfliteWindow      = 1 << 20
	tfliteMaxTable    = 128
	tfliteMaxPending  = 1 << 17
	tfliteMaxOpcodes  = 1 << 14
	tfliteMaxBuffers  = 1 << 16
	tfliteMaxName     = 4096
	tfliteMaxReads    = 1 << 20
	tfliteMaxSpec     = 4 << 20
	// With flex: allow, every operator's custom_options are read and
	// held (at most tfliteMaxFlexHeld bytes in all, each at most
	// tfliteMaxFlexOpts) until the operator codes say which are Flex ops.
	tfliteMaxSubgraphs = 1 << 12
	tfliteMaxOperators = 1 << 16
	tfliteMaxFlexOpts  = 1 << 20
	tfliteMaxFlexHeld  = 8 << 20
)

// TFLiteInspector validates a TFLite model as it streams: the file
// identifier, the schema version, and every operator code: custom ops are
// refused unless TFLiteStandardCustomOps or TFLiteOptions.CustomOps lists
// them, Flex ops (TensorFlow kernels) unless AllowFlex and the TensorFlow
// op their custom options name passes the TensorFlow denylist (see
// TFLiteOptions.AllowFlex). Every offset is bounds-checked; the verdict
// does not depend on chunking. HeaderDone is true once every operator code
// (and with AllowFlex every operator) was read (tensor data that follows
// streams).
type TFLiteInspector struct {
	opts      Options
	size      int64
	pos       int64
	win       []byte // bytes [winStart, curStart)
	winStart  int64
	cur       []byte // the chunk being written: bytes [curStart, pos)
	curStart  int64
	pending   tflReqs
	specBytes int64 // bytes read speculatively (speculate)
	horizon   int64 // end offset of the read being handled
	// mandatory counts the pending reads the verdict waits for
	mandatory int
	reads     int
	seq       int
	best      *Finding // the finding at the lowest offset so far
	done      bool
	err       error
	// flex: allow: the Flex operator codes by index and every operator's
	// custom options, judged together once all are read (flexCheck).
	flexCodes map[int64]string
	flexOps   []tflFlexOp
	flexHeld  int64
	flexDone  bool
}

// tflFlexOp is an operator's custom options, kept until its operator code
// is known.
type tflFlexOp struct {
	off, code int64
	opts      []byte
	large     bool // custom options after the flatbuffer (large_custom_options_*)
}

type tflReq struct {
	off      int64
	n        int64
	seq      int
	optional bool // a speculative or bounds-only read: the verdict does not wait for it
	fn       func(b []byte)
}

type tflReqs []tflReq

func (h tflReqs) Len() int { return len(h) }
func (h tflReqs) Less(i, j int) bool {
	ei, ej := h[i].off+h[i].n, h[j].off+h[j].n
	return ei < ej || ei == ej && h[i].seq < h[j].seq
}
func (h tflReqs) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *tflReqs) Push(x any)   { *h = append(*h, x.(tflReq)) }
func (h *tflReqs) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = tflReq{}
	*h = old[:len(old)-1]
	return x
}

// NewTFLiteInspector returns the TFLite validator for a blob of size bytes
// (-1 if unknown).
func NewTFLiteInspector(opts Options, size int64) *TFLiteInspector {
	t := &TFLiteInspector{opts: opts, size: size}
	t.need(0, 8, t.header)
	return t
}

func (t *TFLiteInspector) Format() string { return FormatTFLite }

func (t *TFLiteInspector) HeaderDone() bool { return t.done }

// finding records a reason; the one at the lowest offset is reported, so
// the order in which reads complete (which depends on chunking) does not
// change the verdict.
func (t *TFLiteInspector) finding(off int64, reason string, args ...any) {
	f := newFinding(FormatTFLite, off, reason, args...)
	if t.best == nil || f.Offset < t.best.Offset || f.Offset == t.best.Offset && f.Reason < t.best.Reason {
		t.best = f
	}
}

func (t *TFLiteInspector) fatal(off int64, reason string, args ...any) error {
	t.err = newFinding(FormatTFLite, off, reason, args...)
	return t.err
}

// need schedules fn on bytes [off, off+n), bounds-checked against the
// blob. Reads complete in the order of their end offset, whatever the
// chunking: one that ends at or before the read being handled (horizon)
// runs at once if it starts at most tfliteWindow bytes before the
// horizon, and is refused otherwise; a later one waits. optional reads
// (bounds checks of tensor data) are skipped rather than refused when
// they are out of reach.
func (t *TFLiteInspector) need(off, n int64, fn func(b []byte)) { t.read(off, n, fn, false) }

func (t *TFLiteInspector) read(off, n int64, fn func(b []byte), optional bool) {
	if t.err != nil {
		return
	}
	if off < 0 || n < 0 || t.size >= 0 && off+n > t.size || off > 1<<62 {
		t.finding(off, "structure of %d bytes at offset %d lies outside the %d-byte file (malformed or truncated)", n, off, t.size)
		return
	}
	t.reads++
	if t.reads > tfliteMaxReads {
		t.fatal(-1, "more than %d flatbuffer reads (shared or cyclic structures)", tfliteMaxReads)
		return
	}
	if off+n <= t.horizon {
		if off < t.horizon-tfliteWindow {
			if !optional {
				t.finding(off, "structure at offset %d lies more than %d bytes before the structure that refers to it (through a vtable placed after its table); the gate reads TFLite files as they stream and cannot check it", off, tfliteWindow)
			}
			return
		}
		b, ok := t.bytes(off, n)
		if !ok {
			t.fatal(off, "internal error: bytes at offset %d were not kept", off)
			return
		}
		fn(b)
		return
	}
	if len(t.pending) >= tfliteMaxPending {
		t.fatal(-1, "more than %d pending flatbuffer reads", tfliteMaxPending)
		return
	}
	t.seq++
	if !optional {
		t.mandatory++
	}
	heap.Push(&t.pending, tflReq{off: off, n: n, seq: t.seq, optional: optional, fn: fn})
}

// bytes returns [off, off+n) from the kept window and the current chunk.
func (t *TFLiteInspector) bytes(off, n int64) ([]byte, bool) {
	if off < t.winStart {
		return nil, false
	}
	switch {
	case off >= t.curStart:
		return t.cur[off-t.curStart : off-t.curStart+n], true
	case off+n <= t.curStart:
		return t.win[off-t.winStart : off-t.winStart+n], true
	}
	b := append([]byte(nil), t.win[off-t.winStart:]...)
	return append(b, t.cur[:off+n-t.curStart]...), true
}

func (t *TFLiteInspector) Write(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	if t.size >= 0 && t.pos+int64(len(p)) > t.size {
		return 0, t.fatal(t.size, "more bytes than the declared size %d", t.size)
	}
	if t.done {
		// every structure was read: the rest is tensor data, counted
		t.pos += int64(len(p))
		return len(p), nil
	}
	t.cur, t.curStart = p, t.pos
	t.pos += int64(len(p))
	for len(t.pending) > 0 && t.pending[0].off+t.pending[0].n <= t.pos && t.err == nil {
		r := heap.Pop(&t.pending).(tflReq)
		if !r.optional {
			t.mandatory--
		}
		t.horizon = r.off + r.n
		if r.off < t.horizon-tfliteWindow {
			t.finding(r.off, "structure of %d bytes at offset %d is larger than the reader's window", r.n, r.off)
			continue
		}
		b, ok := t.bytes(r.off, r.n)
		if !ok {
			return 0, t.fatal(r.off, "internal error: bytes at offset %d were not kept", r.off)
		}
		r.fn(b)
	}
	if t.err != nil {
		return 0, t.err
	}
	// keep the last tfliteWindow bytes
	if len(p) >= tfliteWindow {
		t.win = append(t.win[:0], p[len(p)-tfliteWindow:]...)
	} else {
		t.win = append(t.win, p...)
		if len(t.win) > 2*tfliteWindow {
			t.win = append(t.win[:0], t.win[len(t.win)-tfliteWindow:]...)
		}
	}
	t.winStart = t.pos - int64(len(t.win))
	t.cur, t.curStart = nil, t.pos
	if t.mandatory == 0 {
		t.flexCheck()
		// optional reads left pending only served tables already judged
		if t.best != nil {
			t.err = t.best
			return 0, t.err
		}
		t.done = true
		t.win, t.pending = nil, nil
	}
	return len(p), nil
}

func (t *TFLiteInspector) Close() error {
	if t.err != nil {
		return t.err
	}
	if t.size >= 0 && t.pos != t.size {
		return t.fatal(t.pos, "truncated: %d of %d bytes", t.pos, t.size)
	}
	if t.mandatory > 0 {
		at := int64(-1)
		for _, r := range t.pending {
			if !r.optional && (at < 0 || r.off < at) {
				at = r.off
			}
		}
		t.finding(at, "truncated: the file ends before the structure at offset %d", at)
	} else {
		t.flexCheck()
	}
	if t.best != nil {
		t.err = t.best
		return t.err
	}
	t.done = true
	return nil
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// header checks the identifier and reads the root table offset.
func (t *TFLiteInspector) header(b []byte) {
	if string(b[4:8]) != "TFL3" {
		t.finding(4, "file identifier %q is not TFL3 (not a TFLite model)", b[4:8])
		return
	}
	t.table(0, int64(le32(b)), 5, t.model)
}

// tflTable is a table's vtable slots and its first bytes.
type tflTable struct {
	off  int64
	vt   []byte // slots only (after the two header fields)
	data []byte // table bytes from off, at most its declared size
	// spec holds what a table whose vtable comes after it may point to,
	// read speculatively as the stream passed (see speculate).
	spec map[int64][]byte
}

// field returns the table-relative offset of slot i and checks that w
// bytes there lie inside the table (0: absent).
func (t *TFLiteInspector) field(tb *tflTable, i int, w int64) (int64, bool) {
	if 2*i+2 > len(tb.vt) {
		return 0, true
	}
	fo := int64(binary.LittleEndian.Uint16(tb.vt[2*i:]))
	if fo == 0 {
		return 0, true
	}
	if fo < 4 || fo+w > int64(len(tb.data)) {
		t.finding(tb.off, "table at offset %d: field %d at %d lies outside the table's %d bytes", tb.off, i, fo, len(tb.data))
		return 0, false
	}
	return fo, true
}

// ref follows the uoffset in slot i (0: absent).
func (t *TFLiteInspector) ref(tb *tflTable, i int) (int64, bool) {
	fo, ok := t.field(tb, i, 4)
	if !ok || fo == 0 {
		return 0, ok
	}
	u := int64(le32(tb.data[fo:]))
	if u == 0 {
		t.finding(tb.off+fo, "offset at %d points to itself", tb.off+fo)
		return 0, false
	}
	return tb.off + fo + u, true
}

// table reads the table the uoffset at loc points to (at loc+u, read by
// the caller as target) with its first nslots vtable slots, and calls fn.
// ref is where the offset was (for messages); target the table.
func (t *TFLiteInspector) table(ref, target int64, nslots int, fn func(*tflTable)) {
	if target <= ref && ref != 0 || target < 8 && ref == 0 {
		t.finding(ref, "table offset at %d does not point forward", ref)
		return
	}
	n := int64(tfliteMaxTable)
	if t.size >= 0 {
		n = min(n, t.size-target)
	}
	if n < 4 {
		t.finding(target, "table at offset %d is truncated", target)
		return
	}
	t.need(target, n, func(b []byte) {
		data := append([]byte(nil), b...)
		soff := int64(int32(le32(data)))
		vt := target - soff
		if soff > tfliteMaxBackward {
			t.finding(target, "table at offset %d: its vtable is %d bytes before it (limit %d)", target, soff, tfliteMaxBackward)
			return
		}
		var spec map[int64][]byte
		if vt > target {
			spec = t.speculate(target, data)
		}
		t.need(vt, 4, func(h []byte) {
			vtsize := int64(binary.LittleEndian.Uint16(h))
			tblsize := int64(binary.LittleEndian.Uint16(h[2:]))
			if vtsize < 4 || vtsize%2 != 0 || tblsize < 4 {
				t.finding(vt, "vtable at offset %d is malformed (size %d, table size %d)", vt, vtsize, tblsize)
				return
			}
			if tblsize > int64(len(data)) {
				if tblsize > tfliteMaxTable {
					t.finding(target, "table at offset %d is %d bytes long (limit %d for the tables the gate reads)", target, tblsize, tfliteMaxTable)
				} else {
					t.finding(target, "table at offset %d is truncated", target)
				}
				return
			}
			slots := min(vtsize-4, int64(2*nslots))
			t.need(vt+4, slots, func(s []byte) {
				fn(&tflTable{off: target, vt: append([]byte(nil), s...), data: data[:tblsize], spec: spec})
			})
		})
	})
}

// speculate handles a table whose vtable comes after it: deduplicating
// builders point every table with the same fields at the vtable of the
// first one built, which back-to-front building puts after megabytes of
// tensor data, and the table's strings (written just before it, so just
// after it in the file) have left the window when the vtable arrives.
// Every aligned word of the table that could be an offset to a string is
// followed now: the length word, and the string if at most tfliteMaxName
// bytes. The lookups (lenAt, strAt) use them once the vtable says which
// word was an offset. At most tfliteMaxSpec bytes in all are kept.
func (t *TFLiteInspector) speculate(target int64, data []byte) map[int64][]byte {
	spec := map[int64][]byte{}
	for k := int64(4); k+4 <= int64(len(data)); k += 4 {
		u := int64(le32(data[k:]))
		s := target + k + u
		if u == 0 || u > tfliteWindow || t.size >= 0 && s+4 > t.size || t.specBytes+4 > tfliteMaxSpec {
			continue
		}
		t.specBytes += 4
		t.read(s, 4, func(b []byte) {
			spec[s] = append([]byte(nil), b...)
			n := int64(le32(b))
			if n > tfliteMaxName || t.size >= 0 && s+4+n+1 > t.size || t.specBytes+n+1 > tfliteMaxSpec {
				return
			}
			t.specBytes += n + 1
			t.read(s+4, n+1, func(b []byte) { spec[s] = append(spec[s], b...) }, true)
		}, true)
	}
	return spec
}

// lenAt calls fn with the 4-byte length word at s.
func (t *TFLiteInspector) lenAt(tb *tflTable, s int64, optional bool, fn func(n int64)) {
	if b, ok := tb.spec[s]; ok {
		fn(int64(le32(b)))
		return
	}
	t.read(s, 4, func(b []byte) { fn(int64(le32(b))) }, optional)
}

// strAt calls fn with the n bytes and NUL of the string at s (length n
// already read).
func (t *TFLiteInspector) strAt(tb *tflTable, s, n int64, fn func(b []byte)) {
	if b, ok := tb.spec[s]; ok && int64(len(b)) == 4+n+1 {
		fn(b[4:])
		return
	}
	t.need(s+4, n+1, fn)
}

// vector reads the length of the vector the uoffset at target starts.
func (t *TFLiteInspector) vector(target int64, elem int64, max int64, what string, fn func(start, n int64, b []byte)) {
	t.need(target, 4, func(b []byte) {
		n := int64(le32(b))
		if n > max {
			t.finding(target, "%s has %d elements (limit %d)", what, n, max)
			return
		}
		t.need(target+4, n*elem, func(e []byte) { fn(target+4, n, append([]byte(nil), e...)) })
	})
}

func (t *TFLiteInspector) model(tb *tflTable) {
	fo, ok := t.field(tb, tflModelVersion, 4)
	if !ok {
		return
	}
	var v uint32
	if fo != 0 {
		v = le32(tb.data[fo:])
	}
	if v != 3 {
		t.finding(tb.off, "schema version %d is not 3 (not a TFLite model this gate understands)", v)
		return
	}
	if bufs, ok := t.ref(tb, tflModelBuffers); ok && bufs != 0 {
		t.tables(bufs, tfliteMaxBuffers, "buffers", 3, t.buffer)
	}
	if codes, ok := t.ref(tb, tflModelOperatorCodes); ok && codes != 0 {
		t.tables(codes, tfliteMaxOpcodes, "operator_codes", 4, t.opcode)
	}
	if !t.opts.TFLite.AllowFlex {
		return // every Flex op is refused by its operator code
	}
	if sgs, ok := t.ref(tb, tflModelSubgraphs); ok && sgs != 0 {
		t.tables(sgs, tfliteMaxSubgraphs, "subgraphs", 4, func(_ int64, sg *tflTable) {
			if ops, ok := t.ref(sg, tflSubgraphOperators); ok && ops != 0 {
				t.tables(ops, tfliteMaxOperators, "operators", 11, t.operator)
			}
		})
	}
}

// operator keeps an operator's custom options (flex: allow) for flexCheck.
func (t *TFLiteInspector) operator(_ int64, tb *tflTable) {
	var code int64
	if fo, ok := t.field(tb, tflOperatorOpcode, 4); !ok {
		return
	} else if fo != 0 {
		code = int64(le32(tb.data[fo:]))
	}
	for _, slot := range []int{tflOperatorLargeOff, tflOperatorLargeSize} {
		fo, ok := t.field(tb, slot, 8)
		if !ok {
			return
		}
		if fo != 0 && binary.LittleEndian.Uint64(tb.data[fo:]) != 0 {
			t.flexOps = append(t.flexOps, tflFlexOp{off: tb.off, code: code, large: true})
			return
		}
	}
	co, ok := t.ref(tb, tflOperatorCustomOpts)
	if !ok || co == 0 {
		return
	}
	t.vector(co, 1, tfliteMaxFlexOpts, "an operator's custom_options (read with content.formats.tflite.flex: allow)", func(_, n int64, e []byte) {
		t.flexHeld += n
		if t.flexHeld > tfliteMaxFlexHeld {
			t.finding(co, "operators' custom options exceed %d bytes in all, which the gate holds to check Flex ops (content.formats.tflite.flex: allow)", tfliteMaxFlexHeld)
			return
		}
		t.flexOps = append(t.flexOps, tflFlexOp{off: tb.off, code: code, opts: e})
	})
}

// flexCheck judges every Flex operator (flex: allow) once all operator
// codes and operators were read: the Flex delegate
// (tensorflow/lite/delegates/flex/kernel.cc) runs the op named first in
// its custom_options flexbuffer with the attributes of the NodeDef
// serialized second; both must pass the TensorFlow denylist.
func (t *TFLiteInspector) flexCheck() {
	if t.flexDone || !t.opts.TFLite.AllowFlex {
		return
	}
	t.flexDone = true
	for _, op := range t.flexOps {
		name, ok := t.flexCodes[op.code]
		if !ok {
			continue
		}
		if op.large {
			t.finding(op.off, "Flex op %q keeps its custom options after the flatbuffer (large_custom_options), which the gate does not read", name)
			continue
		}
		s, ok := flexStrings(op.opts, 2)
		if !ok {
			t.finding(op.off, "Flex op %q: custom options are not the flexbuffer vector of an op name and a NodeDef the Flex delegate reads", name)
			continue
		}
		tf := TensorFlowInspector{opts: t.opts}
		if why, denied := tf.denied(s[0]); denied {
			t.finding(op.off, "Flex op %q runs TensorFlow op %s (%s); content.formats.tensorflow.allowOps admits it", name, tfShort(s[0]), why)
			continue
		}
		if r, err := tfNodeDefReason(t.opts, []byte(s[1])); err != nil {
			t.finding(op.off, "Flex op %q: its NodeDef: %v", name, err)
		} else if r != "" {
			t.finding(op.off, "Flex op %q: its NodeDef %s", name, r)
		}
	}
	t.flexOps, t.flexCodes = nil, nil
}

// flexStrings reads the first n elements of a flexbuffer whose root is a
// vector (or map) of strings, as flexbuffers::GetRoot(...).AsVector()
// and AsString() do; false if it is anything else.
func flexStrings(b []byte, n int) ([]string, bool) {
	rd := func(p []byte, w int) uint64 {
		var v uint64
		for i := w - 1; i >= 0; i-- {
			v = v<<8 | uint64(p[i])
		}
		return v
	}
	wok := func(w int) bool { return w == 1 || w == 2 || w == 4 || w == 8 }
	if len(b) < 3 {
		return nil, false
	}
	rw, packed := int(b[len(b)-1]), b[len(b)-2]
	if !wok(rw) || len(b) < 2+rw || packed>>2 != 10 && packed>>2 != 9 { // FBT_VECTOR, FBT_MAP
		return nil, false
	}
	w := 1 << (packed & 3)
	root := len(b) - 2 - rw
	off := rd(b[root:], rw)
	if off > uint64(root) || uint64(root)-off < uint64(w) {
		return nil, false
	}
	vec := root - int(off)
	count := rd(b[vec-w:], w)
	if count < uint64(n) || count > uint64(len(b)) || uint64(vec)+count*uint64(w)+count > uint64(len(b)) {
		return nil, false
	}
	types := vec + int(count)*w
	out := make([]string, 0, n)
	for i := range n {
		et := b[types+i]
		ew := 1 << (et & 3)
		if et>>2 != 5 { // FBT_STRING
			return nil, false
		}
		slot := vec + i*w
		u := rd(b[slot:], w)
		if u > uint64(slot) || uint64(slot)-u < uint64(ew) {
			return nil, false
		}
		s := slot - int(u)
		l := rd(b[s-ew:], ew)
		if l > uint64(len(b)-s) {
			return nil, false
		}
		out = append(out, string(b[s:s+int(l)]))
	}
	return out, true
}

// tables reads a vector of tables (at most max) and calls fn on each.
func (t *TFLiteInspector) tables(vec, max int64, what string, nslots int, fn func(int64, *tflTable)) {
	t.vector(vec, 4, max, what, func(start, n int64, e []byte) {
		for i := range n {
			loc := start + 4*i
			u := int64(le32(e[4*i:]))
			if u == 0 {
				t.finding(loc, "%s[%d] offset points to itself", what, i)
				continue
			}
			t.table(loc, loc+u, nslots, func(tb *tflTable) { fn(i, tb) })
		}
	})
}

// buffer checks that a Buffer's data lies inside the file.
func (t *TFLiteInspector) buffer(i int64, tb *tflTable) {
	data, ok := t.ref(tb, tflBufferData)
	if !ok {
		return
	}
	var off, size uint64
	for _, f := range []struct {
		slot int
		v    *uint64
	}{{tflBufferOffset, &off}, {tflBufferSize, &size}} {
		fo, ok := t.field(tb, f.slot, 8)
		if !ok {
			return
		}
		if fo != 0 {
			*f.v = binary.LittleEndian.Uint64(tb.data[fo:])
		}
	}
	switch {
	case data != 0 && (off != 0 || size != 0):
		t.finding(tb.off, "buffers[%d] has both inline data and an offset", i)
	case data != 0:
		t.lenAt(tb, data, true, func(n int64) {
			if t.size >= 0 && data+4+n > t.size {
				t.finding(data, "buffers[%d]: %d bytes of data at offset %d run past the end of the file", i, n, data+4)
			}
		})
	case off > 1 || size > 0:
		if off > 1<<62 || size > 1<<62 || t.size >= 0 && off+size > uint64(t.size) {
			t.finding(tb.off, "buffers[%d]: %d bytes at offset %d lie outside the %d-byte file", i, size, off, t.size)
		}
	}
}

// opcode checks one OperatorCode.
func (t *TFLiteInspector) opcode(i int64, tb *tflTable) {
	var code int64
	if fo, ok := t.field(tb, tflOpDeprecatedCode, 1); !ok {
		return
	} else if fo != 0 {
		code = int64(int8(tb.data[fo]))
	}
	if fo, ok := t.field(tb, tflOpBuiltinCode, 4); !ok {
		return
	} else if fo != 0 {
		code = max(code, int64(int32(le32(tb.data[fo:]))))
	}
	if code != tfliteCustom {
		return
	}
	s, ok := t.ref(tb, tflOpCustomCode)
	if !ok {
		return
	}
	if s == 0 {
		t.finding(tb.off, "operator_codes[%d] is a custom op without a name", i)
		return
	}
	t.lenAt(tb, s, false, func(n int64) {
		if n > tfliteMaxName {
			t.finding(s, "operator_codes[%d]: custom op name of %d bytes (limit %d)", i, n, tfliteMaxName)
			return
		}
		t.strAt(tb, s, n, func(name []byte) {
			if name[n] != 0 {
				t.finding(s, "operator_codes[%d]: custom op name is not NUL-terminated", i)
				return
			}
			if r := t.customReason(string(name[:n])); r != "" {
				t.finding(tb.off, "operator_codes[%d]: %s", i, r)
			} else if strings.HasPrefix(string(name[:n]), "Flex") {
				if t.flexCodes == nil {
					t.flexCodes = map[int64]string{}
				}
				t.flexCodes[i] = string(name[:n])
			}
		})
	})
}

// customReason says why a custom op is refused, or "".
func (t *TFLiteInspector) customReason(name string) string {
	if tfOp, ok := strings.CutPrefix(name, "Flex"); ok {
		if !t.opts.TFLite.AllowFlex {
			return fmt.Sprintf("Flex op %q runs a TensorFlow kernel (select TF ops), the op named in its custom options; "+
				"content.formats.tflite.flex: allow admits Flex ops whose TensorFlow op passes content.formats.tensorflow", name)
		}
		// The op run is the one custom_options name (flexCheck), but an
		// honest converter names the op it runs: one named after a denied
		// op is refused at once.
		tf := TensorFlowInspector{opts: t.opts}
		if why, denied := tf.denied(tfOp); denied {
			return fmt.Sprintf("Flex op %q names TensorFlow op %s (%s); content.formats.tensorflow.allowOps admits it", name, tfOp, why)
		}
		return ""
	}
	if slices.Contains(TFLiteStandardCustomOps, name) || slices.Contains(t.opts.TFLite.CustomOps, name) {
		return ""
	}
	return fmt.Sprintf("custom op %q is not one of TFLite's standard custom ops (%s): it runs a kernel the application registers (native code outside the model, which the gate cannot inspect); content.formats.tflite.customOps admits it",
		name, strings.Join(TFLiteStandardCustomOps, ", "))
}
