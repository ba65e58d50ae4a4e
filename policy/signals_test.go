package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
)

const signalPolicy = `trust:
  keys:
    - {name: sandbox-key, path: sandbox.pub}
    - {name: release, path: release.pub}
rules:
  - name: models
    match: ["up/models/**"]
    require:
      signals: [vuln, {provider: sandbox, signedBy: [sandbox-key]}]
      conditions:
        - {name: no-critical, expr: 'signals.vuln.facts.counts.critical == 0'}
        - {name: clean, expr: 'signals.sandbox.verdict == "clean" && signals.sandbox.facts.egressAttempts == 0'}
  - name: apps
    match: ["up/apps/**"]
    require:
      signatures: [release]
      signals: [vuln]
      conditions: ['signals.vuln.verdict == "clean"']
`

func loadSignalPolicy(t *testing.T) *Policy {
	t.Helper()
	dir := writeDir(t, map[string]string{"policy.yaml": signalPolicy, "sandbox.pub": "@key", "release.pub": "@key"})
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func doneSignal(name, verdict string, facts map[string]any) *Signal {
	return &Signal{Provider: "p-" + name, Status: SignalDone, Version: "1.0", DBVersion: "db1", Verdict: verdict, Facts: facts}
}

func signedBy(signer string, subject digest.Digest, pred string) verify.Attestation {
	return att(signer, SignalPredicateType, pred, subject)
}

func TestSignalsEvaluate(t *testing.T) {
	p := loadSignalPolicy(t)
	d := digest.FromString("model")
	clean := `{"provider":{"name":"p-sandbox","version":"1.0","dbVersion":"db1"},"status":"done","verdict":"clean","facts":{"egressAttempts":0}}`
	dirty := `{"provider":{"name":"p-sandbox","version":"1.0","dbVersion":"db1"},"status":"done","verdict":"malicious","facts":{"egressAttempts":3}}`
	oldClean := `{"provider":{"name":"p-sandbox","version":"1.0","dbVersion":"db0"},"status":"done","verdict":"clean","facts":{"egressAttempts":0}}`
	vulnOK := func() *Signal {
		return doneSignal("vuln", "clean", map[string]any{"counts": map[string]any{"critical": 0}})
	}
	sandbox := func(unsignedVerdict string, ev ...verify.Attestation) *Signal {
		s := doneSignal("sandbox", unsignedVerdict, map[string]any{"egressAttempts": 0})
		s.Evidence = ev
		return s
	}
	art := &Artifact{Manifest: map[string]any{}, Annotations: map[string]string{}}
	cases := []struct {
		name    string
		signals map[string]*Signal
		allowed bool
		exit    int
		reason  string
	}{
		{"clean and signed", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean", signedBy("sandbox-key", d, clean))}, true, 0, ""},
		{"critical CVE", map[string]*Signal{"vuln": doneSignal("vuln", "vulnerable", map[string]any{"counts": map[string]any{"critical": 2}}),
			"sandbox": sandbox("clean", signedBy("sandbox-key", d, clean))}, false, ExitUnmet,
			"rule models: condition no-critical: signals.vuln.facts.counts.critical == 0 is false"},
		// The signed answer is what counts: an unsigned "clean" beside a
		// signed "malicious" is denied.
		{"signed malicious, unsigned clean", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean", signedBy("sandbox-key", d, dirty))}, false, ExitUnmet,
			`rule models: condition clean: signals.sandbox.verdict == "clean" && signals.sandbox.facts.egressAttempts == 0 is false`},
		{"signed by an untrusted signer", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean", signedBy("release", d, clean))}, false, ExitInvalid,
			"rule models: signal sandbox: no answer signed by sandbox-key (found: signed by release)"},
		{"signed about another digest", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean", signedBy("sandbox-key", digest.FromString("other"), clean))}, false, ExitInvalid,
			"rule models: signal sandbox: no answer signed by sandbox-key (found: a statement by sandbox-key about another digest)"},
		// An older signed answer the provider still returns does not count:
		// only the one signed for this answer's version and database.
		{"older signed clean beside current signed malicious", map[string]*Signal{"vuln": vulnOK(),
			"sandbox": sandbox("malicious", signedBy("sandbox-key", d, oldClean), signedBy("sandbox-key", d, dirty))}, false, ExitUnmet,
			`rule models: condition clean: signals.sandbox.verdict == "clean" && signals.sandbox.facts.egressAttempts == 0 is false`},
		{"only an older signed answer", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean", signedBy("sandbox-key", d, oldClean))}, false, ExitInvalid,
			"rule models: signal sandbox: no answer signed by sandbox-key (found: an answer of p-sandbox 1.0 (database db0) signed by sandbox-key, not of this answer's p-sandbox 1.0 (database db1))"},
		{"two signed answers that disagree", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean", signedBy("sandbox-key", d, clean), signedBy("sandbox-key", d, dirty))}, false, ExitInvalid,
			"rule models: signal sandbox: no answer signed by sandbox-key (found: conflicting answers for p-sandbox 1.0 (database db1) signed by sandbox-key and sandbox-key)"},
		{"unsigned", map[string]*Signal{"vuln": vulnOK(), "sandbox": sandbox("clean")}, false, ExitInvalid,
			"rule models: signal sandbox: no answer signed by sandbox-key (the answer carries no signed statement)"},
		{"evidence that did not verify", map[string]*Signal{"vuln": vulnOK(), "sandbox": func() *Signal {
			s := sandbox("clean")
			s.EvidenceFailures = []string{"evidence[0]: invalid: signature does not verify"}
			return s
		}()}, false, ExitInvalid, "rule models: signal sandbox: no answer signed by sandbox-key (found: evidence[0]: invalid: signature does not verify)"},
		{"provider not configured", map[string]*Signal{"sandbox": sandbox("clean", signedBy("sandbox-key", d, clean))}, false, ExitConfig,
			`rule models: signal vuln: no provider "vuln" is configured (add it to the signals section of pullgate's config)`},
		{"error, deny", map[string]*Signal{"vuln": {Provider: "vuln", Status: SignalError, Error: "timeout: no answer within 2s"},
			"sandbox": sandbox("clean", signedBy("sandbox-key", d, clean))}, false, ExitOther,
			"rule models: signal vuln: timeout: no answer within 2s (the provider's onError is deny)"},
		{"pending, deny", map[string]*Signal{"vuln": {Provider: "vuln", Status: SignalPending},
			"sandbox": sandbox("clean", signedBy("sandbox-key", d, clean))}, false, ExitUnmet,
			"rule models: signal vuln: pending: the provider has not finished looking at " + d.String() + "; pull again later (the provider's onPending is deny)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dec := p.Evaluate(Input{Repository: "up/models/m", Digest: d, Artifact: art, Signals: c.signals})
			if dec.Allowed != c.allowed || (!c.allowed && (dec.ExitCode != c.exit || dec.Reasons[0] != c.reason)) {
				t.Fatalf("allowed %v exit %d reasons %q\nwant allowed %v exit %d reason %q", dec.Allowed, dec.ExitCode, dec.Reasons, c.allowed, c.exit, c.reason)
			}
		})
	}

	// onError/onPending ignore: the requirement passes; a condition that
	// reads the missing facts still fails (it has nothing to read).
	ign := map[string]*Signal{"vuln": {Provider: "vuln", Status: SignalError, Error: "status: 503", OnError: SignalIgnore},
		"sandbox": sandbox("clean", signedBy("sandbox-key", d, clean))}
	dec := p.Evaluate(Input{Repository: "up/models/m", Digest: d, Artifact: art, Signals: ign})
	if dec.Allowed || !strings.Contains(dec.Reasons[0], "condition no-critical") || !strings.Contains(dec.Reasons[0], "error") {
		t.Fatalf("ignored error with a condition over it: %q", dec.Reasons)
	}
}

// A signal never lifts a denial: a clean answer beside a missing signature
// is denied for the signature.
func TestSignalsNeverAllow(t *testing.T) {
	p := loadSignalPolicy(t)
	d := digest.FromString("app")
	dec := p.Evaluate(Input{Repository: "up/apps/a", Digest: d, Artifact: &Artifact{Manifest: map[string]any{}, Annotations: map[string]string{}},
		Evidence: []verify.Result{result(d, nil, nil)},
		Signals:  map[string]*Signal{"vuln": doneSignal("vuln", "clean", nil)}})
	if dec.Allowed || !strings.Contains(strings.Join(dec.Reasons, "\n"), "signature") {
		t.Fatalf("allowed without the signature: %+v", dec)
	}
	// With the signature, the same answer allows.
	dec = p.Evaluate(Input{Repository: "up/apps/a", Digest: d, Artifact: &Artifact{Manifest: map[string]any{}, Annotations: map[string]string{}},
		Evidence: []verify.Result{result(d, []verify.Signature{sig("release", d)}, nil)},
		Signals:  map[string]*Signal{"vuln": doneSignal("vuln", "clean", nil)}})
	if !dec.Allowed {
		t.Fatalf("denied: %q", dec.Reasons)
	}
}

// Conditions over signals apply to an image index (its own answers).
func TestSignalsOnIndex(t *testing.T) {
	p := loadSignalPolicy(t)
	d := digest.FromString("index")
	dec := p.Evaluate(Input{Repository: "up/apps/a", Digest: d, Artifact: &Artifact{Index: true},
		Evidence: []verify.Result{result(d, []verify.Signature{sig("release", d)}, nil)},
		Signals:  map[string]*Signal{"vuln": doneSignal("vuln", "vulnerable", nil)}})
	if dec.Allowed || !strings.Contains(dec.Reasons[0], `signals.vuln.verdict == "clean" is false`) {
		t.Fatalf("index: %+v", dec)
	}
}

func TestSignalsRegoInput(t *testing.T) {
	p := loadSignalPolicy(t)
	r := p.Rules[1]
	d := digest.FromString("app")
	in := r.RegoInput(&Input{Repository: "up/apps/a", Digest: d, Signals: map[string]*Signal{"vuln": doneSignal("vuln", "clean", map[string]any{"n": 1})}})
	sig, _ := in["signals"].(map[string]any)["vuln"].(map[string]any)
	if sig == nil || sig["verdict"] != "clean" || sig["status"] != "done" || sig["provider"].(map[string]any)["dbVersion"] != "db1" {
		t.Fatalf("rego input signals = %#v", in["signals"])
	}
}

func TestSignalsLoadDiagnostics(t *testing.T) {
	cases := []struct{ req, want string }{
		{`{signals: vuln}`, `rule r.require.signals must be a list`},
		{`{signals: []}`, `rule r.require.signals is empty`},
		{`{signals: [Vuln]}`, `rule r.require.signals[0] "Vuln" is not a provider name`},
		{`{signals: [vuln, vuln]}`, `provider "vuln" is listed twice`},
		{`{signals: [{signedBy: [k]}]}`, `rule r.require.signals[0]: provider is required`},
		{`{signals: [{provider: vuln, signedBy: [nobody]}]}`, `nobody`},
		{`{signals: [{provider: vuln, by: [k]}]}`, `by`},
		{`{conditions: ['signals.vuln.verdict == "clean"']}`, `reads signals, but require.signals names no provider`},
		{`{signals: [vuln], conditions: ['signals.vuln.verdict == "clean" || config.user != "0"']}`, `reads signals and the artifact together`},
		{`{signals: [vuln], conditions: ['signals.vuln.verdict == "clean" || annotations.size() > 0']}`, `reads signals and the artifact together`},
	}
	for _, c := range cases {
		dir := writeDir(t, map[string]string{"k.pub": "@key", "policy.yaml": "trust:\n  keys: [{name: k, path: k.pub}]\nrules:\n  - name: r\n    match: [\"**\"]\n    require: " + c.req + "\n"})
		var all []string
		for _, d := range Lint(filepath.Join(dir, "policy.yaml")) {
			all = append(all, d.String())
		}
		if !strings.Contains(strings.Join(all, "\n"), c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.req, all, c.want)
		}
	}
	// Signals alone are a requirement.
	dir := writeDir(t, map[string]string{"policy.yaml": "rules:\n  - name: r\n    match: [\"**\"]\n    require: {signals: [vuln]}\n"})
	if diags := Lint(filepath.Join(dir, "policy.yaml")); len(diags) != 0 {
		t.Fatalf("signals alone: %v", diags)
	}
}

// Rego reads the answers as input.signals (built only when a module reads them).
func TestSignalsRego(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"p.rego":      "package pullgate\n\ndeny contains sprintf(\"scanner says %s\", [input.signals.vuln.verdict]) if input.signals.vuln.verdict != \"clean\"\n",
		"policy.yaml": "rules:\n  - name: r\n    match: [\"**\"]\n    require: {signals: [vuln]}\n    rego: {module: ./p.rego, query: data.pullgate.deny}\n"})
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("x")
	dec := p.Evaluate(Input{Repository: "up/a", Digest: d, Signals: map[string]*Signal{"vuln": doneSignal("vuln", "vulnerable", nil)}})
	if dec.Allowed || dec.Reasons[0] != "rule r: rego: scanner says vulnerable" {
		t.Fatalf("%+v", dec)
	}
	if dec := p.Evaluate(Input{Repository: "up/a", Digest: d, Signals: map[string]*Signal{"vuln": doneSignal("vuln", "clean", nil)}}); !dec.Allowed {
		t.Fatalf("%+v", dec)
	}
}

// BenchmarkSignalsDecision is the policy's part of a decision over two
// providers' answers (one signed): the requirement checks, the signed
// predicate's decoding and two conditions over them.
func BenchmarkSignalsDecision(b *testing.B) {
	dir := writeDir(b, map[string]string{"policy.yaml": signalPolicy, "sandbox.pub": "@key", "release.pub": "@key"})
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	d := digest.FromString("model")
	signed := `{"provider":{"name":"p-sandbox","version":"1.0","dbVersion":"db1"},"status":"done","verdict":"clean","facts":{"egressAttempts":0}}`
	sb := doneSignal("sandbox", "clean", map[string]any{"egressAttempts": 0})
	sb.Evidence = []verify.Attestation{signedBy("sandbox-key", d, signed)}
	in := Input{Repository: "up/models/m", Digest: d, Artifact: &Artifact{Manifest: map[string]any{}, Annotations: map[string]string{}},
		Signals: map[string]*Signal{"vuln": doneSignal("vuln", "clean", map[string]any{"counts": map[string]any{"critical": 0}}), "sandbox": sb}}
	b.ReportAllocs()
	for b.Loop() {
		if dec := p.Evaluate(in); !dec.Allowed {
			b.Fatal(dec.Reasons)
		}
	}
}

// A Rego module that reads input.signals beside the artifact loads with a
// warning; one that reads them apart does not.
func TestSignalsRegoMixWarns(t *testing.T) {
	for src, warn := range map[string]bool{
		"package pullgate\n\ndeny contains \"root\" if { input.config.user == \"0\"; input.signals.vuln.verdict != \"clean\" }\n": true,
		"package pullgate\n\ndeny contains \"dirty\" if input.signals.vuln.verdict != \"clean\"\n":                                false,
	} {
		dir := writeDir(t, map[string]string{"p.rego": src,
			"policy.yaml": "rules:\n  - name: r\n    match: [\"**\"]\n    require: {signals: [vuln]}\n    rego: {module: ./p.rego, query: data.pullgate.deny}\n"})
		diags := Lint(filepath.Join(dir, "policy.yaml"))
		got := len(diags) == 1 && diags[0].Severity == SeverityWarning && strings.Contains(diags[0].Message, "read input.signals together with")
		if got != warn || (!warn && len(diags) != 0) {
			t.Errorf("%s: diagnostics %v, want warning %v", src, diags, warn)
		}
	}
}
