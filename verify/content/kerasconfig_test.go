package content

import (
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// kerasSample is one of the sample configurations (modelcorpus.KerasConfig:
// Keras 3 Sequential and Functional, legacy tf.keras model_config and
// training_config, written field for field from Keras's serialisation
// code).
func kerasSample(t testing.TB, name string) string {
	t.Helper()
	return modelcorpus.KerasConfig(name)
}

func TestKerasConfigBenign(t *testing.T) {
	for _, name := range []string{"sequential.json", "functional.json", "legacy_model_config.json", "legacy_training_config.json"} {
		if err := checkKerasConfig(Options{}, FormatKeras, name, []byte(kerasSample(t, name))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// keras_hub objects: registered under the keras_hub package, functions
	// from keras_hub's own modules.
	hub := `{"module": "keras_hub.src.models.gpt2.gpt2_backbone", "class_name": "GPT2Backbone", "config": {"name": "gpt2_backbone", "trainable": true,
	"vocabulary_size": 50257, "activation": {"module": "keras_hub.src.utils.keras_utils", "class_name": "function", "config": "gelu_approximate", "registered_name": "keras_hub>gelu_approximate"}},
	"registered_name": "keras_hub>GPT2Backbone"}`
	if err := checkKerasConfig(Options{}, FormatKeras, "config.json", []byte(hub)); err != nil {
		t.Errorf("keras_hub: %v", err)
	}
	// a StringLookup whose vocabulary is a list (kept in the config) or
	// null (kept in assets/)
	lookup := `{"module": "keras.layers", "class_name": "StringLookup", "config": {"name": "lookup", "vocabulary": ["a", "b"], "idf_weights": null, "vocabulary_dtype": "string"}, "registered_name": null}`
	if err := checkKerasConfig(Options{}, FormatKeras, "config.json", []byte(lookup)); err != nil {
		t.Errorf("lookup: %v", err)
	}
	// Python's json writes non-finite floats as NaN, Infinity, -Infinity
	relu := `{"module": "keras.layers", "class_name": "ReLU", "config": {"name": "relu", "max_value": Infinity, "negative_slope": 0.0, "threshold": -Infinity, "x": [NaN]}, "registered_name": null}`
	if err := checkKerasConfig(Options{}, FormatKeras, "config.json", []byte(relu)); err != nil {
		t.Errorf("non-finite floats: %v", err)
	}
}

// kerasAttack is a configuration Keras would load code, import a module or
// touch files for; each is refused only by the check it names.
type kerasAttack struct {
	name, cfg string
	want      []string      // substrings of the finding
	admit     *KerasOptions // options that admit it, nil when no key does
}

func kerasAttacks(t testing.TB) []kerasAttack {
	seq := kerasSample(t, "sequential.json")
	fn := kerasSample(t, "functional.json")
	legacy := kerasSample(t, "legacy_model_config.json")
	train := kerasSample(t, "legacy_training_config.json")
	dropout := `{"module": "keras.layers", "class_name": "Dropout"`
	// Keras 3 Lambda with marshalled bytecode (what saving a lambda writes)
	lambda3 := `{"module": "keras.layers", "class_name": "Lambda", "config": {"name": "lambda", "trainable": true, "dtype": "float32",
		"function": {"class_name": "__lambda__", "config": {"value": "4wEAAAAAAAAAAAAAAAEAAAADAAAA8wQAAAB8AFMAqQFOqQCpAdoBeHICAAAAcgIAAAD6CDxzdGRpbj7aCDxsYW1iZGE+AQAAAPMAAAAA", "defaults": null, "closure": null}},
		"arguments": {}}, "registered_name": null, "build_config": {"input_shape": [null, 8]}}`
	withLayer := func(base, layer string) string {
		// insert a layer before the Dropout layer of sequential.json
		i := strings.Index(base, dropout)
		if i < 0 {
			t.Fatal("sample changed")
		}
		return base[:i] + layer + ", " + base[i:]
	}
	nestedFn := func(layer string) string {
		// inside the Sequential nested in functional.json
		i := strings.Index(fn, `{"module": "keras.layers", "class_name": "LayerNormalization"`)
		return fn[:i] + layer + ", " + fn[i:]
	}
	return []kerasAttack{
		{name: "lambda-bytecode", cfg: withLayer(seq, lambda3), want: []string{"config.json: Lambda layer at $.config.layers[2]: ", "CVE-2024-3660", "content.formats.keras.lambda: allow"},
			admit: &KerasOptions{AllowLambda: true}},
		{name: "lambda-layer-named-function", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "Lambda", "config": {"name": "l", "function": {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "relu"}, "arguments": {}}, "registered_name": null}`),
			want: []string{"Lambda layer", "$.config.layers[2]"}, admit: &KerasOptions{AllowLambda: true}},
		{name: "lambda-nested-model", cfg: nestedFn(lambda3), want: []string{"Lambda layer at $.config.layers[1].config.layers[2]: "}, admit: &KerasOptions{AllowLambda: true}},
		{name: "lambda-object-as-activation", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 1, "activation": {"class_name": "__lambda__", "config": {"value": "4wEAAAAA", "defaults": null, "closure": null}}}, "registered_name": "Custom>Nope"}`),
			want: []string{"__lambda__ object (a Python lambda) at $.config.layers[2].config.activation: "}, admit: &KerasOptions{AllowLambda: true, Registered: []string{"Custom>Nope"}}},
		{name: "lambda-legacy", cfg: strings.Replace(legacy, `{"class_name": "TFOpLambda"`, `{"class_name": "Lambda", "config": {"name": "lambda", "function": ["4wEAAAAAAAAA", null, null], "function_type": "lambda", "module": "__main__", "output_shape": null, "arguments": {}}}, {"class_name": "TFOpLambda"`, 1),
			want: []string{"Lambda layer at $.config.layers[2]: "}, admit: &KerasOptions{AllowLambda: true}},
		{name: "lambda-escaped-name", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "L\u0061mbda", "config": {"name": "l"}, "registered_name": null}`),
			want: []string{"Lambda layer"}, admit: &KerasOptions{AllowLambda: true}},
		{name: "duplicate-key-hides-lambda", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "Dense", "class_name": "Lambda", "config": {"name": "l"}}`),
			want: []string{"duplicate key \"class_name\""}},
		// CVE-2025-1550: any module imported by name
		{name: "module-outside-namespace", cfg: withLayer(seq, `{"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}`),
			want: []string{"module \"os\"", "CVE-2025-1550", "content.formats.keras.modules", "$.config.layers[2]"}},
		{name: "module-lookalike", cfg: withLayer(seq, `{"module": "kerasx.layers", "class_name": "Dense", "config": {}, "registered_name": null}`),
			want: []string{"module \"kerasx.layers\""}, admit: &KerasOptions{Modules: []string{"kerasx"}}},
		{name: "module-in-compile-config", cfg: strings.Replace(seq, `"loss": {"module": "keras.losses"`, `"loss": {"module": "subprocess"`, 1),
			want: []string{"module \"subprocess\"", "$.compile_config.loss"}},
		{name: "module-in-loss-weights", cfg: strings.Replace(seq, `"loss_weights": null`, `"loss_weights": {"module": "builtins", "class_name": "eval", "config": {}}`, 1),
			want: []string{"\"builtins.eval\"", "$.compile_config.loss_weights"}},
		{name: "module-in-build-config", cfg: strings.Replace(seq, `"build_config": {"input_shape": [null, 4]}, "compile_config"`, `"build_config": {"input_shape": {"module": "runpy", "class_name": "function", "config": "run_path"}}, "compile_config"`, 1),
			want: []string{"module \"runpy\"", "$.build_config.input_shape"}},
		{name: "module-in-legacy-training-config", cfg: strings.Replace(train, `{"class_name": "Adam"`, `{"class_name": "Adam", "module": "pty"`, 1),
			want: []string{"module \"pty\"", "$.optimizer_config"}},
		{name: "module-not-a-name", cfg: withLayer(seq, `{"module": "keras/../os", "class_name": "Dense", "config": {}}`), want: []string{"not a Python module name"}},
		{name: "builtins-class", cfg: withLayer(seq, `{"module": "builtins", "class_name": "type", "config": {}}`), want: []string{"Keras resolves only functions there"}},
		// CVE-2025-9906: safe_mode switched off from the config
		{name: "enable-unsafe-deserialization", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 1, "activation": {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization", "registered_name": "function"}}}`),
			want: []string{"keras.config.enable_unsafe_deserialization", "CVE-2025-9906", "$.config.layers[2].config.activation"}},
		{name: "set-global-attribute", cfg: withLayer(seq, `{"module": "keras.src.backend.common.global_state", "class_name": "function", "config": "set_global_attribute", "registered_name": "function"}`),
			want: []string{"set_global_attribute"}},
		{name: "denied-module", cfg: withLayer(seq, `{"module": "keras.src.saving.saving_lib", "class_name": "H5IOStore", "config": {}}`),
			want: []string{"module \"keras.src.saving.saving_lib\""}},
		// KerasHub's preset, converter and download helpers
		{name: "keras-hub-preset-loader", cfg: withLayer(seq, `{"module": "keras_hub.src.utils.preset_utils", "class_name": "KerasPresetLoader", "config": {"preset": "/etc", "config": {}}, "registered_name": null}`),
			want: []string{`module "keras_hub.src.utils.preset_utils"`}},
		{name: "keras-hub-safetensor-loader", cfg: withLayer(seq, `{"module": "keras_hub.src.utils.transformers.safetensor_utils", "class_name": "SafetensorLoader", "config": {"preset": "/root"}}`),
			want: []string{`module "keras_hub.src.utils.transformers.safetensor_utils"`}},
		{name: "keras-hub-load-json", cfg: withLayer(seq, `{"module": "keras_hub.src.models.backbone", "class_name": "function", "config": "load_json", "registered_name": "function"}`),
			want: []string{"load_json"}},
		{name: "keras-hub-imagenet", cfg: withLayer(seq, `{"module": "keras_hub.src.utils.imagenet.imagenet_utils", "class_name": "function", "config": "imagenet_id_to_name", "registered_name": "function"}`),
			want: []string{`module "keras_hub.src.utils.imagenet.imagenet_utils"`}},
		// CVE-2025-8747 and other in-namespace gadgets
		{name: "get-file", cfg: nestedFn(`{"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 1, "activation": {"module": "keras.src.models.model", "class_name": "function", "config": "get_file", "registered_name": "function"}}}`),
			want: []string{"get_file", "$.config.layers[1].config.layers[2].config.activation"}},
		{name: "load-model-builtins", cfg: withLayer(seq, `{"module": "builtins", "class_name": "function", "config": "load_model"}`), want: []string{"load_model"}},
		{name: "exec-builtins", cfg: strings.Replace(fn, `"config": "binary_accuracy"`, `"config": "exec"`, 1), want: []string{"\"builtins.exec\""}},
		{name: "tfsmlayer", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "TFSMLayer", "config": {"name": "t", "filepath": "/tmp/x"}}`), want: []string{"TFSMLayer"}},
		{name: "torch-module-wrapper", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "TorchModuleWrapper", "config": {"name": "t", "module": "gASV"}}`), want: []string{"TorchModuleWrapper"}},
		{name: "tensorboard-callback", cfg: strings.Replace(seq, `"loss_weights": null`, `"loss_weights": {"module": "keras.callbacks", "class_name": "TensorBoard", "config": {"log_dir": "/etc"}}`, 1), want: []string{"TensorBoard"}},
		{name: "vocabulary-path", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "StringLookup", "config": {"name": "s", "vocabulary": "/root/.ssh/id_rsa"}}`), want: []string{"\"vocabulary\" set to the string \"/root/.ssh/id_rsa\" at $.config.layers[2].config: "}},
		{name: "tfoplambda-write-file", cfg: strings.Replace(legacy, `"function": "math.multiply"`, `"function": "io.write_file"`, 1), want: []string{"TFOpLambda", "io.write_file"}},
		{name: "tfoplambda-py-function", cfg: strings.Replace(legacy, `"function": "math.multiply"`, `"function": "py_function"`, 1), want: []string{"py_function"}},
		// custom objects
		{name: "custom-object", cfg: withLayer(seq, `{"module": "keras.layers", "class_name": "MyLayer", "config": {"name": "m"}, "registered_name": "MyPackage>MyLayer"}`),
			want: []string{"MyPackage>MyLayer", "content.formats.keras.registered"}, admit: &KerasOptions{Registered: []string{"MyPackage>MyLayer"}}},
		{name: "custom-object-module", cfg: withLayer(seq, `{"module": "mypkg.layers", "class_name": "MyLayer", "config": {"name": "m"}, "registered_name": "MyPackage>MyLayer"}`),
			want: []string{"mypkg.layers"}, admit: &KerasOptions{Modules: []string{"mypkg"}, Registered: []string{"MyPackage>MyLayer"}}},
		{name: "custom-loss-in-compile-config", cfg: strings.Replace(seq, `"loss_weights": null`, `"loss_weights": null, "metrics2": {"module": "__main__", "class_name": "function", "config": "my_metric", "registered_name": "Custom>my_metric"}`, 1),
			want: []string{"\"__main__\""}, admit: &KerasOptions{Modules: []string{"__main__"}, Registered: []string{"Custom>my_metric"}}},
		{name: "not-an-object", cfg: `[1, 2]`, want: []string{"not a JSON object"}},
		{name: "bad-literal", cfg: strings.Replace(seq, `"rate": 0.1`, `"rate": Nope`, 1), want: []string{"invalid literal"}},
	}
}

func TestKerasConfigAttacks(t *testing.T) {
	for _, a := range kerasAttacks(t) {
		t.Run(a.name, func(t *testing.T) {
			err := checkKerasConfig(Options{}, FormatKeras, "config.json", []byte(a.cfg))
			if err == nil {
				t.Fatalf("accepted")
			}
			f, ok := err.(*Finding)
			if !ok || f.Format != FormatKeras || !strings.HasPrefix(f.Reason, "config.json") {
				t.Fatalf("finding %#v", err)
			}
			for _, w := range a.want {
				if !strings.Contains(f.Reason, w) {
					t.Errorf("finding %q lacks %q", f.Reason, w)
				}
			}
			if a.admit != nil {
				if err := checkKerasConfig(Options{Keras: *a.admit}, FormatKeras, "config.json", []byte(a.cfg)); err != nil {
					t.Errorf("not admitted by %+v: %v", *a.admit, err)
				}
			}
		})
	}
}

func TestKerasOptionsValidate(t *testing.T) {
	for _, o := range []KerasOptions{{Modules: []string{"builtins"}}, {Modules: []string{"a..b"}}, {Modules: []string{""}}, {Registered: []string{"NoPackage"}}, {Registered: []string{">x"}}} {
		if err := (Options{Keras: o}).Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if err := (Options{Keras: KerasOptions{Modules: []string{"mypkg.layers", "__main__"}, Registered: []string{"MyPackage>MyLayer"}}}).Validate(); err != nil {
		t.Error(err)
	}
}

func FuzzKerasConfig(f *testing.F) {
	for _, a := range kerasAttacks(f) {
		f.Add([]byte(a.cfg))
	}
	for _, n := range []string{"sequential.json", "functional.json", "legacy_model_config.json", "legacy_training_config.json"} {
		f.Add([]byte(kerasSample(f, n)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkKerasConfig(Options{}, FormatKeras, "config.json", b)
		if err != nil {
			if fd, ok := err.(*Finding); !ok || fd.Format != FormatKeras || fd.Reason == "" {
				t.Fatalf("not a finding: %#v", err)
			}
		}
		// admitting more never refuses what passed
		if err == nil {
			o := KerasOptions{AllowLambda: true, Modules: []string{"mypkg"}, Registered: []string{"A>B"}}
			if err := checkKerasConfig(Options{Keras: o}, FormatKeras, "config.json", b); err != nil {
				t.Fatalf("refused with wider options: %v", err)
			}
		}
	})
}
