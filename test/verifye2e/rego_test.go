package verifye2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullgate/pullgate/test/harness"
)

// regoPolicy adds issue 16's Rego rule to the default policy.
const regoPolicy = defaultPolicy + `  - name: pg-rego
    match: ["upstream.local/rego/**"]
    require: { signatures: [release] }
    rego: { module: ./policies/platform.rego, query: data.pullgate.deny }
`

// platformRego denies an image without SLSA provenance from the trusted
// builder, signed by release; it reads the verified attestations and the
// subject from the input document.
const platformRego = `package pullgate

trusted_builder := "https://ci.example/builder"

deny contains msg if {
	not provenance_ok
	msg := sprintf("%s has no SLSA provenance from %s", [input.subject.digest, trusted_builder])
}

# The image configuration, as require.conditions read it.
deny contains "the image runs as root" if input.config.user == "root"

provenance_ok if {
	some a in input.attestations
	a.predicateType == "https://slsa.dev/provenance/v0.2"
	a.signer == "release"
	a.predicate.builder.id == trusted_builder
}
`

// retiredRego denies what platformRego allows: the builder is retired.
const retiredRego = `package pullgate

deny contains "builder https://ci.example/builder is retired" if {
	some a in input.attestations
	a.predicate.builder.id == "https://ci.example/builder"
}
`

// replaceModule writes a module the way editors do (a new file renamed over
// the old one) in its own directory.
func (e *env) replaceModule(src string) {
	e.t.Helper()
	p := filepath.Join(e.dir, "policies", "platform.rego")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		e.t.Fatal(err)
	}
}

// TestRegoRule: a Rego rule over the verified evidence of cosign-signed and
// attested images, through a real distribution upstream and the proxy: its
// denial message reaches crane's error, the OCI DENIED error, the audit log
// and `pullgate verify` (exit 13); an image it passes is served; editing the
// module reloads the policy with a new revision and changes the cached
// decision; a module with a syntax error or calling http.send is refused by
// `pullgate policy lint` at its position and by the running proxy.
func TestRegoRule(t *testing.T) {
	e := newEnv(t, envOptions{policy: regoPolicy, files: map[string]string{"policies/platform.rego": platformRego}})
	good := e.image("rego/api", "good")
	bad := e.image("rego/api", "bad")
	for _, img := range []*harness.Image{good, bad} {
		e.c2.sign(e.release, e.upRef("rego/api", img.Digest))
	}
	e.c2.attest(e.release, e.upRef("rego/api", good.Digest), goodPred)
	e.c2.attest(e.release, e.upRef("rego/api", bad.Digest), evilPred)

	// Allowed: crane resolves the digest, go-containerregistry pulls it all.
	if r := harness.CraneDigest(t, e.pxRef("rego/api:good")); r.Err != nil || strings.TrimSpace(r.Stdout) != good.Digest {
		t.Fatalf("crane digest of the good image: %s", r)
	}
	e.expectProxyAllowed("rego/api:good", good.Digest)
	e.expectCLI("rego/api:good", 0)

	// The image configuration reaches the module.
	root := e.up.PushImage(t, "rego/api", "root", harness.ImageOptions{Config: func(c *v1.ConfigFile) { c.Config.User = "root" }})
	e.c2.sign(e.release, e.upRef("rego/api", root.Digest))
	e.c2.attest(e.release, e.upRef("rego/api", root.Digest), goodPred)
	e.expectProxyDenied("rego/api:root", "rule pg-rego: rego: the image runs as root")
	e.expectCLI("rego/api:root", 13, "rule pg-rego: rego: the image runs as root")

	// Denied by the Rego rule, with its message.
	want := "rule pg-rego: rego: " + bad.Digest + " has no SLSA provenance from https://ci.example/builder"
	if r := harness.CraneDigest(t, e.pxRef("rego/api:bad")); r.Err == nil || !strings.Contains(r.Stderr, want) {
		t.Fatalf("crane digest of the bad image: want failure showing %q\n%s", want, r)
	}
	e.expectProxyDenied("rego/api:bad", want)
	e.expectCLI("rego/api:bad", 13, want)
	found := false
	for _, ev := range e.px.Audit(t) {
		if ev.Digest == bad.Digest && ev.Decision == "deny" && strings.Contains(toJSON(ev.Raw["reasons"]), want) {
			found = true
		}
	}
	if !found {
		t.Fatalf("audit log has no denial of %s with %q", bad.Digest, want)
	}

	// Editing the module: new revision, the cached allow no longer applies.
	rev0 := e.px.Server.Policy().Revision()
	e.replaceModule(retiredRego)
	rev1 := e.waitRevision(rev0)
	retired := "rule pg-rego: rego: builder https://ci.example/builder is retired"
	e.expectProxyDenied("rego/api:good", retired)
	e.expectCLI("rego/api:good", 13, retired)
	e.expectProxyAllowed("rego/api:bad", bad.Digest)

	// Broken modules: lint reports them at their position, the proxy keeps
	// the policy in force.
	broken := map[string]struct{ src, where, what string }{
		"syntax":    {"package pullgate\n\ndeny contains msg if {\n\tmsg := \n}\n", "platform.rego:5:1:", "rego_parse_error"},
		"http.send": {"package pullgate\n\ndeny contains msg if {\n\tr := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"})\n\tmsg := r.body\n}\n", "platform.rego:4:7:", "undefined function http.send"},
	}
	for name, b := range broken {
		e.replaceModule(b.src)
		r := runCLI(t, "policy", "lint", e.px.PolicyPath)
		if r.code != 1 || !strings.Contains(r.stdout, b.where) || !strings.Contains(r.stdout, b.what) {
			t.Fatalf("%s: policy lint exit %d, want 1 with %q and %q:\n%s", name, r.code, b.where, b.what, r.stdout)
		}
		if err := e.px.Server.ReloadPolicy(); err == nil {
			t.Fatalf("%s: reloading a policy with a broken module reported no error", name)
		}
		if got := e.px.Server.Policy().Revision(); got != rev1 {
			t.Fatalf("%s: a broken module replaced the policy in force: %s, want %s", name, got, rev1)
		}
		e.expectProxyDenied("rego/api:good", retired)
	}
}
