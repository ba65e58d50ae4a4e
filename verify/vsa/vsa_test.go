package vsa_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/vsa"
)

var (
	now     = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	imageD  = digest.FromString("the image manifest")
	otherD  = digest.FromString("another manifest")
	policyD = digest.FromString("policy revision")
)

func summary(d digest.Digest) vsa.Summary {
	return vsa.Summary{
		Subject:      d,
		Verifier:     vsa.Verifier{ID: "https://pullgate.example/prod", Version: map[string]string{vsa.VersionComponent: "v1.2.3"}},
		TimeVerified: now.Add(-time.Hour),
		ResourceURI:  "oci://registry.example/team/app@" + d.String(),
		Policy:       vsa.ResourceDescriptor{URI: "https://pullgate.example/prod/policy", Digest: vsa.DigestSet(policyD)},
		InputAttestations: []vsa.ResourceDescriptor{
			{URI: "oci://registry.example/team/app@" + digest.FromString("sig").String(), Digest: vsa.DigestSet(digest.FromString("sig"))},
		},
		VerificationResult: vsa.Passed,
		VerifiedLevels:     []string{vsa.LevelPolicy, vsa.LevelSignatures, vsa.ContentLevel("safetensors")},
	}
}

type key struct {
	signer crypto.Signer
	pubPEM []byte
}

func newKey(t testing.TB, kind string) key {
	t.Helper()
	var s crypto.Signer
	var err error
	switch kind {
	case "ecdsa":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, s, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		s, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return key{s, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func (k key) trust(t testing.TB) *verify.Trust {
	t.Helper()
	tr, err := verify.NewTrust(verify.TrustSpec{Keys: []verify.KeySpec{{Name: "pullgate-vsa", PEM: k.pubPEM}}})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func signed(t testing.TB, k key, s vsa.Summary) []byte {
	t.Helper()
	st, err := vsa.Statement(s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := vsa.Sign(context.Background(), st, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStatementFields(t *testing.T) {
	st, err := vsa.Statement(summary(imageD))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string            `json:"name"`
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string         `json:"predicateType"`
		Predicate     map[string]any `json:"predicate"`
	}
	if err := json.Unmarshal(st, &v); err != nil {
		t.Fatal(err)
	}
	if v.Type != "https://in-toto.io/Statement/v1" || v.PredicateType != "https://slsa.dev/verification_summary/v1" {
		t.Fatalf("statement header: %s", st)
	}
	if len(v.Subject) != 1 || v.Subject[0].Name != "oci://registry.example/team/app@"+imageD.String() || v.Subject[0].Digest["sha256"] != imageD.Encoded() {
		t.Fatalf("subject: %+v", v.Subject)
	}
	for _, f := range []string{"verifier", "timeVerified", "resourceUri", "policy", "inputAttestations", "verificationResult", "verifiedLevels", "slsaVersion"} {
		if _, ok := v.Predicate[f]; !ok {
			t.Errorf("predicate lacks %s: %s", f, st)
		}
	}
	if ver := v.Predicate["verifier"].(map[string]any); ver["id"] != "https://pullgate.example/prod" || ver["version"].(map[string]any)["pullgate"] != "v1.2.3" {
		t.Errorf("verifier: %v", ver)
	}
	if p := v.Predicate["policy"].(map[string]any); p["digest"].(map[string]any)["sha256"] != policyD.Encoded() {
		t.Errorf("policy: %v", p)
	}
	if v.Predicate["timeVerified"] != "2026-12-06T11:00:00Z" {
		t.Errorf("timeVerified: %v", v.Predicate["timeVerified"])
	}
	got, err := vsa.Parse(st)
	if err != nil || got.Subject != imageD || got.Verifier.ID != "https://pullgate.example/prod" {
		t.Fatalf("Parse: %+v %v", got, err)
	}
	// Required fields.
	for name, mut := range map[string]func(*vsa.Summary){
		"no verifier":   func(s *vsa.Summary) { s.Verifier.ID = "" },
		"no resource":   func(s *vsa.Summary) { s.ResourceURI = "" },
		"no time":       func(s *vsa.Summary) { s.TimeVerified = time.Time{} },
		"no policy uri": func(s *vsa.Summary) { s.Policy.URI = "" },
		"bad result":    func(s *vsa.Summary) { s.VerificationResult = "OK" },
		"sha512":        func(s *vsa.Summary) { s.Subject = digest.SHA512.FromString("x") },
		"bad input":     func(s *vsa.Summary) { s.InputAttestations[0].Digest = map[string]string{"sha256": "zz"} },
	} {
		s := summary(imageD)
		mut(&s)
		if _, err := vsa.Statement(s); err == nil {
			t.Errorf("%s: Statement accepted it", name)
		}
	}
}

// TestSignCheck signs with each key type and checks the round trip, then
// every way a VSA must be refused, with the exit code it maps to.
func TestSignCheck(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"ecdsa", "ed25519", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			k := newKey(t, kind)
			b := signed(t, k, summary(imageD))
			s, err := vsa.Check(ctx, [][]byte{b}, imageD, k.trust(t), vsa.CheckOptions{VerifierID: "https://pullgate.example/prod", MaxAge: 24 * time.Hour, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if s.Subject != imageD || s.Policy.URI == "" || s.VerificationResult != vsa.Passed || s.TimeVerified.IsZero() {
				t.Fatalf("summary: %+v", s)
			}
			// The bundle carries the key's hint, not the key.
			var bj struct {
				VerificationMaterial map[string]json.RawMessage `json:"verificationMaterial"`
			}
			if err := json.Unmarshal(b, &bj); err != nil {
				t.Fatal(err)
			}
			if _, ok := bj.VerificationMaterial["publicKey"]; !ok || len(bj.VerificationMaterial) != 1 {
				t.Fatalf("verificationMaterial: %s", b)
			}
		})
	}

	k := newKey(t, "ecdsa")
	other := newKey(t, "ecdsa")
	good := signed(t, k, summary(imageD))
	failed := summary(imageD)
	failed.VerificationResult = vsa.Failed
	failed.VerifiedLevels = nil
	twoSubjects := func() []byte {
		st, _ := vsa.Statement(summary(imageD))
		var m map[string]any
		json.Unmarshal(st, &m)
		subs := m["subject"].([]any)
		m["subject"] = append(subs, map[string]any{"name": "x", "digest": map[string]string{"sha256": otherD.Encoded()}})
		st, _ = json.Marshal(m)
		b, err := vsa.Sign(ctx, st, k.signer)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	provenance, err := attest.Sign(ctx, []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":%q}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"verificationResult":"PASSED","verifier":{"id":"https://pullgate.example/prod"},"timeVerified":"2026-12-06T11:00:00Z"}}`, imageD.Encoded())), attest.SignOptions{Signer: k.signer})
	if err != nil {
		t.Fatal(err)
	}
	newerFailed := summary(imageD)
	newerFailed.VerificationResult, newerFailed.VerifiedLevels = vsa.Failed, []string{"FAILED"}
	newerFailed.TimeVerified = now.Add(-time.Minute)
	future := summary(imageD)
	future.TimeVerified = now.Add(time.Hour)
	cases := []struct {
		name    string
		bundles [][]byte
		opts    vsa.CheckOptions
		code    int
		reason  string
	}{
		{"none", nil, vsa.CheckOptions{}, 10, "no VSA"},
		{"not a VSA", [][]byte{provenance}, vsa.CheckOptions{}, 10, "no VSA"},
		{"another digest", [][]byte{signed(t, k, summary(otherD))}, vsa.CheckOptions{}, 12, "do not include"},
		{"two subjects", [][]byte{twoSubjects}, vsa.CheckOptions{}, 12, "names 2 subjects"},
		{"another key", [][]byte{signed(t, other, summary(imageD))}, vsa.CheckOptions{}, 11, ""},
		{"too old", [][]byte{good}, vsa.CheckOptions{MaxAge: 30 * time.Minute}, 13, "older than the maximum age 30m0s"},
		{"future", [][]byte{signed(t, k, future)}, vsa.CheckOptions{}, 13, "in the future"},
		{"failed", [][]byte{signed(t, k, failed)}, vsa.CheckOptions{}, 13, `verificationResult is "FAILED"`},
		{"verifier id", [][]byte{good}, vsa.CheckOptions{VerifierID: "https://pullgate.example/staging"}, 13, "verifier.id"},
		{"resource", [][]byte{good}, vsa.CheckOptions{ResourceURI: "oci://elsewhere/x"}, 13, "resourceUri"},
		{"another repository", [][]byte{good}, vsa.CheckOptions{Repository: "sandbox/app"}, 13, "not repository sandbox/app"},
		{"another policy", [][]byte{good}, vsa.CheckOptions{PolicyDigest: digest.FromString("other policy")}, 13, "policy.digest"},
		{"another policy uri", [][]byte{good}, vsa.CheckOptions{PolicyURI: "https://pullgate.example/sandbox/policy"}, 13, "policy.uri"},
		{"a level missing", [][]byte{good}, vsa.CheckOptions{Levels: []string{vsa.LevelMBOM}}, 13, "lack PULLGATE_MBOM"},
		// The newest VSA decides: a newer FAILED one is not outweighed by
		// an older PASSED one.
		{"newer failed beside older passed", [][]byte{good, signed(t, k, newerFailed)}, vsa.CheckOptions{}, 13, "the newest about it: verificationResult"},
		{"tampered payload", [][]byte{tamper(t, good)}, vsa.CheckOptions{}, 11, ""},
		{"not json", [][]byte{[]byte("{")}, vsa.CheckOptions{}, 14, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Now = now
			s, err := vsa.Check(ctx, c.bundles, imageD, k.trust(t), c.opts)
			var ref *vsa.Refusal
			if !errors.As(err, &ref) {
				t.Fatalf("Check passed (%+v) or failed without a refusal: %v", s, err)
			}
			if ref.ExitCode() != c.code || !strings.Contains(err.Error(), c.reason) {
				t.Fatalf("exit %d (%s), want %d containing %q", ref.ExitCode(), err, c.code, c.reason)
			}
		})
	}
	// An invalid subject is refused, not a panic.
	if _, err := vsa.Check(ctx, [][]byte{good}, "", k.trust(t), vsa.CheckOptions{Now: now}); err == nil || err.(*vsa.Refusal).ExitCode() != 14 {
		t.Fatalf("empty subject: %v", err)
	}
	// pullgate's path form names the registry as the repository's first
	// segment: registry.example/team/app is the resource's repository too.
	if _, err := vsa.Check(ctx, [][]byte{good}, imageD, k.trust(t), vsa.CheckOptions{Now: now, Repository: "registry.example/team/app"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"app", "other.example/team/app", "team/app/x", "registry.example/team"} {
		if _, err := vsa.Check(ctx, [][]byte{good}, imageD, k.trust(t), vsa.CheckOptions{Now: now, Repository: r}); err == nil {
			t.Errorf("repository %s accepted a VSA of registry.example/team/app", r)
		}
	}
	// The right repository, policy and levels pass.
	if _, err := vsa.Check(ctx, [][]byte{good}, imageD, k.trust(t), vsa.CheckOptions{Now: now, Repository: "team/app", PolicyDigest: policyD,
		PolicyURI: "https://pullgate.example/prod/policy", Levels: []string{vsa.LevelSignatures}}); err != nil {
		t.Fatal(err)
	}
	// One good VSA among bad ones passes.
	if _, err := vsa.Check(ctx, [][]byte{signed(t, other, summary(imageD)), signed(t, k, summary(otherD)), good}, imageD, k.trust(t), vsa.CheckOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
}

// tamper changes the statement inside the envelope, keeping the signature.
func tamper(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	env := m["dsseEnvelope"].(map[string]any)
	p, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	p2 := []byte(strings.Replace(string(p), `"PASSED"`, `"PASSED" `, 1))
	if string(p2) == string(p) {
		t.Fatal("nothing tampered")
	}
	env["payload"] = base64.StdEncoding.EncodeToString(p2)
	out, _ := json.Marshal(m)
	return out
}

func TestSignRefusesOtherStatements(t *testing.T) {
	k := newKey(t, "ecdsa")
	st := []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":%q}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`, imageD.Encoded()))
	if _, err := vsa.Sign(context.Background(), st, k.signer); err == nil {
		t.Fatal("signed a provenance statement as a VSA")
	}
	// A key pullgate cannot verify with is refused at load time.
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := vsa.Sign(context.Background(), mustStatement(t), weak); err == nil {
		t.Fatal("signed with a 1024-bit RSA key")
	}
}

func mustStatement(t *testing.T) []byte {
	st, err := vsa.Statement(summary(imageD))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestInputs(t *testing.T) {
	a, b := digest.FromString("sig"), digest.FromString("att")
	in := vsa.Inputs("registry.example/team/app", []digest.Digest{a, a, b, ""})
	if len(in) != 2 || in[0].URI != "oci://registry.example/team/app@"+a.String() || in[1].Digest["sha256"] != b.Encoded() {
		t.Fatalf("Inputs: %+v", in)
	}
	s := summary(imageD)
	s.InputAttestations = in
	if _, err := vsa.Statement(s); err != nil {
		t.Fatal(err)
	}
}
