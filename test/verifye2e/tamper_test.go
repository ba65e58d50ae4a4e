package verifye2e

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/proxy/config"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify/cosign"
)

// with returns a copy of the environment bound to a subtest.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	c2, c3 := *e.c2, *e.c3
	c2.t, c3.t = t, t
	c.c2, c.c3 = &c2, &c3
	return &c
}

// tamperCase is one attack (or control) decided through the proxy and the
// CLI. setup pushes content and returns the repo:tag or repo@digest to pull.
type tamperCase struct {
	name  string
	setup func(t *testing.T, e *env) string
	// Expected outcome when custom is nil: proxy 403 with every reason,
	// CLI exit code exit with every reason, and each detail in the CLI's
	// JSON checks. exit 0 means allowed (pull served with the digest).
	exit    int
	reasons func(d string) []string
	details []string
	// custom replaces the standard assertions.
	custom func(t *testing.T, e *env, ref string)
	// isolated runs the case in its own environment (it changes trust).
	isolated bool
}

func TestTamper(t *testing.T) {
	shared := newEnv(t, envOptions{referrers: true, tagTTL: "100ms"})
	rogue := newVirtualSigstore(t)

	noSigApps := func(d string) []string { return []string{noSig("pg-apps", d)} }
	attNone := func(d string) []string {
		return []string{"rule pg-attested: attestation " + slsa02 + " signed by release: none found"}
	}
	noCI := func(d string) []string { return []string{"rule pg-keyless: no signature by identity ci on " + d} }

	// signedAtt pushes an image in att/<repo> with a valid release signature.
	signedAtt := func(t *testing.T, e *env, repo string) *harness.Image {
		img := e.image(repo, "v1")
		e.pushLegacy(repo, digest.Digest(img.Digest), "sig", sigLayer(t, e.release, simpleSigningPayload(digest.Digest(img.Digest), e.up.Host+"/"+repo)))
		return img
	}
	keylessSig := func(t *testing.T, e *env, v *ca.VirtualSigstore, issuer, subject string, d digest.Digest, at time.Time, parts bundleParts) []byte {
		ent, err := v.AttestAtTime(subject, issuer, statementJSON(cosign.SignPredicateType, `{}`, d), at, false)
		if err != nil {
			t.Fatal(err)
		}
		return entityBundle(t, v, ent, parts)
	}
	all := bundleParts{TLog: true, Timestamp: true}

	cases := []tamperCase{
		{name: "unsigned", exit: 10, reasons: noSigApps, setup: func(t *testing.T, e *env) string {
			e.image("app/t-unsigned", "v1")
			return "app/t-unsigned:v1"
		}},
		{name: "cosign2 signature by an untrusted key", exit: 11, reasons: noSigApps, details: []string{"signature-invalid", "not signed by any configured key/identity"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-wrongkey", "v1")
			e.c2.sign(e.attacker, e.upRef("app/t-wrongkey", img.Digest))
			return "app/t-wrongkey:v1"
		}},
		{name: "cosign3 bundle carrying the attacker's key", exit: 11, reasons: noSigApps, details: []string{"bundle-referrer signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-bundlekey", "v1")
			e.c3.sign(e.attacker, e.upRef("app/t-bundlekey", img.Digest))
			return "app/t-bundlekey:v1"
		}},
		{name: "replay: signed image's .sig copied to another image", exit: 12, reasons: noSigApps, details: []string{"digest-mismatch"}, setup: func(t *testing.T, e *env) string {
			a, b := e.image("app/t-replay", "a"), e.image("app/t-replay", "b")
			e.c2.sign(e.release, e.upRef("app/t-replay", a.Digest))
			body := e.getUpstream("app/t-replay", cosign.TagFor(digest.Digest(a.Digest), "sig"))
			e.putManifest("app/t-replay", cosign.TagFor(digest.Digest(b.Digest), "sig"), ocispec.MediaTypeImageManifest, body)
			return "app/t-replay:b"
		}},
		{name: "validly signed payload naming another digest", exit: 12, reasons: noSigApps, details: []string{"signature is for sha256:"}, setup: func(t *testing.T, e *env) string {
			a, b := e.image("app/t-otherdigest", "a"), e.image("app/t-otherdigest", "b")
			e.pushLegacy("app/t-otherdigest", digest.Digest(b.Digest), "sig", sigLayer(t, e.release, simpleSigningPayload(digest.Digest(a.Digest), "x")))
			return "app/t-otherdigest:b"
		}},
		{name: "payload digest swapped, signature kept", exit: 11, reasons: noSigApps, details: []string{"signature-invalid"}, setup: func(t *testing.T, e *env) string {
			a, b := e.image("app/t-swap", "a"), e.image("app/t-swap", "b")
			e.c2.sign(e.release, e.upRef("app/t-swap", a.Digest))
			var m ocispec.Manifest
			if err := json.Unmarshal(e.getUpstream("app/t-swap", cosign.TagFor(digest.Digest(a.Digest), "sig")), &m); err != nil {
				t.Fatal(err)
			}
			l := m.Layers[0]
			payload := e.getBlob("app/t-swap", l.Digest)
			swapped := []byte(strings.Replace(string(payload), a.Digest, b.Digest, 1))
			if string(swapped) == string(payload) {
				t.Fatal("payload does not name the signed digest")
			}
			e.pushLegacy("app/t-swap", digest.Digest(b.Digest), "sig", layerSpec{mediaType: l.MediaType, blob: swapped, annotations: l.Annotations})
			return "app/t-swap:b"
		}},
		{name: "signature bytes altered", exit: 11, reasons: noSigApps, details: []string{"signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-flip", "v1")
			d := digest.Digest(img.Digest)
			l := sigLayer(t, e.release, simpleSigningPayload(d, "x"))
			raw, _ := base64.StdEncoding.DecodeString(l.annotations[cosign.SignatureAnnotation])
			raw[len(raw)-1] ^= 0x01
			l.annotations[cosign.SignatureAnnotation] = base64.StdEncoding.EncodeToString(raw)
			e.pushLegacy("app/t-flip", d, "sig", l)
			return "app/t-flip:v1"
		}},
		{name: "malformed signature annotation (not base64)", exit: 14, reasons: noSigApps, details: []string{"malformed"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-b64", "v1")
			d := digest.Digest(img.Digest)
			l := sigLayer(t, e.release, simpleSigningPayload(d, "x"))
			l.annotations[cosign.SignatureAnnotation] = "%%% not base64 %%%"
			e.pushLegacy("app/t-b64", d, "sig", l)
			return "app/t-b64:v1"
		}},
		{name: "malformed simple-signing payload (signed, not JSON)", exit: 14, reasons: noSigApps, details: []string{"malformed"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-payload", "v1")
			e.pushLegacy("app/t-payload", digest.Digest(img.Digest), "sig", sigLayer(t, e.release, []byte("this is not a simple-signing payload")))
			return "app/t-payload:v1"
		}},
		{name: "signature layer with a foreign media type", exit: 14, reasons: noSigApps, details: []string{"malformed"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-mediatype", "v1")
			l := sigLayer(t, e.release, simpleSigningPayload(digest.Digest(img.Digest), "x"))
			l.mediaType = "application/octet-stream"
			e.pushLegacy("app/t-mediatype", digest.Digest(img.Digest), "sig", l)
			return "app/t-mediatype:v1"
		}},
		{name: "malformed sigstore bundle referrer", exit: 14, reasons: noSigApps, details: []string{"bundle-referrer malformed"}, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-badbundle", "v1")
			e.pushBundle("app/t-badbundle", desc(img), []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payload":"!!"}`), false)
			return "app/t-badbundle:v1"
		}},
		{name: "cosign3 bundle replayed onto another image (referrer subject rewritten)", exit: 12, reasons: noSigApps, details: []string{"digest-mismatch"}, setup: func(t *testing.T, e *env) string {
			a, b := e.image("app/t-bundlereplay", "a"), e.image("app/t-bundlereplay", "b")
			e.c3.sign(e.release, e.upRef("app/t-bundlereplay", a.Digest))
			refs := e.referrers("app/t-bundlereplay", a.Digest)
			if len(refs) != 1 {
				t.Fatalf("cosign3 made %d referrers", len(refs))
			}
			var m map[string]any
			if err := json.Unmarshal(e.getUpstream("app/t-bundlereplay", refs[0].Digest.String()), &m); err != nil {
				t.Fatal(err)
			}
			m["subject"] = desc(b)
			body, _ := json.Marshal(m)
			e.putManifest("app/t-bundlereplay", digest.FromBytes(body).String(), ocispec.MediaTypeImageManifest, body)
			return "app/t-bundlereplay:b"
		}},
		{name: "attestation subject is another digest", exit: 12, reasons: attNone, details: []string{"digest-mismatch", "do not include"}, setup: func(t *testing.T, e *env) string {
			img := signedAtt(t, e, "att/t-subject")
			other := digest.FromString("another image")
			e.pushLegacy("att/t-subject", digest.Digest(img.Digest), "att", attLayer(envelopeJSON(t, e.release, "application/vnd.in-toto+json", statementJSON(slsa02, goodPred, other))))
			return "att/t-subject:v1"
		}},
		{name: "attestation of another predicate type", exit: 13, reasons: attNone, setup: func(t *testing.T, e *env) string {
			img := signedAtt(t, e, "att/t-predtype")
			e.pushLegacy("att/t-predtype", digest.Digest(img.Digest), "att", attLayer(envelopeJSON(t, e.release, "application/vnd.in-toto+json", statementJSON("https://slsa.dev/provenance/v1", goodPred, digest.Digest(img.Digest)))))
			return "att/t-predtype:v1"
		}},
		{name: "attestation condition false (cosign2 attest)", exit: 13, reasons: func(string) []string {
			return []string{"rule pg-attested: attestation " + slsa02 + " signed by release: condition " + conditionQ + " is false"}
		}, setup: func(t *testing.T, e *env) string {
			img := e.image("att/t-cond", "v1")
			e.c2.sign(e.release, e.upRef("att/t-cond", img.Digest))
			e.c2.attest(e.release, e.upRef("att/t-cond", img.Digest), evilPred)
			return "att/t-cond:v1"
		}},
		{name: "attestation signed by an untrusted key", exit: 11, reasons: attNone, details: []string{"cosign-attestation signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("att/t-attkey", "v1")
			e.c2.sign(e.release, e.upRef("att/t-attkey", img.Digest))
			e.c2.attest(e.attacker, e.upRef("att/t-attkey", img.Digest), goodPred)
			return "att/t-attkey:v1"
		}},
		{name: "attestation missing", exit: 13, reasons: attNone, setup: func(t *testing.T, e *env) string {
			signedAtt(t, e, "att/t-noatt")
			return "att/t-noatt:v1"
		}},
		{name: "malformed DSSE envelope", exit: 14, reasons: attNone, details: []string{"cosign-attestation malformed"}, setup: func(t *testing.T, e *env) string {
			img := signedAtt(t, e, "att/t-badenv")
			e.pushLegacy("att/t-badenv", digest.Digest(img.Digest), "att", attLayer([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":`)))
			return "att/t-badenv:v1"
		}},
		{name: "DSSE envelope of a foreign payload type", exit: 14, reasons: attNone, details: []string{"payloadType"}, setup: func(t *testing.T, e *env) string {
			img := signedAtt(t, e, "att/t-ptype")
			e.pushLegacy("att/t-ptype", digest.Digest(img.Digest), "att", attLayer(envelopeJSON(t, e.release, "text/plain", statementJSON(slsa02, goodPred, digest.Digest(img.Digest)))))
			return "att/t-ptype:v1"
		}},
		{name: "control: one failing and one passing attestation allow", exit: 0, setup: func(t *testing.T, e *env) string {
			img := signedAtt(t, e, "att/t-twoatts")
			d := digest.Digest(img.Digest)
			e.pushLegacy("att/t-twoatts", d, "att",
				attLayer(envelopeJSON(t, e.release, "application/vnd.in-toto+json", statementJSON(slsa02, evilPred, d))),
				attLayer(envelopeJSON(t, e.release, "application/vnd.in-toto+json", statementJSON(slsa02, goodPred, d))))
			return "att/t-twoatts:v1"
		}},
		{name: "control: attacker signature next to the release signature allows", exit: 0, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-twosigs", "v1")
			d := digest.Digest(img.Digest)
			e.pushLegacy("app/t-twosigs", d, "sig", sigLayer(t, e.attacker, simpleSigningPayload(d, "x")), sigLayer(t, e.release, simpleSigningPayload(d, "x")))
			return "app/t-twosigs:v1"
		}},
		{name: "control: Docker schema 2 image and manifest list signed by cosign2", exit: 0, setup: func(t *testing.T, e *env) string {
			img := e.up.PushImage(t, "app/t-docker", "v1", harness.ImageOptions{Docker: true})
			e.c2.sign(e.release, e.upRef("app/t-docker", img.Digest))
			list := e.up.PushIndex(t, "app/t-docker", "list", true)
			e.c2.sign(e.release, e.upRef("app/t-docker", list.Digest))
			st, h, _ := e.manifestGET("app/t-docker:list")
			if st != http.StatusOK || h.Get("Content-Type") != "application/vnd.docker.distribution.manifest.list.v2+json" || h.Get("Docker-Content-Digest") != list.Digest {
				t.Fatalf("manifest list through the proxy: %d %v", st, h)
			}
			arm := list.Children[1]
			if got, err := harness.GGCRIndexPlatform(e.pxRef("app/t-docker:list"), *arm.Platform); err != nil || got != arm.Digest {
				t.Fatalf("platform pull through the signed Docker manifest list: %s %v", got, err)
			}
			e.expectCLI("app/t-docker:list", 0)
			return "app/t-docker:v1"
		}},
		{name: "control: keyless signature bundle by the CI identity", exit: 0, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-ok", "v1")
			e.pushBundle("kl/t-ok", desc(img), keylessSig(t, e, e.vs, ghIssuer, ghSubject, digest.Digest(img.Digest), later(5*time.Minute), all), false)
			return "kl/t-ok:v1"
		}},
		{name: "keyless certificate expired when logged", exit: 11, reasons: noCI, details: []string{"signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-expired", "v1")
			e.pushBundle("kl/t-expired", desc(img), keylessSig(t, e, e.vs, ghIssuer, ghSubject, digest.Digest(img.Digest), later(30*time.Minute), bundleParts{TLog: true}), false)
			return "kl/t-expired:v1"
		}},
		{name: "keyless certificate from an untrusted CA", exit: 11, reasons: noCI, details: []string{"signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-rogue", "v1")
			e.pushBundle("kl/t-rogue", desc(img), keylessSig(t, e, rogue, ghIssuer, ghSubject, digest.Digest(img.Digest), later(5*time.Minute), all), false)
			return "kl/t-rogue:v1"
		}},
		{name: "keyless identity: wrong issuer", exit: 11, reasons: noCI, details: []string{"issuer=https://accounts.evil.example"}, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-issuer", "v1")
			e.pushBundle("kl/t-issuer", desc(img), keylessSig(t, e, e.vs, "https://accounts.evil.example", ghSubject, digest.Digest(img.Digest), later(5*time.Minute), all), false)
			return "kl/t-issuer:v1"
		}},
		{name: "keyless identity: wrong subject", exit: 11, reasons: noCI, details: []string{"matches no configured identity"}, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-subject", "v1")
			e.pushBundle("kl/t-subject", desc(img), keylessSig(t, e, e.vs, ghIssuer, "https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main", digest.Digest(img.Digest), later(5*time.Minute), all), false)
			return "kl/t-subject:v1"
		}},
		{name: "keyless bundle with a self-signed attacker certificate and a rogue timestamp", exit: 11, reasons: noCI, details: []string{"signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-selfsigned-ts", "v1")
			e.pushBundle("kl/t-selfsigned-ts", desc(img), selfSignedBundle(t, e.attacker, statementJSON(cosign.SignPredicateType, `{}`, digest.Digest(img.Digest)), rogue), false)
			return "kl/t-selfsigned-ts:v1"
		}},
		{name: "keyless bundle with a self-signed attacker certificate, no time evidence", exit: 11, reasons: noCI, details: []string{"signature-invalid"}, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-selfsigned", "v1")
			e.pushBundle("kl/t-selfsigned", desc(img), selfSignedBundle(t, e.attacker, statementJSON(cosign.SignPredicateType, `{}`, digest.Digest(img.Digest)), nil), false)
			return "kl/t-selfsigned:v1"
		}},
		{name: "unsigned image's layer disguised as a signature artifact is not served by digest", setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-disguise", "v1")
			// A manifest typed entirely as cosign evidence whose only layer
			// is the denied image's layer, at the image's .sig tag.
			e.pushLegacy("app/t-disguise", digest.Digest(img.Digest), "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: img.Layers[0].Data})
			return "app/t-disguise:v1"
		}, custom: func(t *testing.T, e *env, ref string) {
			img := e.describe("app/t-disguise", "v1")
			e.expectProxyDenied(ref, noSig("pg-apps", img.Digest))
			e.expectCLI(ref, 14, noSig("pg-apps", img.Digest))
			// Clients fetch the .sig artifact (served so they can verify it)...
			st, _, _ := e.manifestGET("app/t-disguise:" + cosign.TagFor(digest.Digest(img.Digest), "sig"))
			t.Logf("GET .sig artifact through the proxy: %d", st)
			// ...but that must not make the denied image's layer available.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, _, b, err := harness.Get(ctx, e.px.URL+"/v2/"+upName+"/app/t-disguise/blobs/"+img.Layers[0].Digest, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st != http.StatusForbidden {
				t.Fatalf("GET the denied image's layer by digest after fetching the disguised .sig: %d (%d bytes), want 403", st, len(b))
			}
		}},
		{name: "keyless attestation about another digest", exit: 12, reasons: func(string) []string {
			return []string{"rule pg-keyless-att: attestation " + slsa02 + " signed by ci: none found"}
		}, details: []string{"digest-mismatch"}, setup: func(t *testing.T, e *env) string {
			img := e.image("klatt/t-subject", "v1")
			ent, err := e.vs.AttestAtTime(ghSubject, ghIssuer, statementJSON(slsa02, goodPred, digest.FromString("elsewhere")), later(5*time.Minute), false)
			if err != nil {
				t.Fatal(err)
			}
			e.pushBundle("klatt/t-subject", desc(img), entityBundle(t, e.vs, ent, all), false)
			return "klatt/t-subject:v1"
		}},
		{name: "keyless attestation, condition false", exit: 13, reasons: func(string) []string {
			return []string{"rule pg-keyless-att: attestation " + slsa02 + " signed by ci: condition " + conditionQ + " is false"}
		}, setup: func(t *testing.T, e *env) string {
			img := e.image("klatt/t-cond", "v1")
			ent, err := e.vs.AttestAtTime(ghSubject, ghIssuer, statementJSON(slsa02, evilPred, digest.Digest(img.Digest)), later(5*time.Minute), false)
			if err != nil {
				t.Fatal(err)
			}
			e.pushBundle("klatt/t-cond", desc(img), entityBundle(t, e.vs, ent, all), true)
			return "klatt/t-cond:v1"
		}},
		{name: "tlog required, offline key signature has none", exit: 13, reasons: func(d string) []string { return []string{noSig("pg-tlog", d)} }, details: []string{"requirement-not-met"}, setup: func(t *testing.T, e *env) string {
			img := e.image("tlog/t-none", "v1")
			e.c2.sign(e.release, e.upRef("tlog/t-none", img.Digest))
			return "tlog/t-none:v1"
		}},
		{name: "index signed by the attacker does not cover its child", exit: 10, reasons: noSigApps, setup: func(t *testing.T, e *env) string {
			idx := e.up.PushIndex(t, "app/t-index", "v1", false)
			e.c2.sign(e.attacker, e.upRef("app/t-index", idx.Digest))
			e.expectProxyDenied("app/t-index:v1", noSig("pg-apps", idx.Digest))
			return "app/t-index@" + idx.Children[0].Digest
		}},
		{name: "signature present, layer blob altered upstream", setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-blob", "v1")
			e.c2.sign(e.release, e.upRef("app/t-blob", img.Digest))
			return "app/t-blob:v1"
		}, custom: func(t *testing.T, e *env, ref string) {
			img := e.describe("app/t-blob", "v1")
			layer := img.Layers[0]
			e.up.Liar.LieBlob(layer.Digest)
			defer e.up.Liar.Honest()
			if _, err := harness.GGCRPull(e.pxRef(ref)); err == nil {
				t.Fatal("pull with an altered layer succeeded")
			}
			if e.up.Liar.Lies() == 0 {
				t.Fatal("the upstream never served the altered layer")
			}
			if _, ok := e.px.Server.Store().Has(digest.Digest(layer.Digest)); ok {
				t.Fatal("the altered layer was committed to the content store")
			}
			// The signature is genuine, so the decision stands; only bytes
			// that hash to the signed digests are served.
			e.expectCLI(ref, 0)
			e.up.Liar.Honest()
			e.expectProxyAllowed(ref, img.Digest)
		}},
		{name: "tag moved after verification to an unsigned image", setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-moved", "v1")
			e.c2.sign(e.release, e.upRef("app/t-moved", img.Digest))
			return "app/t-moved:v1"
		}, custom: func(t *testing.T, e *env, ref string) {
			old := e.describe("app/t-moved", "v1")
			e.expectProxyAllowed(ref, old.Digest)
			moved := e.image("app/t-moved", "v1") // same tag, new unsigned image
			time.Sleep(300 * time.Millisecond)    // tag TTL 100ms
			e.expectProxyDenied(ref, noSig("pg-apps", moved.Digest))
			e.expectCLI(ref, 10, noSig("pg-apps", moved.Digest))
			e.expectProxyAllowed("app/t-moved@"+old.Digest, old.Digest)
		}},
		{name: "audit mode: unsigned image served, would deny logged", setup: func(t *testing.T, e *env) string {
			e.image("audit/t-unsigned", "v1")
			return "audit/t-unsigned:v1"
		}, custom: func(t *testing.T, e *env, ref string) {
			img := e.describe("audit/t-unsigned", "v1")
			e.expectProxyAllowed(ref, img.Digest)
			r := e.expectCLI(ref, 10, noSig("pg-audited", img.Digest))
			if !r.decision.Allowed || !r.decision.WouldDeny {
				t.Fatalf("CLI decision: want allowed with wouldDeny: %+v", r.decision)
			}
		}},
		{name: "trust file rotated: old signature no longer trusted", isolated: true, setup: func(t *testing.T, e *env) string {
			img := e.image("app/t-rotated", "v1")
			e.c2.sign(e.release, e.upRef("app/t-rotated", img.Digest))
			e.expectProxyAllowed("app/t-rotated:v1", img.Digest)
			rev := e.px.Server.Policy().Revision()
			e.replaceFile("release.pub", e.attacker.pub) // rotated to a new key
			e.waitRevision(rev)
			return "app/t-rotated:v1"
		}, exit: 11, reasons: noSigApps, details: []string{"signature-invalid"}},
		{name: "trusted root replaced: keyless signature from the old CA no longer trusted", isolated: true, setup: func(t *testing.T, e *env) string {
			img := e.image("kl/t-rootrotated", "v1")
			e.pushBundle("kl/t-rootrotated", desc(img), keylessSig(t, e, e.vs, ghIssuer, ghSubject, digest.Digest(img.Digest), later(5*time.Minute), all), false)
			e.expectProxyAllowed("kl/t-rootrotated:v1", img.Digest)
			rev := e.px.Server.Policy().Revision()
			e.replaceFile("trusted_root.json", trustedRootJSON(t, newVirtualSigstore(t)))
			e.waitRevision(rev)
			return "kl/t-rootrotated:v1"
		}, exit: 11, reasons: noCI, details: []string{"signature-invalid"}},
		{name: "audit-mode verify rule without requirements is a configuration error", isolated: true, setup: func(t *testing.T, e *env) string {
			e.image("app/t-noreq", "v1")
			return "app/t-noreq:v1"
		}, custom: func(t *testing.T, e *env, ref string) {
			bad := "rules:\n  - name: pg-noreq\n    match: [\"upstream.local/**\"]\n    action: verify\n    mode: audit\n"
			e.writeFile("noreq.yaml", []byte(bad))
			cfg, err := config.Load(e.px.ConfigPath)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Policy = e.dir + "/noreq.yaml"
			cfg.Storage.Path = t.TempDir()
			if srv, err := proxy.Open(context.Background(), cfg, nil); err == nil {
				srv.Close()
				t.Fatal("the proxy opened with a verify rule that has no requirements")
			} else if !strings.Contains(err.Error(), "require") {
				t.Errorf("proxy.Open error does not name the missing require: %v", err)
			}
			r := runCLI(t, "verify", upName+"/"+ref, "--policy", e.dir+"/noreq.yaml", "--config", e.px.ConfigPath, "-o", "json")
			if r.code != 2 {
				t.Fatalf("pullgate verify: exit %d, want 2", r.code)
			}
		}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			if tc.isolated {
				e = newEnv(t, envOptions{referrers: true})
			} else {
				e = shared.with(t)
			}
			ref := tc.setup(t, e)
			if tc.custom != nil {
				tc.custom(t, e, ref)
				return
			}
			st, h, body := e.manifestGET(ref)
			if tc.exit == 0 {
				if st != http.StatusOK {
					t.Fatalf("GET %s through the proxy: %d %s", ref, st, body)
				}
				e.expectProxyAllowed(ref, h.Get("Docker-Content-Digest"))
				e.expectCLI(ref, 0)
				return
			}
			if st != http.StatusForbidden {
				t.Fatalf("GET %s through the proxy: %d, want 403: %s", ref, st, body)
			}
			d := e.upstreamDigest(ref)
			cli := e.cli(ref)
			var reasons []string
			if tc.reasons != nil {
				reasons = tc.reasons(d)
			}
			e.expectProxyDenied(ref, reasons...)
			if cli.code != tc.exit {
				t.Errorf("pullgate verify %s: exit %d, want %d\n%s%s", ref, cli.code, tc.exit, cli.stdout, cli.stderr)
			}
			all := strings.Join(cli.decision.Reasons, "\n")
			for _, r := range reasons {
				if !strings.Contains(all, r) {
					t.Errorf("pullgate verify %s: reasons\n  %s\nlack %q", ref, all, r)
				}
			}
			checks := toJSON(cli.decision.Checks)
			for _, want := range tc.details {
				if !strings.Contains(checks, want) {
					t.Errorf("pullgate verify %s: checks lack %q: %s", ref, want, checks)
				}
			}
		})
	}
	if n := len(cases); n < 25 {
		t.Fatalf("only %d tamper cases", n)
	}
}

// getBlob reads a blob straight from the upstream.
func (e *env) getBlob(repo string, d digest.Digest) []byte {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, _, b, err := harness.Get(ctx, e.up.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil || st != http.StatusOK {
		e.t.Fatalf("GET blob %s: %d %v", d, st, err)
	}
	return b
}

// referrers lists referrers of a digest straight from the upstream's API.
func (e *env) referrers(repo, d string) []ocispec.Descriptor {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, _, b, err := harness.Get(ctx, e.up.URL+"/v2/"+repo+"/referrers/"+url.PathEscape(d), nil)
	if err != nil || st != http.StatusOK {
		e.t.Fatalf("GET referrers %s: %d %v", d, st, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		e.t.Fatal(err)
	}
	return idx.Manifests
}

// describe reads what a tag points at on the upstream (manifest and layers).
func (e *env) describe(repo, tag string) *harness.Image {
	e.t.Helper()
	body := e.getUpstream(repo, tag)
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		e.t.Fatal(err)
	}
	img := &harness.Image{Repo: repo, Tag: tag, Digest: digest.FromBytes(body).String(), Manifest: body, MediaType: m.MediaType}
	img.Config = harness.Blob{Digest: m.Config.Digest.String(), Size: m.Config.Size}
	for _, l := range m.Layers {
		img.Layers = append(img.Layers, harness.Blob{Digest: l.Digest.String(), Size: l.Size, MediaType: l.MediaType})
	}
	return img
}

// selfSignedBundle is a sigstore bundle whose "Fulcio" certificate the
// attacker made for their own key, with the CI identity in it: trust must
// come from the trusted root, never from the bundle.
func selfSignedBundle(t testing.TB, k *key, statement []byte, tsa *ca.VirtualSigstore) []byte {
	t.Helper()
	u, _ := url.Parse(ghSubject)
	issuerExt, _ := asn1.Marshal(ghIssuer)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "sigstore"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs: []*url.URL{u}, IsCA: true, BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}, Value: []byte(ghIssuer)},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}, Value: issuerExt},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.priv.Public(), k.priv)
	if err != nil {
		t.Fatal(err)
	}
	env := envelopeJSON(t, k, "application/vnd.in-toto+json", statement)
	var envm map[string]any
	_ = json.Unmarshal(env, &envm)
	vm := map[string]any{"certificate": map[string]string{"rawBytes": base64.StdEncoding.EncodeToString(der)}}
	if tsa != nil {
		sig, _ := base64.StdEncoding.DecodeString(envm["signatures"].([]any)[0].(map[string]any)["sig"].(string))
		ts, err := tsa.TimestampResponse(sig)
		if err != nil {
			t.Fatal(err)
		}
		vm["timestampVerificationData"] = map[string]any{"rfc3161Timestamps": []map[string]string{{"signedTimestamp": base64.StdEncoding.EncodeToString(ts)}}}
	}
	b, _ := json.Marshal(map[string]any{
		"mediaType":            cosign.BundleMediaType,
		"verificationMaterial": vm,
		"dsseEnvelope":         envm,
	})
	return b
}

// upstreamDigest is the digest repo:tag or repo@digest names on the upstream.
func (e *env) upstreamDigest(repoAndRef string) string {
	e.t.Helper()
	repo, ref := splitRef(repoAndRef)
	if strings.HasPrefix(ref, "sha256:") {
		return ref
	}
	return digest.FromBytes(e.getUpstream(repo, ref)).String()
}
