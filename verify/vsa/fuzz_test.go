package vsa_test

import (
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
