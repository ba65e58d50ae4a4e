package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

// loadFormats loads a one-rule policy whose content.formats section is
// formats (one YAML line) and returns the rule's validator options.
func loadFormats(t *testing.T, formats string) (content.Options, error) {
	t.Helper()
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        ` + formats + "\n"})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		return content.Options{}, err
	}
	return p.Rules[0].Content.Options(), nil
}

func TestContentTensorFlowAndTFLite(t *testing.T) {
	o, err := loadFormats(t, `{tensorflow: {allowOps: [InitializeTableFromTextFileV2], denyOps: [SaveV2]}, tflite: {customOps: [TFLite_Detection_PostProcess], flex: allow}}`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.TensorFlow.AllowOps, ",") != "InitializeTableFromTextFileV2" || strings.Join(o.TensorFlow.DenyOps, ",") != "SaveV2" {
		t.Fatalf("tensorflow options %+v", o.TensorFlow)
	}
	if strings.Join(o.TFLite.CustomOps, ",") != "TFLite_Detection_PostProcess" || !o.TFLite.AllowFlex {
		t.Fatalf("tflite options %+v", o.TFLite)
	}
	if o, err := loadFormats(t, `{tensorflow: null, tflite: {}}`); err != nil || o.TFLite.AllowFlex || len(o.TensorFlow.AllowOps) > 0 {
		t.Fatalf("empty sections: %+v %v", o, err)
	}
	for _, c := range []struct{ yaml, want string }{
		{`tensorflow: {allowOp: [ReadFile]}`, "allowOp"},
		{`tflite: {flex: yes}`, `flex "yes" is not one of refuse, allow`},
		{`tensorflow: {denyOps: ["Read File"]}`, "is not an op name"},
	} {
		if _, err := loadFormats(t, c.yaml); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.yaml, err, c.want)
		}
	}
}
