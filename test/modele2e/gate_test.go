package modele2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/modelcorpus"
)

// The model gate on real files (issue 11), end to end: files written by
// torch and llama.cpp (shared/model-corpus beside the checkout) pushed with
// oras to a real registry and pulled through pullgate with oras, and the
// declaration attacks a modctl or oras client would fall for.

// realCorpus is shared/model-corpus beside the checkout (CI has it too).
const realCorpus = "../../../shared/model-corpus"

// strictPolicy is a security team's model rule: pickles walked against the
// import allowlist, code and remote-code configs denied, unknown bytes
// refused (the default).
const strictPolicy = `rules:
  - name: strict-models
    match: ["upstream.local/**"]
    action: allow
    content:
      mediaTypes: [modelpack, oras]
      formats:
        pickle: scan
      denyCodeLayers: true
`

func startStrict(t *testing.T) *env {
	t.Helper()
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: strictPolicy})
	return &env{up: up, px: px}
}

func readCorpus(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(realCorpus, rel))
	if err != nil {
		t.Fatalf("the real model corpus is required (shared/model-corpus beside the checkout): %v", err)
	}
	return b
}

// pullIntact pulls with oras and checks every named file arrived byte for
// byte.
func (e *env) pullIntact(t *testing.T, repoTag string, files ...file) {
	t.Helper()
	r, dir := harness.OrasPull(t, e.px.Host+"/upstream.local/"+repoTag)
	if r.Err != nil {
		t.Fatalf("oras pull %s: %v\n%s", repoTag, r.Err, r.Output())
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil || !bytes.Equal(got, f.data) {
			t.Fatalf("%s: %s differs after the pull (%d of %d bytes, %v)", repoTag, f.name, len(got), len(f.data), err)
		}
	}
}

// A real torch.save checkpoint (zip with data descriptors) and real
// vocabulary-only GGUF files from llama.cpp arrive intact; the real torch
// 2.x checkpoint carrying posix.system does not.
func TestRealCheckpointsThroughTheGate(t *testing.T) {
	e := startStrict(t)
	torch := file{"pytorch_model.bin", mtWeightRaw, readCorpus(t, "picklescan/tests/data/new_pytorch_model.bin")}
	vocab := file{"ggml-vocab-llama-spm.gguf", mtWeightRaw, readCorpus(t, "llamacpp/models/ggml-vocab-llama-spm.gguf")}
	e.push(t, "models/torch:1", true, torch)
	e.push(t, "models/vocab:1", true, vocab)
	e.pullIntact(t, "models/torch:1", torch)
	e.pullIntact(t, "models/vocab:1", vocab)

	evil := readCorpus(t, "modelscan/tests/data/unsafe_zip_pytorch.pt")
	e.push(t, "models/torch-evil:1", true, file{"pytorch_model.bin", mtWeightRaw, evil})
	e.assertRefused(t, "models/torch-evil:1", evil, "posix.system")
}

// brokenTemplate is text that is no template in any dialect, so it passes
// as a README, but a chat template that does not parse is refused.
var brokenTemplate = []byte("Usage: {{ .Prompt }} then {% if %}\n")

// One blob declared twice in one manifest, as a README and as a chat
// template, is judged as both: the client (oras, modctl) writes it under
// both names.
func TestBlobDeclaredTwiceIsJudgedAsEach(t *testing.T) {
	e := startStrict(t)
	e.push(t, "models/twice:1", true, file{"README.md", "", brokenTemplate}, file{"chat_template.jinja", "", brokenTemplate})
	e.assertRefused(t, "models/twice:1", brokenTemplate, "does not parse as a Jinja template")

	// Control: other bytes of the same kind as a README alone are served
	// (the blob above is refused however it is declared from now on).
	other := append([]byte("Other model. "), brokenTemplate...)
	e.push(t, "models/readme:1", true, file{"README.md", "", other})
	e.pullIntact(t, "models/readme:1", file{"README.md", "", other})
	// Another tag of the same repository declares the served blob as a
	// chat template: it is inspected as that too before it is served so.
	e.push(t, "models/readme:2", true, file{"chat_template.jinja", "", other})
	r, _ := harness.OrasPull(t, e.px.Host+"/upstream.local/models/readme:2")
	if r.Err == nil || !strings.Contains(r.Output(), "does not parse as a Jinja template") {
		t.Fatalf("second declaration of a served blob: %v\n%s", r.Err, r.Output())
	}
}

// A layer titled README.md whose ModelPack filepath says modeling_evil.py
// (modctl writes it there) is judged as the code file it becomes.
func TestTitleAndFilepathDisagree(t *testing.T) {
	e := startStrict(t)
	code := []byte("import os\nos.system('id')\n")
	e.pushAnnotated(t, "models/disguised:1", true,
		map[string]map[string]string{"README.md": {"org.cncf.model.filepath": "modeling_evil.py"}},
		file{"README.md", "", code})
	r := harness.OrasManifestFetch(t, e.px.Host+"/upstream.local/models/disguised:1", false)
	if r.Err == nil || !strings.Contains(r.Output(), "modeling_evil.py") || !strings.Contains(r.Output(), "denyCodeLayers") {
		t.Fatalf("README.md with a .py filepath: %v\n%s", r.Err, r.Output())
	}
	e.pushAnnotated(t, "models/disguised:2", true,
		map[string]map[string]string{"README.md": {"org.cncf.model.filepath": "chat_template.jinja"}},
		file{"README.md", "", brokenTemplate})
	e.assertRefused(t, "models/disguised:2", brokenTemplate, "does not parse as a Jinja template")
}

// A zip that carries a .py file is code, under denyCodeLayers, like a
// layer of that name.
func TestZipCarryingPythonRefused(t *testing.T) {
	e := startStrict(t)
	z := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{
		{Name: "bundle/config.json", Data: []byte(`{"model_type":"llama"}`)},
		{Name: "bundle/modeling_llama.py", Data: []byte("import os\nos.system('id')\n")},
	}})
	e.push(t, "models/zipcode:1", false, file{"bundle.zip", "", z})
	e.assertRefused(t, "models/zipcode:1", z, "modeling_llama.py")
}

// A PyTorch checkpoint streams once its data.pkl passed; a pickle hidden
// after the storages is still refused: the stream is aborted with the end
// records held back, so no client gets the zip whole, and nothing is stored.
func TestTorchCheckpointWithLatePickleRefused(t *testing.T) {
	e := startStrict(t)
	tensors := []modelcorpus.TorchTensor{{Name: "w", StorageType: "FloatStorage", Key: "0", Shape: []int64{512, 1024}}}
	evil := modelcorpus.TorchSaveZip(append(modelcorpus.TorchSave2Records("archive", tensors, nil, nil),
		modelcorpus.MinizRecord{Name: "archive/extra.pkl", Data: modelcorpus.OsSystemPickle()}))
	e.push(t, "models/late:1", true, file{"pytorch_model.bin", mtWeightRaw, evil})
	e.assertRefused(t, "models/late:1", evil, "")
	r := harness.OrasManifestFetch(t, e.px.Host+"/upstream.local/models/late:1", false)
	if r.Err == nil || !strings.Contains(r.Output(), "posix.system") {
		t.Fatalf("manifest after the late pickle: %v\n%s", r.Err, r.Output())
	}
}
