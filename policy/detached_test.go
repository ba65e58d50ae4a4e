package policy

import (
	"path/filepath"
	"testing"

	"github.com/pullgate/pullgate/verify"
)

// An attestation whose subject is content (OpenSSF model signing) counts only
// when the caller's binding check for its predicate type passed.
func TestDetachedSubjectNeedsBinding(t *testing.T) {
	const oms = "https://model_signing/signature/v1.0"
	files := fullFiles()
	files["oms.yaml"] = `trust:
  keys:
    - name: release
      path: ./cosign.pub
rules:
  - name: models
    match: ["upstream.local/**"]
    require:
      attestations:
        - predicateType: ` + oms + `
          signedBy: [release]
`
	dir := writeDir(t, files)
	p, err := Load(filepath.Join(dir, "oms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	a := att("release", oms, `{}`, other) // names the model's root digest, not dgst
	a.DetachedSubject = true
	res := result(dgst, nil, []verify.Attestation{a})
	in := Input{Repository: "upstream.local/m", Digest: dgst, Evidence: []verify.Result{res}}

	if d := p.Evaluate(in); d.Allowed {
		t.Fatalf("detached attestation without a binding check allowed: %+v", d)
	}
	in.Checks = []Check{{Name: BindingCheck(oms), Passed: false, Detail: "layer digests differ"}}
	if d := p.Evaluate(in); d.Allowed {
		t.Fatalf("detached attestation with a failed binding check allowed: %+v", d)
	}
	in.Checks = []Check{{Name: BindingCheck(oms), Passed: true}}
	if d := p.Evaluate(in); !d.Allowed {
		t.Fatalf("bound detached attestation denied: %v", d.Reasons)
	}
	// Without the flag, the same statement about another digest is ignored.
	a.DetachedSubject = false
	in.Evidence = []verify.Result{result(dgst, nil, []verify.Attestation{a})}
	if d := p.Evaluate(in); d.Allowed {
		t.Fatal("statement about another digest counted")
	}
}
