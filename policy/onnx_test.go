package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestContentONNXDomains(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        onnx: {domains: [com.microsoft, com.example.ops]}
`})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := p.Rules[0].Content.Options()
	if strings.Join(o.ONNX.Domains, ",") != "com.microsoft,com.example.ops" {
		t.Fatalf("onnx domains %v", o.ONNX.Domains)
	}
	bad := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        onnx: {domain: [com.microsoft]}
`})
	if _, err := Load(filepath.Join(bad, "p.yaml")); err == nil || !strings.Contains(err.Error(), "domain") {
		t.Fatalf("misspelt key accepted: %v", err)
	}
}
