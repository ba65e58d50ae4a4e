package content

import (
	"encoding/binary"
	"hash/maphash"

	"regexp"
	"sort"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// safetensorsDTypeBits is the reference implementation's dtype table
// (safetensors Dtype::bitsize).
var safetensorsDTypeBits = map[string]uint64{
	"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
	"F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32, "C64": 64,
	"F64": 64, "I64": 64, "U64": 64,
}

// safetensorsDTypeNames maps dtype spellings to their canonical string, so
// parsing a dtype does not allocate.
var safetensorsDTypeNames = func() map[string]string {
	m := make(map[string]string, len(safetensorsDTypeBits))
	for k := range safetensorsDTypeBits {
		m[k] = k
	}
	return m
}()

// maxSafetensorsInt is the schema's size_t maximum (2^48-1).
const maxSafetensorsInt = 1<<48 - 1

// SafetensorsInspector validates a safetensors file as it streams. The
// header (8 + N bytes, N capped) is buffered and validated; tensor data is
// only counted.
type SafetensorsInspector struct {
	maxHeader  int64
	maxTensors int
	allow      []*regexp.Regexp
	size       int64 // declared blob size, -1 if unknown

	hdr      []byte
	n        int64 // header length, valid once len(hdr) >= 8
	done     bool  // header validated
	dataLen  int64 // bytes of tensor data the header declares
	seen     int64 // total bytes written
	tensors  []TensorInfo
	metadata map[string]string
	err      error
}

// NewSafetensorsInspector returns a safetensors validator for a blob of the
// given size (-1 if unknown; then the size rule is checked at Close).
func NewSafetensorsInspector(opts Options, size int64) *SafetensorsInspector {
	return &SafetensorsInspector{maxHeader: opts.stMaxHeader(), maxTensors: opts.stMaxTensors(), allow: opts.TensorAllow, size: size}
}

func (s *SafetensorsInspector) Format() string { return FormatSafetensors }

// HeaderDone is true once the header was fully validated.
func (s *SafetensorsInspector) HeaderDone() bool { return s.done }

// Tensors returns the validated tensor table, sorted by offset.
func (s *SafetensorsInspector) Tensors() []TensorInfo { return s.tensors }

// Metadata returns the __metadata__ map.
func (s *SafetensorsInspector) Metadata() map[string]string { return s.metadata }

func (s *SafetensorsInspector) fail(off int64, reason string, args ...any) error {
	s.err = newFinding(FormatSafetensors, off, reason, args...)
	return s.err
}

func (s *SafetensorsInspector) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	total := len(p)
	if !s.done {
		if len(s.hdr) < 8 {
			k := min(8-len(s.hdr), len(p))
			s.hdr = append(s.hdr, p[:k]...)
			p = p[k:]
			s.seen += int64(k)
			if len(s.hdr) < 8 {
				return total, nil
			}
			n := binary.LittleEndian.Uint64(s.hdr)
			if n > uint64(s.maxHeader) {
				return 0, s.fail(0, "header length %d exceeds the limit of %d bytes", n, s.maxHeader)
			}
			if n < 2 {
				return 0, s.fail(0, "header length %d is too small for a JSON object", n)
			}
			s.n = int64(n)
			if s.size >= 0 && 8+s.n > s.size {
				return 0, s.fail(0, "header length %d exceeds the blob size %d", n, s.size)
			}
			hdr := make([]byte, 8, 8+s.n)
			copy(hdr, s.hdr)
			s.hdr = hdr
		}
		need := 8 + s.n - int64(len(s.hdr))
		k := int(min(need, int64(len(p))))
		s.hdr = append(s.hdr, p[:k]...)
		p = p[k:]
		s.seen += int64(k)
		if int64(len(s.hdr)) < 8+s.n {
			return total, nil
		}
		if err := s.validateHeader(s.hdr[8:]); err != nil {
			s.err = err
			return 0, err
		}
		s.hdr = nil
		s.done = true
	}
	if len(p) > 0 {
		s.seen += int64(len(p))
		if limit := 8 + s.n + s.dataLen; s.seen > limit {
			return 0, s.fail(limit, "%s (polyglot or appended payload)", trailingReason(s.size, limit, "the last tensor"))
		}
	}
	return total, nil
}

func (s *SafetensorsInspector) Close() error {
	if s.err != nil {
		return s.err
	}
	if !s.done {
		if len(s.hdr) < 8 {
			return s.fail(s.seen, "truncated: %d bytes, need 8 bytes of header length", s.seen)
		}
		return s.fail(s.seen, "truncated header: %d of %d header bytes", int64(len(s.hdr))-8, s.n)
	}
	if want := 8 + s.n + s.dataLen; s.seen != want {
		return s.fail(s.seen, "truncated tensor data: blob has %d bytes, header declares %d", s.seen, want)
	}
	return nil
}

// validateHeader parses and checks the JSON header h (without the 8 length
// bytes).
func (s *SafetensorsInspector) validateHeader(h []byte) error {
	if h[0] != '{' {
		return newFinding(FormatSafetensors, 8, "header does not start with '{' (byte 0x%02x)", h[0])
	}
	if !utf8.Valid(h) {
		off := 0
		for off < len(h) {
			r, w := utf8.DecodeRune(h[off:])
			if r == utf8.RuneError && w <= 1 {
				break
			}
			off += w
		}
		return newFinding(FormatSafetensors, 8+int64(off), "header is not valid UTF-8")
	}
	p := &stParser{b: h, maxTensors: s.maxTensors}
	if err := p.parse(); err != nil {
		return err
	}
	// The reference pads with spaces only; nothing else may follow '}'.
	for i := p.i; i < len(h); i++ {
		if h[i] != ' ' {
			return newFinding(FormatSafetensors, 8+int64(i), "unexpected byte 0x%02x after the header object (only space padding is allowed)", h[i])
		}
	}
	ts := p.tensors
	less := func(a, b *TensorInfo) bool {
		if a.Begin != b.Begin {
			return a.Begin < b.Begin
		}
		if a.End != b.End {
			return a.End < b.End
		}
		return a.Name < b.Name
	}
	sorted := true
	for i := 1; i < len(ts) && sorted; i++ {
		sorted = !less(&ts[i], &ts[i-1])
	}
	if !sorted {
		sort.Slice(ts, func(i, j int) bool { return less(&ts[i], &ts[j]) })
	}
	var end int64
	for i := range ts {
		t := &ts[i]
		if t.End < t.Begin {
			return newFinding(FormatSafetensors, 8, "tensor %q: data_offsets [%d, %d] end before begin", t.Name, t.Begin, t.End)
		}
		if t.Begin < end {
			return newFinding(FormatSafetensors, 8, "tensor %q: data_offsets [%d, %d] overlap the previous tensor ending at %d", t.Name, t.Begin, t.End, end)
		}
		if t.Begin > end {
			return newFinding(FormatSafetensors, 8, "tensor %q: data_offsets [%d, %d] leave a gap of %d bytes after offset %d (data must be contiguous)", t.Name, t.Begin, t.End, t.Begin-end, end)
		}
		nel := uint64(1)
		for _, d := range t.Shape {
			hi, lo := mulU64(nel, d)
			if hi != 0 || lo > maxSafetensorsInt {
				return newFinding(FormatSafetensors, 8, "tensor %q: shape %v overflows the element count", t.Name, t.Shape)
			}
			nel = lo
		}
		bits := safetensorsDTypeBits[t.DType]
		hi, nbits := mulU64(nel, bits)
		if hi != 0 {
			return newFinding(FormatSafetensors, 8, "tensor %q: shape %v overflows the byte size", t.Name, t.Shape)
		}
		if nbits%8 != 0 {
			return newFinding(FormatSafetensors, 8, "tensor %q: %d elements of %s (%d bits) do not fill whole bytes", t.Name, nel, t.DType, bits)
		}
		if want := nbits / 8; uint64(t.End-t.Begin) != want {
			return newFinding(FormatSafetensors, 8, "tensor %q: data_offsets [%d, %d] span %d bytes but shape %v of %s needs %d", t.Name, t.Begin, t.End, t.End-t.Begin, t.Shape, t.DType, want)
		}
		end = t.End
	}
	if s.size >= 0 && 8+int64(len(h))+end != s.size {
		if 8+int64(len(h))+end > s.size {
			return newFinding(FormatSafetensors, 8, "tensor data ends at byte %d, beyond the blob size %d (out-of-bounds offsets)", 8+int64(len(h))+end, s.size)
		}
		return newFinding(FormatSafetensors, 8+int64(len(h))+end, "%d bytes of trailing data after the last tensor (polyglot or appended payload)", s.size-(8+int64(len(h))+end))
	}
	for _, t := range ts {
		if err := checkTensorAllow(FormatSafetensors, 8, s.allow, t.Name); err != nil {
			return err
		}
	}
	s.dataLen = end
	s.tensors = ts
	s.metadata = p.metadata
	return nil
}

func mulU64(a, b uint64) (hi, lo uint64) {
	if a == 0 || b == 0 {
		return 0, 0
	}
	lo = a * b
	if lo/b != a {
		return 1, lo
	}
	return 0, lo
}

// stParser is a strict recursive-descent parser for exactly the safetensors
// header schema. It rejects duplicate keys at every level, unknown fields,
// and any value shape the schema does not allow.
type stParser struct {
	b          []byte
	i          int
	maxTensors int
	tensors    []TensorInfo
	metadata   map[string]string
	dims       []uint64 // arena for all shapes
}

func (p *stParser) errf(reason string, args ...any) error {
	return newFinding(FormatSafetensors, 8+int64(p.i), reason, args...)
}

func (p *stParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *stParser) expect(c byte) error {
	p.ws()
	if p.i >= len(p.b) {
		return p.errf("unexpected end of header, expected '%c'", c)
	}
	if p.b[p.i] != c {
		return p.errf("expected '%c' but found '%c'", c, p.b[p.i])
	}
	p.i++
	return nil
}

// peek returns the next non-space byte or 0 at the end.
func (p *stParser) peek() byte {
	p.ws()
	if p.i >= len(p.b) {
		return 0
	}
	return p.b[p.i]
}

// object iterates the members of a JSON object, calling fn with each key
// after the ':' was consumed. Duplicate keys are rejected.
func (p *stParser) object(what string, fn func(kb []byte, key string, keyOff int) error) error {
	return p.objectDup(what, true, fn)
}

// estTensors guesses the tensor count from the header size (a tensor entry
// takes ~100 bytes) to presize tables; the cap keeps hostile headers from
// reserving more than they contain.
func (p *stParser) estTensors() int { return min(len(p.b)/96+1, p.maxTensors) }

// objectDup is object; with track=false the caller detects duplicates
// itself (tensor objects have three known fields).
// The callback gets the key bytes (valid until the next string is parsed)
// and, when track is set, the key as a string.
func (p *stParser) objectDup(what string, track bool, fn func(kb []byte, key string, keyOff int) error) error {
	if err := p.expect('{'); err != nil {
		return err
	}
	var seen map[string]struct{}
	if track {
		n := 0
		if what == "the header" {
			n = p.estTensors()
		}
		seen = make(map[string]struct{}, n)
	}
	if p.peek() == '}' {
		p.i++
		return nil
	}
	for {
		p.ws()
		keyOff := p.i
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			if p.i >= len(p.b) {
				return p.errf("unexpected end of header in %s", what)
			}
			return p.errf("expected a string key in %s", what)
		}
		kb, err := p.strBytes()
		if err != nil {
			return err
		}
		var key string
		if track {
			if _, dup := seen[string(kb)]; dup {
				p.i = keyOff
				return p.errf("duplicate key %q in %s", kb, what)
			}
			key = string(kb)
			seen[key] = struct{}{}
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		if err := fn(kb, key, keyOff); err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		case 0:
			return p.errf("unexpected end of header in %s", what)
		default:
			return p.errf("expected ',' or '}' in %s", what)
		}
	}
}

func (p *stParser) parse() error {
	p.tensors = make([]TensorInfo, 0, p.estTensors())
	p.dims = make([]uint64, 0, 3*p.estTensors())
	// Duplicate detection on a 64-bit keyed hash of the name (compact and
	// fast for 100k+ tensors); a hash hit is confirmed by comparing names.
	seed := maphash.MakeSeed()
	seen := make(map[uint64]int32, p.estTensors())
	var exact map[string]struct{} // names whose hash collided with another name
	sawMeta := false
	err := p.objectDup("the header", false, func(kb []byte, _ string, keyOff int) error {
		if string(kb) == "__metadata__" {
			if sawMeta {
				p.i = keyOff
				return p.errf("duplicate key %q in the header", kb)
			}
			sawMeta = true
			return p.parseMetadata()
		}
		h := maphash.Bytes(seed, kb)
		if j, hit := seen[h]; hit {
			if p.tensors[j].Name == string(kb) {
				p.i = keyOff
				return p.errf("duplicate key %q in the header", kb)
			}
			if exact == nil {
				exact = map[string]struct{}{}
			}
			if _, dup := exact[string(kb)]; dup {
				p.i = keyOff
				return p.errf("duplicate key %q in the header", kb)
			}
			exact[string(kb)] = struct{}{}
		} else {
			seen[h] = int32(len(p.tensors))
		}
		if len(p.tensors) >= p.maxTensors {
			return p.errf("more than %d tensors", p.maxTensors)
		}
		t, err := p.parseTensor(string(kb))
		if err != nil {
			return err
		}
		p.tensors = append(p.tensors, t)
		return nil
	})
	if err != nil {
		return err
	}
	if p.metadata == nil {
		p.metadata = map[string]string{}
	}
	return nil
}

func (p *stParser) parseMetadata() error {
	md := map[string]string{}
	if p.peek() != '{' {
		return p.errf("__metadata__ must be an object of strings")
	}
	err := p.object("__metadata__", func(_ []byte, key string, _ int) error {
		if p.peek() != '"' {
			return p.errf("__metadata__ value for %q is not a string", key)
		}
		v, err := p.str()
		if err != nil {
			return err
		}
		md[key] = v
		return nil
	})
	p.metadata = md
	return err
}

func (p *stParser) parseTensor(name string) (TensorInfo, error) {
	t := TensorInfo{Name: name}
	what := func() string { return "tensor " + strconv.Quote(name) }
	if p.peek() != '{' {
		return t, p.errf("%s is not an object", what())
	}
	var have [3]bool
	err := p.objectDup("tensor", false, func(kb []byte, _ string, keyOff int) error {
		field := -1
		switch string(kb) {
		case "dtype":
			field = 0
		case "shape":
			field = 1
		case "data_offsets":
			field = 2
		default:
			p.i = keyOff
			return p.errf("%s: unknown field %q", what(), kb)
		}
		if have[field] {
			p.i = keyOff
			return p.errf("duplicate key %q in %s", kb, what())
		}
		have[field] = true
		switch field {
		case 0:
			if p.peek() != '"' {
				return p.errf("%s: dtype is not a string", what())
			}
			off := p.i
			d, err := p.strBytes()
			if err != nil {
				return err
			}
			canon, ok := safetensorsDTypeNames[string(d)]
			if !ok {
				p.i = off
				return p.errf("%s: unknown dtype %q", what(), d)
			}
			t.DType = canon
		case 1:
			start := len(p.dims)
			if err := p.uintArray(what, "shape", -1); err != nil {
				return err
			}
			t.Shape = p.dims[start:len(p.dims):len(p.dims)]
		case 2:
			start := len(p.dims)
			if err := p.uintArray(what, "data_offsets", 2); err != nil {
				return err
			}
			t.Begin, t.End = int64(p.dims[start]), int64(p.dims[start+1])
			p.dims = p.dims[:start]
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	for i, f := range []string{"dtype", "shape", "data_offsets"} {
		if !have[i] {
			return t, p.errf("%s: missing field %q", what(), f)
		}
	}
	if t.Shape == nil {
		t.Shape = []uint64{}
	}
	return t, nil
}

// uintArray appends an array of non-negative integers to p.dims (one arena
// for all shapes). want < 0 means any length (capped at 64 dimensions).
func (p *stParser) uintArray(tensor func() string, field string, want int) error {
	what := func() string { return tensor() + ": " + field }
	if p.peek() != '[' {
		return p.errf("%s is not an array", what())
	}
	p.i++
	n := 0
	if p.peek() == ']' {
		p.i++
	} else {
		for {
			v, err := p.uint(what)
			if err != nil {
				return err
			}
			p.dims = append(p.dims, v)
			n++
			if n > 64 {
				return p.errf("%s has more than 64 entries", what())
			}
			c := p.peek()
			p.i++
			if c == ']' {
				break
			}
			if c != ',' {
				p.i--
				return p.errf("%s: expected ',' or ']'", what())
			}
		}
	}
	if want >= 0 && n != want {
		return p.errf("%s has %d entries, want %d", what(), n, want)
	}
	return nil
}

func (p *stParser) uint(what func() string) (uint64, error) {
	p.ws()
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i == start {
		if p.i < len(p.b) && p.b[p.i] == '-' {
			return 0, p.errf("%s: negative number", what())
		}
		return 0, p.errf("%s: expected a non-negative integer", what())
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, p.errf("%s: number is not an integer", what())
	}
	digits := p.b[start:p.i]
	if len(digits) > 1 && digits[0] == '0' {
		p.i = start
		return 0, p.errf("%s: number with a leading zero", what())
	}
	if len(digits) > 15 {
		p.i = start
		return 0, p.errf("%s: number %s exceeds 2^48-1", what(), digits)
	}
	var v uint64
	for _, c := range digits {
		v = v*10 + uint64(c-'0')
	}
	if v > maxSafetensorsInt {
		p.i = start
		return 0, p.errf("%s: number %d exceeds 2^48-1", what(), v)
	}
	return v, nil
}

// str parses a JSON string at p.i (which must be '"'). The buffer is known
// to be valid UTF-8.
func (p *stParser) str() (string, error) {
	b, err := p.strBytes()
	return string(b), err
}

// strBytes is str without the allocation when the string has no escapes
// (the result then aliases the header).
func (p *stParser) strBytes() ([]byte, error) {
	p.i++ // opening quote
	start := p.i
	// fast path: no escapes
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, p.errf("control character 0x%02x in string", c)
		}
		p.i++
	}
	buf := append([]byte(nil), p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return buf, nil
		case c < 0x20:
			return nil, p.errf("control character 0x%02x in string", c)
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			break
		}
		e := p.b[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, p.errf("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if r >= 0xDC00 || p.i+1 >= len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
					return nil, p.errf("unpaired UTF-16 surrogate in \\u escape")
				}
				p.i += 2
				r2, ok := p.hex4()
				if !ok {
					return nil, p.errf("invalid \\u escape")
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return nil, p.errf("unpaired UTF-16 surrogate in \\u escape")
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			p.i -= 2
			return nil, p.errf("invalid escape '\\%c' in string", e)
		}
	}
	return nil, p.errf("unterminated string")
}

func (p *stParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}
