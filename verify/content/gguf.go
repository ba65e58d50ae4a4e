package content

import (
	"encoding/binary"
	"math"
	"math/bits"
	"regexp"
	"strings"
	"unicode/utf8"
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
type GGUFInspector struct {
	opts      GGUFOptions
	allow     []*regexp.Regexp
	size      int64
	buf       streamBuf
	seen      int64
	err       error
	state     ggufState
	retryAt   int
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
	tensors  []TensorInfo
	names    map[string]struct{}
	nextOff  uint64 // expected offset of the next tensor
	dataLen  uint64 // tensor data bytes (padded, without the final padding)
	padLeft  int64
	dataFrom int64 // absolute offset where tensor data starts
	done     bool
	chatTmpl string
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
// (including the file size implied by the tensor table).
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
	start := g.seen
	g.seen += int64(n)
	if g.size >= 0 && g.seen > g.size {
		return 0, g.fail(g.size, "more bytes than the declared size %d", g.size)
	}
	if g.state == ggData {
		return n, g.data(int64(n), start)
	}
	if len(g.buf.b) == 0 {
		g.buf.base = start
		g.buf.b = p
		err := g.run()
		g.buf.b = append([]byte(nil), g.buf.b...)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	g.buf.b = append(g.buf.b, p...)
	if len(g.buf.b) < g.retryAt {
		return n, nil
	}
	if err := g.run(); err != nil {
		return 0, err
	}
	return n, nil
}

func (g *GGUFInspector) run() error {
	for len(g.buf.b) > 0 {
		if g.state == ggData {
			k := len(g.buf.b)
			g.buf.consume(k)
			return g.data(int64(k), g.buf.base-int64(k))
		}
		before := len(g.buf.b)
		if err := g.step(); err != nil {
			g.err = err
			return err
		}
		if len(g.buf.b) == before && g.state != ggData {
			g.retryAt = 2 * before
			return nil
		}
		g.retryAt = 0
	}
	return nil
}

func (g *GGUFInspector) data(n int64, off int64) error {
	if limit := g.dataFrom + int64(g.dataLen) + g.padLeft; off+n > limit && g.size < 0 {
		return g.fail(limit, "%s", trailingReason(-1, limit, "the tensor data"))
	}
	return nil
}

// str reads a gguf_string_t at b[i:]; ok=false means more bytes are needed.
func (g *GGUFInspector) str(b []byte, i int, off int64, what string) (s string, next int, ok bool, err error) {
	return g.strMax(b, i, off, what, g.opts.MaxStringBytes)
}

// strMax is str with an explicit length cap.
func (g *GGUFInspector) strMax(b []byte, i int, off int64, what string, max int64) (s string, next int, ok bool, err error) {
	if len(b)-i < 8 {
		return "", 0, false, nil
	}
	ln := binary.LittleEndian.Uint64(b[i:])
	if ln > uint64(max) {
		return "", 0, false, g.fail(off+int64(i), "%s: string length %d exceeds the limit of %d bytes", what, ln, max)
	}
	if int64(ln) > g.remaining(off+int64(i)+8) {
		return "", 0, false, g.fail(off+int64(i), "%s: string length %d exceeds the %d remaining bytes", what, ln, g.remaining(off+int64(i)+8))
	}
	if uint64(len(b)-i-8) < ln {
		return "", 0, false, nil
	}
	raw := b[i+8 : i+8+int(ln)]
	if !utf8.Valid(raw) {
		return "", 0, false, g.fail(off+int64(i), "%s: string is not valid UTF-8", what)
	}
	return string(raw), i + 8 + int(ln), true, nil
}

func (g *GGUFInspector) step() error {
	b := g.buf.b
	off := g.buf.base
	switch g.state {
	case ggHeader:
		if len(b) < 24 {
			if len(b) >= 4 && string(b[:4]) != "GGUF" {
				return g.fail(0, "bad magic %q (not a GGUF file)", b[:4])
			}
			return nil
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
		key, i, ok, err := g.strMax(b, 0, off, "metadata key", 65535)
		if err != nil || !ok {
			return err
		}
		if key == "" {
			return g.fail(off, "empty metadata key")
		}
		if _, dup := g.keys[key]; dup {
			return g.fail(off, "duplicate metadata key %q", key)
		}
		if len(b)-i < 4 {
			return nil
		}
		typ := binary.LittleEndian.Uint32(b[i:])
		i += 4
		if typ > ggufF64 {
			return g.fail(off, "metadata key %q has unknown value type %d", key, typ)
		}
		if wk, ok := wellKnownGGUF[key]; ok && int(typ) != wk[0] {
			return g.fail(off, "metadata key %q has type %s, want %s", key, ggufTypeNames[typ], ggufTypeNames[wk[0]])
		}
		switch typ {
		case ggufString:
			s, next, ok, err := g.str(b, i, off, "metadata key "+quote(key))
			if err != nil || !ok {
				return err
			}
			if err := g.stringValue(key, s, off); err != nil {
				return err
			}
			i = next
		case ggufArray:
			if len(b)-i < 12 {
				return nil
			}
			et := binary.LittleEndian.Uint32(b[i:])
			cnt := binary.LittleEndian.Uint64(b[i+4:])
			if et == ggufArray {
				return g.fail(off, "metadata key %q: nested arrays are not allowed", key)
			}
			if et > ggufF64 {
				return g.fail(off, "metadata key %q: array of unknown type %d", key, et)
			}
			if wk, ok := wellKnownGGUF[key]; ok && wk[1] >= 0 && int(et) != wk[1] {
				return g.fail(off, "metadata key %q is an array of %s, want %s", key, ggufTypeNames[et], ggufTypeNames[wk[1]])
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
			g.arrKey, g.arrType, g.arrLeft = key, int(et), cnt
		default:
			sz := ggufScalarSize[typ]
			if len(b)-i < sz {
				return nil
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
		} else {
			g.kvDone++
		}
		return g.advance()
	case ggArray:
		if g.arrType == ggufString {
			// strings one by one
			s, next, ok, err := g.str(b, 0, off, "metadata key "+quote(g.arrKey)+" element")
			if err != nil || !ok {
				return err
			}
			_ = s
			g.buf.consume(next)
			g.arrLeft--
		} else {
			sz := uint64(ggufScalarSize[g.arrType])
			k := min(g.arrLeft, uint64(len(b))/sz)
			if k == 0 {
				return nil
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
		}
		if g.arrLeft == 0 {
			g.kvDone++
			g.state = ggKV
			return g.advance()
		}
		return nil
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

func (g *GGUFInspector) finishHeader() error {
	// The writer pads every tensor, including the last one; accept the file
	// ending either right after the last tensor or after its padding.
	end := g.dataFrom + int64(g.dataLen)
	maxEnd := end
	if len(g.tensors) > 0 {
		last := g.tensors[len(g.tensors)-1]
		maxEnd = g.dataFrom + int64(alignUp(uint64(last.End), g.alignment))
	}
	if g.size >= 0 {
		for _, t := range g.tensors {
			if g.dataFrom+t.End > g.size {
				return g.fail(g.dataFrom+t.Begin, "tensor %q (offset %d, %d bytes) extends beyond the file size %d", t.Name, t.Begin, t.End-t.Begin, g.size)
			}
		}
		if g.size < end {
			return g.fail(end, "tensor data ends at byte %d, beyond the file size %d (out-of-bounds tensor)", end, g.size)
		}
		if g.size > maxEnd {
			return g.fail(maxEnd, "%d bytes of trailing data after the tensor data", g.size-maxEnd)
		}
	}
	for _, t := range g.tensors {
		if err := checkTensorAllow(FormatGGUF, g.dataFrom, g.allow, t.Name); err != nil {
			g.err = err
			return err
		}
	}
	g.padLeft = maxEnd - end
	g.state = ggData
	g.done = true
	return nil
}

func alignUp(v, a uint64) uint64 { return v + (a-v%a)%a }

func (g *GGUFInspector) tensorInfo(b []byte, off int64) error {
	name, i, ok, err := g.str(b, 0, off, "tensor name")
	if err != nil || !ok {
		return err
	}
	if name == "" {
		return g.fail(off, "empty tensor name")
	}
	if len(name) > 63 {
		return g.fail(off, "tensor name %q is %d bytes (at most 63)", name, len(name))
	}
	if len(b)-i < 4 {
		return nil
	}
	nd := binary.LittleEndian.Uint32(b[i:])
	if nd > 4 {
		return g.fail(off, "tensor %q has %d dimensions (at most 4)", name, nd)
	}
	if len(b)-i < 4+int(nd)*8+4+8 {
		return nil
	}
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

// chatTemplateDanger lists template constructs that reach Python objects
// (server-side template injection, CVE-2024-34359 class).
var chatTemplateDanger = []string{
	"__class__", "__globals__", "__subclasses__", "__builtins__", "__import__", "__mro__", "__base__",
	"__bases__", "__init__", "__dict__", "__getattribute__", "__code__", "__reduce__", "__loader__",
	"__spec__", "func_globals", "|attr", "\\x5f\\x5f", "\\u005f", "os.popen", "subprocess", "eval(", "exec(",
}

// CheckTemplate returns the first construct in a Jinja/Go template that
// reaches Python objects, or "".
func CheckTemplate(t string) string {
	l := strings.ToLower(t)
	for _, d := range chatTemplateDanger {
		if strings.Contains(l, d) {
			return d
		}
	}
	// any other dunder attribute access
	for i := strings.Index(l, "__"); i >= 0; {
		j := i + 2
		for j < len(l) && (l[j] >= 'a' && l[j] <= 'z' || l[j] == '_' || l[j] >= '0' && l[j] <= '9') {
			j++
		}
		if w := l[i:j]; len(w) > 4 && strings.HasSuffix(w, "__") {
			return w
		}
		k := strings.Index(l[i+2:], "__")
		if k < 0 {
			break
		}
		i = i + 2 + k
	}
	return ""
}

func (g *GGUFInspector) stringValue(key, s string, off int64) error {
	switch key {
	case "general.architecture":
		g.arch = s
	case "tokenizer.chat_template":
		g.chatTmpl = s
		if !g.opts.AllowChatTemplateDunder {
			if d := CheckTemplate(s); d != "" {
				return g.fail(off, "tokenizer.chat_template contains %q, a construct that reaches Python objects (template injection)", d)
			}
		}
	}
	if strings.HasPrefix(key, "tokenizer.chat_template.") && !g.opts.AllowChatTemplateDunder {
		if d := CheckTemplate(s); d != "" {
			return g.fail(off, "%s contains %q, a construct that reaches Python objects (template injection)", key, d)
		}
	}
	return nil
}

// Close checks the file ended where the tensor table says it must.
func (g *GGUFInspector) Close() error {
	if g.err != nil {
		return g.err
	}
	if len(g.buf.b) > 0 {
		g.retryAt = 0
		if err := g.run(); err != nil {
			return err
		}
	}
	if !g.done {
		return g.fail(g.seen, "truncated GGUF: the stream ends inside the header, metadata or tensor infos")
	}
	end := g.dataFrom + int64(g.dataLen)
	if g.seen < end {
		return g.fail(g.seen, "truncated tensor data: %d bytes, tensor table needs %d", g.seen, end)
	}
	if g.seen > end+g.padLeft {
		return g.fail(end+g.padLeft, "%d bytes of trailing data after the tensor data", g.seen-end-g.padLeft)
	}
	return nil
}
