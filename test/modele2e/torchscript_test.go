package modele2e

import (
	"testing"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/modelcorpus"
)

// torchScriptPolicy walks pickles against the allowlist in both rules;
// only models/ts-allowed admits TorchScript archives. denyCodeLayers is
// off, so that the TorchScript check alone refuses an archive's code/ tree.
const torchScriptPolicy = `rules:
  - name: torchscript-allowed
    match: ["upstream.local/models/ts-allowed/**"]
    action: allow
    content:
      mediaTypes: [modelpack, oras]
      formats:
        pickle: scan
        torchscript: allow
  - name: models
    match: ["upstream.local/**"]
    action: allow
    content:
      mediaTypes: [modelpack, oras]
      formats:
        pickle: scan
`

// A torch.jit.save archive (modelcorpus.TorchScriptRecords: torch.jit's
// record names and order; data.pkl a scripted module using every
// torch.jit._pickle builder, constants.pkl the empty tuple) pushed with
// oras as a ModelPack weight is refused by default, served intact under
// formats.torchscript: allow, and the same archive whose constants.pkl
// calls os.system is refused even there.
func TestTorchScriptThroughTheGate(t *testing.T) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	e := &env{up: up, px: gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: torchScriptPolicy})}

	// A module holding tensors: data.pkl imports only what a checkpoint
	// does, so the code/ tree alone marks it TorchScript.
	plain := modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", modelcorpus.SmallTorchModel(), nil, nil))
	// A scripted module (__torch__.Net and the torch.jit._pickle builders).
	scripted := modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", nil, modelcorpus.ScriptedModulePickle(), nil))
	fp, fs := file{"model.pt", mtWeightRaw, plain}, file{"scripted.pt", mtWeightRaw, scripted}
	e.push(t, "models/ts-refused:1", true, fp)
	e.assertRefused(t, "models/ts-refused:1", plain, `entry "archive/code/__torch__.py": the archive is a TorchScript model`)
	e.push(t, "models/ts-refused:2", true, fs)
	e.assertRefused(t, "models/ts-refused:2", scripted, "imports __torch__.Net, which is not in the allowlist (content.formats.pickle.allow): a name only TorchScript archives")

	e.push(t, "models/ts-allowed/net:1", true, fp, fs)
	e.pullIntact(t, "models/ts-allowed/net:1", fp, fs)

	evilConstants := modelcorpus.NewPickler(2).Global("os", "system").Str("id").Tuple(1).Op('R').Stop()
	evil := modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", nil, modelcorpus.ScriptedModulePickle(), evilConstants))
	e.push(t, "models/ts-allowed/evil:1", true, file{"model.pt", mtWeightRaw, evil})
	e.assertRefused(t, "models/ts-allowed/evil:1", evil, "GLOBAL imports os.system")
}
