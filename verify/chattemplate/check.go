package chattemplate

import "fmt"

// Dialect of a template.
type Dialect int

const (
	Jinja Dialect = iota + 1
	GoTemplate
)

func (d Dialect) String() string {
	switch d {
	case Jinja:
		return "Jinja"
	case GoTemplate:
		return "Go"
	case 0:
		return "Chat"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

// Error is a refusal. Dialect is 0 when Check found the text parses as
// neither dialect. Line and Col are 1-based positions in the source when
// known (0 if not); Reason says what a person can act on. Syntax is true when
// the source does not parse.
type Error struct {
	Dialect   Dialect
	Line, Col int
	Reason    string
	Syntax    bool
}

func (e *Error) Error() string {
	what := "refused"
	if e.Syntax {
		what = "does not parse"
	}
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s template %s at line %d, column %d: %s", e.Dialect, what, e.Line, e.Col, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("%s template %s at line %d: %s", e.Dialect, what, e.Line, e.Reason)
	}
	return fmt.Sprintf("%s template %s: %s", e.Dialect, what, e.Reason)
}

// position converts a rune offset in runes to a 1-based line and column.
func position(runes []rune, off int) (line, col int) {
	if off > len(runes) {
		off = len(runes)
	}
	line, col = 1, 1
	for _, r := range runes[:off] {
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

func lineIndex(runes []rune) func(int) int {
	var starts []int
	for i, r := range runes {
		if r == '\n' {
			starts = append(starts, i)
		}
	}
	return func(off int) int {
		n := 0
		for n < len(starts) && starts[n] < off {
			n++
		}
		return n + 1
	}
}

// CheckJinja parses src as Jinja2 (the syntax jinja2 3.1 accepts in the
// environment transformers renders chat templates with) into a syntax tree
// and applies the rules in doc.go. It returns nil or *Error.
func CheckJinja(src string) (err error) {
	defer failClosed(Jinja, &err)
	if len(src) > maxSourceSize {
		return &Error{Dialect: Jinja, Syntax: true, Reason: fmt.Sprintf("template is %d bytes, over the %d-byte limit", len(src), maxSourceSize)}
	}
	runes := []rune(normalizeNewlines(src))
	t, err := parseJinja(runes)
	if err != nil {
		se := err.(*syntaxError)
		line, col := position(runes, se.off)
		return &Error{Dialect: Jinja, Line: line, Col: col, Reason: se.msg, Syntax: true}
	}
	if d := treeDepth(t); d > maxDepth {
		return &Error{Dialect: Jinja, Syntax: true, Reason: fmt.Sprintf("syntax tree nested %d deep, over the limit of %d", d, maxDepth)}
	}
	r, err := checkTree(t, lineIndex(runes))
	if err != nil {
		return &Error{Dialect: Jinja, Reason: err.Error()}
	}
	if r != nil {
		line, col := position(runes, r.off)
		return &Error{Dialect: Jinja, Line: line, Col: col, Reason: r.reason}
	}
	return nil
}

// Check checks a template whose dialect is not declared: each dialect under
// which src parses must pass. If it parses under neither, Check returns a
// Syntax *Error (callers decide whether an unparseable undeclared text
// matters).
func Check(src string) error {
	if len(src) > maxSourceSize {
		return &Error{Syntax: true, Reason: fmt.Sprintf("template is %d bytes, over the %d-byte limit", len(src), maxSourceSize)}
	}
	jerr, _ := CheckJinja(src).(*Error)
	jinjaParses := jerr == nil || !jerr.Syntax
	goParses := parsesAsOllamaGo(src)
	if !jinjaParses && !goParses {
		return &Error{Line: jerr.Line, Col: jerr.Col, Syntax: true,
			Reason: "parses neither as Jinja (" + jerr.Reason + ") nor as an Ollama Go template"}
	}
	if jinjaParses && jerr != nil {
		return jerr
	}
	if goParses {
		if err := CheckGo(src); err != nil {
			return err
		}
	}
	return nil
}

// internalError starts the reason of an Error that reports a bug in this
// package rather than in the template.
const internalError = "internal error in the template checker: "

// failClosed turns a panic (a bug here, never expected) into a refusal, so
// that a hostile template cannot take the caller down or pass unchecked.
func failClosed(d Dialect, err *error) {
	if r := recover(); r != nil {
		*err = &Error{Dialect: d, Reason: fmt.Sprintf("%s%v", internalError, r)}
	}
}
