package content_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// gateCase is one file through InspectReader: want "" means served,
// otherwise a substring of the finding.
type gateCase struct {
	name, mediaType, title string
	data                   []byte
	opts                   func(*content.Options)
	want                   string
}

func runGateCases(t *testing.T, cases []gateCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}, DenyCodeLayers: true}
			if c.opts != nil {
				c.opts(&opts)
			}
			for _, chunk := range []int{len(c.data) + 1, 1, 7} {
				rep, err := content.InspectReader(opts, &chunkReader{b: c.data, n: max(chunk, 1)}, int64(len(c.data)), c.mediaType, c.title)
				if err != nil {
					t.Fatal(err)
				}
				got := ""
				if len(rep.Findings) > 0 {
					got = rep.Findings[0].Error()
				}
				switch {
				case c.want == "" && got != "":
					t.Fatalf("refused (chunks of %d): %s", chunk, got)
				case c.want != "" && !strings.Contains(got, c.want):
					t.Fatalf("chunks of %d: got %q, want a finding with %q", chunk, got, c.want)
				}
			}
		})
	}
}

type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n, len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// Sniffing decides by structure: text whose byte 8 is '{' is no
// safetensors file, a template is a template by its type, its name or its
// content, and JSON is JSON only when it starts a key or a value.
func TestGateSniffing(t *testing.T) {
	runGateCases(t, []gateCase{
		{name: "mistral template starting [INST] {{", data: []byte("[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]"), want: ""},
		{name: "mistral template as Ollama template", mediaType: "application/vnd.ollama.image.template", data: []byte("[INST] {{ .Prompt }} [/INST]"), want: ""},
		{name: "j2 template starting {{", title: "chat.j2", data: []byte("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}"), want: ""},
		{name: "jinja2 template starting {%", title: "chat.jinja2", data: []byte("{%- for m in messages %}{{ m.content }}{% endfor %}"), want: ""},
		{name: "gotmpl template starting {{", title: "chatml.gotmpl", data: []byte("{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"), want: ""},
		{name: ".template file with include", title: "prompt.template", data: []byte("{% include 'secrets.txt' %}"), want: "include"},
		{name: ".gotmpl calling call", title: "x.gotmpl", data: []byte("{{ call .Prompt }}"), want: "call"},
		{name: ".j2 that does not parse", title: "x.j2", data: []byte("{{ messages[ }}"), want: "does not parse as a Jinja template"},
		{name: "safetensors header length that does not fit", data: func() []byte {
			b := []byte("........{\"a\":1}")
			b[0] = 200
			return b
		}(), want: "safetensors"},
		{name: "JSON object", title: "x.json", data: []byte(`{"a": 1}`), want: ""},
		{name: "broken JSON", title: "x.json", data: []byte(`{"a": 1`), want: "json"},
		{name: "PNG image", title: "sample.png", data: append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...), want: ""},
		{name: "PNG declared as weights", mediaType: "application/vnd.cncf.model.weight.v1.raw", data: append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...), want: "but bytes are an image"},
	})
}

// Templates are found in every carrier and parsed: undeclared text with
// template syntax, YAML configs, every template key of a JSON config at any
// depth.
func TestGateTemplateCarriers(t *testing.T) {
	evil := `{{ cycler.__init__.__globals__ }}`
	runGateCases(t, []gateCase{
		{name: "README with a dunder template", title: "README.md", data: []byte("Use it like this: " + evil + "\n"), want: `attribute "__init__"`},
		{name: "README with braces that are no template", title: "README.md", data: []byte("In Go: {{ .Prompt }} then {% if %}\n"), want: ""},
		{name: "README without template syntax", title: "README.md", data: []byte("# Model\n\nA model.\n"), want: ""},
		{name: "YAML config template key", title: "config.yaml", data: []byte("model: x\nchat_template: \"" + evil + "\"\n"), want: `YAML key "chat_template"`},
		{name: "YAML nested template key", title: "serve.yml", data: []byte("server:\n  tokenizer:\n    chat_template_jinja: |\n      {{ x.__class__ }}\n"), want: `attribute "__class__"`},
		{name: "YAML template under an alias", title: "c.yaml", data: []byte("base: &b \"{{ x.__class__ }}\"\nchat_template: *b\n"), want: `attribute "__class__"`},
		{name: "YAML alias bomb", title: "bomb.yaml", data: []byte("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"), want: "alias bomb"},
		{name: "YAML that does not parse", title: "c.yaml", data: []byte("a: [\n"), want: "YAML config does not parse"},
		{name: "benign YAML", title: "generation.yaml", data: []byte("temperature: 0.7\nchat_template: \"{% for m in messages %}{{ m['content'] }}{% endfor %}\"\n"), want: ""},
		{name: "JSON second template key", title: "tokenizer_config.json", data: []byte(`{"chat_template":"{{ messages }}","tool_use_template":"` + evil + `"}`), want: `key "tool_use_template"`},
		{name: "JSON template list", title: "tokenizer_config.json", data: []byte(`{"chat_template":[{"name":"default","template":"{{ messages }}"},{"name":"rag","template":"` + evil + `"}]}`), want: `attribute "__init__"`},
		{name: "JSON nested template key", title: "processor_config.json", data: []byte(`{"processor":{"tokenizer":{"chat_template":"` + evil + `"}}}`), want: `attribute "__init__"`},
		{name: "chat_template.json", title: "chat_template.json", data: []byte(`{"chat_template":"{% for m in messages %}{{ m.content }}{% endfor %}"}`), want: ""},
		{name: "GGUF chat template", data: func() []byte {
			s := modelcorpus.VocabGGUFSpec(300)
			s.KVs[len(s.KVs)-1].Value = evil
			return modelcorpus.GGUF(s)
		}(), want: `tokenizer.chat_template: attribute "__init__"`},
	})
}

// Hugging Face remote-code hooks in configs, under denyCodeLayers.
func TestGateRemoteCodeHooks(t *testing.T) {
	runGateCases(t, []gateCase{
		{name: "auto_map", title: "config.json", data: []byte(`{"auto_map":{"AutoModel":"modeling_x.X"}}`), want: "auto_map"},
		{name: "custom_pipelines", title: "config.json", data: []byte(`{"custom_pipelines":{"evil":{"impl":"pipe.Evil","pt":["AutoModel"]}}}`), want: "custom_pipelines"},
		{name: "diffusers custom component", title: "model_index.json", data: []byte(`{"_class_name":"StableDiffusionPipeline","unet":["my_unet","MyUNet"],"vae":["diffusers","AutoencoderKL"]}`), want: `module "my_unet"`},
		{name: "diffusers custom pipeline", title: "model_index.json", data: []byte(`{"_class_name":["pipeline","MyPipeline"]}`), want: "custom pipeline"},
		{name: "diffusers standard", title: "model_index.json", data: []byte(`{"_class_name":"StableDiffusionPipeline","_diffusers_version":"0.21.0","unet":["diffusers","UNet2DConditionModel"],"text_encoder":["transformers","CLIPTextModel"],"safety_checker":[null,null]}`), want: ""},
		{name: "custom_pipelines without denyCodeLayers", title: "config.json", opts: func(o *content.Options) { o.DenyCodeLayers = false },
			data: []byte(`{"custom_pipelines":{"evil":{"impl":"pipe.Evil"}}}`), want: ""},
	})
}

// formats.allow narrows the formats; bytes of no known format are refused
// unless formats.unknown: allow.
func TestGateFormatsAllowUnknown(t *testing.T) {
	st := modelcorpus.Safetensors(modelcorpus.SmallModel(), nil)
	junk := bytes.Repeat([]byte{0x00, 0xff, 0x13, 0x37}, 64)
	onlyGGUF := func(o *content.Options) { o.AllowFormats = []string{"gguf"} }
	runGateCases(t, []gateCase{
		{name: "safetensors outside allow", data: st, opts: onlyGGUF, want: "content.formats.allow (gguf) does not list"},
		{name: "safetensors in allow", data: st, opts: func(o *content.Options) { o.AllowFormats = []string{"safetensors"} }, want: ""},
		{name: "template judged as template", title: "t.jinja", data: []byte("{{ messages }}"), opts: func(o *content.Options) { o.AllowFormats = []string{"text"} }, want: "a template, which this rule's content.formats.allow"},
		{name: "unknown bytes", data: junk, want: "bytes match no format pullgate knows"},
		{name: "unknown bytes declared as weights", mediaType: "application/vnd.cncf.model.weight.v1.raw", data: junk, want: "content.formats.unknown: allow"},
		{name: "unknown bytes, unknown: allow", data: junk, opts: func(o *content.Options) { o.AllowUnknown = true }, want: ""},
		{name: "unknown bytes in a dataset layer", mediaType: "application/vnd.cncf.model.dataset.v1.raw", data: junk, want: ""},
		{name: "unknown bytes in an Ollama tensor layer", mediaType: "application/vnd.ollama.image.tensor", data: junk, want: ""},
		{name: "tokenizer.model", title: "tokenizer.model", data: []byte{0x0a, 0x0e, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x15, 0, 0, 0, 0, 0x18, 0x02}, want: ""},
		{name: "tokenizer.model that is no SentencePiece model", title: "tokenizer.model", data: []byte{0x0a, 0x0e, 0x0a, 0x05}, want: "not a SentencePiece model"},
	})
}

// A header-less pickle whose walk fails after an allowed import is a
// pickle, whatever stopped the walk (not only an import outside the
// allowlist): a loader runs it up to there.
func TestGateProtocol0PickleAfterAllowedImport(t *testing.T) {
	runGateCases(t, []gateCase{
		{name: "REDUCE on a non-tuple after an allowed import", data: []byte("(ccollections\nOrderedDict\nI1\nR."), want: "content parses as a pickle"},
		{name: "joblib name under pickle: deny", title: "model.joblib", data: []byte("\x80\x04N."), opts: func(o *content.Options) { o.Pickle.Mode = content.PickleDeny }, want: "joblib"},
	})
}

// FuzzCarriers: the parsers of config and template carriers (JSON and YAML
// configs, SentencePiece models, template files, text with template syntax)
// never panic, and their verdict does not depend on how the stream is
// chunked.
func FuzzCarriers(f *testing.F) {
	names := []string{"config.yaml", "tokenizer.model", "tokenizer_config.json", "README.md", "chat_template.jinja", "chatml.gotmpl", "model_index.json", "x.template"}
	f.Add([]byte("chat_template: \"{{ messages }}\"\n"), uint8(0), uint8(3))
	f.Add([]byte("a: &a [x,x]\nb: [*a,*a]\nchat_template: *a\n"), uint8(0), uint8(1))
	f.Add([]byte{0x0a, 0x0e, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x15, 0, 0, 0, 0, 0x18, 0x02, 0x12, 0x02, 0x08, 0x01}, uint8(1), uint8(2))
	f.Add([]byte(`{"chat_template":[{"name":"a","template":"{{ x.__class__ }}"}],"auto_map":{}}`), uint8(2), uint8(5))
	f.Add([]byte("Hello {{ name }} {% if x %}y{% endif %}\n"), uint8(3), uint8(1))
	f.Add([]byte("{%- for m in messages %}{{ m['content'] }}{% endfor %}"), uint8(4), uint8(4))
	f.Add([]byte("{{ range .Messages }}{{ .Content }}{{ end }}"), uint8(5), uint8(7))
	f.Add([]byte(`{"_class_name":"X","unet":["evil","U"]}`), uint8(6), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, pick, chunk uint8) {
		name := names[int(pick)%len(names)]
		opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}, DenyCodeLayers: true}
		verdict := func(n int) string {
			rep, err := content.InspectReader(opts, &chunkReader{b: data, n: n}, int64(len(data)), "", name)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Findings) > 0 {
				return rep.Findings[0].Error()
			}
			return ""
		}
		whole := verdict(len(data) + 1)
		if got := verdict(int(chunk)%13 + 1); got != whole {
			t.Fatalf("%s: verdict depends on chunking: %q vs %q", name, got, whole)
		}
	})
}

// Polyglots and carrier tricks from a review, each served before its fix.
func TestGateReviewBypasses(t *testing.T) {
	// "GIF89a" + 3 bytes is BINFLOAT to a pickle loader: it runs what
	// follows (posix.system).
	gifPickle := []byte("GIF89a\x00\x00\x000cposix\nsystem\n(S'echo PWNED'\ntR.")
	tarOf := func(name string, data []byte) []byte {
		return modelcorpus.Tar([]modelcorpus.TarEntry{{Name: name, Data: data}}, nil)
	}
	zipOf := func(name string, data []byte) []byte {
		return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: name, Data: data}}})
	}
	deny := func(o *content.Options) { o.Pickle.Mode = content.PickleDeny }
	runGateCases(t, []gateCase{
		{name: "GIF-headed pickle, no media type", title: "pytorch_model.bin", data: gifPickle, want: "posix.system"},
		{name: "GIF-headed pickle, pickle: deny", title: "pytorch_model.bin", data: gifPickle, opts: deny, want: "pickle"},
		{name: "GIF-headed pickle as an oras layer", mediaType: "application/vnd.oci.image.layer.v1.tar", title: "pytorch_model.bin", data: gifPickle, want: "posix.system"},
		{name: "GIF-headed pickle in a tar layer", mediaType: "application/vnd.cncf.model.weight.v1.tar", data: tarOf("model/model.pkl", gifPickle), want: "posix.system"},
		{name: "GIF-headed pickle in a zip", data: zipOf("pytorch_model.bin", gifPickle), want: "posix.system"},
		{name: "YAML alias as the template key", title: "config.yaml", data: []byte("a: &k chat_template\n*k : \"{{ ''.__class__ }}\"\n"), want: `attribute "__class__"`},
		{name: "YAML tagged template", title: "config.yaml", data: []byte("chat_template: !!python/str \"{{ ''.__class__ }}\"\n"), want: `attribute "__class__"`},
		{name: "YAML merge key", title: "config.yaml", data: []byte("base: &b {chat_template: \"{{ ''.__class__ }}\"}\nserve:\n  <<: *b\n"), want: `attribute "__class__"`},
		{name: "protocol 0 pickle named .template", title: "x.template", data: []byte("(cposix\nsystem\nS'id'\no."), want: "posix.system"},
		{name: "SentencePiece with an extension field", title: "tokenizer.model", data: []byte{0x0a, 0x07, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0xc2, 0x0c, 0x02, 'h', 'i'}, want: "unknown top-level field 200"},
	})
}

// Text in a dataset layer streams (it is released before Close); text that
// may be a template or config is held until it was parsed.
func TestGateDatasetTextStreams(t *testing.T) {
	data := []byte(strings.Repeat(`{"prompt": "hi", "completion": "{{ x }}"}`+"\n", 200))
	for _, c := range []struct {
		mediaType string
		early     bool
	}{{"application/vnd.cncf.model.dataset.v1.raw", true}, {"application/vnd.cncf.model.doc.v1.raw", false}, {"", false}} {
		in, err := content.NewInspector(content.Options{}, c.mediaType, "train.jsonl", int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.Write(data[:len(data)-1]); err != nil {
			t.Fatal(err)
		}
		if in.HeaderDone() != c.early {
			t.Errorf("%q: released before Close = %v, want %v", c.mediaType, in.HeaderDone(), c.early)
		}
		if _, err := in.Write(data[len(data)-1:]); err != nil {
			t.Fatal(err)
		}
		if err := in.Close(); err != nil {
			t.Errorf("%q: %v", c.mediaType, err)
		}
	}
}
