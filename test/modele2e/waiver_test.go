package modele2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/modelcorpus"
)

// A code-execution content finding (a pickle calling os.system, pushed
// with oras to a real upstream) is waived only by an exception that names
// its class. The blob is inspected and the finding recorded against it;
// the manifest is then decided with the finding, which an exception
// listing findingClasses [pickle] waives: the blob is served whole, after
// its digest check, to the very pull that met the finding (and audited as
// waived); an exception that does not list the class never waives it,
// whatever its waive pattern says.
func TestWaivedPickleNeedsItsClass(t *testing.T) {
	until := time.Now().UTC().Add(24 * time.Hour).Format(time.RFC3339)
	pol := modelPolicy + fmt.Sprintf(`exceptions:
  - name: research-checkpoint
    match: {repositories: ["upstream.local/models/approved"]}
    waive: ["regexp:rule models: content: layer sha256:[0-9a-f]{64}: pickle: .*"]
    findingClasses: [pickle]
    expires: %s
    reason: research checkpoint, runs only in the sandbox
    approvedBy: ml-security@example.com
  - name: no-class
    match: {repositories: ["upstream.local/models/noclass"]}
    waive: ["regexp:rule models: content: .*"]
    expires: %s
    reason: forgot the class
    approvedBy: ml-security@example.com
`, until, until)
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	e := &env{up: up, px: gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: pol})}
	// Two blobs: a finding is recorded per blob (and rule), and the
	// approved one must meet its finding in its own first pull.
	evil := modelcorpus.OsSystemPickle()
	p := modelcorpus.NewPickler(2)
	p.Global("posix", "system")
	p.Str("id -u")
	p.Tuple(1)
	p.Op('R')
	p.Put()
	approved := p.Stop()
	e.push(t, "models/approved:1", true, file{"model.bin", mtWeightRaw, approved})
	e.push(t, "models/noclass:1", true, file{"model.bin", mtWeightRaw, evil})

	// Without the class: the first pull meets the finding, later ones are
	// refused by the manifest's decision; never waived.
	e.assertRefused(t, "models/noclass:1", evil, "pickle")
	e.assertRefused(t, "models/noclass:1", evil, "rule models: content: layer "+sha(evil)+": pickle")

	// With it: served whole, after its digest check, from the first pull
	// on (and again from the store).
	for i := range 2 {
		r, dir := harness.OrasPull(t, e.px.Host+"/upstream.local/models/approved:1")
		if r.Err != nil {
			t.Fatalf("oras pull %d of a model whose pickle finding is waived by class: %v\n%s", i, r.Err, r.Output())
		}
		if got, err := os.ReadFile(filepath.Join(dir, "model.bin")); err != nil || !bytes.Equal(got, approved) {
			t.Fatalf("pull %d: model.bin differs (%d bytes, %v)", i, len(got), err)
		}
	}
	audit, err := os.ReadFile(e.px.AuditPath)
	if err != nil {
		t.Fatal(err)
	}
	var waived bool
	for _, line := range strings.Split(string(audit), "\n") {
		if strings.Contains(line, `"decision":"waived"`) && strings.Contains(line, `"waivers":["research-checkpoint"]`) &&
			strings.Contains(line, "rule models: content: layer "+sha(approved)+": pickle") {
			waived = true
		}
		if strings.Contains(line, "models/noclass") && strings.Contains(line, `"decision":"waived"`) {
			t.Errorf("a finding was waived by an exception without its class: %s", line)
		}
	}
	if !waived {
		t.Errorf("no waived audit event naming research-checkpoint and the pickle finding:\n%s", audit)
	}
}
