package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// policy lint: an exception expiring within 7 days is a warning (exit 0),
// an expired one a problem (exit 1).
func TestPolicyLintExceptionExpiry(t *testing.T) {
	dir := t.TempDir()
	write := func(expires time.Time) string {
		p := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(p, []byte(`rules:
  - {name: open, match: ["up/**"], action: allow, content: {formats: {pickle: deny}}}
exceptions:
  - name: x
    match: {repositories: [up/a], digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
    waive: ["rule open: content: pickle: GLOBAL imports os.system, which is not in the allowlist"]
    findingClasses: [pickle]
    expires: `+expires.UTC().Format(time.RFC3339)+`
    reason: r
    approvedBy: a
`), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		expires time.Time
		code    int
	}{
		{time.Now().Add(30 * 24 * time.Hour), 0},
		{time.Now().Add(3 * 24 * time.Hour), 0},
		{time.Now().Add(-time.Hour), 1},
	} {
		if code := run([]string{"policy", "lint", write(c.expires)}); code != c.code {
			t.Errorf("expires %s: exit %d, want %d", c.expires.Format(time.RFC3339), code, c.code)
		}
	}
}
