package chattemplate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// refusal is one rule a template breaks, at a rune offset.
type refusal struct {
	off    int
	reason string
}

type binding struct {
	target string
	eval   func() kind
}

// state is the walk's view of a point in the template.
type state struct {
	defs    *defs   // names certainly bound by the template here (not read from the render context)
	fors    []*jFor // enclosing loops, innermost last
	inMacro bool
	scoped  map[string]string // loop variables: name -> the variable of the innermost loop that binds it
	guards  map[string]int    // data paths an enclosing {% if p is mapping %} guarantees: path -> offset of the if
}

// defs is a chain of scopes; a block's statements add to its own layer.
type defs struct {
	names  map[string]bool
	parent *defs
}

func (d *defs) has(name string) bool {
	for ; d != nil; d = d.parent {
		if d.names[name] {
			return true
		}
	}
	return false
}

func newState(inMacro bool) *state {
	return &state{defs: &defs{names: map[string]bool{}}, inMacro: inMacro, scoped: map[string]string{}}
}

// with returns the state of a nested block, with names bound on entry.
func (s *state) with(names ...string) *state {
	d := &defs{names: make(map[string]bool, len(names)), parent: s.defs}
	for _, n := range names {
		d.names[n] = true
	}
	return &state{defs: d, fors: s.fors, inMacro: s.inMacro, scoped: s.scoped, guards: s.guards}
}

// guard returns the state inside {% if test %} at off: paths the test
// asserts to be mappings ("p is mapping", alone or joined by "and").
func (s *state) guard(test jnode, off int) *state {
	var paths []string
	var conj func(n jnode)
	conj = func(n jnode) {
		switch n := n.(type) {
		case *jBin:
			if n.Op == "And" {
				conj(n.Left)
				conj(n.Right)
			}
		case *jTest:
			if n.Name == "mapping" && len(n.Args)+len(n.Kwargs) == 0 {
				if p := path(n.Node); p != "" {
					paths = append(paths, p)
				}
			}
		}
	}
	conj(test)
	if len(paths) == 0 {
		return s
	}
	out := *s
	out.guards = make(map[string]int, len(s.guards)+len(paths))
	for k, v := range s.guards {
		out.guards[k] = v
	}
	for _, p := range paths {
		out.guards[p] = off
	}
	return &out
}

// add records names a statement bound, for the statements after it.
func (s *state) add(names ...string) *state {
	for _, n := range names {
		s.defs.names[n] = true
	}
	return s
}

// unscope: names bound on entry to a block (call block and with targets)
// shadow loop variables of the same name.
func (s *state) unscope(names ...string) *state {
	out := *s
	out.scoped = make(map[string]string, len(s.scoped))
	for k, v := range s.scoped {
		out.scoped[k] = v
	}
	for _, n := range names {
		delete(out.scoped, n)
	}
	return &out
}

// loopScope returns the state inside loop f: its target names are f's own
// variables (a loop variable shadows every other binding of its name).
func (s *state) loopScope(f *jFor) *state {
	in := s.with(append(storeNames(f.Target), "loop")...)
	in.fors = append(append([]*jFor{}, s.fors...), f)
	in.scoped = make(map[string]string, len(s.scoped)+2)
	for k, v := range s.scoped {
		in.scoped[k] = v
	}
	for _, n := range storeNames(f.Target) {
		in.scoped[n] = fmt.Sprintf("for@%d/%s", f.at(), n)
	}
	return in
}

type analyzer struct {
	vars     map[string]kind
	bindings []binding
	deps     map[string]map[int]bool
	reads    map[string]bool
	ctx      map[*jName]bool // the name may be read from the render context here
	resolve  map[*jName]string
	bound    map[string]bool // names the template binds somewhere
	valued   map[string]bool // names the template binds other than by {% macro %}
	macros   map[string][]*jMacro
	escaped  map[string]bool  // macro names used as values
	stores   map[string][]int // where each name is bound, in source order
	evals    int
	refused  []refusal
	line     func(off int) int
}

// maxEvals bounds the fixpoint's work on hostile input.
const maxEvals = 4_000_000

var errTooComplex = fmt.Errorf("template too complex to analyse")

// checkTree applies every rule to a parsed template and returns the first
// refusal in source order, or nil.
func checkTree(t *jTemplate, line func(int) int) (*refusal, error) {
	a := &analyzer{line: line,
		vars: map[string]kind{}, deps: map[string]map[int]bool{}, ctx: map[*jName]bool{}, resolve: map[*jName]string{},
		bound: map[string]bool{}, valued: map[string]bool{}, macros: map[string][]*jMacro{}, escaped: map[string]bool{},
		stores: map[string][]int{},
	}
	a.prepass(t)
	for _, offs := range a.stores {
		sort.Ints(offs)
	}
	a.walk(t.Body, newState(false))
	a.escapes()
	if err := a.solve(); err != nil {
		return nil, err
	}
	a.check(t, nil)
	var first *refusal
	for i := range a.refused {
		if first == nil || a.refused[i].off < first.off {
			first = &a.refused[i]
		}
	}
	return first, nil
}

func (a *analyzer) refuse(off int, format string, args ...any) {
	a.refused = append(a.refused, refusal{off, fmt.Sprintf(format, args...)})
}

// prepass records every name the template binds and its macros.
func (a *analyzer) prepass(n jnode) {
	switch n := n.(type) {
	case *jName:
		if n.Ctx != "load" {
			a.bound[n.Name] = true
			a.valued[n.Name] = true
			a.stores[n.Name] = append(a.stores[n.Name], n.at())
		}
	case *jMacro:
		a.bound[n.Name] = true
		a.stores[n.Name] = append(a.stores[n.Name], n.at())
		a.macros[n.Name] = append(a.macros[n.Name], n)
	case *jImport:
		a.bound[n.Target] = true
		a.valued[n.Target] = true
	case *jFromImport:
		for _, nm := range n.Names {
			a.bound[nm[0]] = true
			a.valued[nm[0]] = true
			if nm[1] != "" {
				a.bound[nm[1]] = true
				a.valued[nm[1]] = true
			}
		}
	}
	for _, c := range children(n) {
		a.prepass(c)
	}
}

func (a *analyzer) bind(target string, eval func() kind) {
	a.bindings = append(a.bindings, binding{target, eval})
}

// bindName binds a variable: the name everywhere, and the loop variable it
// may shadow here.
func (a *analyzer) bindName(st *state, name string, eval func() kind) {
	a.bind(name, eval)
	if v, ok := st.scoped[name]; ok {
		a.bind(v, eval)
	}
}

func (a *analyzer) read(name string) kind {
	if a.reads != nil {
		a.reads[name] = true
	}
	return a.vars[name]
}

// solve runs the bindings to a fixpoint (a worklist over the names each
// binding read).
func (a *analyzer) solve() error {
	queue := make([]int, len(a.bindings))
	queued := make([]bool, len(a.bindings))
	for i := range queue {
		queue[i] = i
		queued[i] = true
	}
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		queued[i] = false
		a.evals++
		if a.evals > maxEvals {
			return errTooComplex
		}
		b := a.bindings[i]
		a.reads = map[string]bool{}
		k := b.eval()
		for r := range a.reads {
			if a.deps[r] == nil {
				a.deps[r] = map[int]bool{}
			}
			a.deps[r][i] = true
		}
		a.reads = nil
		old := a.vars[b.target]
		nk := join(old, k)
		if !equal(nk, old) {
			a.vars[b.target] = nk
			for j := range a.deps[b.target] {
				if !queued[j] {
					queued[j] = true
					queue = append(queue, j)
				}
			}
		} else if old.why == "" && nk.why != "" || old.bad == "" && nk.bad != "" {
			a.vars[b.target] = nk
		}
	}
	return nil
}

// ---- the collecting walk: bindings, and whether names read the context ----

func (a *analyzer) walk(body []jnode, st *state) {
	for _, n := range body {
		st = a.stmt(n, st)
	}
}

// stmt walks one statement and returns the state after it.
func (a *analyzer) stmt(n jnode, st *state) *state {
	switch n := n.(type) {
	case *jOutput:
		for _, x := range n.Nodes {
			a.expr(x, st)
		}
	case *jFor:
		a.expr(n.Iter, st)
		inner := st.loopScope(n)
		a.bindFor(n, n.Iter, inner)
		a.bind("$loopitems", func() kind { return a.elemOf(a.eval(n.Iter)) })
		a.bind("loop", func() kind { return flag(kLoop) })
		if n.Test != nil {
			a.expr(n.Test, inner)
		}
		a.walk(n.Body, inner)
		a.walk(n.Else, st.with())
	case *jIf:
		a.expr(n.Test, st)
		a.walk(n.Body, st.with().guard(n.Test, n.at()))
		for _, e := range n.Elif {
			a.stmt(e, st)
		}
		a.walk(n.Else, st.with())
	case *jMacro:
		a.bind(n.Name, func() kind { return flag(kObj) })
		params := []string{"varargs", "kwargs", "caller"}
		for _, p := range n.Args {
			params = append(params, p.Name)
		}
		for i, d := range n.Defaults {
			a.expr(d, st)
			p, d := n.Args[len(n.Args)-len(n.Defaults)+i].Name, d
			a.bind(p, func() kind { return a.eval(d) })
		}
		a.bind("caller", func() kind { return flag(kObj) })
		a.bind("varargs", func() kind { return container(kind{}) })
		a.bind("kwargs", func() kind { return container(kind{}) })
		inner := newState(true)
		a.walk(n.Body, inner.with(params...))
		return st.add(n.Name)
	case *jCallBlock:
		a.expr(n.Call, st)
		var params []string
		for _, p := range n.Args {
			params = append(params, p.Name)
			name := p.Name
			a.bind(name, func() kind { return a.read("$callerargs") })
		}
		for i, d := range n.Defaults {
			a.expr(d, st)
			p, d := n.Args[len(n.Args)-len(n.Defaults)+i].Name, d
			a.bind(p, func() kind { return a.eval(d) })
		}
		a.walk(n.Body, st.with(params...).unscope(params...))
	case *jGeneration:
		a.walk(n.Body, st.with())
	case *jFilterBlock:
		a.expr(n.Filter, st)
		a.walk(n.Body, st.with())
	case *jScope:
		a.expr(n.Option, st)
		a.walk(n.Body, st.with())
	case *jWith:
		var names []string
		for i, t := range n.Targets {
			v := n.Values[i]
			a.expr(v, st)
			a.bindTarget(st, t, func() kind { return a.eval(v) })
			names = append(names, storeNames(t)...)
		}
		a.walk(n.Body, st.with(names...).unscope(names...))
	case *jBlock:
		// a block renders with the template's context, not the enclosing
		// variables
		a.walk(n.Body, newState(false))
	case *jAssign:
		a.expr(n.Node, st)
		v := n.Node
		if ns, ok := n.Target.(*jNSRef); ok {
			a.bind("ns."+ns.Attr, func() kind { return a.eval(v) })
			return st
		}
		a.bindTarget(st, n.Target, func() kind { return a.eval(v) })
		return st.add(storeNames(n.Target)...)
	case *jAssignBlock:
		if n.Filter != nil {
			a.expr(n.Filter, st)
		}
		a.walk(n.Body, st.with())
		why := "the output of a {% set %} block"
		if ns, ok := n.Target.(*jNSRef); ok {
			a.bind("ns."+ns.Attr, func() kind { return computed(why) })
			return st
		}
		a.bindTarget(st, n.Target, func() kind { return computed(why) })
		return st.add(storeNames(n.Target)...)
	case *jExtends, *jInclude, *jImport, *jFromImport:
		// refused by check
	}
	return st
}

func storeNames(t jnode) []string {
	switch t := t.(type) {
	case *jName:
		return []string{t.Name}
	case *jTuple:
		var out []string
		for _, it := range t.Items {
			out = append(out, storeNames(it)...)
		}
		return out
	}
	return nil
}

// assignedIn reports whether the template binds name inside f's body.
func (a *analyzer) assignedIn(f *jFor, name string) bool {
	return a.assignedBetween(f.at(), f.End, name)
}

// assignedBetween reports whether the template binds name strictly between
// two offsets.
func (a *analyzer) assignedBetween(from, to int, name string) bool {
	offs := a.stores[name]
	i := sort.SearchInts(offs, from+1)
	return i < len(offs) && offs[i] < to
}

// bindTarget binds an assignment target: a name gets the value, a tuple's
// items get its elements.
func (a *analyzer) bindTarget(st *state, t jnode, k func() kind) {
	switch t := t.(type) {
	case *jName:
		a.bindName(st, t.Name, k)
	case *jTuple:
		for _, it := range t.Items {
			a.bindTarget(st, it, func() kind { return a.elemOf(k()) })
		}
	case *jNSRef:
		a.bind("ns."+t.Attr, k)
	}
}

// bindFor binds a loop's target to the elements of iter. A loop over a data
// mapping's keys (for k in p, p.keys(), p|list, p|sort; for k, v in
// p|dictsort, p|items, p.items()) makes k a key of p.
func (a *analyzer) bindFor(f *jFor, iter jnode, in *state) {
	elems := func(keyPath string) func() kind {
		return func() kind {
			ik := a.eval(iter)
			rest := ik
			rest.f &^= kData | kKey
			rest.keys = nil
			out := a.elemOf(rest)
			if ik.has(kData | kKey) {
				if keyPath != "" {
					out = join(out, kind{f: kKey, keys: []dataKey{{keyPath, f}}})
					out = join(out, a.read("$P"))
				} else {
					out = join(out, a.dataElem())
				}
			}
			return out
		}
	}
	switch t := f.Target.(type) {
	case *jName:
		p, plain := keysIterPath(iter)
		if plain {
			// for k in p: p may be a list or a string (p[k] then falls back
			// to getattr with an element the sender chose) unless an
			// enclosing {% if p is mapping %} says otherwise
			if g, ok := in.guards[p]; !ok || a.assignedBetween(g, f.at(), rootName(p)) {
				p = ""
			}
		}
		a.bindName(in, t.Name, elems(p))
	case *jTuple:
		all := func() kind { return a.elemOf(a.eval(iter)) }
		for i, it := range t.Items {
			if i == 0 && itemsIterPath(iter) != "" {
				p := itemsIterPath(iter)
				a.bindTarget(in, it, func() kind {
					ik := a.eval(iter)
					rest := ik
					rest.f &^= kData | kKey
					rest.keys = nil
					out := a.elemOf(a.elemOf(rest))
					if ik.has(kData | kKey) {
						out = join(join(out, kind{f: kKey, keys: []dataKey{{p, f}}}), a.read("$P"))
					}
					return out
				})
				continue
			}
			a.bindTarget(in, it, func() kind { return a.elemOf(all()) })
		}
	}
}

// path is the canonical text of a data path: a name followed by attributes
// and literal subscripts, or "".
func path(n jnode) string {
	switch n := n.(type) {
	case *jName:
		return n.Name
	case *jGetattr:
		if p := path(n.Node); p != "" {
			return p + "." + n.Attr
		}
	case *jGetitem:
		if c, ok := n.Arg.(*jConst); ok && (c.Kind == constStr || c.Kind == constInt) {
			if p := path(n.Node); p != "" {
				if c.Kind == constInt {
					return p + "[" + c.Str + "]"
				}
				return p + "[" + strconv.Quote(c.Str) + "]"
			}
		}
	}
	return ""
}

// keysIterPath: the data path whose keys a single loop variable iterates:
// p.keys() (a mapping, or the loop fails), or p, p|list and p|sort (plain:
// a mapping only under a guard).
func keysIterPath(iter jnode) (p string, plain bool) {
	switch n := iter.(type) {
	case *jFilter:
		if (n.Name == "list" || n.Name == "sort") && len(n.Args)+len(n.Kwargs) == 0 && n.DynArgs == nil && n.DynKwargs == nil {
			return path(n.Node), true
		}
		return "", false
	case *jCall:
		if g, ok := n.Node.(*jGetattr); ok && g.Attr == "keys" && len(n.Args)+len(n.Kwargs) == 0 && n.DynArgs == nil && n.DynKwargs == nil {
			return path(g.Node), false
		}
		return "", false
	}
	return path(iter), true
}

func itemsIterPath(iter jnode) string {
	switch n := iter.(type) {
	case *jFilter:
		if n.Name == "dictsort" || n.Name == "items" && len(n.Args)+len(n.Kwargs) == 0 {
			if n.DynArgs == nil && n.DynKwargs == nil {
				return path(n.Node)
			}
		}
	case *jCall:
		if g, ok := n.Node.(*jGetattr); ok && g.Attr == "items" && len(n.Args)+len(n.Kwargs) == 0 && n.DynArgs == nil && n.DynKwargs == nil {
			return path(g.Node)
		}
	}
	return ""
}

// pureMethods are the methods of str, dict, list and loop that do not change
// the object they belong to; a call of anything else may store its arguments
// in data the template later reads.
var pureMethods = map[string]bool{}

func init() {
	for _, m := range strings.Fields(`capitalize casefold center count encode endswith expandtabs find format
		format_map index isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric isprintable
		isspace istitle isupper join ljust lower lstrip partition removeprefix removesuffix replace rfind rindex
		rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title translate upper zfill
		get items keys values copy cycle changed escape unescape striptags`) {
		pureMethods[m] = true
	}
}

// methodName is the method a callee names: x.m, x['m'] or x|attr('m').
func methodName(callee jnode) (recv jnode, name string, ok bool) {
	switch c := callee.(type) {
	case *jGetattr:
		return c.Node, c.Attr, true
	case *jGetitem:
		if k, isConst := c.Arg.(*jConst); isConst && k.Kind == constStr {
			return c.Node, k.Str, true
		}
	case *jFilter:
		if c.Name == "attr" && len(c.Args) == 1 && len(c.Kwargs) == 0 && c.DynArgs == nil && c.DynKwargs == nil {
			if k, isConst := c.Args[0].(*jConst); isConst && k.Kind == constStr {
				return c.Node, k.Str, true
			}
		}
	}
	return nil, "", false
}

// expr walks an expression: it marks which names may come from the render
// context and records the bindings calls make.
func (a *analyzer) expr(n jnode, st *state) {
	switch n := n.(type) {
	case nil:
		return
	case *jName:
		a.name(n, st)
		if a.macros[n.Name] != nil {
			a.escaped[n.Name] = true
		}
		if n.Name == "caller" && st.inMacro {
			a.escaped["$caller"] = true
		}
		if n.Name == "loop" && len(st.fors) > 0 && st.fors[len(st.fors)-1].Recursive {
			a.escaped["$loop"] = true
			f := st.fors[len(st.fors)-1]
			a.bindRecursive(f, nil)
		}
		return
	case *jGetattr:
		if nm, ok := n.Node.(*jName); ok && (nm.Name == "loop" || nm.Name == "caller" || a.macros[nm.Name] != nil) {
			a.name(nm, st)
			return
		}
	case *jCall:
		a.call(n, st)
		return
	}
	for _, c := range children(n) {
		a.expr(c, st)
	}
}

func (a *analyzer) name(n *jName, st *state) {
	if n.Ctx == "load" {
		a.ctx[n] = !st.defs.has(n.Name)
		if v, ok := st.scoped[n.Name]; ok {
			a.resolve[n] = v
		}
	}
}

func (a *analyzer) call(c *jCall, st *state) {
	args := func() {
		for _, x := range c.Args {
			a.expr(x, st)
		}
		for _, k := range c.Kwargs {
			a.expr(k.Value, st)
		}
		a.expr(c.DynArgs, st)
		a.expr(c.DynKwargs, st)
	}
	if nm, ok := c.Node.(*jName); ok {
		a.name(nm, st)
		args()
		switch {
		case a.macros[nm.Name] != nil:
			for _, m := range a.macros[nm.Name] {
				a.bindMacroCall(c, m)
			}
			if a.valued[nm.Name] {
				a.bindPollution(c, nil)
			}
		case nm.Name == "caller" && st.inMacro:
			a.bind("$callerargs", func() kind { return a.argsKind(c) })
		case nm.Name == "loop" && len(st.fors) > 0 && st.fors[len(st.fors)-1].Recursive:
			a.bindRecursive(st.fors[len(st.fors)-1], c)
		case nm.Name == "namespace" && !a.bound["namespace"]:
			for _, k := range c.Kwargs {
				key, v := k.Key, k.Value
				a.bind("ns."+key, func() kind { return a.eval(v) })
			}
			for _, x := range append(append([]jnode{}, c.Args...), c.DynArgs, c.DynKwargs) {
				if x != nil {
					x := x
					a.bind("ns.*", func() kind { e := a.elemOf(a.eval(x)); return join(e, a.elemOf(e)) })
				}
			}
		case !a.bound[nm.Name] || nm.Name == "super":
			// a global the renderer provides
		default:
			a.bindPollution(c, nil)
		}
		return
	}
	a.expr(c.Node, st)
	args()
	if recv, m, ok := methodName(c.Node); ok {
		if _, isItem := c.Node.(*jGetitem); !isItem && pureMethods[m] {
			// x.m or x|attr('m') is the real method, unless x is a
			// namespace or an object whose attributes the template sets
			a.bindPollution(c, recv)
			return
		}
	}
	a.bindPollution(c, nil)
}

// argsKind joins everything a call passes.
func (a *analyzer) argsKind(c *jCall) kind {
	var k kind
	for _, x := range c.Args {
		k = join(k, a.eval(x))
	}
	for _, kw := range c.Kwargs {
		k = join(k, a.eval(kw.Value))
	}
	for _, d := range []jnode{c.DynArgs, c.DynKwargs} {
		if d != nil {
			k = join(k, a.elemOf(a.eval(d)))
		}
	}
	return k
}

// bindPollution: a call the analysis does not know may store its arguments
// (list.append, dict.update, a method taken as a value...) in any container
// the template reads later, so "$P" joins into every element read.
//
// With recv set, the call is a pure method of recv unless recv may be a
// namespace or template object.
func (a *analyzer) bindPollution(c *jCall, recv jnode) {
	a.bind("$P", func() kind {
		var k kind
		if recv != nil && !a.eval(recv).has(kNS|kObj|kLoop) {
			return k
		}
		add := func(x kind) {
			e := a.elemOf(x)
			k = join(join(join(k, x), e), a.elemOf(e))
		}
		for _, x := range c.Args {
			add(a.eval(x))
		}
		for _, kw := range c.Kwargs {
			k = join(k, strLit(kw.Key))
			add(a.eval(kw.Value))
		}
		for _, d := range []jnode{c.DynArgs, c.DynKwargs} {
			if d != nil {
				add(a.eval(d))
			}
		}
		return k
	})
}

func (a *analyzer) bindMacroCall(c *jCall, m *jMacro) {
	for i, x := range c.Args {
		x := x
		if i < len(m.Args) {
			a.bind(m.Args[i].Name, func() kind { return a.eval(x) })
		} else {
			a.bind("varargs", func() kind { return container(a.eval(x)) })
		}
	}
	for _, kw := range c.Kwargs {
		key, v := kw.Key, kw.Value
		found := false
		for _, p := range m.Args {
			if p.Name == key {
				a.bind(key, func() kind { return a.eval(v) })
				found = true
			}
		}
		if !found {
			a.bind("kwargs", func() kind { return container(join(strLit(key), a.eval(v))) })
		}
	}
	for _, d := range []jnode{c.DynArgs, c.DynKwargs} {
		if d == nil {
			continue
		}
		d := d
		for _, p := range m.Args {
			a.bind(p.Name, func() kind { e := a.elemOf(a.eval(d)); return join(e, a.elemOf(e)) })
		}
		a.bind("varargs", func() kind { return a.eval(d) })
		a.bind("kwargs", func() kind { return a.eval(d) })
	}
}

// bindRecursive: loop(x) in a recursive loop runs the body again over x; a
// loop object passed on (c == nil) may be called with anything.
func (a *analyzer) bindRecursive(f *jFor, c *jCall) {
	var iter func() kind
	if c == nil || len(c.Args) != 1 || len(c.Kwargs) > 0 || c.DynArgs != nil || c.DynKwargs != nil {
		iter = func() kind { return join(a.read("$P"), computed("an argument of a recursive loop call")) }
	} else {
		x := c.Args[0]
		iter = func() kind { return a.eval(x) }
	}
	for _, name := range storeNames(f.Target) {
		ev := func() kind { k := a.elemOf(iter()); return join(k, a.elemOf(k)) }
		a.bind(name, ev)
		a.bind(fmt.Sprintf("for@%d/%s", f.at(), name), ev)
	}
}

// escapes: a macro, caller or recursive loop used as a value may be called
// by anything; its parameters get whatever unknown calls pass.
func (a *analyzer) escapes() {
	for name := range a.escaped {
		switch name {
		case "$caller":
			a.bind("$callerargs", func() kind { return a.read("$P") })
		case "$loop":
		default:
			for _, m := range a.macros[name] {
				for _, p := range m.Args {
					a.bind(p.Name, func() kind { return a.read("$P") })
				}
				a.bind("varargs", func() kind { return container(a.read("$P")) })
				a.bind("kwargs", func() kind { return container(a.read("$P")) })
			}
		}
	}
}
