package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Usage errors exit 2 before anything is contacted or written.
func TestPromoteUsage(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	os.WriteFile(pol, []byte("rules: []\n"), 0o644)
	for _, args := range [][]string{
		{"promote", "src.example/a:1"},                                     // no destination
		{"promote", "src.example/a:1", "dst.example/a:1", "--key", "k"},    // no policy
		{"promote", "src.example/a:1", "dst.example/a:1", "--policy", pol}, // no key
		{"promote", "src.example/a:1", "dst.example/a:1", "--policy", pol, "--key", filepath.Join(dir, "missing.key")},
		{"promote", "src.example/a:1", "dst.example/a@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "--policy", pol, "--key", "k"},
		{"promote", "src.example/a:1", "dst.example/a:1", "--policy", pol, "--key", "k", "-o", "yaml"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("pullgate %v: exit %d, want 2", args, code)
		}
	}
}
