package policy

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/policy/glob"
	"github.com/pullgate/pullgate/verify/content"
)

// Exception is a waiver (top-level `exceptions:`): it lets a denied
// artifact be served when every reason of its denial is one it waives,
// until it expires. It never waives a decision with a digest or subject
// mismatch (exit 12), a rule's `action: deny`, a repository no rule
// matches, nor a content finding whose class it does not list in
// FindingClasses.
type Exception struct {
	Name string
	// Digest, when set, is the one manifest digest the exception is about.
	Digest digest.Digest
	// Repositories are globs (rule syntax) of the repositories it is about.
	// With Digest as well, both must match.
	Repositories []string
	// Waive are the reasons it waives: exact text, or "regexp:<RE2>"
	// matched against the whole reason.
	Waive []string
	// FindingClasses are the content finding classes (the finding's
	// format: pickle, keras, executable, ...) whose findings it may waive.
	// A content finding is never waived otherwise.
	FindingClasses []string
	// Expires: from this instant on the exception waives nothing.
	Expires    time.Time
	Reason     string
	ApprovedBy string
	// Line is the line of the exception in the policy file.
	Line int

	globs    []*glob.Pattern
	matchers []reasonMatcher
}

// reasonMatcher is one compiled waive entry.
type reasonMatcher struct {
	exact string
	re    *regexp.Regexp
}

func (m reasonMatcher) match(reason string) bool {
	if m.re != nil {
		return m.re.MatchString(reason)
	}
	return reason == m.exact
}

// waiveRegexpPrefix marks a waive entry that is an RE2 expression.
const waiveRegexpPrefix = "regexp:"

// maxWaivePattern bounds a waive entry (RE2 runs in time linear in the
// reason, which is itself bounded; the bound keeps compiled programs small).
const maxWaivePattern = 1024

// ExpiryWarning is how long before it expires `policy lint` warns about
// an exception.
const ExpiryWarning = 7 * 24 * time.Hour

// Finding classes that are not a content format: a finding whose text does
// not start with a format name.
const findingClassUnknown = "unknown"

// FindingClasses are the classes a content finding may have (its format,
// as content.Finding.Format names it), which `findingClasses` may list.
// Every content finding needs its class listed: a finding's format does
// not say whether the bytes would run code (a mediatype finding may be a
// code layer, a json one a remote-code hook).
var FindingClasses = []string{
	content.FormatSafetensors, content.FormatGGUF, content.FormatPickle, content.FormatLegacyTorch, content.FormatZip,
	content.Format7z, content.FormatRar, content.FormatTar, content.FormatGzip, content.FormatZstd, content.FormatXz,
	content.FormatBzip2, content.FormatJSON, content.FormatText, content.FormatBinary, content.FormatMediaType,
	content.FormatTensors, content.FormatTemplate, content.FormatYAML, content.FormatImage, content.FormatTorchScript,
	content.FormatKeras, content.FormatExecutable, content.FormatJoblib, content.FormatNeMo, content.FormatNPY,
	content.FormatONNX, content.FormatReferences, content.FormatSentencePiece, content.FormatSkops,
	content.FormatTensorFlow, content.FormatTFLite, content.FormatHDF5, "content", findingClassUnknown,
}

// CodeExecutionClasses are the finding classes whose findings name code
// that runs when the artifact is loaded (pickle globals, Keras Lambda
// layers, TorchScript, executables, NeMo Hydra targets, skops types,
// TensorFlow PyFunc and file ops, TFLite custom/Flex ops, ONNX custom
// domains, remote-code hooks, code layers, chat template code). Listed
// for documentation and lint: every class must be named to be waived.
var CodeExecutionClasses = []string{
	content.FormatPickle, content.FormatLegacyTorch, content.FormatJoblib, content.FormatNPY, content.FormatTorchScript,
	content.FormatKeras, content.FormatExecutable, content.FormatNeMo, content.FormatSkops, content.FormatTensorFlow,
	content.FormatTFLite, content.FormatONNX, content.FormatJSON, content.FormatMediaType, content.FormatTemplate,
	content.FormatReferences,
}

var findingClassRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// contentReason splits a content finding reason ("rule <r>: content:
// [layer <digest>: ]<format>: <why>") into its class. ok is false for
// every other reason.
func contentReason(reason string) (class string, ok bool) {
	_, class, ok = ContentFinding(reason)
	return class, ok
}

// ContentFinding splits a content finding reason ("rule <r>: content:
// [layer <digest>: ]<format>: <why>") into the layer it is about ("" when
// the finding is about the manifest's declarations) and its finding class
// ("unknown" when the text names no format). ok is false for every other
// reason.
func ContentFinding(reason string) (layer digest.Digest, class string, ok bool) {
	rest, found := strings.CutPrefix(reason, "rule ")
	if !found {
		return "", "", false
	}
	i := strings.Index(rest, ": content: ")
	if i < 0 || strings.ContainsAny(rest[:i], " :") {
		return "", "", false
	}
	f := rest[i+len(": content: "):]
	if l, found := strings.CutPrefix(f, "layer "); found {
		if j := strings.Index(l, ": "); j >= 0 {
			if d := digest.Digest(l[:j]); d.Validate() == nil {
				layer = d
			}
			f = l[j+2:]
		}
	}
	j := strings.Index(f, ": ")
	if j < 0 || !findingClassRE.MatchString(f[:j]) {
		return layer, findingClassUnknown, true
	}
	return layer, f[:j], true
}

// IsCodeExecution reports a finding class of code that runs when the
// artifact is loaded (CodeExecutionClasses; "unknown" counts as one).
func IsCodeExecution(class string) bool {
	return class == findingClassUnknown || slices.Contains(CodeExecutionClasses, class)
}

// Applies reports whether the exception is about the artifact dgst in
// repository ("<upstream>/<repo path>").
func (x *Exception) Applies(repository string, dgst digest.Digest) bool {
	if x.Digest != "" && x.Digest != dgst {
		return false
	}
	if len(x.globs) == 0 {
		return x.Digest != ""
	}
	segs := glob.Segments(repository)
	for _, g := range x.globs {
		if g.MatchSegments(segs) {
			return true
		}
	}
	return false
}

// Waives reports whether the exception waives the reason (expiry aside).
// A content finding of a code-execution class is waived only by an
// exception that pins the manifest digest (which fixes every layer's
// digest) and names the finding by its exact text: the blob it is about is
// then served without further inspection, and inspection reports only a
// blob's first finding, so the exception approves those exact bytes,
// never a finding that may stand for others in other bytes.
func (x *Exception) Waives(reason string) bool {
	class, isContent := contentReason(reason)
	if isContent && !slices.Contains(x.FindingClasses, class) {
		return false
	}
	pinned := isContent && IsCodeExecution(class)
	if pinned && x.Digest == "" {
		return false
	}
	for _, m := range x.matchers {
		if pinned && m.re != nil {
			continue
		}
		if m.match(reason) {
			return true
		}
	}
	return false
}

// Expired reports whether the exception waives nothing at now.
func (x *Exception) Expired(now time.Time) bool { return !now.Before(x.Expires) }

// checkException is the check name of waivers in Decision.Checks.
const checkException = "exception"

// Waive applies the policy's exceptions to a decision at now (decision
// time: an exception expired at now waives nothing). A denial (or an
// audit-mode would-deny) every reason of which an unexpired exception
// about the artifact waives is allowed, with Waivers naming the
// exceptions, WaivedUntil the earliest of their expiries and the original
// reasons kept (followed by one line per exception); its DenyExitCode
// keeps the code of the denial. A denial with reasons no exception waives
// stays denied, its Reasons the unwaived ones (and a note of what was
// waived). Never waived: a digest or subject mismatch (exit 12), `action:
// deny`, a decision without a rule (no rule matches), a content finding
// of a class the exception does not list, a denial with so many reasons
// that some were not kept (maxReasonsPerRule).
func (p *Policy) Waive(d Decision, now time.Time) Decision {
	if p == nil || len(p.Exceptions) == 0 || (d.Allowed && !d.WouldDeny) || len(d.Reasons) == 0 {
		return d
	}
	code := d.ExitCode
	if d.WouldDeny {
		code = d.DenyExitCode
	}
	var cands []*Exception
	for _, x := range p.Exceptions {
		if x.Applies(d.Repository, digest.Digest(d.Digest)) {
			cands = append(cands, x)
		}
	}
	if len(cands) == 0 {
		return d
	}
	switch {
	case d.Rule == "" || d.Action == string(ActionDeny):
		return d
	case code == ExitMismatch || d.NotWaivable != "":
		why := d.NotWaivable
		if why == "" {
			why = notWaivableMismatch
		}
		d.Checks = append(d.Checks, Check{Name: checkException,
			Detail: fmt.Sprintf("exception %s not applied: %s", cands[0].Name, why)})
		return d
	case len(d.Reasons) >= maxReasonsPerRule:
		// Reasons past the bound were not kept: what they say is unknown.
		d.Checks = append(d.Checks, Check{Name: checkException,
			Detail: fmt.Sprintf("exception %s not applied: the denial has %d reasons or more, not all of them listed", cands[0].Name, maxReasonsPerRule)})
		return d
	}
	var live []*Exception
	for _, x := range cands {
		if x.Expired(now) {
			d.Checks = append(d.Checks, Check{Name: checkException,
				Detail: fmt.Sprintf("exception %s expired at %s: waives nothing", x.Name, x.Expires.UTC().Format(time.RFC3339))})
			continue
		}
		live = append(live, x)
	}
	var unwaived []string
	used := map[*Exception][]string{}
	var order []*Exception
	for _, r := range d.Reasons {
		var by *Exception
		for _, x := range live {
			if x.Waives(r) {
				by = x
				break
			}
		}
		if by == nil {
			unwaived = append(unwaived, r)
			continue
		}
		if _, ok := used[by]; !ok {
			order = append(order, by)
		}
		used[by] = append(used[by], r)
	}
	if len(order) == 0 {
		return d
	}
	for _, x := range order {
		d.Checks = append(d.Checks, Check{Name: checkException, Passed: len(unwaived) == 0,
			Detail: fmt.Sprintf("exception %s (approved by %s, expires %s: %s) waives: %s",
				x.Name, x.ApprovedBy, x.Expires.UTC().Format(time.RFC3339), x.Reason, strings.Join(used[x], "; "))})
	}
	if len(unwaived) > 0 {
		n := len(d.Reasons) - len(unwaived)
		names := make([]string, len(order))
		for i, x := range order {
			names[i] = x.Name
		}
		d.Reasons = append(unwaived, fmt.Sprintf("rule %s: %d other reason(s) waived by exception %s, but not these", d.Rule, n, strings.Join(names, ", ")))
		return d
	}
	for _, x := range order {
		d.Waivers = append(d.Waivers, x.Name)
		if d.WaivedUntil.IsZero() || x.Expires.Before(d.WaivedUntil) {
			d.WaivedUntil = x.Expires
		}
		d.Reasons = append(d.Reasons, fmt.Sprintf("rule %s: waived by exception %s (approved by %s, expires %s)",
			d.Rule, x.Name, x.ApprovedBy, x.Expires.UTC().Format(time.RFC3339)))
	}
	d.DenyExitCode = code
	d.Allowed, d.WouldDeny, d.ExitCode = true, false, ExitAllowed
	return d
}

// parseExceptions reads the top-level exceptions list.
func (l *loader) parseExceptions(f field, rules []*Rule) []*Exception {
	n := resolve(f.val)
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "write exceptions as a list of {name, match, waive, expires, reason, approvedBy}", "exceptions must be a list, got %s", kindName(n))
		return nil
	}
	byName := map[string]*Rule{}
	for _, r := range rules {
		byName[r.Name] = r
	}
	l.rules = rules
	var out []*Exception
	names := map[string]int{}
	for i, it := range n.Content {
		it = resolve(it)
		x := l.parseException(it, i, byName)
		if x == nil {
			continue
		}
		if x.Name != "" {
			if line, dup := names[x.Name]; dup {
				l.errAt(it, "give every exception a distinct name", "exception name %q is already used at line %d", x.Name, line)
			}
			names[x.Name] = x.Line
		}
		out = append(out, x)
	}
	return out
}

func (l *loader) parseException(n *yaml.Node, i int, rules map[string]*Rule) *Exception {
	what := fmt.Sprintf("exceptions[%d]", i)
	fs, ok := l.mapping(n, what, "name", "match", "waive", "findingClasses", "expires", "reason", "approvedBy")
	if !ok {
		return nil
	}
	x := &Exception{Line: n.Line}
	if name, _, ok := l.name(fs, n, what, "add name: <exception name>; it appears in the audit log of every waived decision"); ok {
		x.Name = name
		what = "exception " + name
	}
	for _, k := range []struct {
		key string
		dst *string
		fix string
	}{
		{"reason", &x.Reason, "add reason: <why this artifact may be served without meeting its rule>"},
		{"approvedBy", &x.ApprovedBy, "add approvedBy: <who approved the exception>"},
	} {
		if v, ok := fs[k.key]; !ok {
			l.errAt(n, k.fix, "%s: %s is required", what, k.key)
		} else {
			*k.dst, _ = l.str(v, what+"."+k.key, k.fix)
		}
	}
	l.parseExpires(n, fs, what, x)
	if mf, ok := fs["match"]; !ok {
		l.errAt(n, `add match: {repositories: ["<upstream>/<repo>"]} or match: {digest: sha256:...}`, "%s: match is required", what)
	} else {
		l.parseExceptionMatch(mf, what, x)
	}
	if cf, ok := fs["findingClasses"]; ok {
		x.FindingClasses = l.checkedList(cf, what+".findingClasses", "list finding classes, e.g. [pickle]",
			"use one of "+strings.Join(FindingClasses, ", "), func(c string) error {
				if !slices.Contains(FindingClasses, c) {
					return fmt.Errorf("%q is not a finding class", c)
				}
				return nil
			})
		if x.Digest == "" {
			for _, c := range x.FindingClasses {
				if IsCodeExecution(c) {
					l.errAt(cf.val, "add match.digest: sha256:<the manifest digest> (it fixes every layer's digest), and list the finding by its exact text",
						"%s.findingClasses lists %s, a code-execution class, without match.digest: the blob a waived finding is about is served without further inspection and inspection reports only its first finding, so only an exception pinned to one manifest digest may waive it", what, c)
					break
				}
			}
		}
	}
	if wf, ok := fs["waive"]; !ok {
		l.errAt(n, `add waive: ["<reason text as in the denial>"] or ["regexp:^rule apps: no signature by .*$"]`, "%s: waive is required", what)
	} else {
		l.parseWaive(wf, what, x, rules)
	}
	return x
}

// parseExpires reads expires: an RFC 3339 date-time, or a date (00:00
// UTC that day).
func (l *loader) parseExpires(n *yaml.Node, fs map[string]field, what string, x *Exception) {
	const fix = "write expires: 2026-12-31T00:00:00Z (RFC 3339) or a date, 2026-12-31 (the exception waives nothing from 00:00 UTC that day on)"
	ef, ok := fs["expires"]
	if !ok {
		l.errAt(n, fix, "%s: expires is required", what)
		return
	}
	v := resolve(ef.val)
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!timestamp" && v.Tag != "!!str") {
		l.errAt(v, fix, "%s.expires must be a date or date-time, got %s", what, kindName(v))
		return
	}
	t, err := time.Parse(time.RFC3339, v.Value)
	if err != nil {
		t, err = time.Parse(time.DateOnly, v.Value)
	}
	if err != nil {
		l.errAt(v, fix, "%s.expires %q is not an RFC 3339 date-time or a date", what, v.Value)
		return
	}
	x.Expires = t
	switch {
	case x.Expired(l.now):
		l.lintAt(v, false, "renew it (a new expires, approved again) or remove it",
			"%s expired at %s: it waives nothing", what, t.UTC().Format(time.RFC3339))
	case t.Sub(l.now) <= ExpiryWarning:
		l.lintAt(v, true, "renew it (a new expires, approved again) or fix what it waives before then",
			"%s expires at %s, in less than 7 days", what, t.UTC().Format(time.RFC3339))
	}
}

func (l *loader) parseExceptionMatch(mf field, what string, x *Exception) {
	const fix = `write match: {repositories: ["<upstream>/<repo>/**"]}, match: {digest: sha256:...}, or both (both must match)`
	m, ok := l.mapping(mf.val, what+".match", "digest", "repositories")
	if !ok {
		return
	}
	df, hasD := m["digest"]
	rf, hasR := m["repositories"]
	if !hasD && !hasR {
		l.errAt(resolve(mf.val), fix, "%s.match: digest or repositories is required", what)
		return
	}
	if hasD {
		if s, ok := l.str(df, what+".match.digest", "write the manifest digest, sha256:<64 hex>"); ok {
			d := digest.Digest(s)
			if err := d.Validate(); err != nil {
				l.errAt(df.val, "write the manifest digest, sha256:<64 hex>", "%s.match.digest %q: %v", what, s, err)
			} else {
				x.Digest = d
			}
		}
	}
	if hasR {
		pats, nodes, _ := l.strList(rf, what+".match.repositories", fix)
		if rf.val.Kind == yaml.SequenceNode && len(rf.val.Content) == 0 {
			l.errAt(rf.val, `list at least one repository pattern, e.g. "upstream.local/legacy/app"`, "%s.match.repositories is empty", what)
		}
		for j, pat := range pats {
			g, ok := l.glob(nodes[j], pat, what+".match.repositories")
			if !ok {
				continue
			}
			x.Repositories = append(x.Repositories, pat)
			x.globs = append(x.globs, g)
		}
	}
}

// parseWaive reads the waive list: exact reasons or regexp: entries. An
// entry that can never match a waivable reason is an error: its rule
// does not exist or denies by action, or it is a content finding whose
// class findingClasses does not list.
func (l *loader) parseWaive(wf field, what string, x *Exception, rules map[string]*Rule) {
	const fix = `list reasons as the denial prints them, or "regexp:<RE2>" matched against the whole reason`
	entries, nodes, _ := l.strList(wf, what+".waive", fix)
	if wf.val.Kind == yaml.SequenceNode && len(wf.val.Content) == 0 {
		l.errAt(wf.val, fix, "%s.waive is empty (it would waive nothing)", what)
	}
	for j, e := range entries {
		at := nodes[j]
		if len(e) > maxWaivePattern {
			l.errAt(at, fmt.Sprintf("keep an entry under %d bytes", maxWaivePattern), "%s.waive[%d] is %d bytes long", what, j, len(e))
			continue
		}
		m := reasonMatcher{exact: e}
		prefix := e
		if src, isRE := strings.CutPrefix(e, waiveRegexpPrefix); isRE {
			// src compiles on its own before it is wrapped, so that it
			// cannot close the group ("a)|(.*").
			if _, err := regexp.Compile(src); err != nil {
				l.errAt(at, "use RE2 syntax (https://github.com/google/re2/wiki/Syntax); it is matched against the whole reason", "%s.waive[%d] does not compile: %v", what, j, err)
				continue
			}
			re := regexp.MustCompile(`^(?:` + src + `)$`)
			m = reasonMatcher{re: re}
			prefix = ""
			if lit, err := regexp.Compile(strings.TrimPrefix(src, "^")); err == nil {
				prefix, _ = lit.LiteralPrefix()
			}
			if re.MatchString("") || !strings.HasPrefix(prefix, "rule ") {
				l.errAt(at, `start the expression with the literal rule it waives, e.g. "regexp:rule apps: no signature by .*"`, "%s.waive[%d] does not start with \"rule <name>: \": it could waive any rule's reasons", what, j)
				continue
			}
			if strings.Contains(prefix, ": content: ") && slices.ContainsFunc(x.FindingClasses, IsCodeExecution) {
				l.errAt(at, "list the finding by its exact text, as the denial prints it",
					"%s.waive[%d] is a regexp over content findings: a code-execution finding is waived only by its exact text (a pattern would also waive other findings in other bytes)", what, j)
				continue
			}
		}
		l.checkWaived(at, what, j, prefix, m.re == nil, x, rules)
		x.Waive = append(x.Waive, e)
		x.matchers = append(x.matchers, m)
	}
}

// checkWaived reports a waive entry that can never waive anything: it
// names no rule, a rule that denies by action (never waived), or (exact
// text) a content finding of a class the exception does not list.
func (l *loader) checkWaived(at *yaml.Node, what string, j int, prefix string, exact bool, x *Exception, rules map[string]*Rule) {
	rest, ok := strings.CutPrefix(prefix, "rule ")
	name, _, complete := strings.Cut(rest, ": ")
	switch {
	case !ok:
		l.errAt(at, "copy the reason from the denial: reasons an exception can waive start with \"rule <name>: \"", "%s.waive[%d] %q names no rule: it can never match", what, j, prefix)
		return
	case !complete && exact:
		l.errAt(at, "copy the reason from the denial: \"rule <name>: <what failed>\"", "%s.waive[%d] %q is not a rule's reason: it can never match", what, j, prefix)
		return
	case !complete:
		return // a regexp whose literal prefix ends inside the rule name
	}
	r, known := rules[name]
	switch {
	case !known:
		fix := "name a rule of this policy"
		if len(rules) > 0 {
			fix += "; rules: " + strings.Join(sortedKeys(rules), ", ")
		}
		l.errAt(at, fix, "%s.waive[%d]: rule %q does not exist: it can never match", what, j, name)
	case r.Action == ActionDeny:
		l.errAt(at, "change the rule instead: a rule's action: deny is never waived", "%s.waive[%d]: rule %s denies by action, which no exception waives", what, j, name)
	case !l.mayDecide(r, x):
		l.errAt(at, "name the rule that decides these repositories (the first whose match covers them), or fix match.repositories",
			"%s.waive[%d]: rule %s decides none of %s (the first matching rule decides a repository): it can never match", what, j, name, strings.Join(x.Repositories, ", "))
	case exact:
		if class, isContent := contentReason(prefix); isContent && !slices.Contains(x.FindingClasses, class) {
			l.errAt(at, fmt.Sprintf("add findingClasses: [%s] if that finding may be waived (a content finding is waived only by class)", class),
				"%s.waive[%d] is a %s content finding, which this exception may not waive", what, j, class)
		}
	}
}

// mayDecide reports whether rule r may decide a repository the exception
// matches: false only when every repository pattern is literal and the
// first rule matching each is another one (or none).
func (l *loader) mayDecide(r *Rule, x *Exception) bool {
	if len(x.Repositories) == 0 {
		return true
	}
	p := &Policy{Rules: l.rules}
	for _, repo := range x.Repositories {
		if strings.ContainsAny(repo, `*?[\`) || p.Match(repo) == r {
			return true
		}
	}
	return false
}

// glob compiles a repository pattern written at n, reporting a syntax
// error at its column.
func (l *loader) glob(n *yaml.Node, pat, what string) (*glob.Pattern, bool) {
	g, err := glob.Compile(pat)
	if err == nil {
		return g, true
	}
	col, msg := n.Column, err.Error()
	var ge *glob.SyntaxError
	if errors.As(err, &ge) {
		col += ge.Offset
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			col++
		}
		msg = fmt.Sprintf("pattern %q: %s", pat, ge.Msg)
	}
	l.errPos(n.Line, col, "patterns are <upstream>/<repo path> with '**' spanning segments, '*' and '?' within one segment", "%s: %s", what, msg)
	return nil, false
}

// lintAt records a problem only `policy lint` reports (a policy with it
// still loads: an expired exception waives nothing, it does not stop the
// gate); warn marks a warning (lint still exits 0).
func (l *loader) lintAt(n *yaml.Node, warn bool, fix, format string, args ...any) {
	d := Diagnostic{File: l.file, Message: fmt.Sprintf(format, args...), Fix: fix}
	if n != nil {
		d.Line, d.Col = n.Line, n.Column
	}
	if warn {
		d.Severity = SeverityWarning
	}
	l.lint = append(l.lint, d)
}
