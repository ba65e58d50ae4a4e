package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify"
)

// benchCEL and benchRego decide the same: a release signature, and SLSA
// provenance from the CI builder, an SPDX SBOM with packages and a
// vulnerability scan without critical findings, each signed by release.
const benchCEL = `trust:
  keys: [{name: release, path: ./cosign.pub}]
rules:
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
          condition: 'predicate.spdxVersion.startsWith("SPDX-2") && size(predicate.packages) > 1'
        - predicateType: https://cosign.sigstore.dev/attestation/vuln/v1
          signedBy: [release]
          condition: 'predicate.scanner.result.summary.critical == 0'
`

const benchRegoPolicy = `trust:
  keys: [{name: release, path: ./cosign.pub}]
rules:
  - name: apps
    match: ["up/app/**"]
    require:
      signatures: [release]
    rego: {module: ./apps.rego, query: data.pullgate.deny}
`

// benchRegoModule is the Rego equivalent of benchCEL's attestation
// conditions (the signature stays a YAML requirement in both).
const benchRegoModule = `package pullgate

deny contains "no SLSA provenance from https://ci.example/builder" if not slsa
deny contains "no SPDX SBOM with packages" if not sbom
deny contains "no vulnerability scan without critical findings" if not vuln

by_release(t) := [a | some a in input.attestations; a.predicateType == t; a.signer == "release"]

slsa if {
	some a in by_release("https://slsa.dev/provenance/v0.2")
	a.predicate.builder.id == "https://ci.example/builder"
}

sbom if {
	some a in by_release("https://spdx.dev/Document")
	startswith(a.predicate.spdxVersion, "SPDX-2")
	count(a.predicate.packages) > 1
}

vuln if {
	some a in by_release("https://cosign.sigstore.dev/attestation/vuln/v1")
	a.predicate.scanner.result.summary.critical == 0
}
`

// benchManifest is an image manifest as the input carries it.
const benchManifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:6a3b8a4c9d0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9","size":1469},
"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809","size":3623807},
{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a","size":1032}],
"annotations":{"org.opencontainers.image.base.digest":"sha256:3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b","org.opencontainers.image.created":"2026-11-30T10:00:00Z"}}`

func benchInput() Input {
	return Input{Repository: "up/app/web", Digest: dgst, Tag: "v1", Artifact: testArtifact([]byte(benchManifest)),
		Evidence: []verify.Result{result(dgst,
			[]verify.Signature{sig("release", dgst)},
			[]verify.Attestation{
				att("release", slsa02, builder, dgst),
				att("release", "https://spdx.dev/Document", `{"spdxVersion":"SPDX-2.3","packages":[{"name":"a"},{"name":"b"}]}`, dgst),
				att("release", "https://cosign.sigstore.dev/attestation/vuln/v1", `{"scanner":{"result":{"summary":{"critical":0,"high":2}}}}`, dgst),
			})}}
}

func loadBench(tb testing.TB, pol string) *Policy {
	dir := writeDir(tb, map[string]string{"cosign.pub": "@key", "policy.yaml": pol, "apps.rego": benchRegoModule})
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestBenchPoliciesAgree keeps the benchmark honest: both policies allow the
// input and deny the same tampered inputs.
func TestBenchPoliciesAgree(t *testing.T) {
	cel, rg := loadBench(t, benchCEL), loadBench(t, benchRegoPolicy)
	mutate := []func(in *Input){
		func(in *Input) {},
		func(in *Input) { in.Evidence[0].Attestations[0].Predicate = []byte(badBuild) },
		func(in *Input) {
			in.Evidence[0].Attestations[1].Predicate = []byte(`{"spdxVersion":"SPDX-2.3","packages":[{"name":"a"}]}`)
		},
		func(in *Input) {
			in.Evidence[0].Attestations[2].Predicate = []byte(`{"scanner":{"result":{"summary":{"critical":1}}}}`)
		},
		func(in *Input) { in.Evidence[0].Attestations[0].Signer = "other" },
	}
	for i, m := range mutate {
		in := benchInput()
		m(&in)
		dc, dr := cel.Evaluate(in), rg.Evaluate(in)
		if dc.Allowed != dr.Allowed || dc.Allowed != (i == 0) {
			t.Fatalf("case %d: cel allowed=%v %q, rego allowed=%v %q", i, dc.Allowed, dc.Reasons, dr.Allowed, dr.Reasons)
		}
		if i > 0 && !strings.Contains(strings.Join(dr.Reasons, ";"), "rego: no ") {
			t.Fatalf("case %d: rego reasons %q", i, dr.Reasons)
		}
	}
}

// BenchmarkColdPolicy is the policy's part of a cold decision (evidence
// verified, nothing cached): the same logic as CEL conditions and as one
// Rego rule over the full input document.
func BenchmarkColdPolicy(b *testing.B) {
	for _, c := range []struct{ name, pol string }{{"cel", benchCEL}, {"rego", benchRegoPolicy}} {
		b.Run(c.name, func(b *testing.B) {
			p := loadBench(b, c.pol)
			in := benchInput()
			if d := p.Evaluate(in); !d.Allowed {
				b.Fatalf("denied: %q", d.Reasons)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if d := p.Evaluate(in); !d.Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
}
