package policy

import (
	"strings"
	"testing"
)

func TestContentONNXDomains(t *testing.T) {
	o, err := loadFormats(t, `onnx: {domains: [com.microsoft, com.example.ops]}`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.ONNX.Domains, ",") != "com.microsoft,com.example.ops" {
		t.Fatalf("onnx domains %v", o.ONNX.Domains)
	}
	if _, err := loadFormats(t, `onnx: {domain: [com.microsoft]}`); err == nil || !strings.Contains(err.Error(), "domain") {
		t.Fatalf("misspelt key accepted: %v", err)
	}
}
