package verifye2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/cosign"
)

// noSig is the denial for an image without a release signature.
func noSig(rule, d string) string { return "rule " + rule + ": no signature by key release on " + d }

// TestCosignV2KeyBased: an image signed by cosign v2 is served through the
// proxy with its exact digest to crane and go-containerregistry; an unsigned
// one is refused with the reason, which both clients show.
func TestCosignV2KeyBased(t *testing.T) {
	e := newEnv(t, envOptions{})
	signed := e.image("app/web", "v1")
	unsigned := e.image("app/web", "unsigned")
	e.c2.sign(e.release, e.upRef("app/web", signed.Digest))

	// crane: digest by tag, full pull.
	if r := harness.CraneDigest(t, e.pxRef("app/web:v1")); r.Err != nil || strings.TrimSpace(r.Stdout) != signed.Digest {
		t.Fatalf("crane digest through the proxy: %s", r)
	}
	if r, dir := harness.CranePull(t, e.pxRef("app/web:v1"), ""); r.Err != nil {
		t.Fatalf("crane pull: %s", r)
	} else if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err != nil || !strings.Contains(string(b), signed.Digest) {
		t.Fatalf("crane pull layout index lacks %s: %v %s", signed.Digest, err, b)
	}
	e.expectProxyAllowed("app/web:v1", signed.Digest)
	e.expectProxyAllowed("app/web@"+signed.Digest, signed.Digest)

	want := noSig("pg-apps", unsigned.Digest)
	r := harness.CraneDigest(t, e.pxRef("app/web:unsigned"))
	if r.Err == nil || !strings.Contains(r.Stderr, want) {
		t.Fatalf("crane digest of the unsigned image: want failure showing %q\n%s", want, r)
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/web@"+unsigned.Digest), ""); r.Err == nil || !strings.Contains(r.Stderr, want) {
		t.Fatalf("crane pull of the unsigned image: want failure showing %q\n%s", want, r)
	}
	e.expectProxyDenied("app/web:unsigned", want)

	e.expectCLI("app/web:v1", 0)
	e.expectCLI("app/web@"+signed.Digest, 0)
	e.expectCLI("app/web:unsigned", 10, want)

	// The audit log has both decisions with the policy revision and checks.
	var allow, deny bool
	for _, ev := range e.px.Audit(t) {
		if ev.Digest == signed.Digest && ev.Decision == "allow" && ev.Rule == "pg-apps" && ev.Raw["policyRevision"] == e.px.Server.Policy().Revision() {
			// Every check with its result and the evidence digests used.
			checks := toJSON(ev.Raw["checks"])
			if !strings.Contains(checks, `"name":"signature","passed":true`) || !strings.Contains(checks, `"evidence":["sha256:`) {
				t.Fatalf("audit allow event lacks the signature check with its evidence digest: %s", checks)
			}
			allow = true
		}
		if ev.Digest == unsigned.Digest && ev.Decision == "deny" && strings.Contains(toJSON(ev.Raw["reasons"]), want) {
			deny = true
		}
	}
	if !allow || !deny {
		t.Fatalf("audit log: allow event %v, deny event %v", allow, deny)
	}
}

// TestCosignV3Bundles: cosign v3 signs and attests as sigstore bundle
// referrers, found through the referrers API and through the sha256-<hex>
// tag fallback; the rule needs the signature and the attestation with a true
// condition.
func TestCosignV3Bundles(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		name := map[bool]string{true: "referrers-api", false: "referrers-tag"}[referrers]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOptions{referrers: referrers})
			img := e.image("att/svc", "v1")
			ref := e.upRef("att/svc", img.Digest)
			e.c3.sign(e.release, ref)
			e.c3.attest(e.release, ref, goodPred)
			if !referrers {
				// cosign v3 maintained the fallback tag itself.
				e.getUpstream("att/svc", "sha256-"+digest.Digest(img.Digest).Encoded())
			}
			if r := harness.CraneDigest(t, e.pxRef("att/svc:v1")); r.Err != nil || strings.TrimSpace(r.Stdout) != img.Digest {
				t.Fatalf("crane digest: %s", r)
			}
			e.expectProxyAllowed("att/svc:v1", img.Digest)
			res := e.expectCLI("att/svc:v1", 0)
			var sigOK, attOK bool
			for _, c := range res.decision.Checks {
				sigOK = sigOK || (c.Name == "signature" && c.Passed && strings.Contains(c.Detail, "bundle-referrer"))
				attOK = attOK || (c.Name == "attestation" && c.Passed && strings.Contains(c.Detail, "is true"))
			}
			if !sigOK || !attOK {
				t.Fatalf("checks lack a passing bundle signature (%v) or attestation condition (%v): %+v", sigOK, attOK, res.decision.Checks)
			}

			// An image with only the signature lacks the attestation.
			other := e.image("att/svc", "v2")
			e.c3.sign(e.release, e.upRef("att/svc", other.Digest))
			reason := "rule pg-attested: attestation " + slsa02 + " signed by release: none found"
			e.expectProxyDenied("att/svc:v2", reason)
			e.expectCLI("att/svc:v2", 13, reason)
		})
	}
}

// TestAttestationCondition: a cosign v2 attestation whose predicate satisfies
// the CEL condition allows; one that does not is denied with the condition.
func TestAttestationCondition(t *testing.T) {
	e := newEnv(t, envOptions{})
	good := e.image("att/cond", "good")
	bad := e.image("att/cond", "bad")
	for _, img := range []*harness.Image{good, bad} {
		e.c2.sign(e.release, e.upRef("att/cond", img.Digest))
	}
	e.c2.attest(e.release, e.upRef("att/cond", good.Digest), goodPred)
	e.c2.attest(e.release, e.upRef("att/cond", bad.Digest), evilPred)

	e.expectProxyAllowed("att/cond:good", good.Digest)
	e.expectCLI("att/cond:good", 0)
	reason := "rule pg-attested: attestation " + slsa02 + " signed by release: condition " + conditionQ + " is false"
	if r := harness.CraneDigest(t, e.pxRef("att/cond:bad")); r.Err == nil || !strings.Contains(r.Stderr, reason) {
		t.Fatalf("crane: want failure showing %q\n%s", reason, r)
	}
	e.expectProxyDenied("att/cond:bad", reason)
	e.expectCLI("att/cond:bad", 13, reason)
}

// TestAuditMode: an audit-mode rule serves an unsigned image and logs the
// denial it would have made.
func TestAuditMode(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.image("audit/app", "v1")
	want := noSig("pg-audited", img.Digest)
	if r := harness.CraneDigest(t, e.pxRef("audit/app:v1")); r.Err != nil || strings.TrimSpace(r.Stdout) != img.Digest {
		t.Fatalf("crane digest under audit mode: %s", r)
	}
	e.expectProxyAllowed("audit/app:v1", img.Digest)
	found := false
	for _, ev := range e.px.Audit(t) {
		if ev.Digest == img.Digest && ev.Raw["kind"] == "manifest" {
			if ev.Decision != "allow" || ev.Raw["wouldDeny"] != true || ev.Raw["mode"] != "audit" || !strings.Contains(toJSON(ev.Raw["reasons"]), want) {
				t.Fatalf("audit event %v: want allow, wouldDeny, mode audit, reason %q", ev.Raw, want)
			}
			found = true
		}
	}
	if !found {
		t.Fatal("no audit event for the audited pull")
	}
	if !strings.Contains(e.px.Log(), "wouldDeny=true") {
		t.Fatalf("proxy log has no wouldDeny=true line")
	}
	// The CLI reports the would-deny decision with the denial's exit code.
	r := e.expectCLI("audit/app:v1", 10, want)
	if !r.decision.Allowed || !r.decision.WouldDeny {
		t.Fatalf("CLI decision %+v: want allowed with wouldDeny", r.decision)
	}
	r = runCLI(t, "verify", upName+"/audit/app:v1", "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath)
	if r.code != 10 || !strings.Contains(r.stdout, "ALLOWED (audit mode: would deny)") {
		t.Fatalf("text output: exit %d\n%s", r.code, r.stdout)
	}
}

// TestMultiArch: a signature on the index covers its children (pulled by
// platform through the index, and by digest once the index was seen); a
// signature on one child covers only that child.
func TestMultiArch(t *testing.T) {
	e := newEnv(t, envOptions{})
	idx := e.up.PushIndex(t, "app/multi", "v1", false)
	e.c2.sign(e.release, e.upRef("app/multi", idx.Digest))
	arm := idx.Children[1]
	got, err := harness.GGCRIndexPlatform(e.pxRef("app/multi:v1"), *arm.Platform)
	if err != nil || got != arm.Digest {
		t.Fatalf("ggcr platform pull through the signed index: %s %v, want %s", got, err, arm.Digest)
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/multi:v1"), "linux/arm64/v8"); r.Err != nil {
		t.Fatalf("crane pull --platform linux/arm64/v8: %s", r)
	}
	e.expectProxyAllowed("app/multi@"+idx.Children[0].Digest, idx.Children[0].Digest)
	e.expectProxyAllowed("app/multi@"+arm.Digest, arm.Digest)
	e.expectCLI("app/multi:v1", 0)

	// Signature on a child only.
	idx2 := e.up.PushIndex(t, "app/multi2", "v1", false)
	signedChild, unsignedChild := idx2.Children[0], idx2.Children[1]
	e.c2.sign(e.release, e.upRef("app/multi2", signedChild.Digest))
	e.expectProxyDenied("app/multi2:v1", noSig("pg-apps", idx2.Digest))
	e.expectProxyAllowed("app/multi2@"+signedChild.Digest, signedChild.Digest)
	e.expectProxyDenied("app/multi2@"+unsignedChild.Digest, noSig("pg-apps", unsignedChild.Digest))
	e.expectCLI("app/multi2@"+signedChild.Digest, 0)
	e.expectCLI("app/multi2@"+unsignedChild.Digest, 10, noSig("pg-apps", unsignedChild.Digest))
	e.expectCLI("app/multi2:v1", 10, noSig("pg-apps", idx2.Digest))
}

// TestDeniedBlobByDigest: the layers and config of a denied image are not
// served by digest, before or after the manifest was refused.
func TestDeniedBlobByDigest(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.image("app/blocked", "v1")
	get := func(d string) (int, []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, _, b, err := harness.Get(ctx, e.px.URL+"/v2/"+upName+"/app/blocked/blobs/"+d, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st, b
	}
	for _, phase := range []string{"before", "after"} {
		if phase == "after" {
			e.expectProxyDenied("app/blocked:v1", noSig("pg-apps", img.Digest))
		}
		for _, d := range []string{img.Layers[0].Digest, img.Config.Digest} {
			st, b := get(d)
			oe, _ := harness.ParseOCIError(b)
			if st != http.StatusForbidden || oe.Code != "DENIED" {
				t.Fatalf("%s the manifest denial: GET blob %s: %d %s", phase, d, st, b)
			}
			if phase == "after" && !strings.Contains(oe.Message, "belongs only to denied manifests") {
				t.Errorf("blob denial after the manifest denial: %s", oe.Message)
			}
		}
		if r := harness.Run(t, "crane", "blob", "--insecure", e.pxRef("app/blocked@"+img.Layers[0].Digest)); r.Err == nil {
			t.Fatalf("crane blob of a denied image's layer succeeded")
		}
	}
	if _, ok := e.px.Server.Store().Has(digest.Digest(img.Layers[0].Digest)); ok {
		t.Fatal("a denied image's layer is in the content store")
	}
}

// TestCosignVerifyThroughProxy: signature and attestation artifacts are
// served through the proxy, so cosign itself can verify against it.
func TestCosignVerifyThroughProxy(t *testing.T) {
	e := newEnv(t, envOptions{referrers: true})
	img := e.image("att/cv", "v1")
	e.c2.sign(e.release, e.upRef("att/cv", img.Digest))
	e.c2.attest(e.release, e.upRef("att/cv", img.Digest), goodPred)
	pub := filepath.Join(e.dir, "release.pub")
	ref := e.pxRef("att/cv@" + img.Digest)
	out, err := e.c2.exec("verify", "--key", pub, "--allow-insecure-registry", "--insecure-ignore-tlog=true", ref)
	if err != nil || !strings.Contains(out, img.Digest) {
		t.Fatalf("cosign2 verify through the proxy: %v\n%s", err, out)
	}
	out, err = e.c2.exec("verify-attestation", "--key", pub, "--type", "slsaprovenance", "--allow-insecure-registry", "--insecure-ignore-tlog=true", ref)
	if err != nil {
		t.Fatalf("cosign2 verify-attestation through the proxy: %v\n%s", err, out)
	}
	// The evidence manifests were served under the verify rule.
	st, _, _ := e.manifestGET("att/cv:" + cosign.TagFor(digest.Digest(img.Digest), "sig"))
	if st != http.StatusOK {
		t.Fatalf("GET .sig through the proxy: %d", st)
	}
	// And a wrong key fails cosign verify through the proxy.
	e.writeFile("attacker.pub", e.attacker.pub)
	if out, err := e.c2.exec("verify", "--key", filepath.Join(e.dir, "attacker.pub"), "--allow-insecure-registry", "--insecure-ignore-tlog=true", ref); err == nil {
		t.Fatalf("cosign verify with the attacker key succeeded:\n%s", out)
	}

	// cosign v3 bundles through the proxy's referrers API (the image is
	// allowed by pg-apps, which needs a signature only).
	img3 := e.image("app/cv3", "v1")
	e.c3.sign(e.release, e.upRef("app/cv3", img3.Digest))
	out, err = e.c3.exec("verify", "--key", pub, "--allow-insecure-registry", "--insecure-ignore-tlog=true", e.pxRef("app/cv3@"+img3.Digest))
	if err != nil || !strings.Contains(out, img3.Digest) {
		t.Fatalf("cosign3 verify through the proxy: %v\n%s", err, out)
	}
	// Evidence of an image the policy denies is not served: pg-attested
	// also needs an attestation, which att/cv3 lacks.
	img4 := e.image("att/cv3", "v1")
	e.c3.sign(e.release, e.upRef("att/cv3", img4.Digest))
	if out, err = e.c3.exec("verify", "--key", pub, "--allow-insecure-registry", "--insecure-ignore-tlog=true", e.pxRef("att/cv3@"+img4.Digest)); err == nil {
		t.Fatalf("signatures of a denied image were served:\n%s", out)
	}
}

// TestPolicyHotReload: rotating the key file, editing the policy and a broken
// policy take effect (or not) at once, with a new revision each time.
func TestPolicyHotReload(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.image("app/reload", "v1")
	e.c2.sign(e.release, e.upRef("app/reload", img.Digest))
	e.expectProxyAllowed("app/reload:v1", img.Digest) // verdict now cached
	rev0 := e.px.Server.Policy().Revision()

	// Rotate the trust file to another key: the cached allow no longer applies.
	e.replaceFile("release.pub", e.attacker.pub)
	rev1 := e.waitRevision(rev0)
	e.expectProxyDenied("app/reload:v1", noSig("pg-apps", img.Digest))
	e.expectCLI("app/reload:v1", 11, noSig("pg-apps", img.Digest))

	// Back to the release key.
	e.replaceFile("release.pub", e.release.pub)
	rev2 := e.waitRevision(rev1)
	if rev2 != rev0 {
		t.Errorf("revision after restoring the key %s, want the original %s", rev2, rev0)
	}
	e.expectProxyAllowed("app/reload:v1", img.Digest)

	// Edit the policy: the app rule now denies.
	denyPolicy := strings.Replace(defaultPolicy, "  - name: pg-apps\n    match: [\"upstream.local/app/**\"]\n    require:\n      signatures: [release]\n",
		"  - name: pg-apps\n    match: [\"upstream.local/app/**\"]\n    action: deny\n", 1)
	if denyPolicy == defaultPolicy {
		t.Fatal("policy edit did not apply")
	}
	e.replaceFile("policy.yaml", []byte(denyPolicy))
	rev3 := e.waitRevision(rev2)
	e.expectProxyDenied("app/reload:v1", "rule pg-apps: action deny")
	e.expectCLI("app/reload:v1", 13, "rule pg-apps: action deny")

	// A broken policy (verify rule without requirements, audit mode) is
	// refused: the one in force stays, and so do its decisions.
	broken := defaultPolicy + "  - name: pg-broken\n    match: [\"upstream.local/broken/**\"]\n    mode: audit\n"
	e.replaceFile("policy.yaml", []byte(broken))
	time.Sleep(600 * time.Millisecond)
	if r := e.px.Server.Policy().Revision(); r != rev3 {
		t.Fatalf("a broken policy replaced the one in force: revision %s, want %s", r, rev3)
	}
	e.expectProxyDenied("app/reload:v1", "rule pg-apps: action deny")
	if err := e.px.Server.ReloadPolicy(); err == nil {
		t.Fatal("SIGHUP reload of a broken policy reported no error")
	}
	// The CLI refuses it as a configuration error.
	if r := e.cli("app/reload:v1"); r.code != 2 {
		t.Fatalf("pullgate verify with a broken policy: exit %d, want 2\n%s", r.code, r.stderr)
	}
}
