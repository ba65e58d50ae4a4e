package attest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"

	upstream "github.com/pullgate/pullgate/cmd/pullgate/demoupstream"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
	"github.com/pullgate/pullgate/verify/release"
)

const cosignPassword = "pullgate-test-password"

func runCosign(t *testing.T, bin, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// Offline: no TUF, no Rekor, no Fulcio.
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+cosignPassword, "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"),
		"SIGSTORE_NO_CACHE=true", "COSIGN_EXPERIMENTAL=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// TestCosignInterop drives the real cosign v3 binary against a real
// registry: bundles made by Sign and attached by Push verify with
// `cosign verify-attestation`, and an attestation made by `cosign attest`
// is verified by verify.Collect and satisfies the llm-release chain.
func TestCosignInterop(t *testing.T) {
	cosign := tools.Need(t, "cosign3")
	for _, api := range []bool{true, false} {
		t.Run(fmt.Sprintf("referrersAPI=%v", api), func(t *testing.T) {
			reg, err := upstream.Start(upstream.Options{Referrers: api})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			repo, dg := pushImage(t, reg, "team/llm")
			ref := repo.String() + "@" + dg
			dir := t.TempDir()
			if _, err := runCosign(t, cosign, dir, "generate-key-pair"); err != nil {
				t.Fatal(err)
			}
			pub, _ := os.ReadFile(filepath.Join(dir, "cosign.pub"))
			keyPath := filepath.Join(dir, "cosign.key")

			r, err := attesttest.WriteRelease(t.TempDir(), attesttest.ReleaseOptions{Subject: ref})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()

			// 1. pullgate → cosign: sign with the cosign key (encrypted PEM),
			// push, verify with cosign verify-attestation.
			b, err := attest.Sign(ctx, r.Statements[attest.KindPrompt], attest.SignOptions{KeyPath: keyPath, Password: []byte(cosignPassword)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := attest.Push(ctx, ref, [][]byte{b}, attest.PushOptions{Insecure: true}); err != nil {
				t.Fatal(err)
			}
			verifyArgs := []string{"verify-attestation", "--key", "cosign.pub", "--type", attest.KindPrompt.PredicateType(),
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref}
			out, err := runCosign(t, cosign, dir, verifyArgs...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, base64.StdEncoding.EncodeToString(r.Statements[attest.KindPrompt])) &&
				!strings.Contains(out, string(r.Statements[attest.KindPrompt])) {
				t.Fatalf("cosign output does not hold our statement:\n%s", out)
			}
			// The same check must fail with another key (the test can fail).
			other, otherPub, _ := attesttest.NewKey()
			_ = other
			os.WriteFile(filepath.Join(dir, "other.pub"), otherPub, 0o644)
			bad := append([]string{}, verifyArgs...)
			bad[2] = "other.pub"
			if _, err := runCosign(t, cosign, dir, bad...); err == nil {
				t.Fatal("cosign verified our bundle with an unrelated key")
			}

			// 2. cosign → pullgate: cosign attest signs the eval predicate;
			// verify.Collect verifies it; the chain accepts it.
			ps, _ := attest.ParseStatement(r.Statements[attest.KindEval])
			os.WriteFile(filepath.Join(dir, "eval.json"), ps.Predicate, 0o644)
			if _, err := runCosign(t, cosign, dir, "attest", "--key", "cosign.key", "--type", attest.KindEval.PredicateType(),
				"--predicate", "eval.json", "--tlog-upload=false", "--use-signing-config=false",
				"--allow-http-registry=true", "--allow-insecure-registry=true", "-y", ref); err != nil {
				t.Fatal(err)
			}
			trust, err := verify.NewTrust(verify.TrustSpec{Keys: []verify.KeySpec{{Name: "ci", PEM: pub}}})
			if err != nil {
				t.Fatal(err)
			}
			nrepo, _ := name.NewRepository(repo.String(), name.Insecure)
			f := &attesttest.Fetcher{Repo: nrepo}
			res := verify.Collect(ctx, f, digest.Digest(dg), trust, verify.CollectOptions{})
			var cosignEval *verify.Attestation
			for i, a := range res.Attestations {
				if a.PredicateType == attest.KindEval.PredicateType() {
					cosignEval = &res.Attestations[i]
				}
			}
			if cosignEval == nil {
				t.Fatalf("verify.Collect found no eval attestation made by cosign: %+v", res)
			}
			if _, err := attest.DecodePredicate(cosignEval.PredicateType, cosignEval.Predicate); err != nil {
				t.Fatalf("cosign's eval predicate: %v", err)
			}
			// Route and slo reference cosign's eval statement by digest.
			_, err = attesttest.CreateNamed(r.Dir, "route-c", attest.KindRoute, fmt.Sprintf(
				"name: r\ncreated: 2026-11-20T10:30:00Z\nsubjects: [%q]\nevalStatement: %s\nconfigs: [route/route.yaml]\n", ref, cosignEval.Statement))
			if err != nil {
				t.Fatal(err)
			}
			_, err = attesttest.CreateNamed(r.Dir, "slo-c", attest.KindSLO, fmt.Sprintf(
				"name: s\ncreated: 2026-11-20T10:31:00Z\nsubjects: [%q]\nrouteStatement: route-c.stmt.json\nbudgets: {errorRate: 0.01}\n", ref))
			if err != nil {
				t.Fatal(err)
			}
			var bundles [][]byte
			for _, p := range []string{"corpus.stmt.json", "route-c.stmt.json", "slo-c.stmt.json"} {
				st, _ := os.ReadFile(filepath.Join(r.Dir, p))
				b, err := attest.Sign(ctx, st, attest.SignOptions{KeyPath: keyPath, Password: []byte(cosignPassword)})
				if err != nil {
					t.Fatal(err)
				}
				bundles = append(bundles, b)
			}
			if _, err := attest.Push(ctx, ref, bundles, attest.PushOptions{Insecure: true}); err != nil {
				t.Fatal(err)
			}
			res = verify.Collect(ctx, f, digest.Digest(dg), trust, verify.CollectOptions{})
			rep := release.Chain(release.ChainLLMRelease, res.Attestations, release.ChainOptions{Subject: digest.Digest(dg)})
			if !rep.OK {
				js, _ := json.MarshalIndent(res, "", " ")
				t.Fatalf("chain over pullgate + cosign attestations: %v\n%s", rep.Err(), js)
			}
		})
	}
}
