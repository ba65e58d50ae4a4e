package content_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// mpWeight is the ModelPack weight media type a .nemo is pushed under.
const mpWeight = "application/vnd.cncf.model.weight.v1.raw"

func layer(opts content.Options, mediaType, title string) func(int64) content.Inspector {
	return func(size int64) content.Inspector {
		in, err := content.NewInspector(opts, mediaType, title, size)
		if err != nil {
			panic(err)
		}
		return in
	}
}

// evilPickle is a state-dict pickle that calls os.system on load.
func evilPickle() []byte {
	return modelcorpus.NewPickler(2).Global("os", "system").Str("id").Tuple(1).Op('R').Stop()
}

// withTarget replaces the preprocessor target of the ASR config.
func nemoConfig(old, new string) string {
	if !strings.Contains(modelcorpus.NeMoASRConfig, old) {
		panic("config has no " + old)
	}
	return strings.Replace(modelcorpus.NeMoASRConfig, old, new, 1)
}

const preTarget = "_target_: nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor"

func TestNeMoBenign(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	nemo := modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w)
	for _, c := range []struct {
		name, mt, title string
		data            []byte
	}{
		{"tar, ModelPack weight", mpWeight, "stt_en_conformer_ctc_small.nemo", nemo},
		{"tar, no title", mpWeight, "", nemo},
		{"tar+gzip (older NeMo w:gz)", mpWeight, "model.nemo", modelcorpus.Gzip(nemo)},
		{"tar, undeclared layer", "", "model.nemo", nemo},
		{"tar, declared tar layer", "application/vnd.cncf.model.weight.v1.tar", "", nemo},
		{"config alone", "", "model_config.yaml", []byte(modelcorpus.NeMoASRConfig)},
	} {
		for _, chunk := range []int{1 << 20, 511, 7} {
			if got := verdict(t, layer(scanOpts, c.mt, c.title), c.data, chunk); got != "" {
				t.Errorf("%s (chunk %d): refused: %s", c.name, chunk, got)
			}
		}
	}
	// Weights are a torch.save pickle: refused under pickle: deny, as any
	// checkpoint.
	if got := verdict(t, layer(content.Options{}, mpWeight, "m.nemo"), nemo, 4096); !strings.Contains(got, "pickle content is denied") {
		t.Errorf("pickle: deny: got %q", got)
	}
}

func TestNeMoAttacks(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	for _, c := range []struct {
		name string
		cfg  string
		want string
	}{
		{"os.system top level", "_target_: os.system\n" + modelcorpus.NeMoASRConfig, `model_config.yaml _target_: Hydra _target_ "os.system" is outside the NeMo target allowlist`},
		{"builtins.eval nested", nemoConfig(preTarget, "_target_: builtins.eval"), `model_config.yaml preprocessor._target_: Hydra _target_ "builtins.eval" is outside`},
		{"subprocess.Popen in a list", nemoConfig("_target_: lightning.pytorch.callbacks.LearningRateMonitor", "_target_: subprocess.Popen"), `callbacks[0]._target_: Hydra _target_ "subprocess.Popen"`},
		{"hidden by a merge key", "base: &b\n  _target_: os.system\n" + nemoConfig(preTarget, "<<: *b"), `model_config.yaml base._target_: Hydra _target_ "os.system"`},
		{"alias value", "evil: &e os.system\n" + nemoConfig(preTarget, "_target_: *e"), `preprocessor._target_: Hydra _target_ "os.system"`},
		{"alias key", "k: &k _target_\n" + nemoConfig(preTarget, "*k : os.system"), `preprocessor._target_: Hydra _target_ "os.system"`},
		{"python tag", nemoConfig(preTarget, "_target_: !!python/name:os.system ''"), `YAML tag "!!python/name:os.system" is not a core tag`},
		{"python object tag", "x: !!python/object/apply:os.system [id]\n" + modelcorpus.NeMoASRConfig, `is not a core tag`},
		{"interpolation", "t: os.system\n" + nemoConfig(preTarget, "_target_: ${t}"), `is an OmegaConf interpolation`},
		{"duplicate key", nemoConfig(preTarget, preTarget+"\n  _target_: os.system"), `duplicate key "_target_"`},
		{"non-string target", nemoConfig(preTarget, "_target_: [os.system]"), `Hydra _target_ is not a string`},
		{"legacy target", nemoConfig("target: nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE", "target: os.system"), `Hydra target "os.system" is outside`},
		{"two documents", modelcorpus.NeMoASRConfig + "---\n_target_: os.system\n", "more than one YAML document"},
	} {
		data := modelcorpus.NeMoTar(c.cfg, w)
		for _, d := range []struct {
			name string
			b    []byte
		}{{"tar", data}, {"tar+gzip", modelcorpus.Gzip(data)}} {
			got := verdict(t, layer(scanOpts, mpWeight, "m.nemo"), d.b, 4096)
			if !strings.Contains(got, c.want) {
				t.Errorf("%s (%s):\n got %q\nwant %q", c.name, d.name, got, c.want)
			}
		}
	}
	// JSON is YAML: a model_config.yaml written as JSON is read the same.
	js := modelcorpus.NeMoTar(`{"preprocessor": {"_target_": "os.system"}}`, w)
	if got := verdict(t, layer(scanOpts, mpWeight, "m.nemo"), js, 4096); !strings.Contains(got, `preprocessor._target_: Hydra _target_ "os.system"`) {
		t.Errorf("JSON config: got %q", got)
	}
	// UTF-16 (PyYAML reads it) where unknown bytes are served.
	u16 := []byte{0xff, 0xfe}
	for _, r := range "_target_: os.system\n" {
		u16 = append(u16, byte(r), 0)
	}
	uo := scanOpts
	uo.AllowUnknown = true
	if got := verdict(t, layer(uo, mpWeight, "m.nemo"), modelcorpus.NeMoTar(string(u16), w), 4096); !strings.Contains(got, `"os.system"`) {
		t.Errorf("UTF-16 config: got %q", got)
	}
	// The weights pickle is walked like any checkpoint.
	bad := modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, modelcorpus.NeMoWeights(evilPickle()))
	if got := verdict(t, layer(scanOpts, mpWeight, "m.nemo"), bad, 4096); !strings.Contains(got, `tar member "model_weights.ckpt"`) || !strings.Contains(got, "os.system") {
		t.Errorf("malicious model_weights.ckpt: got %q", got)
	}
	// A rule may admit its own targets.
	o := scanOpts
	o.NeMo.Targets = []string{"mypkg.models.", "other.Exact"}
	for cfg, want := range map[string]string{
		nemoConfig(preTarget, "_target_: mypkg.models.Pre"): "",
		nemoConfig(preTarget, "_target_: other.Exact"):      "",
		nemoConfig(preTarget, "_target_: other.ExactNot"):   `"other.ExactNot" is outside`,
	} {
		got := verdict(t, layer(o, mpWeight, "m.nemo"), modelcorpus.NeMoTar(cfg, w), 4096)
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("targets: got %q want %q", got, want)
		}
	}
}

// TestNeMoTargetEscape: Hydra's _locate getattr's each segment after the
// first, so a target under an allowed prefix can walk through a module
// attribute (an import) out of the package.
func TestNeMoTargetEscape(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	for _, c := range []struct{ target, want string }{
		{"nemo.core.classes.common.os.system", `segment "os" is a module name`},
		{"torch.nn.functional.torch.load", `segment "torch" repeats the top-level package`},
		{"nemo.core.classes.common.torch.load", `segment "torch" is a module name`},
		{"nemo.utils.model_utils.subprocess.Popen", `segment "subprocess"`},
		{"nemo.core.classes.common.__builtins__.exec", `segment "__builtins__" is private`},
		{"nemo.core.classes.common._private_helper", `segment "_private_helper" is private`},
		{"torch.nn.Module.__init__.__globals__", `segment "__init__" is private`},
		{"omegaconf.OmegaConf.save", `segment "OmegaConf"`},
		{"nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor", ""},
		{"nemo.collections.tts.torch.data.TTSDataset", ""},
		{"nemo.lightning.io.pl.MegatronCheckpointIO", ""},
		{"torch.optim.lr_scheduler.CosineAnnealingLR", ""},
	} {
		got := verdict(t, layer(scanOpts, mpWeight, "m.nemo"), modelcorpus.NeMoTar(nemoConfig(preTarget, "_target_: "+c.target), w), 4096)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.target, got, c.want)
		}
	}
	// An exact entry admits the path as written.
	o := scanOpts
	o.NeMo.Targets = []string{"nemo.core.classes.common.os.getcwd"}
	if got := verdict(t, layer(o, mpWeight, "m.nemo"), modelcorpus.NeMoTar(nemoConfig(preTarget, "_target_: nemo.core.classes.common.os.getcwd"), w), 4096); got != "" {
		t.Errorf("exact entry: %q", got)
	}
}

// TestNeMoResolvers: hydra.utils.instantiate resolves interpolations
// before it reads _target_, so a resolver that builds a config node from a
// string smuggles a target past a walk of the literal YAML.
func TestNeMoResolvers(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	for _, c := range []struct{ value, want string }{
		{`"${oc.create:{_target_: builtins.exec, _args_: ['import os']}}"`, `OmegaConf resolver "oc.create"`},
		{`"${oc.decode:'{_target_: os.system, _args_: [id]}'}"`, `OmegaConf resolver "oc.decode"`},
		{`"${ oc.create :{_target_: os.system}}"`, `OmegaConf resolver "oc.create"`},
		{`"${oc.select:missing,${oc.create:{_target_: os.system}}}"`, `OmegaConf resolver "oc.create"`},
		{`"${eval:'__import__(\"os\").system(\"id\")'}"`, `OmegaConf resolver "eval"`},
		{`"\\${oc.create:{_target_: os.system}}"`, `OmegaConf resolver "oc.create"`},
		{`"${${name}:x}"`, `computes its key or resolver name`},
		{`"${preprocessor.window_size}"`, ""},
		{`"${oc.env:HOME}"`, ""},
		{`"${multiply:${preprocessor.features},2}"`, ""},
		{`"${oc.select:preprocessor.features,64}"`, ""},
		{`"costs $5 {x}: fine"`, ""},
	} {
		cfg := nemoConfig(preTarget, preTarget+"\n  extra: "+c.value)
		got := verdict(t, layer(scanOpts, mpWeight, "m.nemo"), modelcorpus.NeMoTar(cfg, w), 4096)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.value, got, c.want)
		}
	}
}

// TestNeMoArchiveReferences: the load-time references of configs inside a
// tar probed in a weight or undeclared layer reach the report, where
// content.references judges them.
func TestNeMoArchiveReferences(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	adapter := modelcorpus.TarEntry{Name: "adapter_config.json", Data: modelcorpus.PEFTAdapterConfig("evil/base")}
	nemo := modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w, adapter)
	plain := modelcorpus.Tar([]modelcorpus.TarEntry{adapter}, nil)
	aa := scanOpts
	aa.AllowArchives = true
	want := content.Reference{File: "adapter_config.json", Key: "base_model_name_or_path", Value: "evil/base", Kind: content.RefHub}
	for _, c := range []struct {
		name, mt, title string
		opts            content.Options
		data            []byte
	}{
		{"NeMo tar, ModelPack raw weight", mpWeight, "m.nemo", scanOpts, nemo},
		{"NeMo tar+gzip, raw weight", mpWeight, "m.nemo", scanOpts, modelcorpus.Gzip(nemo)},
		{"NeMo tar, no media type", "", "", scanOpts, nemo},
		{"plain tar, undeclared, allowArchives", "", "x.tar", aa, plain},
	} {
		rep, err := content.InspectReader(c.opts, &chunkReader{b: c.data, n: 4096}, int64(len(c.data)), c.mt, c.title)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) > 0 {
			t.Errorf("%s: refused: %s", c.name, rep.Findings[0].Error())
			continue
		}
		found := false
		for _, r := range rep.References {
			found = found || r == want
		}
		if !found {
			t.Errorf("%s: references %+v, want %+v", c.name, rep.References, want)
		}
	}
}

// TestArchiveCaseCollisions: on a case-insensitive filesystem (macOS,
// Windows) the later of two names differing only in case (or Unicode
// normalisation) wins, so the checked file may not be the loaded one; and
// NeMo's config is found there under any case of its name.
func TestArchiveCaseCollisions(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	// Each config passes alone: only the collision is refused.
	other := modelcorpus.TarEntry{Name: "MODEL_CONFIG.YAML", Data: []byte("sample_rate: 8000\n")}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"two configs differing in case", modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w, other), `"MODEL_CONFIG.YAML" and "model_config.yaml" differ only in letter case`},
		{"mixed-case config alone", modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "Model_Config.yaml", Data: []byte("_target_: os.system\n")}}, nil), `"os.system" is outside`},
		{"NFC and NFD names", modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w,
			modelcorpus.TarEntry{Name: "caf\u00e9.txt", Data: []byte("a\n"), PAX: true}, modelcorpus.TarEntry{Name: "cafe\u0301.txt", Data: []byte("b\n"), PAX: true}), "Unicode normalisation"},
	} {
		for _, d := range [][]byte{c.data, modelcorpus.Gzip(c.data)} {
			got := verdict(t, layer(scanOpts, mpWeight, "m.nemo"), d, 4096)
			if !strings.Contains(got, c.want) {
				t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
			}
		}
	}
	// A zip with names differing only in non-ASCII case.
	z := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "\u00c9.bin", Data: []byte("a")}, {Name: "\u00e9.bin", Data: []byte("b")}}})
	if got := verdict(t, layer(scanOpts, "", "x.zip"), z, 4096); !strings.Contains(got, "differ only in letter case") {
		t.Errorf("zip non-ASCII case: %q", got)
	}
}

// TestNeMoConfigDeclaredTemplate: a model_config.yaml in a layer declared
// a template is checked as a NeMo config (and still as a template).
func TestNeMoConfigDeclaredTemplate(t *testing.T) {
	for _, mt := range []string{"application/vnd.docker.ai.chat.template.jinja", "application/vnd.ollama.image.template"} {
		for _, c := range []struct{ data, want string }{
			{"_target_: os.system\n", `Hydra _target_ "os.system" is outside`},
			{"Model_Config: 1\n_target_: builtins.exec\n", `"builtins.exec" is outside`},
			{"x: '{{ x.__class__ }}'\n", "template injection"},
			{modelcorpus.NeMoASRConfig, ""},
		} {
			got := verdict(t, layer(scanOpts, mt, "model_config.yaml"), []byte(c.data), 4096)
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Errorf("%s %q:\n got %q\nwant %q", mt, c.data, got, c.want)
			}
		}
	}
}

// TestNeMoConfigReferences: the names a model_config.yaml tells NeMo to
// fetch a tokenizer, language model or checkpoint by are reported, so
// content.references judges them.
func TestNeMoConfigReferences(t *testing.T) {
	cfg := modelcorpus.NeMoASRConfig + `hf_tokenizer:
  library: huggingface
  pretrained_model_name: evil/tokenizer
megatron_tokenizer:
  library: megatron
  pretrained_model_name: GPT2BPETokenizer
language_model:
  pretrained_model_name: &lm evil/bert
encoder_lm:
  pretrained_model_name: *lm
init_from_nemo_model: /data/base.nemo
init_from_pretrained_model: stt_en_conformer_ctc_large
restore_from_path: null
`
	nemo := modelcorpus.NeMoTar(cfg, modelcorpus.NeMoWeights(nil))
	rep, err := content.InspectReader(scanOpts, &chunkReader{b: nemo, n: 4096}, int64(len(nemo)), mpWeight, "m.nemo")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) > 0 {
		t.Fatalf("refused: %s", rep.Findings[0].Error())
	}
	f := "model_config.yaml"
	want := []content.Reference{
		{File: f, Key: "hf_tokenizer.pretrained_model_name", Value: "evil/tokenizer", Kind: content.RefHub},
		{File: f, Key: "language_model.pretrained_model_name", Value: "evil/bert", Kind: content.RefHub},
		{File: f, Key: "encoder_lm.pretrained_model_name", Value: "evil/bert", Kind: content.RefHub},
		{File: f, Key: "init_from_nemo_model", Value: "/data/base.nemo", Kind: content.RefLocal},
		{File: f, Key: "init_from_pretrained_model", Value: "stt_en_conformer_ctc_large", Kind: content.RefHub},
	}
	if !reflect.DeepEqual(rep.References, want) {
		t.Errorf("references:\n got %+v\nwant %+v", rep.References, want)
	}
	ro := content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"evil/tokenizer"}}
	if f := content.CheckReferences(ro, rep.References, false, nil); f == nil || !strings.Contains(f.Error(), "language_model.pretrained_model_name") {
		t.Errorf("allowlist: %v", f)
	}
}

// TestNeMoRecognition: a tar in a weight layer is served only as a NeMo
// archive (or under allowArchives); the root "./" layout is accepted.
func TestNeMoRecognition(t *testing.T) {
	plain := modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "a.txt", Data: []byte("hello\n")}}, nil)
	if got := verdict(t, layer(scanOpts, mpWeight, ""), plain, 4096); !strings.Contains(got, "not a NeMo archive") {
		t.Errorf("plain tar in a weight layer: %q", got)
	}
	aa := scanOpts
	aa.AllowArchives = true
	// An undeclared layer's archive is served under allowArchives (its
	// tar now validated entry by entry); a weight layer never holds
	// another archive than a NeMo one, as before.
	if got := verdict(t, layer(aa, "", "x.tar"), plain, 4096); got != "" {
		t.Errorf("plain tar, undeclared layer, allowArchives: %q", got)
	}
	if got := verdict(t, layer(aa, "", "x.tar"), modelcorpus.Gzip(plain), 4096); got != "" {
		t.Errorf("plain tar+gzip, undeclared layer, allowArchives: %q", got)
	}
	for _, b := range [][]byte{plain, modelcorpus.Gzip(plain)} {
		if got := verdict(t, layer(aa, mpWeight, ""), b, 4096); !strings.Contains(got, "not a NeMo archive") {
			t.Errorf("plain archive in a weight layer, allowArchives: %q", got)
		}
	}
	// model_config.yaml below the root does not make a NeMo archive.
	sub := modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "x/model_config.yaml", Data: []byte("a: 1\n")}}, nil)
	if got := verdict(t, layer(scanOpts, mpWeight, ""), sub, 4096); !strings.Contains(got, "not a NeMo archive") {
		t.Errorf("nested model_config.yaml: %q", got)
	}
	// The bad config is found in a nested model_config.yaml too (a
	// nested .nemo's config is checked by name).
	if got := verdict(t, layer(aa, mpWeight, ""), modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "x/model_config.yaml", Data: []byte("_target_: os.system\n")}}, nil), 4096); !strings.Contains(got, `"os.system" is outside`) {
		t.Errorf("nested bad config: %q", got)
	}
	// "./" and "./x" duplicates are one name.
	dup := modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "./model_config.yaml", Data: []byte("a: 1\n")}, {Name: "model_config.yaml", Data: []byte("_target_: os.system\n")}}, nil)
	if got := verdict(t, layer(scanOpts, mpWeight, ""), dup, 4096); !strings.Contains(got, `duplicate entry name "model_config.yaml"`) {
		t.Errorf("duplicate ./ name: %q", got)
	}
}

// TestNeMoNested: a .nemo inside a declared tar layer, and one inside a
// .nemo, is checked; tars nested deeper than 3 are refused.
func TestNeMoNested(t *testing.T) {
	w := modelcorpus.NeMoWeights(nil)
	good := modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w)
	bad := modelcorpus.NeMoTar("_target_: os.system\n", nil)
	wrap := func(name string, b []byte) []byte {
		return modelcorpus.Tar([]modelcorpus.TarEntry{{Name: name, Data: b}}, nil)
	}
	mpTar := "application/vnd.cncf.model.weight.v1.tar"
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"good in a tar layer", wrap("model.nemo", good), ""},
		{"bad in a tar layer", wrap("model.nemo", bad), `tar member "model.nemo": tar member "model_config.yaml"`},
		{"bad gzip in a tar layer", wrap("model.nemo", modelcorpus.Gzip(bad)), `"os.system" is outside`},
		{"bad inside a good .nemo", wrap("m.nemo", modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, w, modelcorpus.TarEntry{Name: "sub.nemo", Data: bad})), `tar member "sub.nemo"`},
		{"4 levels", wrap("a", wrap("b", wrap("c", good))), "nested in 3 tar archives"},
	} {
		got := verdict(t, layer(scanOpts, mpTar, ""), c.b, 4096)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func FuzzNeMoConfig(f *testing.F) {
	f.Add([]byte(modelcorpus.NeMoASRConfig))
	f.Add([]byte("base: &b\n  _target_: os.system\nx:\n  <<: *b\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("k: &k _target_\n*k : os.system\n"))
	f.Add([]byte("x: !!python/object/apply:os.system [id]\n"))
	f.Add([]byte("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"))
	f.Add([]byte("_target_: nemo.core.classes.common.os.system\n"))
	f.Add([]byte("w: \"${oc.select:a,${oc.create:{_target_: os.system}}}\"\nx: ${${y}:z}\n"))
	f.Add([]byte("tokenizer:\n  library: huggingface\n  pretrained_model_name: &n org/tok\nlm:\n  pretrained_model_name: *n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		err := content.CheckNeMoConfig(scanOpts, b)
		if err != nil {
			if _, ok := err.(*content.Finding); !ok {
				t.Fatalf("non-Finding error %T: %v", err, err)
			}
		}
	})
}

// FuzzNeMoArchive feeds whole .nemo layers (tar and tar+gzip) through the
// weight-layer path: the verdict must not depend on the chunking.
func FuzzNeMoArchive(f *testing.F) {
	nemo := modelcorpus.NeMoTar(modelcorpus.NeMoASRConfig, modelcorpus.NeMoWeights(nil))
	f.Add(nemo, uint8(7))
	f.Add(modelcorpus.Gzip(nemo), uint8(13))
	f.Add(modelcorpus.NeMoTar("_target_: os.system\n", nil), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, layer(scanOpts, mpWeight, "m.nemo"), data, chunk)
	})
}
