package policy

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
)

const regoPolicy = `trust:
  keys:
    - name: release
      path: ./cosign.pub
rules:
  - name: platform
    match: ["upstream.local/platform/**"]
    require: { signatures: [release] }
    rego: { module: ./policies/platform.rego, query: data.pullgate.deny }
`

// platformRego denies an image without SLSA provenance from the trusted
// builder, and one pulled by the tag "latest" (a message only).
const platformRego = `package pullgate

trusted_builder := "https://ci.example/builder"

deny contains msg if {
	not provenance_ok
	msg := sprintf("no SLSA provenance from %s for %s", [trusted_builder, input.subject.digest])
}

deny contains "signed by nobody" if count(input.signatures) == 0

provenance_ok if {
	some a in input.attestations
	a.predicateType == "https://slsa.dev/provenance/v0.2"
	a.signer == "release"
	a.predicate.builder.id == trusted_builder
}
`

func regoFiles(module string) map[string]string {
	return map[string]string{
		"policy.yaml":            regoPolicy,
		"cosign.pub":             "@key",
		"policies/platform.rego": module,
	}
}

func loadRego(t testing.TB, module string) *Policy {
	t.Helper()
	dir := writeDir(t, regoFiles(module))
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegoDenyAndAllow(t *testing.T) {
	p := loadRego(t, platformRego)
	repo := "upstream.local/platform/api"
	good := result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, builder, dgst)})
	d := p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: []verify.Result{good}})
	if !d.Allowed || d.ExitCode != ExitAllowed {
		t.Fatalf("allowed expected: %+v", d)
	}
	var passed bool
	for _, c := range d.Checks {
		passed = passed || c.Name == "rego" && c.Passed
	}
	if !passed {
		t.Fatalf("no passing rego check: %+v", d.Checks)
	}

	bad := result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, badBuild, dgst)})
	d = p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: []verify.Result{bad}})
	want := "rule platform: rego: no SLSA provenance from https://ci.example/builder for " + dgst.String()
	if d.Allowed || d.ExitCode != ExitUnmet || len(d.Reasons) != 1 || d.Reasons[0] != want {
		t.Fatalf("denial expected with %q: %+v", want, d)
	}

	// An attestation about another digest is not evidence about this one.
	other := result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, builder, other)})
	d = p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: []verify.Result{other}})
	if d.Allowed || !strings.Contains(strings.Join(d.Reasons, "\n"), "rego: no SLSA provenance") {
		t.Fatalf("attestation about another digest counted: %+v", d)
	}

	// Unmet YAML requirement and Rego violations are all reported.
	d = p.Evaluate(Input{Repository: repo, Digest: dgst})
	got := strings.Join(d.Reasons, "\n")
	if d.Allowed || !strings.Contains(got, "no signature by key release") || !strings.Contains(got, "rule platform: rego: signed by nobody") {
		t.Fatalf("reasons: %s", got)
	}
}

func TestRegoAuditMode(t *testing.T) {
	dir := writeDir(t, regoFiles(platformRego))
	pol := strings.Replace(regoPolicy, "require:", "mode: audit\n    require:", 1)
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(Input{Repository: "upstream.local/platform/api", Digest: dgst,
		Evidence: []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}})
	if !d.Allowed || !d.WouldDeny || d.DenyExitCode != ExitUnmet {
		t.Fatalf("audit: %+v", d)
	}
}

func TestRegoResultShapes(t *testing.T) {
	good := []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}
	cases := []struct {
		name, module string
		allowed      bool
		reason       string
	}{
		{name: "empty set", module: "package pullgate\n\ndeny contains msg if { false; msg := \"x\" }\n", allowed: true},
		{name: "undefined complete rule", module: "package pullgate\n\ndeny := [\"x\"] if input.subject.tag == \"never\"\n", allowed: true},
		{name: "array", module: "package pullgate\n\ndeny := [\"b\", \"a\"]\n", reason: "rule platform: rego: a"},
		{name: "objects with msg", module: "package pullgate\n\ndeny contains {\"msg\": \"m1\", \"code\": 3} if true\n", reason: "rule platform: rego: m1"},
		{name: "boolean result", module: "package pullgate\n\ndeny := true\n", reason: "rule platform: rego: data.pullgate.deny: evaluation error: result is a boolean, not a set of messages"},
		{name: "number in set", module: "package pullgate\n\ndeny contains 1 if true\n", reason: "evaluation error: result has a number, not a message"},
		{name: "object without msg", module: "package pullgate\n\ndeny contains {\"m\": 1} if true\n", reason: "evaluation error: result has an object without a string msg"},
		{name: "control characters", module: "package pullgate\n\ndeny contains \"a\\nb\" if true\n", reason: "rule platform: rego: a b"},
		{name: "builtin error denies", module: "package pullgate\n\ndeny contains \"x\" if to_number(\"nope\") == 1\n", reason: "evaluation error: "},
		{name: "input schema", module: `package pullgate

deny contains "subject" if input.subject != {"repository": "upstream.local/platform/api", "upstream": "upstream.local", "repo": "platform/api", "digest": "` + dgst.String() + `", "tag": "v1"}
deny contains "signer" if input.signatures[0].signer != "release"
deny contains "kind" if input.signatures[0].kind != "key"
deny contains "manifest" if input.manifest.schemaVersion != 2
deny contains "annotations" if input.annotations["org.opencontainers.image.base.digest"] != "sha256:abc"
deny contains "checks" if input.checks.chain.passed != false
deny contains "findings" if input.contentFindings != ["pickle: bad"]
deny contains "signals" if input.signals != {}
deny contains "rule" if input.rule != {"name": "platform", "mode": "enforce"}
`, reason: "rule platform: content: pickle: bad"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := loadRego(t, c.module)
			in := Input{Repository: "upstream.local/platform/api", Digest: dgst, Evidence: good}
			if c.name == "input schema" {
				in.Tag = "v1"
				in.Artifact = testArtifact([]byte(`{"schemaVersion":2,"annotations":{"org.opencontainers.image.base.digest":"sha256:abc"}}`))
				in.Checks = []Check{{Name: "chain", Passed: true, Detail: "chain: ok"}}
				in.Checks[0].Passed = false
				in.ContentFindings = []string{"pickle: bad"}
			}
			d := p.Evaluate(in)
			if d.Allowed != c.allowed {
				t.Fatalf("allowed=%v, want %v: %+v", d.Allowed, c.allowed, d.Reasons)
			}
			if c.name == "input schema" {
				for _, r := range d.Reasons {
					if strings.Contains(r, "rego:") {
						t.Fatalf("input schema mismatch: %v", d.Reasons)
					}
				}
			}
			if c.reason != "" && !strings.Contains(strings.Join(d.Reasons, "\n"), c.reason) {
				t.Fatalf("reasons %q lack %q", d.Reasons, c.reason)
			}
			if !c.allowed && d.ExitCode == ExitAllowed {
				t.Fatalf("exit code %d", d.ExitCode)
			}
		})
	}
}

func TestRegoLoadErrors(t *testing.T) {
	cases := []struct {
		name, module string
		line, col    int
		msg          string
	}{
		{name: "syntax error", module: "package pullgate\n\ndeny contains msg if {\n\tmsg := \n}\n", line: 5, col: 1, msg: "rego_parse_error"},
		{name: "v0 syntax", module: "package pullgate\n\ndeny[msg] {\n\tmsg := \"x\"\n}\n", line: 3, msg: "rego_parse_error"},
		{name: "http.send", module: "package pullgate\n\ndeny contains msg if {\n\tr := http.send({\"method\": \"get\", \"url\": \"http://x\"})\n\tmsg := r.body\n}\n", line: 4, col: 7, msg: "undefined function http.send"},
		{name: "net.lookup_ip_addr", module: "package pullgate\n\ndeny contains msg if {\n\tnet.lookup_ip_addr(\"example.com\")\n\tmsg := \"x\"\n}\n", line: 4, col: 2, msg: "undefined function net.lookup_ip_addr"},
		{name: "rand.intn", module: "package pullgate\n\ndeny contains msg if {\n\trand.intn(\"s\", 10) == 3\n\tmsg := \"x\"\n}\n", line: 4, col: 2, msg: "undefined function rand.intn"},
		{name: "opa.runtime", module: "package pullgate\n\ndeny contains msg if {\n\tmsg := opa.runtime().env.HOME\n}\n", line: 4, col: 9, msg: "undefined function opa.runtime"},
		{name: "query names no rule", module: "package other\n\ndeny contains \"x\" if true\n", msg: "query data.pullgate.deny names no rule of the modules"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeDir(t, regoFiles(c.module))
			diags := Lint(filepath.Join(dir, "policy.yaml"))
			if len(diags) == 0 {
				t.Fatal("loaded")
			}
			d := diags[0]
			if !strings.Contains(d.Message, c.msg) {
				t.Fatalf("diagnostic %s lacks %q", d, c.msg)
			}
			if c.line == 0 {
				if !strings.HasSuffix(d.File, "policy.yaml") || d.Line != 9 {
					t.Fatalf("query diagnostic not at the query: %s", d)
				}
				return
			}
			if !strings.HasSuffix(d.File, filepath.Join("policies", "platform.rego")) || d.Line != c.line || (c.col != 0 && d.Col != c.col) {
				t.Fatalf("diagnostic at %s:%d:%d, want platform.rego:%d:%d: %s", d.File, d.Line, d.Col, c.line, c.col, d)
			}
			if !strings.Contains(d.String(), "platform.rego:") {
				t.Fatalf("rendered: %s", d)
			}
		})
	}
}

func TestRegoPolicyKeys(t *testing.T) {
	cases := []struct{ name, rule, msg string }{
		{"action allow", "    action: allow\n    rego: { module: ./policies/platform.rego, query: data.pullgate.deny }\n", "rego needs action verify"},
		{"no query", "    require: { signatures: [release] }\n    rego: { module: ./policies/platform.rego }\n", "query is required"},
		{"no module", "    require: { signatures: [release] }\n    rego: { query: data.pullgate.deny }\n", "module or modules is required"},
		{"missing file", "    require: { signatures: [release] }\n    rego: { module: ./nope.rego, query: data.pullgate.deny }\n", "cannot read module"},
		{"query not a ref", "    require: { signatures: [release] }\n    rego: { module: ./policies/platform.rego, query: 'x := 1' }\n", "is not a reference into data"},
		// past the rule: undefined at every evaluation, which passes
		{"query past a rule", "    require: { signatures: [release] }\n    rego: { module: ./policies/platform.rego, query: data.pullgate.deny.foo }\n", "names no rule"},
		{"unknown key", "    require: { signatures: [release] }\n    rego: { module: ./policies/platform.rego, query: data.pullgate.deny, timeout: 1s }\n", `unknown key "timeout"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := regoFiles(platformRego)
			files["policy.yaml"] = "trust:\n  keys:\n    - name: release\n      path: ./cosign.pub\nrules:\n  - name: platform\n    match: [\"upstream.local/platform/**\"]\n" + c.rule
			dir := writeDir(t, files)
			diags := Lint(filepath.Join(dir, "policy.yaml"))
			if len(diags) == 0 || !strings.Contains(diags[0].Message, c.msg) {
				t.Fatalf("diagnostics %v lack %q", diags, c.msg)
			}
		})
	}
	// modules: several files, one package each.
	files := regoFiles(platformRego)
	files["lib.rego"] = "package lib\n\nbuilder := \"https://ci.example/builder\"\n"
	files["main.rego"] = "package pullgate\n\nimport data.lib\n\ndeny contains \"wrong builder\" if { some a in input.attestations; a.predicate.builder.id != lib.builder }\n"
	files["policy.yaml"] = strings.Replace(regoPolicy, "module: ./policies/platform.rego", "modules: [lib.rego, main.rego]", 1)
	dir := writeDir(t, files)
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := p.Evaluate(Input{Repository: "upstream.local/platform/x", Digest: dgst, Evidence: []verify.Result{
		result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, badBuild, dgst)})}})
	if d.Allowed || d.Reasons[0] != "rule platform: rego: wrong builder" {
		t.Fatalf("%+v", d)
	}
}

func TestRegoRevisionCoversModules(t *testing.T) {
	dir := writeDir(t, regoFiles(platformRego))
	path := filepath.Join(dir, "policy.yaml")
	p1, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "policies", "platform.rego")
	found := false
	for _, f := range p1.Files() {
		found = found || f == mod
	}
	if !found {
		t.Fatalf("module not among the watched files %v", p1.Files())
	}
	if err := os.WriteFile(mod, []byte(platformRego+"\n# comment\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Revision() == p2.Revision() {
		t.Fatal("editing the module did not change the revision")
	}
	// A policy without rego keeps its revision format (no rego key).
	q := loadFull(t)
	if strings.Contains(q.Revision(), "rego") {
		t.Fatal("unexpected")
	}
}

func TestRegoTimeoutAndMemoryDeny(t *testing.T) {
	slow := "package pullgate\n\ndeny contains \"done\" if { count([x | some x in numbers.range(1, 100000000)]) > 0 }\n"
	p := loadRego(t, slow)
	in := Input{Repository: "upstream.local/platform/api", Digest: dgst,
		Evidence: []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}}

	old, oldMem := regoTimeout, regoMaxAlloc
	defer func() { regoTimeout, regoMaxAlloc = old, oldMem }()
	regoTimeout, regoMaxAlloc = 50*time.Millisecond, 1<<40 // only the timeout can end it
	start := time.Now()
	d := p.Evaluate(in)
	if d.Allowed || !strings.Contains(strings.Join(d.Reasons, "\n"), "evaluation error: evaluation took longer than 50ms") {
		t.Fatalf("timeout: %+v", d.Reasons)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("timeout took %s", el)
	}

	regoTimeout, regoMaxAlloc = time.Minute, 8<<20
	d = p.Evaluate(in)
	if d.Allowed || !strings.Contains(strings.Join(d.Reasons, "\n"), "evaluation allocated more than the memory bound (8 MiB)") {
		t.Fatalf("memory: %+v", d.Reasons)
	}
}

func TestRegoPrintGoesToDebugLog(t *testing.T) {
	p := loadRego(t, "package pullgate\n\ndeny contains msg if {\n\tprint(\"checking\", input.subject.repository)\n\tfalse\n\tmsg := \"x\"\n}\n")
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(old)
	d := p.Evaluate(Input{Repository: "upstream.local/platform/api", Digest: dgst,
		Evidence: []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}})
	if !d.Allowed {
		t.Fatalf("%+v", d)
	}
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, `msg="rego print"`) || !strings.Contains(out, "checking upstream.local/platform/api") || !strings.Contains(out, "line=4") {
		t.Fatalf("debug log: %s", out)
	}
}

// TestRegoDocExample runs the Rego example of docs/policy.md.
func TestRegoDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "### Rego rules")
	j := strings.Index(s[i:], "```rego\n")
	if i < 0 || j < 0 {
		t.Fatal("no Rego example in docs/policy.md")
	}
	src := s[i+j+len("```rego\n"):]
	src = src[:strings.Index(src, "```")]
	p := loadRego(t, src)
	repo := "upstream.local/platform/api"
	ev := []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, builder, dgst)})}
	pinned := []byte(`{"schemaVersion":2,"annotations":{"org.opencontainers.image.base.digest":"sha256:` + strings.Repeat("a", 64) + `"}}`)
	if d := p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: ev, Artifact: testArtifact(pinned)}); !d.Allowed {
		t.Fatalf("documented example denies a pinned image with provenance: %q", d.Reasons)
	}
	d := p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: ev, Artifact: testArtifact([]byte(`{"schemaVersion":2}`))})
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0] != "rule platform: rego: the base image is not pinned" {
		t.Fatalf("unpinned: %+v", d)
	}
	bad := []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, badBuild, dgst)})}
	d = p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: bad, Artifact: testArtifact(pinned)})
	if d.Allowed || d.Reasons[0] != "rule platform: rego: "+dgst.String()+" has no SLSA provenance from https://ci.example/builder" {
		t.Fatalf("bad provenance: %+v", d)
	}
}

// TestRegoInputKeys: the costly input keys are built only for modules that
// read them, and every key for a module that reads input as a whole.
func TestRegoInputKeys(t *testing.T) {
	ev := []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, builder, dgst)})}
	in := Input{Repository: "upstream.local/platform/api", Digest: dgst, Evidence: ev, Artifact: testArtifact([]byte(`{"schemaVersion":2}`))}
	for _, c := range []struct {
		module string
		keys   []string // nil: every key
	}{
		{"package pullgate\n\ndeny contains \"none\" if count(input.attestations) == 0\n", []string{"attestations"}},
		{"package pullgate\n\nimport input.manifest as m\n\ndeny contains \"none\" if m.schemaVersion != 2\n", []string{"manifest"}},
		{"package pullgate\n\nf(x) := x.attestations\n\ndeny contains \"none\" if count(f(input)) == 0\n", nil},
		{"package pullgate\n\ndeny contains \"none\" if { x := input; x.manifest.schemaVersion != 2 }\n", nil},
		{"package pullgate\n\ndeny contains \"none\" if { k := \"attestations\"; count(input[k]) == 0 }\n", nil},
	} {
		p := loadRego(t, c.module)
		got := p.Rules[0].Rego.inputKeys
		if (c.keys == nil) != (got == nil) || len(got) != len(c.keys) {
			t.Fatalf("%s: keys %v, want %v", c.module, got, c.keys)
		}
		for _, k := range c.keys {
			if !got[k] {
				t.Fatalf("%s: keys %v, want %v", c.module, got, c.keys)
			}
		}
		if d := p.Evaluate(in); !d.Allowed {
			t.Fatalf("%s: %q", c.module, d.Reasons)
		}
	}
}

// FuzzRegoInput: whatever the manifest and a verified attestation's
// predicate hold (bytes from the upstream and signers), the input document
// builds without panicking and the rule decides (denying what it cannot read).
func FuzzRegoInput(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"annotations":{"a":"b"}}`), []byte(builder))
	f.Add([]byte(`{"annotations":[1,2]}`), []byte(`{"builder":{"id":1e400}}`))
	f.Add([]byte(`[`), []byte(`{"a":"\ud800"}`))
	f.Add([]byte(`{"annotations":{"x":{"y":null}}}`), []byte(`{"a":{"a":{"a":[[[[]]]]}}}`))
	// Reading input as a whole builds every key; the manifest is read too.
	p := loadRego(f, "package pullgate\n\nf(x) := x\n\ndeny contains \"no provenance\" if count(f(input).attestations) == 0\n\ndeny contains \"odd\" if input.manifest.annotations == \"odd\"\n")
	f.Fuzz(func(t *testing.T, manifest, predicate []byte) {
		a := att("release", slsa02, string(predicate), dgst)
		in := Input{Repository: "upstream.local/platform/api", Digest: dgst, Artifact: testArtifact(manifest),
			Evidence: []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{a})}}
		d := p.Evaluate(in)
		_, perr := a.PredicateValue()
		art := testArtifact(manifest)
		odd := art != nil && art.Manifest["annotations"] == "odd"
		if d.Allowed != (perr == nil && !odd) {
			t.Fatalf("allowed=%v with predicate error %v, odd manifest %v: %q", d.Allowed, perr, odd, d.Reasons)
		}
	})
}

// TestRegoManyViolationsBounded: a module returning many messages denies
// with at most 64 reasons and as many checks (plus one counting the rest).
func TestRegoManyViolationsBounded(t *testing.T) {
	p := loadRego(t, "package pullgate\n\ndeny contains sprintf(\"v%06d\", [i]) if some i in numbers.range(1, 10000)\n")
	d := p.Evaluate(Input{Repository: "upstream.local/platform/api", Digest: dgst,
		Evidence: []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}})
	n := 0
	for _, c := range d.Checks {
		if c.Name == "rego" {
			n++
		}
	}
	if d.Allowed || len(d.Reasons) != 64 || n != 65 || d.Checks[len(d.Checks)-1].Detail != "9936 more violations not listed" {
		t.Fatalf("allowed=%v reasons=%d rego checks=%d last %+v", d.Allowed, len(d.Reasons), n, d.Checks[len(d.Checks)-1])
	}
}

// testArtifact is what the engine reads from a manifest without a config
// (nil when the bytes are no manifest).
func testArtifact(manifest []byte) *Artifact {
	a, err := ReadArtifact(ArtifactSubject{Upstream: "upstream.local", Repository: "upstream.local/platform/api", Digest: dgst}, manifest, false, "application/vnd.example.no-config", "", nil)
	if err != nil {
		return nil
	}
	return a
}

// TestRegoArtifactConfig: the image configuration require.conditions read
// is input.config (times as RFC 3339), the manifest input.manifest.
func TestRegoArtifactConfig(t *testing.T) {
	p := loadRego(t, `package pullgate

deny contains "runs as root" if input.config.user in {"", "root", "0"}
deny contains sprintf("created %s", [input.config.created]) if input.config.created < "2026-01-01T00:00:00Z"
deny contains "not an image manifest" if input.manifest.schemaVersion != 2
`)
	cfg := func(user, created string) []byte {
		return []byte(`{"architecture":"amd64","os":"linux","created":"` + created + `","config":{"User":"` + user + `"},"rootfs":{"type":"layers","diff_ids":[]}}`)
	}
	man := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("c", 64) + `","size":10},"layers":[]}`)
	ev := []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}
	for _, c := range []struct {
		user, created, reason string
	}{
		{"app", "2026-06-01T00:00:00Z", ""},
		{"root", "2026-06-01T00:00:00Z", "rule platform: rego: runs as root"},
		{"app", "2025-06-01T00:00:00Z", "rule platform: rego: created 2025-06-01T00:00:00Z"},
	} {
		a, err := ReadArtifact(ArtifactSubject{Upstream: "upstream.local", Repository: "upstream.local/platform/api", Digest: dgst}, man, false,
			MediaTypeOCIConfig, digest.Digest("sha256:"+strings.Repeat("c", 64)), cfg(c.user, c.created))
		if err != nil {
			t.Fatal(err)
		}
		d := p.Evaluate(Input{Repository: "upstream.local/platform/api", Digest: dgst, Evidence: ev, Artifact: a})
		if got := strings.Join(d.Reasons, "\n"); d.Allowed != (c.reason == "") || !strings.Contains(got, c.reason) {
			t.Fatalf("%+v: allowed=%v %q", c, d.Allowed, d.Reasons)
		}
	}
}

// TestRegoCoveredByAndTime: a platform manifest covered by an allowed index
// is still held to the module, over its own artifact and the index's
// evidence (the engine passes it: Parents); a module reading the clock
// makes the rule time-dependent.
func TestRegoCoveredByAndTime(t *testing.T) {
	p := loadRego(t, platformRego)
	repo := "upstream.local/platform/api"
	if d := p.Evaluate(Input{Repository: repo, Digest: dgst, CoveredBy: indexDg}); d.Allowed {
		t.Fatalf("covered by an allowed index, no evidence given to the module: allowed (%q)", d.Reasons)
	}
	idx := result(indexDg, []verify.Signature{sig("release", indexDg)}, []verify.Attestation{att("release", slsa02, builder, indexDg)})
	d := p.Evaluate(Input{Repository: repo, Digest: dgst, CoveredBy: indexDg, Parents: []digest.Digest{indexDg}, Evidence: []verify.Result{idx}})
	if !d.Allowed {
		t.Fatalf("covered by an allowed index, with its evidence: %q", d.Reasons)
	}
	if p.Rules[0].TimeDependent() {
		t.Fatal("a module without time.now_ns is time-dependent")
	}
	p = loadRego(t, "package pullgate\n\ndeny contains \"old\" if time.now_ns() < 0\n")
	if !p.Rules[0].TimeDependent() {
		t.Fatal("a module calling time.now_ns is not time-dependent")
	}
}

// A Rego message can quote upstream text (a label, an env value): control
// characters, bidi overrides and line separators become spaces, so it
// cannot forge another reason in the audit log or the CLI.
func TestRegoMessageCleaned(t *testing.T) {
	got := cleanMessage("a\u202eb\u2028c\nd\u200be")
	if got != "a b c d e" {
		t.Fatalf("cleanMessage = %q", got)
	}
}

// Certificate validation without a given time reads the clock: such a
// module makes its rule time-dependent, as time.now_ns does.
func TestRegoX509MakesTimeDependent(t *testing.T) {
	p := loadRego(t, "package pullgate\n\ndeny contains \"bad chain\" if not crypto.x509.parse_and_verify_certificates(input.subject.digest)[0]\n")
	if !p.Rules[0].TimeDependent() {
		t.Fatal("a module validating certificates against the clock is not time-dependent")
	}
}

// time.now_ns reads the decision's time when the input gives one (as
// conditions read `now`), so `pullgate policy test` cases with `at:` can
// test a module that judges age.
func TestRegoReadsTheDecisionTime(t *testing.T) {
	p := loadRego(t, "package pullgate\n\ndeny contains \"too late\" if time.now_ns() > time.parse_rfc3339_ns(\"2027-01-01T00:00:00Z\")\n")
	repo := "upstream.local/platform/api"
	good := []verify.Result{result(dgst, []verify.Signature{sig("release", dgst)}, nil)}
	early := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	if d := p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: good, Now: early}); !d.Allowed {
		t.Fatalf("at %s: denied: %q", early, d.Reasons)
	}
	late := time.Date(2028, 6, 1, 0, 0, 0, 0, time.UTC)
	if d := p.Evaluate(Input{Repository: repo, Digest: dgst, Evidence: good, Now: late}); d.Allowed {
		t.Fatalf("at %s: allowed", late)
	}
}
