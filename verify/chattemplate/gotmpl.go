package chattemplate

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template/parse"
	"unicode/utf8"
)

// The Ollama dialect: text/template, with the functions Ollama's template
// package adds (template/template.go: json, currentDate, yesterdayDate,
// toTypeScriptType) and the data Ollama executes templates with: a map of
// System, Messages, Tools, Response, Prompt, Suffix, Think, ThinkLevel,
// IsThinkSet (and First, in Ollama before mid-2024), whose messages and tools
// are templateMessage/templateTool (template/template.go) or, in earlier
// versions, api.Message/api.Tool (api/types.go).

// goFuncs are the functions a template may call: Ollama's and the builtins
// of text/template except call, which calls any function value.
var goFuncs = map[string]gtype{
	"json": gString, "currentDate": gString, "yesterdayDate": gString, "toTypeScriptType": gString,
	"and": gAny, "or": gAny, "not": gBool, "len": gInt, "index": gAny, "slice": gAny,
	"print": gString, "printf": gString, "println": gString, "html": gString, "js": gString,
	"urlquery": gString, "eq": gBool, "ne": gBool, "lt": gBool, "le": gBool, "gt": gBool, "ge": gBool,
}

// ollamaParseFuncs is what Ollama's template.Parse knows: its functions and
// every text/template builtin (call included). A text parses as an Ollama
// template when text/template accepts it with these.
var ollamaParseFuncs = func() map[string]any {
	m := map[string]any{"call": true} // parse only checks the names
	for k := range goFuncs {
		m[k] = true
	}
	return m
}()

type gtype uint8

const (
	gAny gtype = iota // not known, or a JSON value: a map takes any key
	gRoot
	gMessages
	gMessage
	gToolCalls
	gToolCall
	gToolCallFunction
	gArgs
	gTools
	gTool
	gToolFunction
	gParams
	gProps
	gProp
	gPropList
	gPropType
	gStrings
	gImages
	gImage
	gAnyList
	gString
	gBool
	gInt
	gIter
	gNil
	numGTypes
)

var gtypeNames = [...]string{"any value", "the template data", "Messages", "a message", "ToolCalls", "a tool call",
	"a tool call's Function", "Arguments", "Tools", "a tool", "a tool's Function", "Parameters", "Properties",
	"a property", "AnyOf", "a property's Type", "a list of strings", "Images", "an image", "a list", "a string",
	"a bool", "an int", "an iterator", "nil"}

type gset uint32

func one(t gtype) gset { return 1 << t }

func (s gset) types() []gtype {
	var out []gtype
	for t := gtype(0); t < numGTypes; t++ {
		if s&one(t) != 0 {
			out = append(out, t)
		}
	}
	return out
}

// goFields: the fields and read-only methods of each value, by the name a
// template uses. A map type also takes any key (goMapValue).
var goFields = map[gtype]map[string]gtype{
	gRoot: {"System": gString, "Messages": gMessages, "Tools": gTools, "Response": gString, "Prompt": gString,
		"Suffix": gString, "Think": gBool, "ThinkLevel": gString, "IsThinkSet": gBool, "First": gBool},
	gMessage: {"Role": gString, "Content": gString, "Thinking": gString, "Images": gImages, "ToolCalls": gToolCalls,
		"ToolName": gString, "ToolCallID": gString},
	gToolCall:         {"ID": gString, "Function": gToolCallFunction},
	gToolCallFunction: {"Index": gInt, "Name": gString, "Arguments": gArgs},
	gArgs:             {"String": gString, "Get": gAny, "Len": gInt, "All": gIter, "ToMap": gArgs},
	gTools:            {"String": gString},
	gTool:             {"Type": gString, "Items": gAny, "Function": gToolFunction, "String": gString},
	gToolFunction:     {"Name": gString, "Description": gString, "Parameters": gParams, "String": gString},
	gParams: {"Type": gString, "Defs": gAny, "Items": gAny, "Required": gStrings, "Properties": gProps,
		"String": gString},
	gProps: {"String": gString, "Get": gProp, "Len": gInt, "All": gIter, "ToMap": gProps},
	gProp: {"AnyOf": gPropList, "Type": gPropType, "Items": gAny, "Description": gString, "Enum": gAnyList,
		"Properties": gProps, "Required": gStrings, "ToTypeScriptType": gString},
	gPropType: {"String": gString},
}

// goMapValue: map types and what any other key yields.
var goMapValue = map[gtype]gtype{gArgs: gAny, gProps: gProp, gAny: gAny}

// goElem: what ranging over or indexing a value yields.
var goElem = map[gtype]gset{
	gRoot: one(gString) | one(gMessages) | one(gTools) | one(gBool), gMessages: one(gMessage),
	gToolCalls: one(gToolCall), gArgs: one(gAny), gTools: one(gTool), gProps: one(gProp), gPropList: one(gProp),
	gPropType: one(gString), gStrings: one(gString), gImages: one(gImage), gImage: one(gInt),
	gAnyList: one(gAny), gAny: one(gAny), gInt: one(gInt), gIter: one(gAny) | one(gProp),
}

// goMutators are methods of the values in some Ollama version that change
// them (ToolCallFunctionArguments.Set, ToolPropertiesMap.Set, the JSON
// methods); a template may not name them even where they are map keys now.
var goMutators = map[string]bool{"Set": true, "UnmarshalJSON": true, "MarshalJSON": true}

type goChecker struct {
	root    *parse.Tree
	trees   map[string]*parse.Tree
	dots    map[string]gset
	vars    map[string]gset
	changed bool
	report  bool
	errs    []goRefusal
}

type goRefusal struct {
	tree   *parse.Tree
	node   parse.Node
	reason string
}

var goErrRe = regexp.MustCompile(`^template: [^:]*:(\d+):(?:(\d+):)? ?(.*)$`)

func parseGo(src string, funcs map[string]any) (*parse.Tree, map[string]*parse.Tree, error) {
	trees := map[string]*parse.Tree{}
	t := parse.New("")
	if funcs == nil {
		t.Mode = parse.SkipFuncCheck
	}
	root, err := t.Parse(src, "", "", trees, funcs)
	return root, trees, err
}

// parsesAsOllamaGo reports whether Ollama's template.Parse would accept src
// (text/template with Ollama's functions and the builtins).
func parsesAsOllamaGo(src string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = true // CheckGo then reports the failure
		}
	}()
	_, _, err := parseGo(src, ollamaParseFuncs)
	return err == nil
}

// CheckGo parses src with text/template/parse (the Ollama dialect) and allows
// only the functions Ollama's template package provides and the text/template
// builtins that cannot call arbitrary code (not call), and only the fields
// and read-only methods of the values Ollama passes to the template. It
// returns nil or *Error.
func CheckGo(src string) (err error) {
	defer failClosed(GoTemplate, &err)
	if len(src) > maxSourceSize {
		return &Error{Dialect: GoTemplate, Syntax: true, Reason: fmt.Sprintf("template is %d bytes, over the %d-byte limit", len(src), maxSourceSize)}
	}
	root, trees, err := parseGo(src, nil)
	if err != nil {
		e := &Error{Dialect: GoTemplate, Syntax: true, Reason: err.Error()}
		if m := goErrRe.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Col, _ = strconv.Atoi(m[2])
			e.Reason = m[3]
		}
		return e
	}
	c := &goChecker{root: root, trees: trees, dots: map[string]gset{}, vars: map[string]gset{}}
	c.run()
	if len(c.errs) == 0 {
		return nil
	}
	first := c.errs[0]
	for _, r := range c.errs[1:] {
		if r.node.Position() < first.node.Position() {
			first = r
		}
	}
	e := &Error{Dialect: GoTemplate, Reason: first.reason}
	e.Line, e.Col = bytePosition(src, int(first.node.Position()))
	return e
}

// bytePosition converts a byte offset to a 1-based line and column (in
// characters).
func bytePosition(src string, off int) (line, col int) {
	if off > len(src) {
		off = len(src)
	}
	before := src[:off]
	nl := strings.LastIndexByte(before, '\n')
	return 1 + strings.Count(before, "\n"), 1 + utf8.RuneCountInString(before[nl+1:])
}

func (c *goChecker) allTrees() []*parse.Tree {
	names := make([]string, 0, len(c.trees))
	for n := range c.trees {
		names = append(names, n)
	}
	sort.Strings(names)
	out := []*parse.Tree{c.root}
	for _, n := range names {
		if t := c.trees[n]; t != c.root && t.Root != nil {
			out = append(out, t)
		}
	}
	return out
}

// run propagates the types of dot and of variables to a fixpoint, then
// checks every template once more with the final types.
func (c *goChecker) run() {
	c.dots[c.root.Name] = one(gRoot)
	pass := func() {
		for i := 0; i < 64; i++ {
			c.changed = false
			for _, t := range c.allTrees() {
				if d := c.dots[t.Name]; d != 0 {
					c.walkList(t, t.Root, d)
				}
			}
			if !c.changed {
				return
			}
		}
	}
	pass()
	// a template no one invokes may be invoked by a later version of the
	// caller: any value
	for _, t := range c.allTrees() {
		if c.dots[t.Name] == 0 {
			c.dots[t.Name] = one(gAny)
		}
	}
	pass()
	c.report = true
	for _, t := range c.allTrees() {
		c.walkList(t, t.Root, c.dots[t.Name])
	}
}

func (c *goChecker) refuse(t *parse.Tree, n parse.Node, format string, a ...any) {
	if c.report {
		c.errs = append(c.errs, goRefusal{t, n, fmt.Sprintf(format, a...)})
	}
}

func (c *goChecker) setVar(t *parse.Tree, name string, s gset) {
	key := t.Name + "\x00" + name
	if old := c.vars[key]; old|s != old {
		c.vars[key] = old | s
		c.changed = true
	}
}

func (c *goChecker) walkList(t *parse.Tree, l *parse.ListNode, dot gset) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		c.walkNode(t, n, dot)
	}
}

func (c *goChecker) walkNode(t *parse.Tree, n parse.Node, dot gset) {
	switch n := n.(type) {
	case *parse.ActionNode:
		c.pipe(t, n.Pipe, dot)
	case *parse.IfNode:
		c.pipe(t, n.Pipe, dot)
		c.walkList(t, n.List, dot)
		c.walkList(t, n.ElseList, dot)
	case *parse.WithNode:
		v := c.pipe(t, n.Pipe, dot)
		c.walkList(t, n.List, v)
		c.walkList(t, n.ElseList, dot)
	case *parse.RangeNode:
		v := c.pipeValue(t, n.Pipe, dot)
		key, elem := rangeTypes(v)
		switch len(n.Pipe.Decl) {
		case 1:
			c.setVar(t, n.Pipe.Decl[0].Ident[0], elem)
		case 2:
			c.setVar(t, n.Pipe.Decl[0].Ident[0], key)
			c.setVar(t, n.Pipe.Decl[1].Ident[0], elem)
		}
		c.walkList(t, n.List, elem)
		c.walkList(t, n.ElseList, dot)
	case *parse.TemplateNode:
		var v gset = one(gNil)
		if n.Pipe != nil {
			v = c.pipe(t, n.Pipe, dot)
		}
		if old := c.dots[n.Name]; old|v != old {
			c.dots[n.Name] = old | v
			c.changed = true
		}
	}
}

func rangeTypes(v gset) (key, elem gset) {
	for _, ty := range v.types() {
		elem |= goElem[ty]
		switch ty {
		case gRoot, gArgs, gProps, gAny, gIter:
			key |= one(gString)
		}
		key |= one(gInt)
	}
	if elem == 0 {
		elem = one(gAny)
	}
	return key, elem
}

// pipe evaluates a pipeline and binds its declared variables.
func (c *goChecker) pipe(t *parse.Tree, p *parse.PipeNode, dot gset) gset {
	v := c.pipeValue(t, p, dot)
	for _, d := range p.Decl {
		c.setVar(t, d.Ident[0], v)
	}
	return v
}

func (c *goChecker) pipeValue(t *parse.Tree, p *parse.PipeNode, dot gset) gset {
	if p == nil {
		return one(gNil)
	}
	var v gset
	for _, cmd := range p.Cmds {
		v = c.command(t, cmd, dot)
	}
	return v
}

func (c *goChecker) command(t *parse.Tree, cmd *parse.CommandNode, dot gset) gset {
	if len(cmd.Args) == 0 {
		return one(gAny)
	}
	args := make([]gset, len(cmd.Args))
	for i, a := range cmd.Args[1:] {
		args[i+1] = c.arg(t, a, dot)
	}
	if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok {
		res, ok := goFuncs[id.Ident]
		if !ok {
			c.refuse(t, id, "function %q is not one Ollama provides", id.Ident)
			return one(gAny)
		}
		switch id.Ident {
		case "and", "or":
			var u gset
			for _, a := range args[1:] {
				u |= a
			}
			return u
		case "index":
			if len(args) < 2 {
				return one(gAny)
			}
			v := args[1]
			for range args[2:] {
				_, v = rangeTypes(v)
			}
			return v
		case "slice":
			if len(args) < 2 {
				return one(gAny)
			}
			return args[1]
		}
		return one(res)
	}
	return c.arg(t, cmd.Args[0], dot)
}

func (c *goChecker) arg(t *parse.Tree, n parse.Node, dot gset) gset {
	switch n := n.(type) {
	case *parse.DotNode:
		return dot
	case *parse.FieldNode:
		return c.fields(t, n, dot, n.Ident)
	case *parse.VariableNode:
		var v gset
		if n.Ident[0] == "$" {
			v = c.dots[t.Name]
		} else {
			v = c.vars[t.Name+"\x00"+n.Ident[0]]
			if v == 0 {
				v = one(gAny) // assigned in a way not followed yet
			}
		}
		return c.fields(t, n, v, n.Ident[1:])
	case *parse.ChainNode:
		return c.fields(t, n, c.arg(t, n.Node, dot), n.Field)
	case *parse.PipeNode:
		return c.pipe(t, n, dot)
	case *parse.IdentifierNode:
		res, ok := goFuncs[n.Ident]
		if !ok {
			c.refuse(t, n, "function %q is not one Ollama provides", n.Ident)
			return one(gAny)
		}
		return one(res)
	case *parse.StringNode:
		return one(gString)
	case *parse.NumberNode:
		return one(gInt)
	case *parse.BoolNode:
		return one(gBool)
	case *parse.NilNode:
		return one(gNil)
	}
	return one(gAny)
}

// fields follows .A.B.C from a value and refuses a name that no value it may
// be has.
func (c *goChecker) fields(t *parse.Tree, n parse.Node, v gset, idents []string) gset {
	for _, name := range idents {
		if goMutators[name] {
			c.refuse(t, n, "method %q changes the value it belongs to; Ollama templates may not call it", name)
			return one(gAny)
		}
		var next gset
		for _, ty := range v.types() {
			if r, ok := goFields[ty][name]; ok {
				next |= one(r)
			} else if r, ok := goMapValue[ty]; ok {
				next |= one(r)
			}
		}
		if next == 0 {
			var on []string
			for _, ty := range v.types() {
				on = append(on, gtypeNames[ty])
			}
			c.refuse(t, n, "field %q is not one Ollama passes to templates (on %s)", name, strings.Join(on, " or "))
			return one(gAny)
		}
		v = next
	}
	return v
}
