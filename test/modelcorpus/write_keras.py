"""Writes a Keras v3 .keras archive the way keras.saving.save_model does
(keras/src/saving/saving_lib.py, _save_model_to_fileobj): a zipfile.ZipFile
opened with "w" (ZIP_STORED), metadata.json and config.json written with
zf.open(name, "w"), model.weights.h5 written by h5py into memory and added
with zf.writestr when the H5IOStore closes. The HDF5 layout follows
H5IOStore: one group <inner_path>/vars per saveable, carrying a "name"
attribute, with datasets "0", "1", ... for its variables (layers/<snake
case class name>/vars, optimizer/vars, and vars for the model itself).

usage: write_keras.py SPEC.json, where SPEC is
  {"out": path, "members": [{"name": n, "text": s} | {"name": n, "weights": true}, ...]}
written in order.
"""
import io
import json
import sys
import zipfile

import h5py
import numpy as np


def weights():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("vars").attrs["name"] = "sequential"
        for layer, shapes in [("input_layer", []), ("dense", [(4, 8), (8,)]), ("dropout", []), ("dense_1", [(8, 2), (2,)])]:
            g = f.create_group("layers/" + layer).create_group("vars")
            g.attrs["name"] = layer
            for i, s in enumerate(shapes):
                g[str(i)] = rng.standard_normal(s).astype("float32")
        g = f.create_group("optimizer").create_group("vars")
        g.attrs["name"] = "adam"
        g["0"] = np.array(10, dtype="int64")
        g["1"] = np.array(0.001, dtype="float32")
        i = 2
        for s in [(4, 8), (8,), (8, 2), (2,)] * 2:
            g[str(i)] = np.zeros(s, dtype="float32")
            i += 1
    return buf.getvalue()


def main():
    spec = json.load(open(sys.argv[1]))
    with open(spec["out"], "wb") as out:
        with zipfile.ZipFile(out, "w") as zf:
            for m in spec["members"]:
                if m.get("weights"):
                    zf.writestr(m["name"], weights())
                else:
                    with zf.open(m["name"], "w") as f:
                        f.write(m["text"].encode())


main()
