package policy

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/policy/glob"
	"github.com/pullgate/pullgate/verify"
)

var (
	dgst     = digest.FromString("image")
	other    = digest.FromString("other")
	indexDg  = digest.FromString("index")
	slsa02   = "https://slsa.dev/provenance/v0.2"
	builder  = `{"builder":{"id":"https://ci.example/builder"}}`
	badBuild = `{"builder":{"id":"https://evil.example/builder"}}`
)

func sig(signer string, subject digest.Digest) verify.Signature {
	return verify.Signature{Signer: signer, Subject: subject, Source: "cosign-signature", Evidence: digest.FromString("sig-" + signer + string(subject))}
}

func att(signer, ptype, pred string, subject digest.Digest) verify.Attestation {
	return verify.Attestation{
		Signer: signer, PredicateType: ptype, StatementType: "https://in-toto.io/Statement/v1",
		Predicate: json.RawMessage(pred),
		Subjects:  []verify.Subject{{Name: "img", Digest: map[string]string{"sha256": subject.Encoded()}}},
		Source:    "cosign-attestation", Evidence: digest.FromString("att-" + signer + ptype + pred),
	}
}

func result(subject digest.Digest, sigs []verify.Signature, atts []verify.Attestation, fails ...verify.Failure) verify.Result {
	return verify.Result{Subject: subject, Signatures: sigs, Attestations: atts, Failures: fails, Found: len(sigs) + len(atts) + len(fails)}
}

func TestEvaluate(t *testing.T) {
	p := loadFull(t)
	good := result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, builder, dgst)})
	cases := []struct {
		name      string
		in        Input
		allowed   bool
		wouldDeny bool
		exit      int
		rule      string
		reasons   []string // exact, in order
	}{
		{name: "no rule matches", in: Input{Repository: "docker.io/library/nginx", Digest: dgst},
			exit: 13, reasons: []string{"no policy rule matches docker.io/library/nginx"}},
		{name: "action deny", in: Input{Repository: "upstream.local/blocked/x", Digest: dgst, Evidence: []verify.Result{good}},
			exit: 13, rule: "blocked", reasons: []string{"rule blocked: action deny"}},
		{name: "action allow without evidence", in: Input{Repository: "upstream.local/misc", Digest: dgst},
			allowed: true, rule: "open"},
		{name: "verified", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{good}},
			allowed: true, rule: "apps"},
		{name: "no evidence at all", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{{Subject: dgst}}},
			exit: 10, rule: "apps", reasons: []string{
				"rule apps: no signature by key release on " + string(dgst),
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "no evidence results", in: Input{Repository: "upstream.local/app/web", Digest: dgst},
			exit: 10, rule: "apps", reasons: []string{
				"rule apps: no signature by key release on " + string(dgst),
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "only invalid signatures", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, nil, nil, verify.Failure{Kind: verify.FailInvalid, Source: "cosign-signature", Reason: "signature does not verify with any configured key"})}},
			exit: 11, rule: "apps", reasons: []string{
				"rule apps: no signature by key release on " + string(dgst),
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "signer untrusted by this rule", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("ci", dgst)}, []verify.Attestation{att("release", slsa02, builder, dgst)})}},
			exit: 11, rule: "apps", reasons: []string{"rule apps: no signature by key release on " + string(dgst)}},
		{name: "digest mismatch failure", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, nil, nil, verify.Failure{Kind: verify.FailMismatch, Source: "cosign-signature", Reason: "payload digest is " + string(other)})}},
			exit: 12, rule: "apps", reasons: []string{
				"rule apps: no signature by key release on " + string(dgst),
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "attestation subject mismatch is ignored", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, builder, other)})}},
			exit: 12, rule: "apps", reasons: []string{
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "signature over another digest is ignored", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", other)}, []verify.Attestation{att("release", slsa02, builder, dgst)})}},
			exit: 12, rule: "apps", reasons: []string{"rule apps: no signature by key release on " + string(dgst)}},
		{name: "result about another digest is ignored", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(other, []verify.Signature{sig("release", other)}, []verify.Attestation{att("release", slsa02, builder, other)})}},
			exit: 12, rule: "apps", reasons: []string{
				"rule apps: no signature by key release on " + string(dgst),
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "malformed evidence", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, nil, verify.Failure{Kind: verify.FailMalformed, Source: "cosign-attestation", Reason: "DSSE envelope: invalid JSON"})}},
			exit: 14, rule: "apps", reasons: []string{"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found (malformed cosign-attestation evidence not counted: DSSE envelope: invalid JSON)"}},
		{name: "fetch failure never allows", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, nil, verify.Failure{Kind: verify.FailFetch, Source: "referrers", Reason: "upstream 503"})}},
			exit: 1, rule: "apps", reasons: []string{"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "condition false", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, badBuild, dgst)})}},
			exit: 13, rule: "apps", reasons: []string{`rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: condition predicate.builder.id == "https://ci.example/builder" is false`}},
		{name: "condition runtime error", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, `{"other":1}`, dgst)})}},
			exit: 13, rule: "apps", reasons: []string{`rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: condition error: no such key: builder`}},
		{name: "predicate not JSON", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", slsa02, `{`, dgst)})}},
			exit: 13, rule: "apps", reasons: []string{`rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: condition error: predicate is not valid JSON: invalid JSON: unexpected end of input at $ (byte 1)`}},
		{name: "one good attestation among bad ones", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{
				att("release", slsa02, badBuild, dgst), att("release", slsa02, `{}`, dgst), att("release", slsa02, builder, dgst)})}},
			allowed: true, rule: "apps"},
		{name: "predicate type mismatch", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("release", "https://slsa.dev/provenance/v1", builder, dgst)})}},
			exit: 13, rule: "apps", reasons: []string{"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "attestation by untrusted signer", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, []verify.Signature{sig("release", dgst)}, []verify.Attestation{att("ci", slsa02, builder, dgst)})}},
			exit: 11, rule: "apps", reasons: []string{"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "inherited from parent index", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Parents: []digest.Digest{indexDg}, Evidence: []verify.Result{
			result(indexDg, []verify.Signature{sig("release", indexDg)}, []verify.Attestation{att("release", slsa02, builder, indexDg)})}},
			allowed: true, rule: "apps"},
		{name: "parent evidence without parent relation", in: Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(indexDg, []verify.Signature{sig("release", indexDg)}, []verify.Attestation{att("release", slsa02, builder, indexDg)})}},
			exit: 12, rule: "apps", reasons: []string{
				"rule apps: no signature by key release on " + string(dgst),
				"rule apps: attestation https://slsa.dev/provenance/v0.2 signed by release: none found"}},
		{name: "audit mode serves and reports", in: Input{Repository: "upstream.local/audit/x", Digest: dgst},
			allowed: true, wouldDeny: true, rule: "audit", reasons: []string{"rule audit: no signature by identity ci on " + string(dgst)}},
		{name: "two signer names", in: Input{Repository: "upstream.local/models/m", Digest: dgst, Checks: []Check{{Name: "chain", Passed: true}, {Name: "mbom", Passed: true}}},
			exit: 10, rule: "models", reasons: []string{"rule models: no signature by key release or identity ci on " + string(dgst)}},
		{name: "content finding denies", in: Input{Repository: "upstream.local/models/m", Digest: dgst,
			Evidence:        []verify.Result{result(dgst, []verify.Signature{sig("ci", dgst)}, nil)},
			ContentFindings: []string{"pickle: GLOBAL os.system is not allowed"}, Checks: []Check{{Name: "chain", Passed: true}, {Name: "mbom", Passed: true}}},
			exit: 13, rule: "models", reasons: []string{"rule models: content: pickle: GLOBAL os.system is not allowed"}},
		{name: "content finding denies under allow", in: Input{Repository: "upstream.local/misc", Digest: dgst, ContentFindings: []string{"safetensors: trailing data"}},
			exit: 13, rule: "open", reasons: []string{"rule open: content: safetensors: trailing data"}},
		{name: "chain and mbom not evaluated", in: Input{Repository: "upstream.local/models/m", Digest: dgst,
			Evidence: []verify.Result{result(dgst, []verify.Signature{sig("ci", dgst)}, nil)}},
			exit: 1, rule: "models", reasons: []string{"rule models: chain llm-release: not evaluated", "rule models: mbom: not evaluated"}},
		{name: "chain failed", in: Input{Repository: "upstream.local/models/m", Digest: dgst,
			Evidence: []verify.Result{result(dgst, []verify.Signature{sig("ci", dgst)}, nil)},
			Checks:   []Check{{Name: "chain", Passed: false, Detail: "eval statement missing", ExitCode: 13}, {Name: "mbom", Passed: true}}},
			exit: 13, rule: "models", reasons: []string{"rule models: chain: eval statement missing"}},
		{name: "models allowed", in: Input{Repository: "upstream.local/models/m", Digest: dgst,
			Evidence: []verify.Result{result(dgst, []verify.Signature{sig("ci", dgst)}, nil)},
			Checks:   []Check{{Name: "chain", Passed: true}, {Name: "mbom", Passed: true}}},
			allowed: true, rule: "models"},
		{name: "invalid digest", in: Input{Repository: "upstream.local/misc", Digest: "sha256:xyz"},
			exit: 1, reasons: []string{`invalid digest "sha256:xyz": invalid checksum digest length`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Evaluate(c.in)
			if d.Allowed != c.allowed || d.WouldDeny != c.wouldDeny || d.ExitCode != c.exit || d.Rule != c.rule {
				t.Fatalf("decision = allowed %v wouldDeny %v exit %d rule %q; want %v %v %d %q\nreasons: %q\nchecks: %+v",
					d.Allowed, d.WouldDeny, d.ExitCode, d.Rule, c.allowed, c.wouldDeny, c.exit, c.rule, d.Reasons, d.Checks)
			}
			if strings.Join(d.Reasons, "\n") != strings.Join(c.reasons, "\n") {
				t.Fatalf("reasons:\n got  %q\n want %q", d.Reasons, c.reasons)
			}
			if d.Revision != p.Revision() || d.Repository != c.in.Repository || d.Digest != string(c.in.Digest) {
				t.Fatalf("decision metadata = %+v", d)
			}
			if d.Allowed && !d.WouldDeny && len(d.Reasons) > 0 {
				t.Fatal("allowed with reasons")
			}
			if !d.Allowed && len(d.Reasons) == 0 {
				t.Fatal("denied without reason")
			}
			if d.WouldDeny && d.DenyExitCode == 0 {
				t.Fatal("audit decision lost its deny exit code")
			}
		})
	}
}

func TestEvaluateChecksRecordEvidence(t *testing.T) {
	p := loadFull(t)
	s := sig("release", dgst)
	a := att("release", slsa02, builder, dgst)
	d := p.Evaluate(Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
		result(dgst, []verify.Signature{s}, []verify.Attestation{a}, verify.Failure{Kind: verify.FailInvalid, Source: "bundle-referrer", Evidence: other, Reason: "untrusted key"})}})
	if !d.Allowed || d.ExitCode != 0 {
		t.Fatalf("%+v", d)
	}
	var sawSig, sawAtt, sawFail bool
	for _, c := range d.Checks {
		switch {
		case c.Name == "signature" && c.Passed && len(c.Evidence) == 1 && c.Evidence[0] == s.Evidence:
			sawSig = true
		case c.Name == "attestation" && c.Passed && len(c.Evidence) == 1 && c.Evidence[0] == a.Evidence:
			sawAtt = true
		case c.Name == "evidence" && !c.Passed && len(c.Evidence) == 1 && c.Evidence[0] == other && strings.Contains(c.Detail, "untrusted key"):
			sawFail = true
		}
	}
	if !sawSig || !sawAtt || !sawFail {
		t.Fatalf("checks = %+v", d.Checks)
	}
}

// TestConditionVariables checks what conditions can see.
func TestConditionVariables(t *testing.T) {
	conds := map[string]bool{
		`statement.predicateType == "https://slsa.dev/provenance/v0.2"`:                            true,
		`statement.subjects.exists(s, "sha256:" + s.digest.sha256 == digest)`:                      true,
		`statement.subject[0].name == "img"`:                                                       true,
		`repository.startsWith("upstream.local/app/")`:                                             true,
		`predicate.count > 2`:                                                                      true, // JSON number (double) vs int literal
		`predicate.metrics.toxicity <= 0.01`:                                                       true,
		`predicate.?missing.orValue("d") == "d"`:                                                   true,
		`predicate.builder.id.lowerAscii() == "x"`:                                                 false,
		`statement.type == "https://in-toto.io/Statement/v1" && statement._type == statement.type`: true,
	}
	for cond, want := range conds {
		prg, issues := compileCondition(cond)
		if len(issues) > 0 {
			t.Fatalf("%s: %v", cond, issues)
		}
		r := &Rule{Name: "r", Action: ActionVerify, Mode: ModeEnforce, Require: &Require{Attestations: []*AttestationRequirement{
			{PredicateType: slsa02, SignedBy: []string{"k"}, Condition: cond, prg: prg}}}}
		g, _ := glob.Compile("**")
		r.globs = []*glob.Pattern{g}
		d := r.Evaluate(Input{Repository: "upstream.local/app/web", Digest: dgst, Evidence: []verify.Result{
			result(dgst, nil, []verify.Attestation{att("k", slsa02, `{"count":3,"metrics":{"toxicity":0.001},"builder":{"id":"Y"}}`, dgst)})}}, "rev")
		if d.Allowed != want {
			t.Errorf("%s: allowed=%v reasons=%q", cond, d.Allowed, d.Reasons)
		}
	}
}

func TestConditionCostLimit(t *testing.T) {
	// A hostile predicate with a large list and a quadratic condition must
	// stop at the cost limit, and the result is a denial.
	cond := `predicate.xs.all(x, predicate.xs.all(y, x + y >= 0))`
	prg, issues := compileCondition(cond)
	if len(issues) > 0 {
		t.Fatal(issues)
	}
	xs := make([]int, 3000)
	pred, _ := json.Marshal(map[string]any{"xs": xs})
	r := &Rule{Name: "r", Action: ActionVerify, Mode: ModeEnforce, Require: &Require{Attestations: []*AttestationRequirement{
		{PredicateType: slsa02, SignedBy: []string{"k"}, Condition: cond, prg: prg}}}}
	start := time.Now()
	d := r.Evaluate(Input{Repository: "x/y", Digest: dgst, Evidence: []verify.Result{result(dgst, nil, []verify.Attestation{att("k", slsa02, string(pred), dgst)})}}, "rev")
	if d.Allowed || !strings.Contains(strings.Join(d.Reasons, ""), "condition error: operation cancelled: actual cost limit exceeded") {
		t.Fatalf("allowed=%v reasons=%q", d.Allowed, d.Reasons)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("cost limit did not bound evaluation: %v", el)
	}
}

func TestTLogRequiresSigningTimeForKeyless(t *testing.T) {
	dir := writeDir(t, map[string]string{"trusted_root.json": trustedRootStub, "policy.yaml": `trust:
  identities:
    - {name: ci, issuer: https://issuer, subject: dev@example.com}
  trustedRoot: ./trusted_root.json
rules:
  - name: r
    match: ["**"]
    require:
      tlog: true
      attestations:
        - {predicateType: "https://slsa.dev/provenance/v0.2", signedBy: [ci]}
`})
	p, err := Load(dir + "/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a := att("ci", slsa02, builder, dgst)
	in := Input{Repository: "x/y", Digest: dgst, Evidence: []verify.Result{result(dgst, nil, []verify.Attestation{a})}}
	if d := p.Evaluate(in); d.Allowed {
		t.Fatal("keyless attestation without signing time allowed under tlog: true")
	}
	in.Evidence[0].Attestations[0].SignedAt = time.Unix(1700000000, 0)
	if d := p.Evaluate(in); !d.Allowed {
		t.Fatalf("denied: %q", d.Reasons)
	}
}

func TestHandBuiltRuleFailsClosed(t *testing.T) {
	r := &Rule{Name: "x", Action: ActionVerify}
	if d := r.Evaluate(Input{Repository: "a/b", Digest: dgst}, ""); d.Allowed {
		t.Fatal("verify rule without Require allowed")
	}
	r = &Rule{Name: "x", Action: "bogus"}
	if d := r.Evaluate(Input{Repository: "a/b", Digest: dgst}, ""); d.Allowed || d.ExitCode != ExitConfig {
		t.Fatalf("unknown action: %+v", d)
	}
}

func BenchmarkDecideWarm(b *testing.B) {
	dir := writeDir(b, map[string]string{"cosign.pub": "@key", "policy.yaml": `trust:
  keys: [{name: release, path: ./cosign.pub}]
rules:
  - name: blocked
    match: ["up/blocked/**"]
    action: deny
  - name: apps
    match: ["up/app/**"]
    require:
      signatures: [release]
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: [release]
          condition: 'predicate.builder.id == "https://ci.example/builder"'
        - predicateType: https://spdx.dev/Document
          signedBy: [release]
          condition: 'predicate.packages.size() > 0'
        - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
          signedBy: [release]
          condition: 'predicate.scanner.result.summary.critical == 0'
`})
	p, err := Load(dir + "/policy.yaml")
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Repository: "up/app/web", Digest: dgst, Evidence: []verify.Result{result(dgst,
		[]verify.Signature{sig("release", dgst)},
		[]verify.Attestation{
			att("release", slsa02, builder, dgst),
			att("release", "https://spdx.dev/Document", `{"spdxVersion":"SPDX-2.3","packages":[{"name":"a"},{"name":"b"}]}`, dgst),
			att("release", "https://cosign.sigstore.dev/attestation/vuln/v1", `{"scanner":{"result":{"summary":{"critical":0,"high":2}}}}`, dgst),
		})}}
	if d := p.Evaluate(in); !d.Allowed {
		b.Fatalf("not allowed: %q", d.Reasons)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d := p.Evaluate(in); !d.Allowed {
			b.Fatal("denied")
		}
	}
}

func TestRuleVerifyOptions(t *testing.T) {
	p := loadFull(t)
	if o := p.Match("upstream.local/models/x").VerifyOptions(); !o.RequireTlog || !o.RequireTimestamp {
		t.Fatalf("models: %+v", o)
	}
	if o := p.Match("upstream.local/app/x").VerifyOptions(); o.RequireTlog || o.RequireTimestamp {
		t.Fatalf("apps: %+v", o)
	}
	var nilRule *Rule
	_ = nilRule.VerifyOptions()
}

func TestManyFindingsStillDeny(t *testing.T) {
	p := loadFull(t)
	var findings []string
	for i := 0; i < 500; i++ {
		findings = append(findings, "zip: entry uses ../ path")
	}
	d := p.Evaluate(Input{Repository: "upstream.local/misc", Digest: dgst, ContentFindings: findings})
	if d.Allowed || d.ExitCode != ExitUnmet || len(d.Reasons) != maxReasonsPerRule || len(d.Checks) < 500 {
		t.Fatalf("allowed=%v exit=%d reasons=%d checks=%d", d.Allowed, d.ExitCode, len(d.Reasons), len(d.Checks))
	}
}
