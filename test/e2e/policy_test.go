package e2e

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// Editing the policy file changes decisions without a restart: an image
// allowed (and cached) before is denied by the new rule, manifest and blobs,
// because verdicts are cached per policy revision. A broken policy file does
// not open anything up.
func TestPolicyReloadRevokesCachedVerdicts(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	if d, err := harness.GGCRPull(f.ref("open/app:v1")); err != nil || d != f.allowed.Digest {
		t.Fatalf("allowed pull: %s %v", d, err)
	}
	const lockdown = "pg-rule-lockdown"
	policy := `rules:
  - name: ` + lockdown + `
    match: ["` + f.up.Name + `/open/app"]
    action: deny
  - name: ` + gate.DenyRule + `
    match: ["` + f.up.Name + `/blocked/**"]
    action: deny
  - name: ` + gate.AllowRule + `
    match: ["` + f.up.Name + `/**"]
    action: allow
`
	if err := os.WriteFile(f.px.PolicyPath, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	var st int
	var body []byte
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		st, _, body, _ = harness.Get(ctx(t), f.url("open/app/manifests/"+f.allowed.Digest), nil)
		if st == http.StatusForbidden {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	e := expectOCIError(t, "manifest after policy change", st, body, http.StatusForbidden, "DENIED")
	if !strings.Contains(e.Message, lockdown) {
		t.Errorf("DENIED message %q does not name %s", e.Message, lockdown)
	}
	for _, b := range f.allowed.Layers {
		st, _, body, _ := harness.Get(ctx(t), f.url("open/app/blobs/"+b.Digest), nil)
		expectOCIError(t, "cached blob after policy change", st, body, http.StatusForbidden, "DENIED")
	}
	// Other repositories are still allowed by the new policy.
	other := f.up.PushImage(t, "open/other", "v1", harness.ImageOptions{})
	if d, err := harness.GGCRPull(f.ref("open/other:v1")); err != nil || d != other.Digest {
		t.Errorf("open/other under the new policy: %s %v", d, err)
	}

	// A broken policy file: nothing that is denied becomes allowed.
	if err := os.WriteFile(f.px.PolicyPath, []byte("rules: [ {name: x, match: [\"**\"], action: allow"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	for _, r := range []string{"open/app:v1", "blocked/app:v1"} {
		if d, err := harness.GGCRPull(f.ref(r)); err == nil {
			t.Errorf("%s pulled (%s) after a broken policy was written", r, d)
		}
	}
}
