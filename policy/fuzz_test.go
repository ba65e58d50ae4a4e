package policy

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the policy parser: it must never panic
// and must either produce diagnostics or a usable policy.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullPolicy))
	f.Add([]byte("rules:\n  - {name: a, match: [x/**], action: allow}\n"))
	f.Add([]byte("rules: &a [*a]\n"))
	f.Add([]byte("a: &a [x, x]\nrules: [*a, *a]\n"))
	f.Add([]byte(kofnPolicy))
	f.Add([]byte("rules:\n  - {name: a, match: [x/**], require: {signatures: {anyOf: [k, k], min: 9}, attestations: [{predicateType: t, signedBy: {allOf: [], min: x}}]}}\n"))
	f.Add([]byte(fullPolicy + "exceptions:\n  - {name: x, match: {repositories: [a/**], digest: sha256:0000000000000000000000000000000000000000000000000000000000000000}, waive: [\"regexp:rule apps: .*\", \"rule models: content: pickle: x\"], findingClasses: [pickle], expires: 2027-01-01, reason: r, approvedBy: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &loader{file: "fuzz.yaml", dir: t.TempDir()}
		p := l.parse(data)
		if len(l.diags) == 0 {
			if p == nil || len(p.Rules) == 0 {
				t.Fatal("no diagnostics but no policy")
			}
			_ = p.Match("upstream.local/app/web")
		}
		for _, d := range l.diags {
			if d.Message == "" {
				t.Fatal("empty diagnostic")
			}
		}
	})
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + string(rune('a'+i)) + ": &a" + string(rune('a'+i)) + " [")
		prev := "a0"
		if i > 1 {
			prev = "a" + string(rune('a'+i-1))
		}
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
	}
	b.WriteString("rules: []\n")
	dir := writeDir(t, map[string]string{"p.yaml": b.String()})
	ds := Lint(dir + "/p.yaml")
	if len(ds) != 1 || !strings.Contains(ds[0].Message, "YAML nodes through aliases") {
		t.Fatalf("diagnostics: %v", diagLines(ds))
	}
}
