package verify_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

// keyRekorAnnotation logs a key-based cosign signature in the virtual Rekor
// (a hashedrekord v0.0.1 entry with the public key, SET by the log key) and
// renders cosign's legacy bundle annotation for it.
func keyRekorAnnotation(t *testing.T, vs *ca.VirtualSigstore, k testKey, payload, sig []byte, integrated time.Time) string {
	t.Helper()
	h := sha256.Sum256(payload)
	// Canonical JSON: keys sorted, no spaces, as Rekor stores bodies.
	body := `{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":"` + hex.EncodeToString(h[:]) +
		`"}},"signature":{"content":"` + base64.StdEncoding.EncodeToString(sig) + `","publicKey":{"content":"` + base64.StdEncoding.EncodeToString(k.pem) + `"}}}}`
	logID, err := vs.RekorLogID()
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(body))
	set, err := vs.RekorSignPayload(tlog.RekorPayload{Body: b64, IntegratedTime: integrated.Unix(), LogIndex: 42, LogID: logID})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(map[string]any{"SignedEntryTimestamp": set, "Payload": map[string]any{"body": b64, "integratedTime": integrated.Unix(), "logIndex": 42, "logID": logID}})
	return string(out)
}

// TestKeyBasedWithRekor: a key-based legacy signature whose Rekor entry is
// verified offline against the trusted root when the rule requires it.
func TestKeyBasedWithRekor(t *testing.T) {
	reg := startUpstream(t, true)
	vs := newVirtualSigstore(t)
	k := newKey(t, "release", "p256")
	other := newKey(t, "other", "p256")
	trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{k.spec()}, TrustedRootJSON: trustedRootJSON(t, vs)})
	requireTlog := verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true}}
	at := time.Now().Add(-time.Minute).Truncate(time.Second)

	for _, tc := range []struct {
		name   string
		ann    func(payload, sig []byte) string
		kind   verify.FailureKind
		reason string
	}{
		{name: "logged", ann: func(p, s []byte) string { return keyRekorAnnotation(t, vs, k, p, s, at) }},
		{name: "entry for another signature", ann: func(p, s []byte) string {
			return keyRekorAnnotation(t, vs, k, p, k.sign(t, p), at)
		}, kind: verify.FailInvalid, reason: "transparency log signature does not match"},
		{name: "entry names another key", ann: func(p, s []byte) string {
			return keyRekorAnnotation(t, vs, other, p, other.sign(t, p), at)
		}, kind: verify.FailInvalid, reason: "does not match"},
		{name: "entry inconsistent (our signature, another key)", ann: func(p, s []byte) string {
			return keyRekorAnnotation(t, vs, other, p, s, at)
		}, kind: verify.FailInvalid, reason: "rekor bundle annotation"},
		{name: "entry from an untrusted log", ann: func(p, s []byte) string {
			return keyRekorAnnotation(t, newVirtualSigstore(t), k, p, s, at)
		}, kind: verify.FailInvalid, reason: "log"},
		{name: "SET tampered (integrated time moved)", ann: func(p, s []byte) string {
			a := keyRekorAnnotation(t, vs, k, p, s, at)
			return strings.Replace(a, `"integratedTime":`+itoa(at.Unix()), `"integratedTime":`+itoa(at.Unix()-3600), 1)
		}, kind: verify.FailInvalid, reason: "log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "keytlog/" + strings.NewReplacer(" ", "-", "(", "", ")", "", ",", "").Replace(strings.ToLower(tc.name))
			img := pushImage(t, reg, repo, "v1")
			payload := simpleSigningPayload(img.Digest, "x")
			sig := k.sign(t, payload)
			pushLegacy(t, reg, repo, img.Digest, "sig", layerSpec{mediaType: cosign.SimpleSigningMediaType, blob: payload, annotations: map[string]string{
				cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig),
				cosign.BundleAnnotation:    tc.ann(payload, sig),
			}})
			f := newFetcher(t, reg, repo)
			res := verify.Collect(context.Background(), f, img.Digest, trust, requireTlog)
			if tc.kind == "" {
				if len(res.Signatures) != 1 || len(res.Failures) != 0 || !res.Signatures[0].SignedAt.Equal(at) {
					t.Fatalf("%s %+v", summarize(res), res.Signatures)
				}
				return
			}
			if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != tc.kind || !strings.Contains(res.Failures[0].Reason, tc.reason) {
				t.Fatalf("%s", summarize(res))
			}
			// Without the requirement the (valid) key signature counts.
			if !strings.HasPrefix(tc.name, "entry for") && !strings.HasPrefix(tc.name, "entry names") {
				res = verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{})
				if len(res.Signatures) != 1 || !res.Signatures[0].SignedAt.IsZero() {
					t.Fatalf("without tlog requirement: %s", summarize(res))
				}
			}
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
