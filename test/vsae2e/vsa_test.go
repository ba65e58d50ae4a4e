// Package vsae2e drives `pullgate vsa check` and the containerd verifier
// mode of the pullgate binary against a real distribution registry, with
// VSAs signed by verify/vsa and attached by pullgate (attest.Push), by oras
// and by cosign v3.
package vsae2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/vsa"
)

var pullgateBin string

func TestMain(m *testing.M) { tools.RunWithPullgate(m, &pullgateBin) }

const (
	verifierID = "https://pullgate.example/prod"
	password   = "vsa-e2e-password"
)

// env is a registry, a VSA key made by cosign (so cosign and pullgate sign
// with the same key) and a directory for files.
type env struct {
	t      *testing.T
	u      *harness.Upstream
	dir    string
	signer *ecdsa.PrivateKey
	pub    string // path of the public key (PEM)
}

func newEnv(t *testing.T, referrersAPI bool) *env {
	t.Helper()
	e := &env{t: t, u: harness.StartUpstream(t, harness.UpstreamOptions{Referrers: referrersAPI}), dir: t.TempDir()}
	e.cosign("cosign3", "generate-key-pair")
	s, err := vsa.LoadSigner(filepath.Join(e.dir, "cosign.key"), []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	e.signer = s.(*ecdsa.PrivateKey)
	e.pub = filepath.Join(e.dir, "cosign.pub")
	return e
}

func (e *env) run(bin string, extraEnv []string, args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = e.dir
	cmd.Env = append(append(os.Environ(), "HOME="+e.dir, "DOCKER_CONFIG="+filepath.Join(e.dir, ".docker"), "COSIGN_PASSWORD="+password,
		"TUF_ROOT="+filepath.Join(e.dir, "tuf"), "SIGSTORE_NO_CACHE=true"), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", bin, err)
	}
	e.t.Logf("$ %s %s (exit %d)\n%s", filepath.Base(bin), strings.Join(args, " "), code, out.String())
	return out.String(), code
}

func (e *env) cosign(v string, args ...string) string {
	e.t.Helper()
	out, code := e.run(tools.Need(e.t, v), nil, args...)
	if code != 0 {
		e.t.Fatalf("%s %s: exit %d\n%s", v, strings.Join(args, " "), code, out)
	}
	return out
}

func (e *env) summary(img *harness.Image, at time.Time) vsa.Summary {
	d := img.Digest
	dg := digest.Digest(d)
	return vsa.Summary{
		Subject:            dg,
		Verifier:           vsa.Verifier{ID: verifierID, Version: map[string]string{vsa.VersionComponent: "e2e"}},
		TimeVerified:       at,
		ResourceURI:        "oci://" + e.u.Host + "/" + img.Repo + "@" + d,
		Policy:             vsa.ResourceDescriptor{URI: "https://pullgate.example/prod/policy.yaml", Digest: vsa.DigestSet(digest.FromString("policy"))},
		VerificationResult: vsa.Passed,
		VerifiedLevels:     []string{vsa.LevelPolicy, vsa.LevelSignatures},
	}
}

func (e *env) sign(s vsa.Summary, with *ecdsa.PrivateKey) []byte {
	e.t.Helper()
	st, err := vsa.Statement(s)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := vsa.Sign(context.Background(), st, with)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// push attaches a bundle with pullgate's own pusher (cosign v3's layout).
func (e *env) push(img *harness.Image, bundle []byte) {
	e.t.Helper()
	if _, err := attest.Push(context.Background(), e.u.Ref(img.Repo+"@"+img.Digest), [][]byte{bundle}, attest.PushOptions{Insecure: true}); err != nil {
		e.t.Fatal(err)
	}
}

// orasAttach attaches a bundle as a referrer with the oras CLI (which, unlike
// attest.Push, does not look inside: it attaches a VSA for another digest).
func (e *env) orasAttach(img *harness.Image, bundle []byte) {
	e.t.Helper()
	p := filepath.Join(e.dir, fmt.Sprintf("bundle-%d.json", time.Now().UnixNano()))
	os.WriteFile(p, bundle, 0o644)
	out, code := e.run(tools.Need(e.t, "oras"), nil, "attach", "--plain-http", "--artifact-type", attest.BundleMediaType,
		e.u.Ref(img.Repo+"@"+img.Digest), filepath.Base(p)+":"+attest.BundleMediaType)
	if code != 0 {
		e.t.Fatalf("oras attach: exit %d\n%s", code, out)
	}
}

func (e *env) check(ref string, extra ...string) (string, int) {
	e.t.Helper()
	args := append([]string{"vsa", "check", e.u.Ref(ref), "--key", e.pub, "--plain-http"}, extra...)
	return e.run(pullgateBin, nil, args...)
}

func otherKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVSACheck: `pullgate vsa check` passes for an image with a valid VSA
// (attached by pullgate, and one made and attached by `cosign attest`), and
// refuses, with pullgate verify's exit codes, an image without VSA (10), a
// VSA for another digest (12), one signed by another key (11), one older
// than --max-age (13) and one from another verifier (13). Each refused
// image differs from a passing one only in what is refused. Both with the
// referrers API and with the sha256-<hex> tag fallback.
func TestVSACheck(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", api), func(t *testing.T) {
			e := newEnv(t, api)
			now := time.Now()
			good := e.u.PushImage(t, "team/app", "1.0", harness.ImageOptions{})
			e.push(good, e.sign(e.summary(good, now.Add(-time.Minute)), e.signer))

			out, code := e.check("team/app:1.0", "--verifier-id", verifierID, "--max-age", "24h")
			if code != 0 || !strings.Contains(out, "PASSED") || !strings.Contains(out, good.Digest) {
				t.Fatalf("good VSA: exit %d\n%s", code, out)
			}
			out, code = e.check("team/app@"+good.Digest, "-o", "json")
			var r struct {
				Passed  bool
				Summary struct {
					Verifier struct{ ID string }
				}
			}
			if code != 0 || json.Unmarshal([]byte(out), &r) != nil || !r.Passed || r.Summary.Verifier.ID != verifierID {
				t.Fatalf("-o json: exit %d\n%s", code, out)
			}

			none := e.u.PushImage(t, "team/none", "1.0", harness.ImageOptions{})
			if out, code := e.check("team/none:1.0"); code != 10 {
				t.Fatalf("no VSA: exit %d, want 10\n%s", code, out)
			}
			_ = none
			// Signed (cosign v3 bundle and legacy .sig, with the release
			// key, not the VSA key) but no VSA: still "no VSA" (10), not
			// "signature invalid" (11).
			signedOnly := e.u.PushImage(t, "team/signed", "1.0", harness.ImageOptions{})
			e.cosign("cosign3", "generate-key-pair", "--output-key-prefix", "release")
			e.cosign("cosign3", "sign", "--key", "release.key", "--tlog-upload=false", "--use-signing-config=false",
				"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", e.u.Ref(signedOnly.Repo+"@"+signedOnly.Digest))
			e.cosign("cosign2", "sign", "--key", "release.key", "--tlog-upload=false",
				"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", e.u.Ref(signedOnly.Repo+"@"+signedOnly.Digest))
			if out, code := e.check("team/signed:1.0"); code != 10 {
				t.Fatalf("signed image without VSA: exit %d, want 10\n%s", code, out)
			}

			// A VSA that is genuine, but for the good image, attached to
			// another image.
			replay := e.u.PushImage(t, "team/replay", "1.0", harness.ImageOptions{})
			e.orasAttach(replay, e.sign(e.summary(good, now), e.signer))
			if out, code := e.check("team/replay:1.0"); code != 12 {
				t.Fatalf("VSA for another digest: exit %d, want 12\n%s", code, out)
			}

			forged := e.u.PushImage(t, "team/forged", "1.0", harness.ImageOptions{})
			e.push(forged, e.sign(e.summary(forged, now), otherKey(t)))
			if out, code := e.check("team/forged:1.0"); code != 11 {
				t.Fatalf("VSA by another key: exit %d, want 11\n%s", code, out)
			}

			old := e.u.PushImage(t, "team/old", "1.0", harness.ImageOptions{})
			e.push(old, e.sign(e.summary(old, now.Add(-48*time.Hour)), e.signer))
			if out, code := e.check("team/old:1.0", "--max-age", "24h"); code != 13 || !strings.Contains(out, "older than the maximum age") {
				t.Fatalf("old VSA: exit %d, want 13\n%s", code, out)
			}
			if out, code := e.check("team/old:1.0", "--max-age", "72h"); code != 0 {
				t.Fatalf("old VSA within --max-age: exit %d\n%s", code, out)
			}
			if out, code := e.check("team/old:1.0", "--verifier-id", "https://pullgate.example/staging"); code != 13 {
				t.Fatalf("another verifier: exit %d, want 13\n%s", code, out)
			}

			// cosign v3 makes and attaches the VSA from pullgate's predicate.
			cos := e.u.PushImage(t, "team/cosigned", "1.0", harness.ImageOptions{})
			pred, _ := json.Marshal(e.summary(cos, now))
			os.WriteFile(filepath.Join(e.dir, "vsa.json"), pred, 0o644)
			e.cosign("cosign3", "attest", "--key", "cosign.key", "--type", vsa.PredicateType, "--predicate", "vsa.json",
				"--tlog-upload=false", "--use-signing-config=false", "--allow-http-registry=true", "--allow-insecure-registry=true", "-y",
				e.u.Ref(cos.Repo+"@"+cos.Digest))
			if out, code := e.check("team/cosigned:1.0", "--verifier-id", verifierID, "--max-age", "1h"); code != 0 {
				t.Fatalf("cosign-attached VSA: exit %d\n%s", code, out)
			}

			// cosign v3 verifies the VSA pullgate signed and attached.
			out = e.cosign("cosign3", "verify-attestation", "--key", "cosign.pub", "--type", vsa.PredicateType,
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", e.u.Ref(good.Repo+"@"+good.Digest))
			if !strings.Contains(out, good.Digest[len("sha256:"):]) {
				t.Fatalf("cosign verify-attestation output lacks the digest:\n%s", out)
			}
			// cosign v2 too, with the new bundle format and an empty
			// trusted root (a key-based bundle needs no authority).
			os.WriteFile(filepath.Join(e.dir, "trusted_root.json"), []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
			out = e.cosign("cosign2", "verify-attestation", "--key", "cosign.pub", "--type", vsa.PredicateType,
				"--new-bundle-format", "--trusted-root", "trusted_root.json",
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", e.u.Ref(good.Repo+"@"+good.Digest))
			if !strings.Contains(out, good.Digest[len("sha256:"):]) {
				t.Fatalf("cosign2 verify-attestation output lacks the digest:\n%s", out)
			}
		})
	}
}

// TestContainerdVerifierProtocol runs the pullgate binary as containerd's
// bindir plugin runs a verifier: through a symlink named
// pullgate-vsa-verifier, with exactly -name, -digest and -stdin-media-type,
// the image's OCI descriptor as JSON on stdin, and the configuration from
// PULLGATE_VSA_VERIFIER_CONFIG. Exit 0 allows, anything else blocks; stdout
// is the reason containerd logs.
func TestContainerdVerifierProtocol(t *testing.T) {
	e := newEnv(t, true)
	now := time.Now()
	good := e.u.PushImage(t, "team/app", "1.0", harness.ImageOptions{})
	e.push(good, e.sign(e.summary(good, now.Add(-time.Minute)), e.signer))
	none := e.u.PushImage(t, "team/none", "1.0", harness.ImageOptions{})
	old := e.u.PushImage(t, "team/old", "1.0", harness.ImageOptions{})
	e.push(old, e.sign(e.summary(old, now.Add(-48*time.Hour)), e.signer))

	binDir := filepath.Join(e.dir, "bin")
	os.MkdirAll(binDir, 0o755)
	verifier := filepath.Join(binDir, "pullgate-vsa-verifier")
	if err := os.Symlink(pullgateBin, verifier); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.dir, "vsa-verifier.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`keys: [%s]
verifierId: %s
maxAge: 24h
registries:
  %q: http://%s
  registry.example: http://%s
`, e.pub, verifierID, e.u.Host, e.u.Host, e.u.Host)), 0o644)

	call := func(name string, img *harness.Image, stdinDigest string) (string, int) {
		t.Helper()
		return e.callVerifier(verifier, cfg, "", name, img, stdinDigest)
	}
	if out, code := call(e.u.Ref("team/app:1.0"), good, good.Digest); code != 0 || !strings.Contains(out, "PASSED") {
		t.Fatalf("good image refused: exit %d: %s", code, out)
	}
	// The name as containerd sees it behind a mirror: mapped to where the
	// VSAs are.
	if out, code := call("registry.example/team/app:1.0", good, good.Digest); code != 0 {
		t.Fatalf("mapped name refused: exit %d: %s", code, out)
	}
	if out, code := call(e.u.Ref("team/none:1.0"), none, none.Digest); code != 10 || !strings.Contains(out, "no-vsa") {
		t.Fatalf("image without VSA: exit %d: %s", code, out)
	}
	if out, code := call(e.u.Ref("team/old:1.0"), old, old.Digest); code != 13 {
		t.Fatalf("old VSA: exit %d: %s", code, out)
	}
	if out, code := call(e.u.Ref("team/app:1.0"), good, none.Digest); code != 12 {
		t.Fatalf("descriptor for another digest: exit %d: %s", code, out)
	}
	// No configuration: blocked, not allowed.
	os.Remove(cfg)
	if out, code := call(e.u.Ref("team/app:1.0"), good, good.Digest); code == 0 {
		t.Fatalf("allowed without configuration: %s", out)
	}
}

// callVerifier runs the containerd verifier (verifier, a symlink to
// pullgate) as containerd does: -name, -digest, -stdin-media-type and the
// image's descriptor (naming stdinDigest) on stdin, the configuration cfg
// from PULLGATE_VSA_VERIFIER_CONFIG, in dir ("" : the test's). It returns
// stdout (the reason containerd logs) and the exit code.
func (e *env) callVerifier(verifier, cfg, dir, name string, img *harness.Image, stdinDigest string) (string, int) {
	e.t.Helper()
	desc, _ := json.Marshal(map[string]any{"mediaType": img.MediaType, "digest": stdinDigest, "size": len(img.Manifest)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, verifier, "-name", name, "-digest", img.Digest, "-stdin-media-type", "application/vnd.oci.descriptor.v1+json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PULLGATE_VSA_VERIFIER_CONFIG="+cfg, "HOME="+e.dir, "DOCKER_CONFIG="+filepath.Join(e.dir, ".docker"))
	cmd.Stdin = bytes.NewReader(append(desc, '\n'))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("verifier -name %s -digest %s: exit %d: %s%s", name, img.Digest, code, stdout.String(), stderr.String())
	return stdout.String(), code
}
