package content_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

func skopsAttrs(root modelcorpus.SkopsNode) modelcorpus.SkopsNode {
	return root["content"].(modelcorpus.SkopsNode)["content"].(modelcorpus.SkopsNode)
}

// objNode is what skops writes for an object of a class it does not know
// (object_get_state: ObjectNode with the __dict__ as a DictNode).
func objNode(module, class string) modelcorpus.SkopsNode {
	return modelcorpus.SkopsNode{"__class__": class, "__module__": module, "__loader__": "ObjectNode", "__id__": 7,
		"content": modelcorpus.SkopsNode{"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "__id__": 8,
			"content": modelcorpus.SkopsNode{}, "key_types": modelcorpus.SkopsNode{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "__id__": 9, "content": []any{}}}}
}

func jsonNode(v string) modelcorpus.SkopsNode {
	return modelcorpus.SkopsNode{"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": v, "is_json": true, "__id__": 11}
}

func TestSkopsBenign(t *testing.T) {
	root, files := modelcorpus.SkopsLogisticRegression()
	b := modelcorpus.SkopsZip(root, files)
	for _, c := range []struct {
		mt, title string
	}{{mpWeight, "model.skops"}, {"", "model.skops"}, {mpWeight, ""}, {"", ""}} {
		for _, o := range []content.Options{{}, scanOpts} {
			for _, chunk := range []int{1 << 20, 100, 3} {
				if got := verdict(t, layer(o, c.mt, c.title), b, chunk); got != "" {
					t.Errorf("%q %q (pickle %q, chunk %d): refused: %s", c.mt, c.title, o.Pickle.Mode, chunk, got)
				}
			}
		}
	}
}

func TestSkopsAttacks(t *testing.T) {
	evil := []struct {
		name, where string
		node        modelcorpus.SkopsNode
		want        string
	}{
		{"untrusted ObjectNode", "x", objNode("os", "system"), `ObjectNode "os.system" is outside skops' default trusted set`},
		{"builtins.eval as a function", "x", modelcorpus.SkopsNode{"__class__": "eval", "__module__": "builtins", "__loader__": "FunctionNode", "__id__": 3}, `FunctionNode "builtins.eval" is outside`},
		{"type of subprocess.Popen", "x", modelcorpus.SkopsNode{"__class__": "Popen", "__module__": "subprocess", "__loader__": "TypeNode", "__id__": 3}, `TypeNode "subprocess.Popen" is outside`},
		// CVE-2025-54412: OperatorFuncNode builds operator.methodcaller /
		// attrgetter, which call attributes of what they are given.
		{"OperatorFuncNode methodcaller", "x", modelcorpus.SkopsNode{"__class__": "methodcaller", "__module__": "operator", "__loader__": "OperatorFuncNode", "__id__": 3,
			"attrs": modelcorpus.SkopsNode{"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "__id__": 4, "content": []any{jsonNode(`"system"`), jsonNode(`"id"`)}}},
			`OperatorFuncNode "operator.methodcaller" is outside skops' default trusted set (CVE-2025-54412`},
		// CVE-2025-54413: MethodNode returns getattr(obj, func) of a
		// trusted object (a bound method such as __reduce_ex__).
		{"MethodNode of a trusted estimator", "x", modelcorpus.SkopsNode{"__class__": "LogisticRegression", "__module__": "sklearn.linear_model._logistic", "__loader__": "MethodNode", "__id__": 3,
			"content": modelcorpus.SkopsNode{"func": "__reduce_ex__", "obj": objNode("sklearn.linear_model._logistic", "LogisticRegression")}},
			`MethodNode "sklearn.linear_model._logistic.LogisticRegression" is outside skops' default trusted set (CVE-2025-54413`},
		{"partial", "x", modelcorpus.SkopsNode{"__class__": "partial", "__module__": "functools", "__loader__": "PartialNode", "__id__": 3, "content": modelcorpus.SkopsNode{}}, `PartialNode "functools.partial" is outside`},
		{"ConstructorFromReduceNode", "x", modelcorpus.SkopsNode{"__class__": "Popen", "__module__": "subprocess", "__loader__": "ConstructorFromReduceNode", "__id__": 3, "content": jsonNode(`["id"]`)}, `ConstructorFromReduceNode "subprocess.Popen"`},
		{"DictNode of another type", "x", modelcorpus.SkopsNode{"__class__": "Popen", "__module__": "subprocess", "__loader__": "DictNode", "__id__": 3, "content": modelcorpus.SkopsNode{}}, `DictNode "subprocess.Popen"`},
		{"unknown loader", "x", modelcorpus.SkopsNode{"__class__": "x", "__module__": "y", "__loader__": "EvalNode"}, `unknown skops loader "EvalNode"`},
		{"in a SliceNode's content", "x", modelcorpus.SkopsNode{"__class__": "slice", "__module__": "builtins", "__loader__": "SliceNode", "content": modelcorpus.SkopsNode{"start": objNode("os", "system")}}, `"os.system"`},
		{"in a DictNode's key_types", "x", modelcorpus.SkopsNode{"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": modelcorpus.SkopsNode{},
			"key_types": modelcorpus.SkopsNode{"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []any{objNode("os", "system")}}}, `root.content.content.x.key_types.content[0]: ObjectNode "os.system"`},
		// Only what all_estimators() lists (skops' set): a helper or a
		// re-export in a sklearn module is not an estimator.
		{"joblib Parallel re-exported by sklearn", "x", objNode("sklearn.model_selection._search", "Parallel"), `ObjectNode "sklearn.model_selection._search.Parallel" is outside`},
		{"sklearn helper function module", "x", objNode("sklearn.utils._testing", "TempMemmap"), `ObjectNode "sklearn.utils._testing.TempMemmap" is outside`},
		{"estimator under a re-exporting module", "x", objNode("sklearn.linear_model", "LogisticRegression"), `ObjectNode "sklearn.linear_model.LogisticRegression" is outside`},
		{"bit generator", "x", modelcorpus.SkopsNode{"__class__": "Generator", "__module__": "numpy.random._generator", "__loader__": "RandomGeneratorNode",
			"content": modelcorpus.SkopsNode{"bit_generator": modelcorpus.SkopsNode{"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": modelcorpus.SkopsNode{"bit_generator": jsonNode(`"seed"`)}}}}, `bit generator "seed"`},
	}
	for _, c := range evil {
		root, files := modelcorpus.SkopsLogisticRegression()
		skopsAttrs(root)[c.where] = c.node
		b := modelcorpus.SkopsZip(root, files)
		got := verdict(t, layer(scanOpts, mpWeight, "model.skops"), b, 4096)
		if !strings.Contains(got, c.want) || !strings.HasPrefix(got, "skops: ") {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
	// Whole-schema shapes.
	for _, c := range []struct {
		name string
		mut  func(modelcorpus.SkopsNode)
		want string
	}{
		{"root type", func(r modelcorpus.SkopsNode) { r["__module__"], r["__class__"] = "posix", "system" }, `ObjectNode "posix.system"`},
		{"old protocol", func(r modelcorpus.SkopsNode) { r["protocol"] = 1 }, "protocol 1 is not 2"},
		{"no protocol", func(r modelcorpus.SkopsNode) { delete(r, "protocol") }, "protocol <nil> is not 2"},
		{"numeric class", func(r modelcorpus.SkopsNode) { r["__class__"] = 5 }, "string __loader__, __class__ and __module__"},
	} {
		root, files := modelcorpus.SkopsLogisticRegression()
		c.mut(root)
		got := verdict(t, layer(scanOpts, "", ""), modelcorpus.SkopsZip(root, files), 4096)
		if !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
	// Duplicate keys: json.loads keeps the last, a reviewer the first.
	root, files := modelcorpus.SkopsLogisticRegression()
	sj, _ := json.Marshal(root)
	dup := strings.Replace(string(sj), `"__loader__":"ObjectNode"`, `"__loader__":"ObjectNode","__module__":"os"`, 1)
	files["schema.json"] = nil
	es := []modelcorpus.ZipEntry{{Name: "schema.json", Data: []byte(dup)}}
	if got := verdict(t, layer(scanOpts, "", ""), modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es}), 4096); !strings.Contains(got, `duplicate key "__module__"`) {
		t.Errorf("duplicate key: %q", got)
	}
	// An object .npy member holds a pickle: walked like any .npy.
	root, files = modelcorpus.SkopsLogisticRegression()
	files["140000000000999.npy"] = modelcorpus.NPY("|O", "(1,)", evilPickle())
	b := modelcorpus.SkopsZip(root, files)
	if got := verdict(t, layer(scanOpts, "", ""), b, 4096); !strings.Contains(got, `zip member "140000000000999.npy"`) || !strings.Contains(got, "os.system") {
		t.Errorf("object npy, scan: %q", got)
	}
	if got := verdict(t, layer(content.Options{}, "", ""), b, 4096); !strings.Contains(got, "pickle content is denied") {
		t.Errorf("object npy, deny: %q", got)
	}
	// A rule may trust types (as skops.io.load(trusted=...)).
	root, files = modelcorpus.SkopsLogisticRegression()
	skopsAttrs(root)["x"] = objNode("mypkg.est", "MyEstimator")
	o := scanOpts
	o.Skops.Trusted = []string{"mypkg.est.MyEstimator"}
	if got := verdict(t, layer(o, "", ""), modelcorpus.SkopsZip(root, files), 4096); got != "" {
		t.Errorf("trusted type: %q", got)
	}
}

func FuzzSkopsSchema(f *testing.F) {
	root, _ := modelcorpus.SkopsLogisticRegression()
	b, _ := json.Marshal(root)
	f.Add(b)
	f.Add([]byte(`{"__loader__":"MethodNode","__class__":"A","__module__":"m","protocol":2,"content":{"func":"f","obj":{"__loader__":"ObjectNode","__class__":"A","__module__":"m"}}}`))
	f.Add([]byte(`{"__loader__":"CachedNode","__class__":"A","__module__":"m","protocol":2,"__id__":1}`))
	f.Add([]byte(`{"protocol":2}`))
	f.Add([]byte(`[[[[[[[[[[]]]]]]]]]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := content.CheckSkopsSchema(scanOpts, b)
		if err != nil {
			if _, ok := err.(*content.Finding); !ok {
				t.Fatalf("non-Finding error %T: %v", err, err)
			}
		}
	})
}

// FuzzSkopsZip feeds whole skops files through the layer path.
func FuzzSkopsZip(f *testing.F) {
	root, files := modelcorpus.SkopsLogisticRegression()
	f.Add(modelcorpus.SkopsZip(root, files), uint8(7))
	skopsAttrs(root)["x"] = objNode("os", "system")
	f.Add(modelcorpus.SkopsZip(root, files), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, layer(scanOpts, "", "model.skops"), data, chunk)
	})
}

// TestSkopsSparseMatrix: SparseMatrixNode stores scipy.sparse.save_npz
// output as a stored <id>.npz member; it is opened one level deep and
// its .npy members checked.
func TestSkopsSparseMatrix(t *testing.T) {
	npz := func(data []byte, deflate bool) []byte {
		es := []modelcorpus.ZipEntry{
			{Name: "indices.npy", Data: modelcorpus.NPY("<i4", "(2,)", []byte{0, 0, 0, 0, 1, 0, 0, 0}), Deflate: deflate},
			{Name: "indptr.npy", Data: modelcorpus.NPY("<i4", "(3,)", []byte{0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0}), Deflate: deflate},
			{Name: "format.npy", Data: modelcorpus.NPY("<U3", "()", []byte("c\x00\x00\x00s\x00\x00\x00r\x00\x00\x00")), Deflate: deflate},
			{Name: "shape.npy", Data: modelcorpus.NPY("<i8", "(2,)", make([]byte, 16)), Deflate: deflate},
			{Name: "data.npy", Data: data, Deflate: deflate},
		}
		return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es})
	}
	sparse := modelcorpus.SkopsNode{"__class__": "csr_matrix", "__module__": "scipy.sparse._csr", "__loader__": "SparseMatrixNode", "__id__": 3, "type": "scipy", "file": "140000000000777.npz"}
	o := scanOpts
	o.Skops.Trusted = []string{"scipy.sparse._csr.csr_matrix"}
	goodData := modelcorpus.NPY("<f8", "(2,)", make([]byte, 16))
	for _, c := range []struct {
		name  string
		opts  content.Options
		npz   []byte
		outer bool // deflate the .npz member itself
		want  string
	}{
		{"benign, save_npz compressed", o, npz(goodData, true), false, ""},
		{"benign, stored", o, npz(goodData, false), false, ""},
		{"csr_matrix not trusted", scanOpts, npz(goodData, true), false, `SparseMatrixNode "scipy.sparse._csr.csr_matrix" is outside`},
		{"object array pickle inside", o, npz(modelcorpus.NPY("|O", "(1,)", evilPickle()), true), false, `zip member "140000000000777.npz": zip member "data.npy"`},
		{"npz in npz", o, modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "x.npz", Data: npz(goodData, false)}}}), false, `entry "x.npz" is a nested zip archive`},
		{"deflated npz member", o, npz(goodData, false), true, `is a nested zip archive`},
	} {
		root, files := modelcorpus.SkopsLogisticRegression()
		skopsAttrs(root)["x"] = sparse
		var es []modelcorpus.ZipEntry
		for name, b := range files {
			es = append(es, modelcorpus.ZipEntry{Name: name, Data: b})
		}
		sj, _ := json.Marshal(root)
		es = append(es, modelcorpus.ZipEntry{Name: "140000000000777.npz", Data: c.npz, Deflate: c.outer}, modelcorpus.ZipEntry{Name: "schema.json", Data: sj})
		got := verdict(t, layer(c.opts, "", "model.skops"), modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es}), 4096)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}
