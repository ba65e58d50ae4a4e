package content

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FormatNPY is a NumPy .npy array file (also the members of an .npz zip).
const FormatNPY = "npy"

// magicNPY starts every .npy file (numpy/lib/format.py MAGIC_PREFIX).
var magicNPY = []byte("\x93NUMPY")

// NPY limits. npyMaxHeaderChars is numpy's _MAX_HEADER_SIZE: numpy.load
// refuses longer headers unless the file is trusted (allow_pickle=True).
const (
	npyMaxHeaderChars = 10000
	npyMaxDepth       = 16 // nesting of tuples/lists in the header literal
	npyMaxDims        = 64 // NPY_MAXDIMS (numpy 2; 32 in numpy 1.x)
)

// npyInspector validates a .npy file as numpy.lib.format.read_array reads
// it: magic, version (1.0, 2.0 or 3.0), header length (u16 for 1.0, u32
// after), and the header, a Python dict literal with exactly the keys
// 'descr', 'fortran_order' and 'shape', which is parsed here strictly (a
// subset of what ast.literal_eval accepts: what numpy and other writers
// emit). The array data that follows is then either raw bytes, whose length
// must be exactly prod(shape)*itemsize and which are only counted, or, when
// the dtype holds an object anywhere, a pickle that numpy.load unpickles:
// refused under pickle: deny, walked like a raw pickle under pickle: scan.
type npyInspector struct {
	opts Options
	size int64
	pos  int64 // absolute offset of the next byte
	err  error

	hdr       []byte // magic, version, length and header, until parsed
	major     byte
	lenSize   int   // 2 (1.0) or 4 (2.0, 3.0); 0 until the version is read
	headerEnd int64 // offset of the first data byte; 0 until known
	parsed    bool

	object  bool
	dataEnd int64 // non-object arrays: offset just past the data
	pk      *PickleInspector
	tail    []byte // last bytes, to find a zip end record ending the file
}

// NewNPYInspector returns the validator for one .npy file of the given size
// (-1 if unknown). HeaderDone is true once the header is validated for
// plain arrays (their data is only counted); for object arrays (a pickle
// follows the header) only once the pickle has been walked, i.e. after the
// whole file. Trailing or missing data bytes are refused.
func NewNPYInspector(opts Options, size int64) Inspector {
	return &npyInspector{opts: opts, size: size}
}

func (n *npyInspector) Format() string { return FormatNPY }

// Globals lists the imports of an object array's pickle (scan mode).
func (n *npyInspector) Globals() []string {
	if n.pk != nil {
		return n.pk.Globals()
	}
	return nil
}

func (n *npyInspector) HeaderDone() bool {
	if n.err != nil || !n.parsed {
		return false
	}
	if n.object {
		return n.pk != nil && n.pk.HeaderDone()
	}
	return true
}

func (n *npyInspector) fail(format string, off int64, reason string, args ...any) error {
	n.err = newFinding(format, off, reason, args...)
	return n.err
}

func (n *npyInspector) Write(p []byte) (int, error) {
	if n.err != nil {
		return 0, n.err
	}
	total := len(p)
	over := false
	if n.size >= 0 && n.pos+int64(len(p)) > n.size {
		// check what fits first, so the verdict does not depend on chunking
		p = p[:max(n.size-n.pos, 0)]
		over = true
	}
	if err := n.write(p); err != nil {
		return 0, err
	}
	if len(p) >= maxEOCDTail {
		n.tail = append(n.tail[:0], p[len(p)-maxEOCDTail:]...)
	} else if n.tail = append(n.tail, p...); len(n.tail) > 2*maxEOCDTail {
		n.tail = append(n.tail[:0], n.tail[len(n.tail)-maxEOCDTail:]...)
	}
	if over {
		return 0, n.fail(FormatNPY, n.size, "more bytes than the declared size %d", n.size)
	}
	return total, nil
}

func (n *npyInspector) write(p []byte) error {
	for !n.parsed && len(p) > 0 {
		want := n.want()
		k := min(want-len(n.hdr), len(p))
		n.hdr = append(n.hdr, p[:k]...)
		p = p[k:]
		n.pos += int64(k)
		if len(n.hdr) == want {
			if err := n.step(); err != nil {
				return err
			}
		}
	}
	if len(p) == 0 {
		return nil
	}
	if n.object {
		_, err := n.pk.Write(p)
		n.pos += int64(len(p))
		if err != nil {
			return n.pickleErr(err)
		}
		return nil
	}
	if rest := n.dataEnd - n.pos; int64(len(p)) > rest {
		return n.fail(FormatNPY, n.dataEnd, "%s", trailingReason(n.size, n.dataEnd, "the array data"))
	}
	n.pos += int64(len(p))
	return nil
}

// want is how many leading bytes the next header step needs.
func (n *npyInspector) want() int {
	switch {
	case n.lenSize == 0:
		return len(magicNPY) + 2
	case n.headerEnd == 0:
		return len(magicNPY) + 2 + n.lenSize
	}
	return int(n.headerEnd)
}

// step validates the header bytes collected so far (exactly want() bytes).
func (n *npyInspector) step() error {
	h := n.hdr
	switch {
	case n.lenSize == 0:
		if err := n.checkMagic(h); err != nil {
			return err
		}
		n.major = h[6]
		switch {
		case h[6] == 1 && h[7] == 0:
			n.lenSize = 2
		case (h[6] == 2 || h[6] == 3) && h[7] == 0:
			n.lenSize = 4
		default:
			return n.fail(FormatNPY, 6, "unsupported NPY format version %d.%d (numpy reads 1.0, 2.0 and 3.0)", h[6], h[7])
		}
		return nil
	case n.headerEnd == 0:
		var hl uint64
		if n.lenSize == 2 {
			hl = uint64(binary.LittleEndian.Uint16(h[8:]))
		} else {
			hl = uint64(binary.LittleEndian.Uint32(h[8:]))
		}
		// numpy limits the decoded header to 10000 characters; UTF-8 (3.0)
		// takes up to 4 bytes per character.
		limit := uint64(npyMaxHeaderChars)
		if n.major == 3 {
			limit *= 4
		}
		if hl > limit {
			return n.fail(FormatNPY, 8, "NPY header of %d bytes exceeds numpy's limit of %d characters (max_header_size)", hl, npyMaxHeaderChars)
		}
		if hl == 0 {
			return n.fail(FormatNPY, 8, "NPY header length is 0")
		}
		n.headerEnd = int64(8+n.lenSize) + int64(hl)
		if n.size >= 0 && n.headerEnd > n.size {
			return n.fail(FormatNPY, 8, "NPY header of %d bytes does not fit the %d-byte file", hl, n.size)
		}
		return nil
	}
	return n.parseHeader()
}

func (n *npyInspector) checkMagic(h []byte) error {
	for i := 0; i < len(h) && i < len(magicNPY); i++ {
		if h[i] != magicNPY[i] {
			return n.fail(FormatNPY, 0, "not an NPY file: the magic string is not \\x93NUMPY")
		}
	}
	return nil
}

func (n *npyInspector) parseHeader() error {
	start := int64(8 + n.lenSize)
	h := npyHeaderParser{b: n.hdr[start:], utf8: n.major == 3, base: start}
	d, err := h.header()
	if err != nil {
		n.err = err
		return err
	}
	n.parsed = true
	n.hdr = nil
	n.object = d.object
	if d.object {
		if n.opts.pickleMode() != PickleScan {
			return n.fail(FormatPickle, n.headerEnd, "an object array is a pickle; pickle content is denied by policy (pickle: deny)")
		}
		ps := int64(-1)
		if n.size >= 0 {
			ps = n.size - n.headerEnd
		}
		n.pk = NewPickleInspector(n.opts, ps)
		return nil
	}
	data, ok := mulCheck(d.count, d.itemsize)
	if !ok || data > math.MaxInt64-n.headerEnd {
		return n.fail(FormatNPY, n.headerEnd, "shape %s of %s (itemsize %d) is too large: its size overflows", d.shapeText, d.descrText, d.itemsize)
	}
	n.dataEnd = n.headerEnd + data
	if n.size >= 0 && n.dataEnd != n.size {
		return n.fail(FormatNPY, n.headerEnd, "shape %s of %s (itemsize %d) needs %d data bytes after the %d-byte header, but the file has %d",
			d.shapeText, d.descrText, d.itemsize, data, n.headerEnd, n.size-n.headerEnd)
	}
	return nil
}

func (n *npyInspector) pickleErr(err error) error {
	f, ok := err.(*Finding)
	if !ok {
		n.err = err
		return err
	}
	off := f.Offset
	if off >= 0 {
		off += n.headerEnd
	}
	n.err = newFinding(FormatPickle, off, "the object array's pickle (after the %d-byte NPY header): %s", n.headerEnd, f.Reason)
	return n.err
}

func (n *npyInspector) Close() error {
	if n.err != nil {
		return n.err
	}
	if !n.parsed {
		if n.lenSize == 0 {
			if err := n.checkMagic(n.hdr); err != nil {
				return err
			}
		}
		return n.fail(FormatNPY, n.pos, "truncated NPY header: the file ends after %d bytes", n.pos)
	}
	if n.object {
		if err := n.pk.Close(); err != nil {
			return n.pickleErr(err)
		}
	} else if n.pos != n.dataEnd {
		return n.fail(FormatNPY, n.pos, "truncated array data: %d of %d bytes after the header", n.pos-n.headerEnd, n.dataEnd-n.headerEnd)
	}
	// A zip reader finds an archive from its end record, whatever precedes
	// it; numpy.load only looks at the first bytes.
	if back := embeddedZip(n.tail); back >= 0 {
		return n.fail(FormatZip, n.pos-int64(back), "a zip archive ends this NPY file but does not start it (polyglot)")
	}
	return nil
}

func mulCheck(a, b int64) (int64, bool) {
	if a < 0 || b < 0 {
		return 0, false
	}
	if a == 0 || b == 0 {
		return 0, true
	}
	if a > math.MaxInt64/b {
		return 0, false
	}
	return a * b, true
}

// ---- header literal ----

type pyKind uint8

const (
	pyStr pyKind = iota
	pyInt
	pyBool
	pyTuple
	pyList
)

// pyVal is one parsed literal; off is its byte offset in the header.
type pyVal struct {
	kind  pyKind
	s     string // pyStr: decoded value; pyInt: digits as written
	n     int64  // pyInt, pyBool
	big   bool   // pyInt does not fit int64
	items []pyVal
	off   int
}

type npyHeader struct {
	object    bool
	itemsize  int64
	count     int64
	shapeText string
	descrText string
}

// npyHeaderParser parses the header dict. It accepts what numpy (and cnpy,
// npyz and friends) write: one line, '{' first, string keys, string /
// int / True / False / tuple / list values separated by spaces, an optional
// trailing comma, then spaces and a final '\n'. Anything else that Python
// would also accept (comments, other whitespace, other number forms,
// string prefixes, parentheses) is refused: numpy never writes it.
type npyHeaderParser struct {
	b    []byte
	i    int
	utf8 bool  // 3.0: UTF-8; 1.0/2.0: latin-1 (non-ASCII only inside strings)
	base int64 // file offset of b[0]
}

func (p *npyHeaderParser) errAt(i int, reason string, args ...any) error {
	return newFinding(FormatNPY, p.base+int64(i), "NPY header: "+reason, args...)
}

func (p *npyHeaderParser) header() (npyHeader, error) {
	b := p.b
	if b[len(b)-1] != '\n' {
		return npyHeader{}, p.errAt(len(b)-1, "does not end with a newline (numpy pads the header with spaces and a final '\\n')")
	}
	if p.utf8 {
		if !utf8.Valid(b) {
			return npyHeader{}, p.errAt(p.firstInvalidUTF8(), "version 3.0 header is not valid UTF-8")
		}
		if c := utf8.RuneCount(b); c > npyMaxHeaderChars {
			return npyHeader{}, p.errAt(0, "header of %d characters exceeds numpy's limit of %d (max_header_size)", c, npyMaxHeaderChars)
		}
	}
	if b[0] != '{' {
		return npyHeader{}, p.errAt(0, "does not start with '{' (want a Python dict literal)")
	}
	d, err := p.value(0)
	if err != nil {
		return npyHeader{}, err
	}
	for p.i < len(b)-1 {
		if b[p.i] != ' ' {
			return npyHeader{}, p.errAt(p.i, "%s after the dict (only spaces may pad the header)", p.charDesc(p.i))
		}
		p.i++
	}
	return p.check(d)
}

func (p *npyHeaderParser) firstInvalidUTF8() int {
	for i := 0; i < len(p.b); {
		r, w := utf8.DecodeRune(p.b[i:])
		if r == utf8.RuneError && w <= 1 {
			return i
		}
		i += w
	}
	return 0
}

// charDesc names the byte (or character) at i for a message.
func (p *npyHeaderParser) charDesc(i int) string {
	c := p.b[i]
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("%q", rune(c))
	}
	if c < 0x80 || !p.utf8 {
		return fmt.Sprintf("byte 0x%02x", c)
	}
	r, _ := utf8.DecodeRune(p.b[i:])
	return fmt.Sprintf("character %U", r)
}

func (p *npyHeaderParser) spaces() {
	for p.i < len(p.b) && p.b[p.i] == ' ' {
		p.i++
	}
}

func (p *npyHeaderParser) expect(c byte, what string) error {
	p.spaces()
	if p.i >= len(p.b)-1 {
		return p.errAt(p.i, "ends before %s", what)
	}
	if p.b[p.i] != c {
		return p.errAt(p.i, "expected %s, found %s", what, p.charDesc(p.i))
	}
	p.i++
	return nil
}

// value parses one literal (strings, ints, True/False, tuples, lists, and
// at depth 0 the dict itself). The final '\n' is never part of a value.
func (p *npyHeaderParser) value(depth int) (pyVal, error) {
	p.spaces()
	end := len(p.b) - 1
	if p.i >= end {
		return pyVal{}, p.errAt(p.i, "ends where a value is expected")
	}
	start := p.i
	c := p.b[p.i]
	switch {
	case c == '{':
		if depth != 0 {
			return pyVal{}, p.errAt(start, "nested dict")
		}
		return p.dict()
	case c == '(' || c == '[':
		if depth >= npyMaxDepth {
			return pyVal{}, p.errAt(start, "nested deeper than %d levels", npyMaxDepth)
		}
		return p.seq(depth)
	case c == '\'' || c == '"':
		return p.str()
	case c == '-' || c >= '0' && c <= '9':
		return p.integer()
	case c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_':
		j := p.i
		for j < end && (isIdentByte(p.b[j])) {
			j++
		}
		w := string(p.b[p.i:j])
		p.i = j
		switch w {
		case "True":
			return pyVal{kind: pyBool, n: 1, off: start}, nil
		case "False":
			return pyVal{kind: pyBool, n: 0, off: start}, nil
		}
		return pyVal{}, p.errAt(start, "name %q is not a literal numpy writes (only True and False)", truncate(w))
	}
	return pyVal{}, p.errAt(start, "unexpected %s", p.charDesc(start))
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// dict parses {key: value, ...}; keys must be strings and unique.
func (p *npyHeaderParser) dict() (pyVal, error) {
	d := pyVal{kind: pyList, off: p.i} // items: key, value, key, value...
	p.i++                              // '{'
	seen := map[string]bool{}
	for {
		p.spaces()
		if p.i < len(p.b)-1 && p.b[p.i] == '}' {
			p.i++
			return d, nil
		}
		k, err := p.value(1)
		if err != nil {
			return pyVal{}, err
		}
		if k.kind != pyStr {
			return pyVal{}, p.errAt(k.off, "dict key is not a string")
		}
		switch k.s {
		case "descr", "fortran_order", "shape":
		default:
			return pyVal{}, p.errAt(k.off, "unexpected key %q (numpy requires exactly 'descr', 'fortran_order' and 'shape')", truncate(k.s))
		}
		if seen[k.s] {
			return pyVal{}, p.errAt(k.off, "key %q appears twice (Python keeps the last one, other readers the first)", k.s)
		}
		seen[k.s] = true
		if err := p.expect(':', "':' after a dict key"); err != nil {
			return pyVal{}, err
		}
		v, err := p.value(1)
		if err != nil {
			return pyVal{}, err
		}
		d.items = append(d.items, k, v)
		p.spaces()
		if p.i < len(p.b)-1 && p.b[p.i] == ',' {
			p.i++
			continue
		}
		if err := p.expect('}', "',' or '}' in the dict"); err != nil {
			return pyVal{}, err
		}
		return d, nil
	}
}

// seq parses a tuple or list. A one-item tuple needs its trailing comma
// ("(3)" is the int 3 in Python, not a tuple).
func (p *npyHeaderParser) seq(depth int) (pyVal, error) {
	open := p.b[p.i]
	v := pyVal{kind: pyList, off: p.i}
	closer := byte(']')
	if open == '(' {
		v.kind, closer = pyTuple, ')'
	}
	p.i++
	commas := 0
	for {
		p.spaces()
		if p.i < len(p.b)-1 && p.b[p.i] == closer {
			p.i++
			break
		}
		it, err := p.value(depth + 1)
		if err != nil {
			return pyVal{}, err
		}
		v.items = append(v.items, it)
		p.spaces()
		if p.i < len(p.b)-1 && p.b[p.i] == ',' {
			p.i++
			commas++
			continue
		}
		if err := p.expect(closer, fmt.Sprintf("',' or '%c'", closer)); err != nil {
			return pyVal{}, err
		}
		break
	}
	if v.kind == pyTuple && len(v.items) == 1 && commas == 0 {
		return pyVal{}, p.errAt(v.off, "parenthesised value without a comma is not a tuple")
	}
	return v, nil
}

// integer parses a decimal int: no leading zeros, no '_', an optional '-',
// and for 1.0/2.0 headers the Python 2 'L' suffix numpy still strips.
func (p *npyHeaderParser) integer() (pyVal, error) {
	start := p.i
	end := len(p.b) - 1
	neg := false
	if p.b[p.i] == '-' {
		neg = true
		p.i++
	}
	d := p.i
	for p.i < end && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	digits := string(p.b[d:p.i])
	if digits == "" {
		return pyVal{}, p.errAt(start, "'-' not followed by digits")
	}
	if len(digits) > 1 && digits[0] == '0' {
		return pyVal{}, p.errAt(start, "integer %q has leading zeros", truncate(digits))
	}
	if p.i < end && p.b[p.i] == 'L' && !p.utf8 {
		p.i++
	}
	if p.i < end && (isIdentByte(p.b[p.i]) || p.b[p.i] == '.') {
		return pyVal{}, p.errAt(start, "number is not a plain decimal integer")
	}
	v := pyVal{kind: pyInt, s: digits, off: start}
	x, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		v.big = true
	}
	v.n = x
	if neg {
		v.n = -x
		v.s = "-" + digits
	}
	return v, nil
}

// str parses a quoted string with the escapes Python's repr() writes.
// Outside ASCII: latin-1 bytes (1.0, 2.0) or UTF-8 (3.0), but no control
// characters.
func (p *npyHeaderParser) str() (pyVal, error) {
	start := p.i
	q := p.b[p.i]
	p.i++
	end := len(p.b) - 1
	var sb strings.Builder
	for {
		if p.i >= end {
			return pyVal{}, p.errAt(start, "unterminated string")
		}
		c := p.b[p.i]
		switch {
		case c == q:
			p.i++
			return pyVal{kind: pyStr, s: sb.String(), off: start}, nil
		case c == '\\':
			r, err := p.escape()
			if err != nil {
				return pyVal{}, err
			}
			sb.WriteRune(r)
		case c < 0x20 || c == 0x7f:
			return pyVal{}, p.errAt(p.i, "control character 0x%02x in a string", c)
		case c < 0x80:
			sb.WriteByte(c)
			p.i++
		case !p.utf8:
			if c < 0xa0 {
				return pyVal{}, p.errAt(p.i, "control character 0x%02x in a string", c)
			}
			sb.WriteRune(rune(c)) // latin-1
			p.i++
		default:
			r, w := utf8.DecodeRune(p.b[p.i:])
			if r < 0xa0 {
				return pyVal{}, p.errAt(p.i, "control character %U in a string", r)
			}
			sb.WriteRune(r)
			p.i += w
		}
	}
}

func (p *npyHeaderParser) escape() (rune, error) {
	at := p.i
	end := len(p.b) - 1
	if p.i+1 >= end {
		return 0, p.errAt(at, "unterminated string")
	}
	e := p.b[p.i+1]
	p.i += 2
	hexn := 0
	switch e {
	case '\\', '\'', '"':
		return rune(e), nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'x':
		hexn = 2
	case 'u':
		hexn = 4
	case 'U':
		hexn = 8
	default:
		return 0, p.errAt(at, "string escape %s is not one Python's repr() writes", strconv.Quote("\\"+string(rune(e))))
	}
	if p.i+hexn > end {
		return 0, p.errAt(at, "truncated \\%c escape", e)
	}
	x, err := strconv.ParseUint(string(p.b[p.i:p.i+hexn]), 16, 32)
	if err != nil {
		return 0, p.errAt(at, "invalid \\%c escape", e)
	}
	p.i += hexn
	if x > utf8.MaxRune {
		return 0, p.errAt(at, "\\U escape beyond U+10FFFF")
	}
	return rune(x), nil // surrogates become U+FFFD (only names are compared)
}

// check applies numpy's checks on the parsed dict and computes the size.
func (p *npyHeaderParser) check(d pyVal) (npyHeader, error) {
	var descr, fortran, shape *pyVal
	for i := 0; i < len(d.items); i += 2 {
		v := &d.items[i+1]
		switch d.items[i].s {
		case "descr":
			descr = v
		case "fortran_order":
			fortran = v
		case "shape":
			shape = v
		}
	}
	var missing []string
	for _, k := range []struct {
		name string
		v    *pyVal
	}{{"descr", descr}, {"fortran_order", fortran}, {"shape", shape}} {
		if k.v == nil {
			missing = append(missing, "'"+k.name+"'")
		}
	}
	if len(missing) > 0 {
		return npyHeader{}, p.errAt(d.off, "missing key %s (numpy requires exactly 'descr', 'fortran_order' and 'shape')", strings.Join(missing, ", "))
	}
	var h npyHeader
	if fortran.kind != pyBool {
		return h, p.errAt(fortran.off, "fortran_order is not True or False")
	}
	count, text, err := p.shape(*shape, "shape")
	if err != nil {
		return h, err
	}
	h.count, h.shapeText = count, text
	switch descr.kind {
	case pyStr:
		h.itemsize, h.object, err = p.dtypeStr(*descr)
		h.descrText = strconv.Quote(descr.s)
	case pyList:
		h.itemsize, h.object, err = p.fields(*descr, 0)
		h.descrText = "a structured dtype"
	default:
		err = p.errAt(descr.off, "descr is neither a dtype string nor a list of fields")
	}
	return h, err
}

// shape checks a tuple of non-negative ints and returns their product.
func (p *npyHeaderParser) shape(v pyVal, what string) (int64, string, error) {
	if v.kind != pyTuple {
		return 0, "", p.errAt(v.off, "%s is not a tuple of integers", what)
	}
	if len(v.items) > npyMaxDims {
		return 0, "", p.errAt(v.off, "%s has %d dimensions (numpy allows %d)", what, len(v.items), npyMaxDims)
	}
	parts := make([]string, len(v.items))
	for i, it := range v.items {
		if it.kind != pyInt {
			return 0, "", p.errAt(it.off, "%s is not a tuple of integers", what)
		}
		parts[i] = truncate(it.s)
	}
	text := "(" + strings.Join(parts, ", ")
	if len(parts) == 1 {
		text += ","
	}
	text += ")"
	count := int64(1)
	for _, it := range v.items {
		if strings.HasPrefix(it.s, "-") {
			return 0, "", p.errAt(it.off, "%s has a negative dimension %s", what, truncate(it.s))
		}
		if it.big {
			return 0, "", p.errAt(it.off, "%s has a dimension beyond 2^63-1", what)
		}
		c, ok := mulCheck(count, it.n)
		if !ok {
			// numpy multiplies in int64 and wraps
			return 0, "", p.errAt(v.off, "%s %s has more than 2^63-1 elements", what, text)
		}
		count = c
	}
	return count, text, nil
}

// dtypeStr parses a dtype string as numpy writes it (dtype.str): an
// optional byte order and a type code with its size. Anything else numpy
// would also accept ('float32', 'd', 'f4,i4', '(2,)f4', 'object') is
// refused, so an object dtype cannot hide behind a spelling this parser
// does not know.
func (p *npyHeaderParser) dtypeStr(v pyVal) (size int64, object bool, err error) {
	s := v.s
	bad := func() (int64, bool, error) {
		return 0, false, p.errAt(v.off, "descr %s is not a dtype string numpy writes (e.g. '<f4', '|u1', '<U10', '|O')", strconv.Quote(truncate(s)))
	}
	t := s
	if t != "" && strings.IndexByte("<>|=", t[0]) >= 0 {
		t = t[1:]
	}
	if t == "" {
		return bad()
	}
	kind, rest := t[0], t[1:]
	num := func(r string) (int64, bool) {
		if r == "" || len(r) > 1 && r[0] == '0' || len(r) > 15 {
			return 0, false
		}
		x, err := strconv.ParseInt(r, 10, 64)
		return x, err == nil
	}
	switch kind {
	case 'O':
		if rest == "" || rest == "8" || rest == "4" {
			return 8, true, nil
		}
	case 'b':
		if rest == "1" {
			return 1, false, nil
		}
	case 'i', 'u':
		switch rest {
		case "1", "2", "4", "8":
			x, _ := num(rest)
			return x, false, nil
		}
	case 'f':
		switch rest {
		case "2", "4", "8", "12", "16":
			x, _ := num(rest)
			return x, false, nil
		}
	case 'c':
		switch rest {
		case "8", "16", "24", "32":
			x, _ := num(rest)
			return x, false, nil
		}
	case 'S', 'V':
		if x, ok := num(rest); ok {
			return x, false, nil
		}
	case 'U':
		if x, ok := num(rest); ok {
			return 4 * x, false, nil
		}
	case 'M', 'm':
		if rest == "8" || strings.HasPrefix(rest, "8[") && strings.HasSuffix(rest, "]") && validDatetimeUnit(rest[2:len(rest)-1]) {
			return 8, false, nil
		}
	}
	return bad()
}

func validDatetimeUnit(u string) bool {
	i := 0
	for i < len(u) && u[i] >= '0' && u[i] <= '9' {
		i++
	}
	if i > 0 && (u[0] == '0' || i > 9) {
		return false
	}
	switch u[i:] {
	case "Y", "M", "W", "D", "h", "m", "s", "ms", "us", "ns", "ps", "fs", "as", "generic":
		return i == 0 || u[i:] != "generic"
	}
	return false
}

// fields parses a structured descr: a list of (name, type) or (name, type,
// shape) tuples, where name is a string or a (title, name) pair and type a
// dtype string or a nested list of fields.
func (p *npyHeaderParser) fields(v pyVal, depth int) (size int64, object bool, err error) {
	if depth >= npyMaxDepth {
		return 0, false, p.errAt(v.off, "structured descr nested deeper than %d levels", npyMaxDepth)
	}
	names := map[string]bool{}
	for _, f := range v.items {
		if f.kind != pyTuple || len(f.items) < 2 || len(f.items) > 3 {
			return 0, false, p.errAt(f.off, "structured descr field is not a (name, type) or (name, type, shape) tuple")
		}
		nm := f.items[0]
		var fieldNames []string
		switch {
		case nm.kind == pyStr:
			fieldNames = []string{nm.s}
		case nm.kind == pyTuple && len(nm.items) == 2 && nm.items[0].kind == pyStr && nm.items[1].kind == pyStr:
			fieldNames = []string{nm.items[0].s, nm.items[1].s} // title, name
		default:
			return 0, false, p.errAt(nm.off, "structured descr field name is not a string or a (title, name) pair")
		}
		label := strconv.Quote(truncate(fieldNames[len(fieldNames)-1]))
		for _, s := range fieldNames {
			if s == "" {
				continue // padding ('', '|V4'); numpy drops it
			}
			if names[s] {
				return 0, false, p.errAt(nm.off, "structured descr has field name or title %s twice", strconv.Quote(truncate(s)))
			}
			names[s] = true
		}
		ty := f.items[1]
		var fs int64
		var fo bool
		switch ty.kind {
		case pyStr:
			fs, fo, err = p.dtypeStr(ty)
		case pyList:
			fs, fo, err = p.fields(ty, depth+1)
		default:
			err = p.errAt(ty.off, "type of field %s is neither a dtype string nor a list of fields", label)
		}
		if err != nil {
			return 0, false, err
		}
		if len(f.items) == 3 {
			n, _, err := p.shape(f.items[2], "subarray shape of field "+label)
			if err != nil {
				return 0, false, err
			}
			var ok bool
			if fs, ok = mulCheck(fs, n); !ok {
				return 0, false, p.errAt(f.off, "field %s is too large: its size overflows", label)
			}
		}
		if size > math.MaxInt64-fs {
			return 0, false, p.errAt(f.off, "structured dtype is too large: its size overflows")
		}
		size += fs
		object = object || fo
	}
	return size, object, nil
}
