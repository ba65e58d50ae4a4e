package verify_test

import (
	"context"
	"encoding/json"
	"time"

	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

// memFetcher serves evidence from memory: "already fetched" for benchmarks
// and fuzzing. It verifies digests like a real Fetcher must.
type memFetcher struct {
	manifests map[string][]byte
	blobs     map[digest.Digest][]byte
	referrers map[digest.Digest][]ocispec.Descriptor
}

func newMemFetcher() *memFetcher {
	return &memFetcher{manifests: map[string][]byte{}, blobs: map[digest.Digest][]byte{}, referrers: map[digest.Digest][]ocispec.Descriptor{}}
}

func (m *memFetcher) Referrers(_ context.Context, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	for _, d := range m.referrers[subject] {
		if artifactType == "" || d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out, nil
}

func (m *memFetcher) Manifest(_ context.Context, ref string) ([]byte, string, digest.Digest, error) {
	b, ok := m.manifests[ref]
	if !ok {
		return nil, "", "", &verify.NotFoundError{What: ref}
	}
	return b, ocispec.MediaTypeImageManifest, digest.FromBytes(b), nil
}

func (m *memFetcher) Blob(_ context.Context, d digest.Digest, _ int64) ([]byte, error) {
	b, ok := m.blobs[d]
	if !ok {
		return nil, &verify.NotFoundError{What: d.String()}
	}
	return b, nil
}

func (m *memFetcher) add(ref, artifactType string, subject *ocispec.Descriptor, layers ...layerSpec) digest.Digest {
	mf := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType,
		Config: ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(emptyConfig), Size: 2}, Subject: subject}
	mf.SchemaVersion = 2
	for _, l := range layers {
		d := digest.FromBytes(l.blob)
		m.blobs[d] = l.blob
		mf.Layers = append(mf.Layers, ocispec.Descriptor{MediaType: l.mediaType, Digest: d, Size: int64(len(l.blob)), Annotations: l.annotations})
	}
	body, _ := json.Marshal(mf)
	d := digest.FromBytes(body)
	m.manifests[d.String()] = body
	if ref != "" {
		m.manifests[ref] = body
	}
	if subject != nil {
		m.referrers[subject.Digest] = append(m.referrers[subject.Digest], ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: artifactType})
	}
	return d
}

func (m *memFetcher) addBundle(subject ocispec.Descriptor, bundleJSON []byte) {
	m.add("", cosign.BundleMediaType, &subject, layerSpec{mediaType: cosign.BundleMediaType, blob: bundleJSON})
}

// FuzzBundle feeds hostile bundle JSON through ParseBundle and the whole
// Collect bundle path (key-based and keyless trust): no panic, and whatever
// is reported as evidence is about the subject.
func FuzzBundle(f *testing.F) {
	k := newKey(f, "release", "p256")
	vs := newVirtualSigstore(f)
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("subject"), Size: 7}
	st := statementJSON("https://in-toto.io/Statement/v1", slsa02, `{"builder":{"id":"b"}}`, subject.Digest)
	f.Add(keyBundleJSON(f, k, st))
	f.Add(keyBundleJSON(f, k, statementJSON("https://in-toto.io/Statement/v0.1", cosign.SignPredicateType, "{}", subject.Digest)))
	f.Add(keyMessageBundleJSON(f, k, []byte("subject")))
	ent, err := vs.AttestAtTime(ghSubject, ghIssuer, st, time.Now().Add(5*time.Minute), false)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(entityBundle(f, vs, ent, bundleParts{TLog: true, Timestamp: true}))
	msg, err := vs.Sign(ghSubject, ghIssuer, []byte("subject"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(entityBundle(f, vs, msg, bundleParts{TLog: true}))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	trust := mustTrust(f, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()},
		Identities: []verify.IdentitySpec{{Name: "ci", Issuer: ghIssuer, SubjectRegExp: "^https://github.com/acme/"}}, TrustedRootJSON: trustedRootJSON(f, vs)})
	known := map[verify.FailureKind]bool{verify.FailInvalid: true, verify.FailMismatch: true, verify.FailMalformed: true, verify.FailFetch: true, verify.FailUnmet: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = verify.ParseBundle(data)
		mf := newMemFetcher()
		mf.addBundle(subject, data)
		for _, opts := range []verify.CollectOptions{{}, {VerifyOptions: verify.VerifyOptions{RequireTlog: true}}} {
			res := verify.Collect(context.Background(), mf, subject.Digest, trust, opts)
			if res.Found != 1 || len(res.Signatures)+len(res.Attestations)+len(res.Failures) == 0 {
				t.Fatalf("evidence not accounted for: %s", summarize(res))
			}
			for _, s := range res.Signatures {
				if s.Subject != subject.Digest {
					t.Fatalf("signature about %s", s.Subject)
				}
			}
			for _, a := range res.Attestations {
				ok := false
				for _, s := range a.Subjects {
					ok = ok || s.Digest["sha256"] == subject.Digest.Encoded()
				}
				if !ok {
					t.Fatalf("attestation not about the subject: %+v", a.Subjects)
				}
			}
			for _, fl := range res.Failures {
				if !known[fl.Kind] || fl.Reason == "" {
					t.Fatalf("bad failure %+v", fl)
				}
			}
		}
	})
}

// FuzzLegacyEvidence feeds hostile cosign legacy layers (payload, signature,
// certificate, Rekor bundle and timestamp annotations) through Collect with
// key and keyless trust, requiring Rekor: no panic, everything accounted for.
func FuzzLegacyEvidence(f *testing.F) {
	k := newKey(f, "release", "p256")
	vs := newVirtualSigstore(f)
	subject := digest.FromString("subject")
	payload := simpleSigningPayload(subject, "r")
	sig := sigLayer(f, k, payload)
	ent, err := vs.Sign(ghSubject, ghIssuer, payload)
	if err != nil {
		f.Fatal(err)
	}
	sc, _ := ent.SignatureContent()
	ann := legacyKeylessAnnotations(f, vs, ent, sc.Signature())
	f.Add(payload, sig.annotations[cosign.SignatureAnnotation], "", "", "")
	f.Add(payload, ann[cosign.SignatureAnnotation], ann[cosign.CertificateAnnotation], ann[cosign.BundleAnnotation], rfc3161Annotation(f, vs, sc.Signature()))
	f.Add([]byte("{}"), "AA==", "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", `{"SignedEntryTimestamp":"AA==","Payload":{"body":"e30=","integratedTime":1,"logIndex":0,"logID":"00"}}`, `{"SignedRFC3161Timestamp":"AA=="}`)
	trust := mustTrust(f, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()},
		Identities: []verify.IdentitySpec{{Name: "ci", Issuer: ghIssuer, SubjectRegExp: "^https://github.com/acme/"}}, TrustedRootJSON: trustedRootJSON(f, vs)})
	f.Fuzz(func(t *testing.T, blob []byte, sigAnn, certAnn, rekorAnn, tsAnn string) {
		mf := newMemFetcher()
		a := map[string]string{cosign.SignatureAnnotation: sigAnn}
		for key, v := range map[string]string{cosign.CertificateAnnotation: certAnn, cosign.BundleAnnotation: rekorAnn, cosign.RFC3161TimestampAnnotation: tsAnn} {
			if v != "" {
				a[key] = v
			}
		}
		mf.add(cosign.TagFor(subject, "sig"), "", nil, layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: blob, annotations: a})
		mf.add(cosign.TagFor(subject, "att"), "", nil, layerSpec{mediaType: cosign.DSSEMediaType, blob: blob, annotations: a})
		for _, opts := range []verify.CollectOptions{{}, {VerifyOptions: verify.VerifyOptions{RequireTlog: true, RequireTimestamp: true}}} {
			res := verify.Collect(context.Background(), mf, subject, trust, opts)
			if res.Found != 2 || len(res.Signatures)+len(res.Attestations)+len(res.Failures) < 2 {
				t.Fatalf("evidence not accounted for: %s", summarize(res))
			}
			for _, s := range res.Signatures {
				if s.Subject != subject {
					t.Fatalf("signature about %s", s.Subject)
				}
			}
		}
	})
}
