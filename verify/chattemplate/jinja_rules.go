package chattemplate

import (
	"fmt"
	"strings"
)

// ---- evaluation: what an expression may be, when used as a name ----

func (a *analyzer) dataElem() kind { return join(flag(kData), a.read("$P")) }

// elemOf is what iterating a value of kind k yields.
func (a *analyzer) elemOf(k kind) kind {
	var out kind
	if k.has(kData | kKey) {
		out = join(out, a.dataElem())
	}
	if k.has(kNonStr) {
		if k.elem != nil {
			out = join(join(out, *k.elem), a.read("$P"))
		} else {
			out = join(out, flag(kNonStr))
		}
	}
	if k.has(kStrOK | kStrBad) {
		out = join(out, chars(k))
	}
	if k.has(kComputed) {
		out = join(out, computed(k.why))
	}
	if k.has(kNS | kLoop | kObj) {
		out = join(out, computed("the contents of a template object"))
	}
	return out
}

// itemOf is what x.name or x[name] yields for x of kind r; lit is the name
// when it is a literal.
func (a *analyzer) itemOf(r kind, lit string, isLit bool) kind {
	var out kind
	if isLit && isFormat(lit) && r.has(kData|kKey|kStrOK|kStrBad|kComputed) {
		out = flag(kFormat)
	}
	if r.has(kData | kKey) {
		out = join(out, a.dataElem())
	}
	if r.has(kNonStr) {
		out = join(out, flag(kNonStr))
		if r.elem != nil {
			out = join(join(out, *r.elem), a.read("$P"))
		}
	}
	if r.has(kStrOK | kStrBad) {
		if isLit {
			out = join(out, computed("a method of a string literal"))
		} else {
			out = join(out, chars(r))
		}
	}
	if r.has(kComputed) {
		out = join(out, computed(r.why))
	}
	if r.has(kNS) {
		if isLit {
			out = join(join(out, a.read("ns."+lit)), a.read("ns.*"))
		} else {
			out = join(out, computed("a namespace attribute chosen at render time"))
		}
	}
	if r.has(kLoop) {
		switch {
		case !isLit:
			out = join(out, computed("a loop attribute chosen at render time"))
		case lit == "previtem" || lit == "nextitem":
			out = join(out, a.read("$loopitems"))
		case lit == "cycle" || lit == "changed":
			out = join(out, flag(kObj))
		case loopAttrs[lit]:
			out = join(out, flag(kNonStr))
		default:
			out = join(out, computed("an attribute of the loop object"))
		}
	}
	if r.has(kObj) {
		out = join(out, computed("an attribute of a macro or template object"))
	}
	return out
}

var loopAttrs = map[string]bool{"index": true, "index0": true, "revindex": true, "revindex0": true,
	"first": true, "last": true, "length": true, "depth": true, "depth0": true}

func (a *analyzer) eval(n jnode) kind {
	switch n := n.(type) {
	case nil:
		return flag(kNonStr)
	case *jName:
		v, ok := a.resolve[n]
		if !ok {
			v = n.Name
		}
		k := a.read(v)
		if k.has(kComputed) && !strings.Contains(k.why, "variable") {
			k.why += fmt.Sprintf(", through the variable %q", n.Name)
		}
		if a.ctx[n] {
			if n.Name == "self" && !a.bound["self"] {
				k = join(k, flag(kObj))
			} else {
				k = join(k, flag(kData))
			}
		}
		return k
	case *jConst:
		if n.Kind == constStr {
			return strLit(n.Str)
		}
		return flag(kNonStr)
	case *jTuple:
		return a.seq(n.Items)
	case *jList:
		return a.seq(n.Items)
	case *jDict:
		var e kind
		for _, p := range n.Items {
			e = join(join(e, a.eval(p.Key)), a.eval(p.Value))
		}
		return container(e)
	case *jCondExpr:
		return join(a.eval(n.Expr1), a.eval(n.Expr2))
	case *jBin:
		l, r := a.eval(n.Left), a.eval(n.Right)
		switch n.Op {
		case "And", "Or":
			return join(l, r)
		case "Add", "Mul":
			op := map[string]string{"Add": "+", "Mul": "*"}[n.Op]
			if l.has(kStrOK|kStrBad|kComputed) || r.has(kStrOK|kStrBad|kComputed) {
				return computed(fmt.Sprintf("string operations (%q)", op))
			}
			k := join(l, r)
			if k.has(kKey) {
				k.f = k.f&^kKey | kData
				k.keys = nil
			}
			if k.has(kNS | kLoop | kObj) {
				k = join(k, computed("an operation on a template object"))
			}
			return k
		case "Mod":
			switch {
			case l.has(kStrOK | kStrBad | kComputed):
				return computed(`string formatting ("%")`)
			case l.has(kData|kKey) && r.has(kStrOK|kStrBad|kComputed):
				return computed(`string formatting ("%")`)
			case l.has(kData | kKey):
				return flag(kData)
			}
			return flag(kNonStr)
		}
		return flag(kNonStr) // Sub Div FloorDiv Pow: numbers only
	case *jUnary, *jCompare, *jTest, *jSlice:
		return flag(kNonStr)
	case *jConcat:
		return computed(`string operations ("~")`)
	case *jGetattr:
		return a.itemOf(a.eval(n.Node), n.Attr, true)
	case *jGetitem:
		r := a.eval(n.Node)
		if _, ok := n.Arg.(*jSlice); ok {
			var out kind
			if r.has(kData | kKey) {
				out = join(out, a.dataElem())
			}
			if r.has(kNonStr) {
				part := r // a slice of a list or tuple holds its elements
				part.f &^= kData | kKey | kStrOK | kStrBad | kUnderscore | kComputed | kNS | kLoop | kObj | kFormat
				part.keys = nil
				out = join(out, part)
			}
			if r.has(kStrOK | kStrBad | kComputed | kNS | kLoop | kObj) {
				out = join(out, computed("a slice of a string"))
			}
			return out
		}
		if c, ok := n.Arg.(*jConst); ok && c.Kind == constStr {
			return a.itemOf(r, c.Str, true)
		}
		return a.itemOf(r, "", false)
	case *jCall:
		return a.callKind(n)
	case *jFilter:
		return a.filterKind(n)
	}
	return computed("an expression")
}

func (a *analyzer) seq(items []jnode) kind {
	var e kind
	for _, it := range items {
		e = join(e, a.eval(it))
	}
	return container(e)
}

func (a *analyzer) callKind(c *jCall) kind {
	if nm, ok := c.Node.(*jName); ok {
		switch {
		case a.macros[nm.Name] != nil && !a.valued[nm.Name]:
			return computed(fmt.Sprintf("the output of the macro %q", nm.Name))
		case a.bound[nm.Name]:
			return computed(fmt.Sprintf("a call of %q", nm.Name))
		case nm.Name == "range":
			return container(flag(kNonStr))
		case nm.Name == "namespace":
			return flag(kNS)
		case nm.Name == "cycler" || nm.Name == "joiner":
			return flag(kObj)
		}
		return computed(fmt.Sprintf("a call of %q", nm.Name))
	}
	if recv, m, ok := methodName(c.Node); ok {
		r := a.eval(recv)
		if r.has(kNS|kObj|kLoop|kComputed|kStrOK|kStrBad) || !r.has(kData|kKey|kNonStr) {
			return computed(fmt.Sprintf("the method %q", m))
		}
		var out kind
		switch m {
		case "get", "pop", "items", "keys", "values", "copy":
		default:
			return computed(fmt.Sprintf("the method %q", m))
		}
		if r.has(kData | kKey) {
			out = a.dataElem() // for data, what it holds is data
		}
		if r.has(kNonStr) {
			switch m {
			case "get", "pop":
				out = join(out, a.itemOf(kind{f: kNonStr, elem: r.elem}, "", false))
			case "items":
				out = join(out, container(container(a.elemOf(kind{f: kNonStr, elem: r.elem}))))
			default:
				out = join(out, container(a.elemOf(kind{f: kNonStr, elem: r.elem})))
			}
		}
		if m == "get" && len(c.Args) > 1 {
			out = join(out, a.eval(c.Args[1]))
		}
		return out
	}
	return computed("a call")
}

// filterKind: filters that select or reorder keep what their input is;
// filters that count give numbers; every other filter makes a new string.
func (a *analyzer) filterKind(f *jFilter) kind {
	in := a.eval(f.Node)
	arg := func(i int) kind {
		if i < len(f.Args) {
			return a.eval(f.Args[i])
		}
		return kind{}
	}
	keep := func() kind {
		var out kind
		if in.has(kData | kKey) {
			out = join(out, a.dataElem())
		}
		if in.has(kNonStr) {
			out = join(out, container(a.elemOf(kind{f: kNonStr, elem: in.elem})))
		}
		if in.has(kStrOK | kStrBad | kComputed | kNS | kLoop | kObj) {
			out = join(out, computed(fmt.Sprintf("the filter %q", f.Name)))
		}
		return out
	}
	switch f.Name {
	case "length", "count", "int", "float", "abs", "round", "wordcount":
		return flag(kNonStr)
	case "sum":
		// numbers, or lists joined: the elements of the elements, and of start
		e := a.elemOf(a.elemOf(in))
		if len(f.Args) > 1 {
			e = join(e, a.elemOf(arg(1)))
		}
		for _, kw := range f.Kwargs {
			if kw.Key == "start" {
				e = join(e, a.elemOf(a.eval(kw.Value)))
			}
		}
		if f.DynArgs != nil || f.DynKwargs != nil {
			e = join(e, computed(`the filter "sum" with unpacked arguments`))
		}
		return join(flag(kNonStr), container(e))
	case "first", "last", "random", "min", "max":
		return a.elemOf(in)
	case "list", "sort", "reverse", "unique", "select", "reject", "selectattr", "rejectattr":
		return keep()
	case "dictsort", "items":
		k := keep()
		if k.has(kNonStr) {
			k = join(k, container(container(a.elemOf(in))))
		}
		return k
	case "batch", "slice", "groupby":
		if in.has(kData|kKey) && !in.has(kStrOK|kStrBad|kComputed|kNS|kLoop|kObj|kNonStr) {
			return a.dataElem()
		}
		return computed(fmt.Sprintf("the filter %q", f.Name))
	case "map":
		for _, kw := range f.Kwargs {
			if kw.Key == "attribute" && len(f.Args) == 0 && in.has(kData) && !in.has(kNonStr|kStrOK|kStrBad|kComputed|kNS|kLoop|kObj) {
				return a.dataElem()
			}
		}
		return computed(`the filter "map"`)
	case "default", "d":
		if len(f.Args) == 0 {
			return join(in, flag(kStrOK))
		}
		return join(in, arg(0))
	case "attr":
		if len(f.Args) == 1 {
			if c, ok := f.Args[0].(*jConst); ok && c.Kind == constStr {
				return a.itemOf(in, c.Str, true)
			}
		}
		return computed(`the filter "attr"`)
	}
	return computed(fmt.Sprintf("the filter %q", f.Name))
}

// ---- the rules ----

// check walks the tree and records every refusal; fors are the enclosing
// loops.
func (a *analyzer) check(n jnode, fors []*jFor) {
	switch n := n.(type) {
	case *jExtends:
		a.refuse(n.at(), `"extends" loads another template`)
	case *jInclude:
		a.refuse(n.at(), `"include" loads another template`)
	case *jImport:
		a.refuse(n.at(), `"import" loads another template`)
	case *jFromImport:
		a.refuse(n.at(), `"from ... import" loads another template`)
	case *jConst:
		if n.Kind == constStr {
			if d := dunder(n.Str); d != "" {
				a.refuse(n.at(), "string literal %s contains the dunder name %q (reaches Python internals)", quoteShort(n.Str), d)
			}
		}
	case *jGetattr:
		if why := unsafeName(n.Attr); why != "" {
			a.refuse(n.at(), "attribute %q %s", n.Attr, why)
		}
	case *jNSRef:
		if why := unsafeName(n.Attr); why != "" {
			a.refuse(n.at(), "attribute %q %s", n.Attr, why)
		}
	case *jGetitem:
		a.checkItem(n, fors)
	case *jFilter:
		a.checkFilter(n.Name, n.Args, n.Kwargs, n.DynArgs, n.DynKwargs, n.at())
	case *jCall:
		if recv, m, ok := methodName(n.Node); ok && isFormat(m) {
			a.checkFormat(recv, m, n.at())
		} else if a.eval(n.Node).has(kFormat) {
			a.refuse(n.at(), "str.format of a string the template does not fix, called through a variable: it reaches attributes through its format string")
		}
		a.check(n.Node, fors)
		for _, c := range children(n)[1:] {
			a.check(c, fors)
		}
		return
	case *jFor:
		inner := append(append([]*jFor{}, fors...), n)
		a.check(n.Target, fors)
		a.check(n.Iter, fors)
		if n.Test != nil {
			a.check(n.Test, inner)
		}
		for _, b := range n.Body {
			a.check(b, inner)
		}
		for _, b := range n.Else {
			a.check(b, fors)
		}
		return
	case *jMacro, *jBlock:
		// their bodies run outside the enclosing loops
		fors = nil
	}
	for _, c := range children(n) {
		a.check(c, fors)
	}
}

func isFormat(m string) bool { return m == "format" || m == "format_map" }

func (a *analyzer) checkItem(g *jGetitem, fors []*jFor) {
	switch arg := g.Arg.(type) {
	case *jSlice, *jTuple:
		return // never a string
	case *jConst:
		if arg.Kind != constStr {
			return
		}
		if why := unsafeName(arg.Str); why != "" {
			a.refuse(g.at(), "item name %s %s", quoteShort(arg.Str), why)
		}
		return
	}
	a.checkName(a.eval(g.Arg), g.Node, g.at(), "item name", fors)
}

// checkName applies the rules for a name that is not written as a literal.
func (a *analyzer) checkName(k kind, recv jnode, off int, what string, fors []*jFor) {
	switch {
	case k.has(kStrBad):
		a.refuse(off, "%s %s (a literal the template assigns) %s", what, quoteShort(k.bad), unsafeName(k.bad))
	case k.has(kComputed):
		sep := ""
		if strings.Contains(k.why, "through") {
			sep = ","
		}
		a.refuse(off, "%s computed by %s%s instead of a literal", what, k.why, sep)
	case k.has(kData):
		a.refuse(off, "%s read from render-time data, which whoever sends messages controls; write it as a literal, "+
			"an integer, or a key of the mapping the loop iterates (p|items, p|dictsort, p.items(), p.keys(), "+
			"or for k in p inside {%% if p is mapping %%})", what)
	case k.has(kKey):
		p := ""
		if recv != nil {
			p = path(recv)
		}
		for _, key := range k.keys {
			var why string
			switch {
			case p == "" || key.path != p:
				why = "indexes " + describePath(p)
			case !containsFor(fors, key.loop):
				why = "is used outside that loop"
			case a.assignedIn(key.loop, rootName(p)):
				why = "the loop reassigns " + rootName(p)
			default:
				continue
			}
			a.refuse(off, "%s is a key of %s (from the loop at line %d) but %s", what, key.path, a.line(key.loop.at()), why)
			return
		}
	}
}

func describePath(p string) string {
	if p == "" {
		return "another value"
	}
	return p
}

func containsFor(fors []*jFor, f *jFor) bool {
	for _, x := range fors {
		if x == f {
			return true
		}
	}
	return false
}

func rootName(p string) string {
	if i := strings.IndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return p
}

// attribute-name arguments of jinja2's filters: the positional index and the
// keyword (make_attrgetter splits them on "." and looks each part up).
var attrFilterArg = map[string]int{
	"sort": 2, "unique": 1, "min": 1, "max": 1, "sum": 0, "join": 1, "groupby": 0,
	"selectattr": 0, "rejectattr": 0, "map": -1,
}

func (a *analyzer) checkFilter(name string, args []jnode, kwargs []*jKeyword, dynArgs, dynKwargs jnode, off int) {
	switch name {
	case "attr":
		if dynArgs != nil || dynKwargs != nil {
			a.refuse(off, `arguments of the "attr" filter unpacked with * or **: the attribute name cannot be checked`)
			return
		}
		var nameArg jnode
		if len(args) > 0 {
			nameArg = args[0]
		}
		for _, kw := range kwargs {
			if kw.Key == "name" {
				nameArg = kw.Value
			}
		}
		if nameArg == nil {
			return
		}
		if c, ok := nameArg.(*jConst); ok {
			if c.Kind != constStr {
				return
			}
			if why := unsafeName(c.Str); why != "" {
				a.refuse(off, `"attr" filter name %s %s`, quoteShort(c.Str), why)
			}
			return
		}
		k := a.eval(nameArg)
		if k.has(kKey) {
			k.f |= kData // getattr with a data key is an attribute the sender chose
		}
		a.checkName(k, nil, off, `"attr" filter name`, nil)
		return
	case "map", "select", "reject":
		if dynArgs != nil || dynKwargs != nil {
			a.refuse(off, "arguments of the %q filter unpacked with * or **: the attribute name cannot be checked", name)
			return
		}
		if name == "map" {
			for _, kw := range kwargs {
				if kw.Key == "attribute" {
					a.checkAttrPath(name, kw.Value, off)
					return
				}
			}
		}
		if len(args) == 0 {
			return
		}
		c, ok := args[0].(*jConst)
		if !ok || c.Kind != constStr {
			a.refuse(off, "the %s applied by the %q filter is not named by a literal", map[bool]string{true: "filter", false: "test"}[name == "map"], name)
			return
		}
		if name == "map" {
			a.checkFilter(c.Str, args[1:], kwargs, nil, nil, off)
		}
		return
	}
	i, ok := attrFilterArg[name]
	if !ok {
		return
	}
	if dynArgs != nil || dynKwargs != nil {
		a.refuse(off, "arguments of the %q filter unpacked with * or **: the attribute name cannot be checked", name)
		return
	}
	if i >= 0 && i < len(args) {
		a.checkAttrPath(name, args[i], off)
	}
	for _, kw := range kwargs {
		if kw.Key == "attribute" {
			a.checkAttrPath(name, kw.Value, off)
		}
	}
}

// checkAttrPath: jinja2 looks up each "."-separated part of a filter's
// attribute argument (sort, through make_multi_attrgetter, first splits it
// on ","); it must be a literal whose parts do not start with "_".
func (a *analyzer) checkAttrPath(filter string, arg jnode, off int) {
	if c, ok := arg.(*jConst); ok {
		if c.Kind != constStr {
			return
		}
		for _, part := range strings.FieldsFunc(c.Str, func(r rune) bool { return r == '.' || r == ',' }) {
			if why := unsafeName(part); why != "" {
				a.refuse(off, "attribute %s of the %q filter: %q %s", quoteShort(c.Str), filter, part, why)
				return
			}
		}
		return
	}
	k := a.eval(arg)
	if k.f&^kNonStr == 0 {
		return
	}
	a.refuse(off, "attribute of the %q filter is not written as a literal", filter)
}

// checkFormat: str.format and str.format_map read attributes named in their
// format string ("{0.__class__}"), so the string must be a literal and its
// fields must not name an attribute that starts with "_".
func (a *analyzer) checkFormat(recv jnode, m string, off int) {
	c, ok := recv.(*jConst)
	if !ok || c.Kind != constStr {
		a.refuse(off, "str.%s called on a string that is not a literal: it reaches attributes through its format string", m)
		return
	}
	if attr, ok := formatAttrs(c.Str); !ok {
		a.refuse(off, "str.%s with a format string pullgate cannot parse", m)
	} else if attr != "" {
		a.refuse(off, "str.%s format string reaches attribute %q, which %s", m, attr, unsafeName(attr))
	}
}

// formatAttrs parses a Python format string and returns the first attribute
// part of a field name that is not a safe name (or ""); ok is false when the
// string does not parse.
func formatAttrs(s string) (bad string, ok bool) {
	rs := []rune(s)
	var field func(i int, depth int) (int, string, bool)
	// field parses a replacement field starting after its "{" and returns the
	// index after its "}".
	field = func(i int, depth int) (int, string, bool) {
		if depth > 2 {
			return 0, "", false
		}
		// field name: up to "!" or ":" or "}" outside brackets
		start := i
		for i < len(rs) && rs[i] != '!' && rs[i] != ':' && rs[i] != '}' {
			if rs[i] == '[' {
				for i < len(rs) && rs[i] != ']' {
					i++
				}
				if i >= len(rs) {
					return 0, "", false
				}
			}
			if rs[i] == '{' {
				return 0, "", false
			}
			i++
		}
		name := rs[start:i]
		found := ""
		for k := 0; k < len(name); k++ {
			if name[k] == '[' {
				for k < len(name) && name[k] != ']' {
					k++
				}
				continue
			}
			if name[k] == '.' && found == "" {
				e := k + 1
				for e < len(name) && name[e] != '.' && name[e] != '[' {
					e++
				}
				if attr := string(name[k+1 : e]); unsafeName(attr) != "" {
					found = attr
				}
			}
		}
		if i < len(rs) && rs[i] == '!' {
			i += 2
		}
		if i < len(rs) && rs[i] == ':' {
			i++
			for i < len(rs) && rs[i] != '}' {
				if rs[i] == '{' {
					var f string
					var ok bool
					i, f, ok = field(i+1, depth+1)
					if !ok {
						return 0, "", false
					}
					if found == "" {
						found = f
					}
					continue
				}
				i++
			}
		}
		if i >= len(rs) || rs[i] != '}' {
			return 0, "", false
		}
		return i + 1, found, true
	}
	for i := 0; i < len(rs); {
		switch {
		case rs[i] == '{' && i+1 < len(rs) && rs[i+1] == '{', rs[i] == '}' && i+1 < len(rs) && rs[i+1] == '}':
			i += 2
		case rs[i] == '{':
			j, f, ok := field(i+1, 0)
			if !ok {
				return "", false
			}
			if bad == "" {
				bad = f
			}
			i = j
		case rs[i] == '}':
			return "", false
		default:
			i++
		}
	}
	return bad, true
}

// dunder returns the first dunder name (__x__) in s, or "".
func dunder(s string) string {
	isW := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	for i := 0; i < len(s); {
		if !isW(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isW(s[j]) {
			j++
		}
		if w := s[i:j]; len(w) > 4 && strings.HasPrefix(w, "__") && strings.HasSuffix(w, "__") && strings.Trim(w, "_") != "" {
			return w
		}
		i = j
	}
	return ""
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}
