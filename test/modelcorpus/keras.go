package modelcorpus

import (
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// kerasConfigs are Keras model configurations as Keras writes them
// (keras/*.json; see KerasConfig).
//
//go:embed keras/*.json
var kerasConfigs embed.FS

// KerasConfig returns one of the sample Keras model configurations:
// sequential.json and functional.json follow Keras 3's
// serialize_keras_object (module, class_name, config, registered_name,
// build_config, compile_config; a Sequential nested in a Functional, a
// builtins function metric); legacy_model_config.json and
// legacy_training_config.json what tf.keras 2.12 writes into an HDF5 file's
// model_config and training_config attributes (class_name and config
// without module, a TFOpLambda). They were written field for field from
// keras/src/saving/serialization_lib.py and legacy_h5_format.py (Keras is
// not installed where the tests run); write_keras.py puts them in
// archives as saving_lib does.
func KerasConfig(name string) string {
	b, err := kerasConfigs.ReadFile("keras/" + name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// writeKerasPy writes a Keras v3 .keras archive as keras.saving.save_model
// does (see the script's docstring): Python's zipfile and h5py, the
// libraries Keras itself uses.
//
//go:embed write_keras.py
var writeKerasPy []byte

// KerasPython is the interpreter that writes the Keras samples: Debian's
// python3 with python3-h5py (test/tools/install.sh installs it).
const KerasPython = "/usr/bin/python3"

// KerasPythonReady reports why KerasPython cannot write the samples (nil
// when it can).
func KerasPythonReady() error {
	if out, err := exec.Command(KerasPython, "-c", "import h5py, numpy").CombinedOutput(); err != nil {
		return fmt.Errorf("%s cannot import h5py and numpy (apt-get install -y python3-h5py): %v: %s", KerasPython, err, out)
	}
	return nil
}

// KerasMember is one member of a .keras archive: a text file (written with
// zipfile's open(name, "w"), as Keras writes metadata.json and config.json)
// or, with Weights, the model.weights.h5 of sequential.json's model
// (written by h5py in memory and added with writestr, as H5IOStore does).
type KerasMember struct {
	Name    string `json:"name"`
	Text    string `json:"text,omitempty"`
	Weights bool   `json:"weights,omitempty"`
}

// KerasArchive writes a .keras archive with its members in order, using
// KerasPython and a temporary directory under dir.
func KerasArchive(dir string, members ...KerasMember) ([]byte, error) {
	d, err := os.MkdirTemp(dir, "keras-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(d)
	script := filepath.Join(d, "write_keras.py")
	out := filepath.Join(d, "model.keras")
	spec, err := json.Marshal(map[string]any{"out": out, "members": members})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(script, writeKerasPy, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d, "spec.json"), spec, 0o644); err != nil {
		return nil, err
	}
	if b, err := exec.Command(KerasPython, script, filepath.Join(d, "spec.json")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("write_keras.py: %v\n%s", err, b)
	}
	return os.ReadFile(out)
}
