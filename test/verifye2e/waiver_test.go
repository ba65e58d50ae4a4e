package verifye2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/cosign"
)

// TestWaivers (issue 16): policy exceptions on a real upstream, with
// signatures made by cosign. An unsigned image under a rule that needs a
// signature is refused; an exception naming its repository and reason
// serves it (crane pulls it whole) and the audit log records the decision
// as waived with the exception's name and the original reason; an expired
// exception waives nothing (and `policy lint` says so); a signature
// replayed from another image (exit 12) is refused whatever the exception
// waives, and so is a blob whose bytes fail their digest check.
func TestWaivers(t *testing.T) {
	e := newEnv(t, envOptions{})
	legacy := e.image("app/w-legacy", "v1")
	old := e.image("app/w-old", "v1")
	// A release signature of image a, copied to b's cosign tag.
	a, b := e.image("app/w-replay", "a"), e.image("app/w-replay", "b")
	e.c2.sign(e.release, e.upRef("app/w-replay", a.Digest))
	e.putManifest("app/w-replay", cosign.TagFor(digest.Digest(b.Digest), "sig"), ocispec.MediaTypeImageManifest,
		e.getUpstream("app/w-replay", cosign.TagFor(digest.Digest(a.Digest), "sig")))
	// An unsigned image whose layer the upstream serves other bytes for.
	lied := e.image("app/w-lied", "v1")
	e.up.Liar.LieBlob(lied.Layers[0].Digest)

	// Before any exception: refused.
	e.expectProxyDenied("app/w-legacy:v1", noSig("pg-apps", legacy.Digest))

	const waive = `"regexp:rule pg-apps: no signature by key release on sha256:[0-9a-f]{64}"`
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
	exceptions := fmt.Sprintf(`exceptions:
  - name: legacy-vendor
    match: {repositories: ["upstream.local/app/w-legacy", "upstream.local/app/w-replay", "upstream.local/app/w-lied"]}
    waive: [%s]
    expires: %s
    reason: vendor image, signed from release 2.0 on
    approvedBy: security@example.com
  - name: lapsed
    match: {digest: %s}
    waive: [%s]
    expires: 2020-01-01T00:00:00Z
    reason: lapsed
    approvedBy: security@example.com
`, waive, tomorrow, old.Digest, waive)
	rev := e.px.Server.Policy().Revision()
	e.replaceFile("policy.yaml", []byte(defaultPolicy+exceptions))
	e.waitRevision(rev)

	// Waived: served whole to crane, and to go-containerregistry.
	if r, _ := harness.CranePull(t, e.pxRef("app/w-legacy:v1"), ""); r.Err != nil {
		t.Fatalf("crane pull of a waived image: %s", r)
	}
	e.expectProxyAllowed("app/w-legacy:v1", legacy.Digest)
	var audited bool
	for _, ev := range e.px.Audit(t) {
		if ev.Digest != legacy.Digest || ev.Raw["kind"] != "manifest" {
			continue
		}
		reasons := fmt.Sprint(ev.Raw["reasons"])
		waivers := fmt.Sprint(ev.Raw["waivers"])
		if ev.Decision == "waived" && ev.Rule == "pg-apps" && waivers == "[legacy-vendor]" &&
			strings.Contains(reasons, noSig("pg-apps", legacy.Digest)) && ev.Raw["waivedUntil"] == tomorrow {
			audited = true
		} else if ev.Decision != "deny" {
			t.Errorf("audit event of the waived image: %v", ev.Raw)
		}
	}
	if !audited {
		t.Errorf("no audit event with decision waived, waivers [legacy-vendor], the original reason and waivedUntil %s:\n%v", tomorrow, e.px.Audit(t))
	}
	r := e.expectCLI("app/w-legacy:v1", 0, noSig("pg-apps", legacy.Digest), "waived by exception legacy-vendor")
	if !slices.Equal(r.decision.Waivers, []string{"legacy-vendor"}) {
		t.Errorf("pullgate verify: waivers %v", r.decision.Waivers)
	}

	// Expired: waives nothing.
	e.expectProxyDenied("app/w-old:v1", noSig("pg-apps", old.Digest))
	e.expectCLI("app/w-old:v1", 10, noSig("pg-apps", old.Digest))
	lint := runCLI(t, "policy", "lint", e.px.PolicyPath)
	if lint.code != 1 || !strings.Contains(lint.stdout, e.px.PolicyPath+":") || !strings.Contains(lint.stdout, "exception lapsed expired at 2020-01-01T00:00:00Z: it waives nothing") {
		t.Errorf("policy lint with an expired exception: exit %d\n%s%s", lint.code, lint.stdout, lint.stderr)
	}

	// A replayed signature (digest mismatch): never waived.
	e.expectProxyDenied("app/w-replay:b", noSig("pg-apps", b.Digest))
	e.expectCLI("app/w-replay:b", 12, noSig("pg-apps", b.Digest))

	// A blob that fails its digest check: the manifest is waived, the blob
	// is never served, and nothing of it is stored.
	if st, _, body := e.manifestGET("app/w-lied:v1"); st != http.StatusOK || digest.FromBytes(body).String() != lied.Digest {
		t.Fatalf("manifest of the waived image with a lying layer: %d", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	layer := lied.Layers[0]
	st, _, body, err := harness.Get(ctx, e.px.URL+"/v2/"+upName+"/app/w-lied/blobs/"+layer.Digest, nil)
	if err == nil && st == http.StatusOK && int64(len(body)) >= layer.Size {
		t.Fatalf("a blob that failed its digest check was served whole under a waiver (%d bytes)", len(body))
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/w-lied:v1"), ""); r.Err == nil {
		t.Fatal("crane pulled an image whose layer fails its digest check")
	}
	if e.up.Liar.Lies() == 0 {
		t.Fatal("the proxy never fetched the lying layer")
	}
}
