package modele2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/modelcorpus"
)

// A code-execution content finding (a pickle calling os.system, pushed
// with oras to a real upstream) is waived only by an exception pinned to
// the manifest digest that names its class and the finding by its exact
// text. The blob is inspected and the finding recorded against it; the
// manifest is then decided with the finding, which the exception waives:
// the blob is served whole, after its digest check, to the very pull that
// met the finding (audited as waived, the manifest and the blob). An
// exception that does not list the class never waives it, nor does a
// pattern: a pickle whose first global (mylib.Config, the one finding
// inspection reports) hides posix.system and REDUCE after it stays
// refused under a pinned exception whose waive entry is a regexp, and the
// reviewer's exception (repositories + a regexp over pickle findings)
// does not load.
func TestWaivedPickleNeedsItsClass(t *testing.T) {
	// Scanned, so that a finding names the first import outside the
	// allowlist (and only it).
	scanPolicy := strings.Replace(modelPolicy, "pickle: deny", "pickle: scan", 1)
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	// Three blobs: a finding is recorded per blob (and rule), and the
	// approved one must meet its finding in its own first pull.
	evil := modelcorpus.OsSystemPickle()
	// posix.system("id -u"), after the globals named first.
	system := func(first ...string) []byte {
		p := modelcorpus.NewPickler(2)
		for _, g := range first {
			mod, name, _ := strings.Cut(g, ".")
			p.Global(mod, name)
		}
		p.Global("posix", "system")
		p.Str("id -u")
		p.Tuple(1)
		p.Op('R')
		p.Put()
		return p.Stop()
	}
	approved, twoGlobals := system(), system("mylib.Config")
	pre := &env{up: up}
	pre.push(t, "models/approved:1", true, file{"model.bin", mtWeightRaw, approved})
	pre.push(t, "models/noclass:1", true, file{"model.bin", mtWeightRaw, evil})
	pre.push(t, "models/legacy:1", true, file{"model.bin", mtWeightRaw, twoGlobals})
	manifestDigest := func(repoTag string) string {
		r := harness.CraneDigest(t, up.Host+"/"+repoTag)
		if r.Err != nil {
			t.Fatalf("crane digest %s: %v", repoTag, r)
		}
		return strings.TrimSpace(r.Stdout)
	}
	approvedDigest, legacyDigest := manifestDigest("models/approved:1"), manifestDigest("models/legacy:1")

	// The reason to waive, as a gate without the exception prints it.
	first := &env{up: up, px: gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: scanPolicy})}
	first.assertRefused(t, "models/approved:1", approved, "pickle")
	var reason string
	for _, ev := range first.px.Audit(t) {
		rs, _ := ev.Raw["reasons"].([]any)
		for _, r := range rs {
			if s, _ := r.(string); strings.HasPrefix(s, "rule models: content: layer "+sha(approved)+": pickle: ") {
				reason = s
			}
		}
	}
	if reason == "" {
		t.Fatal("no manifest denial names the approved pickle's finding")
	}
	first.px.Close()

	until := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
	reviewer := scanPolicy + fmt.Sprintf(`exceptions:
  - name: legacy-models
    match: {repositories: ["upstream.local/models/legacy/**"]}
    waive: ["regexp:rule models: content: layer sha256:[0-9a-f]{64}: pickle: [A-Z_]+ imports mylib\\.Config, which is not in the allowlist.*"]
    findingClasses: [pickle]
    expires: %s
    reason: legacy config class
    approvedBy: ml-security@example.com
`, until)
	pf := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pf, []byte(reviewer), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(pf); err == nil || !strings.Contains(err.Error(), "without match.digest") || !strings.Contains(err.Error(), "regexp over content findings") {
		t.Fatalf("an exception waiving pickle findings by repository and pattern loads: %v", err)
	}

	pol := scanPolicy + fmt.Sprintf(`exceptions:
  - name: research-checkpoint
    match: {repositories: ["upstream.local/models/approved"], digest: %s}
    waive: [%q]
    findingClasses: [pickle]
    expires: %s
    reason: research checkpoint, runs only in the sandbox
    approvedBy: ml-security@example.com
  - name: legacy-pattern
    match: {repositories: ["upstream.local/models/legacy"], digest: %s}
    waive: ["regexp:rule models: .*"]
    findingClasses: [pickle]
    expires: %s
    reason: a pattern, not the finding
    approvedBy: ml-security@example.com
  - name: no-class
    match: {repositories: ["upstream.local/models/noclass"]}
    waive: ["regexp:rule models: content: .*"]
    expires: %s
    reason: forgot the class
    approvedBy: ml-security@example.com
`, approvedDigest, reason, until, legacyDigest, until, until)
	e := &env{up: up, px: gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: pol})}

	// Without the class: the first pull meets the finding, later ones are
	// refused by the manifest's decision; never waived.
	e.assertRefused(t, "models/noclass:1", evil, "pickle")
	e.assertRefused(t, "models/noclass:1", evil, "rule models: content: layer "+sha(evil)+": pickle")
	// A pattern never waives a code-execution finding, pinned or not: the
	// pickle whose first global hides posix.system stays refused.
	e.assertRefused(t, "models/legacy:1", twoGlobals, "mylib.Config")
	e.assertRefused(t, "models/legacy:1", twoGlobals, "rule models: content: layer "+sha(twoGlobals)+": pickle")

	// Pinned, exact text: served whole, after its digest check, from the
	// first pull on (and again from the store).
	for i := range 2 {
		r, dir := harness.OrasPull(t, e.px.Host+"/upstream.local/models/approved:1")
		if r.Err != nil {
			t.Fatalf("oras pull %d of a model whose pickle finding is waived: %v\n%s", i, r.Err, r.Output())
		}
		if got, err := os.ReadFile(filepath.Join(dir, "model.bin")); err != nil || !bytes.Equal(got, approved) {
			t.Fatalf("pull %d: model.bin differs (%d bytes, %v)", i, len(got), err)
		}
	}
	audit, err := os.ReadFile(e.px.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	var waivedManifest, waivedBlob bool
	for _, line := range strings.Split(string(audit), "\n") {
		if strings.Contains(line, `"decision":"waived"`) && strings.Contains(line, `"waivers":["research-checkpoint"]`) &&
			strings.Contains(line, "rule models: content: layer "+sha(approved)+": pickle") {
			waivedManifest = waivedManifest || strings.Contains(line, `"kind":"manifest"`)
			waivedBlob = waivedBlob || strings.Contains(line, `"kind":"blob"`) && strings.Contains(line, `"digest":"`+sha(approved)+`"`)
		}
		if (strings.Contains(line, "models/noclass") || strings.Contains(line, "models/legacy")) && strings.Contains(line, `"decision":"waived"`) {
			t.Errorf("a finding was waived by an exception without its class or by a pattern: %s", line)
		}
	}
	if !waivedManifest || !waivedBlob {
		t.Errorf("waived audit events naming research-checkpoint and the pickle finding: manifest %v, blob %v (want both):\n%s", waivedManifest, waivedBlob, audit)
	}
}
