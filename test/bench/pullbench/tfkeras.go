package main

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// savedModelBlob is a TensorFlow SavedModel directory of about size bytes
// as a ModelPack weight tar carries it (archive/tar, USTAR, members in the
// lexical order `oras push` and modctl walk a directory in):
// modelcorpus.SavedModelDir's files under saved_model/ (saved_model.pb of
// BenignSavedModel, fingerprint.pb, variables/variables.index, an asset)
// with a variables/variables.data-00000-of-00001 shard of random bytes
// filling the rest. The gate walks saved_model.pb's graph and functions
// and reads the shard as data. One allocation of the whole, plus one
// 16 MiB chunk.
func savedModelBlob(size int64) ([]byte, error) {
	const per = 16 << 20
	data := max(size/per, 1) * per
	files := modelcorpus.SavedModelDir("saved_model/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 0)
	slices.SortFunc(files, func(a, b modelcorpus.TarEntry) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	b.Grow(int(data) + 64<<10)
	w := tar.NewWriter(&b)
	chunk := make([]byte, per)
	for _, f := range files {
		n := int64(len(f.Data))
		isData := strings.HasPrefix(f.Name[strings.LastIndex(f.Name, "/")+1:], "variables.data-")
		if isData {
			n = data
		}
		if err := w.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o644, Size: n, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
			return nil, err
		}
		if !isData {
			if _, err := w.Write(f.Data); err != nil {
				return nil, err
			}
			continue
		}
		for left := n; left > 0; left -= per {
			rand.Read(chunk)
			if _, err := w.Write(chunk); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// kerasH5Script writes model.h5, a legacy Keras HDF5 model of about
// argv[1] bytes as tf.keras's save_model_to_hdf5 (and Keras 3's
// legacy_h5_format) lays it out: the root attributes backend,
// keras_version, model_config and training_config (JSON, Python bytes)
// first, then model_weights/<layer>/<layer>/kernel:0 datasets of 16 MiB of
// random float32 each with the layer_names and weight_names attributes.
// The configurations are modelcorpus's legacy_model_config.json and
// legacy_training_config.json (argv[2], argv[3]).
const kerasH5Script = `
import h5py, numpy as np, sys
size, model_config, training_config = int(sys.argv[1]), open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
per = 16 << 20
n = max(size // per, 1)
rng = np.random.default_rng()
with h5py.File("model.h5", "w") as f:
    f.attrs["backend"] = "tensorflow"
    f.attrs["keras_version"] = "2.12.0"
    f.attrs["model_config"] = model_config
    f.attrs["training_config"] = training_config
    mw = f.create_group("model_weights")
    mw.attrs["backend"] = b"tensorflow"
    mw.attrs["keras_version"] = b"2.12.0"
    mw.attrs["layer_names"] = np.array([b"dense_%d" % i for i in range(n)])
    for i in range(n):
        g = mw.create_group("dense_%d" % i)
        g.attrs["weight_names"] = np.array([b"dense_%d/kernel:0" % i])
        w = np.frombuffer(rng.bytes(per), dtype="<f4").reshape(4096, per // 4 // 4096)
        g.create_group("dense_%d" % i).create_dataset("kernel:0", data=w)
`

// kerasH5Blob is a legacy Keras HDF5 model of about size bytes, written by
// libhdf5 through h5py (kerasH5Script, modelcorpus.KerasPython) into a
// temporary directory and read back (one allocation).
func kerasH5Blob(size int64) ([]byte, error) {
	if err := modelcorpus.KerasPythonReady(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pullbench-h5-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mc, tc := filepath.Join(dir, "model_config.json"), filepath.Join(dir, "training_config.json")
	if err := os.WriteFile(mc, []byte(modelcorpus.KerasConfig("legacy_model_config.json")), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(tc, []byte(modelcorpus.KerasConfig("legacy_training_config.json")), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(modelcorpus.KerasPython, "-c", kerasH5Script, fmt.Sprint(size), mc, tc)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("h5py: %v: %s", err, out)
	}
	return os.ReadFile(filepath.Join(dir, "model.h5"))
}
