package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

const weightTar = "application/vnd.cncf.model.weight.v1.tar"

// A SavedModel directory in a ModelPack tar layer streams to clients as
// its entries are judged, not after its last byte: the variables shard
// bytes that arrived before the upstream paused reach the client while it
// pauses, and the verified tar arrives intact.
func TestSavedModelTarStreamsWhileUpstreamPauses(t *testing.T) {
	var pausing atomic.Bool
	resume := make(chan struct{})
	// The pause comes 6 MiB in: past the 4 MiB a tar waits for before
	// its first release, inside the 8 MiB variables shard.
	e := startWith(t, pausingBlobs(&pausing, func(int) int { return 6 << 20 }, resume), onnxPolicy)
	tb := modelcorpus.Tar(modelcorpus.SavedModelDir("saved_model/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 8<<20), nil)
	base, d := pushWeight(t, e, "models/savedmodel", weightTar, "saved_model.tar", tb)
	streamDuringPause(t, base, d, &pausing, resume)
}

// A saved_model.pb running ReadFile (after 2 MiB of its own) after 8 MiB
// of variables (and before 1 MiB more) is never released, its tar header
// included: the client
// receives at most the entries before it, then the stream fails; the
// next pull is refused with 403.
func TestTarRefusedMemberNeverReleased(t *testing.T) {
	e := startWith(t, nil, onnxPolicy)
	g := modelcorpus.BenignSavedModel()
	// 2 MiB of frozen weights in the main graph: the library function
	// running ReadFile comes after them, chunks after the member's header.
	g.Nodes = append(g.Nodes, modelcorpus.TFNode{Name: "frozen", Op: "Const", Attrs: []modelcorpus.TFAttr{{Key: "dtype", Type: 1}, {Key: "value", Tensor: make([]byte, 2<<20)}}})
	g.Functions = append(g.Functions, modelcorpus.TFFunction{Name: "__inference_leak_7", Nodes: []modelcorpus.TFNode{{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}}}})
	files := modelcorpus.SavedModelDir("saved_model/", modelcorpus.TFSavedModel(g), 8<<20)
	// variables first (as a walk in another order would put them), then
	// the graph, then 1 MiB of asset: more than the held-back tail.
	files = append(files[2:4], files[0], modelcorpus.TarEntry{Name: "saved_model/assets/big.bin", Data: make([]byte, 1<<20)})
	tb := modelcorpus.Tar(files, nil)
	member := bytes.Index(tb, []byte("saved_model/saved_model.pb\x00"))
	if member < 8<<20 {
		t.Fatalf("saved_model.pb at %d, want after the variables", member)
	}
	base, d := pushWeight(t, e, "models/evil-tar", weightTar, "saved_model.tar", tb)
	// The finding comes 1 MiB before the end; it is recorded once the
	// fetch hashed the rest, so a pull meanwhile streams again (the same
	// judged entries, then the failure). Every pull until the 403 is
	// checked.
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	for pull := 1; ; pull++ {
		resp, err := http.Get(base + "/blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		got, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden && pull > 1 {
			t.Logf("pull %d: 403 %s", pull, got)
			return
		}
		if resp.StatusCode != 200 || rerr == nil {
			t.Fatalf("pull %d: status %d, %d bytes, %v: want a stream cut short (first pull) or 403", pull, resp.StatusCode, len(got), rerr)
		}
		if len(got) > member || !bytes.Equal(got, tb[:len(got)]) {
			t.Fatalf("pull %d: client received %d bytes, the refused member's header starts at %d", pull, len(got), member)
		}
		t.Logf("pull %d: status %d, %d bytes before the member at %d, then %v", pull, resp.StatusCode, len(got), member, rerr)
		if time.Now().After(deadline) {
			t.Fatal("no 403 before the test's deadline")
		}
	}
}
