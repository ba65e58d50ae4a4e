package modele2e

import (
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

const mtWeightTar = "application/vnd.cncf.model.weight.v1.tar"

// A SavedModel directory shipped as a ModelPack tar layer (saved_model.pb,
// fingerprint.pb, the variables checkpoint, an asset) and a TFLite model,
// pushed with oras, arrive intact through the gate; the same SavedModel
// whose library function runs ReadFile, and a TFLite model with a Flex op,
// do not.
func TestTensorFlowThroughTheGate(t *testing.T) {
	e := startStrict(t)
	sm := modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel())
	good := file{"saved_model.tar", mtWeightTar, modelcorpus.Tar(modelcorpus.SavedModelDir("saved_model/", sm, 2<<20), nil)}
	lite := file{"model.tflite", mtWeightRaw, modelcorpus.TFLite(modelcorpus.BenignTFLite(1 << 20))}
	e.push(t, "models/tf:1", true, good, lite)
	e.pullIntact(t, "models/tf:1", good, lite)

	g := modelcorpus.BenignSavedModel()
	g.Functions = append(g.Functions, modelcorpus.TFFunction{Name: "__inference_leak_7", Nodes: []modelcorpus.TFNode{{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}}}})
	evil := modelcorpus.Tar(modelcorpus.SavedModelDir("saved_model/", modelcorpus.TFSavedModel(g), 1<<20), nil)
	e.push(t, "models/tf-evil:1", true, file{"saved_model.tar", mtWeightTar, evil})
	e.assertRefused(t, "models/tf-evil:1", evil, `node "leak" runs op ReadFile`)

	m := modelcorpus.BenignTFLite(1 << 20)
	m.Ops = append(m.Ops, modelcorpus.TFLiteOp{Builtin: 32, Custom: "FlexWriteFile"})
	flex := modelcorpus.TFLite(m)
	e.push(t, "models/tflite-flex:1", true, file{"model.tflite", mtWeightRaw, flex})
	e.assertRefused(t, "models/tflite-flex:1", flex, `Flex op "FlexWriteFile"`)
}
