package policy

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"
)

// CELCostLimit bounds the evaluation cost of one condition (in CEL cost
// units; one unit is roughly one operation or one element visited). A
// condition that exceeds it fails, and a failed condition denies.
const CELCostLimit = 1_000_000

// celLanguage is what every condition may use beyond standard CEL.
var celLanguage = []cel.EnvOption{cel.CrossTypeNumericComparisons(true), cel.OptionalTypes(), ext.Strings()}

// conditionEnv is the CEL environment of attestation conditions. It is
// immutable and shared; programs are compiled once per policy load.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(append([]cel.EnvOption{
		cel.Variable("predicate", cel.DynType),
		cel.Variable("statement", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("repository", cel.StringType),
		cel.Variable("digest", cel.StringType),
	}, celLanguage...)...)
})

// celIssue is a compile problem with its position inside the expression
// (line 1-based, column 0-based, -1 when unknown).
type celIssue struct {
	line, col int
	msg       string
}

// compileCondition compiles and type-checks a condition. The result must be
// a bool (or dyn, checked at evaluation time).
func compileCondition(src string) (cel.Program, []celIssue) {
	env, err := conditionEnv()
	if err != nil {
		return nil, []celIssue{{line: -1, col: -1, msg: "CEL environment: " + err.Error()}}
	}
	prg, _, issues := compileIn(env, src)
	return prg, issues
}

// compileIn compiles, type-checks (the result must be bool or dyn) and
// plans a condition in env, with the cost limit.
func compileIn(env *cel.Env, src string) (cel.Program, *cel.Ast, []celIssue) {
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var out []celIssue
		for _, e := range iss.Errors() {
			ci := celIssue{line: -1, col: -1, msg: e.Message}
			if e.Location != nil {
				ci.line, ci.col = e.Location.Line(), e.Location.Column()
			}
			out = append(out, ci)
		}
		if len(out) == 0 {
			out = append(out, celIssue{line: -1, col: -1, msg: iss.Err().Error()})
		}
		return nil, nil, out
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, nil, []celIssue{{line: -1, col: -1, msg: fmt.Sprintf("condition has type %s, must be bool", t)}}
	}
	prg, err := env.Program(ast,
		cel.CostLimit(CELCostLimit),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, nil, []celIssue{{line: -1, col: -1, msg: err.Error()}}
	}
	return prg, ast, nil
}

var errNotBool = errors.New("condition did not evaluate to a bool")

// evalCondition runs a compiled condition. Any error, including exceeding
// the cost limit or a non-bool result, is returned and must deny.
func evalCondition(prg cel.Program, vars map[string]any) (bool, error) {
	out, _, err := prg.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("%w (got %s)", errNotBool, out.Type())
	}
	return b, nil
}

// artifactConditionEnv is the CEL environment of require.conditions: the
// variables of Artifact.Document.
var artifactConditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(append([]cel.EnvOption{
		cel.Variable(VarSubject, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(VarManifest, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(VarAnnotations, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(VarConfig, cel.DynType),
		cel.Variable(VarModel, cel.DynType),
		cel.Variable(VarNow, cel.TimestampType),
		cel.Variable(VarSignals, cel.MapType(cel.StringType, cel.DynType)),
	}, celLanguage...)...)
})

// artifactRefs is which artifact document variables a condition reads.
type artifactRefs struct {
	now, config, model, manifest, annotations, signals bool
}

// artifact reports whether the condition reads the artifact itself.
func (r artifactRefs) artifact() bool { return r.config || r.model || r.manifest || r.annotations }

// compileArtifactCondition compiles and type-checks one of
// require.conditions and reports which variables it reads.
func compileArtifactCondition(src string) (prg cel.Program, refs artifactRefs, issues []celIssue) {
	env, err := artifactConditionEnv()
	if err != nil {
		return nil, refs, []celIssue{{line: -1, col: -1, msg: "CEL environment: " + err.Error()}}
	}
	prg, ast, issues := compileIn(env, src)
	if ast != nil {
		for _, ref := range ast.NativeRep().ReferenceMap() {
			switch ref.Name {
			case VarNow:
				refs.now = true
			case VarConfig:
				refs.config = true
			case VarModel:
				refs.model = true
			case VarManifest:
				refs.manifest = true
			case VarAnnotations:
				refs.annotations = true
			case VarSignals:
				refs.signals = true
			}
		}
	}
	return prg, refs, issues
}

// errTrueWithoutConfig is why a condition that reads config is refused
// when it is true on an artifact whose config pullgate does not read as an
// image configuration (config is null; see trueWithoutConfig).
var errTrueWithoutConfig = errors.New("condition is true when the artifact has no image config (config null: a model, or a config type pullgate does not read as one; or config without the keys the condition reads)")

// trueWithoutConfig reports whether a condition that reads config is true
// on an artifact without an image config: config and model null, or empty
// objects (no key present), every other variable empty. Such a condition
// (`!has(config.user)`, `config.?user.orValue("1000") != "0"`,
// `config == null || ...`) admits an image whose upstream gives its config
// a media type pullgate does not read, which a runtime may still run; it
// is a policy error. A condition true there only because it does not
// depend on config at all is not reported (it does not read config).
func trueWithoutConfig(prg cel.Program) bool {
	a := &Artifact{Manifest: map[string]any{}, Annotations: map[string]string{}}
	for _, empty := range []bool{false, true} {
		vars := a.Document(time.Unix(0, 0))
		if empty {
			vars[VarConfig], vars[VarModel] = map[string]any{}, map[string]any{}
		}
		if ok, err := evalCondition(prg, vars); err == nil && ok {
			return true
		}
	}
	return false
}
