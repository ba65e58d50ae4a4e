package policy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Every policy in docs/examples lints without a diagnostic, has a
// <name>.pgtest.yaml that tests it (run by policytest's
// TestRunConditionExamples), and is named by the claims-to-controls map;
// every example the map links exists.
func TestExamplesLintAndAreMapped(t *testing.T) {
	dir := filepath.Join("..", "docs", "examples")
	all, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	var policies []string
	for _, f := range all {
		name := filepath.Base(f)
		if !strings.HasSuffix(name, ".pgtest.yaml") {
			policies = append(policies, name)
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Policy string `yaml:"policy"`
		}
		if err := yaml.Unmarshal(src, &tf); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tested[filepath.Base(tf.Policy)] = true
	}
	if len(policies) < 11 {
		t.Fatalf("found %d example policies in %s, want at least 11: %v", len(policies), dir, policies)
	}
	mapSrc, err := os.ReadFile(filepath.Join("..", "docs", "claims-to-controls.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range policies {
		if diags := Lint(filepath.Join(dir, name)); len(diags) > 0 {
			t.Errorf("policy lint %s: %v", name, diags)
		}
		if !tested[name] {
			t.Errorf("%s has no .pgtest.yaml naming it as its policy", name)
		}
		if !strings.Contains(string(mapSrc), "(examples/"+name+")") {
			t.Errorf("docs/claims-to-controls.md does not link examples/%s", name)
		}
	}
	for _, m := range regexp.MustCompile(`\(examples/([^)]+)\)`).FindAllStringSubmatch(string(mapSrc), -1) {
		if _, err := os.Stat(filepath.Join(dir, m[1])); err != nil {
			t.Errorf("docs/claims-to-controls.md links a missing example: %v", err)
		}
	}
}
