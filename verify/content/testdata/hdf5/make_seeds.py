# Writes the FuzzHDF5 seed files with libhdf5 (h5py); run from this
# directory with /usr/bin/python3 (h5py 3.7, libhdf5 1.10.8).
import h5py, json, numpy as np
cfg = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [{"class_name": "Dense", "config": {"units": 2}}]}})
for lib in ("earliest", "latest"):
    with h5py.File("keras_%s.h5" % lib, "w", libver=lib) as f:
        f.attrs["keras_version"] = "2.13.1"
        f.attrs["model_config"] = cfg.encode("utf8")
        f.create_dataset("model_weights/dense/kernel:0", data=np.zeros((2, 2), dtype="float32"))
        f.attrs["training_config"] = json.dumps({"loss": "mse"})
with h5py.File("weights_chunked.h5", "w") as f:
    f.create_dataset("w", data=np.arange(64, dtype="int16"), chunks=(16,), compression="gzip")
