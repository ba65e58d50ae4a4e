package chattemplate

import (
	"strings"
)

// The lexer mirrors jinja2.lexer.Lexer.tokeniter and wrap (Jinja 3.1) for the
// environment transformers renders chat templates in: default delimiters,
// trim_blocks and lstrip_blocks on, no line statements or line comments. Its
// loops are the regular expressions of jinja2 written out by hand, over runes,
// with Python's character classes (unicode_tables.go).

type tokType uint8

const (
	tEOF tokType = iota
	tData
	tVarBegin
	tVarEnd
	tBlockBegin
	tBlockEnd
	tName
	tString
	tInteger
	tFloat
	// operators
	tAdd
	tSub
	tDiv
	tFloorDiv
	tMul
	tMod
	tPow
	tTilde
	tLBracket
	tRBracket
	tLParen
	tRParen
	tLBrace
	tRBrace
	tEq
	tNe
	tGt
	tGtEq
	tLt
	tLtEq
	tAssign
	tDot
	tColon
	tPipe
	tComma
	tSemicolon
)

var tokNames = [...]string{
	tEOF: "end of template", tData: "template data / text", tVarBegin: "begin of print statement",
	tVarEnd: "end of print statement", tBlockBegin: "begin of statement block", tBlockEnd: "end of statement block",
	tName: "name", tString: "string", tInteger: "integer", tFloat: "float",
	tAdd: "+", tSub: "-", tDiv: "/", tFloorDiv: "//", tMul: "*", tMod: "%", tPow: "**", tTilde: "~",
	tLBracket: "[", tRBracket: "]", tLParen: "(", tRParen: ")", tLBrace: "{", tRBrace: "}",
	tEq: "==", tNe: "!=", tGt: ">", tGtEq: ">=", tLt: "<", tLtEq: "<=", tAssign: "=", tDot: ".",
	tColon: ":", tPipe: "|", tComma: ",", tSemicolon: ";",
}

// operators, longest first as jinja2's operator_re tries them.
var operators = []struct {
	s string
	t tokType
}{
	{"//", tFloorDiv}, {"**", tPow}, {"==", tEq}, {"!=", tNe}, {">=", tGtEq}, {"<=", tLtEq},
	{"+", tAdd}, {"-", tSub}, {"/", tDiv}, {"*", tMul}, {"%", tMod}, {"~", tTilde},
	{"[", tLBracket}, {"]", tRBracket}, {"(", tLParen}, {")", tRParen}, {"{", tLBrace}, {"}", tRBrace},
	{">", tGt}, {"<", tLt}, {"=", tAssign}, {".", tDot}, {":", tColon}, {"|", tPipe}, {",", tComma},
	{";", tSemicolon},
}

type token struct {
	typ tokType
	val string // names: the name; strings: the resolved value; numbers: the literal text; data: the text
	raw string // strings: the literal as written, quotes included
	off int    // rune offset of the token in the normalised source
	end int
}

func (t token) describe() string {
	if t.typ == tName {
		return t.val
	}
	return tokNames[t.typ]
}

// syntaxError is a position in the normalised source and a message.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return e.msg }

type lexer struct {
	src  []rune
	toks []token
	// lineStarting mirrors jinja2's line_starting: the last match ended with "\n".
	lineStarting bool
	balance      []rune
}

// normalizeNewlines mirrors tokeniter's preprocessing: every \r\n, \r and \n
// is a line break, the text is rejoined with "\n", and one trailing newline is
// dropped (keep_trailing_newline is off).
func normalizeNewlines(s string) string {
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return strings.TrimSuffix(s, "\n")
}

func (lx *lexer) fail(off int, msg string) error { return &syntaxError{off: off, msg: msg} }

func (lx *lexer) hasPrefix(i int, p string) bool {
	for _, c := range p {
		if i >= len(lx.src) || lx.src[i] != c {
			return false
		}
		i++
	}
	return true
}

func (lx *lexer) skipSpace(i int) int {
	for i < len(lx.src) && isSpace(lx.src[i]) {
		i++
	}
	return i
}

// sign reads jinja2's (\-|\+|) group.
func (lx *lexer) sign(i int) (rune, int) {
	if i < len(lx.src) && (lx.src[i] == '-' || lx.src[i] == '+') {
		return lx.src[i], i + 1
	}
	return 0, i
}

// blockEnd matches (?:\+%}|\-%}\s*|%}\n?) at i (trim_blocks adds the \n?).
func (lx *lexer) blockEnd(i int) int {
	switch {
	case lx.hasPrefix(i, "+%}"):
		return i + 3
	case lx.hasPrefix(i, "-%}"):
		return lx.skipSpace(i + 3)
	case lx.hasPrefix(i, "%}"):
		if i+2 < len(lx.src) && lx.src[i+2] == '\n' {
			return i + 3
		}
		return i + 2
	}
	return -1
}

// rawBegin matches {%(\-|\+|)\s*raw\s*(?:\-%}\s*|%}) at i.
func (lx *lexer) rawBegin(i int) (rune, int) {
	sg, j := lx.sign(i + 2)
	j = lx.skipSpace(j)
	if !lx.hasPrefix(j, "raw") {
		return 0, -1
	}
	j = lx.skipSpace(j + 3)
	switch {
	case lx.hasPrefix(j, "-%}"):
		return sg, lx.skipSpace(j + 3)
	case lx.hasPrefix(j, "%}"):
		return sg, j + 2
	}
	return 0, -1
}

// lstrip applies the OptionalLStrip handling of the text before a tag.
func (lx *lexer) lstrip(text []rune, sign rune, variable bool) []rune {
	if sign == '-' {
		n := len(text)
		for n > 0 && isSpace(text[n-1]) {
			n--
		}
		return text[:n]
	}
	if sign == '+' || variable {
		return text
	}
	lpos := 0
	for k := len(text) - 1; k >= 0; k-- {
		if text[k] == '\n' {
			lpos = k + 1
			break
		}
	}
	if lpos > 0 || lx.lineStarting {
		rest := text[lpos:]
		if len(rest) == 0 {
			return text
		}
		for _, r := range rest {
			if !isSpace(r) {
				return text
			}
		}
		return text[:lpos]
	}
	return text
}

func (lx *lexer) emit(t tokType, val string, off, end int) {
	lx.toks = append(lx.toks, token{typ: t, val: val, off: off, end: end})
}

func (lx *lexer) matched(end int) {
	if end > 0 && end <= len(lx.src) {
		lx.lineStarting = lx.src[end-1] == '\n'
	}
}

// lex tokenises the whole source.
func lexJinja(src []rune) ([]token, error) {
	lx := &lexer{src: src, lineStarting: true, toks: make([]token, 0, len(src)/4+8)}
	if err := lx.run(); err != nil {
		return nil, err
	}
	lx.toks = append(lx.toks, token{typ: tEOF, off: len(src), end: len(src)})
	return lx.toks, nil
}

func (lx *lexer) run() error {
	src := lx.src
	n := len(src)
	pos := 0
	for pos < n {
		// root state: (.*?)(?:raw_begin|variable_begin|comment_begin|block_begin)
		i := pos
		kind := ""
		var sg rune
		var end int
		for ; i+1 < n; i++ {
			if src[i] != '{' {
				continue
			}
			switch src[i+1] {
			case '%':
				if s, e := lx.rawBegin(i); e >= 0 {
					kind, sg, end = "raw", s, e
				} else {
					sg, end = lx.sign(i + 2)
					kind = "block"
				}
			case '{':
				sg, end = lx.sign(i + 2)
				kind = "variable"
			case '#':
				sg, end = lx.sign(i + 2)
				kind = "comment"
			}
			if kind != "" {
				break
			}
		}
		if kind == "" {
			// .+ : the rest is data
			lx.emit(tData, string(src[pos:]), pos, n)
			lx.matched(n)
			return nil
		}
		text := lx.lstrip(src[pos:i], sg, kind == "variable")
		if len(text) > 0 {
			lx.emit(tData, string(text), pos, i)
		}
		lx.matched(end)
		pos = end
		var err error
		switch kind {
		case "raw":
			pos, err = lx.raw(pos)
		case "comment":
			pos, err = lx.comment(pos, i)
		case "block":
			lx.emit(tBlockBegin, "", i, end)
			pos, err = lx.tag(pos, false)
		case "variable":
			lx.emit(tVarBegin, "", i, end)
			pos, err = lx.tag(pos, true)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// comment: (.*?)((?:\+#}|\-#}\s*|#}\n?))
func (lx *lexer) comment(pos, begin int) (int, error) {
	src := lx.src
	for k := pos; k < len(src); k++ {
		var end int
		switch {
		case lx.hasPrefix(k, "+#}"):
			end = k + 3
		case lx.hasPrefix(k, "-#}"):
			end = lx.skipSpace(k + 3)
		case lx.hasPrefix(k, "#}"):
			end = k + 2
			if end < len(src) && src[end] == '\n' {
				end++
			}
		default:
			continue
		}
		lx.matched(end)
		return end, nil
	}
	if pos >= len(src) {
		// nothing after the opening tag: no rule matches and jinja2 stops
		// lexing without an error.
		return pos, nil
	}
	return 0, lx.fail(begin, "Missing end of comment tag")
}

// raw: (.*?)((?:{%(\-|\+|))\s*endraw\s*(?:\+%}|\-%}\s*|%}\n?))
func (lx *lexer) raw(pos int) (int, error) {
	src := lx.src
	for k := pos; k+1 < len(src); k++ {
		if src[k] != '{' || src[k+1] != '%' {
			continue
		}
		sg, j := lx.sign(k + 2)
		j = lx.skipSpace(j)
		if !lx.hasPrefix(j, "endraw") {
			continue
		}
		end := lx.blockEnd(lx.skipSpace(j + 6))
		if end < 0 {
			continue
		}
		text := lx.lstrip(src[pos:k], sg, false)
		if len(text) > 0 {
			lx.emit(tData, string(text), pos, k)
		}
		lx.matched(end)
		return end, nil
	}
	if pos >= len(src) {
		return pos, nil // as for comments
	}
	return 0, lx.fail(pos, "Missing end of raw directive")
}

// tag lexes the inside of {% %} or {{ }} up to and including its end.
func (lx *lexer) tag(pos int, variable bool) (int, error) {
	src := lx.src
	n := len(src)
	lx.balance = lx.balance[:0]
	for {
		if len(lx.balance) == 0 {
			end := -1
			if variable {
				switch {
				case lx.hasPrefix(pos, "-}}"):
					end = lx.skipSpace(pos + 3)
				case lx.hasPrefix(pos, "}}"):
					end = pos + 2
				}
			} else {
				end = lx.blockEnd(pos)
			}
			if end >= 0 {
				if variable {
					lx.emit(tVarEnd, "", pos, end)
				} else {
					lx.emit(tBlockEnd, "", pos, end)
				}
				lx.matched(end)
				return end, nil
			}
		}
		if pos >= n {
			// no rule matches at the end of the text: jinja2 stops lexing and
			// the parser reports the unexpected end.
			return pos, nil
		}
		c := src[pos]
		if isSpace(c) {
			e := lx.skipSpace(pos)
			lx.matched(e)
			pos = e
			continue
		}
		if e := lx.float(pos); e > 0 {
			for _, r := range src[pos:e] {
				if r >= 0x80 {
					// ast.literal_eval takes ASCII digits only
					return 0, lx.fail(pos, "invalid character in float literal")
				}
			}
			lx.emit(tFloat, string(src[pos:e]), pos, e)
			lx.matched(e)
			pos = e
			continue
		}
		if e := lx.integer(pos); e > 0 {
			lx.emit(tInteger, string(src[pos:e]), pos, e)
			lx.matched(e)
			pos = e
			continue
		}
		if isNameChar(c) {
			e := pos
			for e < n && isNameChar(src[e]) {
				e++
			}
			if !isIdentifier(src[pos:e]) {
				return 0, lx.fail(pos, "Invalid character in identifier")
			}
			lx.emit(tName, string(src[pos:e]), pos, e)
			lx.matched(e)
			pos = e
			continue
		}
		if c == '\'' || c == '"' {
			if e := lx.stringEnd(pos); e > 0 {
				v, err := unescapePython(src[pos+1 : e-1])
				if err != nil {
					return 0, lx.fail(pos, err.Error())
				}
				lx.toks = append(lx.toks, token{typ: tString, val: v, raw: string(src[pos:e]), off: pos, end: e})
				lx.matched(e)
				pos = e
				continue
			}
		}
		matched := false
		for _, op := range operators {
			if !lx.hasPrefix(pos, op.s) {
				continue
			}
			switch op.t {
			case tLBrace:
				lx.balance = append(lx.balance, '}')
			case tLParen:
				lx.balance = append(lx.balance, ')')
			case tLBracket:
				lx.balance = append(lx.balance, ']')
			case tRBrace, tRParen, tRBracket:
				if len(lx.balance) == 0 {
					return 0, lx.fail(pos, "unexpected '"+op.s+"'")
				}
				want := lx.balance[len(lx.balance)-1]
				lx.balance = lx.balance[:len(lx.balance)-1]
				if string(want) != op.s {
					return 0, lx.fail(pos, "unexpected '"+op.s+"', expected '"+string(want)+"'")
				}
			}
			e := pos + len(op.s)
			lx.emit(op.t, op.s, pos, e)
			lx.matched(e)
			pos = e
			matched = true
			break
		}
		if !matched {
			return 0, lx.fail(pos, "unexpected char "+pyRepr(string(c)))
		}
	}
}

// stringEnd matches ('([^'\\]*(?:\\.[^'\\]*)*)'|"...") at i and returns the end.
func (lx *lexer) stringEnd(i int) int {
	q := lx.src[i]
	for k := i + 1; k < len(lx.src); k++ {
		switch lx.src[k] {
		case '\\':
			k++
		case q:
			return k + 1
		}
	}
	return -1
}

// digitsUS matches (\d+_)*\d+ at i and returns its end, or -1.
func (lx *lexer) digitsUS(i int) int {
	src := lx.src
	if i >= len(src) || !isDigit(src[i]) {
		return -1
	}
	e := i
	for {
		for e < len(src) && isDigit(src[e]) {
			e++
		}
		if e+1 < len(src) && src[e] == '_' && isDigit(src[e+1]) {
			e++
			continue
		}
		return e
	}
}

// float mirrors float_re:
// (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+\-]?(\d+_)*\d+|\.(\d+_)*\d+), ignoring case.
func (lx *lexer) float(i int) int {
	src := lx.src
	if i > 0 && src[i-1] == '.' {
		return -1
	}
	a := lx.digitsUS(i)
	if a < 0 {
		return -1
	}
	exp := func(j int) int {
		if j >= len(src) || src[j] != 'e' && src[j] != 'E' {
			return -1
		}
		j++
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		return lx.digitsUS(j)
	}
	frac := -1
	if a < len(src) && src[a] == '.' {
		frac = lx.digitsUS(a + 1)
	}
	if frac > 0 {
		if e := exp(frac); e > 0 {
			return e
		}
	}
	if e := exp(a); e > 0 {
		return e
	}
	return frac
}

// integer mirrors integer_re: 0b(_?[01])+ | 0o(_?[0-7])+ | 0x(_?[\da-f])+ |
// [1-9](_?\d)* | 0(_?0)*, ignoring case, alternatives in that order.
func (lx *lexer) integer(i int) int {
	src := lx.src
	n := len(src)
	run := func(j int, ok func(rune) bool) int {
		e := -1
		for {
			k := j
			if k < n && src[k] == '_' {
				k++
			}
			if k < n && ok(src[k]) {
				j = k + 1
				e = j
				continue
			}
			return e
		}
	}
	if src[i] == '0' && i+1 < n {
		var ok func(rune) bool
		switch src[i+1] {
		case 'b', 'B':
			ok = func(r rune) bool { return r == '0' || r == '1' }
		case 'o', 'O':
			ok = func(r rune) bool { return r >= '0' && r <= '7' }
		case 'x', 'X':
			ok = func(r rune) bool { return isDigit(r) || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' }
		}
		if ok != nil {
			if e := run(i+2, ok); e > 0 {
				return e
			}
		}
	}
	if src[i] >= '1' && src[i] <= '9' {
		if e := run(i+1, isDigit); e > 0 {
			return e
		}
		return i + 1
	}
	if src[i] == '0' {
		if e := run(i+1, func(r rune) bool { return r == '0' }); e > 0 {
			return e
		}
		return i + 1
	}
	return -1
}
