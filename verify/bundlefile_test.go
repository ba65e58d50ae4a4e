package verify_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
)

// VerifyBundle: a bundle file verified as a bundle referrer would be, with
// a key and keyless; it counts only for the subject its statement names
// and only when signed by configured trust.
func TestVerifyBundleFile(t *testing.T) {
	ctx := context.Background()
	subject := digest.FromString("the artifact")
	stmt := statementJSON("https://in-toto.io/Statement/v1", "https://slsa.dev/provenance/v1", `{"builder":{"id":"x"}}`, subject)
	key, other := newKey(t, "release", "p256"), newKey(t, "other", "p256")
	keyed := keyBundleJSON(t, key, stmt)

	vs := newVirtualSigstore(t)
	ent, err := vs.AttestAtTime(ghSubject, ghIssuer, stmt, later(5*time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	keyless := entityBundle(t, vs, ent, bundleParts{TLog: true, Timestamp: true})
	keylessTrust := mustTrust(t, verify.TrustSpec{TrustedRootJSON: trustedRootJSON(t, vs),
		Identities: []verify.IdentitySpec{{Name: "ci", Issuer: ghIssuer, Subject: ghSubject}}})

	cases := []struct {
		name    string
		bundle  []byte
		subject digest.Digest
		trust   *verify.Trust
		atts    int
		kind    verify.FailureKind
	}{
		{"key", keyed, subject, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{key.spec()}}), 1, ""},
		{"keyless", keyless, subject, keylessTrust, 1, ""},
		{"another subject", keyed, digest.FromString("else"), mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{key.spec()}}), 0, verify.FailMismatch},
		{"untrusted key", keyed, subject, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{other.spec()}}), 0, verify.FailInvalid},
		{"keyless, another identity", keyless, subject, mustTrust(t, verify.TrustSpec{TrustedRootJSON: trustedRootJSON(t, vs),
			Identities: []verify.IdentitySpec{{Name: "other", Issuer: ghIssuer, Subject: "https://github.com/evil/x"}}}), 0, verify.FailInvalid},
		{"not a bundle", []byte(`{"mediaType":`), subject, keylessTrust, 0, verify.FailMalformed},
		{"oversized", append(bytes.Repeat([]byte(" "), 9<<20), keyed...), subject, keylessTrust, 0, verify.FailMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := verify.VerifyBundle(ctx, tc.bundle, tc.subject, tc.trust, verify.CollectOptions{})
			if len(res.Attestations) != tc.atts {
				t.Fatalf("%d attestations, want %d: %s", len(res.Attestations), tc.atts, summarize(res))
			}
			if tc.kind == "" {
				if len(res.Failures) != 0 || res.Attestations[0].Source != verify.SourceFile || res.Attestations[0].Statement != digest.FromBytes(stmt) {
					t.Fatalf("got %s %+v", summarize(res), res.Attestations)
				}
				return
			}
			if len(res.Failures) != 1 || res.Failures[0].Kind != tc.kind || !strings.Contains(string(res.Failures[0].Source), verify.SourceFile) {
				t.Fatalf("failures %s, want one %s", summarize(res), tc.kind)
			}
		})
	}
}
