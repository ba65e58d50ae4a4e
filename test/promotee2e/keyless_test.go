package promotee2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/sigstoretest"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/vsa"
)

const (
	ciIdentity    = "promote@ci.pullgate.test"
	otherIdentity = "someone-else@ci.pullgate.test"
)

// keylessEnv adds to env Sigstore's real Fulcio (in-memory CA, no CT log)
// and timestamp authority (timestamp-server), two OIDC providers Fulcio
// trusts (the issuer of the CI's tokens, and another), and a
// trusted_root.json holding Fulcio's CA and the TSA chain, as an operator
// would ship it.
type keylessEnv struct {
	*env
	oidc, otherOIDC *sigstoretest.OIDC
	fulcio, tsa     string
}

func newKeylessEnv(t *testing.T) *keylessEnv {
	e := &keylessEnv{env: newEnv(t), tsa: harness.StartTSA(t), oidc: sigstoretest.StartOIDC(t), otherOIDC: sigstoretest.StartOIDC(t)}
	e.fulcio = harness.StartFulcio(t, e.oidc.URL, e.otherOIDC.URL)
	ca := sigstoretest.FulcioCA(t, e.fulcio)
	tr := sigstoretest.TrustedRoot(t, []root.CertificateAuthority{ca}, []root.TimestampingAuthority{sigstoretest.TSAChain(t, e.tsa)})
	e.write("keyless_root.json", string(tr))
	// The same Fulcio CA but not the TSA: nothing it signs can be verified
	// with this root.
	e.write("fulcio_only_root.json", string(sigstoretest.TrustedRoot(t, []root.CertificateAuthority{ca}, nil)))
	e.write("ci.token", e.oidc.Token(t, ciIdentity)+"\n")
	e.write("other.token", e.oidc.Token(t, otherIdentity))
	return e
}

func (e *keylessEnv) write(name, data string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(data), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// signWith are promote's keyless flags with the token in tokenFile.
func (e *keylessEnv) signWith(tokenFile string) []string {
	return []string{"--id-token-file", tokenFile, "--fulcio", e.fulcio, "--tsa", e.tsa + "/api/v1/timestamp", "--trusted-root", "keyless_root.json"}
}

// vsaCheck runs pullgate vsa check with a keyless signer.
func (e *keylessEnv) vsaCheck(ref, identity, issuer string) (string, int) {
	e.t.Helper()
	return e.run(pullgateBin, "vsa", "check", ref, "--certificate-identity", identity, "--certificate-oidc-issuer", issuer,
		"--trusted-root", "keyless_root.json", "--verifier-id", verifierID, "--max-age", "1h", "--plain-http")
}

// TestPromoteKeyless: promote signs keylessly (a Fulcio certificate for
// the CI identity, a real RFC 3161 timestamp): cosign v3 verifies the
// signature and the VSA by that identity, pullgate vsa check passes for it
// and refuses another identity or issuer (exit 11, as another key); a
// second run writes nothing; a run by another identity signs again; a
// missing timestamp authority is a usage error and a token Fulcio refuses
// a clear error, both with no write at the destination.
func TestPromoteKeyless(t *testing.T) {
	e := newKeylessEnv(t)
	img := e.src.PushImage(t, "apps/web", "1.0", harness.ImageOptions{Layers: 2})
	e.releaseSign("apps/web", img.Digest)

	// Keyless without --tsa or --rekor: usage error, nothing asked, nothing written.
	noTSA := []string{"promote", e.src.Ref("apps/web:1.0"), e.dst.Ref("prod/web:1.0"), "--policy", "policy.yaml",
		"--id-token-file", "ci.token", "--fulcio", e.fulcio, "--trusted-root", "keyless_root.json", "--plain-http"}
	if out, code := e.run(pullgateBin, noTSA...); code != 2 || !strings.Contains(out, "--tsa or --rekor") {
		t.Fatalf("keyless promote without --tsa/--rekor: exit %d, want 2 naming --tsa or --rekor\n%s", code, out)
	}
	// Without --trusted-root: usage error too.
	if out, code := e.run(pullgateBin, append(noTSA[:len(noTSA)-3], "--tsa", e.tsa+"/api/v1/timestamp", "--plain-http")...); code != 2 || !strings.Contains(out, "--trusted-root") {
		t.Fatalf("keyless promote without --trusted-root: exit %d, want 2\n%s", code, out)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("usage errors made %d writes at the destination", w)
	}

	// A token Fulcio refuses (signed by a key the provider's JWKS does not
	// hold): exit 1, the error says what Fulcio answered, the token is not
	// printed, nothing written.
	forged := e.oidc.ForgedToken(t, ciIdentity)
	e.write("forged.token", forged)
	stdout, stderr, code := e.exec(pullgateBin, append([]string{"promote", e.src.Ref("apps/web:1.0"), e.dst.Ref("prod/web:1.0"), "--policy", "policy.yaml",
		"--verifier-id", verifierID, "--plain-http", "-o", "json"}, e.signWith("forged.token")...)...)
	if code != 1 || !strings.Contains(stdout, "Fulcio returned 400") || !strings.Contains(stdout, "error processing the identity token") {
		t.Fatalf("promote with a refused token: exit %d\n%s%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, forged) || strings.Contains(stdout+stderr, strings.Split(forged, ".")[2]) {
		t.Fatal("promote printed the identity token")
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("promote with a refused token made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/web", img.Digest)

	// A trusted root without the TSA: the fresh signature does not verify
	// against it, so promote stops before writing (a signature nobody
	// could verify is not attached), and before streaming the source's
	// layers (the signature is checked right after the decision).
	noTSARoot := e.signWith("ci.token")
	noTSARoot[len(noTSARoot)-1] = "fulcio_only_root.json"
	if r, code := e.promoteWith("apps/web:1.0", "prod/web:1.0", noTSARoot); code != 1 || !strings.Contains(r.Error, "new signature") || !strings.Contains(r.Error, "does not verify") {
		t.Fatalf("promote checked against a root without the TSA: exit %d %+v", code, r)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("promote whose signature does not verify made %d write requests to the destination", w)
	}
	for _, l := range img.Layers {
		if n := e.src.Count("GET", "/blobs/"+l.Digest); n != 0 {
			t.Fatalf("promote whose signature does not verify fetched layer %s from the source %d times", l.Digest, n)
		}
	}

	// A policy that trusts the promote identity for artifacts (here by a
	// regexp): refused once Fulcio names the identity, exit 2, nothing
	// written (promote's own signature would satisfy the policy).
	trusting := strings.Replace(policyFor(e.src.Host), "rules:\n", "  identities:\n    - {name: ci, issuer: \""+e.oidc.URL+"\", subjectRegExp: '^promote@ci\\.pullgate\\.test$'}\n  trustedRoot: ./keyless_root.json\nrules:\n", 1)
	e.write("trusting.yaml", trusting)
	stdout, stderr, code = e.exec(pullgateBin, append([]string{"promote", e.src.Ref("apps/web:1.0"), e.dst.Ref("prod/web:1.0"), "--policy", "trusting.yaml",
		"--verifier-id", verifierID, "--plain-http", "-o", "json"}, e.signWith("ci.token")...)...)
	if code != 2 || !strings.Contains(stdout, `trust identity \"ci\"`) {
		t.Fatalf("keyless promote by an identity the policy trusts: exit %d, want 2 naming the identity\n%s%s", code, stdout, stderr)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("promote by a trusted identity made %d write requests to the destination", w)
	}

	// Keyless promotion.
	r, code := e.promoteWith("apps/web:1.0", "prod/web:1.0", e.signWith("ci.token"))
	if code != 0 || r.Digest != img.Digest || r.Signature == "" || r.VSA == "" || r.Signer == nil ||
		r.Signer.Identity != ciIdentity || r.Signer.Issuer != e.oidc.URL || r.Signer.KeyHint != "" {
		t.Fatalf("keyless promote: exit %d %+v signer %+v", code, r, r.Signer)
	}
	at := e.dst.Ref("prod/web@" + img.Digest)
	cosignKeyless := []string{"--certificate-identity", ciIdentity, "--certificate-oidc-issuer", e.oidc.URL, "--trusted-root", "keyless_root.json",
		"--use-signed-timestamps", "--insecure-ignore-tlog=true", "--insecure-ignore-sct=true"}
	e.cosign("cosign3", append(append(append([]string{"verify"}, cosignKeyless...), insecureFlags...), at)...)
	out := e.cosign("cosign3", append(append(append([]string{"verify-attestation", "--type", vsa.PredicateType}, cosignKeyless...), insecureFlags...), at)...)
	if !strings.Contains(out, strings.TrimPrefix(img.Digest, "sha256:")) {
		t.Fatalf("cosign verify-attestation output lacks the digest:\n%s", out)
	}
	// cosign v2 reads the same bundles with --new-bundle-format.
	e.cosign("cosign2", append(append(append([]string{"verify-attestation", "--type", vsa.PredicateType, "--new-bundle-format"}, cosignKeyless...), insecureFlags...), at)...)
	// cosign refuses another identity: the check above is not vacuous.
	wrong := append([]string{"verify", "--certificate-identity", otherIdentity}, cosignKeyless[2:]...)
	if out, code := e.run(tools.Need(t, "cosign3"), append(append(wrong, insecureFlags...), at)...); code == 0 {
		t.Fatalf("cosign verify passed for another identity:\n%s", out)
	}

	// pullgate vsa check, keyless: the identity passes, another identity
	// or another issuer is refused as another key is (exit 11).
	if out, code := e.vsaCheck(e.dst.Ref("prod/web:1.0"), ciIdentity, e.oidc.URL); code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("vsa check keyless: exit %d\n%s", code, out)
	}
	if out, code := e.vsaCheck(e.dst.Ref("prod/web:1.0"), otherIdentity, e.oidc.URL); code != 11 {
		t.Fatalf("vsa check for another identity: exit %d, want 11\n%s", code, out)
	}
	if out, code := e.vsaCheck(e.dst.Ref("prod/web:1.0"), ciIdentity, e.otherOIDC.URL); code != 11 {
		t.Fatalf("vsa check for another issuer: exit %d, want 11\n%s", code, out)
	}
	// The same by regular expressions (cosign's flag names): the CI's
	// identity and issuer match, another identity's pattern does not.
	reCheck := func(identityRE, issuerRE string) (string, int) {
		return e.run(pullgateBin, "vsa", "check", e.dst.Ref("prod/web:1.0"), "--certificate-identity-regexp", identityRE,
			"--certificate-oidc-issuer-regexp", issuerRE, "--trusted-root", "keyless_root.json", "--verifier-id", verifierID, "--plain-http")
	}
	issuerRE := "^" + regexp.QuoteMeta(e.oidc.URL) + "$"
	if out, code := reCheck(`^promote@ci\.pullgate\.test$`, issuerRE); code != 0 {
		t.Fatalf("vsa check by regexps: exit %d\n%s", code, out)
	}
	if out, code := reCheck(`^someone-else@`, issuerRE); code != 11 {
		t.Fatalf("vsa check by another identity's regexp: exit %d, want 11\n%s", code, out)
	}
	if out, code := reCheck(`^promote@`, "^"+regexp.QuoteMeta(e.otherOIDC.URL)+"$"); code != 11 {
		t.Fatalf("vsa check by another issuer's regexp: exit %d, want 11\n%s", code, out)
	}

	// Twice, same identity: already promoted, nothing written.
	before := e.writes()
	r2, code := e.promoteWith("apps/web:1.0", "prod/web:1.0", e.signWith("ci.token"))
	if code != 0 || !r2.AlreadyPromoted || len(r2.BlobsCopied) != 0 || r2.Signature != "" {
		t.Fatalf("second keyless promote: exit %d %+v", code, r2)
	}
	if after := e.writes(); after != before {
		t.Fatalf("second keyless promote wrote to the destination: %d write requests, before %d", after, before)
	}

	// Another identity: not already promoted (the VSA there is not its
	// own); it signs and attaches its own signature and VSA, the first
	// identity's stay.
	r3, code := e.promoteWith("apps/web:1.0", "prod/web:1.0", e.signWith("other.token"))
	if code != 0 || r3.AlreadyPromoted || r3.Signature == "" || r3.VSA == "" || r3.VSA == r.VSA || r3.Signer == nil || r3.Signer.Identity != otherIdentity {
		t.Fatalf("promote by another identity: exit %d %+v", code, r3)
	}
	for _, id := range []string{ciIdentity, otherIdentity} {
		if out, code := e.vsaCheck(e.dst.Ref("prod/web:1.0"), id, e.oidc.URL); code != 0 {
			t.Fatalf("vsa check for %s after both promotions: exit %d\n%s", id, code, out)
		}
	}
}

// TestPromoteKeylessRereadsToken: the token file is read again before each
// signing, so a file refreshed in place during a long promotion is used.
// Here the file is replaced, while a layer streams, by a token that has
// expired: the VSA's signing fails with Fulcio's refusal and a hint that
// names the file, and nothing is written (the signature made with the
// first token is not attached either).
func TestPromoteKeylessRereadsToken(t *testing.T) {
	e := newKeylessEnv(t)
	img := e.src.PushImage(t, "apps/slow", "1.0", harness.ImageOptions{Layers: 1})
	e.releaseSign("apps/slow", img.Digest)
	g := holdBlob(t, e.src, img.Layers[0].Digest)
	e.write("policy.yaml", policyFor(g.host))
	e.write("rotating.token", e.oidc.Token(t, ciIdentity))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pullgateBin, append([]string{"promote", g.host + "/apps/slow:1.0", e.dst.Ref("prod/slow:1.0"),
		"--policy", "policy.yaml", "--verifier-id", verifierID, "--plain-http", "-o", "json"}, e.signWith("rotating.token")...)...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "HOME="+e.dir, "DOCKER_CONFIG="+filepath.Join(e.dir, ".docker"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.held:
	case <-ctx.Done():
		t.Fatalf("promote never asked for the layer\n%s", out.String())
	}
	e.write("rotating.token", e.oidc.ExpiredToken(t, ciIdentity))
	close(g.release)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(out.String(), "signing the VSA") || !strings.Contains(out.String(), "read again from rotating.token") {
		t.Fatalf("promote whose token file now holds an expired token: %v (want exit 1: the VSA's signing read the file again)\n%s", err, out.String())
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("promote made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/slow", img.Digest)
}
