package content

import (
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/test/tools"
)

// kerasArchiveFile writes a .keras archive with Python's zipfile and h5py
// (modelcorpus.KerasArchive), members in order. Without /usr/bin/python3
// and h5py the test is skipped locally and fails in CI
// (PULLGATE_REQUIRE_TOOLS=1).
func kerasArchiveFile(t testing.TB, members ...kerasMember) []byte {
	t.Helper()
	if err := modelcorpus.KerasPythonReady(); err != nil {
		if tools.Required() {
			t.Fatalf("required (PULLGATE_REQUIRE_TOOLS=1): %v", err)
		}
		t.Skip(err)
	}
	b, err := modelcorpus.KerasArchive(t.TempDir(), members...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type kerasMember = modelcorpus.KerasMember

const kerasMetadata = `{"keras_version": "3.6.0", "date_saved": "2026-12-06@13:58:01"}`

// kerasStandard is what keras.saving.save_model writes, in its order.
func kerasStandard(config string) []kerasMember {
	return []kerasMember{{Name: "metadata.json", Text: kerasMetadata}, {Name: "config.json", Text: config}, {Name: "model.weights.h5", Weights: true}}
}

func inspectBytes(opts Options, title string, b []byte) error {
	in, err := NewInspector(opts, "", title, int64(len(b)))
	if err != nil {
		return err
	}
	for off := 0; off < len(b); off += 4093 {
		if _, err := in.Write(b[off:min(off+4093, len(b))]); err != nil {
			return err
		}
	}
	return in.Close()
}

func TestKerasArchiveBenign(t *testing.T) {
	// needs the HDF5 validator (branch h-hdf5): until it is merged,
	// model.weights.h5 is refused as bytes of no known format.
	for _, cfg := range []string{"sequential.json", "functional.json"} {
		b := kerasArchiveFile(t, kerasStandard(kerasSample(t, cfg))...)
		for _, title := range []string{"model.keras", "weights.bin", ""} {
			if err := inspectBytes(Options{}, title, b); err != nil {
				t.Errorf("%s as %q: %v", cfg, title, err)
			}
		}
	}
}

// kerasArchiveAttacks are archives refused only by the Keras checks. They
// run with AllowUnknown so that model.weights.h5 passes without the HDF5
// validator (branch h-hdf5) whatever the member order; the Keras checks do
// not depend on it.
func TestKerasArchiveAttacks(t *testing.T) {
	seq := kerasSample(t, "sequential.json")
	lambda := strings.Replace(seq, `{"module": "keras.layers", "class_name": "Dropout"`, `{"module": "keras.layers", "class_name": "Lambda", "config": {"name": "lambda", "function": {"class_name": "__lambda__", "config": {"value": "4wEAAAAAAAAA", "defaults": null, "closure": null}}, "arguments": {}}, "registered_name": null}, {"module": "keras.layers", "class_name": "Dropout"`, 1)
	meta := kerasMember{Name: "metadata.json", Text: kerasMetadata}
	w := kerasMember{Name: "model.weights.h5", Weights: true}
	cfg := func(s string) kerasMember { return kerasMember{Name: "config.json", Text: s} }
	cases := []struct {
		name    string
		members []kerasMember
		want    string
	}{
		{"lambda-keras-order", kerasStandard(lambda), "Keras archive: config.json: Lambda layer at $.config.layers[2]: "},
		{"lambda-config-after-weights", []kerasMember{meta, w, cfg(lambda)}, "Lambda layer at"},
		{"lambda-metadata-last", []kerasMember{cfg(lambda), w, meta}, "Lambda layer at"},
		{"module-outside-namespace", kerasStandard(strings.Replace(seq, `"module": "keras.optimizers"`, `"module": "os"`, 1)), `module "os"`},
		{"extra-member", append(kerasStandard(seq), kerasMember{Name: "payload.sh.txt", Text: "curl x | sh"}), `member "payload.sh.txt" is not one Keras's loader reads`},
		{"extra-member-first", append([]kerasMember{{Name: "notes/readme.txt", Text: "hi"}}, kerasStandard(seq)...), `member "notes/readme.txt"`},
		{"two-weights", append(kerasStandard(seq), kerasMember{Name: "model.weights.npz", Text: "x"}), "both model.weights.h5 and model.weights.npz"},
		{"no-weights", []kerasMember{meta, cfg(seq)}, "no model.weights.h5"},
		{"metadata-not-json", []kerasMember{{Name: "metadata.json", Text: "keras 3"}, cfg(seq), w}, "metadata.json is not a JSON file"},
		{"metadata-no-version", []kerasMember{{Name: "metadata.json", Text: `{"date_saved": "x"}`}, cfg(seq), w}, "no keras_version"},
		// a top-level config.json always gets the JSON check (Keras's
		// loader json.loads it whatever its first bytes)
		{"config-not-json", []kerasMember{meta, {Name: "config.json", Text: "Sequential()"}, w}, `zip member "config.json": unexpected character 'S'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := kerasArchiveFile(t, c.members...)
			err := inspectBytes(Options{AllowUnknown: true}, "model.keras", b)
			f, ok := err.(*Finding)
			want := FormatKeras
			if c.name == "config-not-json" {
				want = FormatJSON
			}
			if !ok || f.Format != want || !strings.Contains(f.Reason, c.want) {
				t.Fatalf("got %v, want a keras finding with %q", err, c.want)
			}
		})
	}
}

// kerasZip builds a .keras-shaped zip (modelcorpus.Zip, stored members),
// for the tests that need no Python.
func kerasZip(t testing.TB, members ...[2]string) []byte {
	t.Helper()
	var spec modelcorpus.ZipSpec
	for _, m := range members {
		spec.Entries = append(spec.Entries, modelcorpus.ZipEntry{Name: m[0], Data: []byte(m[1])})
	}
	return modelcorpus.Zip(spec)
}

// A zip with config.json but no metadata.json is not a Keras archive: its
// config.json is any JSON config (a Hugging Face config in a zip).
func TestKerasArchiveRecognition(t *testing.T) {
	hf := kerasZip(t, [2]string{"config.json", `{"architectures": ["BertModel"], "module": "os"}`}, [2]string{"vocab.txt", "a\nb\n"})
	if err := inspectBytes(Options{}, "model.zip", hf); err != nil {
		t.Fatalf("not a Keras archive, refused: %v", err)
	}
	// nested directories are not the top level
	sub := kerasZip(t, [2]string{"m/config.json", `{"class_name": "Lambda", "config": {}}`}, [2]string{"m/metadata.json", kerasMetadata})
	if err := inspectBytes(Options{}, "model.zip", sub); err != nil {
		t.Fatalf("nested names recognised: %v", err)
	}
	// an empty weights member passes the member rules; a Lambda does not
	lam := kerasZip(t, [2]string{"metadata.json", kerasMetadata}, [2]string{"config.json", `{"class_name": "Lambda", "config": {}}`}, [2]string{"model.weights.h5", ""})
	if err := inspectBytes(Options{}, "x", lam); err == nil || !strings.Contains(err.Error(), "Lambda layer") {
		t.Fatalf("Lambda: %v", err)
	}
	if err := inspectBytes(Options{Keras: KerasOptions{AllowLambda: true}}, "x", lam); err != nil {
		t.Fatalf("Lambda with lambda: allow: %v", err)
	}
}

// Keras's loader (saving_lib._load_model_from_fileobj) reads config.json
// and the weights only: metadata.json is optional. A zip with config.json
// and a weights file or assets/ is a Keras archive; a top-level
// config.json from which deserialize_keras_object would build an object
// (a class_name key at any depth: it recurses into plain dicts and lists)
// gets the configuration check in any zip.
func TestKerasArchiveWithoutMetadata(t *testing.T) {
	lambda := `{"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [{"module": "keras.layers", "class_name": "Lambda", "config": {"name": "l", "function": {"module": "builtins", "class_name": "function", "config": "lambda", "registered_name": "function"}}}]}}`
	osSystem := `{"module": "os", "class_name": "system", "config": {}}`
	cases := []struct {
		name    string
		members [][2]string
		want    string
	}{
		{"lambda-config-weights", [][2]string{{"config.json", lambda}, {"model.weights.h5", ""}}, "Lambda layer at $.config.layers[0]"},
		{"os-config-weights", [][2]string{{"config.json", osSystem}, {"model.weights.h5", ""}}, `module "os"`},
		{"weights-first", [][2]string{{"model.weights.h5", ""}, {"config.json", lambda}}, "Lambda layer"},
		{"npz-weights", [][2]string{{"config.json", osSystem}, {"model.weights.npz", ""}}, `module "os"`},
		{"assets-only", [][2]string{{"assets/vocab.txt", "a"}, {"config.json", lambda}}, "Lambda layer"},
		{"config-alone", [][2]string{{"config.json", lambda}}, "Lambda layer"},
		// deserialize_keras_object recurses into dicts without class_name and lists
		{"nested-in-plain-dict", [][2]string{{"config.json", `{"model_type": "bert", "x": ` + osSystem + `}`}, {"vocab.txt", "a"}}, `module "os" at $.x`},
		{"top-level-list", [][2]string{{"config.json", `[` + lambda + `]`}}, "Lambda layer"},
		// sniffed as text, not JSON, before: json.loads reads it all the same
		{"list-starting-nan", [][2]string{{"config.json", `[NaN, ` + osSystem + `]`}}, `module "os"`},
		// marked by weights: the archive's member rules apply
		{"hf-config-with-weights", [][2]string{{"config.json", `{"model_type": "bert"}`}, {"model.weights.h5", ""}, {"vocab.txt", "a"}}, `member "vocab.txt" is not one Keras's loader reads`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := inspectBytes(Options{}, "model.keras", kerasZip(t, c.members...))
			f, ok := err.(*Finding)
			if !ok || f.Format != FormatKeras || !strings.Contains(f.Reason, c.want) {
				t.Fatalf("got %v, want a keras finding with %q", err, c.want)
			}
		})
	}
	// honest non-Keras zips with a config.json are served
	for _, members := range [][][2]string{
		{{"config.json", `{"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 768, "module": "os"}`}, {"vocab.txt", "a\nb\n"}},
		{{"config.json", `{"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.30.0"}`}},
	} {
		if err := inspectBytes(Options{}, "model.zip", kerasZip(t, members...)); err != nil {
			t.Errorf("%s: %v", members[0][1], err)
		}
	}
}

// json.dumps writes non-finite floats as NaN/Infinity, and Keras's loader
// reads them back: a .keras config.json holding one is served, and still
// checked.
func TestKerasArchiveNonFinite(t *testing.T) {
	seq := kerasSample(t, "sequential.json")
	dropout := `{"module": "keras.layers", "class_name": "Dropout"`
	relu := `{"module": "keras.layers", "class_name": "ReLU", "config": {"name": "relu", "trainable": true, "dtype": "float32", "max_value": Infinity, "negative_slope": 0.0, "threshold": 0.0}, "registered_name": null}, `
	honest := strings.Replace(seq, dropout, relu+dropout, 1)
	if honest == seq {
		t.Fatal("sample changed")
	}
	nanLambda := strings.Replace(seq, dropout, `{"module": "keras.layers", "class_name": "Lambda", "config": {"name": "l", "x": NaN, "function": {"class_name": "__lambda__", "config": {"value": "4wEAAAAA", "defaults": null, "closure": null}}}, "registered_name": null}, `+dropout, 1)
	for _, meta := range []bool{true, false} {
		var ms [][2]string
		if meta {
			ms = append(ms, [2]string{"metadata.json", kerasMetadata})
		}
		ok := kerasZip(t, append(ms, [2]string{"config.json", honest}, [2]string{"model.weights.h5", ""})...)
		if err := inspectBytes(Options{}, "model.keras", ok); err != nil {
			t.Errorf("metadata %v: Infinity refused: %v", meta, err)
		}
		bad := kerasZip(t, append(ms, [2]string{"config.json", nanLambda}, [2]string{"model.weights.h5", ""})...)
		if err := inspectBytes(Options{}, "model.keras", bad); err == nil || !strings.Contains(err.Error(), "Lambda layer") {
			t.Errorf("metadata %v: Lambda with NaN: %v", meta, err)
		}
	}
}

// Python's zipfile looks members up by exact name: only "config.json"
// is Keras's configuration; names it would read as another (NUL-cut,
// "./", backslash) are refused by the zip's path rules.
func TestKerasArchiveMemberNames(t *testing.T) {
	lambda := `{"class_name": "Lambda", "config": {}}`
	for _, n := range []string{"./config.json", "config.json\x00.txt", ".\\config.json", "/config.json"} {
		err := inspectBytes(Options{}, "model.keras", kerasZip(t, [2]string{n, lambda}, [2]string{"model.weights.h5", ""}))
		if err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

// json.loads reads bytes as UTF-8 (with or without a BOM), UTF-16 or
// UTF-32: a top-level config.json in another encoding is refused, even
// where unknown bytes are served.
func TestKerasArchiveConfigEncodings(t *testing.T) {
	lambda := `{"class_name": "Lambda", "config": {}}`
	utf16 := make([]byte, 0, 2*len(lambda))
	for _, c := range []byte(lambda) {
		utf16 = append(utf16, c, 0)
	}
	for name, cfg := range map[string]string{"utf-8-bom": "\xef\xbb\xbf" + lambda, "utf-16le": string(utf16), "utf-16le-bom": "\xff\xfe" + string(utf16)} {
		err := inspectBytes(Options{AllowUnknown: true}, "model.keras", kerasZip(t, [2]string{"config.json", cfg}))
		if err == nil {
			t.Errorf("%s: served", name)
		}
	}
}
