// Package glob matches repository strings ("<upstream>/<repo path>")
// against the patterns used by policy rules, client authorization and audit
// queries. It imports only the standard library so that configuration and
// audit code can use it without pulling in the policy engine.
package glob

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Pattern is a compiled repository pattern. Patterns are matched against whole
// repository strings ("<upstream>/<repo path>"), anchored at both ends:
//
//   - "/" separates path segments; a pattern never matches across a "/"
//     except through "**".
//   - "**" as a whole segment matches zero or more whole segments.
//   - "*" matches any run of characters within one segment (including none).
//   - "?" matches exactly one character within one segment.
//   - "[abc]", "[a-z]", "[!a-z]" (or "[^a-z]") match one character of a class.
//   - "\" escapes the next character, so "\*" matches a literal "*".
//
// Everything else matches itself literally; no regular expression is built,
// so a pattern cannot inject regexp syntax.
type Pattern struct {
	src  string
	segs []globSeg
}

type globSeg struct {
	doubleStar bool
	literal    bool   // no metacharacters: compare text directly
	text       string // literal text when literal
	toks       []globTok
}

type tokKind uint8

const (
	tokLit tokKind = iota
	tokAny
	tokStar
	tokClass
)

type globTok struct {
	kind   tokKind
	lit    string // tokLit
	negate bool   // tokClass
	ranges []runeRange
}

type runeRange struct{ lo, hi rune }

// SyntaxError is a pattern syntax error; Offset is the byte offset in the
// pattern where the problem is.
type SyntaxError struct {
	Pattern string
	Offset  int
	Msg     string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("pattern %q: %s at offset %d", e.Pattern, e.Msg, e.Offset)
}

// Compile parses a repository pattern.
func Compile(pattern string) (*Pattern, error) {
	if pattern == "" {
		return nil, &SyntaxError{Pattern: pattern, Msg: "empty pattern"}
	}
	if strings.HasPrefix(pattern, "/") {
		return nil, &SyntaxError{Pattern: pattern, Offset: 0, Msg: "pattern must not start with '/'"}
	}
	if strings.HasSuffix(pattern, "/") {
		return nil, &SyntaxError{Pattern: pattern, Offset: len(pattern) - 1, Msg: "pattern must not end with '/'"}
	}
	g := &Pattern{src: pattern}
	start := 0
	for start <= len(pattern) {
		end := segmentEnd(pattern, start)
		seg, err := compileSeg(pattern, start, end)
		if err != nil {
			return nil, err
		}
		g.segs = append(g.segs, seg)
		start = end + 1
	}
	return g, nil
}

// segmentEnd finds the next '/' at or after start (or len). A '/' always
// separates segments; it cannot be escaped.
func segmentEnd(p string, start int) int {
	if i := strings.IndexByte(p[start:], '/'); i >= 0 {
		return start + i
	}
	return len(p)
}

func compileSeg(p string, start, end int) (globSeg, error) {
	s := p[start:end]
	if s == "" {
		return globSeg{}, &SyntaxError{Pattern: p, Offset: start, Msg: "empty path segment ('//')"}
	}
	if s == "**" {
		return globSeg{doubleStar: true}, nil
	}
	var seg globSeg
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			seg.toks = append(seg.toks, globTok{kind: tokLit, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				return globSeg{}, &SyntaxError{Pattern: p, Offset: start + i, Msg: "trailing '\\' escapes nothing"}
			}
			r, w := utf8.DecodeRuneInString(s[i+1:])
			lit.WriteRune(r)
			i += 1 + w
		case '*':
			if i+1 < len(s) && s[i+1] == '*' {
				return globSeg{}, &SyntaxError{Pattern: p, Offset: start + i, Msg: "'**' must be a whole path segment (use '*' within a segment)"}
			}
			flush()
			seg.toks = append(seg.toks, globTok{kind: tokStar})
			i++
		case '?':
			flush()
			seg.toks = append(seg.toks, globTok{kind: tokAny})
			i++
		case '[':
			flush()
			tok, n, err := compileClass(p, start+i, s[i:])
			if err != nil {
				return globSeg{}, err
			}
			seg.toks = append(seg.toks, tok)
			i += n
		default:
			r, w := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && w == 1 {
				return globSeg{}, &SyntaxError{Pattern: p, Offset: start + i, Msg: "invalid UTF-8"}
			}
			lit.WriteRune(r)
			i += w
		}
	}
	flush()
	if len(seg.toks) == 1 && seg.toks[0].kind == tokLit {
		seg.literal = true
		seg.text = seg.toks[0].lit
		seg.toks = nil
	}
	return seg, nil
}

// compileClass parses "[...]" at the start of s; it returns the token and the
// number of bytes consumed.
func compileClass(p string, off int, s string) (globTok, int, error) {
	tok := globTok{kind: tokClass}
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		tok.negate = true
		i++
	}
	first := true
	readRune := func() (rune, bool, error) {
		if i >= len(s) {
			return 0, false, &SyntaxError{Pattern: p, Offset: off, Msg: "unclosed '['"}
		}
		if s[i] == '\\' {
			if i+1 >= len(s) {
				return 0, false, &SyntaxError{Pattern: p, Offset: off + i, Msg: "trailing '\\' escapes nothing"}
			}
			r, w := utf8.DecodeRuneInString(s[i+1:])
			i += 1 + w
			return r, true, nil
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 {
			return 0, false, &SyntaxError{Pattern: p, Offset: off + i, Msg: "invalid UTF-8"}
		}
		i += w
		return r, false, nil
	}
	for {
		if i >= len(s) {
			return tok, 0, &SyntaxError{Pattern: p, Offset: off, Msg: "unclosed '['"}
		}
		if s[i] == ']' && !first {
			i++
			break
		}
		first = false
		lo, _, err := readRune()
		if err != nil {
			return tok, 0, err
		}
		if lo == '/' {
			return tok, 0, &SyntaxError{Pattern: p, Offset: off + i - 1, Msg: "'/' cannot appear in a character class"}
		}
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			i++
			hi, _, err = readRune()
			if err != nil {
				return tok, 0, err
			}
			if hi < lo {
				return tok, 0, &SyntaxError{Pattern: p, Offset: off + i - 1, Msg: fmt.Sprintf("invalid range %c-%c", lo, hi)}
			}
		}
		tok.ranges = append(tok.ranges, runeRange{lo, hi})
	}
	return tok, i, nil
}

// String returns the pattern source.
func (g *Pattern) String() string { return g.src }

// Match reports whether the repository string matches the whole pattern.
func (g *Pattern) Match(repository string) bool {
	if repository == "" {
		return false
	}
	return g.matchSegs(Segments(repository))
}

// Segments splits a repository string into the path segments that
// MatchSegments takes, so that a caller trying many patterns against one
// repository splits it once.
func Segments(repository string) []string { return strings.Split(repository, "/") }

// MatchSegments is Match on a repository already split by Segments. A
// non-empty repository has at least one segment; nil (from "") matches
// nothing.
func (g *Pattern) MatchSegments(segs []string) bool {
	if len(segs) == 0 {
		return false
	}
	return g.matchSegs(segs)
}

// matchSegs matches pattern segments against path segments; "**" behaves
// like '*' at the segment level (backtracking to the last "**").
func (g *Pattern) matchSegs(path []string) bool {
	pi, si := 0, 0
	starPi, starSi := -1, -1
	for si < len(path) {
		if pi < len(g.segs) && g.segs[pi].doubleStar {
			starPi, starSi = pi, si
			pi++
			continue
		}
		if pi < len(g.segs) && g.segs[pi].match(path[si]) {
			pi++
			si++
			continue
		}
		if starPi >= 0 {
			starSi++
			pi, si = starPi+1, starSi
			continue
		}
		return false
	}
	for pi < len(g.segs) && g.segs[pi].doubleStar {
		pi++
	}
	return pi == len(g.segs)
}

func (s *globSeg) match(str string) bool {
	if s.literal {
		return s.text == str
	}
	if str == "" {
		// Empty segments ("a//b") never match anything but "**".
		return false
	}
	toks := s.toks
	pi, si := 0, 0
	starPi, starSi := -1, -1
	for si < len(str) {
		if pi < len(toks) {
			t := &toks[pi]
			if t.kind == tokStar {
				starPi, starSi = pi, si
				pi++
				continue
			}
			if w := t.matchAt(str, si); w > 0 {
				pi++
				si += w
				continue
			}
		}
		if starPi >= 0 {
			_, w := utf8.DecodeRuneInString(str[starSi:])
			starSi += w
			pi, si = starPi+1, starSi
			continue
		}
		return false
	}
	for pi < len(toks) && toks[pi].kind == tokStar {
		pi++
	}
	return pi == len(toks)
}

// matchAt returns the number of bytes the token consumes at str[i:], or 0.
func (t *globTok) matchAt(str string, i int) int {
	switch t.kind {
	case tokLit:
		if strings.HasPrefix(str[i:], t.lit) {
			return len(t.lit)
		}
		return 0
	case tokAny:
		_, w := utf8.DecodeRuneInString(str[i:])
		return w
	case tokClass:
		r, w := utf8.DecodeRuneInString(str[i:])
		in := false
		for _, rg := range t.ranges {
			if r >= rg.lo && r <= rg.hi {
				in = true
				break
			}
		}
		if in != t.negate {
			return w
		}
	}
	return 0
}
