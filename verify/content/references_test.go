package content_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

const mtWeightConfig = "application/vnd.cncf.model.weight.config.v1.raw"

// references inspects data as a config named title, in chunks of several
// sizes, and returns what it references (the inspection must pass, and
// find the same references however the bytes arrive).
func references(t *testing.T, opts content.Options, title string, data []byte) []content.Reference {
	t.Helper()
	var first []content.Reference
	for i, chunk := range []int{len(data) + 1, 1, 13} {
		rep, err := content.InspectReader(opts, &chunkReader{b: data, n: chunk}, int64(len(data)), mtWeightConfig, title)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) > 0 {
			t.Fatalf("%s refused: %s", title, rep.Findings[0].Error())
		}
		if i == 0 {
			first = rep.References
		} else if !reflect.DeepEqual(rep.References, first) {
			t.Fatalf("chunks of %d: %+v, whole: %+v", chunk, rep.References, first)
		}
	}
	return first
}

func TestConfigReferences(t *testing.T) {
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	cases := []struct {
		name, title string
		data        []byte
		want        []content.Reference
	}{
		{"peft adapter_config.json", "adapter_config.json", modelcorpus.PEFTAdapterConfig("meta-llama/Meta-Llama-3-8B"),
			[]content.Reference{{File: "adapter_config.json", Key: "base_model_name_or_path", Value: "meta-llama/Meta-Llama-3-8B", Kind: content.RefHub}}},
		{"peft adapter on a local base", "adapter_config.json", modelcorpus.PEFTAdapterConfig("/home/train/base-ckpt"),
			[]content.Reference{{File: "adapter_config.json", Key: "base_model_name_or_path", Value: "/home/train/base-ckpt", Kind: content.RefLocal}}},
		{"transformers config.json, cross-repository auto_map", "config.json",
			modelcorpus.TransformersConfig("org/model", map[string]any{
				"AutoConfig":           "configuration_x.XConfig",
				"AutoModelForCausalLM": "other-org/code-repo--modeling_x.XModel",
			}),
			[]content.Reference{
				{File: "config.json", Key: "_name_or_path", Value: "org/model", Kind: content.RefHub},
				{File: "config.json", Key: "auto_map.AutoModelForCausalLM", Value: "other-org/code-repo", Kind: content.RefHub},
			}},
		{"config.json saved from a relative path", "config.json", modelcorpus.TransformersConfig("../checkpoints/run-7", nil),
			[]content.Reference{{File: "config.json", Key: "_name_or_path", Value: "../checkpoints/run-7", Kind: content.RefLocal}}},
		{"config.json without a name", "config.json", modelcorpus.TransformersConfig("", nil), nil},
		{"tokenizer_config.json auto_map list", "tokenizer_config.json",
			modelcorpus.TokenizerConfigAutoMap("tokenization_x.XTokenizer", "https://evil.example/x--tokenization_x.XTokenizerFast"),
			[]content.Reference{{File: "tokenizer_config.json", Key: "auto_map.AutoTokenizer", Value: "https://evil.example/x", Kind: content.RefURL}}},
		{"tokenizer_config.json auto_map with null", "tokenizer_config.json",
			modelcorpus.TokenizerConfigAutoMap(nil, "org/tok--tokenization_x.XTokenizerFast"),
			[]content.Reference{{File: "tokenizer_config.json", Key: "auto_map.AutoTokenizer", Value: "org/tok", Kind: content.RefHub}}},
		{"custom_pipelines impl", "config.json",
			[]byte(`{"custom_pipelines": {"pair-classification": {"impl": "org/pipes--pair.PairPipeline", "pt": ["AutoModelForSequenceClassification"]}}}`),
			[]content.Reference{{File: "config.json", Key: "custom_pipelines.pair-classification.impl", Value: "org/pipes", Kind: content.RefHub}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := references(t, opts, c.title, c.data)
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("references:\n got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestClassifyReference(t *testing.T) {
	for in, want := range map[string]string{
		"gpt2":                       content.RefHub,
		"meta-llama/Meta-Llama-3-8B": content.RefHub,
		"org/model.v1_2":             content.RefHub,
		"/models/base":               content.RefLocal,
		"./base":                     content.RefLocal,
		"../base":                    content.RefLocal,
		"org/../base":                content.RefLocal,
		"a/b/c":                      content.RefLocal,
		"~/models/base":              content.RefLocal,
		`C:\models\base`:             content.RefLocal,
		"C:/models/base":             content.RefLocal,
		"org--x/model":               content.RefLocal,
		"org/model.git":              content.RefLocal,
		"-org/model":                 content.RefLocal,
		"https://host/x":             content.RefURL,
		"s3://bucket/key":            content.RefURL,
		"file:///etc/passwd":         content.RefURL,
		strings.Repeat("a", 97):      content.RefLocal,
	} {
		if got := content.ClassifyReference(in); got != want {
			t.Errorf("ClassifyReference(%q) = %s, want %s", in, got, want)
		}
	}
}

// Under content.references, a reference is admitted by the MBOM's base
// model names (Hub ids only, exactly) or an allow entry (Hub id patterns;
// paths and URLs exactly), and refused with the file, key, value and a
// fix otherwise.
func TestCheckReferences(t *testing.T) {
	hub := content.Reference{File: "adapter_config.json", Key: "base_model_name_or_path", Value: "meta-llama/Meta-Llama-3-8B", Kind: content.RefHub}
	local := content.Reference{File: "config.json", Key: "_name_or_path", Value: "/srv/base", Kind: content.RefLocal}
	url := content.Reference{File: "config.json", Key: "auto_map.AutoModel", Value: "https://x.example/r", Kind: content.RefURL}
	base := []string{"meta-llama/Meta-Llama-3-8B"}
	cases := []struct {
		name  string
		o     content.ReferenceOptions
		ref   content.Reference
		mbom  bool
		names []string
		want  string // "" admitted
	}{
		{"any admits", content.ReferenceOptions{}, local, false, nil, ""},
		{"mbom: base model name", content.ReferenceOptions{Require: content.RequireMBOM}, hub, true, base, ""},
		// The Hub resolves ids without regard to case: the same repository.
		{"mbom: case differs", content.ReferenceOptions{Require: content.RequireMBOM}, content.Reference{Key: "k", Value: "Meta-Llama/Meta-Llama-3-8B", Kind: content.RefHub}, true, base, ""},
		{"mbom: only ASCII case is folded", content.ReferenceOptions{Require: content.RequireMBOM}, content.Reference{Key: "k", Value: "meta-llama/Meta-Llama-3-8b", Kind: content.RefHub}, true, []string{"meta-llama/Meta-Llama-3-8\u212a"},
			`the verified MBOM's base model is`},
		{"allowlist: pattern, case differs", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"Meta-Llama/*-8B"}}, content.Reference{Key: "k", Value: "meta-llama/Llama-3-8b", Kind: content.RefHub}, false, nil, ""},
		{"allowlist: pattern class, case differs", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"[M]eta-llama/*"}}, hub, false, nil, ""},
		{"allowlist: a local path keeps its case", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"/SRV/base"}}, local, false, nil, "local path"},
		{"allowlist: a URL keeps its case", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"https://x.example/R"}}, url, false, nil, "URL"},
		{"mbom: another base", content.ReferenceOptions{Require: content.RequireMBOM}, hub, true, []string{"mistralai/Mistral-7B-v0.1"},
			`adapter_config.json: base_model_name_or_path = "meta-llama/Meta-Llama-3-8B" (hub)`},
		{"mbom: none verified", content.ReferenceOptions{Require: content.RequireMBOM}, hub, false, nil, "no verified MBOM statement lists this file"},
		{"mbom: no names in the MBOM", content.ReferenceOptions{Require: content.RequireMBOM}, hub, true, nil, "names its base model by no Hugging Face id"},
		{"mbom: a local path is not the base model", content.ReferenceOptions{Require: content.RequireMBOM}, local, true, []string{"/srv/base"}, "local path"},
		{"mbom: local path allowed exactly", content.ReferenceOptions{Require: content.RequireMBOM, Allow: []string{"/srv/base"}}, local, true, nil, ""},
		{"allowlist: pattern", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"meta-llama/*"}}, hub, false, nil, ""},
		{"allowlist: pattern of another org", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"mistralai/*"}}, hub, false, nil, `"meta-llama/*"`},
		{"allowlist: the MBOM does not count", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"mistralai/*"}}, hub, true, base, "content.references.require: allowlist"},
		{"allowlist: a hub pattern does not admit a path", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"**"}}, local, false, nil, "local path"},
		{"allowlist: a hub pattern does not admit a URL", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"**"}}, url, false, nil, "URL"},
		{"allowlist: URL exactly", content.ReferenceOptions{Require: content.RequireAllowlist, Allow: []string{"https://x.example/r"}}, url, false, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.o.Validate(); err != nil {
				t.Fatal(err)
			}
			f := content.CheckReferences(c.o, []content.Reference{c.ref}, c.mbom, c.names)
			switch {
			case c.want == "" && f != nil:
				t.Fatalf("refused: %s", f)
			case c.want != "" && f == nil:
				t.Fatalf("admitted, want a finding with %q", c.want)
			case c.want != "" && !strings.Contains(f.Error(), c.want):
				t.Fatalf("got %q, want %q", f.Error(), c.want)
			case f != nil && (!strings.Contains(f.Error(), c.ref.Key) || !strings.Contains(f.Error(), "content.references")):
				t.Fatalf("the finding names neither the key nor the policy key: %s", f)
			}
		})
	}
	for _, bad := range []string{"/srv/*", "", "org/[", "../base/*"} {
		if (content.ReferenceOptions{Allow: []string{bad}}).Validate() == nil {
			t.Errorf("allow entry %q accepted", bad)
		}
	}
	if (content.ReferenceOptions{Require: "exact"}).Validate() == nil {
		t.Error("require: exact accepted")
	}
}

// A config inside a tar layer reports its references under its member path.
func TestTarConfigReferences(t *testing.T) {
	data := modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "adapter/adapter_config.json", Data: modelcorpus.PEFTAdapterConfig("org/base")}}, nil)
	rep, err := content.InspectReader(content.Options{}, bytes.NewReader(data), int64(len(data)), "application/vnd.cncf.model.weight.v1.tar", "adapter.tar")
	if err != nil || len(rep.Findings) > 0 {
		t.Fatal(err, rep.Findings)
	}
	want := []content.Reference{{File: "adapter/adapter_config.json", Key: "base_model_name_or_path", Value: "org/base", Kind: content.RefHub}}
	if !reflect.DeepEqual(rep.References, want) {
		t.Fatalf("got %+v", rep.References)
	}
}

// FuzzConfigReferences: whatever a config holds, an accepted one lists
// only non-empty references of a known kind, classified as
// ClassifyReference says, the same however the bytes are chunked, and the
// requirement check neither panics nor admits a path or URL that no allow
// entry names.
func FuzzConfigReferences(f *testing.F) {
	f.Add(modelcorpus.PEFTAdapterConfig("meta-llama/Meta-Llama-3-8B"), uint8(7))
	f.Add(modelcorpus.TransformersConfig("/home/x", map[string]any{"AutoModel": "o/r--m.C", "AutoConfig": "c.C"}), uint8(1))
	f.Add(modelcorpus.TokenizerConfigAutoMap(nil, "https://h/x--t.T"), uint8(3))
	f.Add([]byte(`{"custom_pipelines":{"t":{"impl":"a--b--c.D"}},"_name_or_path":"C:\\x"}`), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		opts := content.Options{}
		whole, err := content.InspectReader(opts, bytes.NewReader(data), int64(len(data)), mtWeightConfig, "config.json")
		if err != nil {
			t.Fatal(err)
		}
		parts, err := content.InspectReader(opts, &chunkReader{b: data, n: int(chunk) + 1}, int64(len(data)), mtWeightConfig, "config.json")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(whole.References, parts.References) || len(whole.Findings) != len(parts.Findings) {
			t.Fatalf("chunking changed the result: %+v / %+v", whole, parts)
		}
		for _, r := range whole.References {
			if r.Value == "" || r.Key == "" || r.File != "config.json" || content.ClassifyReference(r.Value) != r.Kind {
				t.Fatalf("bad reference %+v", r)
			}
			f := content.CheckReferences(content.ReferenceOptions{Require: content.RequireMBOM, Allow: []string{"**"}}, []content.Reference{r}, true, []string{r.Value})
			if (f == nil) != (r.Kind == content.RefHub) {
				t.Fatalf("%+v: admitted=%v", r, f == nil)
			}
		}
	})
}

// A config whose leading whitespace fills the sniff window (Python's json
// skips it) is judged as the config it is: its references are listed,
// and its remote-code hook refused under denyCodeLayers.
func TestPaddedConfigJudgedAsConfig(t *testing.T) {
	pad := bytes.Repeat([]byte(" \n"), 4096)
	got := references(t, content.Options{}, "adapter_config.json", append(pad, modelcorpus.PEFTAdapterConfig("attacker/Meta-Llama-3-8B")...))
	want := []content.Reference{{File: "adapter_config.json", Key: "base_model_name_or_path", Value: "attacker/Meta-Llama-3-8B", Kind: content.RefHub}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	hook := append(pad, modelcorpus.TransformersConfig("org/model", map[string]any{"AutoModel": "modeling_x.XModel"})...)
	rep, err := content.InspectReader(content.Options{DenyCodeLayers: true}, bytes.NewReader(hook), int64(len(hook)), mtWeightConfig, "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) == 0 || !strings.Contains(rep.Findings[0].Error(), "auto_map") {
		t.Fatalf("padded config with auto_map: %+v", rep.Findings)
	}
	dup := append(pad, `{"base_model_name_or_path": "meta-llama/Meta-Llama-3-8B", "base_model_name_or_path": "attacker/x"}`...)
	if rep, err := content.InspectReader(content.Options{}, bytes.NewReader(dup), int64(len(dup)), mtWeightConfig, "adapter_config.json"); err != nil || len(rep.Findings) == 0 {
		t.Fatalf("padded config with a repeated key admitted: %v %+v", err, rep)
	}
}

// A config a loader reads by name is judged as a config whatever layer
// declares it (a dataset layer streams JSON as text otherwise), and one
// padded past the sniffed bytes and larger than maxConfigBytes is refused
// as an unpadded one is, not served unread.
func TestConfigJudgedWhateverItsLayer(t *testing.T) {
	const dataset = "application/vnd.cncf.model.dataset.v1.raw"
	hook := modelcorpus.TransformersConfig("org/model", map[string]any{"AutoModel": "other/repo--modeling_x.XModel"})
	for _, name := range []string{"config.json", "sub/adapter_config.json", "tokenizer_config.json"} {
		rep, err := content.InspectReader(content.Options{DenyCodeLayers: true}, bytes.NewReader(hook), int64(len(hook)), dataset, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) == 0 || !strings.Contains(rep.Findings[0].Error(), "auto_map") {
			t.Errorf("%s in a dataset layer: auto_map not judged: %+v", name, rep.Findings)
		}
	}
	// Dataset JSON of other names stays data.
	rows := []byte(`[{"text": "a"}, {"text": "b", "auto_map": {"x": "y"}}]`)
	if rep, err := content.InspectReader(content.Options{DenyCodeLayers: true}, bytes.NewReader(rows), int64(len(rows)), dataset, "train.json"); err != nil || len(rep.Findings) != 0 {
		t.Errorf("dataset rows: %v %+v", err, rep.Findings)
	}
	opts := content.Options{MaxConfigBytes: 64 << 10}
	big := append(bytes.Repeat([]byte(" "), 8<<10), `{"base_model_name_or_path": "attacker/x", "pad": "`...)
	big = append(append(big, bytes.Repeat([]byte("a"), 64<<10)...), `"}`...)
	for _, mt := range []string{mtWeightConfig, dataset} {
		rep, err := content.InspectReader(opts, bytes.NewReader(big), int64(len(big)), mt, "adapter_config.json")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) == 0 || !strings.Contains(rep.Findings[0].Error(), "larger than") {
			t.Errorf("padded %d-byte config in %s: %+v", len(big), mt, rep.Findings)
		}
	}
}
