package modelcorpus

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/pullgate/pullgate/test/tools"
)

// HDF5 samples are written by libhdf5 itself, through h5py (Debian's
// python3-h5py, installed by test/tools/install.sh), never built by hand.

// H5Py runs a Python script with h5py in a fresh temporary directory (its
// working directory) and returns every file the script wrote, by name. A
// missing python3 or h5py skips the test locally and fails it under
// PULLGATE_REQUIRE_TOOLS=1.
func H5Py(t testing.TB, script string) map[string][]byte {
	t.Helper()
	dir := H5PyDir(t, script)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	return files
}

// H5PyDir is H5Py for large files: it returns the directory the script
// wrote into.
func H5PyDir(t testing.TB, script string) string {
	t.Helper()
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = tools.Lookup("python3")
	}
	if py == "" || exec.Command(py, "-c", "import h5py").Run() != nil {
		if tools.Required() {
			t.Fatal("python3 with h5py is required (PULLGATE_REQUIRE_TOOLS=1): apt-get install -y python3-h5py")
		}
		t.Skip("python3 with h5py is not installed (apt-get install python3-h5py)")
	}
	dir := t.TempDir()
	cmd := exec.Command(py, "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("h5py script: %v\n%s", err, out)
	}
	return dir
}

// HDF5Names returns the names of files, sorted.
func HDF5Names(files map[string][]byte) []string {
	var n []string
	for k := range files {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// KerasH5Script writes legacy Keras HDF5 files the way tf.keras 2.x
// (hdf5_format.save_model_to_hdf5) and Keras 3 (legacy_h5_format) do: root
// attributes keras_version and backend (str: variable-length strings),
// model_config as JSON in a numpy bytes_ (a fixed-length string, what
// h5py 2.x made of tf.keras's .encode("utf8")) or a str (variable-length;
// h5py 3 also stores Python bytes so), the
// weights under model_weights/<layer>/<layer>/kernel:0, and training_config
// added after the weights. A model_config or training_config naming a
// Lambda layer is what the gate must refuse.
//
// Files: keras_<kind>_<libver>.h5 for kind in fixed, vlen, lambdafixed,
// lambdavlen, lambdatrain and libver in earliest, latest.
const KerasH5Script = `
import h5py, json, numpy as np
lam_layer = {"class_name": "Lambda", "config": {"name": "lambda", "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"}}
def model(lam):
    if lam:
        return json.dumps(lam_layer)  # model_from_config deserialises the layer itself
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 8], "dtype": "float32", "name": "in"}},
              {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu"}}]
    return json.dumps({"class_name": "Sequential", "config": {"name": "sequential", "layers": layers}})
train = json.dumps({"loss": "mse", "metrics": ["mae"], "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}})
train_lam = json.dumps({"loss": {"class_name": "Lambda", "config": {"function": ["4wEAAAAAAAAA", None, None]}}})
for lib in ("earliest", "latest"):
    for kind in ("fixed", "vlen", "lambdafixed", "lambdavlen", "lambdatrain"):
        with h5py.File("keras_%s_%s.h5" % (kind, lib), "w", libver=lib) as f:
            f.attrs["keras_version"] = "2.13.1"
            f.attrs["backend"] = "tensorflow"
            cfg = model(kind.startswith("lambda") and kind != "lambdatrain")
            f.attrs["model_config"] = cfg if "vlen" in kind else np.bytes_(cfg.encode("utf8"))
            mw = f.create_group("model_weights")
            mw.attrs["layer_names"] = np.array([b"dense"])
            mw.attrs["backend"] = b"tensorflow"
            g = mw.create_group("dense").create_group("dense")
            g.create_dataset("kernel:0", data=np.random.default_rng(1).standard_normal((8, 4)).astype("float32"))
            g.create_dataset("bias:0", data=np.zeros(4, dtype="float32"))
            big = mw.create_group("big")
            big.create_dataset("w", data=np.ones((256, 256), dtype="float32"))
            t = train_lam if kind == "lambdatrain" else train
            f.attrs["training_config"] = t if "vlen" in kind or kind == "lambdatrain" else np.bytes_(t.encode("utf8"))
`

// WeightsH5Script writes weights-only HDF5 files (no model_config): nested
// groups, datasets of several dtypes, contiguous, chunked (with gzip and
// shuffle filters) and compact layouts, a variable-length string dataset,
// and root attributes that are not Keras configurations; libver earliest
// and latest. Also many_earliest.h5 (300 root attributes: many object
// header continuation chunks) and many_latest.h5 (dense attribute
// storage), track_order_<libver>.h5 (attribute creation order tracked:
// message headers carry their creation index; track_order_lambda.h5 with
// a Lambda model_config), userblock.h5 (a 512-byte userblock of zeros) and
// userblock_script.h5 (the same with a shell script in the userblock).
const WeightsH5Script = `
import h5py, numpy as np
for lib in ("earliest", "latest"):
    with h5py.File("weights_%s.h5" % lib, "w", libver=lib) as f:
        f.attrs["layer_names"] = np.array([b"a", b"b"])
        f.attrs["note"] = "weights only"
        f.create_dataset("a/kernel", data=np.arange(64, dtype="float32").reshape(8, 8))
        f.create_dataset("a/bias", data=np.arange(8, dtype="float16"))
        f.create_dataset("b/chunked", data=np.arange(4096, dtype="int64").reshape(64, 64), chunks=(16, 16), compression="gzip", shuffle=True)
        f.create_dataset("b/compact", data=np.arange(16, dtype="uint8"), dtype="uint8", **{})
        dc = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dc.set_layout(h5py.h5d.COMPACT)
        sp = h5py.h5s.create_simple((4,))
        h5py.h5d.create(f["b"].id, b"compact2", h5py.h5t.NATIVE_DOUBLE, sp, dc)
        f.create_dataset("b/names", data=["x", "yy", "zzz"], dtype=h5py.string_dtype())
        f.create_dataset("b/bool", data=np.array([True, False]))
    with h5py.File("many_%s.h5" % lib, "w", libver=lib) as f:
        n = 300 if lib == "earliest" else 20
        for i in range(n):
            f.attrs["attr%03d" % i] = "value %d" % i if i % 2 else np.arange(i % 7 + 1)
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": []}}'
        f.create_dataset("w", data=np.zeros(1000, dtype="float32"))
for name in ("track_order_earliest", "track_order_latest", "track_order_lambda"):
    with h5py.File(name + ".h5", "w", libver=name.split("_")[2].replace("lambda", "latest"), track_order=True) as f:
        f.attrs["keras_version"] = "2.13.1"
        f.attrs["model_config"] = '{"class_name": "Lambda", "config": {}}' if "lambda" in name else '{"class_name": "Sequential", "config": {"layers": []}}'
        f.create_dataset("w", data=np.zeros(100, dtype="float32"))
        f.attrs["training_config"] = np.bytes_(b'{"loss": "mse"}')
with h5py.File("userblock.h5", "w", userblock_size=512) as f:
    f.create_dataset("w", data=np.zeros(10, dtype="float32"))
with open("userblock_script.h5", "wb") as u:
    u.write(open("userblock.h5", "rb").read())
    u.seek(0)
    u.write(b"#!/bin/sh\necho hidden\n")
`

// BigH5Script writes big_weights.h5 (one 1 GiB float32 dataset, allocated
// early and never written: a sparse file) and big_keras.h5 (the same with
// model_config before and a training_config after the weights, which
// libhdf5 puts in a continuation chunk after the 1 GiB).
const BigH5Script = `
import h5py, json
for kind in ("weights", "keras"):
    with h5py.File("big_%s.h5" % kind, "w") as f:
        if kind == "keras":
            f.attrs["keras_version"] = "2.13.1"
            f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}}).encode()
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        g = f.create_group("model_weights")
        h5py.h5d.create(g.id, b"kernel", h5py.h5t.IEEE_F32LE, h5py.h5s.create_simple((1 << 28,)), dcpl)
        if kind == "keras":
            f.attrs["training_config"] = json.dumps({"loss": "mse", "pad": "x" * 30000}).encode()
`

// KerasZipScript writes Keras v3 archives the way keras.saving.save_model
// lays them out (zipfile: metadata.json, config.json, model.weights.h5,
// the weights file written by h5py with the layers/<name>/vars/<i>
// datasets H5IOStore makes): model.keras, and lambda_weights.keras whose
// model.weights.h5 also carries a root model_config naming a Lambda layer
// (a legacy loader given that member would deserialise it).
const KerasZipScript = `
import h5py, io, json, numpy as np, zipfile
cfg = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
    {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense", "units": 2}, "registered_name": None}]},
    "registered_name": None}
for name, lam in (("model.keras", False), ("lambda_weights.keras", True)):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        v = f.create_group("layers").create_group("dense").create_group("vars")
        v.create_dataset("0", data=np.ones((4, 2), dtype="float32"))
        v.create_dataset("1", data=np.zeros(2, dtype="float32"))
        if lam:
            f.attrs["model_config"] = json.dumps({"class_name": "Lambda", "config": {"function": ["4wEAAAAAAAAA", None, None]}})
    with zipfile.ZipFile(name, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.3.3", "date_saved": "2024-05-01@00:00:00"}))
        z.writestr("config.json", json.dumps(cfg))
        z.writestr("model.weights.h5", buf.getvalue())
`
