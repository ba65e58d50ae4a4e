package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Keyless flag combinations that cannot sign verifiably are usage errors
// (exit 2) before any registry, Fulcio or TSA is contacted (the URLs here
// resolve nowhere).
func TestPromoteKeylessUsage(t *testing.T) {
	dir := t.TempDir()
	w := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A valid policy: a case that got past the signing flags would fail
	// later, on the unreachable source (exit 1), not with 2.
	pol := w("policy.yaml", "rules:\n  - name: all\n    match: [\"**\"]\n    action: allow\n")
	tok := w("token", "header.claims.sig\n")
	empty := w("empty.token", " \n")
	tr := w("trusted_root.json", `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	bad := w("bad_root.json", `{"mediaType":`)
	const fulcio, tsa = "https://fulcio.invalid", "http://tsa.invalid/api/v1/timestamp"
	base := []string{"promote", "src.invalid/a:1", "dst.invalid/a:1", "--policy", pol}
	// Control: valid keyless flags get past them.
	if code := run(append(append([]string{}, base...), "--id-token-file", tok, "--fulcio", fulcio, "--tsa", tsa, "--trusted-root", tr, "--timeout", "20s")); code != 1 {
		t.Fatalf("pullgate promote with valid keyless flags and an unreachable source: exit %d, want 1", code)
	}
	for _, extra := range [][]string{
		{"--key", "k", "--id-token-file", tok, "--fulcio", fulcio, "--tsa", tsa, "--trusted-root", tr}, // both
		{"--id-token-file", tok, "--fulcio", fulcio, "--trusted-root", tr},                             // no observer time
		{"--id-token-file", tok, "--tsa", tsa, "--trusted-root", tr},                                   // no Fulcio
		{"--id-token-file", tok, "--fulcio", fulcio, "--tsa", tsa},                                     // no trusted root
		{"--id-token-file", empty, "--fulcio", fulcio, "--tsa", tsa, "--trusted-root", tr},             // empty token
		{"--id-token-file", filepath.Join(dir, "missing"), "--fulcio", fulcio, "--tsa", tsa, "--trusted-root", tr},
		{"--id-token-file", tok, "--fulcio", fulcio, "--tsa", tsa, "--trusted-root", bad}, // unreadable root
		{"--key", "k", "--tsa", tsa}, // keyless flags with a key
		{"--id-token-file", tok, "--fulcio", "http://fulcio.invalid", "--tsa", tsa, "--trusted-root", tr}, // the token in the clear
	} {
		if code := run(append(append([]string{}, base...), extra...)); code != 2 {
			t.Errorf("pullgate promote %v: exit %d, want 2", extra, code)
		}
	}
	for _, extra := range [][]string{
		{"--certificate-identity", "ci@example.com", "--certificate-oidc-issuer", "https://issuer.example"}, // no trusted root
		{"--certificate-identity", "ci@example.com", "--trusted-root", tr},                                  // no issuer
		{"--certificate-oidc-issuer", "https://issuer.example", "--trusted-root", tr},                       // no identity
		{}, // no signer at all
		{"--certificate-identity", "ci@example.com", "--certificate-identity-regexp", "^ci@", "--certificate-oidc-issuer", "https://issuer.example", "--trusted-root", tr}, // exact and regexp
		{"--certificate-identity-regexp", "(", "--certificate-oidc-issuer", "https://issuer.example", "--trusted-root", tr},                                                // not a regexp
	} {
		if code := run(append([]string{"vsa", "check", "dst.invalid/a:1"}, extra...)); code != 2 {
			t.Errorf("pullgate vsa check %v: exit %d, want 2", extra, code)
		}
	}
}
