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
	// kernels "select TF ops" run) and so trusts the file: the Flex
	// delegate (tensorflow/lite/delegates/flex/kernel.cc) runs the op
	// named in the operator's custom_options (a flexbuffer holding an op
	// name and a serialized NodeDef), which the gate does not read, not
	// the op the custom code spells, so any TensorFlow
	// op may run, those the TensorFlow denylist refuses included. A Flex
	// op whose name itself spells a denied op (FlexReadFile, as an honest
	// converter names it) is still refused.
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
)

// TFLiteInspector validates a TFLite model as it streams: the file
// identifier, the schema version, and every operator code: custom ops are
// refused unless TFLiteStandardCustomOps or TFLiteOptions.CustomOps lists
// them, Flex ops (TensorFlow kernels) unless AllowFlex (which trusts the
// file: see TFLiteOptions.AllowFlex). Every offset is bounds-checked; the verdict does not depend on
// chunking. HeaderDone is true once every operator code was read (tensor
// data that follows streams).
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
			}
		})
	})
}

// customReason says why a custom op is refused, or "".
func (t *TFLiteInspector) customReason(name string) string {
	if tfOp, ok := strings.CutPrefix(name, "Flex"); ok {
		if !t.opts.TFLite.AllowFlex {
			return fmt.Sprintf("Flex op %q runs a TensorFlow kernel (select TF ops): the op named in its custom options, which the gate does not read, "+
				"so any TensorFlow op, file and network ops included; content.formats.tflite.flex: allow admits Flex ops (trusting the file)", name)
		}
		// The name binds nothing (the op named in custom_options runs), but an honest
		// converter names the op it runs: one named after a denied op is
		// refused.
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
