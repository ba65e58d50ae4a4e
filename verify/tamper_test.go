package verify_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

type tamperEnv struct {
	t        *testing.T
	reg      *upstream.Registry
	repo     string
	img      ocispec.Descriptor
	other    ocispec.Descriptor // another image in the same repository
	release  testKey
	attacker testKey
}

const slsa02 = "https://slsa.dev/provenance/v0.2"

func (e *tamperEnv) stmt(predType string, ds ...digest.Digest) []byte {
	return statementJSON("https://in-toto.io/Statement/v0.1", predType, `{"builder":{"id":"https://ci.example/builder"}}`, ds...)
}

// TestTamper is the tamper suite: each case plants evidence in a real
// distribution upstream and checks the exact outcome and reason.
func TestTamper(t *testing.T) {
	reg := startUpstream(t, true)
	release := newKey(t, "release", "p256")
	attacker := newKey(t, "attacker", "p256")
	type want struct {
		sigs, atts int
		kind       verify.FailureKind
		reason     string
		predType   string // expected predicate type of the one attestation
	}
	cases := []struct {
		name  string
		opts  verify.CollectOptions
		trust *verify.TrustSpec
		setup func(e *tamperEnv)
		want  want
	}{
		{name: "valid legacy signature", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.release, simpleSigningPayload(e.img.Digest, "x")))
		}, want: want{sigs: 1}},
		{name: "unsigned", setup: func(e *tamperEnv) {}, want: want{}},
		{name: "wrong key", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.attacker, simpleSigningPayload(e.img.Digest, "x")))
		}, want: want{kind: verify.FailInvalid, reason: "not signed by any configured key/identity"}},
		{name: "replayed signature over another digest", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.release, simpleSigningPayload(e.other.Digest, "x")))
		}, want: want{kind: verify.FailMismatch, reason: "signature is for " + "sha256:"}},
		{name: "payload digest swapped after signing", setup: func(e *tamperEnv) {
			l := sigLayer(e.t, e.release, simpleSigningPayload(e.other.Digest, "x"))
			l.blob = simpleSigningPayload(e.img.Digest, "x")
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", l)
		}, want: want{kind: verify.FailInvalid, reason: "signature does not verify"}},
		{name: "truncated signature", setup: func(e *tamperEnv) {
			p := simpleSigningPayload(e.img.Digest, "x")
			sig := e.release.sign(e.t, p)
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: p,
				annotations: map[string]string{cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig[:len(sig)-7])}})
		}, want: want{kind: verify.FailInvalid, reason: "key release: signature does not verify"}},
		{name: "signature annotation not base64", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: simpleSigningPayload(e.img.Digest, "x"),
				annotations: map[string]string{cosign.SignatureAnnotation: "%%%not base64"}})
		}, want: want{kind: verify.FailMalformed, reason: "not base64"}},
		{name: "signature annotation missing", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: simpleSigningPayload(e.img.Digest, "x")})
		}, want: want{kind: verify.FailMalformed, reason: "signature annotation is empty"}},
		{name: "simple-signing wrong critical.type", setup: func(e *tamperEnv) {
			p := []byte(strings.Replace(string(simpleSigningPayload(e.img.Digest, "x")), "cosign container image signature", "something else", 1))
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.release, p))
		}, want: want{kind: verify.FailMalformed, reason: "critical.type"}},
		{name: "simple-signing payload not JSON", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.release, []byte("{not json")))
		}, want: want{kind: verify.FailMalformed, reason: "not valid JSON"}},
		{name: "signature layer of unexpected media type", setup: func(e *tamperEnv) {
			l := sigLayer(e.t, e.release, simpleSigningPayload(e.img.Digest, "x"))
			l.mediaType = "application/octet-stream"
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", l)
		}, want: want{kind: verify.FailMalformed, reason: "media type"}},
		{name: "no trust configured", trust: &verify.TrustSpec{}, setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.release, simpleSigningPayload(e.img.Digest, "x")))
		}, want: want{kind: verify.FailInvalid, reason: "no trust is configured"}},
		{name: "tlog required but key signature has none (no trusted root)", opts: verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true}}, setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", sigLayer(e.t, e.release, simpleSigningPayload(e.img.Digest, "x")))
		}, want: want{kind: verify.FailUnmet, reason: "signed by key release, but no trusted root"}},
		{name: "valid legacy attestation", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", e.stmt(slsa02, e.img.Digest))))
		}, want: want{atts: 1, predType: slsa02}},
		{name: "attestation subject mismatch", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", e.stmt(slsa02, e.other.Digest))))
		}, want: want{kind: verify.FailMismatch, reason: "do not include " + "sha256:"}},
		{name: "attestation predicate type differs (policy decides)", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", e.stmt("https://spdx.dev/Document", e.img.Digest))))
		}, want: want{atts: 1, predType: "https://spdx.dev/Document"}},
		{name: "attestation by wrong key", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.attacker, "application/vnd.in-toto+json", e.stmt(slsa02, e.img.Digest))))
		}, want: want{kind: verify.FailInvalid, reason: "not signed by any configured key/identity"}},
		{name: "DSSE payloadType not in-toto", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/json", e.stmt(slsa02, e.img.Digest))))
		}, want: want{kind: verify.FailMalformed, reason: "payloadType"}},
		{name: "DSSE payloadType swapped after signing", setup: func(e *tamperEnv) {
			env := envelopeJSON(e.t, e.release, "application/json", e.stmt(slsa02, e.img.Digest))
			env = []byte(strings.Replace(string(env), `"application/json"`, `"application/vnd.in-toto+json"`, 1))
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(env))
		}, want: want{kind: verify.FailInvalid, reason: "signature does not verify"}},
		{name: "DSSE payload swapped after signing", setup: func(e *tamperEnv) {
			env := envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", e.stmt(slsa02, e.other.Digest))
			good := base64.StdEncoding.EncodeToString(e.stmt(slsa02, e.img.Digest))
			bad := base64.StdEncoding.EncodeToString(e.stmt(slsa02, e.other.Digest))
			env = []byte(strings.Replace(string(env), bad, good, 1))
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(env))
		}, want: want{kind: verify.FailInvalid, reason: "signature does not verify"}},
		{name: "malformed DSSE envelope", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"!!"`)))
		}, want: want{kind: verify.FailMalformed, reason: "dsse:"}},
		{name: "DSSE envelope without signatures", setup: func(e *tamperEnv) {
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`)))
		}, want: want{kind: verify.FailMalformed, reason: "no signatures"}},
		{name: "malformed statement (unknown _type)", setup: func(e *tamperEnv) {
			st := statementJSON("https://example.com/Statement/v9", slsa02, "{}", e.img.Digest)
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", st)))
		}, want: want{kind: verify.FailMalformed, reason: "unsupported statement type"}},
		{name: "statement repeating predicateType", setup: func(e *tamperEnv) {
			st := e.stmt(slsa02, e.img.Digest)
			st = []byte(strings.TrimSuffix(string(st), "}") + `,"predicateType":"https://evil.example"}`)
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", st)))
		}, want: want{kind: verify.FailMalformed, reason: `duplicate key "predicateType"`}},
		{name: "valid in-toto v1 statement", setup: func(e *tamperEnv) {
			st := statementJSON("https://in-toto.io/Statement/v1", "https://slsa.dev/provenance/v1", `{"buildDefinition":{}}`, e.other.Digest, e.img.Digest)
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "att", attLayer(envelopeJSON(e.t, e.release, "application/vnd.in-toto+json", st)))
		}, want: want{atts: 1, predType: "https://slsa.dev/provenance/v1"}},
		{name: "key bundle referrer (cosign v3 signature)", setup: func(e *tamperEnv) {
			pushBundle(e.t, e.reg, e.repo, e.img, keyBundleJSON(e.t, e.release, e.stmt(cosign.SignPredicateType, e.img.Digest)), false)
		}, want: want{sigs: 1}},
		{name: "bundle carrying an attacker key", setup: func(e *tamperEnv) {
			pushBundle(e.t, e.reg, e.repo, e.img, keyBundleJSON(e.t, e.attacker, e.stmt(cosign.SignPredicateType, e.img.Digest)), false)
		}, want: want{kind: verify.FailInvalid, reason: "not signed by any configured key/identity"}},
		{name: "bundle attestation subject mismatch", setup: func(e *tamperEnv) {
			pushBundle(e.t, e.reg, e.repo, e.img, keyBundleJSON(e.t, e.release, e.stmt(slsa02, e.other.Digest)), false)
		}, want: want{kind: verify.FailMismatch, reason: "do not include"}},
		{name: "malformed bundle", setup: func(e *tamperEnv) {
			pushBundle(e.t, e.reg, e.repo, e.img, []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{}}`), false)
		}, want: want{kind: verify.FailMalformed, reason: "bundle"}},
		{name: "message-signature bundle over the manifest", setup: func(e *tamperEnv) {
			pushBundle(e.t, e.reg, e.repo, e.img, keyMessageBundleJSON(e.t, e.release, fetchManifest(e)), false)
		}, want: want{sigs: 1}},
		{name: "message-signature bundle replayed from another image", setup: func(e *tamperEnv) {
			pushBundle(e.t, e.reg, e.repo, e.img, keyMessageBundleJSON(e.t, e.release, []byte(`{"another":"manifest"}`)), false)
		}, want: want{kind: verify.FailMismatch, reason: "bundle signs sha256:"}},
		{name: "signature blob altered upstream", setup: func(e *tamperEnv) {
			l := sigLayer(e.t, e.release, simpleSigningPayload(e.img.Digest, "x"))
			pushLegacy(e.t, e.reg, e.repo, e.img.Digest, "sig", l)
			d := digest.FromBytes(l.blob)
			path := "/docker/registry/v2/blobs/sha256/" + d.Encoded()[:2] + "/" + d.Encoded() + "/data"
			if err := e.reg.Driver().PutContent(context.Background(), path, simpleSigningPayload(e.other.Digest, "y")); err != nil {
				e.t.Fatal(err)
			}
		}, want: want{kind: verify.FailFetch, reason: "does not match"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := &tamperEnv{t: t, reg: reg, repo: "tamper/c" + string(rune('a'+i%26)) + string(rune('a'+i/26)), release: release, attacker: attacker}
			e.img = pushImage(t, reg, e.repo, "v1")
			e.other = pushImage(t, reg, e.repo, "v2")
			tc.setup(e)
			spec := verify.TrustSpec{Keys: []verify.KeySpec{release.spec()}}
			if tc.trust != nil {
				spec = *tc.trust
			}
			res := verify.Collect(context.Background(), newFetcher(t, reg, e.repo), e.img.Digest, mustTrust(t, spec), tc.opts)
			if len(res.Signatures) != tc.want.sigs || len(res.Attestations) != tc.want.atts {
				t.Fatalf("got %s, want %d sigs %d atts", summarize(res), tc.want.sigs, tc.want.atts)
			}
			for _, s := range res.Signatures {
				if s.Signer != "release" || s.Subject != e.img.Digest || s.Evidence == "" {
					t.Fatalf("bad signature record %+v", s)
				}
			}
			if tc.want.predType != "" {
				a := res.Attestations[0]
				if a.PredicateType != tc.want.predType || a.Signer != "release" || a.Statement == "" || a.Evidence == "" {
					t.Fatalf("bad attestation record %+v", a)
				}
				if _, err := a.PredicateValue(); err != nil {
					t.Fatal(err)
				}
			}
			if tc.want.kind == "" {
				if len(res.Failures) != 0 {
					t.Fatalf("unexpected failures: %s", summarize(res))
				}
				return
			}
			if len(res.Failures) != 1 {
				t.Fatalf("want exactly one failure, got %s", summarize(res))
			}
			f := res.Failures[0]
			if f.Kind != tc.want.kind || !strings.Contains(f.Reason, tc.want.reason) {
				t.Fatalf("failure %s %q, want %s containing %q", f.Kind, f.Reason, tc.want.kind, tc.want.reason)
			}
			if res.Found == 0 {
				t.Fatal("found must count failed evidence")
			}
		})
	}
}

func fetchManifest(e *tamperEnv) []byte {
	body, _, d, err := newFetcher(e.t, e.reg, e.repo).Manifest(context.Background(), e.img.Digest.String())
	if err != nil || d != e.img.Digest {
		e.t.Fatal(err)
	}
	return body
}
