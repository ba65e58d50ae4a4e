package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
)

// kofnPolicy has three keys, two keyless identities and k-of-n rules.
const kofnPolicy = `trust:
  keys:
    - {name: ci-a, path: ./ci-a.pub}
    - {name: ci-b, path: ./ci-b.pub}
    - {name: release, path: ./release.pub}
  identities:
    - {name: id-a, issuer: https://issuer.example, subjectRegExp: ^https://github\.com/acme/}
    - {name: id-b, issuer: https://issuer.example, subjectRegExp: ^https://github\.com/acme/app/}
  trustedRoot: ./trusted_root.json
rules:
  - name: platform
    match: ["up/platform/**"]
    require:
      signatures: {anyOf: [ci-a, ci-b, release], min: 2}
  - name: both
    match: ["up/both/**"]
    require:
      signatures: {allOf: [ci-a, release]}
  - name: keyless
    match: ["up/keyless/**"]
    require:
      signatures: {anyOf: [id-a, id-b], min: 2}
  - name: attested
    match: ["up/att/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: {anyOf: [ci-a, ci-b, release], min: 2}
          condition: 'predicate.builder.id == "https://ci.example/builder"'
  - name: one
    match: ["up/one/**"]
    require:
      signatures: {anyOf: [ci-a, ci-b], min: 1}
`

func kofnFiles(policy string) map[string]string {
	return map[string]string{"policy.yaml": policy, "ci-a.pub": "@key", "ci-b.pub": "@key", "release.pub": "@key", "trusted_root.json": trustedRootStub}
}

func loadKOfN(t *testing.T) *Policy {
	t.Helper()
	p, err := Load(filepath.Join(writeDir(t, kofnFiles(kofnPolicy)), "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSignersParsed(t *testing.T) {
	p := loadKOfN(t)
	want := map[string]struct {
		names string
		min   int
	}{"platform": {"ci-a,ci-b,release", 2}, "both": {"ci-a,release", 2}, "keyless": {"id-a,id-b", 2}, "one": {"ci-a,ci-b", 1}}
	for _, r := range p.Rules {
		w, ok := want[r.Name]
		if !ok {
			continue
		}
		if got := strings.Join(r.Require.Signatures, ","); got != w.names || r.Require.SignaturesMin != w.min {
			t.Errorf("rule %s: signatures %s min %d, want %s min %d", r.Name, got, r.Require.SignaturesMin, w.names, w.min)
		}
	}
	a := p.Rules[3].Require.Attestations[0]
	if strings.Join(a.SignedBy, ",") != "ci-a,ci-b,release" || a.SignedByMin != 2 {
		t.Errorf("attestation signedBy %v min %d", a.SignedBy, a.SignedByMin)
	}
}

// TestSignersRevision: {anyOf: [..], min: 1} is the list form (same
// revision, so caches of existing policies stay valid); min changes it.
func TestSignersRevision(t *testing.T) {
	// Keys differ per call: compare policies that share the key files.
	dir := writeDir(t, map[string]string{"ci-a.pub": "@key", "ci-b.pub": "@key"})
	load := func(sigs string) string {
		t.Helper()
		pol := "trust:\n  keys:\n    - {name: ci-a, path: ./ci-a.pub}\n    - {name: ci-b, path: ./ci-b.pub}\nrules:\n  - name: r\n    match: [\"x/**\"]\n    require:\n      signatures: " + sigs + "\n"
		path := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(path, []byte(pol), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return p.Revision()
	}
	list, any1, any2, all := load("[ci-a, ci-b]"), load("{anyOf: [ci-a, ci-b], min: 1}"), load("{anyOf: [ci-a, ci-b], min: 2}"), load("{allOf: [ci-a, ci-b]}")
	if list != any1 {
		t.Error("anyOf with min 1 has another revision than the list form")
	}
	if any2 == list {
		t.Error("min 2 did not change the revision")
	}
	if all != any2 {
		t.Error("allOf of two differs from anyOf of the same two with min 2")
	}
}

func TestSignersDiagnostics(t *testing.T) {
	cases := []struct {
		name, sigs string
		want       string
	}{
		{"min zero", "{anyOf: [ci-a, ci-b], min: 0}", `8:44: rule r.require.signatures.min 0 is less than 1`},
		{"min negative", "{anyOf: [ci-a, ci-b], min: -1}", `8:44: rule r.require.signatures.min -1 is less than 1`},
		{"min above n", "{anyOf: [ci-a, ci-b], min: 3}", `8:44: rule r.require.signatures.min 3 is more than the 2 signer(s) in anyOf: it can never be met`},
		{"min not a number", "{anyOf: [ci-a, ci-b], min: two}", `8:44: rule r.require.signatures.min must be a whole number, got a str`},
		{"unknown name", "{anyOf: [ci-a, ci-c], min: 2}", `8:32: rule r.require.signatures.anyOf: "ci-c" is not a trust key or identity`},
		{"duplicate name", "{anyOf: [ci-a, ci-a], min: 2}", `8:32: rule r.require.signatures.anyOf: "ci-a" is listed twice`},
		{"both anyOf and allOf", "{anyOf: [ci-a], allOf: [ci-b]}", `8:33: rule r.require.signatures: anyOf and allOf cannot both be given`},
		{"allOf with min", "{allOf: [ci-a, ci-b], min: 2}", `8:39: rule r.require.signatures: min applies to anyOf, not allOf`},
		{"neither", "{min: 2}", `8:17: rule r.require.signatures needs anyOf (with min) or allOf`},
		{"unknown key", "{oneOf: [ci-a], min: 1}", `8:18: rule r.require.signatures: unknown key "oneOf"`},
		{"scalar", "ci-a", `8:17: rule r.require.signatures must be a list of trust names or a mapping with anyOf or allOf, got a str`},
		{"empty anyOf", "{anyOf: [], min: 1}", `8:25: rule r.require.signatures.anyOf is empty`},
		{"same key twice", "{anyOf: [ci-a, ci-a2], min: 2}", `8:32: rule r.require.signatures.anyOf: key "ci-a2" is the same public key as "ci-a"`},
		{"same key twice in allOf", "{allOf: [ci-a, ci-a2]}", `8:32: rule r.require.signatures.allOf: key "ci-a2" is the same public key as "ci-a"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pol := "trust:\n  keys:\n    - {name: ci-a, path: ./ci-a.pub}\n    - {name: ci-b, path: ./ci-b.pub}\n    - {name: ci-a2, path: ./ci-a.pub}\nrules:\n  - {name: r, match: [\"x/**\"], require: {attestations: [{predicateType: t, signedBy: [ci-a]}],\n    signatures: " + c.sigs + "}}\n"
			dir := writeDir(t, map[string]string{"policy.yaml": pol, "ci-a.pub": "@key", "ci-b.pub": "@key"})
			path := filepath.Join(dir, "policy.yaml")
			ds := Lint(path)
			got := diagLines(ds)
			if len(got) != 1 || !strings.HasPrefix(got[0], c.want) || ds[0].Fix == "" {
				t.Fatalf("diagnostics:\n%s\nwant one starting %s (with a fix)", strings.Join(got, "\n"), c.want)
			}
			if _, err := Load(path); err == nil {
				t.Fatal("Load accepted it")
			}
		})
	}
	// The same checks apply to an attestation's signedBy.
	pol := "trust:\n  keys:\n    - {name: ci-a, path: ./ci-a.pub}\n    - {name: ci-b, path: ./ci-b.pub}\nrules:\n  - name: r\n    match: [\"x/**\"]\n    require:\n      attestations:\n        - predicateType: t\n          signedBy: {anyOf: [ci-a, ci-b], min: 3}\n"
	dir := writeDir(t, map[string]string{"policy.yaml": pol, "ci-a.pub": "@key", "ci-b.pub": "@key"})
	got := diagLines(Lint(filepath.Join(dir, "policy.yaml")))
	if len(got) != 1 || !strings.HasPrefix(got[0], "11:48: rule r.require.attestations[0].signedBy.min 3 is more than the 2 signer(s) in anyOf") {
		t.Fatalf("signedBy diagnostics: %v", got)
	}
	// Two names for one key are fine where any one signer suffices.
	pol = "trust:\n  keys:\n    - {name: ci-a, path: ./ci-a.pub}\n    - {name: ci-a2, path: ./ci-a.pub}\nrules:\n  - name: r\n    match: [\"x/**\"]\n    require:\n      signatures: {anyOf: [ci-a, ci-a2], min: 1}\n"
	dir = writeDir(t, map[string]string{"policy.yaml": pol, "ci-a.pub": "@key"})
	if ds := Lint(filepath.Join(dir, "policy.yaml")); len(ds) != 0 {
		t.Fatalf("min 1 over one key under two names: %v", ds)
	}
}

func sigAs(signer, identity string, subject digest.Digest, n int) verify.Signature {
	s := sig(signer, subject)
	s.Identity = identity
	s.Evidence = digest.FromString(s.Evidence.String() + identity + string(rune('0'+n)))
	return s
}

func TestSignersKOfN(t *testing.T) {
	p := loadKOfN(t)
	const certA, certB = "issuer=https://issuer.example subject=https://github.com/acme/app/x", "issuer=https://issuer.example subject=https://github.com/acme/lib/y"
	sigs := func(ss ...verify.Signature) []verify.Result { return []verify.Result{result(dgst, ss, nil)} }
	invalid := verify.Failure{Kind: verify.FailInvalid, Source: "cosign-signature", Reason: "not signed by any configured key/identity"}
	cases := []struct {
		name    string
		repo    string
		ev      []verify.Result
		parents []digest.Digest
		allowed bool
		exit    int
		reason  string // exact, the only one
		check   string // occurs in a check's detail
	}{
		{name: "2 of 3", repo: "up/platform/a", ev: sigs(sig("ci-a", dgst), sig("release", dgst)), allowed: true},
		{name: "3 of 3", repo: "up/platform/a", ev: sigs(sig("ci-a", dgst), sig("ci-b", dgst), sig("release", dgst)), allowed: true},
		{name: "1 of 3", repo: "up/platform/a", ev: sigs(sig("ci-a", dgst)), exit: ExitUnmet,
			reason: "rule platform: signatures: 1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"},
		{name: "same key twice counts once", repo: "up/platform/a", ev: sigs(sigAs("ci-a", "", dgst, 1), sigAs("ci-a", "", dgst, 2)), exit: ExitUnmet,
			reason: "rule platform: signatures: 1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)",
			check:  "signed by key ci-a (cosign-signature) (not counted: ci-a counts once)"},
		{name: "untrusted key counts zero", repo: "up/platform/a", ev: []verify.Result{result(dgst, []verify.Signature{sig("ci-a", dgst)}, nil, invalid)}, exit: ExitInvalid,
			reason: "rule platform: signatures: 1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"},
		{name: "none", repo: "up/platform/a", ev: sigs(), exit: ExitNoEvidence,
			reason: "rule platform: signatures: 0 of 2 required signers verified (signed: none; missing: ci-a, ci-b, release)"},
		{name: "signature over another digest", repo: "up/platform/a", ev: sigs(sig("ci-a", dgst), sig("ci-b", other)), exit: ExitMismatch,
			reason: "rule platform: signatures: 1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"},
		{name: "signers on the parent index count", repo: "up/platform/a", ev: []verify.Result{result(dgst, []verify.Signature{sig("ci-a", dgst)}, nil), result(indexDg, []verify.Signature{sig("ci-b", indexDg)}, nil)},
			parents: []digest.Digest{indexDg}, allowed: true},
		{name: "allOf met", repo: "up/both/a", ev: sigs(sig("release", dgst), sig("ci-a", dgst)), allowed: true},
		{name: "allOf unmet", repo: "up/both/a", ev: sigs(sig("release", dgst), sig("ci-b", dgst)), exit: ExitUnmet,
			reason: "rule both: signatures: 1 of 2 required signers verified (signed: release; missing: ci-a)"},
		{name: "two certificate identities (id-a counted for its second one)", repo: "up/keyless/a", ev: sigs(sigAs("id-a", certA, dgst, 1), sigAs("id-b", certA, dgst, 1), sigAs("id-a", certB, dgst, 2)), allowed: true},
		{name: "one certificate matching two identities counts once", repo: "up/keyless/a", ev: sigs(sigAs("id-a", certA, dgst, 1), sigAs("id-b", certA, dgst, 1)), exit: ExitUnmet,
			reason: "rule keyless: signatures: 1 of 2 required signers verified (signed: id-a; missing: id-b (same signer as id-a))",
			check:  "signed by identity id-b (cosign-signature) as " + certA + " (not counted: same signer as id-a)"},
		{name: "min 1 mapping is the list form", repo: "up/one/a", ev: sigs(sig("ci-b", dgst)), allowed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Evaluate(Input{Repository: c.repo, Digest: dgst, Evidence: c.ev, Parents: c.parents})
			if d.Allowed != c.allowed || d.ExitCode != c.exit {
				t.Fatalf("allowed %v exit %d, want %v %d; reasons %q", d.Allowed, d.ExitCode, c.allowed, c.exit, d.Reasons)
			}
			if c.check != "" && !strings.Contains(toJSONString(d.Checks), c.check) {
				t.Errorf("checks lack %q: %+v", c.check, d.Checks)
			}
			if c.allowed {
				n := 0
				for _, ch := range d.Checks {
					if ch.Name == checkSignature && ch.Passed && strings.HasPrefix(ch.Detail, "signed by") {
						n++
					}
				}
				if want := max(p.Match(c.repo).Require.SignaturesMin, 1); n < want {
					t.Fatalf("%d passing signature checks, want %d: %+v", n, want, d.Checks)
				}
				return
			}
			if len(d.Reasons) != 1 || d.Reasons[0] != c.reason {
				t.Fatalf("reasons %q\nwant %q", d.Reasons, c.reason)
			}
		})
	}
}

// TestSignersOneKeyTwoNames: were one key listed under two names (lint
// refuses it in a k-of-n list; a hand-built policy can still do it), one
// signature verifying under both names counts once.
func TestSignersOneKeyTwoNames(t *testing.T) {
	p := loadKOfN(t)
	p.Trust.keyIDs["ci-b"] = p.Trust.keyIDs["ci-a"]
	d := p.Evaluate(Input{Repository: "up/platform/a", Digest: dgst, Evidence: []verify.Result{result(dgst, []verify.Signature{sig("ci-a", dgst), sig("ci-b", dgst)}, nil)}})
	want := "rule platform: signatures: 1 of 2 required signers verified (signed: ci-a; missing: ci-b (same signer as ci-a), release)"
	if d.Allowed || len(d.Reasons) != 1 || d.Reasons[0] != want {
		t.Fatalf("allowed %v reasons %q, want %q", d.Allowed, d.Reasons, want)
	}
}

func TestAttestersKOfN(t *testing.T) {
	p := loadKOfN(t)
	atts := func(as ...verify.Attestation) []verify.Result { return []verify.Result{result(dgst, nil, as)} }
	cond := `predicate.builder.id == "https://ci.example/builder"`
	what := "rule attested: attestation " + slsa02 + " signed by 2 of ci-a, ci-b, release: "
	second := att("ci-a", slsa02, `{"builder":{"id":"https://ci.example/builder"},"n":2}`, dgst)
	cases := []struct {
		name    string
		ev      []verify.Result
		allowed bool
		exit    int
		reason  string
	}{
		{name: "two signers pass", ev: atts(att("ci-a", slsa02, builder, dgst), att("release", slsa02, builder, dgst)), allowed: true},
		{name: "one passes, one is false", ev: atts(att("ci-a", slsa02, builder, dgst), att("ci-b", slsa02, badBuild, dgst)), exit: ExitUnmet,
			reason: what + "1 of 2 required signers verified (signed: ci-a; missing: ci-b, release); condition " + cond + " is false for ci-b"},
		{name: "one signer twice counts once", ev: atts(att("ci-a", slsa02, builder, dgst), second), exit: ExitUnmet,
			reason: what + "1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"},
		{name: "a signer's failing attestation does not cancel its passing one", ev: atts(att("ci-a", slsa02, badBuild, dgst), att("ci-a", slsa02, builder, dgst), att("release", slsa02, builder, dgst)), allowed: true},
		{name: "condition error", ev: atts(att("ci-a", slsa02, builder, dgst), att("release", slsa02, `{"x":1}`, dgst)), exit: ExitUnmet,
			reason: what + "1 of 2 required signers verified (signed: ci-a; missing: ci-b, release); condition error for release: "},
		{name: "other predicate types do not count", ev: atts(att("ci-a", slsa02, builder, dgst), att("release", "https://example.com/other", builder, dgst)), exit: ExitUnmet,
			reason: what + "1 of 2 required signers verified (signed: ci-a; missing: ci-b, release)"},
		{name: "none", ev: atts(), exit: ExitNoEvidence,
			reason: what + "0 of 2 required signers verified (signed: none; missing: ci-a, ci-b, release)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := p.Evaluate(Input{Repository: "up/att/x", Digest: dgst, Evidence: c.ev})
			if d.Allowed != c.allowed || d.ExitCode != c.exit {
				t.Fatalf("allowed %v exit %d, want %v %d; reasons %q", d.Allowed, d.ExitCode, c.allowed, c.exit, d.Reasons)
			}
			if c.allowed {
				return
			}
			if len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], c.reason) {
				t.Fatalf("reasons %q\nwant %q", d.Reasons, c.reason)
			}
		})
	}
}

func toJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
