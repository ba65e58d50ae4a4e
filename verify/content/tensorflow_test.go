package content_test

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

func tfInspector(opts content.Options, name string) func(int64) content.Inspector {
	return func(size int64) content.Inspector { return content.NewTensorFlowInspector(opts, name, size) }
}

const mtWeight = "application/vnd.cncf.model.weight.v1.raw"

func inspectAs(t *testing.T, opts content.Options, b []byte, mt, title string) (string, []content.Finding) {
	t.Helper()
	rep, err := content.InspectReader(opts, bytes.NewReader(b), int64(len(b)), mt, title)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Format, rep.Findings
}

func TestTensorFlowBenign(t *testing.T) {
	sm := modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel())
	frozen := modelcorpus.TFGraphDef(modelcorpus.BenignFrozenGraph(3 << 20))
	for _, c := range []struct {
		name string
		b    []byte
	}{{"saved_model.pb", sm}, {"frozen_graph.pb", frozen}} {
		for _, chunk := range []int{len(c.b), 4093, 7} {
			if chunk == 7 && len(c.b) > 1<<20 {
				continue
			}
			if got := verdict(t, tfInspector(content.Options{}, c.name), c.b, chunk); got != "" {
				t.Fatalf("%s chunk %d: benign refused: %s", c.name, chunk, got)
			}
		}
		for _, mt := range []string{mtWeight, ""} {
			if f, fs := inspectAs(t, content.Options{}, c.b, mt, "model/"+c.name); f != content.FormatTensorFlow || len(fs) > 0 {
				t.Fatalf("%s %q: format %q findings %v", c.name, mt, f, fs)
			}
		}
	}
	// A SavedModel directory shipped as a tar layer (KitOps, ModelPack).
	tb := modelcorpus.Tar(modelcorpus.SavedModelDir("my_model/", sm, 1<<20), nil)
	for _, mt := range []string{"application/vnd.kitops.modelkit.model.v1.tar", "application/vnd.cncf.model.weight.v1.tar"} {
		if f, fs := inspectAs(t, content.Options{}, tb, mt, ""); f != content.FormatTar || len(fs) > 0 {
			t.Fatalf("SavedModel tar %s: format %q findings %v", mt, f, fs)
		}
	}
}

// TestTensorFlowStreamingMemory proves Const tensor contents are skipped,
// not held, and TFLite tensor data too.
func TestTensorFlowStreamingMemory(t *testing.T) {
	assertStreams(t, tfInspector(content.Options{}, "frozen.pb"), modelcorpus.TFGraphDef(modelcorpus.BenignFrozenGraph(8<<20)), 300)
	assertStreams(t, tfliteInspector(content.Options{}), modelcorpus.TFLite(modelcorpus.BenignTFLite(2<<20)), 600)
}

func withNode(g modelcorpus.TFGraph, n modelcorpus.TFNode) modelcorpus.TFGraph {
	g.Nodes = append(append([]modelcorpus.TFNode(nil), g.Nodes...), n)
	return g
}

func withFunction(g modelcorpus.TFGraph, f modelcorpus.TFFunction) modelcorpus.TFGraph {
	g.Functions = append(append([]modelcorpus.TFFunction(nil), g.Functions...), f)
	return g
}

func strAttr(k, v string) modelcorpus.TFAttr { return modelcorpus.TFAttr{Key: k, S: &v} }

func TestTensorFlowAttacks(t *testing.T) {
	base := modelcorpus.BenignSavedModel
	readFile := modelcorpus.TFNode{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}}
	// The op name repeated: protobuf keeps the last value of a repeated
	// scalar field, so a walker that keeps the first one is fooled.
	repeated := modelcorpus.TFNode{Name: "n", Op: "Identity", Extra: pbStr(2, "WriteFile")}
	// The op after unknown fields of every wire type.
	unknown := modelcorpus.TFNode{Name: "n", Op: "Identity"}
	unknown.Extra = append(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1), protowire.AppendTag(nil, 98, protowire.Fixed64Type)...)
	unknown.Extra = append(unknown.Extra, make([]byte, 8)...)
	unknown.Extra = append(unknown.Extra, pbStr(97, "x")...)
	unknown.Extra = append(unknown.Extra, pbStr(2, "PyFunc")...)
	// A func attribute inside a list inside a NameAttrList's attribute.
	nested := modelcorpus.TFNode{Name: "call", Op: "PartitionedCall", Attrs: []modelcorpus.TFAttr{{Key: "f", Func: &modelcorpus.TFFunc{
		Name: "__inference_ok_1", Attrs: []modelcorpus.TFAttr{{Key: "branches", FuncList: []modelcorpus.TFFunc{{Name: "Identity"}, {Name: "EagerPyFunc"}}}}}}}}
	// An attribute entry with two AttrValues, the second empty: protobuf
	// merges them, so output_stream keeps the first one's s.
	mergedEntry := append(pbStr(1, "output_stream"), pbStr(2, string(pbStr(2, "file:///tmp/owned")))...)
	mergedEntry = append(mergedEntry, pbStr(2, "")...)
	merged := modelcorpus.TFNode{Name: "p", Op: "PrintV2", Extra: pbStr(5, string(mergedEntry))}
	cases := []struct {
		name  string
		g     modelcorpus.TFGraph
		file  string
		want  string
		graph bool // encode as a GraphDef
	}{
		{"readfile-main-graph", withNode(base(), readFile), "saved_model.pb", `node "leak" runs op ReadFile (reads a file named by a tensor); content.formats.tensorflow.allowOps admits it, in the main graph`, false},
		{"writefile-library-only", withFunction(base(), modelcorpus.TFFunction{Name: "__inference_dump_9", Nodes: []modelcorpus.TFNode{{Name: "w", Op: "WriteFile"}}}), "saved_model.pb", `node "w" runs op WriteFile (writes a file named by a tensor); content.formats.tensorflow.allowOps admits it, in function "__inference_dump_9"`, false},
		{"pyfunc-func-attr", withNode(base(), modelcorpus.TFNode{Name: "c", Op: "StatefulPartitionedCall", Attrs: []modelcorpus.TFAttr{{Key: "f", Func: &modelcorpus.TFFunc{Name: "PyFunc"}}}}), "saved_model.pb", `node "c" names op PyFunc in a function attribute`, false},
		{"nested-func-list", withFunction(base(), modelcorpus.TFFunction{Name: "__inference_f_2", Nodes: []modelcorpus.TFNode{nested}}), "saved_model.pb", `names op EagerPyFunc in a function attribute (runs a Python function); content.formats.tensorflow.allowOps admits it, in function "__inference_f_2"`, false},
		{"repeated-op-field", withNode(base(), repeated), "saved_model.pb", "runs op WriteFile", false},
		{"unknown-fields", withNode(base(), unknown), "saved_model.pb", "runs op PyFunc", false},
		{"frozen-graph", withNode(modelcorpus.BenignFrozenGraph(1024), modelcorpus.TFNode{Name: "ls", Op: "MatchingFiles"}), "frozen.pb", "runs op MatchingFiles", true},
		{"gradient", modelcorpus.TFGraph{Nodes: modelcorpus.BenignFrozenGraph(64).Nodes, Gradients: [][2]string{{"f", "PyFuncStateless"}}}, "graph.pb", "gradient function of the graph's library names op PyFuncStateless", true},
		{"printv2-file", withNode(base(), modelcorpus.TFNode{Name: "p", Op: "PrintV2", Attrs: []modelcorpus.TFAttr{strAttr("output_stream", "file:///home/u/.bashrc")}}), "saved_model.pb", `runs op PrintV2 with output_stream "file:///home/u/.bashrc"`, false},
		{"printv2-merged-attrvalue", withNode(base(), merged), "saved_model.pb", `runs op PrintV2 with output_stream "file:///tmp/owned"`, false},
		{"decodeproto-file", withNode(base(), modelcorpus.TFNode{Name: "d", Op: "DecodeProtoV2", Attrs: []modelcorpus.TFAttr{strAttr("descriptor_source", "/etc/shadow")}}), "saved_model.pb", `descriptor_source "/etc/shadow"`, false},
		{"dataset", withFunction(base(), modelcorpus.TFFunction{Name: "__inference_ds_3", Nodes: []modelcorpus.TFNode{{Name: "d", Op: "TFRecordDataset"}}}), "saved_model.pb", "runs op TFRecordDataset", false},
		{"vocab-table", withNode(base(), modelcorpus.TFNode{Name: "t", Op: "InitializeTableFromTextFileV2"}), "saved_model.pb", "runs op InitializeTableFromTextFileV2", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := modelcorpus.TFSavedModel(c.g)
			if c.graph {
				b = modelcorpus.TFGraphDef(c.g)
			}
			for _, chunk := range []int{len(b), 7} {
				if got := verdict(t, tfInspector(content.Options{}, c.file), b, chunk); !strings.Contains(got, c.want) {
					t.Fatalf("chunk %d: got %q, want %q", chunk, got, c.want)
				}
			}
			if _, fs := inspectAs(t, content.Options{}, b, mtWeight, c.file); len(fs) != 1 || !strings.Contains(fs[0].Reason, c.want) {
				t.Fatalf("dispatcher: %v", fs)
			}
		})
	}
	// The policy keys: allowOps admits, denyOps adds.
	vocab := modelcorpus.TFSavedModel(withNode(base(), modelcorpus.TFNode{Name: "t", Op: "InitializeTableFromTextFileV2"}))
	allow := content.Options{TensorFlow: content.TensorFlowOptions{AllowOps: []string{"InitializeTableFromTextFileV2"}}}
	if got := verdict(t, tfInspector(allow, "saved_model.pb"), vocab, 1<<20); got != "" {
		t.Fatalf("allowOps: %s", got)
	}
	deny := content.Options{TensorFlow: content.TensorFlowOptions{DenyOps: []string{"SaveV2"}}}
	if got := verdict(t, tfInspector(deny, "saved_model.pb"), modelcorpus.TFSavedModel(base()), 1<<20); !strings.Contains(got, "SaveV2 (listed in content.formats.tensorflow.denyOps)") {
		t.Fatalf("denyOps: %q", got)
	}
	// Benign PrintV2 to stderr and DecodeProtoV2 from the registry pass.
	ok := withNode(base(), modelcorpus.TFNode{Name: "p", Op: "PrintV2", Attrs: []modelcorpus.TFAttr{strAttr("output_stream", "stderr")}})
	ok = withNode(ok, modelcorpus.TFNode{Name: "d", Op: "DecodeProtoV2", Attrs: []modelcorpus.TFAttr{strAttr("descriptor_source", "local://")}})
	if got := verdict(t, tfInspector(content.Options{}, "saved_model.pb"), modelcorpus.TFSavedModel(ok), 1<<20); got != "" {
		t.Fatalf("benign PrintV2/DecodeProtoV2 refused: %s", got)
	}
}

func pbStr(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

// A SavedModel directory in a tar whose saved_model.pb runs ReadFile in a
// library function is refused naming the member; saved_model.pbtxt (text,
// which TensorFlow loads when saved_model.pb is absent) is refused; a
// pickle in place of the variables is refused as a pickle.
func TestSavedModelTarAttacks(t *testing.T) {
	evil := modelcorpus.TFSavedModel(withFunction(modelcorpus.BenignSavedModel(), modelcorpus.TFFunction{Name: "__inference_x_1", Nodes: []modelcorpus.TFNode{{Name: "r", Op: "ReadFile"}}}))
	pbtxt := modelcorpus.SavedModelDir("m/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 64)
	pbtxt[0] = modelcorpus.TarEntry{Name: "m/saved_model.pbtxt", Data: []byte("saved_model_schema_version: 1\nmeta_graphs {\n}\n")}
	pickled := modelcorpus.SavedModelDir("m/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 64)
	pickled[3].Data = modelcorpus.OsSystemPickle()
	for _, c := range []struct {
		name    string
		entries []modelcorpus.TarEntry
		want    string
	}{
		{"readfile", modelcorpus.SavedModelDir("m/", evil, 1024), `tar member "m/saved_model.pb": node "r" runs op ReadFile`},
		{"pbtxt", pbtxt, "saved_model.pbtxt is a SavedModel in protobuf text format"},
		{"pickle-variables", pickled, "pickle"},
	} {
		tb := modelcorpus.Tar(c.entries, nil)
		_, fs := inspectAs(t, content.Options{}, tb, "application/vnd.kitops.modelkit.model.v1.tar", "")
		if len(fs) != 1 || !strings.Contains(fs[0].Reason, c.want) {
			t.Errorf("%s: findings %v, want %q", c.name, fs, c.want)
		}
	}
}

// The same SavedModel directory shipped as a zip layer: every member is
// checked by its name, saved_model.pb walked.
func TestSavedModelZip(t *testing.T) {
	zipOf := func(sm []byte) []byte {
		var es []modelcorpus.ZipEntry
		for _, e := range modelcorpus.SavedModelDir("m/", sm, 4096) {
			es = append(es, modelcorpus.ZipEntry{Name: e.Name, Data: e.Data, Deflate: e.Name == "m/saved_model.pb"})
		}
		return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es})
	}
	if f, fs := inspectAs(t, content.Options{}, zipOf(modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel())), mtWeight, "saved_model.zip"); f != content.FormatZip || len(fs) > 0 {
		t.Fatalf("benign SavedModel zip: format %q findings %v", f, fs)
	}
	evil := modelcorpus.TFSavedModel(withNode(modelcorpus.BenignSavedModel(), modelcorpus.TFNode{Name: "py", Op: "EagerPyFunc"}))
	if _, fs := inspectAs(t, content.Options{}, zipOf(evil), mtWeight, "saved_model.zip"); len(fs) != 1 || !strings.Contains(fs[0].Reason, `node "py" runs op EagerPyFunc`) {
		t.Fatalf("malicious SavedModel zip: %v", fs)
	}
}

func TestTensorFlowMalformed(t *testing.T) {
	good := modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel())
	noOp := modelcorpus.TFGraphDef(modelcorpus.TFGraph{Nodes: []modelcorpus.TFNode{{Name: "x"}}})
	for _, c := range []struct {
		name, file string
		b          []byte
		want       string
	}{
		{"truncated", "saved_model.pb", good[:len(good)-10], "truncated"},
		{"no-meta-graph", "saved_model.pb", []byte{0x08, 0x01}, "holds no meta graph"},
		{"empty-graph", "frozen.pb", pbStr(4, "\x08\x01"), "not a TensorFlow GraphDef"},
		{"node-without-op", "frozen.pb", noOp, "has no op"},
		{"group", "frozen.pb", []byte{0x0b}, "wire type 3"},
		{"long-op", "frozen.pb", pbStr(1, string(pbStr(2, strings.Repeat("A", 5000)))), "limit 4096"},
	} {
		if got := verdict(t, tfInspector(content.Options{}, c.file), c.b, 3); !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func FuzzTensorFlow(f *testing.F) {
	f.Add(modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), uint8(5), true)
	f.Add(modelcorpus.TFGraphDef(modelcorpus.BenignFrozenGraph(64)), uint8(3), false)
	f.Add(modelcorpus.TFGraphDef(withNode(modelcorpus.BenignFrozenGraph(16), modelcorpus.TFNode{Name: "p", Op: "PrintV2", Attrs: []modelcorpus.TFAttr{strAttr("output_stream", "file:///x")}})), uint8(1), false)
	f.Add(pbStr(1, string(pbStr(5, `{"class_name": "Dense"}`))), uint8(0x82), false)
	f.Add(legacyKerasSavedModel(`{"class_name": "Dense", "config": {}}`), uint8(9), true)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, saved bool) {
		// the name decides the message: SavedModel, GraphDef, and (by
		// the chunk's high bits) Keras metadata or a fingerprint
		name := "frozen.pb"
		switch {
		case saved:
			name = "saved_model.pb"
		case chunk&0x80 != 0:
			name = "keras_metadata.pb"
		case chunk&0x40 != 0:
			name = "fingerprint.pb"
		}
		fuzzChunking(t, tfInspector(content.Options{}, name), data, chunk)
	})
}

// BenchmarkTensorFlowFrozen1GiB streams a frozen graph whose Const holds
// 1 GiB of weights (one reused buffer: the graph is never materialised).
func BenchmarkTensorFlowFrozen1GiB(b *testing.B) {
	const payload = 1 << 30
	// tensor_content header, then the payload
	tensor := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)
	tensor = protowire.AppendTag(tensor, 4, protowire.BytesType)
	tensor = protowire.AppendVarint(tensor, payload)
	attrValue := protowire.AppendVarint(protowire.AppendTag(nil, 8, protowire.BytesType), uint64(len(tensor)+payload))
	entry := append(pbStr(1, "value"), protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.BytesType), uint64(len(attrValue)+len(tensor)+payload))...)
	node := append(append(pbStr(1, "w"), pbStr(2, "Const")...), protowire.AppendVarint(protowire.AppendTag(nil, 5, protowire.BytesType), uint64(len(entry)+len(attrValue)+len(tensor)+payload))...)
	head := modelcorpus.TFGraphDef(modelcorpus.BenignFrozenGraph(16))
	head = protowire.AppendTag(head, 1, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(node)+len(entry)+len(attrValue)+len(tensor)+payload))
	head = append(append(append(append(head, node...), entry...), attrValue...), tensor...)
	benchSynthetic(b, func(size int64) content.Inspector {
		return content.NewTensorFlowInspector(content.Options{}, "frozen.pb", size)
	}, head, payload, nil)
}

// BenchmarkSavedModelTar1GiB streams a SavedModel directory tar whose
// variables shard holds 1 GiB, through the dispatcher as a KitOps layer.
func BenchmarkSavedModelTar1GiB(b *testing.B) {
	const payload = 1 << 30
	sm := modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel())
	dir := modelcorpus.SavedModelDir("m/", sm, 0)
	head := modelcorpus.Tar(dir[:3], nil)
	head = head[:len(head)-1024] // drop the end-of-archive marker
	hdr := modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "m/variables/variables.data-00000-of-00001"}}, nil)[:512]
	hdr = tarSize(hdr, payload)
	head = append(head, hdr...)
	tail := make([]byte, 1024)
	benchSynthetic(b, func(size int64) content.Inspector {
		in, err := content.NewInspector(content.Options{}, "application/vnd.kitops.modelkit.model.v1.tar", "", size)
		if err != nil {
			b.Fatal(err)
		}
		return in
	}, head, payload, tail)
}

// tarSize rewrites a ustar header's size and checksum.
func tarSize(h []byte, size int64) []byte {
	h = append([]byte(nil), h...)
	copy(h[124:136], []byte(padOctal(size, 11)+"\x00"))
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	copy(h[148:156], []byte(padOctal(sum, 6)+"\x00 "))
	return h
}

func padOctal(v int64, n int) string {
	s := strings.TrimLeft(strings.Repeat("0", n)+formatOctal(v), "")
	return s[len(s)-n:]
}

func formatOctal(v int64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 8 {
		b = append([]byte{byte('0' + v%8)}, b...)
	}
	return string(b)
}

// benchSynthetic feeds head, payload zero-ish bytes in 1 MiB chunks, then
// tail, and reports MB/s over the whole.
func benchSynthetic(b *testing.B, mk func(int64) content.Inspector, head []byte, payload int64, tail []byte) {
	total := int64(len(head)) + payload + int64(len(tail))
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*131 + 7)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		in := mk(total)
		if _, err := in.Write(head); err != nil {
			b.Fatal(err)
		}
		for left := payload; left > 0; left -= int64(len(chunk)) {
			if _, err := in.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
				b.Fatal(err)
			}
		}
		if len(tail) > 0 {
			if _, err := in.Write(tail); err != nil {
				b.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// keras_metadata.pb (Keras's SavedMetadata in a TF-Keras SavedModel)
// carries each layer's config as JSON: a Lambda layer in it is refused by
// the Keras config check, a plain Dense layer passes.
func TestKerasMetadataPB(t *testing.T) {
	meta := func(json string) []byte {
		// tensorflow/python/keras/protobuf/saved_metadata.proto: field 1
		// reserved, version (a VersionDef) is field 6.
		obj := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1) // node_id
		obj = append(obj, pbStr(3, "root.layer-1")...)                                      // node_path
		obj = append(obj, pbStr(4, "_tf_keras_layer")...)                                   // identifier
		obj = append(obj, pbStr(5, json)...)                                                // metadata
		obj = append(obj, pbStr(6, string(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)))...)
		return pbStr(1, string(obj)) // nodes
	}
	dense := meta(`{"name": "dense", "trainable": true, "class_name": "Dense", "config": {"units": 4}}`)
	if got := verdict(t, tfInspector(content.Options{}, "keras_metadata.pb"), dense, 5); got != "" {
		t.Fatalf("Dense layer refused: %s", got)
	}
	lambda := meta(`{"name": "l", "class_name": "Lambda", "config": {"function": ["4wEAAAAAAAAA", null, null]}}`)
	if got := verdict(t, tfInspector(content.Options{}, "keras_metadata.pb"), lambda, 5); !strings.Contains(got, "Lambda layer") {
		t.Fatalf("Lambda layer: got %q", got)
	}
	tb := modelcorpus.Tar(append(modelcorpus.SavedModelDir("m/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 64),
		modelcorpus.TarEntry{Name: "m/keras_metadata.pb", Data: lambda}), nil)
	if _, fs := inspectAs(t, content.Options{}, tb, "application/vnd.kitops.modelkit.model.v1.tar", ""); len(fs) != 1 || !strings.Contains(fs[0].Reason, "Lambda layer") {
		t.Fatalf("SavedModel tar with a Lambda in keras_metadata.pb: %v", fs)
	}
}

// BenchmarkTensorFlowNodes measures the walker on graph structure rather
// than skipped constants: a 64 MiB GraphDef of small nodes, each with a
// function attribute.
func BenchmarkTensorFlowNodes(b *testing.B) {
	node := pbStr(1, string(modelcorpus.TFNodeDef(modelcorpus.TFNode{Name: "model/dense_1/MatMul", Op: "StatefulPartitionedCall", Inputs: []string{"x", "w"},
		Attrs: []modelcorpus.TFAttr{{Key: "f", Func: &modelcorpus.TFFunc{Name: "__inference_call_42"}}, {Key: "T", Type: 1}}})))
	var g []byte
	for len(g) < 64<<20 {
		g = append(g, node...)
	}
	b.SetBytes(int64(len(g)))
	for b.Loop() {
		in := content.NewTensorFlowInspector(content.Options{}, "frozen.pb", int64(len(g)))
		for off := 0; off < len(g); off += 1 << 20 {
			if _, err := in.Write(g[off:min(off+1<<20, len(g))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// tfliteSavedModelPolyglot builds a file that is both a TFLite model and a
// SavedModel: byte 0 opens protobuf field 1 (fixed64, bytes 1..8, which
// hold "TFL3" at 4..8), an unknown field 15 carries the flatbuffer's
// vtable and Model table, then the SavedModel follows.
func tfliteSavedModelPolyglot(t *testing.T, sm []byte) []byte {
	t.Helper()
	const root = 0x109
	b := []byte{0x09, 0x01, 0x00, 0x00, 'T', 'F', 'L', '3', 0x00}
	hdr := protowire.AppendTag(nil, 15, protowire.BytesType)
	start := len(b) + len(hdr) + 2
	bodyLen := root + 8 - start
	hdr = protowire.AppendVarint(hdr, uint64(bodyLen))
	if len(b)+len(hdr) != start {
		t.Fatal("length varint size")
	}
	b = append(b, hdr...)
	body := make([]byte, bodyLen)
	copy(body[root-6-start:], []byte{6, 0, 8, 0, 4, 0})     // vtable
	copy(body[root-start:], []byte{6, 0, 0, 0, 3, 0, 0, 0}) // Model: version 3
	return append(append(b, body...), sm...)
}

// A *.pb that also sniffs as TFLite is a polyglot: TensorFlow parses it as
// a protobuf whatever its header, so it is refused, not judged as TFLite.
func TestTensorFlowTFLitePolyglot(t *testing.T) {
	sm := modelcorpus.TFSavedModel(withNode(modelcorpus.BenignSavedModel(), modelcorpus.TFNode{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}}))
	b := tfliteSavedModelPolyglot(t, sm)
	if got := content.Sniff(b[:min(len(b), 4096)], int64(len(b))); got != content.FormatTFLite {
		t.Fatalf("Sniff = %q, want tflite (the polyglot is not one)", got)
	}
	if got := verdict(t, tfInspector(content.Options{}, "saved_model.pb"), b, 4096); !strings.Contains(got, "ReadFile") {
		t.Fatalf("TensorFlow walker on the polyglot: %q", got)
	}
	for _, title := range []string{"saved_model.pb", "m/saved_model.pb", "frozen.PB"} {
		_, fs := inspectAs(t, content.Options{}, b, mtWeight, title)
		if len(fs) != 1 || !strings.Contains(fs[0].Reason, "polyglot") {
			t.Fatalf("%s: findings %v", title, fs)
		}
	}
}

// legacyKerasSavedModel is a SavedModel whose object graph holds a Keras
// layer's metadata (json), as TF < 2.5 wrote it.
func legacyKerasSavedModel(json string) []byte {
	user := append(pbStr(1, "_tf_keras_layer"), pbStr(3, json)...) // identifier, metadata
	objs := pbStr(1, string(pbStr(4, "")))                         // a node with an empty user_object
	objs = append(objs, pbStr(1, string(pbStr(4, string(user))))...)
	meta := append(pbStr(2, string(modelcorpus.TFGraphDef(modelcorpus.BenignSavedModel()))), pbStr(7, string(objs))...)
	return append(protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1), pbStr(2, string(meta))...)
}

// A SavedModel of TF < 2.5 has no keras_metadata.pb: tf.keras's
// load_model then reads each layer's config from the object graph
// (MetaGraphDef.object_graph_def, SavedObject.user_object.metadata) and
// revives Lambda layers from it.
func TestSavedModelLegacyKerasMetadata(t *testing.T) {
	sm := legacyKerasSavedModel
	dense := sm(`{"name": "dense", "trainable": true, "expects_training_arg": false, "dtype": "float32", "class_name": "Dense", "config": {"units": 4}}`)
	lambda := sm(`{"name": "l", "class_name": "Lambda", "config": {"function": ["4wEAAAAAAAAA", null, null]}}`)
	for _, chunk := range []int{len(dense), 7} {
		if got := verdict(t, tfInspector(content.Options{}, "saved_model.pb"), dense, chunk); got != "" {
			t.Fatalf("chunk %d: Dense layer refused: %s", chunk, got)
		}
		if got := verdict(t, tfInspector(content.Options{}, "saved_model.pb"), lambda, chunk); !strings.Contains(got, "saved_model.pb object metadata") || !strings.Contains(got, "Lambda layer") {
			t.Fatalf("chunk %d: Lambda layer: got %q", chunk, got)
		}
	}
	if _, fs := inspectAs(t, content.Options{}, lambda, mtWeight, "m/saved_model.pb"); len(fs) != 1 || !strings.Contains(fs[0].Reason, "Lambda layer") {
		t.Fatalf("dispatcher: %v", fs)
	}
}

// File names are compared ignoring case (a case-insensitive file system
// maps SAVED_MODEL.PB to saved_model.pb), and the SavedModel files the
// gate does not parse are refused by name: saved_model.pbtxt and the
// chunked saved_model.cpb.
func TestTensorFlowNameCase(t *testing.T) {
	sm := modelcorpus.TFSavedModel(withNode(modelcorpus.BenignSavedModel(), modelcorpus.TFNode{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}}))
	// A SavedModel that parses as a GraphDef too (its meta graph read as
	// a function library): walked as a GraphDef, it would pass.
	small := pbStr(2, string(pbStr(2, string(pbStr(1, string(modelcorpus.TFNodeDef(modelcorpus.TFNode{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}})))))))
	for _, b := range [][]byte{sm, small} {
		for _, title := range []string{"saved_model.pb", "SAVED_MODEL.PB", "m/Saved_Model.pb"} {
			if _, fs := inspectAs(t, content.Options{}, b, mtWeight, title); len(fs) != 1 || !strings.Contains(fs[0].Reason, `node "leak" runs op ReadFile`) {
				t.Fatalf("%s: findings %v", title, fs)
			}
		}
	}
	for title, want := range map[string]string{
		"m/saved_model.cpb":   "chunked SavedModel",
		"SAVED_MODEL.CPB":     "chunked SavedModel",
		"Saved_Model.PBTXT":   "protobuf text format",
		"m/saved_model.pbtxt": "protobuf text format",
	} {
		// even where unknown binary is served
		if _, fs := inspectAs(t, content.Options{AllowUnknown: true}, sm, mtWeight, title); len(fs) != 1 || !strings.Contains(fs[0].Reason, want) {
			t.Fatalf("%s: findings %v", title, fs)
		}
	}
	// keras_metadata.pb in capitals is still read as SavedMetadata.
	lambda := pbStr(1, string(pbStr(5, `{"class_name": "Lambda", "config": {}}`)))
	if got := verdict(t, tfInspector(content.Options{}, "m/KERAS_METADATA.PB"), lambda, 5); !strings.Contains(got, "Lambda layer") {
		t.Fatalf("KERAS_METADATA.PB: %q", got)
	}
}
