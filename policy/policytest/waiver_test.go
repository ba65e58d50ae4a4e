package policytest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Cases run with the policy's exceptions applied at the case's time (at:).
func TestRunWaivers(t *testing.T) {
	dir := copyTestdata(t)
	pol, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pol = append(pol, []byte(`exceptions:
  - name: legacy-web
    match: {repositories: ["upstream.local/app/legacy"]}
    waive:
      - "regexp:rule apps: no signature by key release on sha256:[0-9a-f]{64}"
      - "rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"
    expires: 2026-07-01T00:00:00Z
    reason: vendor image
    approvedBy: security@example.com
`)...)
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), pol, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "waivers.pgtest.yaml"), []byte(`policy: policy.yaml
cases:
  - name: unsigned legacy image is waived
    repository: upstream.local/app/legacy
    at: 2026-06-01T00:00:00Z
    expect: {decision: waived, exitCode: 0, reason: "waived by exception legacy-web"}
  - name: expired
    repository: upstream.local/app/legacy
    at: 2026-07-01T00:00:00Z
    expect: {decision: deny, exitCode: 10}
  - name: replayed signature is never waived
    repository: upstream.local/app/legacy
    at: 2026-06-01T00:00:00Z
    evidence:
      - failures: [{kind: digest-mismatch, source: cosign-signature, reason: "signature is for another digest"}]
    expect: {decision: deny, exitCode: 12}
  - name: other repository
    repository: upstream.local/app/web
    at: 2026-06-01T00:00:00Z
    expect: {decision: deny}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	failed, err := Run(filepath.Join(dir, "waivers.pgtest.yaml"), &out)
	if err != nil {
		t.Fatal(err)
	}
	if failed != 0 || !strings.Contains(out.String(), "4 passed, 0 failed") || !strings.Contains(out.String(), "waived") {
		t.Fatalf("failed=%d\n%s", failed, out.String())
	}
}
