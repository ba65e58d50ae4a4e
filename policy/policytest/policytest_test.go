package policytest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunTestdata(t *testing.T) {
	var out bytes.Buffer
	failed, err := Run("../testdata/policytest", &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 {
		t.Fatalf("%d failures:\n%s", failed, out.String())
	}
	if !strings.Contains(out.String(), "12 passed, 0 failed") {
		t.Fatalf("unexpected summary:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "allow(audit)") {
		t.Fatalf("audit decision not shown:\n%s", out.String())
	}
}

func copyTestdata(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml", "cosign.pub"} {
		b, err := os.ReadFile(filepath.Join("../testdata/policytest", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	return dir
}

func TestRunReportsFailures(t *testing.T) {
	dir := copyTestdata(t)
	os.WriteFile(filepath.Join(dir, "wrong.pgtest.yaml"), []byte(`policy: policy.yaml
cases:
  - name: expects allow but unsigned
    repository: upstream.local/app/web
    expect: {decision: allow}
  - name: wrong exit code
    repository: upstream.local/app/web
    expect: {decision: deny, exitCode: 11}
  - name: wrong reason
    repository: upstream.local/blocked/x
    expect: {decision: deny, reason: "something else"}
  - name: right
    repository: upstream.local/blocked/x
    expect: {decision: deny, exitCode: 13}
`), 0o644)
	var out bytes.Buffer
	failed, err := Run(dir, &out)
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if failed != 3 || !strings.Contains(s, "1 passed, 3 failed") {
		t.Fatalf("failed=%d\n%s", failed, s)
	}
	for _, want := range []string{
		"FAIL", "expected allow, got deny (rule apps: no signature by key release on sha256:",
		"expected exit code 11, got 10",
		`no reason contains "something else"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestRunFileErrors(t *testing.T) {
	dir := copyTestdata(t)
	cases := map[string]string{
		"unknown key":    "policy: policy.yaml\ncases:\n  - name: a\n    repository: x/y\n    expct: {decision: allow}\n",
		"bad decision":   "policy: policy.yaml\ncases:\n  - name: a\n    repository: x/y\n    expect: {decision: maybe}\n",
		"no policy":      "cases:\n  - name: a\n    repository: x/y\n    expect: {decision: allow}\n",
		"invalid policy": "policy: missing.yaml\ncases:\n  - name: a\n    repository: x/y\n    expect: {decision: allow}\n",
		"bad digest":     "policy: policy.yaml\ncases:\n  - name: a\n    repository: x/y\n    digest: sha256:12\n    expect: {decision: allow}\n",
		"bad kind":       "policy: policy.yaml\ncases:\n  - name: a\n    repository: x/y\n    evidence: [{failures: [{kind: oops}]}]\n    expect: {decision: deny}\n",
		"no cases":       "policy: policy.yaml\ncases: []\n",
		"duplicate":      "policy: policy.yaml\ncases:\n  - {name: a, repository: x/y, expect: {decision: deny}}\n  - {name: a, repository: x/y, expect: {decision: deny}}\n",
	}
	for name, content := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".pgtest.yaml")
		os.WriteFile(p, []byte(content), 0o644)
		if _, err := RunFile(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Run(t.TempDir(), &bytes.Buffer{}); err == nil {
		t.Error("empty directory: no error")
	}
}

// TestRunKOfNTestdata runs the k-of-n signer fixtures (issue 16).
func TestRunKOfNTestdata(t *testing.T) {
	var out bytes.Buffer
	failed, err := Run("../testdata/policytest-kofn", &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 || !strings.Contains(out.String(), "7 passed, 0 failed") {
		t.Fatalf("%d failures:\n%s", failed, out.String())
	}
}

// The secure-by-default examples ship with policy tests of their own
// (artifact fixtures read by policy.ReadArtifact).
func TestRunConditionExamples(t *testing.T) {
	var out bytes.Buffer
	failed, err := Run("../../docs/examples", &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 || !strings.Contains(out.String(), "75 passed, 0 failed") {
		t.Fatalf("%d failures:\n%s", failed, out.String())
	}
	if strings.Contains(out.String(), "&&   ") {
		t.Fatalf("a reason keeps the YAML block's line breaks:\n%s", out.String())
	}
}

// An artifact fixture that does not read as its media type says fails the
// file, as the proxy's denial would.
func TestRunArtifactFixtureErrors(t *testing.T) {
	dir := copyTestdata(t)
	os.WriteFile(filepath.Join(dir, "pullgate-test.yaml"), []byte(`policy: ./policy.yaml
cases:
  - name: bad created
    repository: upstream.local/app/x
    artifact: {config: {created: yesterday}}
    expect: {decision: deny}
`), 0o644)
	var out bytes.Buffer
	if _, err := Run(dir, &out); err == nil || !strings.Contains(err.Error(), "artifact: config") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
}
