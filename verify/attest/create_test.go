package attest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

const artifact = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func writeRelease(t *testing.T) *attesttest.Release {
	t.Helper()
	r, err := attesttest.WriteRelease(t.TempDir(), attesttest.ReleaseOptions{Subject: artifact})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCreateDeterministic(t *testing.T) {
	r := writeRelease(t)
	for _, k := range attest.Kinds {
		again, err := attest.Create(k, filepath.Join(r.Dir, string(k)+".yaml"), attest.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !bytes.Equal(again, r.Statements[k]) {
			t.Fatalf("%s: second Create differs:\n%s\n%s", k, r.Statements[k], again)
		}
		ps, err := attest.ParseStatement(again)
		if err != nil {
			t.Fatalf("%s: output does not parse: %v", k, err)
		}
		if ps.PredicateType != k.PredicateType() || !ps.HasSubject(artifact) {
			t.Fatalf("%s: predicateType %s, subjects %v", k, ps.PredicateType, ps.Subject)
		}
		if _, err := attest.DecodePredicate(ps.PredicateType, ps.Predicate); err != nil {
			t.Fatalf("%s: predicate does not validate: %v", k, err)
		}
	}
}

func TestCreateSameContentOtherDirSameBytes(t *testing.T) {
	a := writeRelease(t)
	b := writeRelease(t)
	for _, k := range attest.Kinds {
		if !bytes.Equal(a.Statements[k], b.Statements[k]) {
			t.Fatalf("%s differs between two directories with the same content", k)
		}
	}
}

func TestCreateTimeSources(t *testing.T) {
	dir := t.TempDir()
	if err := attesttest.WriteFile(dir, "system.txt", []byte("be nice")); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "p.yaml")
	os.WriteFile(cfg, []byte("name: x\nsystemPrompts: [system.txt]\n"), 0o644)
	createdAt := func(b []byte) string {
		var s struct {
			Predicate struct {
				CreatedAt string `json:"createdAt"`
			} `json:"predicate"`
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		return s.Predicate.CreatedAt
	}

	t.Setenv("SOURCE_DATE_EPOCH", "")
	os.Unsetenv("SOURCE_DATE_EPOCH")
	if _, err := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "no creation time") {
		t.Fatalf("no time source: err = %v", err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	a, err := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := createdAt(a); got != "2023-11-14T22:13:20Z" {
		t.Fatalf("SOURCE_DATE_EPOCH: createdAt %s", got)
	}
	b, _ := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{})
	if !bytes.Equal(a, b) {
		t.Fatal("SOURCE_DATE_EPOCH output not reproducible")
	}
	opt := time.Date(2026, 1, 2, 3, 4, 5, 999, time.FixedZone("x", 3600))
	c, _ := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{Time: opt})
	if got := createdAt(c); got != "2026-01-02T02:04:05Z" {
		t.Fatalf("option time: createdAt %s", got)
	}
	os.WriteFile(cfg, []byte("name: x\ncreated: 2025-05-05T05:05:05Z\nsystemPrompts: [system.txt]\n"), 0o644)
	d, _ := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{})
	if got := createdAt(d); got != "2025-05-05T05:05:05Z" {
		t.Fatalf("config time must win over SOURCE_DATE_EPOCH: %s", got)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	os.WriteFile(cfg, []byte("name: x\nsystemPrompts: [system.txt]\n"), 0o644)
	if _, err := attest.Create(attest.KindPrompt, cfg, attest.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("bad SOURCE_DATE_EPOCH: %v", err)
	}
}

func TestCreateEvalComputesPassed(t *testing.T) {
	r, err := attesttest.WriteRelease(t.TempDir(), attesttest.ReleaseOptions{
		Subject: artifact, Metrics: map[string]float64{"accuracy": 0.95, "toxicity": 0.2},
	})
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := attest.ParseStatement(r.Statements[attest.KindEval])
	p, err := attest.DecodePredicate(ps.PredicateType, ps.Predicate)
	if err != nil {
		t.Fatal(err)
	}
	ev := p.(*attest.EvalPredicate)
	if ev.Passed {
		t.Fatal("eval with toxicity 0.2 > max 0.01 must not pass")
	}
	if ev.Metrics["toxicity"] != 0.2 || len(ev.Thresholds) != 2 || ev.Thresholds[1].Passed || !ev.Thresholds[0].Passed {
		t.Fatalf("thresholds %+v metrics %v", ev.Thresholds, ev.Metrics)
	}
	prompt, _ := attest.ParseStatement(r.Statements[attest.KindPrompt])
	if ev.PromptStatement != prompt.Digest {
		t.Fatalf("promptStatement %s, want %s", ev.PromptStatement, prompt.Digest)
	}
}

func TestCreateMBOMTensorsAndFiles(t *testing.T) {
	r := writeRelease(t)
	ps, _ := attest.ParseStatement(r.Statements[attest.KindMBOM])
	p, _ := attest.DecodePredicate(ps.PredicateType, ps.Predicate)
	m := p.(*attest.MBOMPredicate)
	if len(m.Files) != len(r.Model) {
		t.Fatalf("files %d, model %d", len(m.Files), len(r.Model))
	}
	for _, f := range m.Files {
		if _, ok := r.Model[f.Path]; !ok {
			t.Fatalf("unexpected MBOM path %s", f.Path)
		}
		if f.Path == "model.safetensors" && len(f.Tensors) != 2 {
			t.Fatalf("tensors %+v", f.Tensors)
		}
	}
}

func TestCreateRejects(t *testing.T) {
	dir := t.TempDir()
	attesttest.WriteFile(dir, "a.txt", []byte("a"))
	attesttest.WriteFile(dir, "results.json", []byte(`{"metrics":{"acc":"high"}}`))
	attesttest.WriteFile(dir, "ok.json", []byte(`{"metrics":{"acc":0.5}}`))
	attesttest.WriteFile(dir, "corpus.stmt.json", nil)
	r := writeRelease(t)
	corpusStmt := filepath.Join(r.Dir, "corpus.stmt.json")
	const tm = "created: 2026-01-01T00:00:00Z\n"
	cases := []struct {
		name string
		kind attest.Kind
		cfg  string
		want string
	}{
		{"unknown field", attest.KindPrompt, "name: x\n" + tm + "systemPrompts: [a.txt]\nsystemPrompt: [a.txt]\n", "field systemPrompt not found"},
		{"no name", attest.KindPrompt, tm + "systemPrompts: [a.txt]\n", "name is required"},
		{"no system prompt", attest.KindPrompt, "name: x\n" + tm + "templates: [a.txt]\n", "systemPrompts: at least one file"},
		{"absolute path", attest.KindPrompt, "name: x\n" + tm + "systemPrompts: [/etc/passwd]\n", "must be relative"},
		{"parent escape", attest.KindPrompt, "name: x\n" + tm + "systemPrompts: [../x]\n", "escapes its root"},
		{"missing file", attest.KindPrompt, "name: x\n" + tm + "systemPrompts: [nope.txt]\n", "no such file"},
		{"duplicate", attest.KindPrompt, "name: x\n" + tm + "systemPrompts: [a.txt, ./a.txt]\n", "listed more than once"},
		{"bad created", attest.KindPrompt, "name: x\ncreated: yesterday\nsystemPrompts: [a.txt]\n", "not RFC 3339"},
		{"bad subject", attest.KindPrompt, "name: x\n" + tm + "subjects: [sha256:abc]\nsystemPrompts: [a.txt]\n", "must be sha256:"},
		{"corpus empty", attest.KindCorpus, "name: x\n" + tm, "at least one document or manifest"},
		{"eval non-numeric metric", attest.KindEval, "name: x\n" + tm + "promptStatement: sha256:" + strings.Repeat("0", 64) + "\nbenchmark: [a.txt]\nresults: results.json\nthresholds: [{metric: acc, min: 1}]\n", `metric "acc" is not a number`},
		{"eval threshold on absent metric", attest.KindEval, "name: x\n" + tm + "promptStatement: sha256:" + strings.Repeat("0", 64) + "\nbenchmark: [a.txt]\nresults: ok.json\nthresholds: [{metric: f1, min: 1}]\n", `metric "f1" is not in the results file`},
		{"eval no thresholds", attest.KindEval, "name: x\n" + tm + "promptStatement: sha256:" + strings.Repeat("0", 64) + "\nbenchmark: [a.txt]\nresults: ok.json\n", "at least one threshold"},
		{"eval prompt ref is corpus", attest.KindEval, "name: x\n" + tm + "promptStatement: " + corpusStmt + "\nbenchmark: [a.txt]\nresults: ok.json\nthresholds: [{metric: acc, min: 0.1}]\n", "is a https://pullgate.dev/attestation/corpus/v1 statement, want https://pullgate.dev/attestation/prompt/v1"},
		{"eval min>max", attest.KindEval, "name: x\n" + tm + "promptStatement: sha256:" + strings.Repeat("0", 64) + "\nbenchmark: [a.txt]\nresults: ok.json\nthresholds: [{metric: acc, min: 0.9, max: 0.1}]\n", "min 0.9 > max 0.1"},
		{"route no eval", attest.KindRoute, "name: x\n" + tm + "configs: [a.txt]\n", "evalStatement is required"},
		{"route bad digest", attest.KindRoute, "name: x\n" + tm + "evalStatement: sha256:XYZ\nconfigs: [a.txt]\n", "must be sha256:"},
		{"slo no budgets", attest.KindSLO, "name: x\n" + tm + "routeStatement: sha256:" + strings.Repeat("0", 64) + "\n", "at least one budget"},
		{"slo error rate > 1", attest.KindSLO, "name: x\n" + tm + "routeStatement: sha256:" + strings.Repeat("0", 64) + "\nbudgets: {errorRate: 5}\n", "fraction"},
		{"mbom base model name not a Hub id", attest.KindMBOM, "name: x\n" + tm + "baseModel: m@sha256:" + strings.Repeat("0", 64) + "\nbaseModelNames: [/srv/base]\nfiles: [a.txt]\n", "not a Hugging Face Hub repository id"},
		{"mbom unpinned base", attest.KindMBOM, "name: x\n" + tm + "baseModel: mistral:latest\nfiles: [a.txt]\n", "must be pinned"},
		{"mbom tensors on dir", attest.KindMBOM, "name: x\n" + tm + "baseModel: m@sha256:" + strings.Repeat("0", 64) + "\nfiles: [{path: ., tensors: [{name: a, dtype: F32, shape: [1]}]}]\n", "names the root, not a file"},
		{"mbom bad safetensors", attest.KindMBOM, "name: x\n" + tm + "baseModel: m@sha256:" + strings.Repeat("0", 64) + "\ninspectSafetensors: true\nfiles: [x.safetensors]\n", "safetensors"},
	}
	attesttest.WriteFile(dir, "x.safetensors", []byte("not a safetensors file"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := attest.CreateFromConfig(c.kind, []byte(c.cfg), dir, attest.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestDecodePredicateStrict(t *testing.T) {
	r := writeRelease(t)
	ps, _ := attest.ParseStatement(r.Statements[attest.KindEval])
	var m map[string]any
	json.Unmarshal(ps.Predicate, &m)
	mutate := func(f func(map[string]any)) []byte {
		c := map[string]any{}
		b, _ := json.Marshal(m)
		json.Unmarshal(b, &c)
		f(c)
		out, _ := json.Marshal(c)
		return out
	}
	cases := map[string]struct {
		raw  []byte
		want string
	}{
		"unknown field":       {mutate(func(c map[string]any) { c["extra"] = 1 }), "unknown field"},
		"passed forged":       {mutate(func(c map[string]any) { c["metrics"].(map[string]any)["toxicity"] = 0.5 }), "differs from metrics value"},
		"passed contradicted": {mutate(func(c map[string]any) { c["passed"] = false }), "passed=false contradicts"},
		"missing prompt":      {mutate(func(c map[string]any) { delete(c, "promptStatement") }), "promptStatement is required"},
		"bad createdAt":       {mutate(func(c map[string]any) { c["createdAt"] = "2026" }), "not RFC 3339"},
		"duplicate key":       {[]byte(`{"name":"a","name":"b"}`), `duplicate key "name" at $`},
		"escaped duplicate":   {[]byte(`{"name":"a","n\u0061me":"b"}`), `duplicate key "name"`},
		"nested duplicate":    {[]byte(`{"results":{"path":"a","sha256":"b","path":"c"}}`), `duplicate key "path" at $.results`},
		"case variant":        {mutate(func(c map[string]any) { c["Passed"] = c["passed"]; delete(c, "passed") }), `key "Passed" differs from the field "passed" only in case`},
		"invalid JSON":        {[]byte(`{"name":"a",}`), "invalid JSON"},
		"trailing":            {append(append([]byte{}, ps.Predicate...), []byte(" {}")...), "data after the JSON value"},
		"not object":          {[]byte(`[1]`), "not a JSON object"},
	}
	for name, c := range cases {
		if _, err := attest.DecodePredicate(attest.KindEval.PredicateType(), c.raw); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	if _, err := attest.DecodePredicate("https://example.com/other", ps.Predicate); err == nil {
		t.Error("foreign predicate type accepted")
	}
}

func TestParseStatementRejects(t *testing.T) {
	cases := map[string]string{
		`{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"x","predicate":{}}`: "_type",
		`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x","predicate":{}}`:                                                                     "at least one subject",
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"abc"}}],"predicateType":"x","predicate":{}}`:                               "64 lowercase hex",
		`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"` + strings.Repeat("a", 64) + `"}}],"predicateType":"x"}`:                  "predicate is required",
		`{"_type":"https://in-toto.io/Statement/v1","_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"x","predicate":{}}`:                           `duplicate key "_type"`,
	}
	for in, want := range cases {
		if _, err := attest.ParseStatement([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseStatement(%s) = %v, want %q", in, err, want)
		}
	}
}

func TestStatementRefFromBundleAndEnvelope(t *testing.T) {
	r := writeRelease(t)
	key, _, _ := attesttest.NewKey()
	b, err := attest.Sign(context.Background(), r.Statements[attest.KindPrompt], attest.SignOptions{Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(r.Dir, "prompt.bundle.json"), b, 0o644)
	var bun struct {
		DSSEEnvelope json.RawMessage `json:"dsseEnvelope"`
	}
	json.Unmarshal(b, &bun)
	os.WriteFile(filepath.Join(r.Dir, "prompt.dsse.json"), bun.DSSEEnvelope, 0o644)
	want := attest.StatementDigest(r.Statements[attest.KindPrompt])
	for _, ref := range []string{"prompt.bundle.json", "prompt.dsse.json", "prompt.stmt.json", want} {
		cfg := "name: e\ncreated: 2026-11-20T11:00:00Z\npromptStatement: " + ref + "\nbenchmark: [eval/bench.jsonl]\nresults: eval/results.json\nthresholds: [{metric: accuracy, min: 0.5}]\n"
		st, err := attest.CreateFromConfig(attest.KindEval, []byte(cfg), r.Dir, attest.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if !bytes.Contains(st, []byte(`"promptStatement":"`+want+`"`)) {
			t.Fatalf("%s: promptStatement is not %s", ref, want)
		}
	}
}

// baseModelNames go into the predicate sorted and unique, and a statement
// without them is what earlier versions wrote (no key).
func TestCreateMBOMBaseModelNames(t *testing.T) {
	dir := t.TempDir()
	attesttest.WriteFile(dir, "adapter_config.json", []byte(`{"base_model_name_or_path": "meta-llama/Meta-Llama-3-8B"}`))
	base := "name: x\ncreated: 2026-01-01T00:00:00Z\nbaseModel: m@sha256:" + strings.Repeat("0", 64) + "\nfiles: [adapter_config.json]\n"
	for cfg, want := range map[string][]string{
		base + "baseModelNames: [meta-llama/Meta-Llama-3-8B, meta-llama/Llama-3-8B, meta-llama/Meta-Llama-3-8B]\n": {"meta-llama/Llama-3-8B", "meta-llama/Meta-Llama-3-8B"},
		base: nil,
	} {
		stmt, err := attest.CreateFromConfig(attest.KindMBOM, []byte(cfg), dir, attest.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ps, err := attest.ParseStatement(stmt)
		if err != nil {
			t.Fatal(err)
		}
		p, err := attest.DecodePredicate(ps.PredicateType, ps.Predicate)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.(*attest.MBOMPredicate).BaseModelNames; !slices.Equal(got, want) {
			t.Errorf("baseModelNames %q, want %q", got, want)
		}
		if want == nil && strings.Contains(string(stmt), "baseModelNames") {
			t.Errorf("statement without names has the key: %s", stmt)
		}
	}
}
