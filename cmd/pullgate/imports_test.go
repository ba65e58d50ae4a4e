package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShipsNothingFromTest: the binary imports no package under test/ (the
// demo and its in-process upstream live under cmd/pullgate, issue 14).
func TestShipsNothingFromTest(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	var ok bool
	for _, p := range deps {
		if strings.HasPrefix(p, "github.com/pullgate/pullgate/test/") {
			t.Errorf("cmd/pullgate imports %s: code the binary ships does not live under test/", p)
		}
		ok = ok || p == "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	}
	if !ok {
		t.Errorf("go list -deps listed %d packages without cmd/pullgate/demoupstream: the check lost its subject", len(deps))
	}
}
