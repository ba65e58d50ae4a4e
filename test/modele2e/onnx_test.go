package modele2e

import (
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// An ONNX model (3 MiB initializer, an external initializer in
// weights.bin) pushed with oras under ModelPack media types arrives intact
// through the gate; the same model whose external_data location climbs out
// of the model directory, and one with a custom-op domain, do not.
func TestONNXThroughTheGate(t *testing.T) {
	e := startStrict(t)
	good := file{"model.onnx", mtWeightRaw, modelcorpus.ONNX(modelcorpus.BenignONNX(3 << 20))}
	e.push(t, "models/onnx:1", true, good)
	e.pullIntact(t, "models/onnx:1", good)

	m := modelcorpus.BenignONNX(1 << 20)
	m.Graph.Initializers = append(m.Graph.Initializers, modelcorpus.ONNXTensor{Name: "leak", Dims: []int64{4},
		External: [][2]string{{"location", "../../../../etc/passwd"}}})
	evil := modelcorpus.ONNX(m)
	e.push(t, "models/onnx-evil:1", true, file{"model.onnx", mtWeightRaw, evil})
	e.assertRefused(t, "models/onnx-evil:1", evil, "external_data location")

	c := modelcorpus.BenignONNX(1 << 20)
	c.Graph.Nodes = append(c.Graph.Nodes, modelcorpus.ONNXNode{OpType: "Backdoor", Domain: "com.evil", Inputs: []string{"y"}, Outputs: []string{"o"}})
	custom := modelcorpus.ONNX(c)
	e.push(t, "models/onnx-custom:1", true, file{"model.onnx", mtWeightRaw, custom})
	e.assertRefused(t, "models/onnx-custom:1", custom, `operator Backdoor of domain "com.evil"`)
}
