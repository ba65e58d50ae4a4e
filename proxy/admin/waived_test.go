package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/proxy/audit"
)

// A waived decision shows its exceptions and their expiry; the filter
// selects it.
func TestWaivedDecision(t *testing.T) {
	ts, ring := fixture(t)
	ring.Add(audit.Event{Time: now.Add(-time.Minute), Repository: "up.local/app/vendor", Upstream: "up.local", Reference: "1",
		Kind: "manifest", Rule: "apps", Decision: "waived", Waivers: []string{"vendor-agent"}, WaivedUntil: now.Add(48 * time.Hour),
		Reasons: []string{"rule apps: no signature by key release on sha256:" + strings.Repeat("b", 64)}})
	r, b := fetch(t, "GET", ts.URL+"/ui/decision?id=3")
	if r.StatusCode != 200 || !strings.Contains(b, "by exception vendor-agent, until "+now.Add(48*time.Hour).UTC().Format(time.RFC3339)) {
		t.Fatalf("%d %s", r.StatusCode, b)
	}
	r, b = fetch(t, "GET", ts.URL+"/ui?decision=waived")
	if r.StatusCode != 200 || !strings.Contains(b, "up.local/app/vendor") || strings.Contains(b, "up.local/app/web") {
		t.Fatalf("filter waived: %d %s", r.StatusCode, b)
	}
}
