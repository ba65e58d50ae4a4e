package vsae2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/sigstoretest"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/vsa"
)

const keylessIdentity = "vsa@ci.pullgate.test"

// TestVSAKeylessSigner: a VSA signed keylessly (a certificate from the real
// Fulcio for an identity, a timestamp from the real timestamp-server) passes `pullgate
// vsa check --certificate-identity/--certificate-oidc-issuer/--trusted-root`
// and the containerd verifier configured with certificateIdentity,
// certificateOidcIssuer and trustedRoot; another identity, a VSA signed by
// a key and a keyless VSA without an observer timestamp are refused with
// pullgate verify's exit codes (11, 11, 13).
func TestVSAKeylessSigner(t *testing.T) {
	e := newEnv(t, false)
	tsa := harness.StartTSA(t)
	oidc := sigstoretest.StartOIDC(t)
	keylessIssuer := oidc.URL
	fulcio := harness.StartFulcio(t, oidc.URL)
	tr := sigstoretest.TrustedRoot(t, []root.CertificateAuthority{sigstoretest.FulcioCA(t, fulcio)}, []root.TimestampingAuthority{sigstoretest.TSAChain(t, tsa)})
	if err := os.WriteFile(filepath.Join(e.dir, "trusted_root.json"), tr, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	keyless := func(img *harness.Image, tsaURL string) []byte {
		st, err := vsa.Statement(e.summary(img, now.Add(-time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := vsa.SignWith(context.Background(), st, attest.SignOptions{IDToken: oidc.Token(t, keylessIdentity), FulcioURL: fulcio, TSAURL: tsaURL})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := e.u.PushImage(t, "team/keyless", "1.0", harness.ImageOptions{})
	e.push(good, keyless(good, tsa+"/api/v1/timestamp"))
	keyed := e.u.PushImage(t, "team/keyed", "1.0", harness.ImageOptions{})
	e.push(keyed, e.sign(e.summary(keyed, now.Add(-time.Minute)), e.signer))
	untimed := e.u.PushImage(t, "team/untimed", "1.0", harness.ImageOptions{})
	e.push(untimed, keyless(untimed, ""))

	check := func(ref string, args ...string) (string, int) {
		t.Helper()
		return e.run(pullgateBin, nil, append([]string{"vsa", "check", e.u.Ref(ref), "--verifier-id", verifierID, "--plain-http"}, args...)...)
	}
	id := func(identity, issuer string) []string {
		return []string{"--certificate-identity", identity, "--certificate-oidc-issuer", issuer, "--trusted-root", "trusted_root.json"}
	}
	for _, c := range []struct {
		ref    string
		args   []string
		want   int
		reason string // in the output, when set
	}{
		{"team/keyless:1.0", id(keylessIdentity, keylessIssuer), 0, ""},
		{"team/keyless:1.0", id("someone-else@ci.pullgate.test", keylessIssuer), 11, ""},
		{"team/keyless:1.0", id(keylessIdentity, "https://other-oidc.pullgate.test"), 11, ""},
		{"team/keyless:1.0", []string{"--key", e.pub}, 11, ""},
		{"team/keyed:1.0", id(keylessIdentity, keylessIssuer), 11, "signed by a key, but only keyless identities are configured"},
		{"team/untimed:1.0", id(keylessIdentity, keylessIssuer), 13, "no Rekor entry or signed timestamp"},
		// A key and an identity: either signer counts.
		{"team/keyed:1.0", append(id(keylessIdentity, keylessIssuer), "--key", e.pub), 0, ""},
		{"team/keyless:1.0", append(id(keylessIdentity, keylessIssuer), "--key", e.pub), 0, ""},
		// An identity without its trusted root: usage error.
		{"team/keyless:1.0", []string{"--certificate-identity", keylessIdentity, "--certificate-oidc-issuer", keylessIssuer}, 2, ""},
	} {
		if out, code := check(c.ref, c.args...); code != c.want || !strings.Contains(out, c.reason) {
			t.Fatalf("vsa check %s %v: exit %d, want %d (%q)\n%s", c.ref, c.args, code, c.want, c.reason, out)
		}
	}

	// The containerd verifier, configured for the identity (the trusted
	// root named relative to the configuration file).
	verifier := filepath.Join(e.dir, "pullgate-vsa-verifier")
	if err := os.Symlink(pullgateBin, verifier); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.dir, "vsa-verifier.yaml")
	writeCfg := func(identity string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("certificateIdentity: %s\ncertificateOidcIssuer: %s\ntrustedRoot: trusted_root.json\nverifierId: %s\nregistries:\n  %q: http://%s\n",
			identity, keylessIssuer, verifierID, e.u.Host, e.u.Host)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	call := func(img *harness.Image) (string, int) {
		t.Helper()
		// Run elsewhere: the trusted root is found next to the
		// configuration, not in the working directory.
		return e.callVerifier(verifier, cfg, t.TempDir(), e.u.Ref(img.Repo+":1.0"), img, img.Digest)
	}
	writeCfg(keylessIdentity)
	if out, code := call(good); code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("containerd verifier, keyless VSA: exit %d: %s", code, out)
	}
	if out, code := call(keyed); code != 11 {
		t.Fatalf("containerd verifier, VSA by a key: exit %d, want 11: %s", code, out)
	}
	writeCfg("someone-else@ci.pullgate.test")
	if out, code := call(good); code != 11 {
		t.Fatalf("containerd verifier configured for another identity: exit %d, want 11: %s", code, out)
	}
}
