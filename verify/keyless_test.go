package verify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

// TestKeyless covers keyless evidence from sigstore-go's virtual Sigstore
// (Fulcio certificates, Rekor entries, RFC 3161 timestamps), checked offline
// against a trusted_root.json written from it.
func TestKeyless(t *testing.T) {
	reg := startUpstream(t, true)
	vs := newVirtualSigstore(t)
	rogue := newVirtualSigstore(t) // a CA the operator does not trust
	rootJSON := trustedRootJSON(t, vs)
	ci := verify.IdentitySpec{Name: "ci", Issuer: ghIssuer, SubjectRegExp: `^https://github\.com/acme/.+`}
	baseSpec := verify.TrustSpec{Identities: []verify.IdentitySpec{ci}, TrustedRootJSON: rootJSON}

	stmt := func(pt string, d digest.Digest) []byte {
		return statementJSON("https://in-toto.io/Statement/v1", pt, `{"builder":{"id":"https://ci.example/builder"}}`, d)
	}
	attest := func(t *testing.T, v *ca.VirtualSigstore, issuer, subject string, body []byte, at time.Time) *ca.TestEntity {
		ent, err := v.AttestAtTime(subject, issuer, body, at, false)
		if err != nil {
			t.Fatal(err)
		}
		return ent
	}
	type want struct {
		sigs, atts int
		kind       verify.FailureKind
		reason     string
	}
	all := bundleParts{TLog: true, Timestamp: true}
	cases := []struct {
		name  string
		spec  *verify.TrustSpec
		opts  verify.CollectOptions
		setup func(t *testing.T, repo string, img digestDesc)
		want  want
	}{
		{name: "dsse attestation bundle, identity matches", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{atts: 1}},
		{name: "cosign v3 style signature bundle (sign predicate)", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(cosign.SignPredicateType, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{sigs: 1}},
		{name: "message-signature bundle over the manifest", setup: func(t *testing.T, repo string, img digestDesc) {
			ent, err := vs.Sign(ghSubject, ghIssuer, img.manifest)
			if err != nil {
				t.Fatal(err)
			}
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, ent, all), false)
		}, want: want{sigs: 1}},
		{name: "rekor only, tlog required", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{TLog: true}), false)
		}, want: want{atts: 1}},
		{name: "timestamp only, timestamp required", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTimestamp: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{Timestamp: true}), false)
		}, want: want{atts: 1}},
		{name: "both required and present", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true, RequireTimestamp: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{atts: 1}},
		{name: "SCT required, certificate has none", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireSCT: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{kind: verify.FailInvalid, reason: "certificate timestamp"}},
		{name: "subject identity mismatch", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, "https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main", stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{kind: verify.FailInvalid, reason: "matches no configured identity"}},
		{name: "issuer identity mismatch", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, "https://accounts.evil.example", ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{kind: verify.FailInvalid, reason: "issuer=https://accounts.evil.example"}},
		{name: "certificate from an untrusted CA", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, rogue, attest(t, rogue, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{kind: verify.FailInvalid, reason: "not signed by any configured key/identity"}},
		{name: "certificate expired when logged", setup: func(t *testing.T, repo string, img digestDesc) {
			// Leaf certificates live 10 minutes; the entry is integrated after.
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(30*time.Minute)), bundleParts{TLog: true}), false)
		}, want: want{kind: verify.FailInvalid, reason: "certificate"}},
		{name: "tlog required but missing", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{Timestamp: true}), false)
		}, want: want{kind: verify.FailUnmet, reason: "no transparency log (Rekor) entry"}},
		{name: "timestamp required but missing", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTimestamp: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{TLog: true}), false)
		}, want: want{kind: verify.FailUnmet, reason: "no RFC 3161 signed timestamp"}},
		{name: "no time evidence at all", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{}), false)
		}, want: want{kind: verify.FailUnmet, reason: "no Rekor entry or signed timestamp"}},
		{name: "untrusted CA and no time evidence is a signer problem", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, rogue, attest(t, rogue, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{}), false)
		}, want: want{kind: verify.FailInvalid, reason: "does not chain to the trusted root"}},
		{name: "untrusted CA, tlog required and missing", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, rogue, attest(t, rogue, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{Timestamp: true}), false)
		}, want: want{kind: verify.FailInvalid, reason: "does not chain to the trusted root"}},
		{name: "identity mismatch and no time evidence", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, "https://github.com/evil/x", stmt(slsa02, img.desc.Digest), later(5*time.Minute)), bundleParts{}), false)
		}, want: want{kind: verify.FailInvalid, reason: "matches no configured identity"}},
		{name: "legacy keyless signature not made by the certificate key, no time evidence", setup: func(t *testing.T, repo string, img digestDesc) {
			payload := simpleSigningPayload(img.desc.Digest, reg.Host+"/"+repo)
			ent, err := vs.Sign(ghSubject, ghIssuer, payload)
			if err != nil {
				t.Fatal(err)
			}
			forger, err := vs.Sign(ghSubject, ghIssuer, payload) // another certificate's key
			if err != nil {
				t.Fatal(err)
			}
			fsc, _ := forger.SignatureContent()
			ann := legacyKeylessAnnotations(t, vs, ent, fsc.Signature())
			delete(ann, cosign.BundleAnnotation)
			pushLegacy(t, reg, repo, img.desc.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload, annotations: ann})
		}, want: want{kind: verify.FailInvalid, reason: "does not verify with the certificate key"}},
		{name: "legacy keyless signature without time evidence", setup: func(t *testing.T, repo string, img digestDesc) {
			payload := simpleSigningPayload(img.desc.Digest, reg.Host+"/"+repo)
			ent, err := vs.Sign(ghSubject, ghIssuer, payload)
			if err != nil {
				t.Fatal(err)
			}
			sc, _ := ent.SignatureContent()
			ann := legacyKeylessAnnotations(t, vs, ent, sc.Signature())
			delete(ann, cosign.BundleAnnotation)
			pushLegacy(t, reg, repo, img.desc.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload, annotations: ann})
		}, want: want{kind: verify.FailUnmet, reason: "no Rekor entry or signed timestamp"}},
		{name: "keyless evidence but only keys configured", spec: &verify.TrustSpec{Keys: []verify.KeySpec{newKey(t, "release", "p256").spec()}}, setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute)), all), false)
		}, want: want{kind: verify.FailInvalid, reason: "no keyless identity is configured"}},
		{name: "keyless attestation subject mismatch", setup: func(t *testing.T, repo string, img digestDesc) {
			pushBundle(t, reg, repo, img.desc, entityBundle(t, vs, attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, digest.FromString("elsewhere")), later(5*time.Minute)), all), false)
		}, want: want{kind: verify.FailMismatch, reason: "do not include"}},
		{name: "legacy keyless signature (cert + rekor bundle annotations)", setup: func(t *testing.T, repo string, img digestDesc) {
			payload := simpleSigningPayload(img.desc.Digest, reg.Host+"/"+repo)
			ent, err := vs.Sign(ghSubject, ghIssuer, payload)
			if err != nil {
				t.Fatal(err)
			}
			sc, _ := ent.SignatureContent()
			pushLegacy(t, reg, repo, img.desc.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload,
				annotations: legacyKeylessAnnotations(t, vs, ent, sc.Signature())})
		}, want: want{sigs: 1}},
		{name: "legacy keyless signature, rekor entry for another signature", setup: func(t *testing.T, repo string, img digestDesc) {
			payload := simpleSigningPayload(img.desc.Digest, reg.Host+"/"+repo)
			ent, err := vs.Sign(ghSubject, ghIssuer, payload)
			if err != nil {
				t.Fatal(err)
			}
			other, err := vs.Sign(ghSubject, ghIssuer, []byte("other"))
			if err != nil {
				t.Fatal(err)
			}
			sc, _ := ent.SignatureContent()
			ann := legacyKeylessAnnotations(t, vs, ent, sc.Signature())
			ann[cosign.BundleAnnotation] = legacyKeylessAnnotations(t, vs, other, nil)[cosign.BundleAnnotation]
			pushLegacy(t, reg, repo, img.desc.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload, annotations: ann})
		}, want: want{kind: verify.FailInvalid, reason: "transparency log"}},
		{name: "legacy keyless attestation", setup: func(t *testing.T, repo string, img digestDesc) {
			ent := attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute))
			sc, _ := ent.SignatureContent()
			env, _ := json.Marshal(sc.EnvelopeContent().RawEnvelope())
			pushLegacy(t, reg, repo, img.desc.Digest, "att", layerSpec{mediaType: cosign.DSSEMediaType, blob: env, annotations: legacyKeylessAnnotations(t, vs, ent, nil)})
		}, want: want{atts: 1}},
		{name: "legacy keyless attestation with rfc3161 timestamp over the envelope, both required", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true, RequireTimestamp: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			ent := attest(t, vs, ghIssuer, ghSubject, stmt(slsa02, img.desc.Digest), later(5*time.Minute))
			sc, _ := ent.SignatureContent()
			env, _ := json.Marshal(sc.EnvelopeContent().RawEnvelope())
			ann := legacyKeylessAnnotations(t, vs, ent, nil)
			ann[cosign.RFC3161TimestampAnnotation] = rfc3161Annotation(t, vs, env) // cosign v2 stamps the envelope
			pushLegacy(t, reg, repo, img.desc.Digest, "att", layerSpec{mediaType: cosign.DSSEMediaType, blob: env, annotations: ann})
		}, want: want{atts: 1}},
		{name: "legacy keyless signature with rfc3161 timestamp, timestamp required", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTimestamp: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			payload := simpleSigningPayload(img.desc.Digest, reg.Host+"/"+repo)
			ent, err := vs.Sign(ghSubject, ghIssuer, payload)
			if err != nil {
				t.Fatal(err)
			}
			sc, _ := ent.SignatureContent()
			ann := legacyKeylessAnnotations(t, vs, ent, sc.Signature())
			ann[cosign.RFC3161TimestampAnnotation] = rfc3161Annotation(t, vs, sc.Signature())
			pushLegacy(t, reg, repo, img.desc.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload, annotations: ann})
		}, want: want{sigs: 1}},
		{name: "legacy keyless signature, timestamp over other bytes", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTimestamp: true}}, setup: func(t *testing.T, repo string, img digestDesc) {
			payload := simpleSigningPayload(img.desc.Digest, reg.Host+"/"+repo)
			ent, err := vs.Sign(ghSubject, ghIssuer, payload)
			if err != nil {
				t.Fatal(err)
			}
			sc, _ := ent.SignatureContent()
			ann := legacyKeylessAnnotations(t, vs, ent, sc.Signature())
			ann[cosign.RFC3161TimestampAnnotation] = rfc3161Annotation(t, vs, []byte("something else"))
			pushLegacy(t, reg, repo, img.desc.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload, annotations: ann})
		}, want: want{kind: verify.FailInvalid, reason: "timestamp"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("keyless/c%02d", i)
			img := pushDesc(t, reg, repo)
			tc.setup(t, repo, img)
			spec := baseSpec
			if tc.spec != nil {
				spec = *tc.spec
			}
			res := verify.Collect(context.Background(), newFetcher(t, reg, repo), img.desc.Digest, mustTrust(t, spec), tc.opts)
			if len(res.Signatures) != tc.want.sigs || len(res.Attestations) != tc.want.atts {
				t.Fatalf("got %s, want %d sigs %d atts", summarize(res), tc.want.sigs, tc.want.atts)
			}
			for _, s := range res.Signatures {
				if s.Signer != "ci" || !strings.Contains(s.Identity, "subject="+ghSubject) || s.SignedAt.IsZero() {
					t.Fatalf("bad keyless signature record %+v", s)
				}
			}
			for _, a := range res.Attestations {
				if a.Signer != "ci" || !strings.Contains(a.Identity, "issuer="+ghIssuer) || a.SignedAt.IsZero() || a.PredicateType != slsa02 {
					t.Fatalf("bad keyless attestation record %+v", a)
				}
			}
			if tc.want.kind == "" {
				if len(res.Failures) != 0 {
					t.Fatalf("unexpected failures: %s", summarize(res))
				}
				return
			}
			if len(res.Failures) != 1 {
				t.Fatalf("want one failure, got %s", summarize(res))
			}
			if f := res.Failures[0]; f.Kind != tc.want.kind || !strings.Contains(f.Reason, tc.want.reason) {
				t.Fatalf("failure %s %q, want %s containing %q", f.Kind, f.Reason, tc.want.kind, tc.want.reason)
			}
		})
	}
}

// TestKeylessTwoIdentities: one piece of evidence satisfying two configured
// identities is reported once per identity name, so a rule naming either
// sees it.
func TestKeylessTwoIdentities(t *testing.T) {
	reg := startUpstream(t, true)
	vs := newVirtualSigstore(t)
	img := pushDesc(t, reg, "two/ids")
	ent, err := vs.AttestAtTime(ghSubject, ghIssuer, statementJSON("https://in-toto.io/Statement/v1", slsa02, "{}", img.desc.Digest), later(5*time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	pushBundle(t, reg, "two/ids", img.desc, entityBundle(t, vs, ent, bundleParts{TLog: true, Timestamp: true}), false)
	tr := mustTrust(t, verify.TrustSpec{TrustedRootJSON: trustedRootJSON(t, vs), Identities: []verify.IdentitySpec{
		{Name: "exact", Issuer: ghIssuer, Subject: ghSubject},
		{Name: "org", IssuerRegExp: `^https://token\.actions\.githubusercontent\.com$`, SubjectRegExp: `^https://github\.com/acme/`},
		{Name: "other-org", Issuer: ghIssuer, SubjectRegExp: `^https://github\.com/other/`},
	}})
	res := verify.Collect(context.Background(), newFetcher(t, reg, "two/ids"), img.desc.Digest, tr, verify.CollectOptions{})
	if len(res.Attestations) != 2 || res.Attestations[0].Signer != "exact" || res.Attestations[1].Signer != "org" || len(res.Failures) != 0 {
		t.Fatalf("got %s %+v", summarize(res), res.Attestations)
	}
	if res.Attestations[0].Statement != digest.FromBytes(statementJSON("https://in-toto.io/Statement/v1", slsa02, "{}", img.desc.Digest)) {
		t.Fatal("statement digest is not the digest of the signed statement bytes")
	}
}

type digestDesc struct {
	desc     ocispecDescriptor
	manifest []byte
}

func pushDesc(t *testing.T, reg upstreamRegistry, repo string) digestDesc {
	t.Helper()
	d := pushImage(t, reg, repo, "v1")
	body, _, got, err := newFetcher(t, reg, repo).Manifest(context.Background(), d.Digest.String())
	if err != nil || got != d.Digest {
		t.Fatal(err)
	}
	return digestDesc{desc: d, manifest: body}
}
