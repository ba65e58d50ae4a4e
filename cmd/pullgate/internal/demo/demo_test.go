package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The demo is what a newcomer runs first: it must keep working, and every
// pull in it must behave as its policy says.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), Options{Dir: t.TempDir(), Out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"ALLOWED  sha256:", "rule apps: attestation https://slsa.dev/provenance/v1 signed by release: none found",
		"rule blocked: action deny", "unknown upstream \"registry.example\"",
		"adapter.safetensors arrived intact", "pickle content is denied by policy",
		"demo: every pull behaved as the policy says",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
