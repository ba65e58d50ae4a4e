package verifybench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/dsse"
)

// signer is an ECDSA P-256 key signing evidence as cosign does.
type signer struct {
	priv *ecdsa.PrivateKey
	pub  []byte // PEM
}

func newSigner(tb testing.TB) *signer {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return &signer{priv: priv, pub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func (s *signer) sign(tb testing.TB, msg []byte) []byte {
	h := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, s.priv, h[:])
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

func simpleSigning(d digest.Digest) []byte {
	return []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":"upstream.local/app/web"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, d))
}

func statement(predType, predicate string, d digest.Digest) []byte {
	return []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"upstream.local/app/web","digest":{"sha256":%q}}],"predicateType":%q,"predicate":%s}`, d.Encoded(), predType, predicate))
}

func (s *signer) envelope(tb testing.TB, payload []byte) []byte {
	const pt = "application/vnd.in-toto+json"
	b, _ := json.Marshal(map[string]any{
		"payloadType": pt, "payload": base64.StdEncoding.EncodeToString(payload),
		"signatures": []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString(s.sign(tb, dsse.PAE(pt, payload)))}},
	})
	return b
}

// keyBundle is a sigstore bundle v0.3 with a DSSE envelope and a public-key
// hint, as cosign v3 --key writes.
func (s *signer) keyBundle(tb testing.TB, payload []byte) []byte {
	const pt = "application/vnd.in-toto+json"
	b, _ := json.Marshal(map[string]any{
		"mediaType":            cosign.BundleMediaType,
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": "release"}},
		"dsseEnvelope": map[string]any{
			"payload": base64.StdEncoding.EncodeToString(payload), "payloadType": pt,
			"signatures": []map[string]string{{"sig": base64.StdEncoding.EncodeToString(s.sign(tb, dsse.PAE(pt, payload)))}},
		},
	})
	return b
}

// memFetcher is a verify.Fetcher over evidence held in memory: the cold
// decision measures verification and policy, not the network.
type memFetcher struct {
	manifests map[string][]byte // tag or digest → body
	blobs     map[digest.Digest][]byte
	referrers map[digest.Digest][]ocispec.Descriptor
}

func newMemFetcher() *memFetcher {
	return &memFetcher{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}, referrers: map[digest.Digest][]ocispec.Descriptor{}}
}

func (f *memFetcher) Referrers(_ context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	for _, d := range f.referrers[subject] {
		if artifactType == "" || d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *memFetcher) Manifest(_ context.Context, ref string) ([]byte, string, digest.Digest, error) {
	b, ok := f.manifests[ref]
	if !ok {
		return nil, "", "", &verify.NotFoundError{What: "manifest " + ref}
	}
	return b, ocispec.MediaTypeImageManifest, digest.FromBytes(b), nil
}

func (f *memFetcher) Blob(_ context.Context, d digest.Digest, maxSize int64) ([]byte, error) {
	b, ok := f.blobs[d]
	if !ok {
		return nil, &verify.NotFoundError{What: "blob " + d.String()}
	}
	if int64(len(b)) > maxSize {
		return nil, fmt.Errorf("blob %s exceeds %d bytes", d, maxSize)
	}
	return b, nil
}

func (f *memFetcher) blob(b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

// manifest stores an OCI manifest under its digest and, when tag is set,
// under the tag.
func (f *memFetcher) manifest(tag, artifactType string, subject *ocispec.Descriptor, layers []ocispec.Descriptor) ocispec.Descriptor {
	cfg := f.blob([]byte("{}"))
	cfg.MediaType = "application/vnd.oci.empty.v1+json"
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Config: cfg, Layers: layers, Subject: subject}
	m.SchemaVersion = 2
	body, _ := json.Marshal(m)
	d := digest.FromBytes(body)
	f.manifests[d.String()] = body
	if tag != "" {
		f.manifests[tag] = body
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: artifactType}
}

// Three predicate types the cold-decision policy requires, with conditions.
var predicates = []struct{ typ, body, cond string }{
	{"https://slsa.dev/provenance/v0.2", `{"builder":{"id":"https://ci.example/builder"},"buildType":"https://ci.example/type","invocation":{},"materials":[]}`, `predicate.builder.id == "https://ci.example/builder"`},
	{"https://spdx.dev/Document", `{"spdxVersion":"SPDX-2.3","name":"web","packages":[{"name":"a"},{"name":"b"}]}`, `predicate.spdxVersion.startsWith("SPDX-2") && size(predicate.packages) > 1`},
	{"https://cosign.sigstore.dev/attestation/vuln/v1", `{"scanner":{"result":{"critical":0,"high":0}}}`, `predicate.scanner.result.critical == 0.0`},
}

// coldFixture is a subject with evidence in memory and the compiled policy.
type coldFixture struct {
	f       *memFetcher
	subject digest.Digest
	trust   *verify.Trust
	eval    func(res verify.Result) (allowed bool, reasons []string)
	opts    verify.CollectOptions
}

// newColdFixture builds 1 signature + the 3 attestations above, as cosign v2
// legacy tags (bundles=false) or cosign v3 bundle referrers (bundles=true),
// plus extra statements of the first predicate type (for the 100-statement case).
func newColdFixture(tb testing.TB, bundles bool, extra int) *coldFixture {
	tb.Helper()
	return newColdFixtureWith(tb, bundles, extra, "")
}

// coldRego is the Rego equivalent of the predicates' CEL conditions (issue
// 16): the same decision by one Rego rule over the input document.
const coldRego = `package pullgate

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
	a.predicate.scanner.result.critical == 0
}
`

// newColdFixtureWith is newColdFixture whose rule decides the attestations
// by a Rego module instead of CEL conditions when regoModule is set.
func newColdFixtureWith(tb testing.TB, bundles bool, extra int, regoModule string) *coldFixture {
	tb.Helper()
	s := newSigner(tb)
	f := newMemFetcher()
	subject := digest.FromString(fmt.Sprintf("image %d %v", extra, bundles))
	type st struct{ typ, body string }
	var sts []st
	for _, p := range predicates {
		sts = append(sts, st{p.typ, p.body})
	}
	for i := 0; i < extra; i++ {
		sts = append(sts, st{predicates[0].typ, fmt.Sprintf(`{"builder":{"id":"https://ci.example/builder-%d"},"n":%d}`, i, i)})
	}
	if bundles {
		var refs []ocispec.Descriptor
		add := func(payload []byte) {
			l := f.blob(s.keyBundle(tb, payload))
			l.MediaType = cosign.BundleMediaType
			refs = append(refs, f.manifest("", cosign.BundleMediaType, &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: 100}, []ocispec.Descriptor{l}))
		}
		add(statement(cosign.SignPredicateType, `{}`, subject))
		for _, x := range sts {
			add(statement(x.typ, x.body, subject))
		}
		f.referrers[subject] = refs
	} else {
		payload := simpleSigning(subject)
		l := f.blob(payload)
		l.MediaType = cosign.SimpleSigningMediaType
		l.Annotations = map[string]string{cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(s.sign(tb, payload))}
		f.manifest(cosign.TagFor(subject, "sig"), "", nil, []ocispec.Descriptor{l})
		var layers []ocispec.Descriptor
		for _, x := range sts {
			l := f.blob(s.envelope(tb, statement(x.typ, x.body, subject)))
			l.MediaType = cosign.DSSEMediaType
			l.Annotations = map[string]string{cosign.SignatureAnnotation: "", "predicateType": x.typ}
			layers = append(layers, l)
		}
		f.manifest(cosign.TagFor(subject, "att"), "", nil, layers)
	}

	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), s.pub, 0o600); err != nil {
		tb.Fatal(err)
	}
	var atts []string
	for _, p := range predicates {
		atts = append(atts, fmt.Sprintf("        - predicateType: %s\n          signedBy: [release]\n          condition: '%s'\n", p.typ, p.cond))
	}
	pol := "trust:\n  keys:\n    - name: release\n      path: ./release.pub\nrules:\n  - name: apps\n    match: [\"upstream.local/app/**\"]\n    require:\n      signatures: [release]\n      attestations:\n" + strings.Join(atts, "")
	if regoModule != "" {
		pol = "trust:\n  keys:\n    - name: release\n      path: ./release.pub\nrules:\n  - name: apps\n    match: [\"upstream.local/app/**\"]\n    require:\n      signatures: [release]\n    rego: {module: ./apps.rego, query: data.pullgate.deny}\n"
		if err := os.WriteFile(filepath.Join(dir, "apps.rego"), []byte(regoModule), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	polPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polPath, []byte(pol), 0o600); err != nil {
		tb.Fatal(err)
	}
	p, err := policyLoad(polPath)
	if err != nil {
		tb.Fatal(err)
	}
	trust, err := verify.NewTrust(p.Trust.Spec)
	if err != nil {
		tb.Fatal(err)
	}
	const repo = "upstream.local/app/web"
	rule := p.Match(repo)
	fx := &coldFixture{f: f, subject: subject, trust: trust, opts: verify.CollectOptions{MaxEvidence: 256}}
	fx.eval = func(res verify.Result) (bool, []string) {
		d := rule.Evaluate(policyInput(repo, subject, res), p.Revision())
		return d.Allowed && !d.WouldDeny, d.Reasons
	}
	// The fixture must be a real allow, with every statement verified.
	res := verify.Collect(context.Background(), f, subject, trust, fx.opts)
	if len(res.Failures) != 0 || len(res.Signatures) != 1 || len(res.Attestations) != len(sts) {
		tb.Fatalf("fixture: %d sigs %d atts, failures %+v", len(res.Signatures), len(res.Attestations), res.Failures)
	}
	if ok, reasons := fx.eval(res); !ok {
		tb.Fatalf("fixture denied: %v", reasons)
	}
	return fx
}

// decide is one cold decision: collect and verify all evidence, evaluate.
func (fx *coldFixture) decide(tb testing.TB) {
	res := verify.Collect(context.Background(), fx.f, fx.subject, fx.trust, fx.opts)
	if ok, reasons := fx.eval(res); !ok {
		tb.Fatalf("denied: %v", reasons)
	}
}
