package content_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

func onnxInspector(opts content.Options) func(int64) content.Inspector {
	return func(size int64) content.Inspector { return content.NewONNXInspector(opts, size) }
}

func extTensor(loc string) modelcorpus.ONNXTensor {
	return modelcorpus.ONNXTensor{Name: "e", Dims: []int64{4}, External: [][2]string{{"location", loc}, {"length", "16"}}}
}

func TestONNXBenign(t *testing.T) {
	m := modelcorpus.ONNX(modelcorpus.BenignONNX(3 << 20))
	if got := content.Sniff(m[:4096], int64(len(m))); got != content.FormatONNX {
		t.Fatalf("Sniff = %q, want onnx", got)
	}
	for _, chunk := range []int{1 << 20, 4093, 1} {
		if chunk == 1 {
			m = modelcorpus.ONNX(modelcorpus.BenignONNX(4096)) // byte by byte: small
		}
		if got := verdict(t, onnxInspector(content.Options{}), m, chunk); got != "" {
			t.Fatalf("chunk %d: benign model refused: %s", chunk, got)
		}
	}
	// Through the dispatcher, as a ModelPack weight layer and undeclared.
	m = modelcorpus.ONNX(modelcorpus.BenignONNX(3 << 20))
	for _, mt := range []string{"application/vnd.cncf.model.weight.v1.raw", ""} {
		rep, err := content.InspectReader(content.Options{}, bytes.NewReader(m), int64(len(m)), mt, "model.onnx")
		if err != nil || len(rep.Findings) > 0 || rep.Format != content.FormatONNX {
			t.Fatalf("%q: format %q findings %v err %v", mt, rep.Format, rep.Findings, err)
		}
	}
}

// TestONNXStreamingMemory proves initializer bytes are skipped, not held.
func TestONNXStreamingMemory(t *testing.T) {
	m := modelcorpus.ONNX(modelcorpus.BenignONNX(8 << 20))
	assertStreams(t, onnxInspector(content.Options{}), m, 200)
}

// assertStreams feeds data in 64 KiB chunks and fails when the inspector
// allocates more than maxAllocs times (it would be holding data) or is
// not done after Close.
func assertStreams(t *testing.T, mk func(int64) content.Inspector, data []byte, maxAllocs float64) {
	t.Helper()
	var in content.Inspector
	allocs := testing.AllocsPerRun(1, func() {
		in = mk(int64(len(data)))
		for off := 0; off < len(data); off += 64 << 10 {
			if _, err := in.Write(data[off:min(off+64<<10, len(data))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > maxAllocs {
		t.Fatalf("%v allocations for %d bytes: the inspector holds data", allocs, len(data))
	}
	if !in.HeaderDone() {
		t.Fatal("HeaderDone false after a successful Close")
	}
}

func TestONNXAttacks(t *testing.T) {
	withGraph := func(g modelcorpus.ONNXGraph) modelcorpus.ONNXModel {
		m := modelcorpus.BenignONNX(1024)
		m.Graph.Nodes = append(m.Graph.Nodes, modelcorpus.ONNXNode{OpType: "If", Inputs: []string{"c"}, Outputs: []string{"z"},
			Graphs: [][2]any{{"then_branch", g}, {"else_branch", modelcorpus.ONNXGraph{Name: "else"}}}})
		return m
	}
	ext := func(loc string) modelcorpus.ONNXModel {
		m := modelcorpus.BenignONNX(1024)
		m.Graph.Initializers = append(m.Graph.Initializers, extTensor(loc))
		return m
	}
	evil := modelcorpus.BenignONNX(1024)
	evil.Graph.Nodes = append(evil.Graph.Nodes, modelcorpus.ONNXNode{OpType: "Backdoor", Domain: "com.evil", Inputs: []string{"y"}, Outputs: []string{"o"}})
	fn := modelcorpus.BenignONNX(1024)
	fn.Functions = []modelcorpus.ONNXFunction{{Name: "F", Domain: "local.fn", Nodes: []modelcorpus.ONNXNode{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"},
		Tensors: [][2]any{{"value", extTensor("../../etc/passwd")}}}}}}
	nested := modelcorpus.BenignONNX(1024)
	nested.Graph.Nodes = append(nested.Graph.Nodes, modelcorpus.ONNXNode{OpType: "Loop", Outputs: []string{"l"},
		Graphs: [][2]any{{"body", modelcorpus.ONNXGraph{Name: "body", Nodes: []modelcorpus.ONNXNode{{OpType: "Scan", Outputs: []string{"s"},
			Graphs: [][2]any{{"body", modelcorpus.ONNXGraph{Name: "inner", Initializers: []modelcorpus.ONNXTensor{extTensor("/proc/self/environ")}}}}}}}}}})
	list := modelcorpus.BenignONNX(1024)
	list.Graph.Nodes = append(list.Graph.Nodes, modelcorpus.ONNXNode{OpType: "Custom", Domain: "local.fn", Outputs: []string{"g"},
		GraphList: []modelcorpus.ONNXGraph{{Name: "a"}, {Name: "b", Initializers: []modelcorpus.ONNXTensor{extTensor("C:w.bin")}}}})
	list.Functions = []modelcorpus.ONNXFunction{{Name: "Custom", Domain: "local.fn"}}
	// A model's function makes that one operator its own, not its domain:
	// a harmless function in evil.ops does not admit evil.ops/NativeKernel.
	dodge := modelcorpus.BenignONNX(1024)
	dodge.Graph.Nodes = append(dodge.Graph.Nodes, modelcorpus.ONNXNode{OpType: "NativeKernel", Domain: "evil.ops", Inputs: []string{"y"}, Outputs: []string{"o"}})
	dodge.Functions = []modelcorpus.ONNXFunction{{Name: "Harmless", Domain: "evil.ops", Nodes: []modelcorpus.ONNXNode{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}}}}
	// Sparse tensors: values and indices are TensorProtos that onnxruntime
	// loads from external_data like any initializer (sparse_initializer,
	// a Constant's sparse_value attribute, in a subgraph too).
	sparse := func(values, indices modelcorpus.ONNXTensor) modelcorpus.ONNXModel {
		m := modelcorpus.BenignONNX(1024)
		m.Graph.SparseInitializers = []modelcorpus.ONNXSparseTensor{{Values: values, Indices: indices, Dims: []int64{16}}}
		return m
	}
	idx := modelcorpus.ONNXTensor{Name: "i", Dims: []int64{4}, Raw: make([]byte, 32)}
	val := modelcorpus.ONNXTensor{Name: "v", Dims: []int64{4}, Raw: make([]byte, 16)}
	sparseAttr := withGraph(modelcorpus.ONNXGraph{Name: "then", Nodes: []modelcorpus.ONNXNode{{OpType: "Constant", Outputs: []string{"k"},
		Sparse: [][2]any{{"sparse_value", modelcorpus.ONNXSparseTensor{Values: val, Indices: extTensor("../../etc/shadow"), Dims: []int64{16}}}}}}})
	cases := []struct {
		name string
		m    modelcorpus.ONNXModel
		want string
	}{
		{"sparse-initializer-values", sparse(extTensor("/etc/passwd"), idx), "is an absolute path"},
		{"sparse-initializer-indices", sparse(val, extTensor(`..\secret.bin`)), `contains ".."`},
		{"sparse-attribute-in-subgraph", sparseAttr, `contains ".."`},
		{"absolute", ext("/etc/passwd"), "is an absolute path"},
		{"dotdot", ext("weights/../../secret.bin"), `contains ".."`},
		{"dotdot-backslash", ext(`..\..\secret.bin`), `contains ".."`},
		{"dots", ext(`w/... /x.bin`), "only dots and spaces"},
		{"drive", ext(`C:\Windows\win.ini`), "names a drive"},
		{"unc", ext(`\\server\share\w.bin`), "is an absolute path"},
		{"scheme", ext("file:///etc/passwd"), "is a URL"},
		{"http", ext("http://evil.example/w.bin"), "is a URL"},
		{"if-subgraph", withGraph(modelcorpus.ONNXGraph{Name: "then", Initializers: []modelcorpus.ONNXTensor{extTensor("/etc/shadow")}}), "is an absolute path"},
		{"loop-scan-subgraph", nested, "is an absolute path"},
		{"graphs-attribute", list, "names a drive"},
		{"function", fn, `contains ".."`},
		{"custom-domain", evil, `operator Backdoor of domain "com.evil"`},
		{"function-domain-dodge", dodge, `operator NativeKernel of domain "evil.ops"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := modelcorpus.ONNX(c.m)
			for _, chunk := range []int{len(b), 7} {
				got := verdict(t, onnxInspector(content.Options{}), b, chunk)
				if !strings.Contains(got, c.want) {
					t.Fatalf("chunk %d: got %q, want %q", chunk, got, c.want)
				}
			}
			rep, err := content.InspectReader(content.Options{}, bytes.NewReader(b), int64(len(b)), "application/vnd.cncf.model.weight.v1.raw", "model.onnx")
			if err != nil || len(rep.Findings) != 1 || !strings.Contains(rep.Findings[0].Reason, c.want) {
				t.Fatalf("dispatcher: %v %v", rep.Findings, err)
			}
		})
	}
	// The policy key admits the domain.
	opts := content.Options{ONNX: content.ONNXOptions{Domains: []string{"com.evil"}}}
	if got := verdict(t, onnxInspector(opts), modelcorpus.ONNX(evil), 1<<20); got != "" {
		t.Fatalf("allowed domain refused: %s", got)
	}
	// A node calling a model-local function's domain is no custom op.
	local := modelcorpus.BenignONNX(1024)
	local.Graph.Nodes = append(local.Graph.Nodes, modelcorpus.ONNXNode{OpType: "F", Domain: "local.fn", Inputs: []string{"y"}, Outputs: []string{"o"}})
	local.Functions = []modelcorpus.ONNXFunction{{Name: "F", Domain: "local.fn", Nodes: []modelcorpus.ONNXNode{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}}}}
	if got := verdict(t, onnxInspector(content.Options{}), modelcorpus.ONNX(local), 1<<20); got != "" {
		t.Fatalf("model-local function domain refused: %s", got)
	}
	// Sparse tensors with clean locations are served.
	if got := verdict(t, onnxInspector(content.Options{}), modelcorpus.ONNX(sparse(extTensor("sparse/values.bin"), extTensor("sparse/indices.bin"))), 1<<20); got != "" {
		t.Fatalf("sparse initializer with clean locations refused: %s", got)
	}
	for _, ok := range []string{"weights.bin", "data/w.bin", "./w.bin", "w..bin"} {
		if got := verdict(t, onnxInspector(content.Options{}), modelcorpus.ONNX(ext(ok)), 1<<20); got != "" {
			t.Fatalf("clean location %q refused: %s", ok, got)
		}
	}
}

// A domain that only opset_import names (the model's or a function's) runs
// nothing: no node executes an operator of it. Exporters leave such
// imports behind (torch.onnx's dynamo exporter imports
// pkg.onnxscript.torch_lib.common after inlining its functions), so the
// model is served; a node that uses the domain is still refused.
func TestONNXOpsetOnlyDomains(t *testing.T) {
	m := modelcorpus.BenignONNX(1024)
	m.Opsets = [][2]any{{"", int64(21)}, {"com.evil", int64(1)}, {"pkg.onnxscript.torch_lib.common", int64(1)}}
	m.Functions = []modelcorpus.ONNXFunction{{Name: "F", Domain: "local.fn", Opsets: [][2]any{{"", int64(21)}, {"com.evil.fn", int64(1)}},
		Nodes: []modelcorpus.ONNXNode{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}}}}
	b := modelcorpus.ONNX(m)
	for _, chunk := range []int{len(b), 5} {
		if got := verdict(t, onnxInspector(content.Options{}), b, chunk); got != "" {
			t.Fatalf("chunk %d: model whose opset_import names unused domains refused: %s", chunk, got)
		}
	}
	m.Graph.Nodes = append(m.Graph.Nodes, modelcorpus.ONNXNode{OpType: "Backdoor", Domain: "com.evil", Inputs: []string{"y"}, Outputs: []string{"o"}})
	if got := verdict(t, onnxInspector(content.Options{}), modelcorpus.ONNX(m), 1<<20); !strings.Contains(got, `operator Backdoor of domain "com.evil"`) {
		t.Fatalf("node of an imported custom domain: got %q", got)
	}
	m.Graph.Nodes = m.Graph.Nodes[:len(m.Graph.Nodes)-1]
	m.Functions[0].Nodes = append(m.Functions[0].Nodes, modelcorpus.ONNXNode{OpType: "Native", Domain: "com.evil.fn", Inputs: []string{"y"}, Outputs: []string{"o"}})
	if got := verdict(t, onnxInspector(content.Options{}), modelcorpus.ONNX(m), 1<<20); !strings.Contains(got, `operator Native of domain "com.evil.fn"`) {
		t.Fatalf("function node of an imported custom domain: got %q", got)
	}
}

func TestONNXMalformed(t *testing.T) {
	good := modelcorpus.ONNX(modelcorpus.BenignONNX(4096))
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", good[:len(good)-100], "only"},
		{"truncated-varint", append([]byte{0x08, 0x0a, 0x28}, 0x80), "varint"},
		{"overlong-varint", append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 11)...), "longer than 10 bytes"},
		{"group", []byte{0x08, 0x0a, 0x0b}, "wire type 3"},
		{"field-zero", []byte{0x08, 0x0a, 0x00}, "invalid field number"},
		{"no-ir-version", []byte{0x12, 0x01, 'x'}, "no ir_version"},
		{"child-overruns-parent", onnxOverrun(), "past the end of its enclosing message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := verdict(t, onnxInspector(content.Options{}), c.b, 3)
			if !strings.Contains(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// onnxOverrun is a graph whose node claims more bytes than the graph holds.
func onnxOverrun() []byte {
	// ir_version 10; graph (field 7, 4 bytes) holding node (field 1) of length 9
	return []byte{0x08, 0x0a, 0x3a, 0x04, 0x0a, 0x09, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'}
}

func FuzzONNX(f *testing.F) {
	f.Add(modelcorpus.ONNX(modelcorpus.BenignONNX(64)), uint8(5))
	m := modelcorpus.BenignONNX(16)
	m.Graph.Initializers = append(m.Graph.Initializers, extTensor("../x"))
	f.Add(modelcorpus.ONNX(m), uint8(3))
	f.Add(onnxOverrun(), uint8(1))
	sp := modelcorpus.BenignONNX(16)
	sp.Graph.SparseInitializers = []modelcorpus.ONNXSparseTensor{{Values: extTensor("v.bin"), Indices: extTensor("../i.bin"), Dims: []int64{8}}}
	f.Add(modelcorpus.ONNX(sp), uint8(4))
	f.Add([]byte{0x08, 0x0a, 0x0b}, uint8(2))
	late := modelcorpus.BenignONNX(64)
	late.Graph.NodesAfter = []modelcorpus.ONNXNode{{OpType: "Backdoor", Domain: "com.evil", Outputs: []string{"o"}}}
	f.Add(modelcorpus.ONNX(late), uint8(9))
	content.SetONNXFirstRelease(f, 0) // release as early as allowed: the check below has something to check
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, onnxInspector(content.Options{}), data, chunk)
		fuzzRelease(t, data, chunk)
	})
}

// The ONNX walker's throughput over a model with a 1 GiB initializer is
// BenchmarkStream1GiB/onnx (stream_bench_test.go).

// TestONNXByNameAndInArchive: a model whose first field is not ir_version
// is recognised by its .onnx name, and a model inside a tar layer is walked
// like a layer.
func TestONNXByNameAndInArchive(t *testing.T) {
	good := modelcorpus.ONNX(modelcorpus.BenignONNX(4096))
	// Move ir_version (the first 2 bytes) to the end: field order is free.
	reordered := append(append([]byte(nil), good[2:]...), good[:2]...)
	if f := content.Sniff(reordered[:64], int64(len(reordered))); f == content.FormatONNX {
		t.Fatalf("sniffed as onnx without ir_version first")
	}
	rep, err := content.InspectReader(content.Options{}, bytes.NewReader(reordered), int64(len(reordered)), "", "model.onnx")
	if err != nil || len(rep.Findings) > 0 || rep.Format != content.FormatONNX {
		t.Fatalf("by name: format %q findings %v err %v", rep.Format, rep.Findings, err)
	}
	m := modelcorpus.BenignONNX(4096)
	m.Graph.Initializers = append(m.Graph.Initializers, extTensor("../../../root/.ssh/id_rsa"))
	for _, c := range []struct {
		data []byte
		want string
	}{{good, ""}, {modelcorpus.ONNX(m), `contains ".."`}} {
		tb := modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "model/model.onnx", Data: c.data}}, nil)
		rep, err := content.InspectReader(content.Options{}, bytes.NewReader(tb), int64(len(tb)), "application/vnd.kitops.modelkit.model.v1.tar", "")
		if err != nil {
			t.Fatal(err)
		}
		if c.want == "" && len(rep.Findings) > 0 || c.want != "" && (len(rep.Findings) != 1 || !strings.Contains(rep.Findings[0].Reason, c.want)) {
			t.Fatalf("tar member: findings %v, want %q", rep.Findings, c.want)
		}
	}
}

// Bytes that start like a ModelProto in a layer that never holds ONNX
// (an Ollama tensor, a config's binary file) are judged as before: binary
// data (served as a tensor, refused as an unknown config file), not an
// ONNX model refused for its declaration (a few bytes of a tensor can look
// like a ModelProto's first fields).
func TestONNXLookalikeInOtherLayers(t *testing.T) {
	data := onnxLookalike()
	for _, mt := range []string{"application/vnd.ollama.image.tensor", "application/vnd.cncf.model.weight.config.v1.raw"} {
		in, err := content.NewInspector(content.Options{}, mt, "", int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", mt, err)
		}
		_, werr := in.Write(data)
		cerr := in.Close()
		switch {
		case mt == "application/vnd.ollama.image.tensor" && (werr != nil || cerr != nil):
			t.Errorf("%s: refused raw tensor data that starts like a ModelProto: %v / %v", mt, werr, cerr)
		case werr != nil && strings.Contains(werr.Error(), "ONNX"), cerr != nil && strings.Contains(cerr.Error(), "ONNX"):
			t.Errorf("%s: judged as ONNX: %v / %v", mt, werr, cerr)
		}
	}
}

// onnxLookalike is raw data whose first bytes read as ir_version 8 and a
// producer_name field, and the rest as nothing ONNX.
func onnxLookalike() []byte {
	b := []byte{0x08, 0x08, 0x12, 0x03, 'a', 'b', 'c'}
	for i := 0; len(b) < 4096; i++ {
		b = append(b, byte(i*7+3), 0xff)
	}
	return b
}

// Other protobufs start as a ModelProto does (a TensorFlow saved_model.pb:
// field 1 schema_version 1, field 2 meta_graphs): only a file named *.onnx
// is walked as ONNX, so a SavedModel's ops are never served unread as an
// ONNX model's producer name; an ONNX file hiding a zip is a polyglot; a
// location naming a Windows device is refused.
func TestONNXRecognitionAndLocations(t *testing.T) {
	savedModel := append([]byte{0x08, 0x01, 0x12, 0x06, 'P', 'y', 'F', 'u', 'n', 'c'}, make([]byte, 64)...)
	rep, err := content.InspectReader(content.Options{}, bytes.NewReader(savedModel), int64(len(savedModel)), "application/vnd.cncf.model.weight.v1.raw", "saved_model.pb")
	if err != nil || len(rep.Findings) != 1 || strings.Contains(rep.Findings[0].Reason, "ONNX") {
		t.Errorf("saved_model.pb: findings %v (%v); want it refused as unknown binary, not walked as ONNX", rep.Findings, err)
	}
	m := modelcorpus.BenignONNX(64)
	b := append(modelcorpus.ONNX(m), []byte("PK\x03\x04polyglot")...)
	rep, err = content.InspectReader(content.Options{}, bytes.NewReader(b), int64(len(b)), "application/vnd.cncf.model.weight.v1.raw", "model.onnx")
	if err != nil || len(rep.Findings) != 1 || !strings.Contains(rep.Findings[0].Reason, "polyglot") {
		t.Errorf("ONNX with a zip inside: findings %v (%v); want a polyglot refusal", rep.Findings, err)
	}
	for _, loc := range []string{"NUL", "weights/COM1.bin", "con", "aux.txt", "LPT9"} {
		m := modelcorpus.BenignONNX(64)
		m.Graph.Initializers = append(m.Graph.Initializers, extTensor(loc))
		if got := verdict(t, onnxInspector(content.Options{}), modelcorpus.ONNX(m), 1<<20); !strings.Contains(got, "Windows device") {
			t.Errorf("location %q: got %q, want a Windows device refusal", loc, got)
		}
	}
}
