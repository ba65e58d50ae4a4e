package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

const onnxPolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack]
      formats: { onnx: {}, pickle: deny }
`

// pushONNX pushes an ONNX model as a ModelPack weight titled model.onnx
// and returns the proxy's repository URL and the weight's digest.
func pushONNX(t *testing.T, e *env, repo string, model []byte) (string, digest.Digest) {
	t.Helper()
	return pushWeight(t, e, repo, "application/vnd.cncf.model.weight.v1.raw", "model.onnx", model)
}

// pushWeight pushes a ModelPack model of one weight layer of the given
// media type and title and returns the proxy's repository URL and the
// weight's digest.
func pushWeight(t *testing.T, e *env, repo, mediaType, title string, model []byte) (string, digest.Digest) {
	t.Helper()
	h := e.up.Host
	cfg := ivPushBlob(t, h, repo, []byte(`{"descriptor":{},"config":{},"modelfs":{"type":"layers","diffIds":[]}}`), "application/vnd.cncf.model.config.v1+json")
	w := ivPushBlob(t, h, repo, model, mediaType)
	wd := ivDesc(w)
	wd.Annotations = map[string]string{"org.opencontainers.image.title": title}
	ivPushManifest(t, h, repo+":1", ivManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json", Config: ivDesc(cfg), Layers: []ivDescriptor{wd}})
	base := e.proxy.URL + "/v2/upstream.local/" + repo
	if resp, b := get(t, base+"/manifests/1"); resp.StatusCode != 200 {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}
	return base, digest.Digest(w.Digest.String())
}

// An ONNX model streams to clients as its nodes are judged, not after its
// last byte: the initializer bytes that arrived before the upstream paused
// reach the client while it pauses, and the verified model arrives intact.
func TestONNXStreamsWhileUpstreamPauses(t *testing.T) {
	var pausing atomic.Bool
	resume := make(chan struct{})
	// The pause comes 6 MiB in: past the 4 MiB an ONNX walk waits for
	// before its first release (a graph's nodes come first).
	e := startWith(t, pausingBlobs(&pausing, func(int) int { return 6 << 20 }, resume), onnxPolicy)
	base, d := pushONNX(t, e, "models/onnx", modelcorpus.ONNX(modelcorpus.BenignONNX(8<<20)))
	streamDuringPause(t, base, d, &pausing, resume)
}

// A custom-operator node after 8 MiB of initializers (and before 1 MiB
// more) is never released:
// the client receives at most the bytes before that node, then the stream
// fails (the operator is undefined: refused at the end).
func TestONNXPendingNodeNeverReleased(t *testing.T) {
	e := startWith(t, nil, onnxPolicy)
	evil := modelcorpus.ONNXNode{OpType: "Backdoor", Domain: "com.evil", Inputs: []string{"y"}, Outputs: []string{"o"}}
	m := modelcorpus.BenignONNX(8 << 20)
	m.Graph.NodesAfter = []modelcorpus.ONNXNode{evil}
	model := modelcorpus.ONNX(m)
	// 1 MiB of doc_string (field 6) after the node: more than the
	// held-back tail, so only the release limit keeps the node back.
	model = protowire.AppendBytes(protowire.AppendTag(model, 6, protowire.BytesType), make([]byte, 1<<20))
	np := modelcorpus.ONNXNodeProto(evil)
	node := bytes.Index(model, np) - 1 - protowire.SizeVarint(uint64(len(np)))
	if node < 8<<20 {
		t.Fatalf("node at %d, want after the initializers", node)
	}
	base, d := pushONNX(t, e, "models/evil", model)
	resp, err := http.Get(base + "/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	got, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 && rerr == nil {
		t.Fatalf("model with an undefined custom operator served whole (%d bytes)", len(got))
	}
	if len(got) > node || !bytes.Equal(got, model[:len(got)]) {
		t.Fatalf("client received %d bytes, the pending node starts at %d", len(got), node)
	}
	t.Logf("status %d, %d bytes before the node at %d, then %v", resp.StatusCode, len(got), node, rerr)
	if st, b := e.status(t, "models/evil/blobs/"+d.String()); st != http.StatusForbidden {
		t.Fatalf("second pull: %d %s", st, b)
	}
}
