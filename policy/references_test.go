package policy

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

const refsTrust = `trust:
  keys:
    - name: release
      path: ./release.pub
`

// refsKey is one trust key for every policy of the test: the trust
// files' bytes are part of the revision.
var refsKey string

func loadRefs(t *testing.T, rule string) (*Policy, error) {
	t.Helper()
	if refsKey == "" {
		refsKey = string(genKeyPEM(t))
	}
	dir := writeDir(t, map[string]string{"p.yaml": refsTrust + "rules:\n" + rule, "release.pub": refsKey})
	return Load(filepath.Join(dir, "p.yaml"))
}

// content.references loads into the validators' options, takes part in
// the policy revision (so nothing inspected under another requirement is
// reused), and its mistakes are errors with a position and a fix.
func TestContentReferences(t *testing.T) {
	const verifyRule = `  - name: m
    match: ["up/models/**"]
    require: {signatures: [release], mbom: required}
    content:
      references: {require: mbom, allow: ["meta-llama/*", "/srv/models/base", "https://hub.internal/base"]}
`
	p, err := loadRefs(t, verifyRule)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Rules[0].Content.Options().References
	want := content.ReferenceOptions{Require: content.RequireMBOM, Allow: []string{"meta-llama/*", "/srv/models/base", "https://hub.internal/base"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("options %+v, want %+v", got, want)
	}

	revs := map[string]string{}
	for name, rule := range map[string]string{
		"mbom":        verifyRule,
		"allowlist":   strings.Replace(verifyRule, "require: mbom", "require: allowlist", 1),
		"other allow": strings.Replace(verifyRule, `"meta-llama/*", `, "", 1),
		"report only": strings.Replace(verifyRule, "      references: {require: mbom, allow: [\"meta-llama/*\", \"/srv/models/base\", \"https://hub.internal/base\"]}\n", "      references: {}\n", 1),
		"absent":      strings.Replace(verifyRule, "      references: {require: mbom, allow: [\"meta-llama/*\", \"/srv/models/base\", \"https://hub.internal/base\"]}\n", "      denyCodeLayers: false\n", 1),
	} {
		p, err := loadRefs(t, rule)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if prev, dup := revs[p.Revision()]; dup {
			t.Errorf("%s and %s have one revision", name, prev)
		}
		revs[p.Revision()] = name
	}

	for _, c := range []struct{ rule, want string }{
		{strings.Replace(verifyRule, "require: mbom", "require: exact", 1), `require "exact" is not one of any, allowlist, mbom`},
		{strings.Replace(verifyRule, `"/srv/models/base"`, `"/srv/models/*"`, 1), "matched exactly"},
		{strings.Replace(verifyRule, `"meta-llama/*"`, `"meta-llama/["`, 1), "references.allow"},
		{strings.Replace(verifyRule, "allow: [", "alow: [", 1), "alow"},
		{`  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      references: {require: mbom}
`, "require: mbom needs action verify"},
		{`  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      references: {require: allowlist}
`, "require: allowlist without allow"},
	} {
		_, err := loadRefs(t, c.rule)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v\n%s", c.want, err, c.rule)
		}
	}
}
