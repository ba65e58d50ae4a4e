// Package strictjson reads signed JSON one way. A signature covers bytes,
// but a policy decides on what a parser makes of them; when two parsers (or
// two places in pullgate) can make different things of the same bytes, a
// signed document means what the attacker wants to whoever reads it the
// lenient way. encoding/json is lenient in four ways this package refuses:
//
//   - a repeated object key: encoding/json keeps the last, other parsers
//     the first (or refuse);
//   - a key that matches a struct field only case-insensitively
//     ("Critical", "docker-manifest-Digest"): encoding/json fills the field,
//     parsers that compare exactly do not;
//   - invalid UTF-8, or a \u escape of a lone UTF-16 surrogate:
//     encoding/json silently replaces either with U+FFFD;
//   - anything after the value (Decoder.Decode stops at the first value).
//
// Nesting is bounded (MaxDepth). Everything that decides an allow from
// signed JSON, and everything that serves it, decodes through this package.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of objects and arrays. Signed payloads nest a
// handful of levels; SLSA provenance and SBOM predicates a few dozen at most.
const MaxDepth = 64

// Error says why input was refused, where (a path such as
// $.critical.image and the byte offset) and what.
type Error struct {
	Path   string // $ for the top-level value
	Offset int    // byte offset in the input
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s at %s (byte %d)", e.Msg, e.Path, e.Offset)
}

// Check reports whether data is exactly one JSON value with no repeated
// key at any depth, valid UTF-8 and no lone surrogate escape, nested at
// most MaxDepth deep.
func Check(data []byte) error {
	return scan(data, nil, false)
}

// Unmarshal checks data as Check does and, where v's type has a struct,
// that every key naming one of its fields names it exactly (case
// included); then decodes data into v with encoding/json, which can then
// read it only one way. Keys that name no field are ignored, as
// encoding/json ignores them.
func Unmarshal(data []byte, v any) error {
	if err := scan(data, reflect.TypeOf(v), false); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// UnmarshalKnown is Unmarshal that also refuses keys naming no field of a
// struct, at any depth (maps and interface values take any key).
func UnmarshalKnown(data []byte, v any) error {
	if err := scan(data, reflect.TypeOf(v), true); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// UnmarshalObject is UnmarshalKnown for input that must be a JSON object
// (signed payloads, envelopes, statements): anything else is "not a JSON
// object".
func UnmarshalObject(data []byte, v any) error {
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' {
		return errors.New("not a JSON object")
	}
	return UnmarshalKnown(data, v)
}

func scan(data []byte, t reflect.Type, known bool) error {
	p := &parser{b: data, known: known}
	p.ws()
	if p.i == len(p.b) {
		return &Error{Path: "$", Offset: 0, Msg: "invalid JSON: no JSON value"}
	}
	if err := p.value(guideOf(t), 0); err != nil {
		return err
	}
	p.ws()
	if p.i != len(p.b) {
		return &Error{Path: "$", Offset: p.i, Msg: "invalid JSON: data after the JSON value"}
	}
	return nil
}

type parser struct {
	b     []byte
	i     int
	known bool
}

// fail is an error at the current offset; callers on the way out prefix
// its path.
func (p *parser) fail(format string, args ...any) *Error {
	return &Error{Path: "$", Offset: p.i, Msg: fmt.Sprintf(format, args...)}
}

// syntax is an error in the JSON grammar at the current offset.
func (p *parser) syntax(format string, args ...any) *Error {
	return p.fail("invalid JSON: "+format, args...)
}

// within prefixes err's path with a key or index of an enclosing value.
func within(err error, seg string) error {
	if e, ok := err.(*Error); ok {
		e.Path = "$" + seg + strings.TrimPrefix(e.Path, "$")
	}
	return err
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) value(g *guide, depth int) error {
	if p.i >= len(p.b) {
		return p.syntax("unexpected end of input")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if depth >= MaxDepth {
			return p.fail("nested more than %d levels deep", MaxDepth)
		}
		return p.object(g, depth+1)
	case c == '[':
		if depth >= MaxDepth {
			return p.fail("nested more than %d levels deep", MaxDepth)
		}
		return p.array(g, depth+1)
	case c == '"':
		_, _, err := p.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	}
	return p.syntax("invalid character %q looking for a value", p.b[p.i])
}

func (p *parser) literal(s string) error {
	if !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		return p.syntax("invalid literal (want %s)", s)
	}
	p.i += len(s)
	return nil
}

func (p *parser) number() error {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && p.b[p.i] >= '1' && p.b[p.i] <= '9':
		p.digits()
	default:
		p.i = start
		return p.syntax("invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if !p.digits() {
			return p.syntax("invalid number: no digit after the decimal point")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			return p.syntax("invalid number: no digit in the exponent")
		}
	}
	return nil
}

func (p *parser) digits() bool {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// str scans a string at p.i (an opening quote) and returns its raw contents
// and whether they hold escapes. Escapes are checked: the known ones only,
// and \u surrogates in valid pairs.
func (p *parser) str() (raw []byte, escaped bool, err error) {
	p.i++ // opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			raw = p.b[start:p.i]
			p.i++
			return raw, escaped, nil
		case c < 0x20:
			return nil, false, p.syntax("control character in a string")
		case c == '\\':
			escaped = true
			if err := p.escape(); err != nil {
				return nil, false, err
			}
		case c >= utf8.RuneSelf:
			// Only strings may hold non-ASCII bytes: check them here.
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false, p.fail("invalid UTF-8")
			}
			p.i += n
		default:
			p.i++
		}
	}
	return nil, false, p.syntax("unterminated string")
}

// escape checks one escape sequence at p.i (a backslash) and steps past it.
func (p *parser) escape() error {
	if p.i+1 >= len(p.b) {
		return p.syntax("unterminated escape")
	}
	switch p.b[p.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		p.i += 2
		return nil
	case 'u':
	default:
		return p.syntax("invalid escape \\%c", p.b[p.i+1])
	}
	r, ok := p.hex4(p.i + 2)
	if !ok {
		return p.syntax("invalid \\u escape")
	}
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return p.fail("\\u escape of a lone low surrogate")
	case r >= 0xD800 && r <= 0xDBFF:
		lo, ok := rune(0), false
		if p.i+7 < len(p.b) && p.b[p.i+6] == '\\' && p.b[p.i+7] == 'u' {
			lo, ok = p.hex4(p.i + 8)
		}
		if !ok || lo < 0xDC00 || lo > 0xDFFF {
			return p.fail("\\u escape of a lone high surrogate")
		}
		p.i += 12
	default:
		p.i += 6
	}
	return nil
}

func (p *parser) hex4(at int) (rune, bool) {
	if at+4 > len(p.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[at:at+4]), 16, 32)
	return rune(v), err == nil
}

func (p *parser) array(g *guide, depth int) error {
	p.i++ // [
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return nil
	}
	var elem *guide
	if g != nil {
		elem = g.elem
	}
	for n := 0; ; n++ {
		p.ws()
		if err := p.value(elem, depth); err != nil {
			return within(err, "["+strconv.Itoa(n)+"]")
		}
		p.ws()
		if p.i >= len(p.b) {
			return p.syntax("unterminated array")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return nil
		default:
			return p.syntax("invalid character %q after an array element", p.b[p.i])
		}
	}
}

// smallObject is the number of keys compared pairwise before a map is used.
const smallObject = 16

func (p *parser) object(g *guide, depth int) error {
	p.i++ // {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	var small [smallObject][]byte
	keys := small[:0]
	var many map[string]struct{}
	for {
		p.ws()
		if p.i >= len(p.b) {
			return p.syntax("unexpected end of input")
		}
		if p.b[p.i] != '"' {
			return p.syntax("object key is not a string")
		}
		at := p.i
		raw, escaped, err := p.str()
		if err != nil {
			return err
		}
		key := raw
		if escaped {
			key = unescape(raw)
		}
		// Repeated keys.
		if many == nil {
			for _, k := range keys {
				if bytes.Equal(k, key) {
					p.i = at
					return p.fail("duplicate key %s", quote(key))
				}
			}
			if len(keys) < smallObject {
				keys = append(keys, key)
			} else {
				many = make(map[string]struct{}, 2*smallObject)
				for _, k := range keys {
					many[string(k)] = struct{}{}
				}
			}
		}
		if many != nil {
			if _, dup := many[string(key)]; dup {
				p.i = at
				return p.fail("duplicate key %s", quote(key))
			}
			many[string(key)] = struct{}{}
		}
		// The key against the target's fields.
		var child *guide
		if g != nil {
			switch {
			case g.fields != nil:
				if f, ok := g.fields[string(key)]; ok {
					child = f
				} else if name, ok := g.folded[fold(key)]; ok {
					p.i = at
					return p.fail("key %s differs from the field %s only in case", quote(key), strconv.Quote(name))
				} else if p.known {
					p.i = at
					return p.fail("unknown field %s", quote(key))
				}
			default:
				child = g.elem // a map
			}
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.syntax("missing ':' after an object key")
		}
		p.i++
		p.ws()
		if err := p.value(child, depth); err != nil {
			return within(err, pathKey(key))
		}
		p.ws()
		if p.i >= len(p.b) {
			return p.syntax("unterminated object")
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return p.syntax("invalid character %q after an object value", p.b[p.i])
		}
	}
}

// unescape decodes the contents of a checked string with escapes.
func unescape(raw []byte) []byte {
	var s string
	// raw was checked by str: quoting it again makes valid JSON.
	if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s); err != nil {
		return raw
	}
	return []byte(s)
}

func quote(k []byte) string {
	if len(k) > 100 {
		return strconv.Quote(string(k[:100])) + "…"
	}
	return strconv.Quote(string(k))
}

func pathKey(k []byte) string {
	for _, c := range k {
		if !(c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "[" + quote(k) + "]"
		}
	}
	if len(k) == 0 {
		return `[""]`
	}
	return "." + string(k)
}

// fold maps names that bytes.EqualFold considers equal (the matching
// encoding/json applies to struct fields) to one string.
func fold(k []byte) string {
	var b strings.Builder
	for _, r := range string(k) {
		// The smallest rune of r's simple-fold orbit.
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		b.WriteRune(min)
	}
	return b.String()
}

// guide is what the decoding target expects at one place of the input:
// a struct (fields by exact JSON name, and by folded name), a map or a
// slice (elem), or anything (nil: interface values, json.RawMessage and
// types that decode themselves).
type guide struct {
	fields map[string]*guide
	folded map[string]string
	elem   *guide
}

var (
	guides      sync.Map // reflect.Type → *guide
	unmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnm     = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func guideOf(t reflect.Type) *guide {
	if t == nil {
		return nil
	}
	if g, ok := guides.Load(t); ok {
		return g.(*guide)
	}
	g := build(t, map[reflect.Type]*guide{})
	guides.Store(t, g)
	return g
}

// build makes the guide of t; inProgress ties recursive types.
func build(t reflect.Type, inProgress map[reflect.Type]*guide) *guide {
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshaler) || t.Implements(textUnm) {
			return nil
		}
		t = t.Elem()
	}
	if t.Implements(unmarshaler) || reflect.PointerTo(t).Implements(unmarshaler) ||
		t.Implements(textUnm) || reflect.PointerTo(t).Implements(textUnm) {
		return nil
	}
	if g, ok := inProgress[t]; ok {
		return g
	}
	switch t.Kind() {
	case reflect.Struct:
		g := &guide{fields: map[string]*guide{}, folded: map[string]string{}}
		inProgress[t] = g
		addFields(g, t, inProgress, map[reflect.Type]bool{})
		return g
	case reflect.Map, reflect.Slice, reflect.Array:
		g := &guide{}
		inProgress[t] = g
		g.elem = build(t.Elem(), inProgress)
		return g
	}
	return nil
}

// addFields adds the JSON names of t's fields to g, promoting the fields of
// untagged embedded structs as encoding/json does (outer names win).
func addFields(g *guide, t reflect.Type, inProgress map[reflect.Type]*guide, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	var embedded []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				embedded = append(embedded, et)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := g.fields[name]; ok {
			continue
		}
		g.fields[name] = build(f.Type, inProgress)
		g.folded[fold([]byte(name))] = name
	}
	for _, et := range embedded {
		addFields(g, et, inProgress, seen)
	}
}
