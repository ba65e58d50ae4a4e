package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/cosign"
)

// Exceptions are applied by the engine at its clock: an unsigned image a
// waiver names is served (manifest and blobs) and reported waived; once
// the waiver expires, neither its cached decision nor its blob grants are
// served; a signature replayed from another image (exit 12) is never
// waived.
func TestWaivers(t *testing.T) {
	e := newEnv(t)
	w := seed(t, e)
	t0 := time.Now().UTC().Truncate(time.Second)
	var mu sync.Mutex
	now := t0
	e.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); now = t; mu.Unlock() }

	// A real signature by release over w.good's digest, attached to another
	// image as its referrer: the verifier reports a digest mismatch.
	replay := e.up.PushImage(t, "signed/replay", "1", harness.ImageOptions{})
	st := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"signed/replay","digest":{"sha256":%q}}],"predicateType":%q,"predicate":{}}`,
		digest.Digest(w.good.Digest).Encoded(), cosign.SignPredicateType)
	bundle, err := attest.Sign(t.Context(), []byte(st), attest.SignOptions{Signer: e.release})
	if err != nil {
		t.Fatal(err)
	}
	e.up.PushArtifact(t, "signed/replay", harness.ArtifactOptions{
		ArtifactType: cosign.BundleMediaType, Subject: replay.Descriptor(),
		Payload: bundle, PayloadMediaType: cosign.BundleMediaType,
		Annotations: map[string]string{cosign.BundleContentAnnotation: "dsse-envelope"},
	})

	expires := t0.Add(2 * time.Minute) // well within the 10m allow TTL
	pol := testPolicy + `exceptions:
  - name: legacy-none
    match: {repositories: ["upstream.local/signed/none", "upstream.local/signed/replay"]}
    waive: ["regexp:rule signed: no signature by key release on sha256:[0-9a-f]{64}"]
    expires: ` + expires.Format(time.RFC3339) + `
    reason: vendor image, signed from 2.0 on
    approvedBy: security@example.com
`
	if err := os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	e.reg = prometheus.NewRegistry()
	eng := e.open(t, "store")

	v, dgst := admit(t, eng, subject(t, eng, "signed/none", "1"))
	if !v.Allowed || v.Result() != "waived" || !slices.Equal(v.Waivers, []string{"legacy-none"}) || !v.WaivedUntil.Equal(expires) || v.ExitCode != 0 {
		t.Fatalf("unsigned image under a waiver: %+v", v)
	}
	if dgst != digest.Digest(w.unsigned.Digest) {
		t.Fatalf("decided %s", dgst)
	}
	if n := counter(t, e.reg, "pullgate_waived_decisions_total", "legacy-none", "signed"); n != 1 {
		t.Errorf("pullgate_waived_decisions_total{rule=signed,exception=legacy-none} = %v, want 1", n)
	}
	reasons := strings.Join(v.Reasons, "; ")
	if !strings.Contains(reasons, "rule signed: no signature by key release on "+w.unsigned.Digest) || !strings.Contains(reasons, "waived by exception legacy-none") {
		t.Errorf("waived reasons %q: want the original reason and the exception", reasons)
	}
	blob := func() (bool, []string) {
		q, _ := eng.Query(t.Context(), subject(t, eng, "signed/none", w.unsigned.Layers[0].Digest))
		_, bv, ok, err := eng.AdmitBlob(q)
		if err != nil {
			t.Fatal(err)
		}
		return ok, bv.Reasons
	}
	if ok, r := blob(); !ok {
		t.Fatalf("layer of a waived image refused: %v", r)
	}
	// Cached while the waiver stands.
	set(expires.Add(-time.Second))
	q, _ := eng.Query(t.Context(), subject(t, eng, "signed/none", w.unsigned.Digest))
	if _, cv, cached, err := eng.AdmitManifest(q, dgst); err != nil || !cached || cv.Result() != "waived" {
		t.Fatalf("before expiry: cached=%v %+v %v", cached, cv, err)
	}

	// Expired: the cached decision and the blob grant no longer stand.
	set(expires)
	q, _ = eng.Query(t.Context(), subject(t, eng, "signed/none", w.unsigned.Digest))
	if _, ev, cached, err := eng.AdmitManifest(q, dgst); err != nil || cached || ev.Allowed || ev.ExitCode != policy.ExitNoEvidence {
		t.Fatalf("after expiry: cached=%v %+v %v; want denied, exit 10", cached, ev, err)
	}
	if ok, _ := blob(); ok {
		t.Fatal("layer of an image whose waiver expired still granted")
	}

	// A digest mismatch is never waived, whatever the exception says.
	set(t0)
	rv, _ := admit(t, eng, subject(t, eng, "signed/replay", "1"))
	if rv.Allowed || rv.ExitCode != policy.ExitMismatch || len(rv.Waivers) > 0 {
		t.Fatalf("replayed signature under a waiver: %+v; want denied, exit 12", rv)
	}
	if !slices.ContainsFunc(rv.Checks, func(c audit.Check) bool { return strings.Contains(c.Detail, "mismatch is never waived") }) {
		t.Errorf("checks do not say why the exception was not applied: %+v", rv.Checks)
	}
}

// counter is the value of a counter with the given label values, as the
// registry gathers it, labels in the order of their names (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, lp := range m.GetLabel() {
				got = append(got, lp.GetValue())
			}
			if slices.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
