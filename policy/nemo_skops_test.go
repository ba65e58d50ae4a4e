package policy

import (
	"strings"
	"testing"
)

func TestContentNeMoSkopsKeys(t *testing.T) {
	o, err := loadFormats(t, `{nemo: {targets: [mypkg.models., other.Exact]}, skops: {trusted: [mypkg.est.MyEstimator, functools.partial]}}`)
	if err != nil {
		t.Fatal(err)
	}
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
		if _, err := loadFormats(t, c.body); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s accepted or wrong error: %v", c.body, err)
		}
	}
}
