package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestContentTensorFlowAndTFLite(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        tensorflow: {allowOps: [InitializeTableFromTextFileV2], denyOps: [SaveV2]}
        tflite: {customOps: [TFLite_Detection_PostProcess], flex: allow}
`})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := p.Rules[0].Content.Options()
	if strings.Join(o.TensorFlow.AllowOps, ",") != "InitializeTableFromTextFileV2" || strings.Join(o.TensorFlow.DenyOps, ",") != "SaveV2" {
		t.Fatalf("tensorflow options %+v", o.TensorFlow)
	}
	if strings.Join(o.TFLite.CustomOps, ",") != "TFLite_Detection_PostProcess" || !o.TFLite.AllowFlex {
		t.Fatalf("tflite options %+v", o.TFLite)
	}
	for _, c := range []struct{ yaml, want string }{
		{`tensorflow: {allowOp: [ReadFile]}`, "allowOp"},
		{`tflite: {flex: yes}`, `flex "yes" is not one of refuse, allow`},
		{`tensorflow: {denyOps: ["Read File"]}`, "is not an op name"},
	} {
		bad := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        ` + c.yaml + "\n"})
		if _, err := Load(filepath.Join(bad, "p.yaml")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.yaml, err, c.want)
		}
	}
}
