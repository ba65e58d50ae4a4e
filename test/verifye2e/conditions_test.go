package verifye2e

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullgate/pullgate/test/harness"
)

const conditionsPolicy = `trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: pg-cond
    match: ["upstream.local/**"]
    require:
      signatures: [release]
      conditions:
        - name: non-root
          expr: 'config.user != "" && config.user.split(":")[0] != "0"'
`

func userImage(user string, p *v1.Platform) harness.ImageOptions {
	return harness.ImageOptions{Platform: p, Config: func(cf *v1.ConfigFile) { cf.Config.User = user }}
}

// require.conditions next to a cosign signature: a signed image must also
// meet the condition, and an index signed by a trusted key covers its
// platform manifests' signature requirement but not their conditions (the
// root platform of a signed index is refused). pullgate verify exits 13
// with the condition's reason, also for the index (naming the platform).
func TestConditionsWithCosignSignatures(t *testing.T) {
	e := newEnv(t, envOptions{policy: conditionsPolicy})
	amd, arm := v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}
	ok := e.up.PushImage(t, "app/one", "ok", userImage("1000", nil))
	root := e.up.PushImage(t, "app/one", "root", userImage("", nil))
	unsigned := e.up.PushImage(t, "app/one", "unsigned", userImage("1000", nil))
	idx := e.up.PushIndexOf(t, "app/multi", "v1", userImage("app", &amd), userImage("0:0", &arm))
	good := e.up.PushIndexOf(t, "app/multi", "good", userImage("app", &amd), userImage("1000:0", &arm))
	for _, d := range []string{ok.Digest, root.Digest} {
		e.c2.sign(e.release, e.upRef("app/one", d))
	}
	e.c2.sign(e.release, e.upRef("app/multi", idx.Digest))
	e.c2.sign(e.release, e.upRef("app/multi", good.Digest))

	const cond = `rule pg-cond: condition non-root: `
	if r, _ := harness.CranePull(t, e.pxRef("app/one:ok"), ""); r.Err != nil {
		t.Fatalf("signed non-root image: %s", r)
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/one:root"), ""); r.Err == nil || !strings.Contains(r.Stderr, cond) || !strings.Contains(r.Stderr, "DENIED") {
		t.Fatalf("signed image running as root: want DENIED with %q: %s", cond, r)
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/one:unsigned"), ""); r.Err == nil || !strings.Contains(r.Stderr, noSig("pg-cond", unsigned.Digest)) {
		t.Fatalf("unsigned non-root image: want the signature denial: %s", r)
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/multi:v1"), "linux/amd64"); r.Err != nil {
		t.Fatalf("non-root platform of the signed index: %s", r)
	}
	if r, _ := harness.CranePull(t, e.pxRef("app/multi:v1"), "linux/arm64"); r.Err == nil || !strings.Contains(r.Stderr, cond) {
		t.Fatalf("root platform of the signed index: want DENIED with %q: %s", cond, r)
	}
	e.expectCLI("app/one:ok", 0)
	e.expectCLI("app/one:root", 13, cond)
	e.expectCLI("app/one:unsigned", 10)
	// verify of a tag that resolves to an index decides every platform
	// manifest with the conditions: one that runs as root denies, naming
	// its platform.
	e.expectCLI("app/multi:v1", 13, "rule pg-cond: platform linux/arm64 "+idx.Children[1].Digest+": condition non-root: ")
	r := e.expectCLI("app/multi:good", 0)
	var decided []string
	for _, c := range r.decision.Checks {
		if c.Name == "platform" && c.Passed {
			decided = append(decided, c.Detail)
		}
	}
	if want := []string{"linux/amd64 " + good.Children[0].Digest + ": allowed", "linux/arm64 " + good.Children[1].Digest + ": allowed"}; strings.Join(decided, "\n") != strings.Join(want, "\n") {
		t.Errorf("verify of an allowed index: platform checks %q, want %q", decided, want)
	}
}
