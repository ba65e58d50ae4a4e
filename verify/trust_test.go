package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

func TestNewTrust(t *testing.T) {
	p256 := newKey(t, "a", "p256")
	rootJSON := trustedRootJSON(t, newVirtualSigstore(t))
	certPEM := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	ok := []verify.TrustSpec{
		{Keys: []verify.KeySpec{newKey(t, "p256", "p256").spec(), newKey(t, "p384", "p384").spec(), newKey(t, "ed", "ed25519").spec(), newKey(t, "rsa", "rsa2048").spec()}},
		{Identities: []verify.IdentitySpec{{Name: "ci", Issuer: ghIssuer, SubjectRegExp: "^https://github.com/acme/"}}, TrustedRootJSON: rootJSON},
		{Identities: []verify.IdentitySpec{{Name: "ci", IssuerRegExp: ".*", Subject: "me@example.com"}}, TrustedRootJSON: rootJSON, Keys: []verify.KeySpec{p256.spec()}},
		{},
	}
	for i, s := range ok {
		tr, err := verify.NewTrust(s)
		if err != nil {
			t.Fatalf("spec %d: %v", i, err)
		}
		if len(tr.Names()) != len(s.Keys)+len(s.Identities) {
			t.Fatalf("spec %d names %v", i, tr.Names())
		}
	}
	bad := []struct {
		spec   verify.TrustSpec
		reason string
	}{
		{verify.TrustSpec{Keys: []verify.KeySpec{newKey(t, "k", "p521").spec()}}, "P-521 is not supported"},
		{verify.TrustSpec{Keys: []verify.KeySpec{newKey(t, "k", "rsa1024").spec()}}, "RSA key of 1024 bits"},
		{verify.TrustSpec{Keys: []verify.KeySpec{{Name: "k", PEM: []byte("not pem")}}}, "no PEM block"},
		{verify.TrustSpec{Keys: []verify.KeySpec{{Name: "k", PEM: certPEM()}}}, `PEM block is "CERTIFICATE"`},
		{verify.TrustSpec{Keys: []verify.KeySpec{{Name: "k", PEM: append(append([]byte{}, p256.pem...), p256.pem...)}}}, "one key per entry"},
		{verify.TrustSpec{Keys: []verify.KeySpec{{Name: "", PEM: p256.pem}}}, "has no name"},
		{verify.TrustSpec{Keys: []verify.KeySpec{{Name: "x", PEM: p256.pem}}, Identities: []verify.IdentitySpec{{Name: "x", Issuer: "i", Subject: "s"}}, TrustedRootJSON: rootJSON}, `"x" is used twice`},
		{verify.TrustSpec{Identities: []verify.IdentitySpec{{Name: "ci", Subject: "s"}}, TrustedRootJSON: rootJSON}, "set issuer or issuerRegExp"},
		{verify.TrustSpec{Identities: []verify.IdentitySpec{{Name: "ci", Issuer: "i"}}, TrustedRootJSON: rootJSON}, "set subject or subjectRegExp"},
		{verify.TrustSpec{Identities: []verify.IdentitySpec{{Name: "ci", Issuer: "i", SubjectRegExp: "("}}, TrustedRootJSON: rootJSON}, "subjectRegExp"},
		{verify.TrustSpec{Identities: []verify.IdentitySpec{{Name: "ci", Issuer: "i", Subject: "s"}}}, "need a Sigstore trusted root"},
		{verify.TrustSpec{Identities: []verify.IdentitySpec{{Name: "ci", Issuer: "i", Subject: "s"}}, TrustedRootJSON: []byte(`{"mediaType":"nope"}`)}, "trusted root"},
	}
	for i, b := range bad {
		_, err := verify.NewTrust(b.spec)
		if err == nil || !strings.Contains(err.Error(), b.reason) {
			t.Fatalf("bad spec %d: err %v, want %q", i, err, b.reason)
		}
	}
}

// TestKeyTypes signs a legacy signature and an attestation with every
// supported key type and checks each verifies only under its own key.
func TestKeyTypes(t *testing.T) {
	reg := startUpstream(t, true)
	for _, kind := range []string{"p256", "p384", "ed25519", "rsa2048"} {
		t.Run(kind, func(t *testing.T) {
			k := newKey(t, kind, kind)
			other := newKey(t, "other", kind)
			repo := "keys/" + kind
			img := pushImage(t, reg, repo, "v1")
			pushLegacy(t, reg, repo, img.Digest, "sig", sigLayer(t, k, simpleSigningPayload(img.Digest, "x")))
			pushLegacy(t, reg, repo, img.Digest, "att", attLayer(envelopeJSON(t, k, "application/vnd.in-toto+json",
				statementJSON("https://in-toto.io/Statement/v1", slsa02, "{}", img.Digest))))
			pushBundle(t, reg, repo, img, keyBundleJSON(t, k, statementJSON("https://in-toto.io/Statement/v1", "https://sigstore.dev/cosign/sign/v1", "{}", img.Digest)), false)
			f := newFetcher(t, reg, repo)
			res := verify.Collect(context.Background(), f, img.Digest, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{other.spec(), k.spec()}}), verify.CollectOptions{})
			if len(res.Signatures) != 2 || len(res.Attestations) != 1 || len(res.Failures) != 0 || res.Found != 3 {
				t.Fatalf("%s", summarize(res))
			}
			for _, s := range res.Signatures {
				if s.Signer != kind {
					t.Fatalf("signer %q", s.Signer)
				}
			}
			res = verify.Collect(context.Background(), f, img.Digest, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{other.spec()}}), verify.CollectOptions{})
			if len(res.Signatures)+len(res.Attestations) != 0 || len(res.Failures) != 3 {
				t.Fatalf("other key: %s", summarize(res))
			}
		})
	}
}

// TestP384BothHashes: cosign legacy hashes P-384 signatures with SHA-256,
// sigstore tooling with SHA-384; both verify, a P-256/SHA-384 mix does not.
func TestP384BothHashes(t *testing.T) {
	subject := digest.FromString("p384")
	payload := simpleSigningPayload(subject, "x")
	for _, tc := range []struct {
		kind string
		hash crypto.Hash
		ok   bool
	}{{"p384", crypto.SHA384, true}, {"p384", crypto.SHA256, true}, {"p256", crypto.SHA384, false}} {
		k := newKey(t, "k", tc.kind)
		h := tc.hash.New()
		h.Write(payload)
		sig, err := ecdsa.SignASN1(rand.Reader, k.priv.(*ecdsa.PrivateKey), h.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		mf := newMemFetcher()
		mf.add(cosign.TagFor(subject, "sig"), "", nil, layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload,
			annotations: map[string]string{cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}})
		res := verify.Collect(context.Background(), mf, subject, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}}), verify.CollectOptions{})
		if (len(res.Signatures) == 1) != tc.ok {
			t.Fatalf("%s/%v: %s", tc.kind, tc.hash, summarize(res))
		}
	}
}
