package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// Every command answers -h with its usage and exit 0; a bad flag is 2.
func TestHelpAndUsageExitCodes(t *testing.T) {
	for _, c := range [][]string{{"serve"}, {"demo"}, {"verify"}, {"inspect"}, {"attest", "create"}, {"attest", "sign"},
		{"attest", "push"}, {"policy", "lint"}, {"policy", "test"}, {"audit"}} {
		if code := run(append(append([]string{}, c...), "-h")); code != 0 {
			t.Errorf("pullgate %s -h: exit %d, want 0", strings.Join(c, " "), code)
		}
	}
	if code := run([]string{"inspect", "--no-such-flag", "x"}); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}

// safetensorsFile is a valid one-tensor safetensors file.
func safetensorsFile(t *testing.T, dir, tensor string) string {
	t.Helper()
	header := `{"` + tensor + `":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(append(b, header...), make([]byte, 8)...)
	p := filepath.Join(dir, tensor+".safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pullgate inspect on local files, with and without a policy rule whose
// media-type allowlist a local file cannot satisfy by itself.
func TestInspectLocalFiles(t *testing.T) {
	dir := t.TempDir()
	good := safetensorsFile(t, dir, "base_model.model.layers.0.lora_A.weight")
	odd := safetensorsFile(t, dir, "w")
	pk := modelcorpus.NewPickler(2)
	pk.Global("os", "system").Str("id").Tuple(1).Op('R')
	pkl := filepath.Join(dir, "model.pkl")
	if err := os.WriteFile(pkl, pk.Stop(), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(`rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack]
      formats: { safetensors: {}, pickle: deny }
      tensors: { allow: ['^base_model\.model\..*\.lora_[AB]\.weight$'] }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	raw := "application/vnd.cncf.model.weight.v1.raw"
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"inspect", good}, 0},
		{[]string{"inspect", pkl}, 1},
		{[]string{"inspect", pkl, "--pickle", "scan"}, 1}, // os.system is not on the allowlist
		// The rule's allowlist is not checked without a declared type;
		// the validators (tensor names) still run.
		{[]string{"inspect", good, "--policy", pol, "--rule", "models"}, 0},
		{[]string{"inspect", odd, "--policy", pol, "--rule", "models"}, 1},
		{[]string{"inspect", good, "--policy", pol, "--rule", "models", "--media-type", raw}, 0},
		{[]string{"inspect", good, "--policy", pol, "--rule", "models", "--media-type", "text/plain"}, 1},
		{[]string{"inspect", good, "--policy", pol, "--rule", "nosuchrule"}, 2},
		{[]string{"inspect", good, "-o", "yaml"}, 2},
	} {
		if got := run(c.args); got != c.want {
			t.Errorf("pullgate %s: exit %d, want %d", strings.Join(c.args, " "), got, c.want)
		}
	}
}

// pullgate audit --follow refuses what cannot follow: a summary, an end time.
func TestAuditFollowUsage(t *testing.T) {
	f := filepath.Join(t.TempDir(), "audit.jsonl")
	for _, args := range [][]string{{"audit", "summary", "-f", "--file", f}, {"audit", "-f", "--until", "1h", "--file", f}} {
		if code := run(args); code != 2 {
			t.Errorf("pullgate %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}
