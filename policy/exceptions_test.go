package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
)

// exceptionsPolicy is the full policy with the given exceptions section.
func loadWithExceptions(t *testing.T, exceptions string) (*Policy, error) {
	t.Helper()
	files := fullFiles()
	files["policy.yaml"] = fullPolicy + exceptions
	dir := writeDir(t, files)
	return Load(filepath.Join(dir, "policy.yaml"))
}

func lintWithExceptions(t *testing.T, exceptions string, now time.Time) []Diagnostic {
	t.Helper()
	files := fullFiles()
	files["policy.yaml"] = fullPolicy + exceptions
	dir := writeDir(t, files)
	return LintAt(filepath.Join(dir, "policy.yaml"), now)
}

var waiverNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func unsignedReason(d digest.Digest) string {
	return "rule apps: no signature by key release on " + string(d)
}

var pickleLayer = digest.FromString("layer")

// pickleReason is a code-execution finding, waived by its exact text.
var pickleReason = "rule models: content: layer " + string(pickleLayer) + ": pickle: global os.system is not allowed"

const provenanceReason = "rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"

func TestWaive(t *testing.T) {
	p, err := loadWithExceptions(t, `exceptions:
  - name: legacy-web
    match: {repositories: ["upstream.local/app/web"]}
    waive:
      - "regexp:rule apps: no signature by key release on sha256:[0-9a-f]{64}"
      - "`+provenanceReason+`"
    expires: 2026-07-01T00:00:00Z
    reason: vendor image, signed from release 2.0
    approvedBy: security@example.com
  - name: one-digest
    match: {digest: `+string(dgst)+`}
    waive: ["`+unsignedReason(dgst)+`"]
    expires: 2026-06-01
    reason: expired already
    approvedBy: security@example.com
  - name: models-pickle
    match: {repositories: ["upstream.local/models/**"], digest: `+string(dgst)+`}
    waive: ["`+pickleReason+`"]
    findingClasses: [pickle]
    expires: 2026-07-01T00:00:00Z
    reason: legacy checkpoint
    approvedBy: ml-platform
  - name: models-text
    match: {repositories: ["upstream.local/models/**"]}
    waive: ["regexp:rule models: content: layer sha256:[0-9a-f]{64}: (text|keras|pickle): .*"]
    findingClasses: [text]
    expires: 2026-07-01T00:00:00Z
    reason: notes
    approvedBy: ml-platform
`)
	if err != nil {
		t.Fatal(err)
	}
	// anyApps waives every reason of rule apps, anywhere.
	anyApps, err := loadWithExceptions(t, `exceptions:
  - name: any
    match: {repositories: ["upstream.local/**"]}
    waive: ["regexp:rule apps: .*"]
    expires: 2026-07-01T00:00:00Z
    reason: r
    approvedBy: a
`)
	if err != nil {
		t.Fatal(err)
	}
	sigOnly := Input{Repository: "upstream.local/app/web", Digest: dgst,
		Evidence: []verify.Result{result(dgst, nil, []verify.Attestation{att("release", slsa02, builder, dgst)})}}
	none := Input{Repository: "upstream.local/app/web", Digest: dgst}
	t.Run("every reason waived", func(t *testing.T) {
		d := p.Waive(p.Evaluate(none), waiverNow)
		if !d.Allowed || d.ExitCode != ExitAllowed || !slices.Equal(d.Waivers, []string{"legacy-web"}) {
			t.Fatalf("not waived: %+v", d)
		}
		if !d.WaivedUntil.Equal(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("WaivedUntil %v", d.WaivedUntil)
		}
		if d.DenyExitCode != ExitNoEvidence {
			t.Errorf("DenyExitCode %d, want %d (the waived denial's)", d.DenyExitCode, ExitNoEvidence)
		}
		if !slices.Contains(d.Reasons, unsignedReason(dgst)) || !slices.Contains(d.Reasons, provenanceReason) {
			t.Errorf("original reasons not kept: %q", d.Reasons)
		}
		if !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, "waived by exception legacy-web") }) {
			t.Errorf("reasons do not name the exception: %q", d.Reasons)
		}
	})
	t.Run("expired at decision time", func(t *testing.T) {
		d := p.Waive(p.Evaluate(sigOnly), time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
		if d.Allowed || len(d.Waivers) > 0 {
			t.Fatalf("an expired exception waived: %+v", d)
		}
		if !slices.ContainsFunc(d.Checks, func(c Check) bool { return strings.Contains(c.Detail, "exception legacy-web expired") }) {
			t.Errorf("checks do not say the exception expired: %+v", d.Checks)
		}
	})
	t.Run("expired digest exception", func(t *testing.T) {
		in := Input{Repository: "upstream.local/app/other", Digest: dgst}
		if d := p.Waive(p.Evaluate(in), waiverNow); d.Allowed {
			t.Fatalf("exception expired at 2026-06-01 00:00 waived at %v: %+v", waiverNow, d)
		}
		if d := p.Waive(p.Evaluate(Input{Repository: "upstream.local/app/other", Digest: dgst,
			Evidence: []verify.Result{result(dgst, nil, []verify.Attestation{att("release", slsa02, builder, dgst)})}}), waiverNow.Add(-24*time.Hour)); !d.Allowed {
			t.Fatalf("digest exception before its expiry did not waive: %+v", d)
		}
	})
	t.Run("other repository", func(t *testing.T) {
		in := Input{Repository: "upstream.local/app/api", Digest: other}
		if d := p.Waive(p.Evaluate(in), waiverNow); d.Allowed {
			t.Fatalf("waived outside its repositories: %+v", d)
		}
	})
	t.Run("partial", func(t *testing.T) {
		bad := Input{Repository: "upstream.local/app/web", Digest: dgst,
			Evidence: []verify.Result{result(dgst, nil, []verify.Attestation{att("release", slsa02, badBuild, dgst)})}}
		d := p.Waive(p.Evaluate(bad), waiverNow)
		if d.Allowed {
			t.Fatalf("a condition failure no exception lists was waived: %+v", d)
		}
		if slices.Contains(d.Reasons, unsignedReason(dgst)) {
			t.Errorf("the waived reason is still listed as a denial: %q", d.Reasons)
		}
		if !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, "condition") }) {
			t.Errorf("the unwaived reason is not listed: %q", d.Reasons)
		}
	})
	t.Run("digest mismatch is never waived", func(t *testing.T) {
		// A signature by release over another digest: exit 12.
		in := Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", other)}, []verify.Attestation{att("release", slsa02, builder, dgst)},
				verify.Failure{Kind: verify.FailMismatch, Source: "cosign-signature", Reason: "signature is for " + string(other)})}}
		ev := p.Evaluate(in)
		if ev.ExitCode != ExitMismatch || !slices.Contains(ev.Reasons, unsignedReason(dgst)) {
			t.Fatalf("fixture: want exit 12 with reason %q, got %d %q", unsignedReason(dgst), ev.ExitCode, ev.Reasons)
		}
		d := p.Waive(ev, waiverNow)
		if d.Allowed || d.ExitCode != ExitMismatch {
			t.Fatalf("digest mismatch waived: %+v", d)
		}
	})
	t.Run("content finding needs its class", func(t *testing.T) {
		layer := digest.FromString("layer")
		pickle := Input{Repository: "upstream.local/models/m", Digest: dgst,
			ContentFindings: []string{"layer " + string(layer) + ": pickle: global os.system is not allowed"}}
		keras := Input{Repository: "upstream.local/models/m", Digest: dgst,
			ContentFindings: []string{"layer " + string(layer) + ": keras: Lambda layer at config.layers[1]"}}
		waivedRule := func(d Decision) Decision {
			// keep only content reasons: the signature requirement is
			// not the point here
			var rs []string
			for _, r := range d.Reasons {
				if strings.Contains(r, ": content: ") {
					rs = append(rs, r)
				}
			}
			d.Reasons = rs
			return d
		}
		if d := p.Waive(waivedRule(p.Evaluate(pickle)), waiverNow); !d.Allowed || !slices.Equal(d.Waivers, []string{"models-pickle"}) {
			t.Fatalf("pickle finding with class pickle listed not waived: %+v", d)
		}
		if d := p.Waive(waivedRule(p.Evaluate(keras)), waiverNow); d.Allowed {
			t.Fatalf("keras finding waived without class keras listed: %+v", d)
		}
		// Another artifact of the repository: models-pickle pins dgst, and
		// models-text's pattern never waives a code-execution finding.
		pickle.Digest = other
		if d := p.Waive(waivedRule(p.Evaluate(pickle)), waiverNow); d.Allowed {
			t.Fatalf("pickle finding of another digest waived: %+v", d)
		}
	})
	t.Run("code-execution findings only by pinned exact text", func(t *testing.T) {
		re := reasonMatcher{re: regexp.MustCompile(`^(?:rule models: content: layer sha256:[0-9a-f]{64}: pickle: .*)$`)}
		exact := reasonMatcher{exact: pickleReason}
		text := "rule models: content: layer " + string(pickleLayer) + ": text: notes.txt is not UTF-8"
		for _, c := range []struct {
			name   string
			x      Exception
			reason string
			want   bool
		}{
			{"pinned exact", Exception{Digest: dgst, FindingClasses: []string{"pickle"}, matchers: []reasonMatcher{exact}}, pickleReason, true},
			{"pinned regexp", Exception{Digest: dgst, FindingClasses: []string{"pickle"}, matchers: []reasonMatcher{re}}, pickleReason, false},
			{"unpinned exact", Exception{FindingClasses: []string{"pickle"}, matchers: []reasonMatcher{exact}}, pickleReason, false},
			{"other finding of the class", Exception{Digest: dgst, FindingClasses: []string{"pickle"}, matchers: []reasonMatcher{exact}},
				strings.Replace(pickleReason, "os.system", "posix.system", 1), false},
			{"unpinned regexp, not code", Exception{FindingClasses: []string{"text"},
				matchers: []reasonMatcher{{re: regexp.MustCompile(`^(?:rule models: content: .*)$`)}}}, text, true},
		} {
			if got := c.x.Waives(c.reason); got != c.want {
				t.Errorf("%s: Waives = %v, want %v", c.name, got, c.want)
			}
		}
	})
	t.Run("a check's digest mismatch is never waived", func(t *testing.T) {
		// No evidence (exit 10 first) and an MBOM check reporting a
		// layer digest mismatch (exit 12): every reason's text is waived.
		q := anyApps
		in := none
		in.Checks = []Check{{Name: "mbom", ExitCode: ExitMismatch, Detail: "layer " + string(other) + ": digest mismatch"}}
		ev := q.Evaluate(in)
		if ev.ExitCode == ExitMismatch || ev.NotWaivable == "" {
			t.Fatalf("fixture: want an exit code other than 12 and NotWaivable, got %d %q", ev.ExitCode, ev.NotWaivable)
		}
		if d := q.Waive(ev, waiverNow); d.Allowed {
			t.Fatalf("a check's digest mismatch was waived: %+v", d)
		}
		if d := q.Waive(q.Evaluate(none), waiverNow); !d.Allowed {
			t.Fatalf("fixture: without the mismatch, not waived: %+v", d)
		}
	})
	t.Run("unreadable findings are never waived", func(t *testing.T) {
		in := Input{Repository: "upstream.local/models/m", Digest: dgst, ContentUnread: true,
			ContentFindings: []string{"layer " + string(pickleLayer) + ": text: the store could not read"}}
		d := p.Evaluate(in)
		d.Reasons = []string{"rule models: content: " + in.ContentFindings[0]}
		if w := p.Waive(d, waiverNow); w.Allowed {
			t.Fatalf("a store error was waived: %+v", w)
		}
		in.ContentUnread = false
		d = p.Evaluate(in)
		d.Reasons = []string{"rule models: content: " + in.ContentFindings[0]}
		if w := p.Waive(d, waiverNow); !w.Allowed {
			t.Fatalf("fixture: a text finding not waived: %+v", w)
		}
	})
	t.Run("reasons past the bound are never waived", func(t *testing.T) {
		d := p.Evaluate(Input{Repository: "upstream.local/models/m", Digest: dgst,
			ContentFindings: []string{"layer " + string(digest.FromString("x")) + ": pickle: global os.system"}})
		reasons := func(n int) []string {
			var rs []string
			for i := range n {
				rs = append(rs, fmt.Sprintf("rule models: content: layer %s: text: not UTF-8 (%d)", digest.FromString(fmt.Sprint(i)), i))
			}
			return rs
		}
		// At the bound, reasons past it were dropped: what they say is
		// not known.
		d.Reasons = reasons(maxReasonsPerRule)
		if w := p.Waive(d, waiverNow); w.Allowed {
			t.Fatalf("a denial whose reasons were not all kept was waived (%d reasons)", len(d.Reasons))
		}
		d.Reasons = reasons(maxReasonsPerRule - 1)
		if w := p.Waive(d, waiverNow); !w.Allowed {
			t.Fatalf("fewer reasons than the bound, all waivable, not waived: %+v", w.Checks)
		}
	})
	t.Run("action deny is never waived", func(t *testing.T) {
		q := anyApps
		d := q.Evaluate(Input{Repository: "upstream.local/blocked/x", Digest: dgst})
		d.Reasons = []string{"rule apps: forged"}
		if w := q.Waive(d, waiverNow); w.Allowed {
			t.Fatalf("a deny rule's decision was waived: %+v", w)
		}
	})
}

func TestContentReason(t *testing.T) {
	l := string(digest.FromString("l"))
	for _, c := range []struct {
		reason, class string
		ok            bool
	}{
		{"rule m: content: layer " + l + ": pickle: global os.system", "pickle", true},
		{"rule m: content: keras: Lambda", "keras", true},
		{"rule m: content: layer " + l + ": the store could not read", "unknown", true},
		{"rule m: content: Weird Format: x", "unknown", true},
		{"rule m: no signature by key release on " + l, "", false},
		{"rule m: chain llm-release: content: x", "", false},
	} {
		class, ok := contentReason(c.reason)
		if class != c.class || ok != c.ok {
			t.Errorf("contentReason(%q) = %q, %v; want %q, %v", c.reason, class, ok, c.class, c.ok)
		}
	}
}

func TestExceptionsLint(t *testing.T) {
	good := `exceptions:
  - name: legacy
    match: {repositories: ["upstream.local/app/web"]}
    waive: ["regexp:rule apps: no signature by .*"]
    expires: %s
    reason: r
    approvedBy: a
`
	format := func(exp string) string { return strings.Replace(good, "%s", exp, 1) }
	if d := lintWithExceptions(t, format("2026-07-01T00:00:00Z"), waiverNow); len(d) != 0 {
		t.Fatalf("valid exception: %v", d)
	}
	// Within 7 days: a warning, the policy is fine.
	d := lintWithExceptions(t, format("2026-06-05T00:00:00Z"), waiverNow)
	if len(d) != 1 || d[0].Severity != SeverityWarning || HasErrors(d) || d[0].Line != 49 || !strings.Contains(d[0].String(), "warning: exception legacy expires at 2026-06-05T00:00:00Z") {
		t.Fatalf("expiring soon: %v", d)
	}
	// Expired: an error for lint, but the policy loads (it waives nothing).
	d = lintWithExceptions(t, format("2026-05-31T00:00:00Z"), waiverNow)
	if len(d) != 1 || !HasErrors(d) || !strings.Contains(d[0].String(), ":49:14: exception legacy expired at 2026-05-31T00:00:00Z: it waives nothing") {
		t.Fatalf("expired: %v", d)
	}
	if _, err := loadWithExceptions(t, format("2020-01-01")); err != nil {
		t.Fatalf("an expired exception stops the policy from loading: %v", err)
	}

	for _, c := range []struct{ name, yaml, want string }{
		{"missing keys", `exceptions:
  - name: x
    match: {repositories: ["upstream.local/app/web"]}
    waive: ["rule apps: x"]
`, "exception x: expires is required|exception x: reason is required|exception x: approvedBy is required"},
		{"bad date", `exceptions:
  - {name: x, match: {digest: sha256:00}, waive: ["rule apps: x"], expires: next week, reason: r, approvedBy: a}
`, `exception x.match.digest "sha256:00"|exception x.expires "next week" is not an RFC 3339`},
		{"no match", `exceptions:
  - {name: x, match: {}, waive: ["rule apps: x"], expires: 2027-01-01, reason: r, approvedBy: a}
`, "exception x.match: digest or repositories is required"},
		{"bad regexp", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["regexp:rule apps: (", "regexp:rule apps: x)|(.*"], expires: 2027-01-01, reason: r, approvedBy: a}
`, "exception x.waive[0] does not compile|exception x.waive[1] does not compile"},
		{"regexp for any rule", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["regexp:.*", "regexp:(?i)rule apps: x"], expires: 2027-01-01, reason: r, approvedBy: a}
`, `exception x.waive[0] does not start with "rule <name>: "|exception x.waive[1] does not start with`},
		{"unknown rule", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["rule nope: x", "no policy rule matches a/b", "regexp:rule nope2: .*"], expires: 2027-01-01, reason: r, approvedBy: a}
`, `exception x.waive[0]: rule "nope" does not exist|exception x.waive[1] "no policy rule matches a/b" names no rule|exception x.waive[2]: rule "nope2" does not exist`},
		{"rule that decides other repositories", `exceptions:
  - {name: x, match: {repositories: ["upstream.local/app/web", "upstream.local/nothing"]}, waive: ["regexp:rule models: .*", "rule apps: x"], expires: 2027-01-01, reason: r, approvedBy: a}
`, "exception x.waive[0]: rule models decides none of upstream.local/app/web, upstream.local/nothing"},
		{"deny rule", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["rule blocked: action deny"], expires: 2027-01-01, reason: r, approvedBy: a}
`, "rule blocked denies by action, which no exception waives"},
		{"content without class", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["rule models: content: pickle: global os.system"], findingClasses: [keras], expires: 2027-01-01, reason: r, approvedBy: a}
`, "exception x.waive[0] is a pickle content finding, which this exception may not waive"},
		{"code-execution class without digest", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["rule models: content: pickle: x"], findingClasses: [text, pickle], expires: 2027-01-01, reason: r, approvedBy: a}
`, "exception x.findingClasses lists pickle, a code-execution class, without match.digest"},
		{"regexp over code-execution findings", `exceptions:
  - {name: x, match: {digest: ` + string(dgst) + `}, waive: ["regexp:rule models: content: layer sha256:[0-9a-f]{64}: pickle: .*"], findingClasses: [pickle], expires: 2027-01-01, reason: r, approvedBy: a}
`, "exception x.waive[0] is a regexp over content findings: a code-execution finding is waived only by its exact text"},
		{"unknown class", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["rule models: content: pickle: x"], findingClasses: [pikle, pickle], expires: 2027-01-01, reason: r, approvedBy: a}
`, `"pikle" is not a finding class`},
		{"bad glob and duplicate", `exceptions:
  - {name: x, match: {repositories: ["a/[b"]}, waive: ["rule apps: x"], expires: 2027-01-01, reason: r, approvedBy: a}
  - {name: x, match: {digest: ` + string(dgst) + `}, waive: ["rule apps: x"], expires: 2027-01-01, reason: r, approvedBy: a}
`, `exception x.match.repositories: pattern "a/[b"|exception name "x" is already used`},
		{"unknown key, empty waive", `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: [], expires: 2027-01-01, reason: r, approvedBy: a, until: 2027-01-01}
`, `unknown key|exception x.waive is empty`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadWithExceptions(t, c.yaml)
			diags := DiagnosticsOf("policy.yaml", err)
			if err == nil {
				t.Fatalf("accepted:\n%s", c.yaml)
			}
			for _, want := range strings.Split(c.want, "|") {
				found := false
				for _, d := range diags {
					found = found || (strings.Contains(d.Message, want) && d.Line > 0 && d.Col > 0)
				}
				if !found {
					t.Errorf("no positioned diagnostic %q in:\n%v", want, err)
				}
			}
		})
	}
}

// The exceptions are part of the revision (a new expiry decides anew); a
// policy without them keeps its revision.
func TestExceptionsRevision(t *testing.T) {
	x := func(exp string) string {
		return `exceptions:
  - {name: x, match: {repositories: ["a/**"]}, waive: ["rule apps: x"], expires: ` + exp + `, reason: r, approvedBy: a}
`
	}
	dir := writeDir(t, fullFiles())
	rev := func(y string) string {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fullPolicy+y), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(filepath.Join(dir, "policy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return p.Revision()
	}
	r0, r1, r2, r3 := rev(""), rev(x("2027-01-01")), rev(x("2027-02-01")), rev("# comment\n")
	if r0 == r1 || r1 == r2 {
		t.Errorf("exceptions do not change the revision: %s %s %s", r0, r1, r2)
	}
	if r0 != r3 {
		t.Errorf("a policy without exceptions changed revision: %s %s", r0, r3)
	}
}

// FuzzContentFinding: reasons carry text from artifacts (finding
// reasons); splitting them never panics, and a class is a format name or
// "unknown".
func FuzzContentFinding(f *testing.F) {
	l := string(digest.FromString("l"))
	for _, s := range []string{
		"rule m: content: layer " + l + ": pickle: global os.system",
		"rule m: content: keras: Lambda",
		"rule m: content: layer sha256:zz: x",
		"rule m: content: ",
		"rule : content: a: b",
		"rule m: no signature by key release on " + l,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reason string) {
		layer, class, ok := ContentFinding(reason)
		if !ok {
			if layer != "" || class != "" {
				t.Fatalf("not a content reason but %q %q", layer, class)
			}
			return
		}
		if class != findingClassUnknown && !findingClassRE.MatchString(class) {
			t.Fatalf("class %q", class)
		}
		if layer != "" && layer.Validate() != nil {
			t.Fatalf("layer %q", layer)
		}
	})
}

// The exceptions example of docs/policy.md loads with the reference's
// example policy (expiry aside: Load does not judge it).
func TestExceptionsDocExample(t *testing.T) {
	b, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, part := range strings.Split(string(b), "```yaml\n")[1:] {
		blocks = append(blocks, strings.SplitN(part, "```", 2)[0])
	}
	var exc string
	for _, bl := range blocks {
		if strings.HasPrefix(bl, "exceptions:") {
			exc = bl
		}
	}
	if len(blocks) == 0 || exc == "" {
		t.Fatal("docs/policy.md has no exceptions example")
	}
	files := fullFiles()
	files["policy.yaml"] = blocks[0] + exc
	p, err := Load(filepath.Join(writeDir(t, files), "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Exceptions) != 2 {
		t.Fatalf("%d exceptions", len(p.Exceptions))
	}
}
