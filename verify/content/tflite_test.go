package content_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

func tfliteInspector(opts content.Options) func(int64) content.Inspector {
	return func(size int64) content.Inspector { return content.NewTFLiteInspector(opts, size) }
}

func TestTFLiteBenign(t *testing.T) {
	m := modelcorpus.TFLite(modelcorpus.BenignTFLite(300 << 10))
	if got := content.Sniff(m[:4096], int64(len(m))); got != content.FormatTFLite {
		t.Fatalf("Sniff = %q", got)
	}
	for _, chunk := range []int{len(m), 65521, 4093, 1} {
		if got := verdict(t, tfliteInspector(content.Options{}), m, chunk); got != "" {
			t.Fatalf("chunk %d: benign refused: %s", chunk, got)
		}
	}
	for _, mt := range []string{mtWeight, ""} {
		if f, fs := inspectAs(t, content.Options{}, m, mt, "model.tflite"); f != content.FormatTFLite || len(fs) > 0 {
			t.Fatalf("%q: format %q findings %v", mt, f, fs)
		}
	}
	// The layout of models over 2 GB: buffers' data after the flatbuffer.
	ext := modelcorpus.TFLiteModel{Ops: modelcorpus.BenignTFLite(16).Ops, External: []uint64{5 << 20, 3 << 20}}
	fb := modelcorpus.TFLite(ext)
	big := append(append(fb, modelcorpus.TFLiteTail(fb)...), make([]byte, 8<<20+16)...)
	in := content.NewTFLiteInspector(content.Options{}, int64(len(big)))
	// Every table is read with up to 128 bytes after it (its vtable may
	// follow): the verdict comes that far past the flatbuffer.
	split := len(fb) + 128
	if _, err := in.Write(big[:split]); err != nil {
		t.Fatal(err)
	}
	if !in.HeaderDone() {
		t.Fatal("HeaderDone false once the operator codes were read")
	}
	if _, err := in.Write(big[split:]); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTFLiteOps(t *testing.T) {
	with := func(op modelcorpus.TFLiteOp) []byte {
		m := modelcorpus.BenignTFLite(1 << 10)
		m.Ops = append(m.Ops, op)
		return modelcorpus.TFLite(m)
	}
	custom := with(modelcorpus.TFLiteOp{Builtin: 32, Custom: "MyNativeKernel", Weights: []byte{1, 2, 3, 4}})
	flex := with(modelcorpus.TFLiteOp{Builtin: 32, Custom: "FlexAddV2"})
	flexRead := with(modelcorpus.TFLiteOp{Builtin: 32, Custom: "FlexReadFile"})
	deprecated := with(modelcorpus.TFLiteOp{Builtin: 32, Custom: "Hidden", Deprecated: true})
	// Custom ops TFLite's standard resolver registers itself (SSD's
	// detection post-processing, audio front ends) pass by default.
	ssd := with(modelcorpus.TFLiteOp{Builtin: 32, Custom: "TFLite_Detection_PostProcess"})
	mfcc := with(modelcorpus.TFLiteOp{Builtin: 32, Custom: "Mfcc"})
	allowFlex := content.Options{TFLite: content.TFLiteOptions{AllowFlex: true}}
	for _, c := range []struct {
		name string
		opts content.Options
		b    []byte
		want string
	}{
		{"custom", content.Options{}, custom, `custom op "MyNativeKernel" is not one of TFLite's standard custom ops (TFLite_Detection_PostProcess, Mfcc, AudioSpectrogram, NumericVerify): it runs a kernel the application registers`},
		{"custom-deprecated-code", content.Options{}, deprecated, `custom op "Hidden"`},
		{"flex", content.Options{}, flex, `Flex op "FlexAddV2" runs a TensorFlow kernel (select TF ops), the op named in its custom options; content.formats.tflite.flex: allow admits Flex ops whose TensorFlow op passes content.formats.tensorflow`},
		{"flex-denied-tf-op", allowFlex, flexRead, `Flex op "FlexReadFile" names TensorFlow op ReadFile (reads a file named by a tensor)`},
		{"custom-allowed", content.Options{TFLite: content.TFLiteOptions{CustomOps: []string{"MyNativeKernel"}}}, custom, ""},
		{"flex-allowed", allowFlex, flex, ""},
		{"standard-custom-ssd", content.Options{}, ssd, ""},
		{"standard-custom-mfcc", content.Options{}, mfcc, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{len(c.b), 5} {
				got := verdict(t, tfliteInspector(c.opts), c.b, chunk)
				if c.want == "" && got != "" || !strings.Contains(got, c.want) {
					t.Fatalf("chunk %d: got %q, want %q", chunk, got, c.want)
				}
			}
			if c.want != "" {
				if _, fs := inspectAs(t, c.opts, c.b, mtWeight, "model.tflite"); len(fs) != 1 || !strings.Contains(fs[0].Reason, c.want) {
					t.Fatalf("dispatcher: %v", fs)
				}
			}
		})
	}
}

// Several custom ops with the same fields share one vtable, which the
// builder (deduplicating) places with the first one created: after
// megabytes of weights, far past the later opcode tables and their names.
// Allowed, they pass; the second, denied, is found.
func TestTFLiteSharedVtableFarAhead(t *testing.T) {
	w := make([]byte, 3<<20)
	m := modelcorpus.TFLiteModel{Ops: []modelcorpus.TFLiteOp{
		{Builtin: 32, Custom: "FlexAddV2", Weights: w},
		{Builtin: 3, Weights: w},
		{Builtin: 32, Custom: "FlexMatMul", Weights: w},
		{Builtin: 32, Custom: "MyKernel", Weights: w},
	}}
	opts := content.Options{TFLite: content.TFLiteOptions{AllowFlex: true, CustomOps: []string{"MyKernel"}}}
	b := modelcorpus.TFLite(m)
	for _, chunk := range []int{len(b), 1 << 20, 4093} {
		if got := verdict(t, tfliteInspector(opts), b, chunk); got != "" {
			t.Fatalf("chunk %d: allowed ops refused: %s", chunk, got)
		}
	}
	m.Ops[2].Custom = "FlexWriteFile"
	b = modelcorpus.TFLite(m)
	if got := verdict(t, tfliteInspector(opts), b, 4093); !strings.Contains(got, `Flex op "FlexWriteFile" names TensorFlow op WriteFile`) {
		t.Fatalf("denied Flex op behind a shared vtable: %q", got)
	}
}

// tflOpcodeTable finds the custom OperatorCode table of a model built by
// modelcorpus (its custom_code string) and returns the table offset.
func tflRoot(b []byte) int { return int(binary.LittleEndian.Uint32(b)) }

func TestTFLiteMalformed(t *testing.T) {
	good := modelcorpus.TFLite(modelcorpus.BenignTFLite(64))
	set32 := func(off int, v uint32) []byte {
		b := append([]byte(nil), good...)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	root := tflRoot(good)
	v2 := modelcorpus.TFLite(modelcorpus.TFLiteModel{Ops: modelcorpus.BenignTFLite(8).Ops, Version: 2})
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", good[:len(good)-40], "run past the end of the file"},
		{"root-out-of-bounds", set32(0, 1<<30), "truncated"},
		{"root-into-header", set32(0, 4), "does not point forward"},
		{"vtable-far-back", set32(root, 1<<20), "vtable is 1048576 bytes before it"},
		{"vtable-out-of-file", set32(root, 0x80000000), "outside the"},
		{"bad-identifier", append([]byte{8, 0, 0, 0, 'T', 'F', 'L', '2'}, make([]byte, 64)...), "not TFL3"},
		{"version", v2, "schema version 2 is not 3"},
	} {
		if got := verdict(t, tfliteInspector(content.Options{}), c.b, 3); !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	// A vtable claiming a table larger than what the reader keeps.
	b := append([]byte(nil), good...)
	vt := root - int(int32(binary.LittleEndian.Uint32(b[root:])))
	binary.LittleEndian.PutUint16(b[vt+2:], 4000)
	if got := verdict(t, tfliteInspector(content.Options{}), b, 64); !strings.Contains(got, "4000 bytes long") && !strings.Contains(got, "truncated") {
		t.Errorf("oversized table: %q", got)
	}
	// Corrupting any byte never panics and never depends on chunking.
	for i := range good {
		c := append([]byte(nil), good...)
		c[i] ^= 0xA5
		whole := verdict(t, tfliteInspector(content.Options{}), c, len(c))
		if got := verdict(t, tfliteInspector(content.Options{}), c, 7); got != whole {
			t.Fatalf("byte %d: chunking changed the verdict: %q vs %q", i, whole, got)
		}
	}
	_ = bytes.MinRead
}

func FuzzTFLite(f *testing.F) {
	f.Add(modelcorpus.TFLite(modelcorpus.BenignTFLite(32)), uint8(5))
	m := modelcorpus.BenignTFLite(8)
	m.Ops = append(m.Ops, modelcorpus.TFLiteOp{Builtin: 32, Custom: "FlexReadFile"})
	f.Add(modelcorpus.TFLite(m), uint8(3))
	f.Add(modelcorpus.TFLite(modelcorpus.TFLiteModel{Ops: m.Ops, External: []uint64{64}}), uint8(11))
	flex := modelcorpus.BenignTFLite(8)
	flex.Ops = append(flex.Ops, modelcorpus.TFLiteOp{Builtin: 32, Custom: "FlexAddV2",
		Options: modelcorpus.FlexOptions("AddV2", modelcorpus.TFNodeDef(modelcorpus.TFNode{Name: "a", Op: "AddV2", Inputs: []string{"x", "y"}}))})
	f.Add(modelcorpus.TFLite(flex), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, tfliteInspector(content.Options{TFLite: content.TFLiteOptions{AllowFlex: true}}), data, chunk)
	})
}

// BenchmarkTFLite1GiB streams a TFLite model whose buffers (1 GiB) follow
// the flatbuffer, the layout the converter writes for large models.
func BenchmarkTFLite1GiB(b *testing.B) {
	const payload = 1 << 30
	fb := modelcorpus.TFLite(modelcorpus.TFLiteModel{Ops: modelcorpus.BenignTFLite(16).Ops, External: []uint64{payload}})
	head := append(fb, modelcorpus.TFLiteTail(fb)...)
	benchSynthetic(b, func(size int64) content.Inspector { return content.NewTFLiteInspector(content.Options{}, size) }, head, payload, nil)
}

// With flex: allow, a Flex op runs the TensorFlow op its custom_options
// name (a flexbuffer: op name, serialized NodeDef), whatever its custom
// code says: both must pass the TensorFlow denylist.
func TestTFLiteFlexOptions(t *testing.T) {
	with := func(code, op string, node modelcorpus.TFNode) []byte {
		m := modelcorpus.BenignTFLite(1 << 10)
		m.Ops = append(m.Ops, modelcorpus.TFLiteOp{Builtin: 32, Custom: code, Options: modelcorpus.FlexOptions(op, modelcorpus.TFNodeDef(node))})
		return modelcorpus.TFLite(m)
	}
	str := func(k, v string) modelcorpus.TFAttr { return modelcorpus.TFAttr{Key: k, S: &v} }
	add := modelcorpus.TFNode{Name: "add", Op: "AddV2", Inputs: []string{"a", "b"}}
	read := modelcorpus.TFNode{Name: "add", Op: "ReadFile", Inputs: []string{"a"}}
	allowFlex := content.Options{TFLite: content.TFLiteOptions{AllowFlex: true}}
	bad := modelcorpus.BenignTFLite(1 << 10)
	bad.Ops = append(bad.Ops, modelcorpus.TFLiteOp{Builtin: 32, Custom: "FlexAddV2", Options: []byte{1, 2, 3, 4, 5, 6}})
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"honest", with("FlexAddV2", "AddV2", add), ""},
		{"op-name", with("FlexAddV2", "ReadFile", add), `Flex op "FlexAddV2" runs TensorFlow op ReadFile (reads a file named by a tensor)`},
		{"nodedef-op", with("FlexAddV2", "AddV2", read), `Flex op "FlexAddV2": its NodeDef runs op ReadFile`},
		{"nodedef-printv2", with("FlexPrintV2", "PrintV2", modelcorpus.TFNode{Name: "p", Op: "PrintV2", Attrs: []modelcorpus.TFAttr{str("output_stream", "file:///tmp/x")}}), `runs op PrintV2 with output_stream "file:///tmp/x"`},
		{"malformed", modelcorpus.TFLite(bad), `custom options are not the flexbuffer vector`},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{len(c.b), 4093, 5} {
				got := verdict(t, tfliteInspector(allowFlex), c.b, chunk)
				if c.want == "" && got != "" || !strings.Contains(got, c.want) {
					t.Fatalf("chunk %d: got %q, want %q", chunk, got, c.want)
				}
			}
		})
	}
}
