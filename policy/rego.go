package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/metrics"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// Bounds of one Rego evaluation. Exceeding either denies (fail closed).
const (
	// RegoTimeout bounds the wall time of one evaluation; OPA checks for
	// cancellation between evaluation steps and inside range generation.
	RegoTimeout = time.Second
	// RegoMaxAlloc bounds the bytes the process allocates while one
	// evaluation runs (runtime/metrics /gc/heap/allocs:bytes, sampled every
	// regoAllocSample); OPA itself has no memory limit.
	RegoMaxAlloc = 256 << 20
)

// The bounds in force (tests lower them).
var (
	regoTimeout         = RegoTimeout
	regoMaxAlloc uint64 = RegoMaxAlloc
)

const (
	// MaxRegoModuleBytes bounds one module file; maxRegoModules the files of one rule.
	MaxRegoModuleBytes = 1 << 20
	maxRegoModules     = 64
	// maxRegoMessage bounds one violation message in a reason.
	maxRegoMessage  = 1024
	regoAllocSample = time.Millisecond
)

// regoBannedBuiltins are the builtins (and namespaces, ending in ".")
// pullgate removes from Rego modules: network access and randomness. A
// module calling one does not compile. time.now_ns stays (OPA fixes it for
// one evaluation); any other builtin OPA marks non-deterministic is removed
// too (io.jwt.encode_sign*, io.jwt.decode_verify, json.match_schema,
// json.verify_schema, uuid.rfc4122, ...).
var regoBannedBuiltins = []string{"http.send", "net.", "opa.runtime", "rand.", "uuid.rfc4122"}

// RegoRule is a rule's Rego section: modules compiled once per policy
// load and a query whose result is a set of violation messages.
type RegoRule struct {
	// Modules are the absolute paths of the module files.
	Modules []string
	// Query is the reference evaluated, e.g. data.pullgate.deny.
	Query string

	prepared rego.PreparedEvalQuery
	ready    bool // prepared was made by compileRego
	// inputKeys are the top-level input keys the modules read (nil: the
	// whole input, e.g. a module passing input to a function); only those
	// are built for an evaluation.
	inputKeys map[string]bool
	// usesTime: a module calls time.now_ns (the decision can change
	// without a policy change).
	usesTime bool
}

var (
	regoCapsOnce sync.Once
	regoCaps     *ast.Capabilities
)

// regoBanned reports whether a builtin is removed from Rego modules.
func regoBanned(b *ast.Builtin) bool {
	if b.Name == "time.now_ns" {
		return false
	}
	if b.Nondeterministic {
		return true
	}
	for _, x := range regoBannedBuiltins {
		if b.Name == x || strings.HasSuffix(x, ".") && strings.HasPrefix(b.Name, x) {
			return true
		}
	}
	return false
}

// regoCapabilities are OPA's capabilities of this version without the
// banned builtins, so that a call to one is a compile error at its position.
func regoCapabilities() *ast.Capabilities {
	regoCapsOnce.Do(func() {
		c := ast.CapabilitiesForThisVersion()
		kept := c.Builtins[:0:0]
		for _, b := range c.Builtins {
			if !regoBanned(b) {
				kept = append(kept, b)
			}
		}
		c.Builtins = kept
		regoCaps = c
	})
	return regoCaps
}

// regoIssue is a compile problem: in a module file (file, line, col) or,
// with file empty, about the query.
type regoIssue struct {
	file      string
	line, col int
	msg, fix  string
}

// regoSource is one module file's bytes as read at load.
type regoSource struct {
	path string // absolute
	name string // as diagnostics show it
	src  []byte
}

// compileRego parses (Rego v1 syntax only) and compiles the modules with the
// restricted capabilities, checks that the query names a rule they define,
// and prepares the query for evaluation.
func compileRego(ruleName string, sources []regoSource, query string) (*RegoRule, []regoIssue) {
	caps := regoCapabilities()
	var issues []regoIssue
	addErrs := func(err error, fallback string) {
		var errs ast.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				is := regoIssue{file: fallback, msg: e.Code + ": " + e.Message, fix: regoFix(e.Message)}
				if e.Location != nil {
					is.line, is.col = e.Location.Row, e.Location.Col
					if e.Location.File != "" {
						is.file = e.Location.File
					}
				}
				issues = append(issues, is)
			}
			return
		}
		issues = append(issues, regoIssue{file: fallback, msg: err.Error()})
	}
	modules := make(map[string]*ast.Module, len(sources))
	for _, s := range sources {
		m, err := ast.ParseModuleWithOpts(s.name, string(s.src), ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			addErrs(err, s.name)
			continue
		}
		modules[s.name] = m
	}
	if len(issues) > 0 {
		return nil, issues
	}
	c := ast.NewCompiler().WithCapabilities(caps).WithEnablePrintStatements(true).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(modules); c.Failed() {
		addErrs(c.Errors, sources[0].name)
		return nil, issues
	}
	ref, err := ast.ParseRef(query)
	if err != nil || !ref.HasPrefix(ast.DefaultRootRef) || len(ref) < 2 || !ref.IsGround() {
		return nil, []regoIssue{{line: -1, msg: fmt.Sprintf("query %q is not a reference into data", query),
			fix: "write the rule to evaluate, e.g. query: data.pullgate.deny"}}
	}
	if !namesWholeRule(c.GetRulesForVirtualDocument(ref), ref) {
		// A ref past a rule (data.pullgate.deny.foo) also finds the rule,
		// but evaluates undefined, which would pass everything.
		return nil, []regoIssue{{line: -1, msg: fmt.Sprintf("query %s names no rule of the modules", query),
			fix: "name a rule the modules define (package path and rule name), e.g. data.pullgate.deny for `package pullgate` and `deny contains msg if ...`"}}
	}
	rr := &RegoRule{Query: query}
	pq, err := rego.New(
		rego.Compiler(c),
		rego.Query(query),
		rego.Capabilities(caps),
		rego.StrictBuiltinErrors(true),
		rego.EnablePrintStatements(true),
		rego.PrintHook(regoPrinter{rule: ruleName}),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, []regoIssue{{line: -1, msg: "query: " + err.Error()}}
	}
	rr.prepared, rr.ready = pq, true
	rr.inputKeys = inputKeysRead(c)
	// the clock, read directly or by certificate validation without a
	// given time
	rr.usesTime = callsBuiltin(c, "time.now_ns") || callsBuiltin(c, "crypto.x509.parse_and_verify_certificates") ||
		callsBuiltin(c, "crypto.x509.parse_and_verify_certificates_with_options")
	for _, s := range sources {
		rr.Modules = append(rr.Modules, s.path)
	}
	return rr, nil
}

// namesWholeRule reports whether ref is the full reference of one of
// rules (package path and rule name, no further key).
func namesWholeRule(rules []*ast.Rule, ref ast.Ref) bool {
	for _, r := range rules {
		if p := r.Path(); p.IsGround() && p.Equal(ref) {
			return true
		}
	}
	return false
}

// inputKeysRead returns the top-level keys of input the compiled modules
// refer to, or nil when a module reads input otherwise than by a constant
// key (input itself, input[x]): then the whole input is built.
func inputKeysRead(c *ast.Compiler) map[string]bool {
	keys := map[string]bool{}
	all := false
	for _, m := range c.Modules {
		ast.WalkRefs(m, func(ref ast.Ref) bool {
			if all || !ref[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(ref) < 2 {
				all = true
				return false
			}
			s, ok := ref[1].Value.(ast.String)
			if !ok {
				all = true
				return false
			}
			keys[string(s)] = true
			return false
		})
	}
	if all {
		return nil
	}
	return keys
}

// callsBuiltin reports whether a compiled module calls the named builtin.
func callsBuiltin(c *ast.Compiler, name string) bool {
	found := false
	for _, m := range c.Modules {
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if x.IsCall() && x.Operator().String() == name {
				found = true
			}
			return found
		})
	}
	return found
}

// regoFix is the fix of a compile error.
func regoFix(msg string) string {
	if strings.Contains(msg, "undefined function") {
		return "pullgate removes network and non-deterministic builtins (http.send, net.*, opa.runtime, rand.*, uuid.rfc4122, io.jwt signing); use the input document instead"
	}
	return "write Rego v1 syntax (`deny contains msg if { ... }`); see https://www.openpolicyagent.org/docs/policy-language"
}

// regoPrinter sends print() output to the debug log.
type regoPrinter struct{ rule string }

func (p regoPrinter) Print(pc print.Context, msg string) error {
	attrs := []any{"rule", p.rule, "msg", msg}
	if pc.Location != nil {
		attrs = append(attrs, "file", pc.Location.File, "line", pc.Location.Row)
	}
	slog.Default().Debug("rego print", attrs...)
	return nil
}

var errRegoMemory = errors.New("evaluation allocated more than the memory bound")

// eval runs the query over input and returns the violation messages, or an
// error (timeout, memory bound, builtin error, a result that is not a set
// of messages), which must deny.
// now, when set, is what time.now_ns returns (the decision's time, as
// conditions read it); zero: the current time.
func (rr *RegoRule) eval(input ast.Value, now time.Time) ([]string, error) {
	if rr == nil || !rr.ready {
		return nil, errors.New("query not compiled")
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), regoTimeout,
		fmt.Errorf("evaluation took longer than %s", regoTimeout))
	defer cancel()
	ctx, stop := watchAlloc(ctx, regoMaxAlloc)
	defer stop()
	opts := []rego.EvalOption{rego.EvalParsedInput(input)}
	if !now.IsZero() {
		opts = append(opts, rego.EvalTime(now))
	}
	rs, err := rr.prepared.Eval(ctx, opts...)
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.Canceled) {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil // undefined: no violation
	}
	return regoMessages(rs[0].Expressions[0].Value)
}

// watchAlloc cancels ctx with errRegoMemory once the process has allocated
// more than max bytes since the call, sampled every regoAllocSample (the
// sampler starts after the first interval, so that the evaluations that
// take less cost one metrics read and a timer). stop ends the watch.
func watchAlloc(parent context.Context, max uint64) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	read := func(s []metrics.Sample) (uint64, bool) {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0, false
		}
		return s[0].Value.Uint64(), true
	}
	start, ok := read([]metrics.Sample{{Name: "/gc/heap/allocs:bytes"}})
	if !ok {
		return ctx, func() { cancel(context.Canceled) }
	}
	done := make(chan struct{})
	check := func(s []metrics.Sample) bool {
		if n, _ := read(s); n-start > max {
			cancel(fmt.Errorf("%w (%d MiB)", errRegoMemory, max>>20))
			return false
		}
		return true
	}
	timer := time.AfterFunc(regoAllocSample, func() {
		s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		if !check(s) {
			return
		}
		t := time.NewTicker(regoAllocSample)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if !check(s) {
					return
				}
			}
		}
	})
	return ctx, func() { timer.Stop(); close(done); cancel(context.Canceled) }
}

// regoMessages reads a query result: a set or array of strings, or of
// objects with a string "msg" (Conforma's result shape).
func regoMessages(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("result is %s, not a set of messages", regoTypeName(v))
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		var s string
		switch t := x.(type) {
		case string:
			s = t
		case map[string]any:
			m, ok := t["msg"].(string)
			if !ok {
				return nil, errors.New("result has an object without a string msg")
			}
			s = m
		default:
			return nil, fmt.Errorf("result has %s, not a message", regoTypeName(x))
		}
		out = append(out, cleanMessage(s))
	}
	sort.Strings(out)
	return out, nil
}

func regoTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a number"
}

// cleanMessage makes a policy author's message safe for one log line and
// an OCI error: control characters become spaces, length is bounded.
func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			// controls, bidi overrides and line separators: a
			// message can quote upstream text into audit and CLI output
			return ' '
		}
		return r
	}, s)
	if len(s) > maxRegoMessage {
		cut := maxRegoMessage
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if s == "" {
		s = "(empty message)"
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// CheckRego is the name of the Rego check in a Decision.
const CheckRego = "rego"

// rego evaluates the rule's Rego query: each violation denies with
// "rule <name>: rego: <message>"; an evaluation error denies too.
func (e *evaluation) rego() {
	rr := e.rule.Rego
	msgs, err := rr.eval(e.rule.regoInput(e.in, rr.inputKeys, e.signalDoc), e.in.Now)
	if err != nil {
		e.d.Checks = append(e.d.Checks, Check{Name: CheckRego, Detail: fmt.Sprintf("%s: error: %v", rr.Query, err)})
		e.deny(ExitUnmet, "rule %s: rego: %s: evaluation error: %s", e.rule.Name, rr.Query, cleanMessage(err.Error()))
		return
	}
	if len(msgs) == 0 {
		e.d.Checks = append(e.d.Checks, Check{Name: CheckRego, Passed: true, Detail: rr.Query + ": no violations"})
		return
	}
	for i, m := range msgs {
		if i == maxReasonsPerRule {
			// The checks (audit log) and reasons stay bounded.
			e.d.Checks = append(e.d.Checks, Check{Name: CheckRego, Detail: fmt.Sprintf("%d more violations not listed", len(msgs)-i)})
			break
		}
		e.d.Checks = append(e.d.Checks, Check{Name: CheckRego, Detail: m})
		e.deny(ExitUnmet, "rule %s: rego: %s", e.rule.Name, m)
	}
}
