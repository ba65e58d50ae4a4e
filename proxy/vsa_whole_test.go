package proxy

import (
	"testing"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/engine"
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// A VSA says PASSED only for what the decision it is signed on covered:
// not under content rules (layers are inspected as they stream, after the
// manifest's decision), and for an index only when its platform manifests
// are decided as it is.
func TestWholeDecision(t *testing.T) {
	image, err := ocimanifest.Parse([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
		"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	index, err := ocimanifest.Parse([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	sigs := &policy.Rule{Name: "r", Require: &policy.Require{Signatures: []string{"release"}}}
	content := &policy.Rule{Name: "r", Require: sigs.Require, Content: &policy.Content{}}
	conds := &policy.Rule{Name: "r", Require: &policy.Require{Signatures: []string{"release"}, Conditions: []*policy.Condition{{Expr: "true"}}}}
	signals := &policy.Rule{Name: "r", Require: &policy.Require{Signals: []*policy.SignalRequirement{{Provider: "vuln"}}}}
	for _, c := range []struct {
		name string
		r    *policy.Rule
		m    *ocimanifest.Manifest
		want bool
	}{
		{"image, signatures", sigs, image, true},
		{"index, signatures", sigs, index, true},
		{"image, content rule", content, image, false},
		{"index, conditions", conds, index, false},
		{"image, conditions", conds, image, true},
		{"index, signals", signals, index, false},
		{"no rule", nil, image, false},
	} {
		if got := wholeDecision(c.r, c.m); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// An allow served from an earlier decision because the evidence could not
// be fetched now (or inherited from one) verified nothing now: no VSA.
func TestSignsVSA(t *testing.T) {
	for _, c := range []struct {
		name string
		v    engine.Verdict
		want bool
	}{
		{"allowed", engine.Verdict{Allowed: true}, true},
		{"fallback", engine.Verdict{Allowed: true, Fallback: true}, false},
		{"waived", engine.Verdict{Allowed: true, Waivers: []string{"x"}}, false},
		{"would deny", engine.Verdict{Allowed: true, WouldDeny: true}, false},
		{"evidence", engine.Verdict{Allowed: true, Evidence: true}, false},
		{"denied", engine.Verdict{}, false},
	} {
		if got := signsVSA(c.v); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
