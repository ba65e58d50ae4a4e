package main

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// inspectionKind is one kind of model file whose cold pull through
// pullgate is measured with content inspection off (an open rule) and on
// (policy). Adding a format is one entry in inspectionKinds.
type inspectionKind struct {
	kind  string // result key prefix ("<kind>, inspection on")
	label string // in the checks table: "cold <label> pull"
	repo  string
	// policy is the rule that inspects it.
	policy string
	// mediaType and title of the layer ("": an OCI layer without a title).
	mediaType, title string
	// target is the inspection on / off ratio.
	target float64
	// blob is a valid file of about size bytes.
	blob func(size int64) ([]byte, error)
}

var inspectionKinds = []inspectionKind{
	{kind: "safetensors", label: "safetensors", repo: "bench/model", policy: inspectPolicy, target: 0.95, blob: safetensorsBlob},
	{kind: "torch.save", label: "torch.save checkpoint", repo: "bench/torch", policy: torchInspectPolicy, target: 0.90, blob: torchSaveBlob},
	{kind: "ONNX", label: "ONNX model (1 GiB of initializers)", repo: "bench/onnx", policy: inspectPolicy,
		mediaType: "application/vnd.cncf.model.weight.v1.raw", title: "model.onnx", target: 0.90, blob: onnxBlob},
	{kind: "SavedModel", label: "TensorFlow SavedModel tar (1 GiB of variables)", repo: "bench/savedmodel", policy: inspectPolicy,
		mediaType: "application/vnd.cncf.model.weight.v1.tar", title: "saved_model.tar", target: 0.90, blob: savedModelBlob},
	{kind: "Keras HDF5", label: "legacy Keras .h5 (1 GiB of weights)", repo: "bench/keras-h5", policy: inspectPolicy,
		mediaType: "application/vnd.cncf.model.weight.v1.raw", title: "model.h5", target: 0.90, blob: kerasH5Blob},
}

// onnxBlob is an ONNX model of about size bytes as onnx.save writes one
// with large inline initializers: ir_version, opset_import, then the graph
// (modelcorpus.BenignONNX's nodes and initializers) followed by float
// initializers of 16 MiB of random raw_data each. One allocation.
func onnxBlob(size int64) ([]byte, error) {
	const per = 16 << 20
	n := max(int(size/per), 1)
	head := func(i int) []byte {
		t := protowire.AppendTag(nil, 1, protowire.VarintType)
		t = protowire.AppendVarint(t, per/4)
		t = protowire.AppendTag(t, 2, protowire.VarintType)
		t = protowire.AppendVarint(t, 1) // FLOAT
		t = protowire.AppendTag(t, 8, protowire.BytesType)
		t = protowire.AppendString(t, fmt.Sprintf("model.layers.%d.mlp.weight", i))
		t = protowire.AppendTag(t, 9, protowire.BytesType)
		return protowire.AppendVarint(t, per)
	}
	graph := modelcorpus.ONNXGraphProto(modelcorpus.BenignONNX(16).Graph)
	glen := len(graph)
	for i := range n {
		l := len(head(i)) + per
		glen += 1 + protowire.SizeVarint(uint64(l)) + l
	}
	var opset []byte
	opset = protowire.AppendTag(opset, 1, protowire.BytesType)
	opset = protowire.AppendString(opset, "")
	opset = protowire.AppendTag(opset, 2, protowire.VarintType)
	opset = protowire.AppendVarint(opset, 21)
	b := make([]byte, 0, 64+len(opset)+glen)
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 10)
	b = protowire.AppendTag(b, 8, protowire.BytesType)
	b = protowire.AppendBytes(b, opset)
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(glen))
	b = append(b, graph...)
	for i := range n {
		h := head(i)
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(h)+per))
		b = append(b, h...)
		at := len(b)
		b = b[:at+per]
		rand.Read(b[at:])
	}
	return b, nil
}

// selectKinds narrows inspectionKinds to a comma-separated list of kinds
// ("" keeps them all).
func selectKinds(list string) error {
	if list == "" {
		return nil
	}
	var out []inspectionKind
	for _, k := range strings.Split(list, ",") {
		i := slices.IndexFunc(inspectionKinds, func(m inspectionKind) bool { return m.kind == strings.TrimSpace(k) })
		if i < 0 {
			return fmt.Errorf("--kinds: unknown kind %q", k)
		}
		out = append(out, inspectionKinds[i])
	}
	inspectionKinds = out
	return nil
}
