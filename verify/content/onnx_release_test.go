package content_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// releaseTrace feeds data to a fresh ONNX inspector in the given chunk
// sizes (cycled) and returns Releasable after each accepted Write, the
// error that ended the stream (Write or Close) and the inspector. It fails
// the test when Releasable decreases or exceeds the bytes written.
func releaseTrace(t *testing.T, opts content.Options, data []byte, chunks ...int) ([]int64, error, *content.ONNXInspector) {
	t.Helper()
	in := content.NewONNXInspector(opts, int64(len(data)))
	rels, err := traceRelease(t, in, data, chunks...)
	return rels, err, in
}

// releasable is an inspector that releases bytes before HeaderDone.
type releasable interface {
	content.Inspector
	content.Releasable
}

// traceRelease feeds data to in in the given chunk sizes (cycled) and
// returns Releasable after each accepted Write and the error that ended
// the stream (Write or Close). It fails the test when Releasable
// decreases or exceeds the bytes written.
func traceRelease(t *testing.T, in releasable, data []byte, chunks ...int) ([]int64, error) {
	t.Helper()
	var rels []int64
	var last int64
	for off, i := 0, 0; off < len(data); i++ {
		end := min(off+chunks[i%len(chunks)], len(data))
		if _, err := in.Write(data[off:end]); err != nil {
			return rels, err
		}
		off = end
		r := in.Releasable()
		if r < last || r > int64(off) {
			t.Fatalf("after %d bytes: Releasable %d (was %d)", off, r, last)
		}
		last = r
		rels = append(rels, r)
	}
	return rels, in.Close()
}

// nodeField is the offset of the (first) graph node field holding node n.
func nodeField(t *testing.T, data []byte, n modelcorpus.ONNXNode) int64 {
	t.Helper()
	p := modelcorpus.ONNXNodeProto(n)
	i := bytes.Index(data, p)
	if i < 0 {
		t.Fatal("node not found")
	}
	return int64(i - 1 - protowire.SizeVarint(uint64(len(p))))
}

// A benign model's bytes are released as they are walked, not at Close.
func TestONNXReleasesAsItStreams(t *testing.T) {
	content.SetONNXFirstRelease(t, 0)
	m := modelcorpus.ONNX(modelcorpus.BenignONNX(8 << 20))
	rels, err, in := releaseTrace(t, content.Options{}, m, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rels[:len(rels)-1] {
		if written := int64(i+1) * 64 << 10; r < written-64<<10 {
			t.Fatalf("after %d bytes only %d released", written, r)
		}
	}
	if !in.HeaderDone() {
		t.Fatal("HeaderDone false after Close")
	}
	// Nothing before ir_version.
	if rels, _, _ := releaseTrace(t, content.Options{}, m[2:], 64<<10); rels[0] != 0 {
		t.Fatalf("released %d bytes of a model without ir_version", rels[0])
	}
}

// A custom operator's node holds the release until the function defining
// it arrives (at the end), and forever when none does.
func TestONNXReleaseHoldsPendingCustomOp(t *testing.T) {
	content.SetONNXFirstRelease(t, 0)
	custom := modelcorpus.ONNXNode{OpType: "Custom", Domain: "local.fn", Inputs: []string{"y"}, Outputs: []string{"o"}}
	for _, after := range []bool{false, true} {
		m := modelcorpus.BenignONNX(4 << 20)
		if after {
			m.Graph.NodesAfter = []modelcorpus.ONNXNode{custom}
		} else {
			m.Graph.Nodes = append(m.Graph.Nodes, custom)
		}
		bad := modelcorpus.ONNX(m)
		m.Functions = []modelcorpus.ONNXFunction{{Name: "Custom", Domain: "local.fn", Nodes: []modelcorpus.ONNXNode{{OpType: "Identity", Inputs: []string{"x"}, Outputs: []string{"y"}}}}}
		good := modelcorpus.ONNX(m)
		node := nodeField(t, good, custom)
		fn := int64(len(bad)) // the function is all that follows

		rels, err, _ := releaseTrace(t, content.Options{}, good, 64<<10, 1, 4093)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rels[:len(rels)-1] {
			if r > node {
				t.Fatalf("after %d writes: released %d, past the custom-op node at %d before its function at %d", i+1, r, node, fn)
			}
		}
		if got := rels[len(rels)-1]; got != int64(len(good)) {
			t.Fatalf("once the function arrived: released %d of %d", got, len(good))
		}

		rels, err, _ = releaseTrace(t, content.Options{}, bad, 64<<10, 7)
		var f *content.Finding
		if !errors.As(err, &f) {
			t.Fatalf("undefined custom op accepted: %v", err)
		}
		for _, r := range rels {
			if r > node || r > f.Offset {
				t.Fatalf("released %d, past the undefined custom-op node at %d (finding at %d)", r, node, f.Offset)
			}
		}
		if after && rels[len(rels)-1] < node-64<<10-7 {
			t.Fatalf("initializers before the node held back: released %d, node at %d", rels[len(rels)-1], node)
		}
	}
}

// A node or external_data entry split across writes is not released while
// it is open.
func TestONNXReleaseHoldsOpenMessages(t *testing.T) {
	content.SetONNXFirstRelease(t, 0)
	evil := modelcorpus.ONNXNode{OpType: "Backdoor", Domain: "com.evil", Inputs: []string{"y"}, Outputs: []string{"o"}}
	m := modelcorpus.BenignONNX(1 << 20)
	m.Graph.NodesAfter = []modelcorpus.ONNXNode{evil}
	m.Graph.Initializers = append(m.Graph.Initializers, extTensor("weights/w.bin"))
	data := modelcorpus.ONNX(m)
	node := nodeField(t, data, evil)
	loc := int64(bytes.Index(data, []byte("\x0a\x08location\x12\x0dweights/w.bin")))
	if loc < 2 || data[loc-2] != 0x6a {
		t.Fatal("external_data entry not found")
	}
	entry := loc - 2 // tag 13 (0x6a) and length of the entry
	for _, c := range []struct {
		name       string
		start, cut int64
	}{
		{"external_data entry", entry, loc + 5},
		{"node", node, node + 6},
		{"node tag read, length not yet", node, node + 1},
	} {
		in := content.NewONNXInspector(content.Options{}, int64(len(data)))
		if _, err := in.Write(data[:c.cut]); err != nil {
			t.Fatal(err)
		}
		if r := in.Releasable(); r > c.start || r < c.start-64 {
			t.Fatalf("%s open at %d: released %d, want just before %d", c.name, c.cut, r, c.start)
		}
	}
}

// fuzzRelease checks, for any input and chunking, that Releasable never
// decreases, never exceeds the bytes written and never passes the offset
// of a finding.
func fuzzRelease(t *testing.T, data []byte, seed uint8) {
	rng := rand.New(rand.NewPCG(uint64(seed), 15))
	chunks := make([]int, 8)
	for i := range chunks {
		chunks[i] = 1 + rng.IntN(64)
	}
	rels, err, _ := releaseTrace(t, content.Options{}, data, chunks...)
	var f *content.Finding
	if errors.As(err, &f) && f.Offset >= 0 && len(rels) > 0 && rels[len(rels)-1] > f.Offset {
		t.Fatalf("released %d bytes, past the finding at %d: %v", rels[len(rels)-1], f.Offset, f)
	}
}

// Through the dispatcher, and declared as several classes: the least any
// class releases (one that releases nothing before Close holds it all).
func TestONNXReleaseThroughDeclarations(t *testing.T) {
	content.SetONNXFirstRelease(t, 0)
	m := modelcorpus.ONNX(modelcorpus.BenignONNX(1 << 20))
	weight := "application/vnd.cncf.model.weight.v1.raw"
	half := len(m) / 2
	released := func(classes ...content.Class) int64 {
		t.Helper()
		in, err := content.NewDeclaredInspector(content.Options{AllowUnknown: true}, classes, int64(len(m)))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		if _, err := in.Write(m[:half]); err != nil {
			t.Fatal(err)
		}
		return content.ReleasableOf(in)
	}
	one := released(content.Class{MediaType: weight, Name: "model.onnx"})
	if one < int64(half)-64 || one > int64(half) {
		t.Fatalf("dispatcher released %d of the %d bytes written", one, half)
	}
	if two := released(content.Class{MediaType: weight, Name: "model.onnx"}, content.Class{MediaType: weight, Name: "copy.onnx"}); two != one {
		t.Fatalf("declared twice as ONNX: released %d, want %d", two, one)
	}
	// The same bytes declared also as a file served uninspected (released
	// at once): still no more than the ONNX walk released.
	if n := released(content.Class{MediaType: weight, Name: "model.onnx"}, content.Class{MediaType: weight, Name: "model.bin"}); n != one {
		t.Fatalf("declared also as a file released at once: released %d, want %d", n, one)
	}
}

// With the default first-release point, a model whose graph uses an
// undefined custom operator releases nothing at all (the proxy answers a
// clean 403, not a response cut short), and a benign model starts
// releasing only once the walk is 4 MiB in.
func TestONNXFirstReleaseWaitsForTheGraph(t *testing.T) {
	benign := modelcorpus.ONNX(modelcorpus.BenignONNX(8 << 20))
	rels, err, _ := releaseTrace(t, content.Options{}, benign, 256<<10)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rels {
		written := min(int64(i+1)*256<<10, int64(len(benign)))
		if written < 4<<20 && r != 0 {
			t.Fatalf("released %d bytes after only %d written", r, written)
		}
	}
	if rels[len(rels)-2] == 0 {
		t.Fatalf("benign model: nothing released before Close (%v)", rels)
	}
	bad := modelcorpus.BenignONNX(8 << 20)
	bad.Graph.Nodes = append(bad.Graph.Nodes, modelcorpus.ONNXNode{OpType: "Backdoor", Domain: "com.evil", Outputs: []string{"o"}})
	rels, err, _ = releaseTrace(t, content.Options{}, modelcorpus.ONNX(bad), 256<<10)
	if err == nil {
		t.Fatal("undefined custom operator admitted")
	}
	for _, r := range rels {
		if r != 0 {
			t.Fatalf("model with an undefined custom operator released %d bytes", r)
		}
	}
}
