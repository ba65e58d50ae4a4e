package vsa_test

import (
	"context"
	"testing"

	"github.com/pullgate/pullgate/verify/vsa"
)

// FuzzParse feeds statements to the VSA parser: it must never panic, and
// whatever it accepts is a VSA whose Summary, when valid, writes a statement
// that parses back to the same subject and result.
func FuzzParse(f *testing.F) {
	st, err := vsa.Statement(summary(imageD))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(st)
	failed := summary(otherD)
	failed.VerificationResult = vsa.Failed
	st2, _ := vsa.Statement(failed)
	f.Add(st2)
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"` + imageD.Encoded() + `"}}],"predicateType":"https://slsa.dev/verification_summary/v1","predicate":{"timeVerified":"x"}}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/verification_summary/v1","predicate":{"verifier":{"id":1}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := vsa.Parse(b)
		if err != nil {
			return
		}
		if s.Validate() != nil {
			return
		}
		out, err := vsa.Statement(*s)
		if err != nil {
			t.Fatalf("valid summary not written: %v", err)
		}
		back, err := vsa.Parse(out)
		if err != nil || back.Subject != s.Subject || back.VerificationResult != s.VerificationResult || back.Verifier.ID != s.Verifier.ID {
			t.Fatalf("round trip: %+v -> %+v (%v)", s, back, err)
		}
	})
}

// FuzzCheck feeds bundles to Check: whatever the bytes, it must return a
// summary only for a VSA signed by the key about the digest, never panic.
func FuzzCheck(f *testing.F) {
	k := newKey(f, "ecdsa")
	good := signed(f, k, summary(imageD))
	f.Add(good)
	f.Add(signed(f, k, summary(otherD)))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	trust := k.trust(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := vsa.Check(context.Background(), [][]byte{b}, imageD, trust, vsa.CheckOptions{Now: now})
		if err == nil && (s == nil || s.Subject != imageD || s.VerificationResult != vsa.Passed) {
			t.Fatalf("Check passed %+v", s)
		}
	})
}
