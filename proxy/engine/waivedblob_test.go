package engine

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify/content"
)

// A blob granted uninspected by a waived code-execution finding is served
// to the pull whose inspection failed only when that pull met, text for
// text, the finding the exception waived. Concurrent inspections of the
// same blob (as other classes) record one finding per scope, so the
// finding recorded when the manifest was decided may not be the one this
// pull met: an executable found by this pull is refused although a pickle
// finding of the same blob was waived.
func TestWaivedBlobNeedsTheFindingMet(t *testing.T) {
	blob := digest.FromString("checkpoint")
	pickle := &content.Finding{Format: content.FormatPickle, Offset: 2, Reason: "GLOBAL imports mylib.Config, which is not in the allowlist"}
	waivedReason := "rule models: content: layer " + blob.String() + ": " + pickle.Error()
	until := time.Now().Add(time.Hour)
	v := Verdict{Allowed: true, Rule: "models", Waivers: []string{"research-checkpoint"}, WaivedUntil: until,
		Reasons: []string{waivedReason, "rule models: waived by exception research-checkpoint (approved by a, expires x)"}}
	g := BlobGrant{Manifest: digest.FromString("manifest")}.waived(v, blob).until(v.WaivedUntil)
	if !g.Uninspected || !slices.Equal(g.WaivedFindings, []string{waivedReason}) {
		t.Fatalf("grant of a waived code-execution finding: %+v", g)
	}
	q := &Query{sub: Subject{Digest: blob}, rule: &policy.Rule{Name: "models"}, pol: &policy.Policy{}}
	for _, c := range []struct {
		name string
		cf   *ContentFailure
		want bool
	}{
		{"the waived finding", &ContentFailure{finding: pickle}, true},
		{"the waived finding, read from the records", &ContentFailure{finding: &content.Finding{Format: "content", Offset: -1, Reason: pickle.Error()}, recorded: true}, true},
		{"another pickle finding", &ContentFailure{finding: &content.Finding{Format: content.FormatPickle, Reason: "GLOBAL imports posix.system, which is not in the allowlist"}}, false},
		{"an executable found by another inspection", &ContentFailure{finding: &content.Finding{Format: content.FormatExecutable, Reason: "ELF executable"}}, false},
		{"a recorded finding of another class", &ContentFailure{finding: &content.Finding{Format: "content", Offset: -1, Reason: "executable: ELF executable"}, recorded: true}, false},
	} {
		wv, ok := q.WaivedBlob(g, c.cf)
		if ok != c.want {
			t.Errorf("%s: waived = %v, want %v", c.name, ok, c.want)
			continue
		}
		if ok && (wv.Result() != "waived" || !slices.Equal(wv.Waivers, []string{"research-checkpoint"}) || !wv.WaivedUntil.Equal(until) || wv.Reasons[0] != waivedReason) {
			t.Errorf("%s: verdict %+v; want waived by research-checkpoint, the finding its first reason", c.name, wv)
		}
	}
	// A grant joined with another manifest's waiving another finding of
	// the blob keeps only what both waived: nothing here.
	other := v
	other.Reasons = []string{"rule models: content: layer " + blob.String() + ": executable: ELF executable"}
	if j := g.alsoWaived(BlobGrant{}.waived(other, blob)); j.Uninspected || len(j.WaivedFindings) > 0 {
		t.Errorf("joined grants waiving different findings stay uninspected: %+v", j)
	}
	if j := g.union(BlobGrant{}); j.Uninspected {
		t.Errorf("a grant joined with an inspected one stays uninspected: %+v", j)
	}
	if _, ok := q.WaivedBlob(BlobGrant{}, &ContentFailure{finding: pickle}); ok {
		t.Error("an inspected grant waived a finding")
	}
}

// The children of a waived index and the signatures of a waived image are
// allowed by it: they carry its exceptions (audited as waived), not only
// its expiry; a denied child carries none.
func TestWaivedFromCarriesWaivers(t *testing.T) {
	until := time.Now().Add(time.Hour)
	parent := Verdict{Allowed: true, Waivers: []string{"legacy"}, WaivedUntil: until}
	child := Verdict{Allowed: true}.waivedFrom(parent)
	if child.Result() != "waived" || !slices.Equal(child.Waivers, []string{"legacy"}) || !child.WaivedUntil.Equal(until) {
		t.Errorf("child of a waived index: %+v; want waived by legacy until %v", child, until)
	}
	// Evidence of several waived subjects names every exception.
	acc := Verdict{Allowed: true}.waivedFrom(parent).waivedFrom(Verdict{Allowed: true, Waivers: []string{"other", "legacy"}})
	if !slices.Equal(acc.Waivers, []string{"legacy", "other"}) {
		t.Errorf("waivers of two subjects: %v", acc.Waivers)
	}
	if denied := (Verdict{}).waivedFrom(parent); denied.Result() != "deny" || len(denied.Waivers) > 0 {
		t.Errorf("denied child: %+v", denied)
	}
}
