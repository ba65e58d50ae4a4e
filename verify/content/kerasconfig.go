package content

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// KerasOptions configure the Keras configuration check (the config.json of
// a Keras v3 .keras archive, the model_config and training_config root
// attributes of a legacy Keras HDF5 file). Policy key content.formats.keras.
type KerasOptions struct {
	// Modules admits Python modules besides Keras's own namespaces
	// (KerasNamespaces) in the "module" of a serialised object: each entry
	// admits that module and its submodules ("mypkg" admits
	// "mypkg.layers"). Keras imports an object's module by name
	// (CVE-2025-1550), so list only packages installed where models are
	// loaded that are safe to import (content.formats.keras.modules).
	Modules []string
	// Registered admits custom-object registered names ("Package>Name", as
	// keras.saving.register_keras_serializable writes them) besides those
	// of Keras's own packages (content.formats.keras.registered).
	Registered []string
	// AllowLambda admits Lambda layers and __lambda__ objects, whose
	// marshalled Python bytecode Keras runs when loaded with
	// safe_mode=False (CVE-2024-3660). Unsafe; per rule
	// (content.formats.keras.lambda: allow). The module and function
	// rules still apply inside them.
	AllowLambda bool
}

// KerasNamespaces are the top-level packages whose modules a serialised
// Keras object may name: Keras itself (keras, keras.src, ...) and the
// packages Keras 3's deserialiser imports from (keras_hub, keras_cv,
// keras_nlp; serialization_lib._retrieve_class_or_fn). A "module" equal to
// one of them or below it ("keras.layers", "keras_hub.src.models.bert")
// passes the namespace rule; the denied modules and names below still
// apply.
var KerasNamespaces = []string{"keras", "keras_hub", "keras_cv", "keras_nlp"}

// kerasRegisteredPackages are the registered-name packages of Keras's own
// packages ("keras_hub>BertBackbone").
var kerasRegisteredPackages = []string{"keras", "keras_hub", "keras_cv", "keras_nlp"}

// kerasDeniedModules are modules inside Keras's namespaces whose members
// touch files, the network, the process or the deserialiser's own state,
// and that no model configuration names: a "module" equal to one or below
// it is refused (load_model, save_model, get_file, the callbacks that write
// files or post to a URL, the dataset loaders, global_state's
// set_global_attribute that turns safe_mode off, python_utils.func_load
// that unmarshals bytecode).
var kerasDeniedModules = []string{
	"keras.saving", "keras.src.saving", "keras.src.legacy.saving",
	"keras.utils", "keras.src.utils",
	"keras.config", "keras.src.backend.config", "keras.src.backend.common.global_state",
	"keras.callbacks", "keras.src.callbacks",
	"keras.datasets", "keras.src.datasets",
	"keras.preprocessing", "keras.src.legacy.preprocessing",
	"keras.export", "keras.src.export",
	"keras.visualization", "keras.src.visualization",
	// KerasHub (and KerasNLP, its former name): preset loading and saving
	// (get_file, load_json, tf_copy_gfile_to_cache, upload_preset), the
	// Hugging Face and timm checkpoint converters that read files by
	// path, ImageNet/COCO helpers that download (decode_imagenet_predictions
	// calls keras.utils.get_file), the vLLM bridge that opens files.
	"keras_hub.src.utils.preset_utils", "keras_hub.src.utils.transformers", "keras_hub.src.utils.timm",
	"keras_hub.src.utils.imagenet", "keras_hub.utils", "keras_hub.src.vllm",
	"keras_nlp.src.utils.preset_utils", "keras_nlp.utils",
}

// kerasDeniedNames are class and function names refused in any module
// (also as a bare function name, "module": "builtins"): Keras 3's own
// NON_MODELING_APIS (serialization_lib.py: clear_session,
// enable_unsafe_deserialization, load_model, model_from_json, save_model,
// the *_dataset_from_directory loaders, load_img, save_img,
// (de)serialize_keras_object, load_weights, save_weights,
// register_keras_serializable, get_file), the loaders and writers of the
// legacy formats, the layers that load outside code or files from their
// configuration (TFSMLayer: a SavedModel path; TorchModuleWrapper: a
// torch.load pickle; JaxLayer/FlaxLayer: serialised functions), the
// callbacks that write files or reach the network, and the Python built-ins
// that run code, import, open files or read and write attributes (older
// Keras 3 releases resolved a "builtins" function by import).
var kerasDeniedNames = map[string]bool{
	// NON_MODELING_APIS (last components)
	"clear_session": true, "enable_unsafe_deserialization": true, "load_model": true, "model_from_json": true,
	"save_model": true, "image_dataset_from_directory": true, "load_img": true, "save_img": true,
	"text_dataset_from_directory": true, "deserialize_keras_object": true, "load_weights": true,
	"register_keras_serializable": true, "save_weights": true, "serialize_keras_object": true,
	"audio_dataset_from_directory": true, "get_file": true,
	// other loaders, writers and deserialiser state
	"model_from_yaml": true, "model_from_config": true, "load_model_from_hdf5": true, "save_model_to_hdf5": true,
	"load_weights_from_hdf5_group": true, "save_weights_to_hdf5_group": true, "func_load": true, "func_dump": true,
	"set_global_attribute": true, "disable_interactive_logging": true, "enable_interactive_logging": true,
	"extract_archive": true, "validate_file": true, "plot_model": true, "model_to_dot": true,
	"save_serialized_object": true, "load_serialized_object": true, "upload_preset": true,
	// KerasHub preset and download helpers (keras_hub.src.utils.preset_utils, imagenet_utils)
	"load_json": true, "tf_copy_gfile_to_cache": true, "check_file_exists": true, "get_preset_loader": true,
	"get_preset_saver": true, "decode_imagenet_predictions": true,
	// layers that load code or files named in their configuration
	"TFSMLayer": true, "TorchModuleWrapper": true, "JaxLayer": true, "FlaxLayer": true,
	// callbacks
	"TensorBoard": true, "ModelCheckpoint": true, "BackupAndRestore": true, "CSVLogger": true, "RemoteMonitor": true,
	"LambdaCallback": true,
	// Python built-ins that run code, import, open files or reach attributes
	"__import__": true, "eval": true, "exec": true, "compile": true, "open": true, "input": true, "breakpoint": true,
	"getattr": true, "setattr": true, "delattr": true, "globals": true, "locals": true, "vars": true,
	"exit": true, "quit": true, "help": true, "print": true, "__build_class__": true, "memoryview": true,
}

// kerasFileKeys are configuration keys whose string value Keras's lookup
// layers (StringLookup, IntegerLookup, TextVectorization) and KerasHub's
// tokenizers read as a file path (local, or remote through tf.io.gfile):
// a configuration that sets one to a string reads a file of the loader's
// choosing (Keras and KerasHub safe-mode fixes, 2025-2026). Saved models
// keep these in assets/, with null in the configuration.
var kerasFileKeys = []string{"vocabulary", "merges", "proto", "spm_proto", "idf_weights"}

// tfOpLambdaModules are the TensorFlow API namespaces a tf.keras 2.x
// TFOpLambda layer may call (its "function", "math.add"; SlicingOpLambda's
// "__operators__.getitem"). tf.keras resolves the name against the whole
// tf API (tf.io.write_file, tf.io.read_file, tf.raw_ops.*, py_function),
// so anything else is refused. Single names (tf.concat, tf.reshape) pass
// unless kerasDeniedTFOps lists them.
var tfOpLambdaModules = []string{"math", "nn", "linalg", "image", "signal", "bitwise", "__operators__", "random", "dtypes", "experimental.numpy"}

var kerasDeniedTFOps = map[string]bool{"py_function": true, "numpy_function": true, "py_func": true, "print": true,
	"load_op_library": true, "load_library": true, "function": true, "autograph": true, "Module": true, "saved_model": true}

// checkKerasConfig checks a Keras model configuration, JSON: the
// config.json of a Keras v3 .keras archive, or the model_config and
// training_config attributes of a legacy Keras HDF5 file. format names the
// container the finding is reported for, where the place inside it
// ("config.json", "root attribute model_config"). It returns a *Finding
// naming what was found, its JSON path and the policy key that changes the
// verdict; nil for a configuration Keras deserialises without running code
// of the file, importing modules outside its own namespaces or calling its
// own file and network functions.
//
// The JSON is parsed strictly (UTF-8, no duplicate keys, which Python's
// json keeps the last of, so a duplicate could hide a value; depth at most
// 128), with the NaN, Infinity and -Infinity Python's json writes for
// non-finite floats (a zip's top-level config.json is parsed so by its
// JSON check too, zip.go), and every object is checked, at any depth:
// nested models (a
// Functional or Sequential as a layer), build_config, compile_config
// (optimizer, loss, metrics, loss_weights), and legacy tf.keras shapes
// (class_name and config without module) alike. The checks (see
// docs/model-gate.md):
//   - Lambda layers (Keras 3: a "__lambda__" object of marshalled Python
//     bytecode or a named function; legacy tf.keras: "function" with
//     "function_type") and "__lambda__" objects anywhere (CVE-2024-3660),
//     unless opts.Keras.AllowLambda;
//   - TFOpLambda/SlicingOpLambda calling a TensorFlow function outside
//     tfOpLambdaModules;
//   - a "module" outside KerasNamespaces and opts.Keras.Modules
//     (CVE-2025-1550), or in kerasDeniedModules; "builtins" only for
//     function objects;
//   - a class or function name in kerasDeniedNames (CVE-2025-9906:
//     enable_unsafe_deserialization; get_file and other in-namespace
//     gadgets, CVE-2025-8747);
//   - a registered_name of a custom object ("Package>Name") outside Keras's
//     packages and opts.Keras.Registered;
//   - a lookup/tokenizer file path (kerasFileKeys) given as a string.
//
// Memory: the configuration is held (the caller bounds it, MaxConfigBytes)
// plus, per object being parsed, its members' strings.
func checkKerasConfig(opts Options, format, where string, cfg []byte) error {
	if !utf8.Valid(cfg) {
		return newFinding(format, -1, "%s: not valid UTF-8", where)
	}
	k := kerasChecker{opts: opts.Keras}
	p := &jsonParser{b: cfg, pyFloats: true, keep: kerasReadKey, maxValues: kerasMaxValues,
		tooMany: "more than %d JSON values (the limit that bounds a Keras configuration's parse; no key raises it)"}
	// A __lambda__ object is reported as the Lambda layer that holds it
	// when there is one (objects are checked innermost first): it is held
	// as pending until its enclosing objects are done, or another problem
	// is found.
	var pending *kerasReject
	p.onObject = func(m map[string]any) error {
		is := k.object(m)
		if is.what == "" {
			return nil
		}
		r := &kerasReject{path: jsonPath(p.path), kerasIssue: is}
		if is.lambdaObject && pending == nil {
			pending = r
			return nil
		}
		if pending != nil && !is.lambdaLayer {
			return pending
		}
		return r
	}
	p.ws()
	v, err := p.value(0, "")
	if err == nil && pending != nil {
		err = pending
	}
	if err != nil {
		if r, ok := err.(*kerasReject); ok {
			return newFinding(format, -1, "%s: %s at %s: %s", where, r.what, r.path, r.why)
		}
		if f, ok := err.(*Finding); ok {
			return newFinding(format, -1, "%s: %s (at byte %d)", where, f.Reason, f.Offset)
		}
		return newFinding(format, -1, "%s: %v", where, err)
	}
	p.ws()
	if p.i != len(p.b) {
		return newFinding(format, -1, "%s: unexpected data after the JSON value", where)
	}
	if _, ok := v.(map[string]any); !ok {
		return newFinding(format, -1, "%s: not a JSON object (a Keras model configuration is an object with class_name and config)", where)
	}
	return nil
}

// kerasIssue is what an object of the configuration was refused for: what
// was found ("Lambda layer", "object \"X\" from module \"os\"") and why,
// with the policy key that changes it.
type kerasIssue struct {
	what, why    string
	lambdaObject bool // a __lambda__ object
	lambdaLayer  bool // a Lambda layer
}

// kerasReject carries a rejection out of the JSON parser with its path.
type kerasReject struct {
	path string
	kerasIssue
}

func (r *kerasReject) Error() string { return r.what + " at " + r.path + ": " + r.why }

func issue(what, why string, args ...any) kerasIssue {
	return kerasIssue{what: what, why: fmt.Sprintf(why, args...)}
}

type kerasChecker struct{ opts KerasOptions }

// Keys of the policy: named in findings.
const (
	kerasKeyModules    = "content.formats.keras.modules"
	kerasKeyRegistered = "content.formats.keras.registered"
	kerasKeyLambda     = "content.formats.keras.lambda: allow"
)

// object checks one JSON object of the configuration (its own members;
// nested objects were checked when they were parsed); a zero kerasIssue
// when it passes.
func (k *kerasChecker) object(m map[string]any) kerasIssue {
	for _, fk := range kerasFileKeys {
		if s, ok := m[fk].(string); ok && s != "" {
			return issue(fmt.Sprintf("%q set to the string %s", fk, strqQuote(clip(s))),
				"Keras lookup layers and KerasHub tokenizers read it as a file path or URL on load (arbitrary file read); a saved model keeps it in assets/; no key admits it")
		}
	}
	cv, hasClass := m["class_name"]
	if !hasClass {
		return kerasIssue{}
	}
	cls, ok := cv.(string)
	if !ok {
		return issue("class_name that is not a string", "Keras cannot name the object")
	}
	if (cls == "Lambda" || cls == "__lambda__") && !k.opts.AllowLambda {
		is := issue("Lambda layer", "Keras deserialises its marshalled Python bytecode (or a function it names), which runs code of the file (CVE-2024-3660; "+
			"safe_mode only guards it until something turns safe_mode off, CVE-2025-9906); %s admits it (unsafe)", kerasKeyLambda)
		is.lambdaLayer = true
		if cls == "__lambda__" {
			is.what, is.lambdaLayer, is.lambdaObject = "__lambda__ object (a Python lambda)", false, true
		}
		return is
	}
	if cls == "TFOpLambda" || cls == "SlicingOpLambda" {
		if is := tfOpLambdaFunction(cls, m); is.what != "" {
			return is
		}
	}
	module, hasModule := m["module"]
	mod := ""
	if hasModule && module != nil {
		s, ok := module.(string)
		if !ok {
			return issue(fmt.Sprintf("object %s with a module that is not a string", strqQuote(cls)), "Keras cannot resolve it")
		}
		mod = s
	}
	name := cls
	if cls == "function" {
		fn, ok := m["config"].(string)
		if !ok && m["config"] != nil {
			return issue("function object whose config is not a function name", "Keras cannot resolve it")
		}
		name = fn
	}
	if cls == "__typespec__" {
		if s, ok := m["spec_name"].(string); ok {
			name = s
		}
	}
	if kerasDeniedNames[name] || kerasDeniedNames[lastDotted(name)] {
		full := name
		if mod != "" {
			full = mod + "." + name
		}
		return issue(fmt.Sprintf("%s %s", kerasObjectWord(cls), strqQuote(full)),
			"a function or class that touches files, the network, the process or the deserialiser's safe mode, not a modeling object "+
				"(older Keras releases resolve it; CVE-2025-9906, CVE-2025-8747); no key admits it")
	}
	if hasModule && module != nil {
		if is := k.module(cls, mod); is.what != "" {
			return is
		}
	}
	if rv, ok := m["registered_name"]; ok && rv != nil {
		rn, ok := rv.(string)
		if !ok {
			return issue(fmt.Sprintf("object %s with a registered_name that is not a string", strqQuote(cls)), "Keras cannot resolve it")
		}
		if is := k.registered(cls, rn); is.what != "" {
			return is
		}
	}
	return kerasIssue{}
}

func kerasObjectWord(cls string) string {
	if cls == "function" {
		return "function"
	}
	return "class"
}

// module checks an object's "module".
func (k *kerasChecker) module(cls, mod string) kerasIssue {
	what := fmt.Sprintf("object %s from module %s", strqQuote(cls), strqQuote(clip(mod)))
	if mod == "builtins" {
		if cls == "function" {
			return kerasIssue{} // resolved against Keras's built-in modules (activations, losses, ...)
		}
		return issue(what, "Keras resolves only functions there; no key admits it")
	}
	if !isDottedPath(mod) {
		return issue(what, "not a Python module name; no key admits it")
	}
	for _, d := range kerasDeniedModules {
		if underModule(mod, d) {
			return issue(what, "a module inside Keras made of functions that load, save, download or change the deserialiser's safe mode "+
				"(CVE-2025-9906, CVE-2025-8747); no key admits it")
		}
	}
	for _, ns := range KerasNamespaces {
		if underModule(mod, ns) {
			return kerasIssue{}
		}
	}
	for _, a := range k.opts.Modules {
		if underModule(mod, a) {
			return kerasIssue{}
		}
	}
	return issue(what, "outside Keras's namespaces (%s): Keras imports the module by name when the model loads (CVE-2025-1550); %s admits a module you trust",
		strings.Join(KerasNamespaces, ", "), kerasKeyModules)
}

// registered checks an object's registered_name.
func (k *kerasChecker) registered(cls, rn string) kerasIssue {
	pkg, _, custom := strings.Cut(rn, ">")
	if !custom {
		return kerasIssue{} // a built-in's own name (Keras checks it names the same object)
	}
	for _, p := range kerasRegisteredPackages {
		if pkg == p {
			return kerasIssue{}
		}
	}
	for _, a := range k.opts.Registered {
		if rn == a {
			return kerasIssue{}
		}
	}
	return issue(fmt.Sprintf("custom object %s (class %s)", strqQuote(clip(rn)), strqQuote(cls)),
		"Keras builds it from code registered outside the model file; %s admits it", kerasKeyRegistered)
}

// tfOpLambdaFunction checks the TensorFlow function of a tf.keras 2.x
// TFOpLambda or SlicingOpLambda layer (config.function, "math.add").
func tfOpLambdaFunction(cls string, m map[string]any) kerasIssue {
	cfg, _ := m["config"].(map[string]any)
	fn, ok := cfg["function"].(string)
	if !ok {
		return issue(cls+" layer without a TensorFlow function name", "tf.keras cannot resolve it")
	}
	fn = strings.TrimPrefix(fn, "tf.")
	what := fmt.Sprintf("%s layer calling TensorFlow function %s", cls, strqQuote(clip(fn)))
	if !isDottedPath(fn) || kerasDeniedTFOps[fn] || kerasDeniedTFOps[lastDotted(fn)] {
		return issue(what, "not an array operation; no key admits it")
	}
	if !strings.Contains(fn, ".") {
		return kerasIssue{}
	}
	for _, ns := range tfOpLambdaModules {
		if strings.HasPrefix(fn, ns+".") {
			return kerasIssue{}
		}
	}
	return issue(what, "outside the array-operation namespaces (%s): tf.keras resolves it against the whole TensorFlow API (tf.io.write_file, tf.raw_ops.*); no key admits it",
		strings.Join(tfOpLambdaModules, ", "))
}

// underModule reports whether mod is m or one of its submodules.
func underModule(mod, m string) bool {
	return mod == m || strings.HasPrefix(mod, m+".")
}

func lastDotted(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// clip shortens a value quoted in a finding.
func clip(s string) string {
	if len(s) > 200 {
		i := 200
		for i > 0 && !utf8.RuneStart(s[i]) {
			i--
		}
		return s[:i] + "..."
	}
	return s
}

// CheckKerasModule reports whether m can be listed in KerasOptions.Modules:
// a dotted Python module name, not builtins (eval, exec, open).
func CheckKerasModule(m string) error {
	if !isDottedPath(m) {
		return fmt.Errorf("%q is not a Python module name", m)
	}
	if m == "builtins" {
		return fmt.Errorf("%q cannot be admitted (it holds eval, exec and open)", m)
	}
	return nil
}

// CheckKerasRegistered reports whether r can be listed in
// KerasOptions.Registered: "Package>Name".
func CheckKerasRegistered(r string) error {
	pkg, name, ok := strings.Cut(r, ">")
	if !ok || pkg == "" || name == "" || strings.Contains(name, ">") {
		return fmt.Errorf("%q is not a registered name (Package>Name)", r)
	}
	return nil
}

// validKerasOptions reports option values that cannot be honoured.
func validKerasOptions(o KerasOptions) error {
	for _, m := range o.Modules {
		if err := CheckKerasModule(m); err != nil {
			return fmt.Errorf("content: formats.keras.modules: %v", err)
		}
	}
	for _, r := range o.Registered {
		if err := CheckKerasRegistered(r); err != nil {
			return fmt.Errorf("content: formats.keras.registered: %v", err)
		}
	}
	return nil
}

// pathKey is a JSON path step for an object key.
func pathKey(k string) string {
	if isDottedPath(k) && !strings.Contains(k, ".") {
		return "." + k
	}
	return "[" + strqQuote(k) + "]"
}

// jsonPath renders a parser path ("$.config.layers[2].config").
func jsonPath(p []string) string { return "$" + strings.Join(p, "") }

// shallowObject keeps an object's string members and its child objects'
// string members: what the check of the enclosing object reads
// (config.function of a TFOpLambda, a function object's config).
func shallowObject(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case string:
			out[k] = t
		case map[string]any:
			c := map[string]any{}
			for ck, cv := range t {
				if s, ok := cv.(string); ok {
					c[ck] = s
				}
			}
			out[k] = c
		}
	}
	return out
}
