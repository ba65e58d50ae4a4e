package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// loader walks yaml.v3 nodes and collects diagnostics; it never stops at the
// first error.
type loader struct {
	file  string // as given by the caller, used in diagnostics
	dir   string // absolute directory of the policy file
	diags []Diagnostic
	// lint holds what only Lint reports (exception expiry, at now).
	lint []Diagnostic
	now  time.Time
	// rules in file order, for the exceptions' checks.
	rules []*Rule

	// For shadowed-rule detection: pattern -> rule that has it first, and
	// the first rule with a "**" pattern (it matches everything after it).
	patterns map[string]string
	catchAll string

	// regoFiles are the Rego module files rules read, for the revision
	// and the watch.
	regoFiles []trustFile
}

func (l *loader) errAt(n *yaml.Node, fix, format string, args ...any) {
	d := Diagnostic{File: l.file, Message: fmt.Sprintf(format, args...), Fix: fix}
	if n != nil {
		d.Line, d.Col = n.Line, n.Column
	}
	l.diags = append(l.diags, d)
}

func (l *loader) errPos(line, col int, fix, format string, args ...any) {
	l.diags = append(l.diags, Diagnostic{File: l.file, Line: line, Col: col, Message: fmt.Sprintf(format, args...), Fix: fix})
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return "a " + strings.TrimPrefix(n.Tag, "!!")
	}
	return "an unsupported YAML node"
}

// field is one key/value pair of a mapping.
type field struct {
	key, val *yaml.Node
}

// mapping checks that n is a mapping, reports duplicate and unknown keys and
// returns the fields by key. allowed lists the accepted keys in the order the
// documentation shows them.
func (l *loader) mapping(n *yaml.Node, what string, allowed ...string) (map[string]field, bool) {
	n = resolve(n)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, fmt.Sprintf("write %s as a mapping of %s", what, strings.Join(allowed, ", ")),
			"%s must be a mapping, got %s", what, kindName(n))
		return nil, false
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			l.errAt(k, "use plain string keys", "%s: keys must be strings", what)
			continue
		}
		if prev, dup := out[k.Value]; dup {
			l.errAt(k, fmt.Sprintf("remove one of the two; the first is at line %d", prev.key.Line),
				"%s: duplicate key %q", what, k.Value)
			continue
		}
		if !contains(allowed, k.Value) {
			fix := "allowed keys: " + strings.Join(allowed, ", ")
			if s := closest(k.Value, allowed); s != "" {
				fix = fmt.Sprintf("did you mean %q? %s", s, fix)
			}
			l.errAt(k, fix, "%s: unknown key %q", what, k.Value)
			continue
		}
		out[k.Value] = field{key: k, val: resolve(v)}
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// closest returns the allowed key within edit distance 2 of s (case folded).
func closest(s string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(strings.ToLower(s), strings.ToLower(a)); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			c = min(c, prev[j]+1, cur[j-1]+1)
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str reads a non-empty string scalar.
func (l *loader) str(f field, what, fix string) (string, bool) {
	n := f.val
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		if n == nil {
			n = f.key
		}
		l.errAt(n, fix, "%s must be a string, got %s", what, kindName(n))
		return "", false
	}
	if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
		l.errAt(n, fix+"; quote the value", "%s must be a string, got %s", what, kindName(n))
		return "", false
	}
	if strings.TrimSpace(n.Value) == "" {
		l.errAt(n, fix, "%s must not be empty", what)
		return "", false
	}
	return n.Value, true
}

// boolean reads a true/false scalar.
func (l *loader) boolean(f field, what string) (bool, bool) {
	n := f.val
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		l.errAt(n, "write true or false", "%s must be true or false, got %s", what, kindName(n))
		return false, false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		l.errAt(n, "write true or false", "%s: %v", what, err)
		return false, false
	}
	return b, true
}

// items reads a list whose entries are read one by one (strings or
// mappings): an error for another node kind (nil, false), an error for an
// empty list when emptyFix is set; the entries come resolved.
func (l *loader) items(f field, what, fix, emptyFix string) ([]*yaml.Node, bool) {
	if f.val.Kind != yaml.SequenceNode {
		l.errAt(f.val, fix, "%s must be a list, got %s", what, kindName(f.val))
		return nil, false
	}
	if len(f.val.Content) == 0 && emptyFix != "" {
		l.errAt(f.val, emptyFix, "%s is empty", what)
	}
	out := make([]*yaml.Node, len(f.val.Content))
	for i, it := range f.val.Content {
		out[i] = resolve(it)
	}
	return out, true
}

// strList reads a list of non-empty strings and reports duplicates.
func (l *loader) strList(f field, what, fix string) ([]string, []*yaml.Node, bool) {
	n := f.val
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, fix, "%s must be a list, got %s", what, kindName(n))
		return nil, nil, false
	}
	var out []string
	var nodes []*yaml.Node
	ok := true
	seen := map[string]int{}
	for i, it := range n.Content {
		it = resolve(it)
		s, good := l.str(field{key: f.key, val: it}, fmt.Sprintf("%s[%d]", what, i), fix)
		if !good {
			ok = false
			continue
		}
		if line, dup := seen[s]; dup {
			l.errAt(it, "remove the duplicate", "%s: %q is listed twice (first at line %d)", what, s, line)
			ok = false
			continue
		}
		seen[s] = it.Line
		out = append(out, s)
		nodes = append(nodes, it)
	}
	return out, nodes, ok
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// name reads the required name of a rule, key or exception (fs its
// fields, at the mapping, what how it is named so far): missing, not a
// string or not a valid name are reported (missingFix says what to add).
// ok is false only when there is no string to use.
func (l *loader) name(fs map[string]field, at *yaml.Node, what, missingFix string) (name string, nf field, ok bool) {
	nf, has := fs["name"]
	if !has {
		l.errAt(at, missingFix, "%s: name is required", what)
		return "", nf, false
	}
	name, ok = l.str(nf, what+".name", nameFix)
	if ok && !nameRE.MatchString(name) {
		l.errAt(nf.val, nameFix, "%s.name %q is not a valid name", what, name)
	}
	return name, nf, ok
}
