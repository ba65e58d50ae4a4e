package chattemplate

import (
	"fmt"
	"strings"
)

// The parser is a port of jinja2.parser.Parser (Jinja 3.1) with the
// extensions transformers enables: jinja2.ext.loopcontrols ({% break %},
// {% continue %}) and AssistantTracker ({% generation %}). Its errors are
// jinja2's messages; a template it accepts is one jinja2 accepts, with the
// same tree.

const (
	maxDepth      = 256     // nesting of expressions and statements
	maxSourceSize = 1 << 20 // bytes
)

var statementKeywords = map[string]bool{
	"for": true, "if": true, "block": true, "extends": true, "print": true, "macro": true,
	"include": true, "from": true, "import": true, "set": true, "with": true, "autoescape": true,
}

var compareOps = map[tokType]string{tEq: "eq", tNe: "ne", tLt: "lt", tLtEq: "lteq", tGt: "gt", tGtEq: "gteq"}

var mathOps = map[tokType]string{tAdd: "Add", tSub: "Sub", tMul: "Mul", tDiv: "Div", tFloorDiv: "FloorDiv", tMod: "Mod"}

type parser struct {
	toks     []token
	i        int
	depth    int
	tagStack []string
	endStack [][]string
}

type parsePanic struct{ err *syntaxError }

// parseJinja parses normalised source runes into a template tree.
func parseJinja(src []rune) (t *jTemplate, err error) {
	toks, err := lexJinja(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	defer func() {
		if r := recover(); r != nil {
			pp, ok := r.(parsePanic)
			if !ok {
				panic(r)
			}
			t, err = nil, pp.err
		}
	}()
	return &jTemplate{pos: 0, Body: p.subparse(nil)}, nil
}

func (p *parser) cur() token { return p.toks[p.i] }

func (p *parser) look() token {
	if p.i+1 < len(p.toks) {
		return p.toks[p.i+1]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.typ != tEOF {
		p.i++
	}
	return t
}

func (p *parser) failAt(off int, format string, a ...any) {
	panic(parsePanic{&syntaxError{off: off, msg: fmt.Sprintf(format, a...)}})
}

func (p *parser) fail(format string, a ...any) { p.failAt(p.cur().off, format, a...) }

// test mirrors Token.test: "name:for" or a bare type.
func (t token) test(expr string) bool {
	if typ, val, ok := strings.Cut(expr, ":"); ok {
		return typ == "name" && t.typ == tName && t.val == val
	}
	return tokNames[t.typ] == expr
}

func (t token) testAny(exprs []string) bool {
	for _, e := range exprs {
		if t.test(e) {
			return true
		}
	}
	return false
}

func (p *parser) isName(v string) bool { return p.cur().typ == tName && p.cur().val == v }

func (p *parser) skipIfName(v string) bool {
	if p.isName(v) {
		p.next()
		return true
	}
	return false
}

func (p *parser) skipIf(t tokType) bool {
	if p.cur().typ == t {
		p.next()
		return true
	}
	return false
}

func describeExpr(expr string) string {
	if _, v, ok := strings.Cut(expr, ":"); ok {
		return v
	}
	return expr
}

func (p *parser) expect(t tokType) token {
	if p.cur().typ != t {
		p.expectFail(tokNames[t])
	}
	return p.next()
}

func (p *parser) expectName(v string) token {
	if !p.isName(v) {
		p.expectFail(v)
	}
	return p.next()
}

func (p *parser) expectFail(want string) {
	c := p.cur()
	if c.typ == tEOF {
		p.fail("unexpected end of template, expected %s.", pyRepr(want))
	}
	p.fail("expected token %s, got %s", pyRepr(want), pyRepr(c.describe()))
}

func (p *parser) enter() {
	p.depth++
	if p.depth > maxDepth {
		p.fail("nesting deeper than %d levels", maxDepth)
	}
}

func (p *parser) leave() { p.depth-- }

func (p *parser) failUnknownTag(name string, off int, eof bool, extra []string) {
	stack := p.endStack
	if extra != nil {
		stack = append(append([][]string{}, stack...), extra)
	}
	expected := map[string]bool{}
	for _, exprs := range stack {
		for _, e := range exprs {
			expected[describeExpr(e)] = true
		}
	}
	var msg []string
	if eof {
		msg = append(msg, "Unexpected end of template.")
	} else {
		msg = append(msg, fmt.Sprintf("Encountered unknown tag %s.", pyRepr(name)))
	}
	if len(stack) > 0 {
		var looking []string
		for _, e := range stack[len(stack)-1] {
			looking = append(looking, pyRepr(describeExpr(e)))
		}
		cl := strings.Join(looking, " or ")
		if !eof && expected[name] {
			msg = append(msg, "You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for "+cl+".")
		} else {
			msg = append(msg, "Jinja was looking for the following tags: "+cl+".")
		}
	}
	if len(p.tagStack) > 0 {
		msg = append(msg, fmt.Sprintf("The innermost block that needs to be closed is %s.", pyRepr(p.tagStack[len(p.tagStack)-1])))
	}
	p.failAt(off, "%s", strings.Join(msg, " "))
}

func (p *parser) isTupleEnd(extra []string) bool {
	switch p.cur().typ {
	case tVarEnd, tBlockEnd, tRParen:
		return true
	}
	// jinja2 3.1 calls test_any(extra_end_rules) with the tuple as one
	// argument, which never matches: the extra end rules have no effect.
	_ = extra
	return false
}

func (p *parser) parseStatement() jnode {
	p.enter()
	defer p.leave()
	tok := p.cur()
	if tok.typ != tName {
		p.failAt(tok.off, "tag name expected")
	}
	p.tagStack = append(p.tagStack, tok.val)
	defer func() { p.tagStack = p.tagStack[:len(p.tagStack)-1] }()
	switch tok.val {
	case "for":
		return p.parseFor()
	case "if":
		return p.parseIf()
	case "block":
		return p.parseBlock()
	case "extends":
		p.next()
		return &jExtends{pos(tok.off), p.parseExpression(true)}
	case "print":
		p.next()
		n := &jOutput{pos: pos(tok.off)}
		for p.cur().typ != tBlockEnd {
			if len(n.Nodes) > 0 {
				p.expect(tComma)
			}
			n.Nodes = append(n.Nodes, p.parseExpression(true))
		}
		return n
	case "macro":
		return p.parseMacro()
	case "include":
		return p.parseInclude()
	case "from":
		return p.parseFrom()
	case "import":
		return p.parseImport()
	case "set":
		return p.parseSet()
	case "with":
		return p.parseWith()
	case "autoescape":
		p.next()
		n := &jScope{pos: pos(tok.off)}
		n.Option = p.parseExpression(true)
		n.Body = p.parseStatements([]string{"name:endautoescape"}, true)
		return n
	case "call":
		return p.parseCallBlock()
	case "filter":
		p.next()
		n := &jFilterBlock{pos: pos(tok.off)}
		n.Filter = p.parseFilter(nil, true).(*jFilter)
		n.Body = p.parseStatements([]string{"name:endfilter"}, true)
		return n
	case "break":
		p.next()
		return &jBreak{pos(tok.off)}
	case "continue":
		p.next()
		return &jContinue{pos(tok.off)}
	case "generation":
		p.next()
		return &jGeneration{pos(tok.off), p.parseStatements([]string{"name:endgeneration"}, true)}
	}
	p.tagStack = p.tagStack[:len(p.tagStack)-1]
	defer func() { p.tagStack = append(p.tagStack, "") }()
	p.failUnknownTag(tok.val, tok.off, false, nil)
	return nil
}

func (p *parser) parseStatements(end []string, dropNeedle bool) []jnode {
	p.skipIf(tColon)
	p.expect(tBlockEnd)
	body := p.subparse(end)
	if p.cur().typ == tEOF {
		p.failUnknownTag("", p.cur().off, true, end)
	}
	if dropNeedle {
		p.next()
	}
	return body
}

func (p *parser) parseSet() jnode {
	off := p.next().off
	target := p.parseAssignTarget(true, false, nil, true)
	if p.skipIf(tAssign) {
		return &jAssign{pos(off), target, p.parseTuple(false, true, nil, false, false)}
	}
	var f *jFilter
	if fn := p.parseFilter(nil, false); fn != nil {
		f = fn.(*jFilter)
	}
	body := p.parseStatements([]string{"name:endset"}, true)
	return &jAssignBlock{pos(off), target, f, body}
}

func (p *parser) parseFor() jnode {
	off := p.expectName("for").off
	n := &jFor{pos: pos(off)}
	n.Target = p.parseAssignTarget(true, false, []string{"name:in"}, false)
	p.expectName("in")
	n.Iter = p.parseTuple(false, false, []string{"name:recursive"}, false, false)
	if p.skipIfName("if") {
		n.Test = p.parseExpression(true)
	}
	n.Recursive = p.skipIfName("recursive")
	n.Body = p.parseStatements([]string{"name:endfor", "name:else"}, false)
	n.End = p.cur().off
	if p.next().val != "endfor" {
		n.Else = p.parseStatements([]string{"name:endfor"}, true)
	}
	return n
}

func (p *parser) parseIf() jnode {
	result := &jIf{pos: pos(p.expectName("if").off)}
	node := result
	for {
		node.Test = p.parseTuple(false, false, nil, false, false)
		node.Body = p.parseStatements([]string{"name:elif", "name:else", "name:endif"}, false)
		tok := p.next()
		if tok.test("name:elif") {
			node = &jIf{pos: pos(p.cur().off)}
			result.Elif = append(result.Elif, node)
			continue
		} else if tok.test("name:else") {
			result.Else = p.parseStatements([]string{"name:endif"}, true)
		}
		break
	}
	return result
}

func (p *parser) parseWith() jnode {
	n := &jWith{pos: pos(p.next().off)}
	for p.cur().typ != tBlockEnd {
		if len(n.Targets) > 0 {
			p.expect(tComma)
		}
		t := p.parseAssignTarget(true, false, nil, false)
		setCtx(t, "param")
		n.Targets = append(n.Targets, t)
		p.expect(tAssign)
		n.Values = append(n.Values, p.parseExpression(true))
	}
	n.Body = p.parseStatements([]string{"name:endwith"}, true)
	return n
}

func (p *parser) parseBlock() jnode {
	n := &jBlock{pos: pos(p.next().off)}
	n.Name = p.expect(tName).val
	n.Scoped = p.skipIfName("scoped")
	n.Required = p.skipIfName("required")
	if p.cur().typ == tSub {
		p.fail("Block names in Jinja have to be valid Python identifiers and may not contain hyphens, use an underscore instead.")
	}
	n.Body = p.parseStatements([]string{"name:endblock"}, true)
	if n.Required {
		for _, b := range n.Body {
			out, ok := b.(*jOutput)
			if !ok {
				p.fail("Required blocks can only contain comments or whitespace")
			}
			for _, o := range out.Nodes {
				td, ok := o.(*jTemplateData)
				if !ok || !pyIsSpaceString(td.Data) {
					p.fail("Required blocks can only contain comments or whitespace")
				}
			}
		}
	}
	p.skipIfName(n.Name)
	return n
}

func pyIsSpaceString(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isSpace(r) {
			return false
		}
	}
	return true
}

func (p *parser) parseImportContext(def bool) bool {
	if (p.isName("with") || p.isName("without")) && p.look().test("name:context") {
		w := p.next().val == "with"
		p.next()
		return w
	}
	return def
}

func (p *parser) parseInclude() jnode {
	n := &jInclude{pos: pos(p.next().off)}
	n.Template = p.parseExpression(true)
	if p.isName("ignore") && p.look().test("name:missing") {
		n.IgnoreMissing = true
		p.next()
		p.next()
	}
	n.WithContext = p.parseImportContext(true)
	return n
}

func (p *parser) parseImport() jnode {
	n := &jImport{pos: pos(p.next().off)}
	n.Template = p.parseExpression(true)
	p.expectName("as")
	n.Target = p.parseAssignTarget(true, true, nil, false).(*jName).Name
	n.WithContext = p.parseImportContext(false)
	return n
}

func (p *parser) parseFrom() jnode {
	n := &jFromImport{pos: pos(p.next().off)}
	n.Template = p.parseExpression(true)
	p.expectName("import")
	parseContext := func() bool {
		if (p.cur().val == "with" || p.cur().val == "without") && p.look().test("name:context") {
			n.WithContext = p.next().val == "with"
			p.next()
			return true
		}
		return false
	}
	for {
		if len(n.Names) > 0 {
			p.expect(tComma)
		}
		if p.cur().typ == tName {
			if parseContext() {
				break
			}
			target := p.parseAssignTarget(true, true, nil, false).(*jName)
			if strings.HasPrefix(target.Name, "_") {
				p.failAt(target.at(), "names starting with an underline can not be imported")
			}
			if p.skipIfName("as") {
				alias := p.parseAssignTarget(true, true, nil, false).(*jName)
				n.Names = append(n.Names, [2]string{target.Name, alias.Name})
			} else {
				n.Names = append(n.Names, [2]string{target.Name, ""})
			}
			if parseContext() || p.cur().typ != tComma {
				break
			}
		} else {
			p.expect(tName)
		}
	}
	return n
}

func (p *parser) parseSignature() (args []*jName, defaults []jnode) {
	p.expect(tLParen)
	for p.cur().typ != tRParen {
		if len(args) > 0 {
			p.expect(tComma)
		}
		arg := p.parseAssignTarget(true, true, nil, false).(*jName)
		arg.Ctx = "param"
		if p.skipIf(tAssign) {
			defaults = append(defaults, p.parseExpression(true))
		} else if len(defaults) > 0 {
			p.fail("non-default argument follows default argument")
		}
		args = append(args, arg)
	}
	p.expect(tRParen)
	return args, defaults
}

func (p *parser) parseCallBlock() jnode {
	n := &jCallBlock{pos: pos(p.next().off)}
	if p.cur().typ == tLParen {
		n.Args, n.Defaults = p.parseSignature()
	}
	call, ok := p.parseExpression(true).(*jCall)
	if !ok {
		p.failAt(n.at(), "expected call")
	}
	n.Call = call
	n.Body = p.parseStatements([]string{"name:endcall"}, true)
	return n
}

func (p *parser) parseMacro() jnode {
	n := &jMacro{pos: pos(p.next().off)}
	n.Name = p.parseAssignTarget(true, true, nil, false).(*jName).Name
	n.Args, n.Defaults = p.parseSignature()
	n.Body = p.parseStatements([]string{"name:endmacro"}, true)
	return n
}

func setCtx(n jnode, ctx string) {
	switch n := n.(type) {
	case *jName:
		n.Ctx = ctx
	case *jTuple:
		n.Ctx = ctx
		for _, it := range n.Items {
			setCtx(it, ctx)
		}
	case *jGetattr:
		n.Ctx = ctx
	case *jGetitem:
		n.Ctx = ctx
	}
}

func canAssign(n jnode) bool {
	switch n := n.(type) {
	case *jName:
		switch n.Name {
		case "true", "false", "none", "True", "False", "None":
			return false
		}
		return true
	case *jNSRef:
		return true
	case *jTuple:
		for _, it := range n.Items {
			if !canAssign(it) {
				return false
			}
		}
		return true
	}
	return false
}

func nodeTypeName(n jnode) string {
	switch n.(type) {
	case *jName:
		return "name"
	case *jNSRef:
		return "nsref"
	case *jConst:
		return "const"
	case *jTuple:
		return "tuple"
	case *jList:
		return "list"
	case *jDict:
		return "dict"
	case *jGetattr:
		return "getattr"
	case *jGetitem:
		return "getitem"
	case *jCall:
		return "call"
	case *jConcat:
		return "concat"
	case *jCondExpr:
		return "condexpr"
	case *jSlice:
		return "slice"
	case *jFilter:
		return "filter"
	case *jTest:
		return "test"
	case *jCompare:
		return "compare"
	case *jBin:
		return strings.ToLower(n.(*jBin).Op)
	case *jUnary:
		return strings.ToLower(n.(*jUnary).Op)
	}
	return "expression"
}

func (p *parser) parseAssignTarget(withTuple, nameOnly bool, extra []string, withNamespace bool) jnode {
	var target jnode
	if nameOnly {
		tok := p.expect(tName)
		target = &jName{pos(tok.off), tok.val, "store"}
	} else {
		if withTuple {
			target = p.parseTuple(true, true, extra, false, withNamespace)
		} else {
			target = p.parsePrimary(withNamespace)
		}
		setCtx(target, "store")
	}
	if !canAssign(target) {
		p.failAt(target.at(), "can't assign to %s", pyRepr(nodeTypeName(target)))
	}
	return target
}

func (p *parser) parseExpression(withCondexpr bool) jnode {
	p.enter()
	defer p.leave()
	if withCondexpr {
		return p.parseCondexpr()
	}
	return p.parseOr()
}

func (p *parser) parseCondexpr() jnode {
	off := p.cur().off
	expr1 := p.parseOr()
	for p.skipIfName("if") {
		expr2 := p.parseOr()
		var expr3 jnode
		if p.skipIfName("else") {
			p.enter()
			expr3 = p.parseCondexpr()
			p.leave()
		}
		expr1 = &jCondExpr{pos(off), expr2, expr1, expr3}
		off = p.cur().off
	}
	return expr1
}

func (p *parser) parseOr() jnode {
	off := p.cur().off
	left := p.parseAnd()
	for p.skipIfName("or") {
		left = &jBin{pos(off), "Or", left, p.parseAnd()}
		off = p.cur().off
	}
	return left
}

func (p *parser) parseAnd() jnode {
	off := p.cur().off
	left := p.parseNot()
	for p.skipIfName("and") {
		left = &jBin{pos(off), "And", left, p.parseNot()}
		off = p.cur().off
	}
	return left
}

func (p *parser) parseNot() jnode {
	if p.isName("not") {
		off := p.next().off
		p.enter()
		defer p.leave()
		return &jUnary{pos(off), "Not", p.parseNot()}
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() jnode {
	off := p.cur().off
	expr := p.parseMath1()
	var ops []*jOperand
	for {
		t := p.cur()
		if op, ok := compareOps[t.typ]; ok {
			p.next()
			ops = append(ops, &jOperand{pos(t.off), op, p.parseMath1()})
		} else if p.skipIfName("in") {
			ops = append(ops, &jOperand{pos(t.off), "in", p.parseMath1()})
		} else if p.isName("not") && p.look().test("name:in") {
			p.next()
			p.next()
			ops = append(ops, &jOperand{pos(t.off), "notin", p.parseMath1()})
		} else {
			break
		}
		off = p.cur().off
	}
	if len(ops) == 0 {
		return expr
	}
	return &jCompare{pos(off), expr, ops}
}

func (p *parser) parseMath1() jnode {
	off := p.cur().off
	left := p.parseConcat()
	for p.cur().typ == tAdd || p.cur().typ == tSub {
		op := mathOps[p.next().typ]
		left = &jBin{pos(off), op, left, p.parseConcat()}
		off = p.cur().off
	}
	return left
}

func (p *parser) parseConcat() jnode {
	off := p.cur().off
	args := []jnode{p.parseMath2()}
	for p.cur().typ == tTilde {
		p.next()
		args = append(args, p.parseMath2())
	}
	if len(args) == 1 {
		return args[0]
	}
	return &jConcat{pos(off), args}
}

func (p *parser) parseMath2() jnode {
	off := p.cur().off
	left := p.parsePow()
	for {
		switch p.cur().typ {
		case tMul, tDiv, tFloorDiv, tMod:
			op := mathOps[p.next().typ]
			left = &jBin{pos(off), op, left, p.parsePow()}
			off = p.cur().off
			continue
		}
		return left
	}
}

func (p *parser) parsePow() jnode {
	off := p.cur().off
	left := p.parseUnary(true)
	for p.cur().typ == tPow {
		p.next()
		left = &jBin{pos(off), "Pow", left, p.parseUnary(true)}
		off = p.cur().off
	}
	return left
}

func (p *parser) parseUnary(withFilter bool) jnode {
	p.enter()
	defer p.leave()
	t := p.cur()
	var node jnode
	switch t.typ {
	case tSub:
		p.next()
		node = &jUnary{pos(t.off), "Neg", p.parseUnary(false)}
	case tAdd:
		p.next()
		node = &jUnary{pos(t.off), "Pos", p.parseUnary(false)}
	default:
		node = p.parsePrimary(false)
	}
	node = p.parsePostfix(node)
	if withFilter {
		node = p.parseFilterExpr(node)
	}
	return node
}

func (p *parser) parsePrimary(withNamespace bool) jnode {
	t := p.cur()
	switch t.typ {
	case tName:
		p.next()
		switch t.val {
		case "true", "True":
			return &jConst{pos: pos(t.off), Kind: constBool, Bool: true, Str: t.val}
		case "false", "False":
			return &jConst{pos: pos(t.off), Kind: constBool, Str: t.val}
		case "none", "None":
			return &jConst{pos: pos(t.off), Kind: constNone, Str: t.val}
		}
		if withNamespace && p.cur().typ == tDot {
			p.next()
			attr := p.expect(tName)
			return &jNSRef{pos(t.off), t.val, attr.val}
		}
		return &jName{pos(t.off), t.val, "load"}
	case tString:
		p.next()
		val, raw := t.val, t.raw
		for p.cur().typ == tString {
			val += p.cur().val
			raw += p.cur().raw
			p.next()
		}
		return &jConst{pos: pos(t.off), Kind: constStr, Str: val, Raw: raw}
	case tInteger:
		p.next()
		return &jConst{pos: pos(t.off), Kind: constInt, Str: t.val}
	case tFloat:
		p.next()
		return &jConst{pos: pos(t.off), Kind: constFloat, Str: t.val}
	case tLParen:
		p.next()
		n := p.parseTuple(false, true, nil, true, false)
		p.expect(tRParen)
		return n
	case tLBracket:
		return p.parseList()
	case tLBrace:
		return p.parseDict()
	}
	p.failAt(t.off, "unexpected %s", pyRepr(t.describe()))
	return nil
}

func (p *parser) parseTuple(simplified, withCondexpr bool, extra []string, explicitParens, withNamespace bool) jnode {
	off := p.cur().off
	parse := func() jnode {
		if simplified {
			return p.parsePrimary(withNamespace)
		}
		return p.parseExpression(withCondexpr)
	}
	var args []jnode
	isTuple := false
	for {
		if len(args) > 0 {
			p.expect(tComma)
		}
		if p.isTupleEnd(extra) {
			break
		}
		args = append(args, parse())
		if p.cur().typ == tComma {
			isTuple = true
		} else {
			break
		}
		off = p.cur().off
	}
	if !isTuple {
		if len(args) > 0 {
			return args[0]
		}
		if !explicitParens {
			p.fail("Expected an expression, got %s", pyRepr(p.cur().describe()))
		}
	}
	return &jTuple{pos(off), args, "load"}
}

func (p *parser) parseList() jnode {
	t := p.expect(tLBracket)
	n := &jList{pos: pos(t.off)}
	for p.cur().typ != tRBracket {
		if len(n.Items) > 0 {
			p.expect(tComma)
		}
		if p.cur().typ == tRBracket {
			break
		}
		n.Items = append(n.Items, p.parseExpression(true))
	}
	p.expect(tRBracket)
	return n
}

func (p *parser) parseDict() jnode {
	t := p.expect(tLBrace)
	n := &jDict{pos: pos(t.off)}
	for p.cur().typ != tRBrace {
		if len(n.Items) > 0 {
			p.expect(tComma)
		}
		if p.cur().typ == tRBrace {
			break
		}
		key := p.parseExpression(true)
		p.expect(tColon)
		value := p.parseExpression(true)
		n.Items = append(n.Items, &jPair{pos(key.at()), key, value})
	}
	p.expect(tRBrace)
	return n
}

func (p *parser) parsePostfix(node jnode) jnode {
	for {
		switch p.cur().typ {
		case tDot, tLBracket:
			node = p.parseSubscript(node)
		case tLParen:
			node = p.parseCall(node)
		default:
			return node
		}
	}
}

func (p *parser) parseFilterExpr(node jnode) jnode {
	for {
		switch {
		case p.cur().typ == tPipe:
			node = p.parseFilter(node, false)
		case p.isName("is"):
			node = p.parseTest(node)
		case p.cur().typ == tLParen:
			node = p.parseCall(node)
		default:
			return node
		}
	}
}

func (p *parser) parseSubscript(node jnode) jnode {
	tok := p.next()
	if tok.typ == tDot {
		attr := p.cur()
		p.next()
		if attr.typ == tName {
			return &jGetattr{pos(tok.off), node, attr.val, "load"}
		} else if attr.typ != tInteger {
			p.failAt(attr.off, "expected name or number")
		}
		return &jGetitem{pos(tok.off), node, &jConst{pos: pos(attr.off), Kind: constInt, Str: attr.val}, "load"}
	}
	// tLBracket
	var args []jnode
	for p.cur().typ != tRBracket {
		if len(args) > 0 {
			p.expect(tComma)
		}
		args = append(args, p.parseSubscribed())
	}
	p.expect(tRBracket)
	var arg jnode
	if len(args) == 1 {
		arg = args[0]
	} else {
		arg = &jTuple{pos(tok.off), args, "load"}
	}
	return &jGetitem{pos(tok.off), node, arg, "load"}
}

func (p *parser) parseSubscribed() jnode {
	off := p.cur().off
	var args []jnode
	if p.cur().typ == tColon {
		p.next()
		args = []jnode{nil}
	} else {
		node := p.parseExpression(true)
		if p.cur().typ != tColon {
			return node
		}
		p.next()
		args = []jnode{node}
	}
	switch p.cur().typ {
	case tColon, tRBracket, tComma:
		args = append(args, nil)
	default:
		args = append(args, p.parseExpression(true))
	}
	if p.cur().typ == tColon {
		p.next()
		if t := p.cur().typ; t != tRBracket && t != tComma {
			args = append(args, p.parseExpression(true))
		} else {
			args = append(args, nil)
		}
	} else {
		args = append(args, nil)
	}
	return &jSlice{pos(off), args[0], args[1], args[2]}
}

func (p *parser) parseCallArgs() (args []jnode, kwargs []*jKeyword, dynArgs, dynKwargs jnode) {
	tok := p.expect(tLParen)
	ensure := func(ok bool) {
		if !ok {
			p.failAt(tok.off, "invalid syntax for function call expression")
		}
	}
	requireComma := false
	for p.cur().typ != tRParen {
		if requireComma {
			p.expect(tComma)
			if p.cur().typ == tRParen {
				break
			}
		}
		switch {
		case p.cur().typ == tMul:
			ensure(dynArgs == nil && dynKwargs == nil)
			p.next()
			dynArgs = p.parseExpression(true)
		case p.cur().typ == tPow:
			ensure(dynKwargs == nil)
			p.next()
			dynKwargs = p.parseExpression(true)
		case p.cur().typ == tName && p.look().typ == tAssign:
			ensure(dynKwargs == nil)
			key := p.cur().val
			p.next()
			p.next()
			value := p.parseExpression(true)
			kwargs = append(kwargs, &jKeyword{pos(value.at()), key, value})
		default:
			ensure(dynArgs == nil && dynKwargs == nil && len(kwargs) == 0)
			args = append(args, p.parseExpression(true))
		}
		requireComma = true
	}
	p.expect(tRParen)
	return
}

func (p *parser) parseCall(node jnode) jnode {
	off := p.cur().off
	args, kwargs, da, dk := p.parseCallArgs()
	return &jCall{pos(off), node, args, kwargs, da, dk}
}

func (p *parser) parseFilter(node jnode, startInline bool) jnode {
	for p.cur().typ == tPipe || startInline {
		if !startInline {
			p.next()
		}
		tok := p.expect(tName)
		name := tok.val
		for p.cur().typ == tDot {
			p.next()
			name += "." + p.expect(tName).val
		}
		f := &jFilter{pos: pos(tok.off), Node: node, Name: name}
		if p.cur().typ == tLParen {
			f.Args, f.Kwargs, f.DynArgs, f.DynKwargs = p.parseCallArgs()
		}
		node = f
		startInline = false
	}
	return node
}

func (p *parser) parseTest(node jnode) jnode {
	tok := p.next()
	negated := false
	if p.isName("not") {
		p.next()
		negated = true
	}
	name := p.expect(tName).val
	for p.cur().typ == tDot {
		p.next()
		name += "." + p.expect(tName).val
	}
	t := &jTest{pos: pos(tok.off), Node: node, Name: name}
	switch c := p.cur(); {
	case c.typ == tLParen:
		t.Args, t.Kwargs, t.DynArgs, t.DynKwargs = p.parseCallArgs()
	case (c.typ == tName || c.typ == tString || c.typ == tInteger || c.typ == tFloat || c.typ == tLParen ||
		c.typ == tLBracket || c.typ == tLBrace) && !c.testAny([]string{"name:else", "name:or", "name:and"}):
		if c.test("name:is") {
			p.fail("You cannot chain multiple tests with is")
		}
		arg := p.parsePrimary(false)
		arg = p.parsePostfix(arg)
		t.Args = []jnode{arg}
	}
	if negated {
		return &jUnary{pos(tok.off), "Not", t}
	}
	return t
}

func (p *parser) subparse(end []string) []jnode {
	p.enter()
	defer p.leave()
	var body, data []jnode
	if end != nil {
		p.endStack = append(p.endStack, end)
		defer func() { p.endStack = p.endStack[:len(p.endStack)-1] }()
	}
	flush := func() {
		if len(data) > 0 {
			body = append(body, &jOutput{pos(data[0].at()), data})
			data = nil
		}
	}
	for p.cur().typ != tEOF {
		t := p.cur()
		switch t.typ {
		case tData:
			if t.val != "" {
				data = append(data, &jTemplateData{pos(t.off), t.val})
			}
			p.next()
		case tVarBegin:
			p.next()
			data = append(data, p.parseTuple(false, true, nil, false, false))
			p.expect(tVarEnd)
		case tBlockBegin:
			flush()
			p.next()
			if end != nil && p.cur().testAny(end) {
				return body
			}
			body = append(body, p.parseStatement())
			p.expect(tBlockEnd)
		default:
			p.failAt(t.off, "unexpected %s", pyRepr(t.describe()))
		}
	}
	flush()
	return body
}
