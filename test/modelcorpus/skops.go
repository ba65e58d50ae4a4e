package modelcorpus

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// NPY writes a .npy file (format 1.0) as numpy's _wrap_header does: magic,
// version, header length, the header dict padded with spaces so that the
// data starts on a 64-byte boundary, '\n', then the data.
func NPY(descr, shape string, data []byte) []byte {
	h := "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }"
	pad := 64 - (10+len(h)+1)%64
	h += strings.Repeat(" ", pad) + "\n"
	b := append([]byte("\x93NUMPY"), 1, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	return append(append(b, h...), data...)
}

// SkopsNode is one node of a skops schema.json (a JSON object).
type SkopsNode = map[string]any

// skopsIDs numbers nodes like Python's id() (any distinct integers).
type skopsIDs struct{ next int }

func (s *skopsIDs) id() int { s.next += 16; return 140000000000000 + s.next }

// SkopsJSONNode is what skops writes for a JSON-serialisable value
// (object_get_state: JsonNode, content json.dumps(value)).
func (s *skopsIDs) json(class string, v any) SkopsNode {
	b, _ := json.Marshal(v)
	return SkopsNode{"__class__": class, "__module__": "builtins", "__loader__": "JsonNode", "content": string(b), "is_json": true, "__id__": s.id()}
}

// SkopsLogisticRegression returns the schema.json tree and the array
// members skops.io.dump (skops 0.13, protocol 2) writes for a
// LogisticRegression fitted on 4 features and 3 classes: an ObjectNode of
// sklearn.linear_model._logistic.LogisticRegression whose content is a
// DictNode of its attributes (JsonNode scalars, NdArrayNode arrays stored
// as <id>.npy members with np.save(allow_pickle=False)) and key_types, a
// ListNode of TypeNode builtins.str.
func SkopsLogisticRegression() (SkopsNode, map[string][]byte) {
	ids := &skopsIDs{}
	files := map[string][]byte{}
	arr := func(descr, shape string, data []byte) SkopsNode {
		id := ids.id()
		name := fmt.Sprintf("%d.npy", id)
		files[name] = NPY(descr, shape, data)
		return SkopsNode{"__class__": "ndarray", "__module__": "numpy", "__loader__": "NdArrayNode", "__id__": id, "type": "numpy", "file": name}
	}
	f64 := func(n int) []byte {
		var b []byte
		for i := range n {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(i)/7-0.5))
		}
		return b
	}
	i64 := func(vs ...int64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
		return b
	}
	attrs := []struct {
		k string
		v SkopsNode
	}{
		{"penalty", ids.json("str", "l2")}, {"dual", ids.json("bool", false)}, {"tol", ids.json("float", 0.0001)},
		{"C", ids.json("float", 1.0)}, {"fit_intercept", ids.json("bool", true)}, {"intercept_scaling", ids.json("int", 1)},
		{"class_weight", ids.json("NoneType", nil)}, {"random_state", ids.json("NoneType", nil)}, {"solver", ids.json("str", "lbfgs")},
		{"max_iter", ids.json("int", 100)}, {"verbose", ids.json("int", 0)}, {"warm_start", ids.json("bool", false)},
		{"n_jobs", ids.json("NoneType", nil)}, {"l1_ratio", ids.json("NoneType", nil)}, {"n_features_in_", ids.json("int", 4)},
		{"classes_", arr("<i8", "(3,)", i64(0, 1, 2))},
		{"n_iter_", arr("<i4", "(1,)", []byte{17, 0, 0, 0})},
		{"coef_", arr("<f8", "(3, 4)", f64(12))},
		{"intercept_", arr("<f8", "(3,)", f64(3))},
		{"_sklearn_version", ids.json("str", "1.5.2")},
	}
	content := SkopsNode{}
	strType := SkopsNode{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode", "__id__": ids.id()}
	var keyTypes []any
	for _, a := range attrs {
		content[a.k] = a.v
		keyTypes = append(keyTypes, strType) // the same type object: the same __id__
	}
	dict := SkopsNode{"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "__id__": ids.id(),
		"content":   content,
		"key_types": SkopsNode{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "__id__": ids.id(), "content": keyTypes}}
	root := SkopsNode{"__class__": "LogisticRegression", "__module__": "sklearn.linear_model._logistic", "__loader__": "ObjectNode",
		"__id__": ids.id(), "content": dict, "protocol": 2, "_skops_version": "0.13.0"}
	return root, files
}

// SkopsZip writes a skops file as skops.io.dump does (zipfile, stored):
// the array and bytes members in the order get_state wrote them (here by
// name), then schema.json (json.dumps(state, indent=2)).
func SkopsZip(schema SkopsNode, files map[string][]byte) []byte {
	var es []ZipEntry
	for _, name := range slices.Sorted(maps.Keys(files)) {
		es = append(es, ZipEntry{Name: name, Data: files[name]})
	}
	b, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		panic(err)
	}
	es = append(es, ZipEntry{Name: "schema.json", Data: b})
	return Zip(ZipSpec{Entries: es})
}
