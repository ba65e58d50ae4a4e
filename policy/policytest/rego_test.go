package policytest

import (
	"bytes"
	"strings"
	"testing"
)

// TestRunRegoTestdata: policy tests run against a rule with a Rego module.
func TestRunRegoTestdata(t *testing.T) {
	var out bytes.Buffer
	failed, err := Run("../testdata/policytest-rego", &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 || !strings.Contains(out.String(), "4 passed, 0 failed") {
		t.Fatalf("%d failures:\n%s", failed, out.String())
	}
}
