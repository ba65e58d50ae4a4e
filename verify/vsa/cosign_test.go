package vsa_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/vsa"
)

const cosignPassword = "pullgate-vsa-test"

// cosign runs a real cosign binary offline (no TUF, Rekor or Fulcio).
func cosign(t *testing.T, bin, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+cosignPassword, "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"), "SIGSTORE_NO_CACHE=true")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// emptyTrustedRoot is a Sigstore trusted root with no authority at all:
// cosign v2 requires --trusted-root with --new-bundle-format even for a
// key-based bundle, and fetches the public-good root from TUF without one.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// TestCosignVerifiesVSA: a VSA signed by Sign with a key cosign generated
// (cosign's encrypted key format, read by LoadSigner) verifies with
// `cosign verify-blob-attestation` of cosign v2 and v3, for the image
// digest given with --digest (no blob file needed); it is refused for
// another digest and another key (so the passing case can fail).
func TestCosignVerifiesVSA(t *testing.T) {
	ctx := context.Background()
	for _, v := range []string{"cosign2", "cosign3"} {
		t.Run(v, func(t *testing.T) {
			bin := tools.Need(t, v)
			dir := t.TempDir()
			if _, err := cosign(t, bin, dir, "generate-key-pair"); err != nil {
				t.Fatal(err)
			}
			signer, err := vsa.LoadSigner(filepath.Join(dir, "cosign.key"), []byte(cosignPassword))
			if err != nil {
				t.Fatal(err)
			}
			st, err := vsa.Statement(summary(imageD))
			if err != nil {
				t.Fatal(err)
			}
			b, err := vsa.Sign(ctx, st, signer)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "vsa.bundle.json"), b, 0o644)
			os.WriteFile(filepath.Join(dir, "trusted_root.json"), []byte(emptyTrustedRoot), 0o644)
			other := newKey(t, "ecdsa")
			os.WriteFile(filepath.Join(dir, "other.pub"), other.pubPEM, 0o644)
			args := func(key string, d digest.Digest) []string {
				a := []string{"verify-blob-attestation", "--key", key, "--type", vsa.PredicateType, "--bundle", "vsa.bundle.json",
					"--digest", d.Encoded(), "--digestAlg", "sha256", "--insecure-ignore-tlog=true"}
				if v == "cosign2" {
					a = append(a, "--new-bundle-format", "--trusted-root", "trusted_root.json")
				}
				return a
			}
			if out, err := cosign(t, bin, dir, args("cosign.pub", imageD)...); err != nil || !strings.Contains(out, "Verified OK") {
				t.Fatalf("%s refused our VSA: %v\n%s", v, err, out)
			}
			if _, err := cosign(t, bin, dir, args("cosign.pub", otherD)...); err == nil {
				t.Fatalf("%s verified our VSA for another digest", v)
			}
			if _, err := cosign(t, bin, dir, args("other.pub", imageD)...); err == nil {
				t.Fatalf("%s verified our VSA with another key", v)
			}
		})
	}
}

// TestCheckCosignVSA: a VSA made by `cosign attest-blob` (v3, new bundle
// format) from pullgate's predicate is accepted by Check for the blob's
// digest, with cosign's public key as trust, and refused with another key.
func TestCheckCosignVSA(t *testing.T) {
	bin := tools.Need(t, "cosign3")
	dir := t.TempDir()
	if _, err := cosign(t, bin, dir, "generate-key-pair"); err != nil {
		t.Fatal(err)
	}
	blob := []byte("a manifest, as bytes cosign hashes")
	d := digest.FromBytes(blob)
	os.WriteFile(filepath.Join(dir, "artifact"), blob, 0o644)
	pred, _ := json.Marshal(summary(d))
	os.WriteFile(filepath.Join(dir, "vsa.json"), pred, 0o644)
	if _, err := cosign(t, bin, dir, "attest-blob", "--key", "cosign.key", "--type", vsa.PredicateType, "--predicate", "vsa.json",
		"--bundle", "vsa.bundle.json", "--tlog-upload=false", "--use-signing-config=false", "-y", "artifact"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "vsa.bundle.json"))
	pub, _ := os.ReadFile(filepath.Join(dir, "cosign.pub"))
	k := key{pubPEM: pub}
	s, err := vsa.Check(context.Background(), [][]byte{b}, d, k.trust(t), vsa.CheckOptions{VerifierID: "https://pullgate.example/prod", Now: now})
	if err != nil {
		t.Fatalf("Check refused cosign's VSA: %v\n%s", err, b)
	}
	if s.Subject != d || s.Policy.Digest["sha256"] != policyD.Encoded() {
		t.Fatalf("summary: %+v", s)
	}
	if _, err := vsa.Check(context.Background(), [][]byte{b}, d, newKey(t, "ecdsa").trust(t), vsa.CheckOptions{Now: now}); err == nil {
		t.Fatal("Check accepted cosign's VSA with another key")
	}
}
