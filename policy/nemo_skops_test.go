package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestContentNeMoSkopsKeys(t *testing.T) {
	dir := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        nemo: {targets: [mypkg.models., other.Exact]}
        skops: {trusted: [mypkg.est.MyEstimator, functools.partial]}
`})
	p, err := Load(filepath.Join(dir, "p.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := p.Rules[0].Content.Options()
	if strings.Join(o.NeMo.Targets, ",") != "mypkg.models.,other.Exact" {
		t.Fatalf("nemo targets %v", o.NeMo.Targets)
	}
	if strings.Join(o.Skops.Trusted, ",") != "mypkg.est.MyEstimator,functools.partial" {
		t.Fatalf("skops trusted %v", o.Skops.Trusted)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ body, want string }{
		{"nemo: {target: [a.b]}", "target"},
		{"nemo: {targets: [\"\"]}", "nemo.targets"},
		{"nemo: {targets: [\".\"]}", "nemo.targets"},
		{"nemo: {targets: [os system]}", "nemo.targets"},
		{"skops: {trusted: [builtins]}", "skops.trusted"},
		{"skops: {trust: [a.b]}", "trust"},
	} {
		bad := writeDir(t, map[string]string{"p.yaml": `rules:
  - name: m
    match: ["up/models/**"]
    action: allow
    content:
      formats:
        ` + c.body + "\n"})
		if _, err := Load(filepath.Join(bad, "p.yaml")); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s accepted or wrong error: %v", c.body, err)
		}
	}
}
