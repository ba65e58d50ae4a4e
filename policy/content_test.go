package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

func TestContentOptions(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      mediaTypes: [ollama, application/x-custom]
      formats:
        safetensors: {maxHeaderBytes: 1MiB, maxTensors: 10}
        gguf: {maxStringBytes: 64KiB, maxArrayElements: 100, maxKV: 50, maxTensors: 20, allowChatTemplateDunder: true}
        pickle: {mode: scan, allow: [collections.OrderedDict]}
        zip: {maxEntries: 7, maxDeflatedMember: 1MiB, maxInflatedMember: 2MiB, maxUncompressed: 3MiB}
      denyCodeLayers: true
      allowArchives: true
      maxConfigBytes: 4MiB
      tensors: {allow: ['^a$']}
`})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Rules[0].Content
	o := c.Options()
	if o.Safetensors.MaxHeaderBytes != 1<<20 || o.Safetensors.MaxTensors != 10 {
		t.Errorf("safetensors %+v", o.Safetensors)
	}
	if o.GGUF != (content.GGUFOptions{MaxStringBytes: 64 << 10, MaxArrayElements: 100, MaxKV: 50, MaxTensors: 20, AllowChatTemplateDunder: true}) {
		t.Errorf("gguf %+v", o.GGUF)
	}
	if o.Pickle.Mode != content.PickleScan || len(o.Pickle.Allow) != 1 || o.Pickle.Allow[0] != "collections.OrderedDict" {
		t.Errorf("pickle %+v", o.Pickle)
	}
	if o.Zip != (content.ZipOptions{MaxEntries: 7, MaxDeflatedMember: 1 << 20, MaxInflatedMember: 2 << 20, MaxUncompressed: 3 << 20}) {
		t.Errorf("zip %+v", o.Zip)
	}
	if !o.DenyCodeLayers || !o.AllowArchives || o.MaxConfigBytes != 4<<20 || len(o.TensorAllow) != 1 {
		t.Errorf("options %+v", o)
	}
	if !c.AllowsMediaType("application/vnd.ollama.image.model") || !c.AllowsMediaType("application/x-custom") || c.AllowsMediaType("application/vnd.cncf.model.weight.v1.raw") {
		t.Error("media types")
	}
	// Sets reach the validators by name (they know each set's config types
	// and formats), exact strings as written.
	if strings.Join(o.MediaTypes, ",") != strings.Join(append(append([]string(nil), c.MediaTypeSets...), c.ExactMediaTypes...), ",") ||
		len(c.MediaTypeSets) == 0 || len(c.ExactMediaTypes) == 0 {
		t.Errorf("media types not passed: %v", o.MediaTypes)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("options do not validate: %v", err)
	}
	// No content section: defaults, pickle denied.
	var none *Content
	if d := none.Options(); d.Pickle.Mode != content.PickleDeny || len(d.MediaTypes) != 0 || !none.AllowsMediaType("anything/x") {
		t.Errorf("nil content options %+v", d)
	}
	// A rule whose content omits pickle denies pickle.
	dir2 := writeDir(t, map[string]string{"p.yaml": "rules:\n  - {name: m, match: [\"**\"], action: allow, content: {denyCodeLayers: false}}\n"})
	p2, err := Load(filepath.Join(dir2, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Rules[0].Content.Options().Pickle.Mode != content.PickleDeny {
		t.Error("pickle not denied by default")
	}
}

// formats.allow and formats.unknown reach the validators; unknown format
// names and modes are policy errors with a position.
func TestContentFormatsAllowUnknown(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["**"]
    action: allow
    content:
      formats: {allow: [safetensors, gguf, json, text], unknown: allow}
`})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := p.Rules[0].Content.Options()
	if strings.Join(o.AllowFormats, ",") != "safetensors,gguf,json,text" || !o.AllowUnknown {
		t.Errorf("options %+v", o)
	}
	// Default: unknown bytes refused.
	dir2 := writeDir(t, map[string]string{"p.yaml": "rules:\n  - {name: m, match: [\"**\"], action: allow, content: {denyCodeLayers: true}}\n"})
	p2, err := Load(filepath.Join(dir2, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if o := p2.Rules[0].Content.Options(); o.AllowUnknown || len(o.AllowFormats) != 0 {
		t.Errorf("defaults %+v", o)
	}
	if p.Revision() == p2.Revision() {
		t.Error("formats do not change the revision")
	}
	for _, tc := range []struct{ yaml, want string }{
		{"formats: {allow: [safetensor]}", `formats.allow: unknown format "safetensor"`},
		{"formats: {allow: []}", "formats.allow is empty"},
		{"formats: {unknown: maybe}", `formats.unknown "maybe" is not one of deny, allow`},
	} {
		d := writeDir(t, map[string]string{"p.yaml": "rules:\n  - name: m\n    match: [\"**\"]\n    action: allow\n    content:\n      " + tc.yaml + "\n"})
		_, err := Load(filepath.Join(d, "p.yaml"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "p.yaml:6:") {
			t.Errorf("%s: err %v, want %q at line 6", tc.yaml, err, tc.want)
		}
	}
}

// formats.torchscript reaches the validators; default refuse; other values
// are policy errors with a position.
func TestContentFormatsTorchScript(t *testing.T) {
	load := func(yaml string) (*Policy, error) {
		d := writeDir(t, map[string]string{"p.yaml": "rules:\n  - name: m\n    match: [\"**\"]\n    action: allow\n    content:\n      " + yaml + "\n"})
		return Load(filepath.Join(d, "p.yaml"))
	}
	p, err := load("formats: {torchscript: allow, pickle: {mode: scan}}")
	if err != nil {
		t.Fatal(err)
	}
	if o := p.Rules[0].Content.Options(); !o.AllowTorchScript || o.Pickle.Mode != content.PickleScan {
		t.Errorf("allow: options %+v", o)
	}
	for _, y := range []string{"formats: {torchscript: refuse}", "formats: {pickle: {mode: scan}}"} {
		p2, err := load(y)
		if err != nil {
			t.Fatal(err)
		}
		if p2.Rules[0].Content.Options().AllowTorchScript {
			t.Errorf("%s: TorchScript allowed", y)
		}
		if p.Revision() == p2.Revision() {
			t.Errorf("%s: torchscript does not change the revision", y)
		}
	}
	_, err = load("formats: {torchscript: yes}")
	if want := `formats.torchscript "yes" is not one of refuse, allow`; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "p.yaml:6:") {
		t.Errorf("err %v, want %q at line 6", err, want)
	}
}
