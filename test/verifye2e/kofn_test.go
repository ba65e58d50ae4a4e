package verifye2e

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/cosign"
)

// kofnPolicy needs two of three trusted keys (issue 16), for signatures and
// for SLSA provenance attestations whose condition holds.
const kofnPolicy = `trust:
  keys:
    - {name: ci-a, path: ./ci-a.pub}
    - {name: ci-b, path: ./ci-b.pub}
    - {name: release, path: ./release.pub}
  identities:
    - {name: id-app, issuer: https://token.actions.githubusercontent.com, subjectRegExp: ^https://github\.com/acme/app/}
    - {name: id-acme, issuer: https://token.actions.githubusercontent.com, subjectRegExp: ^https://github\.com/acme/}
  trustedRoot: ./trusted_root.json
rules:
  - name: platform
    match: ["upstream.local/platform/**"]
    require:
      signatures: {anyOf: [ci-a, ci-b, release], min: 2}
  - name: platform-att
    match: ["upstream.local/platatt/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: {anyOf: [ci-a, ci-b, release], min: 2}
          condition: 'predicate.builder.id == "https://ci.example/builder"'
  - name: keyless
    match: ["upstream.local/klkofn/**"]
    require:
      signatures: {anyOf: [id-app, id-acme], min: 2}
`

// TestKOfNSigners: images signed with real cosign v2 (legacy .sig) and v3
// (bundle referrers) by 2 of 3 trusted keys are served under min: 2; one
// trusted signer, one trusted signer plus an untrusted key, and one key
// signing twice (v2 and v3) are refused, naming who signed and who is
// missing, in crane's error, the OCI DENIED message, the audit log and
// `pullgate verify`'s exit code.
func TestKOfNSigners(t *testing.T) {
	var ciA, ciB *key
	e := newEnv(t, envOptions{policy: kofnPolicy, referrers: true, setup: func(e *env) {
		ciA, ciB = newKey(t, e.c2, "ci-a"), newKey(t, e.c2, "ci-b")
		e.writeFile("ci-a.pub", ciA.pub)
		e.writeFile("ci-b.pub", ciB.pub)
	}})
	const repo = "platform/app"
	two := e.image(repo, "two")          // ci-a (v2) + release (v2)
	mixed := e.image(repo, "mixed")      // ci-a (v3 bundle) + release (v2)
	one := e.image(repo, "one")          // ci-a
	untrusted := e.image(repo, "attack") // ci-a + attacker
	twice := e.image(repo, "twice")      // ci-a (v2) + ci-a (v3 bundle)
	e.c2.sign(ciA, e.upRef(repo, two.Digest))
	e.c2.sign(e.release, e.upRef(repo, two.Digest))
	e.c3.sign(ciA, e.upRef(repo, mixed.Digest))
	e.c2.sign(e.release, e.upRef(repo, mixed.Digest))
	e.c2.sign(ciA, e.upRef(repo, one.Digest))
	e.c2.sign(ciA, e.upRef(repo, untrusted.Digest))
	e.c2.sign(e.attacker, e.upRef(repo, untrusted.Digest))
	e.c2.sign(ciA, e.upRef(repo, twice.Digest))
	e.c3.sign(ciA, e.upRef(repo, twice.Digest))

	for _, img := range []*harness.Image{two, mixed} {
		tag := repo + ":" + img.Tag
		if r := harness.CraneDigest(t, e.pxRef(tag)); r.Err != nil || strings.TrimSpace(r.Stdout) != img.Digest {
			t.Fatalf("crane digest %s through the proxy: %s", tag, r)
		}
		e.expectProxyAllowed(tag, img.Digest)
		res := e.expectCLI(tag, 0)
		var signers []string
		for _, c := range res.decision.Checks {
			if c.Name == "signature" && c.Passed && strings.HasPrefix(c.Detail, "signed by key ") {
				signers = append(signers, strings.Fields(c.Detail)[3])
			}
		}
		sort.Strings(signers)
		if strings.Join(signers, ",") != "ci-a,release" {
			t.Errorf("%s: passing signature checks name %v, want ci-a and release: %+v", tag, signers, res.decision.Checks)
		}
	}

	missing := "rule platform: signatures: 1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"
	for _, c := range []struct {
		img  *harness.Image
		exit int
	}{
		{one, 13},
		// The attacker's signature counts zero; an invalid signature is the
		// likelier cause of the denial (exit 11).
		{untrusted, 11},
		// ci-a's v2 and v3 signatures both verify (mixed shows the v3 one
		// counts) but are one signer.
		{twice, 13},
	} {
		tag := repo + ":" + c.img.Tag
		if r := harness.CraneDigest(t, e.pxRef(tag)); r.Err == nil || !strings.Contains(r.Stderr, missing) {
			t.Errorf("crane digest %s: want failure showing %q\n%s", tag, missing, r)
		}
		e.expectProxyDenied(tag, missing)
		res := e.expectCLI(tag, c.exit, missing)
		if c.img == twice {
			// Both of ci-a's signatures verified; the second did not count.
			checks := toJSON(res.decision.Checks)
			for _, want := range []string{"signed by key ci-a (cosign-signature)", "signed by key ci-a (bundle-referrer)", "(not counted: ci-a counts once)"} {
				if !strings.Contains(checks, want) {
					t.Errorf("checks of %s lack %q: %s", tag, want, checks)
				}
			}
		}
	}

	// The decision cache keys on the policy revision, which covers min:
	// lowering it to 1 serves the image signed by ci-a alone.
	old := e.px.Server.Policy().Revision()
	e.replaceFile("policy.yaml", []byte(strings.Replace(kofnPolicy, "[ci-a, ci-b, release], min: 2}\n  - name: platform-att", "[ci-a, ci-b, release], min: 1}\n  - name: platform-att", 1)))
	e.waitRevision(old)
	e.expectProxyAllowed(repo+":one", one.Digest)

	denied := map[string]bool{}
	for _, ev := range e.px.Audit(t) {
		if ev.Decision == "deny" && ev.Rule == "platform" && strings.Contains(toJSON(ev.Raw["reasons"]), missing) {
			denied[ev.Digest] = true
		}
	}
	for _, img := range []*harness.Image{one, untrusted, twice} {
		if !denied[img.Digest] {
			t.Errorf("audit log lacks the denial of %s:%s with %q", repo, img.Tag, missing)
		}
	}
}

// TestKOfNAttesters: SLSA provenance attested with cosign by two trusted
// keys, each passing the condition, is served; when one of the two
// attestations fails the condition it does not count, and the reason says
// so.
func TestKOfNAttesters(t *testing.T) {
	var ciA *key
	e := newEnv(t, envOptions{policy: kofnPolicy, setup: func(e *env) {
		ciA = newKey(t, e.c2, "ci-a")
		e.writeFile("ci-a.pub", ciA.pub)
		e.writeFile("ci-b.pub", newKey(t, e.c2, "ci-b").pub)
	}})
	const repo = "platatt/app"
	good := e.image(repo, "good")
	bad := e.image(repo, "bad")
	for _, img := range []*harness.Image{good, bad} {
		e.c2.attest(ciA, e.upRef(repo, img.Digest), goodPred)
	}
	e.c2.attest(e.release, e.upRef(repo, good.Digest), goodPred)
	e.c2.attest(e.release, e.upRef(repo, bad.Digest), evilPred)

	if r := harness.CraneDigest(t, e.pxRef(repo+":good")); r.Err != nil || strings.TrimSpace(r.Stdout) != good.Digest {
		t.Fatalf("crane digest: %s", r)
	}
	e.expectProxyAllowed(repo+":good", good.Digest)
	e.expectCLI(repo+":good", 0)

	reason := "rule platform-att: attestation " + slsa02 + " signed by 2 of ci-a, ci-b, release: 1 of 2 required signers verified (signed: ci-a; missing: ci-b, release); condition " + conditionQ + " is false for release"
	if r := harness.CraneDigest(t, e.pxRef(repo+":bad")); r.Err == nil || !strings.Contains(r.Stderr, reason) {
		t.Fatalf("crane: want failure showing %q\n%s", reason, r)
	}
	e.expectProxyDenied(repo+":bad", reason)
	e.expectCLI(repo+":bad", 13, reason)
}

// TestKOfNKeyless: keyless signatures (sigstore-go's virtual Fulcio, Rekor
// and TSA) by two certificate identities meet a 2-of-2 identity rule; one
// certificate that both identity entries match is one signer.
func TestKOfNKeyless(t *testing.T) {
	e := newEnv(t, envOptions{policy: kofnPolicy, referrers: true, setup: func(e *env) {
		e.writeFile("ci-a.pub", newKey(t, e.c2, "ci-a").pub)
		e.writeFile("ci-b.pub", newKey(t, e.c2, "ci-b").pub)
	}})
	const repo = "klkofn/app"
	libSubject := "https://github.com/acme/lib/.github/workflows/release.yml@refs/heads/main"
	sign := func(img *harness.Image, subject string) {
		ent, err := e.vs.AttestAtTime(subject, ghIssuer, statementJSON(cosign.SignPredicateType, `{}`, digest.Digest(img.Digest)), later(5*time.Minute), false)
		if err != nil {
			t.Fatal(err)
		}
		e.pushBundle(repo, desc(img), entityBundle(t, e.vs, ent, bundleParts{TLog: true, Timestamp: true}), false)
	}
	two := e.image(repo, "two")
	sign(two, ghSubject)  // matches id-app and id-acme
	sign(two, libSubject) // matches id-acme only
	one := e.image(repo, "one")
	sign(one, ghSubject)

	e.expectProxyAllowed(repo+":two", two.Digest)
	e.expectCLI(repo+":two", 0)
	reason := "rule keyless: signatures: 1 of 2 required signers verified (signed: id-app; missing: id-acme (same signer as id-app))"
	if r := harness.CraneDigest(t, e.pxRef(repo+":one")); r.Err == nil || !strings.Contains(r.Stderr, reason) {
		t.Fatalf("crane: want failure showing %q\n%s", reason, r)
	}
	e.expectProxyDenied(repo+":one", reason)
	e.expectCLI(repo+":one", 13, reason)
}
