package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
)

// The two routing forms (<upstream>/<repo> and containerd's ?ns=) reach the
// same repository with the same decision, and every decision is one audit
// line with time, client, upstream, repository, reference, digest (when
// resolved), rule, decision and reasons.
func TestRoutingFormsAndAudit(t *testing.T) {
	f := newFixture(t, harness.UpstreamOptions{}, gate.Options{})
	accept := map[string]string{"Accept": f.allowed.MediaType}
	st1, _, b1, err1 := harness.Get(ctx(t), f.url("open/app/manifests/v1"), accept)
	st2, _, b2, err2 := harness.Get(ctx(t), f.px.URL+"/v2/open/app/manifests/v1?ns="+f.up.Name, accept)
	if err1 != nil || err2 != nil || st1 != 200 || st2 != 200 || string(b1) != string(f.allowed.Manifest) || string(b2) != string(b1) {
		t.Fatalf("prefix form %d %v, ns form %d %v: bodies equal=%v", st1, err1, st2, err2, string(b1) == string(b2))
	}
	st, _, body, err := harness.Get(ctx(t), f.px.URL+"/v2/blocked/app/manifests/v1?ns="+f.up.Name, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := expectOCIError(t, "ns-form denied", st, body, http.StatusForbidden, "DENIED")
	if !strings.Contains(e.Message, gate.DenyRule) {
		t.Errorf("ns-form DENIED message %q", e.Message)
	}

	events := f.px.Audit(t)
	var allows, denies int
	for _, ev := range events {
		m := ev.Raw
		str := func(k string) string { s, _ := m[k].(string); return s }
		if _, err := time.Parse(time.RFC3339Nano, str("time")); err != nil {
			t.Errorf("audit time %q: %v", str("time"), err)
		}
		if !strings.HasPrefix(str("client"), "127.0.0.1:") {
			t.Errorf("audit client %q", str("client"))
		}
		if ev.Upstream != f.up.Name {
			t.Errorf("audit upstream %q", ev.Upstream)
		}
		reasons, _ := m["reasons"].([]any)
		if len(reasons) == 0 {
			t.Errorf("audit line without reasons: %v", m)
		}
		if str("reference") != "v1" {
			t.Errorf("audit reference %q", str("reference"))
		}
		switch ev.Decision {
		case "allow":
			allows++
			if ev.Repository != f.up.Name+"/open/app" || ev.Rule != gate.AllowRule || ev.Digest != f.allowed.Digest {
				t.Errorf("allow line: %v", m)
			}
		case "deny":
			denies++
			if ev.Repository != f.up.Name+"/blocked/app" || ev.Rule != gate.DenyRule {
				t.Errorf("deny line: %v", m)
			}
			if !slices.ContainsFunc(reasons, func(r any) bool { s, _ := r.(string); return strings.Contains(s, gate.DenyRule) }) {
				t.Errorf("deny reasons do not name the rule: %v", reasons)
			}
		default:
			t.Errorf("audit decision %q", ev.Decision)
		}
	}
	if allows < 1 || denies != 1 {
		t.Errorf("audit: %d allow, %d deny lines; want >= 1 and 1:\n%v", allows, denies, events)
	}
}
