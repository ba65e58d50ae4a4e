package content

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// gheapScript writes Keras-style files whose model_config is a
// variable-length string (a global heap object) with lengths of 2, 4 and
// 8 bytes (libhdf5's H5Pset_sizes; h5py writes 8).
const gheapScript = `
import h5py, json
cfg = json.dumps({"class_name": "Sequential", "config": {"name": "sequential", "layers": [
    {"class_name": "Dense", "config": {"name": "dense", "units": 4, "activation": "relu", "use_bias": True}},
    {"class_name": "Dense", "config": {"name": "dense_1", "units": 2, "activation": "linear", "use_bias": True}}]}})
for ls in (2, 4, 8):
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_sizes(8, ls)
    fid = h5py.h5f.create(b"ls%d.h5" % ls, h5py.h5f.ACC_TRUNC, fcpl=fcpl)
    with h5py.File(fid) as f:
        f.attrs["model_config"] = cfg
`

// h5pyReads returns the model_config libhdf5 (h5py) reads from each file.
func h5pyReads(t *testing.T, files map[string][]byte) map[string]string {
	var sb strings.Builder
	sb.WriteString("import h5py, base64\n")
	for name, b := range files {
		fmt.Fprintf(&sb, "open(%q, 'wb').write(base64.b64decode(%q))\n", name+".h5", base64.StdEncoding.EncodeToString(b))
		fmt.Fprintf(&sb, "open(%q, 'w').write(str(h5py.File(%q, 'r').attrs['model_config']))\n", name+".out", name+".h5")
	}
	out := modelcorpus.H5Py(t, sb.String())
	got := map[string]string{}
	for name := range files {
		got[name] = string(out[name+".out"])
	}
	return got
}

func TestHDF5GlobalHeapAsLibhdf5(t *testing.T) {
	files := modelcorpus.H5Py(t, gheapScript)
	if err := h5Run(files["ls8.h5"], int64(len(files["ls8.h5"]))); err != nil {
		t.Errorf("ls8.h5: %v", err)
	}
	// Lengths of 2 or 4 bytes: libhdf5 writes a symbol table entry's
	// link name offset with the size of lengths, so the root header is
	// elsewhere than the format document says: refused.
	for _, n := range []string{"ls2.h5", "ls4.h5"} {
		if err := h5Run(files[n], int64(len(files[n]))); err == nil || !strings.Contains(err.Error(), "only 8") {
			t.Errorf("%s: %v", n, err)
		}
	}

	// Rewrite ls8.h5's collection: object 1 (the config, L bytes) then
	// the free space.
	f := files["ls8.h5"]
	g := bytes.Index(f, []byte("GCOL"))
	size := int(binary.LittleEndian.Uint64(f[g+8:]))
	if idx := binary.LittleEndian.Uint16(f[g+16:]); idx != 1 {
		t.Fatalf("first heap object has index %d", idx)
	}
	l := int(binary.LittleEndian.Uint64(f[g+24:]))
	benign := f[g+32 : g+32+l]
	lambda := []byte(`{"class_name": "Lambda", "config": {"name": "lambda", "function": ["4wEAAAAAAAAA", null, null], "function_type": "lambda"}}`)
	if len(lambda) > l {
		t.Fatalf("Lambda config %d bytes, benign %d", len(lambda), l)
	}
	lambda = append(lambda, bytes.Repeat([]byte(" "), l-len(lambda))...)
	obj := func(data []byte) []byte {
		o := make([]byte, 16, 16+len(data)+7)
		binary.LittleEndian.PutUint16(o, 1)
		binary.LittleEndian.PutUint64(o[8:], uint64(len(data)))
		o = append(o, data...)
		return append(o, make([]byte, (8-len(data)%8)%8)...)
	}
	free := func(n int) []byte {
		o := make([]byte, n)
		binary.LittleEndian.PutUint64(o[8:], uint64(n))
		return o
	}
	collection := func(parts ...[]byte) []byte {
		b := bytes.Clone(f)
		body := bytes.Join(parts, nil)
		if len(body) != size-16 {
			t.Fatalf("collection body %d bytes, want %d", len(body), size-16)
		}
		copy(b[g+16:], body)
		return b
	}
	rest := size - 16 - len(obj(benign))
	cases := map[string][]byte{
		"duplicate":            collection(obj(benign), obj(lambda), free(rest-len(obj(lambda)))),
		"duplicate after free": collection(obj(benign), free(rest-len(obj(lambda))), obj(lambda)),
		"free first, benign":   collection(free(rest), obj(benign)),
		"free first, Lambda":   collection(free(rest), obj(lambda)),
	}
	read := h5pyReads(t, cases)
	for name, wantLambda := range map[string]bool{"duplicate": true, "duplicate after free": true, "free first, benign": false, "free first, Lambda": true} {
		if strings.Contains(read[name], "Lambda") != wantLambda {
			t.Fatalf("%s: h5py reads %q", name, read[name])
		}
	}
	for name, want := range map[string]string{
		"duplicate":            "holds object 1 twice",
		"duplicate after free": "holds object 1 twice",
		"free first, benign":   "",
		"free first, Lambda":   "Lambda",
	} {
		err := h5Run(cases[name], int64(len(cases[name])))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}
