package content

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"
)

// FormatSkops names findings about a scikit-learn skops file (skops.io.dump:
// a zip whose top-level schema.json describes the object tree, with .npy,
// .bin and sparse .npz members for arrays and bytes). The layer's format
// stays FormatZip.
const FormatSkops = "skops"

// SkopsOptions configure the skops check (policy key content.formats.skops).
type SkopsOptions struct {
	// Trusted lists types ("module.Name"), functions, and for MethodNode
	// "module.Class.method", admitted besides skops' default trusted set,
	// as skops.io.load(trusted=[...]) would.
	Trusted []string
}

// skopsProtocol is the schema protocol current skops writes (skops.io
// _protocol.PROTOCOL, since skops 0.10, July 2024). Older protocols load
// through other node classes (skops/io/old) and are refused.
const skopsProtocol = "2"

// Default trusted sets, mirroring skops.io (_trusted_types.py and each
// node class's _get_trusted default, skops 0.13, protocol 2).
var (
	skopsPrimitives = []string{"builtins.int", "builtins.float", "builtins.str", "builtins.bool"}
	skopsContainers = []string{"builtins.list", "builtins.set", "builtins.map", "builtins.tuple"}
	// skopsNumpyScalars are the numpy scalar types (NUMPY_DTYPE_TYPE_NAMES:
	// the names of np.sctypeDict's types, numpy 1.x and 2.x spellings).
	skopsNumpyScalars = prefixed("numpy.", "bool", "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
		"uint64", "intc", "uintc", "int_", "uint", "longlong", "ulonglong", "intp", "uintp", "short", "ushort", "byte", "ubyte",
		"half", "single", "double", "longdouble", "float16", "float32", "float64", "float128", "complex64", "complex128",
		"complex256", "csingle", "cdouble", "clongdouble", "bytes_", "str_", "void", "object_", "datetime64", "timedelta64")
	// skopsNumpyUfuncs are numpy's public ufuncs (NUMPY_UFUNC_TYPE_NAMES),
	// named under the modules skops' get_module reports for them.
	skopsNumpyUfuncNames = []string{"absolute", "acos", "acosh", "add", "arccos", "arccosh", "arcsin", "arcsinh", "arctan",
		"arctan2", "arctanh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_and", "bitwise_count", "bitwise_invert",
		"bitwise_left_shift", "bitwise_not", "bitwise_or", "bitwise_right_shift", "bitwise_xor", "cbrt", "ceil", "conj",
		"conjugate", "copysign", "cos", "cosh", "deg2rad", "degrees", "divide", "divmod", "equal", "exp", "exp2", "expm1",
		"fabs", "float_power", "floor", "floor_divide", "fmax", "fmin", "fmod", "frexp", "gcd", "greater", "greater_equal",
		"heaviside", "hypot", "invert", "isfinite", "isinf", "isnan", "isnat", "lcm", "ldexp", "left_shift", "less",
		"less_equal", "log", "log10", "log1p", "log2", "logaddexp", "logaddexp2", "logical_and", "logical_not",
		"logical_or", "logical_xor", "matmul", "matvec", "maximum", "minimum", "mod", "modf", "multiply", "negative",
		"nextafter", "not_equal", "positive", "pow", "power", "rad2deg", "radians", "reciprocal", "remainder",
		"right_shift", "rint", "sign", "signbit", "sin", "sinh", "spacing", "sqrt", "square", "subtract", "tan", "tanh",
		"true_divide", "trunc", "vecdot", "vecmat"}
	skopsNumpyUfuncModules = []string{"numpy", "numpy.core._multiarray_umath", "numpy._core._multiarray_umath",
		"numpy.core.umath", "numpy._core.umath"}
	// skopsScipyUfuncModules hold scipy.special's ufuncs
	// (SCIPY_UFUNC_TYPE_NAMES): any public name there is admitted.
	skopsScipyUfuncModules = []string{"scipy.special._ufuncs", "scipy.special"}
	// skopsSklearnInternal is SKLEARN_INTERNAL_TYPE_NAMES.
	skopsSklearnInternal = append(append(
		prefixed("sklearn._loss.link.", "HalfLogitLink", "IdentityLink", "Interval", "LogitLink", "LogLink", "MultinomialLogit"),
		prefixed("sklearn._loss.loss.", "AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss",
			"HalfMultinomialLoss", "HalfPoissonLoss", "HalfSquaredError", "HuberLoss", "PinballLoss")...),
		"sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
		"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor")
	// skopsAllowedLosses is _sklearn.ALLOWED_LOSSES (LossNode).
	skopsAllowedLosses = append(
		prefixed("sklearn.linear_model._sgd_fast.", "EpsilonInsensitive", "Hinge", "ModifiedHuber",
			"SquaredEpsilonInsensitive", "SquaredHinge", "Huber", "Log", "SquaredLoss"),
		prefixed("sklearn._loss._loss.", "CyAbsoluteError", "CyExponentialLoss", "CyHalfBinomialLoss", "CyHalfGammaLoss",
			"CyHalfMultinomialLoss", "CyHalfPoissonLoss", "CyHalfSquaredError", "CyHalfTweedieLoss",
			"CyHalfTweedieLossIdentity", "CyHuberLoss", "CyPinballLoss")...)
	// skopsBitGenerators are the numpy.random bit generators a
	// RandomGeneratorNode may name (it calls numpy.random.<name>(seed)).
	skopsBitGenerators = []string{"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"}
)

func prefixed(p string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

// skopsSklearnEstimators is SKLEARN_ESTIMATOR_TYPE_NAMES, which skops
// computes at run time from sklearn.utils.all_estimators(): every public
// estimator class, named by its defining module (sklearn.linear_model.
// _logistic.LogisticRegression). The gate cannot import scikit-learn: the
// names are generated (skops_sklearn_gen.py, into skops_sklearn.go) from
// the scikit-learn versions that file lists; an estimator of a newer
// release is admitted by content.formats.skops.trusted. (Any public name
// in a sklearn module, as before, admitted helpers such as
// sklearn.model_selection._search.Parallel, a joblib re-export.)
var skopsSklearnEstimators = func() map[string]bool {
	m := make(map[string]bool, len(skopsSklearnEstimatorNames))
	for _, n := range skopsSklearnEstimatorNames {
		m[n] = true
	}
	return m
}()

//go:generate python3 skops_sklearn_gen.py

// skopsSklearnEstimator reports whether module.class is a scikit-learn
// estimator skops trusts by default.
func skopsSklearnEstimator(module, class string) bool {
	return skopsSklearnEstimators[module+"."+class]
}

// skopsUfunc reports whether a FunctionNode names a default-trusted ufunc.
func skopsUfunc(module, name string) bool {
	if slices.Contains(skopsNumpyUfuncModules, module) && slices.Contains(skopsNumpyUfuncNames, name) {
		return true
	}
	return slices.Contains(skopsScipyUfuncModules, module) && isDottedPath(name) && !strings.Contains(name, ".") && name[0] != '_'
}

// isSkopsSchemaName reports whether a zip member is skops' schema: the
// top-level schema.json skops.io.load reads.
func isSkopsSchemaName(name string) bool { return name == "schema.json" }

// looksSkops reports whether a parsed schema.json is a skops schema (its
// root is a node, or names a protocol or skops version). Any other
// schema.json in a zip is checked as a JSON config.
func looksSkops(root map[string]any) bool {
	for _, k := range []string{"__loader__", "protocol", "_skops_version"} {
		if _, ok := root[k]; ok {
			return true
		}
	}
	return false
}

// newSkopsSchemaInspector holds a zip's top-level schema.json (at most
// MaxConfigBytes) and checks it at Close.
func newSkopsSchemaInspector(opts Options, size int64) *BufferedInspector {
	return NewBufferedInspector(FormatSkops, size, heldLimit(opts, skopsMaxSchema), "skops schema.json larger than the %d-byte limit for a skops schema (its parse tree costs about 7 times its size; content.maxConfigBytes lowers it, no key raises it)",
		func(b []byte) error { return CheckSkopsSchema(opts, b) })
}

// maxSkopsNodes bounds the nodes of one schema.json.
const maxSkopsNodes = 1 << 20

// CheckSkopsSchema checks a skops schema.json as skops.io.load would read
// it, more strictly: strict JSON (no duplicate keys, depth at most 128),
// protocol 2, and every node at any depth (including those under keys
// skops does not walk) names a known loader and a type in that loader's
// default trusted set or in SkopsOptions.Trusted. Loaders that trust no
// type by default (PartialNode, ConstructorFromReduceNode, MethodNode,
// OperatorFuncNode, DTypeNode) therefore need their type trusted
// explicitly: MethodNode and OperatorFuncNode were the gadgets of
// CVE-2025-54412 and CVE-2025-54413. A schema.json that is not a skops
// schema (no __loader__, protocol or _skops_version at its root) is
// checked as a JSON config.
func CheckSkopsSchema(opts Options, b []byte) error {
	if !utf8.Valid(b) {
		return newFinding(FormatSkops, 0, "schema.json is not valid UTF-8")
	}
	p := &jsonParser{b: b, keepAll: true, maxValues: skopsMaxValues,
		tooMany: "more than %d JSON values (the limit that bounds a skops schema's parse tree; no key raises it)"}
	p.ws()
	v, err := p.value(0, "")
	if err != nil {
		return newFinding(FormatSkops, -1, "schema.json: %s", err.(*Finding).Reason)
	}
	p.ws()
	if p.i != len(p.b) {
		return newFinding(FormatSkops, int64(p.i), "schema.json: unexpected data after the JSON value")
	}
	root, ok := v.(map[string]any)
	if !ok || !looksSkops(root) {
		return CheckConfigJSON(opts, b)
	}
	if pr, _ := root["protocol"].(jsonNumber); pr != skopsProtocol {
		return newFinding(FormatSkops, -1, "schema.json protocol %v is not %s (current skops); older protocols load through other node classes, re-save the model with current skops", root["protocol"], skopsProtocol)
	}
	w := &skopsWalker{opts: opts, ids: map[string]bool{}, budget: maxSkopsNodes}
	if _, ok := root["__loader__"]; !ok {
		return w.fail("", "the root has no __loader__")
	}
	if err := w.value(root, "root"); err != nil {
		return err
	}
	for _, id := range w.cached {
		if !w.ids[id] {
			return w.fail("", "CachedNode refers to __id__ %s, which no node declares", id)
		}
	}
	return nil
}

type skopsWalker struct {
	opts   Options
	ids    map[string]bool // __id__ of the nodes seen
	cached []string        // __id__ CachedNodes refer to
	budget int
}

func (w *skopsWalker) fail(at, reason string, args ...any) error {
	return findingAt(FormatSkops, "schema.json", at, reason, args...)
}

// value walks any JSON value: every object with a __loader__ is a node.
func (w *skopsWalker) value(v any, at string) error {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["__loader__"]; ok {
			return w.node(x, at)
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if err := w.value(x[k], at+"."+k); err != nil {
				return err
			}
		}
	case []any:
		for i, c := range x {
			if err := w.value(c, at+"["+itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *skopsWalker) trusted(typ string, defaults ...[]string) bool {
	for _, d := range defaults {
		if slices.Contains(d, typ) {
			return true
		}
	}
	return slices.Contains(w.opts.Skops.Trusted, typ)
}

func (w *skopsWalker) untrusted(at, loader, typ, why string) error {
	return w.fail(at, "%s %q is outside skops' default trusted set%s; skops.io.load refuses it unless trusted; "+
		"list it in content.formats.skops.trusted to admit it", loader, typ, why)
}

func (w *skopsWalker) node(m map[string]any, at string) error {
	if w.budget--; w.budget < 0 {
		return w.fail("", "more than %d nodes", maxSkopsNodes)
	}
	loader, _ := m["__loader__"].(string)
	class, ok1 := m["__class__"].(string)
	module, ok2 := m["__module__"].(string)
	if loader == "" || !ok1 || !ok2 {
		return w.fail(at, "a node needs string __loader__, __class__ and __module__")
	}
	typ := module + "." + class
	if id, ok := m["__id__"]; ok {
		n, ok := id.(jsonNumber)
		if !ok {
			return w.fail(at, "__id__ is not a number")
		}
		if loader == "CachedNode" {
			w.cached = append(w.cached, string(n))
		} else {
			w.ids[string(n)] = true
		}
	} else if loader == "CachedNode" {
		return w.fail(at, "CachedNode without __id__")
	}
	var err error
	switch loader {
	case "DictNode":
		if !w.trusted(typ, []string{"builtins.dict", "collections.OrderedDict"}) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "DefaultDictNode":
		// skops trusts exactly collections.defaultdict here, whatever
		// the caller trusts.
		if typ != "collections.defaultdict" {
			err = w.untrusted(at, loader, typ, " (only collections.defaultdict)")
		}
	case "ListNode", "SetNode", "TupleNode", "BytesNode", "BytearrayNode", "SliceNode":
		want := "builtins." + strings.ToLower(strings.TrimSuffix(loader, "Node"))
		if !w.trusted(typ, []string{want}) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "FunctionNode":
		if !skopsUfunc(module, class) && !w.trusted(typ) {
			err = w.untrusted(at, loader, typ, " (numpy and scipy ufuncs)")
		}
	case "TypeNode":
		if !w.trusted(typ, skopsPrimitives, skopsContainers, skopsNumpyScalars) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "ObjectNode":
		if !skopsSklearnEstimator(module, class) && !w.trusted(typ, skopsSklearnInternal) {
			err = w.untrusted(at, loader, typ, " (scikit-learn estimators; an untrusted class runs its own __setstate__ on load)")
		}
	case "PartialNode", "ConstructorFromReduceNode", "DTypeNode":
		if !w.trusted(typ) {
			err = w.untrusted(at, loader, typ, " (this loader trusts no type by default: it calls what it loads)")
		}
	case "MethodNode":
		err = w.method(m, at, typ)
	case "OperatorFuncNode":
		switch {
		case module != "operator":
			err = w.fail(at, "OperatorFuncNode module must be operator")
		case !w.trusted(typ):
			err = w.untrusted(at, loader, typ, " (CVE-2025-54412: operator functions call arbitrary attributes; this loader trusts no type by default)")
		}
	case "JsonNode":
		// json.loads of content; skops imports nothing for it.
		if _, ok := m["content"].(string); !ok {
			err = w.fail(at, "JsonNode content is not a string")
		}
	case "NdArrayNode":
		if !w.trusted(typ, []string{"numpy.ndarray"}, skopsNumpyScalars) {
			err = w.untrusted(at, loader, typ, "")
		} else if t, _ := m["type"].(string); t != "numpy" && t != "json" {
			err = w.fail(at, "NdArrayNode type %q is not numpy or json", t)
		}
	case "MaskedArrayNode":
		if !w.trusted(typ, []string{"numpy.ma.core.MaskedArray"}) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "RandomStateNode":
		if !w.trusted(typ, []string{"numpy.random.mtrand.RandomState"}) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "RandomGeneratorNode":
		if !w.trusted(typ, []string{"numpy.random._generator.Generator"}) {
			err = w.untrusted(at, loader, typ, "")
		} else {
			err = w.bitGenerator(m, at)
		}
	case "SparseMatrixNode":
		if !w.trusted(typ, []string{"scipy.sparse._matrix.spmatrix", "scipy.sparse._base.spmatrix", "scipy.sparse.base.spmatrix"}) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "TreeNode":
		if !w.trusted(typ, []string{"sklearn.tree._tree.Tree"}) {
			err = w.untrusted(at, loader, typ, "")
		}
	case "LossNode":
		if !w.trusted(typ, skopsAllowedLosses) {
			err = w.untrusted(at, loader, typ, " (scikit-learn loss functions)")
		}
	case "CachedNode":
		// resolved to the node that declared the __id__ (checked there)
	default:
		err = w.fail(at, "unknown skops loader %q", loader)
	}
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if strings.HasPrefix(k, "__") && strings.HasSuffix(k, "__") && k != "__reduce__" {
			continue
		}
		if err := w.value(m[k], at+"."+k); err != nil {
			return err
		}
	}
	return nil
}

// method checks a MethodNode: getattr(obj, func) on a loaded object. skops
// reports both the type and "type.func" as untrusted unless listed
// (the CVE-2025-54413 fix); the object must be of the node's type.
func (w *skopsWalker) method(m map[string]any, at, typ string) error {
	c, _ := m["content"].(map[string]any)
	if c == nil {
		return w.fail(at, "MethodNode without content")
	}
	fn, _ := c["func"].(string)
	obj, _ := c["obj"].(map[string]any)
	if fn == "" || obj == nil {
		return w.fail(at, "MethodNode content needs func and obj")
	}
	om, _ := obj["__module__"].(string)
	oc, _ := obj["__class__"].(string)
	if om+"."+oc != typ {
		return w.fail(at, "MethodNode of %s binds an object of type %s.%s", typ, om, oc)
	}
	if !w.trusted(typ) {
		return w.untrusted(at, "MethodNode", typ, " (CVE-2025-54413: methods of loaded objects; this loader trusts no type by default)")
	}
	if !w.trusted(typ + "." + fn) {
		return w.untrusted(at, "MethodNode", typ+"."+fn, " (CVE-2025-54413: methods of loaded objects)")
	}
	return nil
}

// bitGenerator checks the bit generator a RandomGeneratorNode instantiates
// (gettype("numpy.random", state["bit_generator"])).
func (w *skopsWalker) bitGenerator(m map[string]any, at string) error {
	name := ""
	if c, _ := m["content"].(map[string]any); c != nil {
		if bg, _ := c["bit_generator"].(map[string]any); bg != nil {
			if bc, _ := bg["content"].(map[string]any); bc != nil {
				if jn, _ := bc["bit_generator"].(map[string]any); jn != nil && jn["__loader__"] == "JsonNode" {
					if s, ok := jn["content"].(string); ok {
						_ = json.Unmarshal([]byte(s), &name)
					}
				}
			}
		}
	}
	if !slices.Contains(skopsBitGenerators, name) {
		return w.fail(at, "RandomGeneratorNode bit generator %q is not one of numpy's (%s)", name, strings.Join(skopsBitGenerators, ", "))
	}
	return nil
}

// CheckSkopsTrusted reports an entry of SkopsOptions.Trusted that is not
// a dotted Python path (module.Name, or module.Class.method for methods).
func CheckSkopsTrusted(trusted []string) error {
	for _, t := range trusted {
		if !isDottedPath(t) || !strings.Contains(t, ".") {
			return fmt.Errorf("content: formats.skops.trusted: %q is not a dotted Python path (module.Name)", t)
		}
	}
	return nil
}
