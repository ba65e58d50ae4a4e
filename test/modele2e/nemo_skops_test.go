package modele2e

import (
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// A NeMo .nemo (SaveRestoreConnector's tar layout: model_config.yaml,
// a torch.save model_weights.ckpt, tokenizer artifacts) pushed with oras
// under the ModelPack weight media type arrives intact through the gate;
// the same archive whose config names an os.system Hydra target
// (CVE-2025-23304) does not.
func TestNeMoThroughTheGate(t *testing.T) {
	e := startStrict(t)
	w := modelcorpus.NeMoWeights(nil)
	good := file{"stt_en_conformer_ctc_small.nemo", mtWeightRaw, modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w)}
	e.push(t, "models/nemo:1", true, good)
	e.pullIntact(t, "models/nemo:1", good)

	evil := modelcorpus.NeMoTar("hooks:\n- _target_: os.system\n  _args_: [id]\n"+modelcorpus.NeMoASRConfig, w)
	e.push(t, "models/nemo-evil:1", true, file{"model.nemo", mtWeightRaw, evil})
	e.assertRefused(t, "models/nemo-evil:1", evil, `Hydra _target_ "os.system" is outside the NeMo target allowlist`)
}

// A skops file (skops.io.dump of a LogisticRegression) arrives intact; one
// whose schema makes skops build an operator.methodcaller
// (CVE-2025-54412's OperatorFuncNode) does not.
func TestSkopsThroughTheGate(t *testing.T) {
	e := startStrict(t)
	root, files := modelcorpus.SkopsLogisticRegression()
	good := file{"model.skops", mtWeightRaw, modelcorpus.SkopsZip(root, files)}
	e.push(t, "models/skops:1", true, good)
	e.pullIntact(t, "models/skops:1", good)

	attrs := root["content"].(modelcorpus.SkopsNode)["content"].(modelcorpus.SkopsNode)
	attrs["_gadget"] = modelcorpus.SkopsNode{"__class__": "methodcaller", "__module__": "operator", "__loader__": "OperatorFuncNode", "__id__": 5,
		"attrs": modelcorpus.SkopsNode{"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "__id__": 6, "content": []any{}}}
	evil := modelcorpus.SkopsZip(root, files)
	e.push(t, "models/skops-evil:1", true, file{"model.skops", mtWeightRaw, evil})
	e.assertRefused(t, "models/skops-evil:1", evil, `OperatorFuncNode "operator.methodcaller" is outside skops' default trusted set`)
}
