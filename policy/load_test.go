package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFullExample(t *testing.T) {
	p := loadFull(t)
	if len(p.Rules) != 5 {
		t.Fatalf("rules = %d", len(p.Rules))
	}
	apps := p.Rules[1]
	if apps.Name != "apps" || apps.Action != ActionVerify || apps.Mode != ModeEnforce || apps.Line != 14 {
		t.Fatalf("apps = %+v", apps)
	}
	if got := apps.Require.Attestations[0]; got.PredicateType != "https://slsa.dev/provenance/v0.2" || got.prg == nil || got.SignedBy[0] != "release" {
		t.Fatalf("attestation = %+v", got)
	}
	m := p.Rules[2]
	if m.Require.Chain != "llm-release" || m.Require.MBOM != MBOMRequired || !m.Require.TLog || !m.Require.Timestamp {
		t.Fatalf("models require = %+v", m.Require)
	}
	c := m.Content
	if c == nil || !c.DenyCodeLayers || c.Formats.Safetensors.MaxHeaderBytes != 16<<20 || c.Formats.GGUF == nil || c.Formats.Pickle.Mode != PickleDeny {
		t.Fatalf("content = %+v", c)
	}
	if !c.AllowsMediaType("application/vnd.cncf.model.weight.v1.raw") || !c.AllowsMediaType("application/vnd.oci.image.layer.v1.tar") || c.AllowsMediaType("application/vnd.ollama.image.model") {
		t.Fatal("media type sets not expanded")
	}
	if len(c.TensorAllow) != 1 || !c.TensorAllow[0].MatchString("base_model.model.layers.0.q.lora_A.weight") {
		t.Fatal("tensor allowlist")
	}
	if p.Rules[3].Mode != ModeAudit || p.Rules[4].Action != ActionAllow {
		t.Fatal("audit/open rules")
	}
	if len(p.Trust.Spec.Keys) != 1 || p.Trust.Spec.Keys[0].Name != "release" || !strings.Contains(string(p.Trust.Spec.Keys[0].PEM), "PUBLIC KEY") {
		t.Fatal("key PEM not loaded into TrustSpec")
	}
	if len(p.Trust.Spec.Identities) != 1 || p.Trust.Spec.Identities[0].SubjectRegExp != `^https://github\.com/acme/.+` || len(p.Trust.Spec.TrustedRootJSON) == 0 {
		t.Fatal("identity / trusted root not loaded")
	}
	if p.Trust.Verifier == nil {
		t.Fatal("trust not compiled by verify.NewTrust")
	}
	if p.Trust.Kind("release") != TrustKey || p.Trust.Kind("ci") != TrustIdentity || p.Trust.Kind("nope") != "" {
		t.Fatal("trust kinds")
	}
	if files := p.Files(); len(files) != 3 || !strings.HasSuffix(files[0], "policy.yaml") {
		t.Fatalf("files = %v", files)
	}
	if !strings.HasPrefix(p.Revision(), "sha256:") || len(p.Revision()) != 71 {
		t.Fatalf("revision = %q", p.Revision())
	}
}

func TestMatchFirstWinsAndFailClosed(t *testing.T) {
	p := loadFull(t)
	cases := map[string]string{
		"upstream.local/blocked/x":     "blocked",
		"upstream.local/app/web":       "apps",
		"upstream.local/app":           "apps",
		"upstream.local/models/llama":  "models",
		"upstream.local/blocked":       "blocked",
		"upstream.local/other/thing":   "open",
		"upstream.local/apps":          "open",
		"docker.io/library/nginx":      "",
		"":                             "",
		"upstream.localx/app/web":      "",
		"upstream.local":               "open", // "**" spans zero segments
		"UPSTREAM.LOCAL/app/something": "",
	}
	for repo, want := range cases {
		r := p.Match(repo)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != want {
			t.Errorf("Match(%q) = %q, want %q", repo, got, want)
		}
	}
	// Order matters: swapping "open" before "blocked" lets it win.
	dir := writeDir(t, map[string]string{"policy.yaml": `rules:
  - name: open
    match: ["upstream.local/**"]
    action: allow
  - name: blocked
    match: ["upstream.local/blocked/**"]
    action: deny
`})
	p2, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if r := p2.Match("upstream.local/blocked/x"); r == nil || r.Name != "open" {
		t.Fatalf("first match should win, got %v", r)
	}
}

// diagLines renders diagnostics without the file name.
func diagLines(ds []Diagnostic) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%d:%d: %s", d.Line, d.Col, d.Message))
	}
	return out
}

func TestLoadDiagnostics(t *testing.T) {
	key := map[string]string{"cosign.pub": "@key", "trusted_root.json": trustedRootStub}
	cases := []struct {
		name   string
		policy string
		files  map[string]string
		want   []string
	}{
		{"unknown top-level key", "rulez: []\nrules:\n  - {name: a, match: [x/**], action: allow}\n", nil,
			[]string{`1:1: policy: unknown key "rulez"`}},
		{"unknown rule key", `rules:
  - name: a
    match: ["x/**"]
    action: allow
    requires: {}
`, nil, []string{`5:5: rules[0]: unknown key "requires"`}},
		{"verify without require", `rules:
  - name: apps
    match: ["x/**"]
`, nil, []string{`2:5: rule apps: action verify (the default) needs a require section`}},
		{"explicit verify without require", `rules:
  - name: apps
    match: ["x/**"]
    action: verify
`, nil, []string{`4:13: rule apps: action verify (the default) needs a require section`}},
		{"require under allow", `rules:
  - name: a
    match: ["x/**"]
    action: allow
    require: {signatures: [release]}
`, nil, []string{`5:5: rule a: require has no effect with action allow`}},
		{"unknown signer", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - name: apps
    match: ["x/**"]
    require:
      signatures: [relase]
`, key, []string{`8:20: rule apps.require.signatures: "relase" is not a trust key or identity`}},
		{"unknown signedBy", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - name: apps
    match: ["x/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v1
          signedBy: [release, ci]
`, key, []string{`10:31: rule apps.require.attestations[0].signedBy: "ci" is not a trust key or identity`}},
		{"bad action and mode", `rules:
  - name: a
    match: ["x/**"]
    action: permit
    mode: warn
`, nil, []string{
			`4:13: rule a.action "permit" is not one of allow, deny, verify`,
			`5:11: rule a.mode "warn" is not one of enforce, audit`}},
		{"bad glob", `rules:
  - name: a
    match: ["x/**", "x/y**", plain/b**]
    action: allow
`, nil, []string{
			`3:25: rule a.match: pattern "x/y**": '**' must be a whole path segment (use '*' within a segment)`,
			`3:37: rule a.match: pattern "plain/b**": '**' must be a whole path segment (use '*' within a segment)`}},
		{"cel compile error", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - name: apps
    match: ["x/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v1
          signedBy: [release]
          condition: 'predicate.builder.id == '
`, key, []string{`11:47: rule apps.require.attestations[0].condition: Syntax error: mismatched input '<EOF>' expecting`}},
		{"cel type error", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - name: apps
    match: ["x/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v1
          signedBy: [release]
          condition: repository + 1
`, key, []string{`11:33: rule apps.require.attestations[0].condition: found no matching overload for '_+_' applied to '(string, int)'`}},
		{"cel non-bool", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - name: apps
    match: ["x/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v1
          signedBy: [release]
          condition: repository
`, key, []string{`11:22: rule apps.require.attestations[0].condition: condition has type string, must be bool`}},
		{"missing key file", `trust:
  keys:
    - {name: release, path: ./missing.pub}
rules:
  - {name: a, match: ["x/**"], require: {signatures: [release]}}
`, nil, []string{`3:29: trust.keys[0]: cannot read key: open `}},
		{"key file not a key", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - {name: a, match: ["x/**"], require: {signatures: [release]}}
`, map[string]string{"cosign.pub": "not a pem"}, []string{`3:29: trust.keys[0]: ./cosign.pub: no PEM block found`}},
		{"private key rejected", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - {name: a, match: ["x/**"], require: {signatures: [release]}}
`, map[string]string{"cosign.pub": "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"},
			[]string{`3:29: trust.keys[0]: ./cosign.pub: PEM block is "EC PRIVATE KEY", not a public key`}},
		{"identity problems", `trust:
  identities:
    - name: ci
      issuer: https://x
      issuerRegExp: ^https://x$
      subjectRegExp: "[unclosed"
    - name: ci
      issuer: https://y
      subjectRegExp: acme
rules:
  - {name: a, match: ["x/**"], require: {signatures: [ci]}}
`, nil, []string{
			`2:3: keyless identities need trust.trustedRoot`,
			`5:7: trust.identities[0]: issuer and issuerRegExp are mutually exclusive`,
			`6:22: trust.identities[0].subjectRegExp does not compile: error parsing regexp: missing closing ]`,
			`7:13: trust name "ci" is already used at line 3`,
			`9:22: trust.identities[1].subjectRegExp "acme" is not anchored`}},
		{"trusted root rejected by the verifier", `trust:
  identities:
    - {name: ci, issuer: https://issuer, subject: dev@example.com}
  trustedRoot: ./root.json
rules:
  - {name: a, match: ["x/**"], require: {signatures: [ci]}}
`, map[string]string{"root.json": `{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "tlogs": "nope"}`},
			[]string{`1:1: trust material rejected by the verifier: trusted root:`}},
		{"shadowed rules", `rules:
  - {name: a, match: ["up/app/**"], action: allow}
  - {name: b, match: ["up/x/**", "up/app/**"], action: deny}
  - {name: all, match: ["**"], action: deny}
  - {name: late, match: ["up/late/**"], action: allow}
`, nil, []string{
			`3:34: rule b.match: "up/app/**" can never match: rule a has the same pattern first`,
			`5:26: rule late.match: "up/late/**" can never match: rule all matches every repository first`}},
		{"duplicate keys and rule names", `rules:
  - name: a
    name: b
    match: ["x/**"]
    action: allow
  - name: a
    match: ["y/**"]
    action: allow
`, nil, []string{
			`3:5: rules[0]: duplicate key "name"`,
			`6:5: rule name "a" is already used at line 2`}},
		{"content errors", `rules:
  - name: m
    match: ["x/**"]
    action: allow
    content:
      mediaTypes: [modelpak, "application/x y", oras]
      formats: { safetensors: { maxHeaderBytes: 16XB }, gguf: { maxKV: -1 }, pickle: maybe, caffe2: {} }
      denyCodeLayers: "yes"
      tensors: { allow: ['(unclosed'] }
`, nil, []string{
			`6:20: rule m.content.mediaTypes: unknown media type set "modelpak"`,
			`6:30: rule m.content.mediaTypes: "application/x y" is not a valid media type`,
			`7:49: rule m.content.formats.safetensors.maxHeaderBytes: size "16XB" has unknown unit "XB"`,
			`7:72: rule m.content.formats.gguf.maxKV: "-1" is not a positive number`,
			`7:86: rule m.content.formats.pickle "maybe" is not one of deny, scan`,
			`7:93: rule m.content.formats: unknown key "caffe2"`,
			`8:23: rule m.content.denyCodeLayers must be true or false, got a str`,
			`9:26: rule m.content.tensors.allow: "(unclosed" does not compile: error parsing regexp: missing closing )`}},
		{"chain and mbom names", `trust:
  keys:
    - {name: release, path: ./cosign.pub}
rules:
  - name: a
    match: ["x/**"]
    require: {signatures: [release], chain: llm, mbom: always, tlog: "true"}
`, key, []string{
			`7:45: rule a.require.chain "llm" is not a known chain profile`,
			`7:56: rule a.require.mbom "always" is not one of required, optional`,
			`7:70: rule a.require.tlog must be true or false, got a str`}},
		{"empty lists", `rules:
  - name: a
    match: []
    require: {signatures: [], attestations: []}
`, nil, []string{
			`3:12: rule a.match is empty`,
			`4:27: rule a.require.signatures is empty`,
			`4:45: rule a.require.attestations is empty`}},
		{"attestation missing fields", `rules:
  - name: a
    match: ["x/**"]
    require:
      attestations:
        - condition: "true"
`, nil, []string{
			`6:11: rule a.require.attestations[0]: predicateType is required`,
			`6:11: rule a.require.attestations[0]: signedBy is required`}},
		{"yaml syntax", "rules:\n  - name: a\n   match: x\n", nil, []string{`1:1: YAML syntax: did not find expected '-' indicator`}},
		{"yaml syntax unterminated", "rules:\n  - name: a\n    match: [\"x/**\"\n", nil, []string{`2:1: YAML syntax: did not find expected ',' or ']'`}},
		{"empty file", "", nil, []string{`1:1: policy file is empty`}},
		{"no rules", "trust: {}\n", nil, []string{`1:1: policy has no rules key`}},
		{"two documents", "rules:\n  - {name: a, match: [x/**], action: allow}\n---\nrules: []\n", nil, []string{`3:1: policy file has more than one YAML document`}},
		{"pickle allow without scan", `rules:
  - name: a
    match: ["x/**"]
    action: allow
    content:
      formats:
        pickle: {mode: deny, allow: [os.system, nodot]}
`, nil, []string{
			`7:30: rule a.content.formats.pickle.allow only applies with mode: scan`,
			`7:38: rule a.content.formats.pickle.allow: pickle allowlist entry "os.system" can never be allowed: module os runs commands, resolves names or loads code`,
			`7:49: rule a.content.formats.pickle.allow: pickle allowlist entry "nodot": write module.name or module:qualname`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"policy.yaml": c.policy}
			for k, v := range c.files {
				files[k] = v
			}
			dir := writeDir(t, files)
			path := filepath.Join(dir, "policy.yaml")
			ds := Lint(path)
			got := diagLines(ds)
			if len(got) != len(c.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], c.want[i]) {
					t.Errorf("diagnostic %d:\n got  %s\n want %s", i, got[i], c.want[i])
				}
				if ds[i].Fix == "" {
					t.Errorf("diagnostic %d has no fix hint: %s", i, got[i])
				}
				if ds[i].File != path {
					t.Errorf("diagnostic file = %q", ds[i].File)
				}
			}
			if _, err := Load(path); err == nil {
				t.Fatal("Load accepted an invalid policy")
			} else if len(DiagnosticsOf(path, err)) != len(ds) {
				t.Fatalf("Load error carries %d diagnostics, Lint %d", len(DiagnosticsOf(path, err)), len(ds))
			}
		})
	}
}

func TestDiagnosticString(t *testing.T) {
	d := Diagnostic{File: "p.yaml", Line: 3, Col: 7, Message: "bad", Fix: "do x"}
	if d.String() != "p.yaml:3:7: bad (fix: do x)" {
		t.Fatal(d.String())
	}
	if (Diagnostic{File: "p.yaml", Message: "m"}).String() != "p.yaml: m" {
		t.Fatal("file-level diagnostic")
	}
}

func TestLintValidIsEmpty(t *testing.T) {
	dir := writeDir(t, fullFiles())
	if ds := Lint(filepath.Join(dir, "policy.yaml")); len(ds) != 0 {
		t.Fatalf("valid policy: %v", ds)
	}
	if ds := Lint(filepath.Join(dir, "nope.yaml")); len(ds) != 1 || !strings.Contains(ds[0].Message, "cannot read policy") {
		t.Fatalf("missing file: %v", ds)
	}
}

func TestRevision(t *testing.T) {
	dir := writeDir(t, fullFiles())
	path := filepath.Join(dir, "policy.yaml")
	p1, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Same content again: same revision.
	p2, _ := Load(path)
	if p1.Revision() != p2.Revision() {
		t.Fatal("revision not stable")
	}
	// Comments, formatting and an explicit default do not change it.
	reformatted := "# a comment\n" + strings.Replace(fullPolicy, `  - name: models
    match: ["upstream.local/models/**"]
`, `  - name: models
    match:
      - "upstream.local/models/**"
    action: verify
    mode: enforce
`, 1)
	if reformatted == "# a comment\n"+fullPolicy {
		t.Fatal("test edit did not apply")
	}
	os.WriteFile(path, []byte(reformatted), 0o644)
	p3, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Revision() != p1.Revision() {
		t.Fatal("formatting changed the revision")
	}
	// Rotating the key changes it.
	os.WriteFile(filepath.Join(dir, "cosign.pub"), genKeyPEM(t), 0o644)
	p4, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p4.Revision() == p1.Revision() {
		t.Fatal("key rotation did not change the revision")
	}
	// Changing the trusted root changes it.
	os.WriteFile(filepath.Join(dir, "trusted_root.json"), []byte(trustedRootStub+"\n"), 0o644)
	p5, _ := Load(path)
	if p5.Revision() == p4.Revision() {
		t.Fatal("trusted root change did not change the revision")
	}
	// A semantic change (condition) changes it.
	os.WriteFile(path, []byte(strings.Replace(fullPolicy, "https://ci.example/builder", "https://ci.example/other", 1)), 0o644)
	p6, _ := Load(path)
	if p6.Revision() == p5.Revision() {
		t.Fatal("condition change did not change the revision")
	}
	// Moving the policy and keys elsewhere keeps it (paths are not hashed).
	dir2 := t.TempDir()
	for _, f := range []string{"policy.yaml", "cosign.pub", "trusted_root.json"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		os.WriteFile(filepath.Join(dir2, f), b, 0o644)
	}
	p7, err := Load(filepath.Join(dir2, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if p7.Revision() != p6.Revision() {
		t.Fatal("moving the files changed the revision")
	}
}
