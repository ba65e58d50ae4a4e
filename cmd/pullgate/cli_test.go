package main

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

// Every command answers -h with its usage and exit 0; a bad flag is 2.
// The containerd verifier is the exception: its exit 0 lets a pull through,
// so it never exits 0 but on a PASSED check (-h included).
func TestHelpAndUsageExitCodes(t *testing.T) {
	for _, c := range [][]string{{"serve"}, {"demo"}, {"verify"}, {"inspect"}, {"attest", "create"}, {"attest", "sign"},
		{"attest", "push"}, {"policy", "lint"}, {"policy", "test"}, {"audit"}, {"node", "check"}, {"vsa", "check"}, {"promote"}} {
		if code := run(append(append([]string{}, c...), "-h")); code != 0 {
			t.Errorf("pullgate %s -h: exit %d, want 0", strings.Join(c, " "), code)
		}
	}
	for _, args := range [][]string{{"-h"}, {"-help"}, {"-name", "r/x:1", "-digest", "sha256:" + strings.Repeat("a", 64), "-h"}, {"-no-such-flag"}} {
		if code := run(append([]string{"vsa", "containerd-verifier"}, args...)); code == 0 {
			t.Errorf("pullgate vsa containerd-verifier %s: exit 0 (allow)", strings.Join(args, " "))
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

// pullgate attest check-files: a bundle signed by the trusted key whose
// statement names the subject passes while the files are as recorded; an
// edited file, another subject, an untrusted key and a broken bundle each
// fail with their exit code.
func TestAttestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	for rel, body := range map[string]string{"prompt/system.txt": "You are helpful.\n", "prompt/safety.yaml": "deny: [weapons]\n"} {
		if err := attesttest.WriteFile(dir, rel, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	const subject = "sha256:" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"
	cfg := filepath.Join(dir, "prompt.yaml")
	if err := os.WriteFile(cfg, []byte("name: support-bot\nsystemPrompts: [prompt/system.txt]\nsafetyPolicies: [prompt/safety.yaml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stmt, err := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{Subjects: []string{subject}, Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) (priv, pub string) {
		k, pubPEM, err := attesttest.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		privPEM, _ := attesttest.PrivatePEM(k)
		priv, pub = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
		os.WriteFile(priv, privPEM, 0o600)
		os.WriteFile(pub, pubPEM, 0o644)
		return priv, pub
	}
	priv, pub := key("release")
	_, otherPub := key("other")
	b, err := attest.Sign(context.Background(), stmt, attest.SignOptions{KeyPath: priv})
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "prompt.bundle.json")
	if err := os.WriteFile(bundle, b, 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"`), 0o644)
	check := func(args ...string) int {
		return run(append([]string{"attest", "check-files", "--dir", dir}, args...))
	}
	if code := check("--bundle", bundle, "--subject", subject, "--key", pub); code != 0 {
		t.Fatalf("unchanged files: exit %d", code)
	}
	if code := check("--bundle", bundle, "--subject", "sha256:"+strings.Repeat("cd", 32), "--key", pub); code != 12 {
		t.Errorf("another subject: exit %d, want 12", code)
	}
	if code := check("--bundle", bundle, "--subject", subject, "--key", otherPub); code != 11 {
		t.Errorf("untrusted key: exit %d, want 11", code)
	}
	if code := check("--bundle", broken, "--subject", subject, "--key", pub); code != 14 {
		t.Errorf("broken bundle: exit %d, want 14", code)
	}
	if code := check("--bundle", bundle, "--subject", subject); code != 2 {
		t.Errorf("no trust given: exit %d, want 2", code)
	}
	if err := os.WriteFile(filepath.Join(dir, "prompt", "safety.yaml"), []byte("deny: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := check("--bundle", bundle, "--subject", subject, "--key", pub); code != 12 {
		t.Errorf("edited file: exit %d, want 12", code)
	}
}

// pullgate inspect --pickle scan on every file of the real model corpus
// (shared/model-corpus beside the checkout): exit 0 for each file its
// project labels benign, 1 for each attack or malformed file, except the
// deliberate refusals docs/model-gate.md lists.
func TestInspectRealCorpus(t *testing.T) {
	const corpus = "../../../shared/model-corpus"
	labels, err := os.ReadFile(filepath.Join(corpus, "labels.tsv"))
	if err != nil {
		t.Fatalf("the real model corpus is required (shared/model-corpus beside the checkout): %v", err)
	}
	deliberate := map[string]bool{ // refused by design (docs/model-gate.md)
		"picklescan/tests/data/benign_password_protected.zip": true, // encrypted
		"modelscan/tests/data/password_protected.zip":         true, // encrypted
		"picklescan/tests/data/not_a_pickle.bin":              true, // no known format
	}
	n := 0
	for _, l := range strings.Split(string(labels), "\n") {
		c := strings.Split(l, "\t")
		if len(c) < 3 || strings.HasPrefix(l, "#") {
			continue
		}
		want := 1
		if c[2] == "benign" && !deliberate[c[0]] {
			want = 0
		}
		args := []string{"inspect", filepath.Join(corpus, c[0]), "--pickle", "scan"}
		if got := run(args); got != want {
			t.Errorf("pullgate %s: exit %d, want %d (%s)", strings.Join(args, " "), got, want, c[2])
		}
		n++
	}
	if n < 100 {
		t.Fatalf("only %d corpus files", n)
	}
}

// captureStdout runs f with os.Stdout sent to a file and returns what f
// printed.
func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	old := os.Stdout
	os.Stdout = out
	defer func() { os.Stdout = old }()
	f()
	b, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pullgate audit with neither --file nor --config finds the server's
// configuration where "pullgate serve" (./pullgate.yaml), the container
// image and the Kubernetes manifests keep it, and reads the log its
// audit.path names (relative to the configuration file), from any directory.
// With no configuration and no ./audit.jsonl, it says what it looked for.
func TestAuditFindsTheServerConfig(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "etc")
	os.MkdirAll(filepath.Join(cfgDir, "logs"), 0o755)
	cfgFile := filepath.Join(cfgDir, "pullgate.yaml")
	if err := os.WriteFile(cfgFile, []byte("upstreams: [{name: docker.io, url: https://registry-1.docker.io}]\npolicy: policy.yaml\naudit: {path: logs/audit.jsonl}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(filepath.Join(cfgDir, "logs", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	l.Write(audit.Event{Time: time.Now(), Upstream: "docker.io", Repository: "docker.io/library/busybox", Reference: "1.37",
		Kind: "manifest", Rule: "quarantine", Decision: "deny", Reasons: []string{"rule quarantine: action deny"}})
	l.Close()

	old := defaultConfigPaths
	t.Cleanup(func() { defaultConfigPaths = old })

	// As the server's working directory: ./pullgate.yaml.
	defaultConfigPaths = []string{"pullgate.yaml", filepath.Join(dir, "none", "pullgate.yaml")}
	t.Chdir(cfgDir)
	var code int
	out := captureStdout(t, func() { code = run([]string{"audit", "summary", "--since", "24h", "-o", "json"}) })
	if code != 0 || !strings.Contains(out, "quarantine") {
		t.Fatalf("audit summary in the server's directory: exit %d, output %q", code, out)
	}

	work := filepath.Join(dir, "elsewhere")
	os.MkdirAll(work, 0o755)
	t.Chdir(work)
	// Elsewhere: the installed configuration (/etc/pullgate/... in production).
	defaultConfigPaths = []string{"pullgate.yaml", filepath.Join(dir, "none", "pullgate.yaml"), cfgFile}
	out = captureStdout(t, func() { code = run([]string{"audit", "--since", "24h", "-o", "json"}) })
	if code != 0 || !strings.Contains(out, `"rule":"quarantine"`) {
		t.Fatalf("audit from another directory: exit %d, output %q", code, out)
	}

	// Nothing to find: exit 2, not an empty answer.
	defaultConfigPaths = []string{"pullgate.yaml", filepath.Join(dir, "none", "pullgate.yaml")}
	if code = run([]string{"audit", "--since", "24h"}); code != 2 {
		t.Errorf("no configuration and no ./audit.jsonl: exit %d, want 2", code)
	}
}

// pullgate inspect lists a config's load-time references and applies a
// rule's content.references allowlist to them.
func TestInspectReferences(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "adapter_config.json")
	if err := os.WriteFile(cfg, modelcorpus.PEFTAdapterConfig("meta-llama/Meta-Llama-3-8B"), 0o644); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(`rules:
  - name: meta
    match: ["upstream.local/meta/**"]
    action: allow
    content:
      references: {require: allowlist, allow: ["meta-llama/*"]}
  - name: mistral
    match: ["upstream.local/mistral/**"]
    action: allow
    content:
      references: {require: allowlist, allow: ["mistralai/*"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"inspect", cfg}, 0},
		{[]string{"inspect", cfg, "--policy", pol, "--rule", "meta"}, 0},
		{[]string{"inspect", cfg, "--policy", pol, "--rule", "mistral"}, 1},
	} {
		if got := run(c.args); got != c.want {
			t.Errorf("pullgate %s: exit %d, want %d", strings.Join(c.args, " "), got, c.want)
		}
	}
}
