package chattemplate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// dump writes a tree in the format of testdata/jinja_dump.py, which prints
// jinja2's own tree, so the two parsers can be compared node for node.
func dump(n any) string {
	var b strings.Builder
	dumpTo(&b, n)
	return b.String()
}

func dumpTo(b *strings.Builder, v any) {
	node := func(name string, fields ...any) {
		b.WriteString(name + "(")
		for i, f := range fields {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpTo(b, f)
		}
		b.WriteByte(')')
	}
	switch n := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(pyJSON(n))
	case bool:
		if n {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case []jnode:
		b.WriteByte('[')
		for i, x := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpTo(b, x)
		}
		b.WriteByte(']')
	case []*jName:
		l := make([]jnode, len(n))
		for i := range n {
			l[i] = n[i]
		}
		dumpTo(b, l)
	case []*jKeyword:
		l := make([]jnode, len(n))
		for i := range n {
			l[i] = n[i]
		}
		dumpTo(b, l)
	case *jTemplate:
		node("Template", n.Body)
	case *jOutput:
		node("Output", n.Nodes)
	case *jTemplateData:
		node("TemplateData", n.Data)
	case *jFor:
		node("For", n.Target, n.Iter, n.Body, n.Else, orNil(n.Test), n.Recursive)
	case *jIf:
		el := make([]jnode, len(n.Elif))
		for i := range n.Elif {
			el[i] = n.Elif[i]
		}
		node("If", n.Test, n.Body, el, n.Else)
	case *jMacro:
		node("Macro", n.Name, n.Args, n.Defaults, n.Body)
	case *jCallBlock:
		node("CallBlock", n.Call, n.Args, n.Defaults, n.Body)
	case *jGeneration:
		node("Generation", n.Body)
	case *jFilterBlock:
		node("FilterBlock", n.Body, n.Filter)
	case *jWith:
		node("With", n.Targets, n.Values, n.Body)
	case *jBlock:
		node("Block", n.Name, n.Body, n.Scoped, n.Required)
	case *jExtends:
		node("Extends", n.Template)
	case *jInclude:
		node("Include", n.Template, n.WithContext, n.IgnoreMissing)
	case *jImport:
		node("Import", n.Template, n.Target, n.WithContext)
	case *jFromImport:
		b.WriteString("FromImport(")
		dumpTo(b, n.Template)
		b.WriteString(",[")
		for i, nm := range n.Names {
			if i > 0 {
				b.WriteByte(',')
			}
			if nm[1] == "" {
				b.WriteString(pyJSON(nm[0]))
			} else {
				b.WriteString("[" + pyJSON(nm[0]) + "," + pyJSON(nm[1]) + "]")
			}
		}
		b.WriteString("],")
		dumpTo(b, n.WithContext)
		b.WriteByte(')')
	case *jAssign:
		node("Assign", n.Target, n.Node)
	case *jAssignBlock:
		var f any
		if n.Filter != nil {
			f = n.Filter
		}
		node("AssignBlock", n.Target, f, n.Body)
	case *jScope:
		b.WriteString("Scope([ScopedEvalContextModifier([Keyword(\"autoescape\",")
		dumpTo(b, n.Option)
		b.WriteString(")],")
		dumpTo(b, n.Body)
		b.WriteString(")])")
	case *jBreak:
		node("Break")
	case *jContinue:
		node("Continue")
	case *jName:
		node("Name", n.Name, n.Ctx)
	case *jNSRef:
		node("NSRef", n.Name, n.Attr)
	case *jConst:
		b.WriteString("Const(")
		switch n.Kind {
		case constStr:
			b.WriteString(pyJSON(n.Str))
		case constBool:
			dumpTo(b, n.Bool)
		case constNone:
			b.WriteString("null")
		case constInt:
			b.WriteString(pyInt(n.Str))
		case constFloat:
			b.WriteString(pyFloat(n.Str))
		}
		b.WriteByte(')')
	case *jTuple:
		node("Tuple", n.Items, n.Ctx)
	case *jList:
		node("List", n.Items)
	case *jDict:
		l := make([]jnode, len(n.Items))
		for i := range n.Items {
			l[i] = n.Items[i]
		}
		node("Dict", l)
	case *jPair:
		node("Pair", n.Key, n.Value)
	case *jKeyword:
		node("Keyword", n.Key, n.Value)
	case *jCondExpr:
		node("CondExpr", n.Test, n.Expr1, orNil(n.Expr2))
	case *jBin:
		node(n.Op, n.Left, n.Right)
	case *jUnary:
		node(n.Op, n.Node)
	case *jConcat:
		node("Concat", n.Nodes)
	case *jCompare:
		l := make([]jnode, len(n.Ops))
		for i := range n.Ops {
			l[i] = n.Ops[i]
		}
		node("Compare", n.Expr, l)
	case *jOperand:
		node("Operand", n.Op, n.Expr)
	case *jGetattr:
		node("Getattr", n.Node, n.Attr, n.Ctx)
	case *jGetitem:
		node("Getitem", n.Node, n.Arg, n.Ctx)
	case *jSlice:
		node("Slice", orNil(n.Start), orNil(n.Stop), orNil(n.Step))
	case *jCall:
		node("Call", n.Node, n.Args, n.Kwargs, orNil(n.DynArgs), orNil(n.DynKwargs))
	case *jFilter:
		node("Filter", orNil(n.Node), n.Name, n.Args, n.Kwargs, orNil(n.DynArgs), orNil(n.DynKwargs))
	case *jTest:
		node("Test", n.Node, n.Name, n.Args, n.Kwargs, orNil(n.DynArgs), orNil(n.DynKwargs))
	default:
		panic(fmt.Sprintf("dump: %T", v))
	}
}

func orNil(n jnode) any {
	if n == nil {
		return nil
	}
	return n
}

// pyJSON is Python's json.dumps(s) (ensure_ascii).
func pyJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r >= 0x20 && r <= 0x7e:
			b.WriteRune(r)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func pyInt(lit string) string {
	s := strings.Map(func(r rune) rune {
		if r == '_' {
			return -1
		}
		if r >= 0x80 {
			for _, rg := range pyDigit {
				if r >= rg[0] && r <= rg[1] {
					return '0' + (r-rg[0])%10
				}
			}
		}
		return r
	}, lit)
	base := 10
	if len(s) > 1 && s[0] == '0' {
		switch s[1] {
		case 'b', 'B':
			base, s = 2, s[2:]
		case 'o', 'O':
			base, s = 8, s[2:]
		case 'x', 'X':
			base, s = 16, s[2:]
		}
	}
	v, ok := new(big.Int).SetString(s, base)
	if !ok {
		return "?" + lit
	}
	return v.String()
}

func pyFloat(lit string) string {
	f, err := strconv.ParseFloat(strings.ReplaceAll(lit, "_", ""), 64)
	if err != nil && !math.IsInf(f, 0) {
		return "?" + lit
	}
	if math.IsInf(f, 1) {
		return "inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func dumpSource(src string) string {
	t, err := parseJinja([]rune(normalizeNewlines(src)))
	if err != nil {
		return "ERROR"
	}
	return dump(t)
}

// TestJinjaDumpFiles is the Go half of the differential check against jinja2
// (testdata/jinja_dump.py); it runs only when JINJA_DUMP_IN names a JSON list
// of sources, and writes the dumps to JINJA_DUMP_OUT.
func TestJinjaDumpFiles(t *testing.T) {
	in := os.Getenv("JINJA_DUMP_IN")
	if in == "" {
		t.Skip("JINJA_DUMP_IN not set")
	}
	b, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	if err := json.Unmarshal(b, &srcs); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(srcs))
	for i, s := range srcs {
		out[i] = dumpSource(s)
	}
	b, _ = json.Marshal(out)
	if err := os.WriteFile(os.Getenv("JINJA_DUMP_OUT"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sha256hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestJinjaVerdictFiles is the Go half of a dynamic soundness check (run by
// hand): JINJA_VERDICT_IN names a JSON list of sources, and the verdicts of
// CheckJinja ("" when it passes) go to JINJA_VERDICT_OUT, to compare with the
// attribute names jinja2 looks up when it renders them.
func TestJinjaVerdictFiles(t *testing.T) {
	in := os.Getenv("JINJA_VERDICT_IN")
	if in == "" {
		t.Skip("JINJA_VERDICT_IN not set")
	}
	b, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	var srcs []string
	if err := json.Unmarshal(b, &srcs); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(srcs))
	for i, s := range srcs {
		if err := CheckJinja(s); err != nil {
			out[i] = err.Error()
		}
	}
	b, _ = json.Marshal(out)
	if err := os.WriteFile(os.Getenv("JINJA_VERDICT_OUT"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
