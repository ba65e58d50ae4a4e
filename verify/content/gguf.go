package content

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/pullgate/pullgate/verify/chattemplate"
)

// GGUF metadata value types.
const (
	ggufU8 = iota
	ggufI8
	ggufU16
	ggufI16
	ggufU32
	ggufI32
	ggufF32
	ggufBool
	ggufString
	ggufArray
	ggufU64
	ggufI64
	ggufF64
)

var ggufTypeNames = []string{"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"}

var ggufScalarSize = [...]int{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

// ggmlType is one entry of the ggml_type table: block elements and bytes.
type ggmlType struct {
	name  string
	blck  uint64
	bytes uint64
}

// ggmlTypes is ggml.h's ggml_type enum (GGML_TYPE_COUNT = 43). Removed types
// have blck 0.
var ggmlTypes = [...]ggmlType{
	0: {"F32", 1, 4}, 1: {"F16", 1, 2}, 2: {"Q4_0", 32, 18}, 3: {"Q4_1", 32, 20},
	6: {"Q5_0", 32, 22}, 7: {"Q5_1", 32, 24}, 8: {"Q8_0", 32, 34}, 9: {"Q8_1", 32, 36},
	10: {"Q2_K", 256, 84}, 11: {"Q3_K", 256, 110}, 12: {"Q4_K", 256, 144}, 13: {"Q5_K", 256, 176},
	14: {"Q6_K", 256, 210}, 15: {"Q8_K", 256, 292}, 16: {"IQ2_XXS", 256, 66}, 17: {"IQ2_XS", 256, 74},
	18: {"IQ3_XXS", 256, 98}, 19: {"IQ1_S", 256, 50}, 20: {"IQ4_NL", 32, 18}, 21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82}, 23: {"IQ4_XS", 256, 136}, 24: {"I8", 1, 1}, 25: {"I16", 1, 2},
	26: {"I32", 1, 4}, 27: {"I64", 1, 8}, 28: {"F64", 1, 8}, 29: {"IQ1_M", 256, 56}, 30: {"BF16", 1, 2},
	34: {"TQ1_0", 256, 54}, 35: {"TQ2_0", 256, 66}, 39: {"MXFP4", 32, 17}, 40: {"NVFP4", 64, 36},
	41: {"Q1_0", 128, 18}, 42: {"Q2_0", 64, 18},
}

// wellKnownGGUF are keys whose value type is fixed; a mismatch is how
// CVE-class tokenizer bugs (llama.cpp #26690) are triggered.
var wellKnownGGUF = map[string][2]int{ // {type, array element type or -1}
	"general.alignment":            {ggufU32, -1},
	"general.architecture":         {ggufString, -1},
	"general.quantization_version": {ggufU32, -1},
	"tokenizer.chat_template":      {ggufString, -1},
	"tokenizer.chat_templates":     {ggufArray, ggufString},
	"tokenizer.ggml.tokens":        {ggufArray, ggufString},
	"tokenizer.ggml.merges":        {ggufArray, ggufString},
	"tokenizer.ggml.scores":        {ggufArray, ggufF32},
	"tokenizer.ggml.token_type":    {ggufArray, ggufI32},
}

type ggufState int

const (
	ggHeader ggufState = iota
	ggKV
	ggArray
	ggTensor
	ggPadding
	ggData
)

// GGUFInspector validates a GGUF (v2/v3, little-endian) file as it streams.
// Header, metadata and tensor infos are parsed item by item (each item is
// bounded by the string cap); tensor data is only counted.
//
// Bytes are walked in place in the caller's buffer; only an item cut by a
// chunk boundary is copied, and only as many bytes as it needs.
type GGUFInspector struct {
	opts      GGUFOptions
	allow     []*regexp.Regexp
	size      int64
	buf       streamBuf
	own       []byte // backing array of buf while an item spans Writes
	need      int    // bytes buf must hold before the next step can progress
	seen      int64
	err       error
	state     ggufState
	version   uint32
	nTensors  uint64
	nKV       uint64
	kvDone    uint64
	keys      map[string]struct{}
	alignment uint64
	// current array
	arrKey   string
	arrType  int
	arrLeft  uint64
	arrCount uint64
	arrTmpl  bool // string elements are chat templates (or their names)
	tensors  []TensorInfo
	names    map[string]struct{}
	nextOff  uint64 // expected offset of the next tensor
	dataLen  uint64 // tensor data bytes (padded, without the final padding)
	padLeft  int64  // zero bytes left before the tensor data
	dataFrom int64  // absolute offset where tensor data starts
	dataEnd  int64  // absolute end of the tensor data (of the metadata without tensors)
	padEnd   int64  // dataEnd rounded up to the alignment
	done     bool
	arch     string
}

// NewGGUFInspector returns a GGUF validator for a blob of the given size (-1
// if unknown).
func NewGGUFInspector(opts Options, size int64) *GGUFInspector {
	g := opts.GGUF
	g.MaxStringBytes = def64(g.MaxStringBytes, 16<<20)
	g.MaxArrayElements = def64(g.MaxArrayElements, 64<<20)
	g.MaxKV = def64(g.MaxKV, 1<<16)
	g.MaxTensors = def64(g.MaxTensors, 1<<20)
	return &GGUFInspector{opts: g, allow: opts.TensorAllow, size: size, keys: map[string]struct{}{},
		names: map[string]struct{}{}, alignment: 32}
}

func (g *GGUFInspector) Format() string { return FormatGGUF }

// HeaderDone is true once header, metadata and tensor infos were validated
// (including the file size implied by the tensor table). Without tensors
// that is at the end of the metadata, before the optional padding.
func (g *GGUFInspector) HeaderDone() bool { return g.done }

// Tensors returns the tensor infos; Begin/End are relative to the data
// section.
func (g *GGUFInspector) Tensors() []TensorInfo { return g.tensors }

// Architecture returns general.architecture.
func (g *GGUFInspector) Architecture() string { return g.arch }

func (g *GGUFInspector) fail(off int64, reason string, args ...any) error {
	g.err = newFinding(FormatGGUF, off, reason, args...)
	return g.err
}

// more records that the current item needs n bytes of buf to progress.
func (g *GGUFInspector) more(n int) error {
	g.need = n
	return nil
}

func (g *GGUFInspector) remaining(off int64) int64 {
	if g.size < 0 {
		return math.MaxInt64
	}
	return g.size - off
}

func (g *GGUFInspector) Write(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n := len(p)
	g.seen += int64(n)
	if g.size >= 0 && g.seen > g.size {
		return 0, g.fail(g.size, "more bytes than the declared size %d", g.size)
	}
	// An item cut by the previous chunk boundary: give it the bytes it
	// needs (never more), then walk the rest of p in place.
	for len(g.buf.b) > 0 && len(p) > 0 {
		k := min(len(p), g.need-len(g.buf.b))
		g.buf.b = append(g.buf.b, p[:k]...)
		p = p[k:]
		if len(g.buf.b) < g.need {
			return n, nil
		}
		if err := g.run(); err != nil {
			return 0, err
		}
	}
	if len(p) == 0 {
		return n, nil
	}
	off := g.seen - int64(len(p))
	if g.state == ggData {
		if err := g.data(p, off); err != nil {
			return 0, err
		}
		return n, nil
	}
	g.buf.base, g.buf.b = off, p
	if err := g.run(); err != nil {
		return 0, err
	}
	if len(g.buf.b) > 0 {
		g.own = append(g.own[:0], g.buf.b...)
		g.buf.b = g.own
	}
	return n, nil
}

// run steps through buf until it is consumed or an item needs more bytes.
func (g *GGUFInspector) run() error {
	for len(g.buf.b) > 0 {
		if g.state == ggData {
			b, off := g.buf.b, g.buf.base
			g.buf.consume(len(b))
			return g.data(b, off)
		}
		before := len(g.buf.b)
		if err := g.step(); err != nil {
			g.err = err
			return err
		}
		if len(g.buf.b) == before && g.state != ggData {
			g.need = max(g.need, before+1)
			return nil
		}
	}
	return nil
}

// data checks bytes of the data section: tensor data is only counted, the
// padding after it must be zero and nothing may follow it.
func (g *GGUFInspector) data(p []byte, off int64) error {
	end := off + int64(len(p))
	if end <= g.dataEnd {
		return nil
	}
	to := min(g.padEnd-off, int64(len(p)))
	for j := max(g.dataEnd-off, 0); j < to; j++ {
		if p[j] != 0 {
			return g.fail(off+j, "non-zero byte in the padding after %s", g.tail())
		}
	}
	if end > g.padEnd {
		return g.fail(g.padEnd, "%s", trailingReason(-1, g.padEnd, g.tail()))
	}
	return nil
}

// tail names what the data section ends with, for findings.
func (g *GGUFInspector) tail() string {
	if g.nTensors == 0 {
		return "the metadata (the file has no tensors)"
	}
	return "the tensor data"
}

// partialPad is the finding for a file that ends inside the padding after
// its last tensor or after its metadata.
func (g *GGUFInspector) partialPad(at int64) error {
	return g.fail(at, "truncated padding: the file ends %d bytes into the %d-byte padding after %s; writers end a GGUF file right after it or after the whole padding to the alignment of %d",
		at-g.dataEnd, g.padEnd-g.dataEnd, g.tail(), g.alignment)
}

// rawStr reads a gguf_string_t at b[i:]: its bytes (valid UTF-8, at most max
// long) and the index after it. ok=false means more bytes are needed (g.need
// is set).
func (g *GGUFInspector) rawStr(b []byte, i int, off int64, what string, max int64) (raw []byte, next int, ok bool, err error) {
	if len(b)-i < 8 {
		return nil, 0, false, g.more(i + 8)
	}
	ln := binary.LittleEndian.Uint64(b[i:])
	if ln > uint64(max) {
		return nil, 0, false, g.fail(off+int64(i), "%s: string length %d exceeds the limit of %d bytes", what, ln, max)
	}
	if rem := g.remaining(off + int64(i) + 8); int64(ln) > rem {
		return nil, 0, false, g.fail(off+int64(i), "%s: string length %d exceeds the %d remaining bytes", what, ln, rem)
	}
	if uint64(len(b)-i-8) < ln {
		return nil, 0, false, g.more(i + 8 + int(ln))
	}
	raw = b[i+8 : i+8+int(ln)]
	if !utf8.Valid(raw) {
		return nil, 0, false, g.fail(off+int64(i), "%s: string is not valid UTF-8", what)
	}
	return raw, i + 8 + int(ln), true, nil
}

// step parses the item at the start of buf. When buf holds too few bytes it
// consumes nothing and sets g.need.
func (g *GGUFInspector) step() error {
	b := g.buf.b
	off := g.buf.base
	switch g.state {
	case ggHeader:
		if len(b) < 4 {
			return g.more(4)
		}
		if len(b) < 24 {
			if string(b[:4]) != "GGUF" {
				return g.fail(0, "bad magic %q (not a GGUF file)", b[:4])
			}
			return g.more(24)
		}
		if string(b[:4]) != "GGUF" {
			return g.fail(0, "bad magic %q (not a GGUF file)", b[:4])
		}
		v := binary.LittleEndian.Uint32(b[4:])
		switch {
		case v&0xFFFF == 0 && v != 0:
			return g.fail(4, "big-endian GGUF (version field 0x%08x) is not supported", v)
		case v == 1:
			return g.fail(4, "GGUF version 1 is no longer supported")
		case v != 2 && v != 3:
			return g.fail(4, "unsupported GGUF version %d (want 2 or 3)", v)
		}
		g.version = v
		g.nTensors = binary.LittleEndian.Uint64(b[8:])
		g.nKV = binary.LittleEndian.Uint64(b[16:])
		rem := g.remaining(24)
		// minimum encodings: tensor info 8+1+4+8+4+8, KV 8+1+4+1
		if g.nTensors > uint64(g.opts.MaxTensors) {
			return g.fail(8, "tensor count %d exceeds the limit of %d", g.nTensors, g.opts.MaxTensors)
		}
		if g.nKV > uint64(g.opts.MaxKV) {
			return g.fail(16, "metadata key/value count %d exceeds the limit of %d", g.nKV, g.opts.MaxKV)
		}
		h1, l1 := bits.Mul64(g.nTensors, 33)
		h2, l2 := bits.Mul64(g.nKV, 14)
		sum, carry := bits.Add64(l1, l2, 0)
		if h1|h2|carry != 0 || sum > uint64(rem) {
			return g.fail(8, "tensor count %d and key/value count %d cannot fit in the %d remaining bytes", g.nTensors, g.nKV, rem)
		}
		g.buf.consume(24)
		g.state = ggKV
		return g.advance()
	case ggKV:
		return g.kv(b, off)
	case ggArray:
		if g.arrType == ggufString {
			return g.stringElems(b, off)
		}
		sz := uint64(ggufScalarSize[g.arrType])
		k := min(g.arrLeft, uint64(len(b))/sz)
		if k == 0 {
			return g.more(int(sz))
		}
		if g.arrType == ggufBool {
			for j := uint64(0); j < k; j++ {
				if b[j] > 1 {
					return g.fail(off+int64(j), "metadata key %q: BOOL element %d is not 0 or 1", g.arrKey, b[j])
				}
			}
		}
		g.buf.consume(int(k * sz))
		g.arrLeft -= k
		return g.endArray()
	case ggTensor:
		return g.tensorInfo(b, off)
	case ggPadding:
		k := int(min(g.padLeft, int64(len(b))))
		for j := 0; j < k; j++ {
			if b[j] != 0 {
				return g.fail(off+int64(j), "non-zero byte in the padding before tensor data")
			}
		}
		g.buf.consume(k)
		g.padLeft -= int64(k)
		if g.padLeft == 0 {
			return g.finishHeader()
		}
	}
	return nil
}

// ggufKeyType returns the value type a key must have (-1: any) and, for
// arrays, the element type (-1: any).
func ggufKeyType(key string) (typ, elem int) {
	if wk, ok := wellKnownGGUF[key]; ok {
		return wk[0], wk[1]
	}
	// gguf-py's add_chat_template writes every named template as a string
	// (tokenizer.chat_template.<name>); llama.cpp reads them as strings.
	if strings.HasPrefix(key, "tokenizer.chat_template.") {
		return ggufString, -1
	}
	return -1, -1
}

// templateKey reports whether the string values of a key are chat templates
// or template names (tokenizer.chat_template, tokenizer.chat_template.<name>,
// tokenizer.chat_templates), which are checked as Jinja templates (checkTemplateSource).
func templateKey(key string) bool {
	return strings.HasPrefix(key, "tokenizer.chat_template")
}

// kv parses one metadata key/value pair up to its value; array elements
// follow in state ggArray.
func (g *GGUFInspector) kv(b []byte, off int64) error {
	rawKey, i, ok, err := g.rawStr(b, 0, off, "metadata key", 65535)
	if err != nil || !ok {
		return err
	}
	if len(rawKey) == 0 {
		return g.fail(off, "empty metadata key")
	}
	if _, dup := g.keys[string(rawKey)]; dup {
		return g.fail(off, "duplicate metadata key %q", rawKey)
	}
	if len(b)-i < 4 {
		return g.more(i + 4)
	}
	typ := binary.LittleEndian.Uint32(b[i:])
	i += 4
	key := string(rawKey)
	if typ > ggufF64 {
		return g.fail(off, "metadata key %q has unknown value type %d", key, typ)
	}
	wantType, wantElem := ggufKeyType(key)
	if wantType >= 0 && int(typ) != wantType {
		return g.fail(off, "metadata key %q has type %s, want %s", key, ggufTypeNames[typ], ggufTypeNames[wantType])
	}
	var cnt uint64
	switch typ {
	case ggufString:
		s, next, ok, err := g.rawStr(b, i, off, "metadata key "+quote(key), g.opts.MaxStringBytes)
		if err != nil || !ok {
			return err
		}
		if err := g.stringValue(key, s, off); err != nil {
			return err
		}
		i = next
	case ggufArray:
		if len(b)-i < 12 {
			return g.more(i + 12)
		}
		et := binary.LittleEndian.Uint32(b[i:])
		cnt = binary.LittleEndian.Uint64(b[i+4:])
		if et == ggufArray {
			return g.fail(off, "metadata key %q: nested arrays are not allowed", key)
		}
		if et > ggufF64 {
			return g.fail(off, "metadata key %q: array of unknown type %d", key, et)
		}
		if wantElem >= 0 && int(et) != wantElem {
			return g.fail(off, "metadata key %q is an array of %s, want %s", key, ggufTypeNames[et], ggufTypeNames[wantElem])
		}
		if cnt > uint64(g.opts.MaxArrayElements) {
			return g.fail(off, "metadata key %q: array of %d elements exceeds the limit of %d", key, cnt, g.opts.MaxArrayElements)
		}
		minElem := uint64(ggufScalarSize[et])
		if et == ggufString {
			minElem = 8
		}
		if cnt*minElem > uint64(g.remaining(off+int64(i)+12)) {
			return g.fail(off, "metadata key %q: array of %d elements cannot fit in the %d remaining bytes", key, cnt, g.remaining(off+int64(i)+12))
		}
		i += 12
		g.arrKey, g.arrType, g.arrLeft, g.arrCount = key, int(et), cnt, cnt
		g.arrTmpl = et == ggufString && templateKey(key) && !g.opts.AllowChatTemplateDunder
	default:
		sz := ggufScalarSize[typ]
		if len(b)-i < sz {
			return g.more(i + sz)
		}
		v := b[i : i+sz]
		if typ == ggufBool && v[0] > 1 {
			return g.fail(off, "metadata key %q: BOOL value %d is not 0 or 1", key, v[0])
		}
		if key == "general.alignment" {
			a := binary.LittleEndian.Uint32(v)
			if a == 0 || a&(a-1) != 0 {
				return g.fail(off, "general.alignment %d is not a non-zero power of two", a)
			}
			g.alignment = uint64(a)
		}
		i += sz
	}
	g.keys[key] = struct{}{}
	g.buf.consume(i)
	if typ == ggufArray {
		g.state = ggArray
		return g.endArray()
	}
	g.kvDone++
	return g.advance()
}

// endArray leaves state ggArray once every element was read.
func (g *GGUFInspector) endArray() error {
	if g.arrLeft > 0 {
		return nil
	}
	g.kvDone++
	g.state = ggKV
	return g.advance()
}

// stringElems walks the string elements of an array: every complete one in
// buf in a single pass, without allocating.
func (g *GGUFInspector) stringElems(b []byte, off int64) error {
	max := uint64(g.opts.MaxStringBytes)
	left, tmpl := g.arrLeft, g.arrTmpl
	i, need := 0, 0
	for left > 0 {
		if len(b)-i < 8 {
			need = 8
			break
		}
		ln := binary.LittleEndian.Uint64(b[i:])
		if ln > max {
			g.arrLeft = left
			return g.fail(off+int64(i), "%s: string length %d exceeds the limit of %d bytes", g.elemWhat(), ln, max)
		}
		if uint64(len(b)-i-8) < ln {
			// b ends inside the file: only a string that does not fit in
			// b can run past its end
			if rem := g.remaining(off + int64(i) + 8); int64(ln) > rem {
				g.arrLeft = left
				return g.fail(off+int64(i), "%s: string length %d exceeds the %d remaining bytes", g.elemWhat(), ln, rem)
			}
			need = 8 + int(ln)
			break
		}
		raw := b[i+8 : i+8+int(ln)]
		if !validUTF8(raw) {
			g.arrLeft = left
			return g.fail(off+int64(i), "%s: string is not valid UTF-8", g.elemWhat())
		}
		if tmpl {
			where := fmt.Sprintf("%s element %d", g.arrKey, g.arrCount-left)
			if err := checkTemplateSource(Options{GGUF: g.opts}, FormatGGUF, where, string(raw), chattemplate.Jinja, true); err != nil {
				return g.fail(off+int64(i), "%s", err.(*Finding).Reason)
			}
		}
		i += 8 + int(ln)
		left--
	}
	g.arrLeft = left
	g.buf.consume(i)
	if left > 0 {
		return g.more(need)
	}
	return g.endArray()
}

func (g *GGUFInspector) elemWhat() string {
	return "metadata key " + quote(g.arrKey) + " element"
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return `"` + s + `"`
}

// advance moves from KV to tensor infos to padding when counts are reached.
func (g *GGUFInspector) advance() error {
	if g.state == ggKV && g.kvDone == g.nKV {
		g.state = ggTensor
	}
	if g.state == ggTensor && uint64(len(g.tensors)) == g.nTensors {
		pos := g.buf.base
		if g.nTensors == 0 {
			// ggml's reader seeks to the aligned data offset only when
			// there are tensors. gguf-py's vocab-only writer stops right
			// after the metadata; ggml's and Ollama's writers pad to the
			// alignment: finishHeader accepts either end.
			g.dataFrom = pos
			return g.finishHeader()
		}
		pad := int64((g.alignment - uint64(pos)%g.alignment) % g.alignment)
		g.dataFrom = pos + pad
		g.padLeft = pad
		g.state = ggPadding
		if pad == 0 {
			return g.finishHeader()
		}
	}
	return nil
}

// finishHeader checks the file size against the tensor table. Writers pad
// every tensor, the last one included (ggml, gguf-py, newer Ollama), or
// pad before each tensor (older Ollama): the file ends right after the
// tensor data or after the whole padding to the alignment, nowhere else.
func (g *GGUFInspector) finishHeader() error {
	g.dataEnd = g.dataFrom + int64(g.dataLen)
	g.padEnd = int64(alignUp(uint64(g.dataEnd), g.alignment))
	if g.size >= 0 {
		for _, t := range g.tensors {
			if g.dataFrom+t.End > g.size {
				return g.fail(g.dataFrom+t.Begin, "tensor %q (offset %d, %d bytes) extends beyond the file size %d", t.Name, t.Begin, t.End-t.Begin, g.size)
			}
		}
		if g.size < g.dataEnd {
			return g.fail(g.dataEnd, "tensor data ends at byte %d, beyond the file size %d (out-of-bounds tensor)", g.dataEnd, g.size)
		}
		if g.size > g.padEnd {
			return g.fail(g.padEnd, "%d bytes of trailing data after %s", g.size-g.padEnd, g.tail())
		}
		if g.size > g.dataEnd && g.size < g.padEnd {
			return g.partialPad(g.size)
		}
	}
	for _, t := range g.tensors {
		if err := checkTensorAllow(FormatGGUF, g.dataFrom, g.allow, t.Name); err != nil {
			g.err = err
			return err
		}
	}
	g.state = ggData
	g.done = true
	return nil
}

func alignUp(v, a uint64) uint64 { return v + (a-v%a)%a }

func (g *GGUFInspector) tensorInfo(b []byte, off int64) error {
	// ggml: name.length() < GGML_MAX_NAME (64)
	if len(b) >= 8 {
		if ln := binary.LittleEndian.Uint64(b); ln > 63 {
			return g.fail(off, "tensor name is %d bytes long (at most 63)", ln)
		}
	}
	rawName, i, ok, err := g.rawStr(b, 0, off, "tensor name", 63)
	if err != nil || !ok {
		return err
	}
	if len(rawName) == 0 {
		return g.fail(off, "empty tensor name")
	}
	if len(b)-i < 4 {
		return g.more(i + 4)
	}
	nd := binary.LittleEndian.Uint32(b[i:])
	if nd > 4 {
		return g.fail(off, "tensor %q has %d dimensions (at most 4)", rawName, nd)
	}
	if len(b)-i < 4+int(nd)*8+4+8 {
		return g.more(i + 4 + int(nd)*8 + 4 + 8)
	}
	name := string(rawName)
	i += 4
	dims := make([]uint64, nd)
	nel := uint64(1)
	for d := range dims {
		dims[d] = binary.LittleEndian.Uint64(b[i:])
		i += 8
		if dims[d] > math.MaxInt64 {
			return g.fail(off, "tensor %q dimension %d is negative", name, d)
		}
		hi, lo := bits.Mul64(nel, dims[d])
		if hi != 0 || lo > math.MaxInt64 {
			return g.fail(off, "tensor %q element count overflows", name)
		}
		nel = lo
	}
	typ := binary.LittleEndian.Uint32(b[i:])
	tOff := binary.LittleEndian.Uint64(b[i+4:])
	i += 12
	if typ >= uint32(len(ggmlTypes)) || ggmlTypes[typ].blck == 0 {
		return g.fail(off, "tensor %q has invalid ggml type %d", name, typ)
	}
	gt := ggmlTypes[typ]
	if nd > 0 && dims[0]%gt.blck != 0 {
		return g.fail(off, "tensor %q: first dimension %d is not a multiple of the %s block size %d", name, dims[0], gt.name, gt.blck)
	}
	if nd == 0 && gt.blck != 1 {
		return g.fail(off, "tensor %q: scalar of block type %s", name, gt.name)
	}
	hi, nbytes := bits.Mul64(nel/gt.blck, gt.bytes)
	if hi != 0 || nbytes > math.MaxInt64/2 {
		return g.fail(off, "tensor %q byte size overflows", name)
	}
	if _, dup := g.names[name]; dup {
		return g.fail(off, "duplicate tensor name %q", name)
	}
	if tOff%g.alignment != 0 {
		return g.fail(off, "tensor %q offset %d is not a multiple of the alignment %d", name, tOff, g.alignment)
	}
	if tOff != g.nextOff {
		return g.fail(off, "tensor %q offset %d, expected %d (tensors must be contiguous, in order, without overlap)", name, tOff, g.nextOff)
	}
	if g.size >= 0 && tOff+nbytes > uint64(g.size) {
		// cheap early bound; the exact one (relative to the data start) is
		// checked once all tensor infos are read
		return g.fail(off, "tensor %q (offset %d, %d bytes) extends beyond the file size %d", name, tOff, nbytes, g.size)
	}
	g.names[name] = struct{}{}
	g.tensors = append(g.tensors, TensorInfo{Name: name, DType: gt.name, Shape: dims, Begin: int64(tOff), End: int64(tOff + nbytes)})
	g.dataLen = tOff + nbytes
	g.nextOff = alignUp(tOff+nbytes, g.alignment)
	g.buf.consume(i)
	return g.advance()
}

// stringValue checks a string metadata value: tokenizer.chat_template and
// every tokenizer.chat_template.<name> are checked as Jinja templates (checkTemplateSource).
func (g *GGUFInspector) stringValue(key string, s []byte, off int64) error {
	if key == "general.architecture" {
		g.arch = string(s)
	}
	if templateKey(key) {
		if err := checkTemplateSource(Options{GGUF: g.opts}, FormatGGUF, key, string(s), chattemplate.Jinja, true); err != nil {
			return g.fail(off, "%s", err.(*Finding).Reason)
		}
	}
	return nil
}

// Close checks the file ended where the tensor table says it must.
func (g *GGUFInspector) Close() error {
	if g.err != nil {
		return g.err
	}
	if !g.done {
		return g.fail(g.seen, "truncated GGUF: the stream ends inside the header, metadata or tensor infos")
	}
	if g.seen < g.dataEnd {
		return g.fail(g.seen, "truncated tensor data: %d bytes, tensor table needs %d", g.seen, g.dataEnd)
	}
	if g.seen > g.dataEnd && g.seen < g.padEnd {
		return g.partialPad(g.seen)
	}
	return nil
}

// UTF-8 validation of array elements (token and merge strings, most of a
// vocabulary file) with a shift-based DFA: one table load per byte that does
// not depend on the previous state, and a shift that does. Each state is a
// 6-bit offset; utf8DFA[c] holds, at offset s, the state after byte c in
// state s. It accepts exactly what utf8.Valid accepts (no overlongs, no
// surrogates, nothing above U+10FFFF).
const (
	u8Accept = 0  // between characters
	u8Error  = 6  // absorbing
	u8Cont1  = 12 // one continuation byte left
	u8Cont2  = 18 // two left
	u8Cont3  = 24 // three left
	u8E0     = 30 // after E0: A0..BF, then one more
	u8ED     = 36 // after ED: 80..9F, then one more
	u8F0     = 42 // after F0: 90..BF, then two more
	u8F4     = 48 // after F4: 80..8F, then two more
)

var utf8DFA = func() (t [256]uint64) {
	in := func(c, lo, hi int) bool { return c >= lo && c <= hi }
	for c := 0; c < 256; c++ {
		next := func(s int) int {
			switch s {
			case u8Accept:
				switch {
				case c < 0x80:
					return u8Accept
				case in(c, 0xC2, 0xDF):
					return u8Cont1
				case c == 0xE0:
					return u8E0
				case c == 0xED:
					return u8ED
				case in(c, 0xE1, 0xEF):
					return u8Cont2
				case c == 0xF0:
					return u8F0
				case c == 0xF4:
					return u8F4
				case in(c, 0xF1, 0xF3):
					return u8Cont3
				}
			case u8Cont1:
				if in(c, 0x80, 0xBF) {
					return u8Accept
				}
			case u8Cont2:
				if in(c, 0x80, 0xBF) {
					return u8Cont1
				}
			case u8Cont3:
				if in(c, 0x80, 0xBF) {
					return u8Cont2
				}
			case u8E0:
				if in(c, 0xA0, 0xBF) {
					return u8Cont1
				}
			case u8ED:
				if in(c, 0x80, 0x9F) {
					return u8Cont1
				}
			case u8F0:
				if in(c, 0x90, 0xBF) {
					return u8Cont2
				}
			case u8F4:
				if in(c, 0x80, 0x8F) {
					return u8Cont2
				}
			}
			return u8Error
		}
		for s := u8Accept; s <= u8F4; s += 6 {
			t[c] |= uint64(next(s)) << s
		}
	}
	return t
}()

// validUTF8 is utf8.Valid, about twice as fast on the short, often
// non-ASCII strings of a vocabulary (measured on llama.cpp's vocab files).
func validUTF8(p []byte) bool {
	if len(p) > 32 {
		return utf8.Valid(p) // 8 bytes at a time on ASCII
	}
	var s uint64
	for _, c := range p {
		s = utf8DFA[c] >> (s & 63)
	}
	return s&63 == u8Accept
}
