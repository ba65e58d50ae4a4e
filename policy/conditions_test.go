package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

var condNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// imageConfig is an OCI image config JSON with the given fields.
func imageConfig(t testing.TB, user string, env []string, created time.Time) []byte {
	t.Helper()
	c := map[string]any{"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
		"config": map[string]any{"User": user, "Env": env, "Labels": map[string]string{"org.example": "x"}}}
	if !created.IsZero() {
		c["created"] = created.Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func imageManifest(t testing.TB, cfg []byte, cfgType string, annotations map[string]string) []byte {
	t.Helper()
	m := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": cfgType, "digest": digest.FromBytes(cfg), "size": len(cfg)},
		"layers": []any{}}
	if annotations != nil {
		m["annotations"] = annotations
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func artifactOf(t testing.TB, cfgType string, cfg []byte, annotations map[string]string) *Artifact {
	t.Helper()
	mf := imageManifest(t, cfg, cfgType, annotations)
	a, err := ReadArtifact(ArtifactSubject{Upstream: "up", Repository: "up/app", Digest: digest.FromBytes(mf)}, mf, false, cfgType, digest.FromBytes(cfg), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func modelPackConfig(licenses ...string) []byte {
	b, _ := json.Marshal(map[string]any{
		"descriptor": map[string]any{"name": "tiny", "family": "llama", "licenses": licenses, "createdAt": "2026-05-01T00:00:00Z"},
		"config":     map[string]any{"format": "safetensors", "paramSize": "8b", "architecture": "transformer"},
		"modelfs":    map[string]any{"type": "layers", "diffIds": []string{}},
	})
	return b
}

func loadExample(t *testing.T, name string) *Policy {
	t.Helper()
	path := filepath.Join("..", "docs", "examples", name)
	if diags := Lint(path); len(diags) > 0 {
		t.Fatalf("%s: %v", name, diags)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func decideArtifact(p *Policy, a *Artifact) Decision {
	return p.Evaluate(Input{Repository: a.Subject.Repository, Digest: a.Subject.Digest, Artifact: a, Now: condNow})
}

// Every example in docs/examples lints and decides as its comment says,
// with the clock injected.
func TestConditionExamples(t *testing.T) {
	oci := MediaTypeOCIConfig
	fresh := condNow.Add(-24 * time.Hour)
	img := func(user string, env ...string) *Artifact {
		return artifactOf(t, oci, imageConfig(t, user, env, fresh), nil)
	}
	base := map[string]string{"org.opencontainers.image.base.digest": digest.FromString("base").String()}
	cases := []struct {
		file, name string
		a          *Artifact
		allow      bool
		reason     string
	}{
		{"non-root.yaml", "user 1000", img("1000"), true, ""},
		{"non-root.yaml", "user 1000:0 (group 0 alone)", img("1000:0"), true, ""},
		{"non-root.yaml", "user app:0 (a name)", img("app:0"), false, "is false"},
		{"non-root.yaml", "toor (a name, maybe uid 0)", img("toor"), false, "is false"},
		{"non-root.yaml", "00", img("00"), false, "is false"},
		{"non-root.yaml", "+0", img("+0"), false, "is false"},
		{"non-root.yaml", "-0", img("-0"), false, "is false"},
		{"non-root.yaml", "00:00", img("00:00"), false, "is false"},
		{"non-root.yaml", "a uid over int64", img("99999999999999999999"), false, "error"},
		{"non-root.yaml", "no user", img(""), false, "rule non-root: condition runs-as-non-root: "},
		{"non-root.yaml", "root", img("root"), false, "is false"},
		{"non-root.yaml", "0:0", img("0:0"), false, "is false"},
		{"non-root.yaml", "a model", artifactOf(t, MediaTypeModelPackConfig, modelPackConfig("MIT"), nil), false, "is false"},
		// Config types Docker Engine runs as image configs are read as such.
		{"non-root.yaml", "user 1000, config type \"\"", artifactOf(t, "", imageConfig(t, "1000", nil, fresh), nil), true, ""},
		{"non-root.yaml", "user 1000, config type application/json", artifactOf(t, "application/json", imageConfig(t, "1000", nil, fresh), nil), true, ""},
		{"non-root.yaml", "user 0, config type application/octet-stream", artifactOf(t, "application/octet-stream", imageConfig(t, "0", nil, fresh), nil), false, "is false"},
		{"non-root.yaml", "no user, config type text/html", artifactOf(t, "text/html", imageConfig(t, "", nil, fresh), nil), false, "is false"},
		{"non-root.yaml", "an image config typed as a ModelPack model", artifactOf(t, MediaTypeModelPackConfig, imageConfig(t, "1000", nil, fresh), nil), false, "is false"},
		{"non-root.yaml", "an image config of an unknown type", artifactOf(t, "application/vnd.example.config.v1+json", imageConfig(t, "1000", nil, fresh), nil), false, "is false"},
		{"base-pinned.yaml", "annotated", artifactOf(t, oci, imageConfig(t, "1", nil, fresh), base), true, ""},
		{"base-pinned.yaml", "not annotated", img("1"), false, "rule base-pinned: condition base-digest-annotated"},
		{"base-pinned.yaml", "a tag, not a digest", artifactOf(t, oci, imageConfig(t, "1", nil, fresh),
			map[string]string{"org.opencontainers.image.base.digest": "latest"}), false, "is false"},
		{"fresh.yaml", "a day old", img("1"), true, ""},
		{"fresh.yaml", "a year old", artifactOf(t, oci, imageConfig(t, "1", nil, condNow.AddDate(-1, 0, 0)), nil), false, "rule fresh: condition built-within-30-days"},
		{"fresh.yaml", "from the future", artifactOf(t, oci, imageConfig(t, "1", nil, condNow.Add(48*time.Hour)), nil), false, "is false"},
		{"fresh.yaml", "no created", artifactOf(t, oci, imageConfig(t, "1", nil, time.Time{}), nil), false, "is false"},
		{"no-secret-env.yaml", "plain env", img("1", "PATH=/usr/bin", "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D", "TOKENIZERS_PARALLELISM=false", "POSTGRES_PASSWORD_FILE=/run/secrets/pw"), true, ""},
		{"no-secret-env.yaml", "AWS secret name", img("1", "AWS_SECRET_ACCESS_KEY=abc"), false, "rule no-secret-env: condition no-secret-env-name"},
		{"no-secret-env.yaml", "password name", img("1", "db_password=x"), false, "no-secret-env-name"},
		{"no-secret-env.yaml", "token value", img("1", "HELPER=ghp_"+strings.Repeat("a1B2", 9)), false, "no-secret-env-value"},
		{"no-secret-env.yaml", "AWS key id value", img("1", "X=AKIAIOSFODNN7EXAMPLE"), false, "no-secret-env-value"},
		{"model-license.yaml", "MIT", artifactOf(t, MediaTypeModelPackConfig, modelPackConfig("MIT"), nil), true, ""},
		{"model-license.yaml", "two allowed", artifactOf(t, MediaTypeCNAIModelConfig, modelPackConfig("MIT", "Apache-2.0"), nil), true, ""},
		{"model-license.yaml", "one not allowed", artifactOf(t, MediaTypeModelPackConfig, modelPackConfig("MIT", "LicenseRef-llama3"), nil), false, "rule model-license: condition license-allowed"},
		{"model-license.yaml", "none declared", artifactOf(t, MediaTypeModelPackConfig, modelPackConfig(), nil), false, "is false"},
		{"model-license.yaml", "an image", img("1"), false, "is false"},
		{"model-license.yaml", "an image config typed as a ModelPack model", artifactOf(t, MediaTypeModelPackConfig, imageConfig(t, "1000", nil, fresh), nil), false, "is false"},
		{"no-secret-env.yaml", "a secret in a config typed application/octet-stream", artifactOf(t, "application/octet-stream", imageConfig(t, "1", []string{"DB_PASS=x"}, fresh), nil), false, "no-secret-env-name"},
		{"no-secret-env.yaml", "a config of an unknown type", artifactOf(t, "application/vnd.example.config.v1+json", imageConfig(t, "1", nil, fresh), nil), false, "is false"},
		{"fresh.yaml", "a config of an unknown type", artifactOf(t, "application/vnd.example.config.v1+json", imageConfig(t, "1", nil, fresh), nil), false, "is false"},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.name, func(t *testing.T) {
			d := decideArtifact(loadExample(t, c.file), c.a)
			if d.Allowed != c.allow {
				t.Fatalf("allowed = %v, want %v: %v", d.Allowed, c.allow, d.Reasons)
			}
			if !c.allow && (d.ExitCode != ExitUnmet || !strings.Contains(strings.Join(d.Reasons, "\n"), c.reason)) {
				t.Fatalf("exit %d reasons %q, want 13 and %q", d.ExitCode, d.Reasons, c.reason)
			}
		})
	}
}

const condPolicy = `rules:
  - name: apps
    match: ["up/**"]
    require:
      conditions:
        - config.user != ""
        - {name: env-size, expr: 'config.env.size() < 3'}
        - name: model-free
          expr: model == null
`

func writePolicy(t *testing.T, src string) string {
	t.Helper()
	dir := writeDir(t, map[string]string{"policy.yaml": src})
	return filepath.Join(dir, "policy.yaml")
}

func TestConditionsLoadAndEvaluate(t *testing.T) {
	p, err := Load(writePolicy(t, condPolicy))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules[0]
	if !r.HasConditions() || r.TimeDependent() || r.Require.NeedsEvidence() || len(r.Require.Conditions) != 3 ||
		r.Require.Conditions[0].Name != "" || r.Require.Conditions[1].Name != "env-size" {
		t.Fatalf("conditions = %+v", r.Require)
	}
	a := artifactOf(t, MediaTypeDockerConfig, imageConfig(t, "app", []string{"A=1"}, condNow), nil)
	if d := decideArtifact(p, a); !d.Allowed {
		t.Fatalf("denied: %v", d.Reasons)
	}
	// An unnamed condition is quoted in the reason.
	a = artifactOf(t, MediaTypeDockerConfig, imageConfig(t, "", []string{"A=1", "B=2", "C=3"}, condNow), nil)
	d := decideArtifact(p, a)
	want := []string{`rule apps: condition config.user != "" is false`, `rule apps: condition env-size: config.env.size() < 3 is false`}
	if d.Allowed || strings.Join(d.Reasons, "\n") != strings.Join(want, "\n") || d.ExitCode != ExitUnmet {
		t.Fatalf("reasons %q exit %d, want %q", d.Reasons, d.ExitCode, want)
	}
	// A runtime error (config is null for a model) denies with the error.
	a = artifactOf(t, MediaTypeModelPackConfig, modelPackConfig("MIT"), nil)
	d = decideArtifact(p, a)
	if d.Allowed || !strings.Contains(d.Reasons[0], `rule apps: condition config.user != "": error: `) {
		t.Fatalf("reasons %q", d.Reasons)
	}
	// A dyn result that is not a bool denies.
	pd, err := Load(writePolicy(t, "rules:\n  - name: apps\n    match: [\"**\"]\n    require:\n      conditions: ['config.user']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d := decideArtifact(pd, artifactOf(t, MediaTypeOCIConfig, imageConfig(t, "1", nil, condNow), nil)); d.Allowed || !strings.Contains(d.Reasons[0], "did not evaluate to a bool") {
		t.Fatalf("non-bool: %q", d.Reasons)
	}
	// No artifact facts: denied, not evaluated.
	d = p.Evaluate(Input{Repository: "up/app", Digest: digest.FromString("x")})
	if d.Allowed || d.ExitCode != ExitOther || d.Reasons[0] != "rule apps: conditions: not evaluated" {
		t.Fatalf("no artifact: %+v", d)
	}
	// The caller could not read the config: its check is the one reason.
	d = p.Evaluate(Input{Repository: "up/app", Digest: digest.FromString("x"),
		Checks: []Check{{Name: CheckArtifact, Detail: "config sha256:ab is not valid JSON"}}})
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0] != "rule apps: artifact: config sha256:ab is not valid JSON" {
		t.Fatalf("artifact check: %q", d.Reasons)
	}
	// An index: conditions apply to its platform manifests, not to it.
	d = p.Evaluate(Input{Repository: "up/app", Digest: digest.FromString("x"), Artifact: &Artifact{Index: true}})
	if !d.Allowed {
		t.Fatalf("index denied: %v", d.Reasons)
	}
}

func TestConditionsCoveredByIndex(t *testing.T) {
	dir := writeDir(t, map[string]string{"policy.yaml": `trust:
  keys: [{name: release, path: ./cosign.pub}]
rules:
  - name: apps
    match: ["up/**"]
    require:
      signatures: [release]
      conditions: ['config.user != ""']
`, "cosign.pub": string(genKeyPEM(t))})
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Rules[0]
	if !r.Require.NeedsEvidence() {
		t.Fatal("signatures need evidence")
	}
	ok := artifactOf(t, MediaTypeOCIConfig, imageConfig(t, "1", nil, condNow), nil)
	root := artifactOf(t, MediaTypeOCIConfig, imageConfig(t, "", nil, condNow), nil)
	// Without evidence: denied for the signature.
	if d := decideArtifact(p, ok); d.Allowed || d.ExitCode != ExitNoEvidence {
		t.Fatalf("unsigned: %+v", d)
	}
	idx := digest.FromString("index")
	in := Input{Repository: "up/app", Digest: ok.Subject.Digest, Artifact: ok, CoveredBy: idx}
	if d := p.Evaluate(in); !d.Allowed {
		t.Fatalf("covered child denied: %v", d.Reasons)
	}
	in.Artifact, in.Digest = root, root.Subject.Digest
	if d := p.Evaluate(in); d.Allowed || !strings.Contains(d.Reasons[0], "condition config.user") {
		t.Fatalf("covered child running as root: %+v", d)
	}
}

func TestConditionsTimeDependent(t *testing.T) {
	p, err := Load(writePolicy(t, `rules:
  - name: fresh
    match: ["**"]
    require:
      conditions: ['now - config.created < duration("24h")']
`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Rules[0].TimeDependent() {
		t.Fatal("a condition reading now is not reported time-dependent")
	}
	a := artifactOf(t, MediaTypeOCIConfig, imageConfig(t, "1", nil, condNow.Add(-time.Hour)), nil)
	if d := decideArtifact(p, a); !d.Allowed {
		t.Fatal(d.Reasons)
	}
	if d := p.Evaluate(Input{Repository: "x", Digest: a.Subject.Digest, Artifact: a, Now: condNow.Add(48 * time.Hour)}); d.Allowed {
		t.Fatal("a stale image is allowed two days later")
	}
}

func TestConditionsCostLimit(t *testing.T) {
	p, err := Load(writePolicy(t, `rules:
  - name: costly
    match: ["**"]
    require:
      conditions: ['config.env.all(a, config.env.all(b, config.env.all(c, a + b + c != "x")))']
`))
	if err != nil {
		t.Fatal(err)
	}
	env := make([]string, 400)
	for i := range env {
		env[i] = "V=1"
	}
	a := artifactOf(t, MediaTypeOCIConfig, imageConfig(t, "1", env, condNow), nil)
	d := decideArtifact(p, a)
	if d.Allowed || !strings.Contains(d.Reasons[0], "error: ") || !strings.Contains(d.Reasons[0], "cost") {
		t.Fatalf("over the cost limit: %q", d.Reasons)
	}
}

func TestConditionsLoadDiagnostics(t *testing.T) {
	cases := []struct{ src, want string }{
		{`      conditions: ['config.user ==']`, `6:35: rule r.require.conditions[0]: Syntax error`},
		{`      conditions: ['predicate.x == 1']`, `6:21: rule r.require.conditions[0]: undeclared reference to 'predicate'`},
		{`      conditions: ['annotations + 1']`, `no matching overload`},
		{`      conditions: ['subject.repository']`, `must be bool`},
		{`      conditions: []`, `6:19: rule r.require.conditions is empty`},
		{`      conditions: 'config.user != ""'`, `rule r.require.conditions must be a list`},
		{`      conditions: [{name: a}]`, `rule r.require.conditions[0]: expr is required`},
		{`      conditions: [{name: a, expr: 'true'}, {name: a, expr: 'true'}]`, `rule r.require.conditions[1].name "a" is used twice`},
		{`      conditions: [{name: a, expr: 'true', message: x}]`, `message`},
		{`      conditions: [{name: 'a b', expr: 'true'}]`, `is not a valid name`},
		{"      conditions:\n        - name: x\n          expr: >-\n            config != null &&\n            config.usr ==", `rule r.require.conditions[0].expr: Syntax error`}, // True when the config is null (a config type pullgate does not
		// read as an image config) or has no keys: refused.
		{`      conditions: ['!has(config.user)']`, `6:20: rule r.require.conditions[0]: condition is true when the artifact has no image config`},
		{`      conditions: ['config.?user.orValue("1000") != "0"']`, `6:20: rule r.require.conditions[0]: condition is true when the artifact has no image config`},
		{`      conditions: [{name: nr, expr: 'config == null || config.user != "0"'}]`, `6:37: rule r.require.conditions[0].expr: condition is true when the artifact has no image config`},
		{`      conditions: ['model == null || config.user != ""']`, `condition is true when the artifact has no image config`},
		{`      conditions: ['config != null && config.?user.orValue("") != "0"']`, `condition is true when the artifact has no image config`},
	}
	for _, c := range cases {
		src := "rules:\n  - name: r\n    match: [\"**\"]\n    require:\n" + c.src + "\n"
		// line 5 is "require:"; conditions on line 6
		src = strings.Replace(src, "    require:\n", "    require:\n", 1)
		diags := Lint(writePolicy(t, "\n"+src))
		var all []string
		for _, d := range diags {
			all = append(all, d.String())
		}
		if !strings.Contains(strings.Join(all, "\n"), c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.src, all, c.want)
		}
	}
}

// Conditions that fail without an image config, or do not read config,
// load: the null-config check refuses only conditions that read config.
func TestConditionsTrueWithoutConfigAccepted(t *testing.T) {
	for _, expr := range []string{
		`config != null && config.user != ""`,
		`subject.repository != ""`,
		`model == null || model.licenses.size() > 0`,
		`has(config.user) && config.user != "0"`,
		`!config.envMap.exists(k, k == "X")`,
	} {
		src := "rules:\n  - name: r\n    match: [\"**\"]\n    require:\n      conditions: ['" + expr + "']\n"
		if diags := Lint(writePolicy(t, src)); len(diags) > 0 {
			t.Errorf("%s: %v", expr, diags)
		}
	}
}

func TestConditionsRevision(t *testing.T) {
	base := `rules:
  - name: r
    match: ["**"]
    require:
      conditions: ['config.user != ""']
`
	p1, err := Load(writePolicy(t, base))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Load(writePolicy(t, strings.Replace(base, `!= ""`, `!= "root"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	p3, err := Load(writePolicy(t, strings.Replace(base, `['config.user != ""']`, `[{name: nr, expr: 'config.user != ""'}]`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if p1.Revision() == p2.Revision() || p1.Revision() == p3.Revision() {
		t.Fatal("a condition change did not change the revision")
	}
}

// Config blobs ReadArtifact refuses: each is a clear error, never a panic
// or a partly read artifact.
func TestReadArtifactRefuses(t *testing.T) {
	good := imageConfig(t, "1", []string{"A=1"}, condNow)
	cases := map[string]struct {
		typ string
		cfg string
	}{
		"not JSON":                   {MediaTypeOCIConfig, `{"config":`},
		"an array":                   {MediaTypeOCIConfig, `[]`},
		"null":                       {MediaTypeOCIConfig, `null`},
		"repeated user":              {MediaTypeOCIConfig, `{"config":{"User":"1000","User":"0"}}`},
		"case-variant user":          {MediaTypeOCIConfig, `{"config":{"User":"1000","user":"0"}}`},
		"bad created":                {MediaTypeOCIConfig, `{"created":"yesterday"}`},
		"env not strings":            {MediaTypeDockerConfig, `{"config":{"Env":[1]}}`},
		"licenses a string":          {MediaTypeModelPackConfig, `{"descriptor":{"licenses":"MIT"}}`},
		"repeated license":           {MediaTypeModelPackConfig, `{"descriptor":{"licenses":["MIT"],"licenses":["GPL-3.0"]}}`},
		"docker gguf":                {MediaTypeDockerAIConfig, `{"config":{"gguf":[]}}`},
		"too big":                    {MediaTypeOCIConfig, `{"a":"` + strings.Repeat("x", MaxArtifactConfigBytes) + `"}`},
		"legacy type, repeated user": {"application/octet-stream", `{"config":{"User":"1000","User":"0"}}`},
		"legacy type, not JSON":      {"text/html", `<html></html>`},
		"no type, env not strings":   {"", `{"config":{"Env":[1]}}`},
	}
	for name, c := range cases {
		mf := imageManifest(t, []byte(c.cfg), c.typ, nil)
		a, err := ReadArtifact(ArtifactSubject{}, mf, false, c.typ, digest.FromString(c.cfg), []byte(c.cfg))
		if err == nil || a != nil {
			t.Errorf("%s: accepted (%v)", name, a)
		}
	}
	mf := imageManifest(t, good, MediaTypeOCIConfig, map[string]string{"k": "v"})
	a, err := ReadArtifact(ArtifactSubject{Repository: "up/x"}, mf, false, MediaTypeOCIConfig, digest.FromBytes(good), good)
	if err != nil {
		t.Fatal(err)
	}
	doc := a.Document(condNow)
	cfg := doc[VarConfig].(map[string]any)
	if cfg["user"] != "1" || cfg["envMap"].(map[string]string)["A"] != "1" || !cfg["created"].(time.Time).Equal(condNow) ||
		doc[VarAnnotations].(map[string]string)["k"] != "v" || doc[VarModel] != nil || cfg["digest"] != digest.FromBytes(good).String() {
		t.Fatalf("document = %v", doc)
	}
	// Unknown config media types are not read; the config is null.
	a, err = ReadArtifact(ArtifactSubject{}, mf, false, "application/vnd.unknown.config.v1+json", "", nil)
	if err != nil || a.Config != nil || a.Model != nil {
		t.Fatalf("unknown type: %v %v", a, err)
	}
	if _, err := ReadArtifact(ArtifactSubject{}, []byte(`{"a":1,"a":2}`), false, "", "", nil); err == nil {
		t.Fatal("a manifest with a repeated key accepted")
	}
}

func TestExampleFilesAreDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("..", "docs", "examples", "*.yaml"))
	if len(files) < 5 {
		t.Fatalf("examples: %v", files)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".pgtest.yaml") {
			continue
		}
		if !strings.Contains(string(b), "examples/"+filepath.Base(f)) {
			t.Errorf("docs/policy.md does not link %s", filepath.Base(f))
		}
	}
}

// Docker's model config (docker/model-spec) is read as a model: format and
// the gguf facts; its license is a layer, so licenses is empty.
func TestReadArtifactDockerModel(t *testing.T) {
	cfg := []byte(`{"descriptor":{"createdAt":"2026-04-01T10:00:00Z"},"config":{"format":"gguf","format_version":"3","gguf":{"architecture":"llama","parameter_count":"8.03 B","quantization":"Q4_K_M"},"size":"4.58 GiB"},"files":[{"diffID":"sha256:00","type":"application/vnd.docker.ai.gguf.v3"}]}`)
	a := artifactOf(t, MediaTypeDockerAIConfig, cfg, nil)
	m := a.Document(condNow)[VarModel].(map[string]any)
	if m["kind"] != "docker-ai" || m["format"] != "gguf" || m["architecture"] != "llama" || m["parameters"] != "8.03 B" ||
		m["quantization"] != "Q4_K_M" || len(m["licenses"].([]string)) != 0 || !m["created"].(time.Time).Equal(time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("model = %v", m)
	}
	if a.Document(condNow)[VarConfig] != nil {
		t.Fatal("a model has an image config")
	}
}
