package policy

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// regoRole names a rule's i-th module file in the revision.
func regoRole(rule string, i int) string { return fmt.Sprintf("rego:%s:%d", rule, i) }

// parseRego reads a rule's rego section, {module: <file> | modules: [...],
// query: <ref>}, reads the module files (relative to the policy file) and
// compiles them. Module compile errors are reported at their position in
// the module file; other problems at the YAML node.
func (l *loader) parseRego(f field, what, ruleName string) *RegoRule {
	what += ".rego"
	fs, ok := l.mapping(f.val, what, "module", "modules", "query")
	if !ok {
		return nil
	}
	const fixMods = "write module: ./policies/<name>.rego (relative to the policy file) or modules: [a.rego, b.rego]"
	var paths []string
	var nodes []*yaml.Node
	mf, hasOne := fs["module"]
	msf, hasMany := fs["modules"]
	switch {
	case hasOne && hasMany:
		l.errAt(msf.key, "keep either module or modules", "%s: module and modules are mutually exclusive", what)
		return nil
	case hasOne:
		if p, ok := l.str(mf, what+".module", fixMods); ok {
			paths, nodes = []string{p}, []*yaml.Node{mf.val}
		}
	case hasMany:
		paths, nodes, _ = l.strList(msf, what+".modules", fixMods)
		if msf.val.Kind == yaml.SequenceNode && len(msf.val.Content) == 0 {
			l.errAt(msf.val, fixMods, "%s.modules is empty", what)
		}
		if len(paths) > maxRegoModules {
			l.errAt(msf.val, fmt.Sprintf("use at most %d module files", maxRegoModules), "%s.modules lists %d files", what, len(paths))
			return nil
		}
	default:
		l.errAt(f.key, fixMods, "%s: module or modules is required", what)
	}
	qf, hasQuery := fs["query"]
	var query string
	if !hasQuery {
		l.errAt(f.key, "add query: data.<package>.<rule>, e.g. data.pullgate.deny", "%s: query is required", what)
	} else {
		query, _ = l.str(qf, what+".query", "write query: data.<package>.<rule>, e.g. data.pullgate.deny")
	}
	var sources []regoSource
	for j, p := range paths {
		abs := l.abs(p)
		b, err := readLimited(abs, MaxRegoModuleBytes)
		if err != nil {
			l.errAt(nodes[j], "check that the module file exists and is readable (paths are relative to the policy file)", "%s: cannot read module: %v", what, err)
			continue
		}
		name := p
		if !filepath.IsAbs(p) {
			name = filepath.Join(filepath.Dir(l.file), p)
		}
		sources = append(sources, regoSource{path: abs, name: name, src: b})
		l.regoFiles = append(l.regoFiles, trustFile{role: regoRole(ruleName, len(sources)-1), path: abs, sum: sha256.Sum256(b)})
	}
	if len(sources) != len(paths) || query == "" || len(sources) == 0 {
		return nil
	}
	rr, issues := compileRego(ruleName, sources, query)
	for _, is := range issues {
		if is.file == "" {
			l.errAt(qf.val, is.fix, "%s.query: %s", what, is.msg)
			continue
		}
		l.diags = append(l.diags, Diagnostic{File: is.file, Line: is.line, Col: is.col,
			Message: fmt.Sprintf("rego module of rule %s: %s", ruleName, is.msg), Fix: is.fix})
	}
	if rr != nil && rr.readsSignalsWithMore() {
		l.lintAt(qf.val, true, "deny on input.signals in rules of their own (a rule that reads only input.signals, subject and rule), so that an answer can only add a violation",
			"%s: the Rego modules read input.signals together with the artifact or its evidence: Rego cannot be checked as CEL conditions are, and a rule written as `not <signal fact>` beside an artifact fact lets an answer lift a violation", what)
	}
	return rr
}

// readsSignalsWithMore reports whether the modules read input.signals and
// other facts than the subject and the rule by name (a module that reads
// input otherwise, input[k], is not judged).
func (rr *RegoRule) readsSignalsWithMore() bool {
	if !rr.inputKeys["signals"] {
		return false
	}
	for k := range rr.inputKeys {
		if k != "signals" && k != "subject" && k != "rule" {
			return true
		}
	}
	return false
}
