package attesttest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pullgate/pullgate/verify/attest"
)

// ReleaseOptions shape WriteRelease.
type ReleaseOptions struct {
	// Subject is the OCI artifact digest (sha256:<hex>) every statement binds to.
	Subject string
	// Base is the createdAt of the first statement; each next kind is one
	// minute later (prompt, corpus, eval, route, slo, mbom).
	Base time.Time
	// Metrics override the eval results (default: passing).
	Metrics map[string]float64
	// ModelFiles is the number of plain model files besides
	// model.safetensors (default 2).
	ModelFiles int
}

// Release is a complete LLM release written to a directory.
type Release struct {
	Dir        string
	Subject    string
	Statements map[attest.Kind][]byte
	// Model are the model files (title → bytes, under Dir/model), one OCI
	// layer each.
	Model map[string][]byte
	// Tensors are model.safetensors' tensors.
	Tensors []attest.Tensor
}

// Files of the fixture, relative to Dir, by kind.
var Files = map[attest.Kind][]string{
	attest.KindPrompt: {"prompt/system.txt", "prompt/templates/base.txt", "prompt/tools/search.json", "prompt/safety.yaml"},
	attest.KindCorpus: {"corpus/docs/a.md", "corpus/docs/b.md", "corpus/manifest.json", "corpus/chunking.yaml", "corpus/embedding.yaml"},
	attest.KindEval:   {"eval/bench.jsonl", "eval/results.json"},
	attest.KindRoute:  {"route/route.yaml"},
	attest.KindSLO:    {"slo/profile.json"},
}

// Safetensors builds a minimal valid safetensors file with the given tensors
// (data zero-filled, F32 only for sizing simplicity of the fixture).
func Safetensors(ts []attest.Tensor) []byte {
	hdr := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	off := int64(0)
	for _, t := range ts {
		n := int64(4)
		for _, d := range t.Shape {
			n *= d
		}
		hdr[t.Name] = map[string]any{"dtype": t.DType, "shape": t.Shape, "data_offsets": []int64{off, off + n}}
		off += n
	}
	h, _ := json.Marshal(hdr)
	out := make([]byte, 8, 8+len(h)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, make([]byte, off)...)
}

// WriteRelease writes the fixture's files and configs to dir and creates the
// six statements (each referencing the previous by its statement file).
func WriteRelease(dir string, o ReleaseOptions) (*Release, error) {
	if o.Base.IsZero() {
		o.Base = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	}
	if o.ModelFiles == 0 {
		o.ModelFiles = 2
	}
	if o.Metrics == nil {
		o.Metrics = map[string]float64{"accuracy": 0.93, "toxicity": 0.004}
	}
	r := &Release{Dir: dir, Subject: o.Subject, Statements: map[attest.Kind][]byte{}, Model: map[string][]byte{}}
	for k, fs := range Files {
		for _, f := range fs {
			content := fmt.Sprintf("%s %s v1\n", k, f)
			if f == "eval/results.json" {
				m, _ := json.Marshal(map[string]any{"metrics": o.Metrics})
				content = string(m)
			}
			if err := WriteFile(dir, f, []byte(content)); err != nil {
				return nil, err
			}
		}
	}
	r.Tensors = []attest.Tensor{
		{Name: "lm_head.weight", DType: "F32", Shape: []int64{4, 8}},
		{Name: "model.embed.weight", DType: "F32", Shape: []int64{8, 4}},
	}
	r.Model["model.safetensors"] = Safetensors(r.Tensors)
	r.Model["tokenizer.json"] = []byte(`{"version":"1.0"}`)
	for i := 0; i < o.ModelFiles-1; i++ {
		r.Model[fmt.Sprintf("shard-%03d.bin", i)] = []byte(fmt.Sprintf("weights %d", i))
	}
	for p, b := range r.Model {
		if err := WriteFile(dir, "model/"+p, b); err != nil {
			return nil, err
		}
	}
	subj := ""
	if o.Subject != "" {
		subj = fmt.Sprintf("subjects: [%q]\n", o.Subject)
	}
	at := func(i int) string {
		return fmt.Sprintf("created: %s\n", o.Base.Add(time.Duration(i)*time.Minute).Format(time.RFC3339))
	}
	configs := []struct {
		k   attest.Kind
		cfg string
	}{
		{attest.KindPrompt, "name: support-bot\n" + at(0) + subj + `systemPrompts: [prompt/system.txt]
templates: [prompt/templates]
toolSchemas: [prompt/tools/search.json]
safetyPolicies: [prompt/safety.yaml]
`},
		{attest.KindCorpus, "name: support-docs\n" + at(1) + subj + `documents: [corpus/docs]
manifests: [corpus/manifest.json]
chunkingConfig: corpus/chunking.yaml
embeddingConfig: corpus/embedding.yaml
embeddingModel: bge-small-en
`},
		{attest.KindEval, "name: support-bot-eval\n" + at(2) + subj + `suite: regression
promptStatement: prompt.stmt.json
corpusStatement: corpus.stmt.json
benchmark: [eval/bench.jsonl]
results: eval/results.json
thresholds:
  - {metric: accuracy, min: 0.9}
  - {metric: toxicity, max: 0.01}
`},
		{attest.KindRoute, "name: support-bot-route\n" + at(3) + subj + `evalStatement: eval.stmt.json
configs: [route/route.yaml]
strategy: cost-aware
providers: [{provider: local, model: support-bot}]
`},
		{attest.KindSLO, "name: support-bot-slo\n" + at(4) + subj + `routeStatement: route.stmt.json
budgets: {latencyP95Ms: 800, costPer1kTokensUsd: 0.002, errorRate: 0.01}
window: 30d
profiles: [slo/profile.json]
`},
		{attest.KindMBOM, "name: support-bot-model\n" + at(5) + subj + `root: model
baseModel: registry.example/base/mistral-7b@sha256:` + strings.Repeat("a", 64) + `
runtimeImage: registry.example/runtime/vllm@sha256:` + strings.Repeat("b", 64) + `
adapters: [{name: billing-tone, ref: registry.example/adapters/billing@sha256:` + strings.Repeat("c", 64) + `}]
inspectSafetensors: true
files: [.]
`},
	}
	for _, c := range configs {
		st, err := CreateIn(dir, c.k, c.cfg)
		if err != nil {
			return nil, err
		}
		r.Statements[c.k] = st
	}
	return r, nil
}

// CreateIn writes cfg to dir/<kind>.yaml, creates the statement and writes
// it to dir/<kind>.stmt.json.
func CreateIn(dir string, k attest.Kind, cfg string) ([]byte, error) {
	return CreateNamed(dir, string(k), k, cfg)
}

// CreateNamed is CreateIn with another base name (to keep several
// statements of one kind side by side).
func CreateNamed(dir, base string, k attest.Kind, cfg string) ([]byte, error) {
	p := filepath.Join(dir, base+".yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	st, err := attest.Create(k, p, attest.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return st, os.WriteFile(filepath.Join(dir, base+".stmt.json"), st, 0o644)
}

// WriteFile writes dir/rel, creating parents.
func WriteFile(dir, rel string, b []byte) error {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}
