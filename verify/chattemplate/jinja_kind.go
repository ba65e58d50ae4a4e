package chattemplate

import (
	"slices"
	"strings"
)

// kind is what the analysis knows about the values an expression may have
// when it is used as a name (an attribute or item name). It is a set: flags
// are joined (any of them may hold).
type kind struct {
	f     kflags
	elem  *kind     // the contents of a kNonStr container (list, tuple, dict, range)
	keys  []dataKey // for kKey
	why   string    // for kComputed: how it was computed (the first way found)
	bad   string    // for kStrBad: a literal that is not a safe name
	depth int       // nesting of elem, bounded by maxElemDepth
}

type kflags uint16

const (
	kNonStr     kflags = 1 << iota // a number, bool, None or container: never a string
	kData                          // render-time data: the renderer's variables and what is read from them
	kKey                           // a key of a data mapping, from a loop over it (see keys)
	kNS                            // a namespace() object
	kLoop                          // the loop object
	kObj                           // a macro, caller, cycler or joiner: its attributes are the template's
	kComputed                      // a string the template may have built from pieces
	kStrOK                         // a string literal that does not start with "_"
	kStrBad                        // a string literal that is not a safe name (see unsafeName)
	kFormat                        // str.format or str.format_map of a string the template does not fix
	kUnderscore                    // with kStrOK/kStrBad: some literal contains "_"
)

// dataKey says: the loop variable iterates the keys of the data at path
// (its canonical source text), in that loop.
type dataKey struct {
	path string
	loop *jFor
}

const (
	maxElemDepth = 4
	maxKeys      = 16
)

func flag(f kflags) kind { return kind{f: f} }

func computed(why string) kind { return kind{f: kComputed, why: why} }

func (k kind) has(f kflags) bool { return k.f&f != 0 }

func container(elem kind) kind {
	if elem.depth >= maxElemDepth {
		return computed("a value nested too deeply to follow")
	}
	e := elem
	return kind{f: kNonStr, elem: &e, depth: elem.depth + 1}
}

func join(a, b kind) kind {
	if a.f == 0 && a.elem == nil {
		return b
	}
	if b.f == 0 && b.elem == nil {
		return a
	}
	out := kind{f: a.f | b.f, why: a.why, bad: a.bad, depth: max(a.depth, b.depth)}
	if out.why == "" {
		out.why = b.why
	}
	if out.bad == "" {
		out.bad = b.bad
	}
	switch {
	case a.elem == nil:
		out.elem = b.elem
	case b.elem == nil:
		out.elem = a.elem
	default:
		e := join(*a.elem, *b.elem)
		out.elem = &e
	}
	out.keys = a.keys
	for _, k := range b.keys {
		if !slices.Contains(out.keys, k) {
			if len(out.keys) >= maxKeys {
				out.f |= kData
				break
			}
			out.keys = append(slices.Clip(out.keys), k)
		}
	}
	return out
}

// equal compares what matters for the fixpoint (not the explanations).
func equal(a, b kind) bool {
	if a.f != b.f || len(a.keys) != len(b.keys) || (a.elem == nil) != (b.elem == nil) {
		return false
	}
	for _, k := range a.keys {
		if !slices.Contains(b.keys, k) {
			return false
		}
	}
	return a.elem == nil || equal(*a.elem, *b.elem)
}

func strLit(s string) kind {
	k := flag(kStrOK)
	if unsafeName(s) != "" {
		k = kind{f: kStrBad, bad: s}
	}
	if strings.Contains(s, "_") {
		k.f |= kUnderscore
	}
	return k
}

// chars is what indexing or iterating string literals of kind k yields:
// single characters, "_" only if some literal has one.
func chars(k kind) kind {
	if k.has(kUnderscore) {
		return kind{f: kStrBad | kUnderscore, bad: "_"}
	}
	return flag(kStrOK)
}
