package scenarios

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

const bugEvidenceContent = "BUG-3 evidence manifests under content rules: proxy/evaluate.go (*Server).evaluate computes " +
	"content findings (content.CheckManifest: media-type allowlist) before the isEvidenceManifest exemption, so under a rule " +
	"with content.mediaTypes every signature/attestation referrer manifest (layer application/vnd.dev.sigstore.bundle.v0.3+json) " +
	"is denied ('layer media type ... is not allowed by this rule' plus the whole llm-release requirement applied to the bundle " +
	"manifest itself): the referrers list is served but cosign verify-attestation through the proxy finds no attestations"

// pullgateCLI runs the CLI built in TestMain.
func (e *env) pullgateCLI(dir string, args ...string) (int, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pullgateBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+cosignPassword, "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, ".docker"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		code = xe.ExitCode()
	} else if err != nil {
		e.t.Fatalf("pullgate %s: %v", strings.Join(args, " "), err)
	}
	e.t.Logf("$ pullgate %s → exit %d\n%s", strings.Join(args, " "), code, out.String())
	return code, out.String()
}

// TestInterop: (1) a release made entirely with the pullgate CLI (attest
// create/sign/push, cosign's encrypted key) verifies with `cosign
// verify-attestation` for every predicate type and is pulled through the
// proxy; (2) attestations made by `cosign attest` satisfy pullgate rules
// through the proxy: the eval CEL condition, and the llm-release chain with
// cosign's eval statement as the link.
// verify/attest/cosign_test.go already covers library Sign/Push ⇄ cosign
// and cosign attest → verify.Collect → release.Chain; this test adds the
// CLI and the running proxy.
func TestInterop(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()

	t.Run("pullgate CLI release verifies with cosign verify-attestation and pulls through the proxy", func(t *testing.T) {
		e := *e
		e.t = t
		dir := t.TempDir()
		r0, err := attesttest.WriteRelease(dir, attesttest.ReleaseOptions{Base: base}) // files and configs, no subjects
		if err != nil {
			t.Fatal(err)
		}
		var titles []string
		for title := range r0.Model {
			titles = append(titles, title)
		}
		sort.Strings(titles)
		var files []mfile
		for _, title := range titles {
			files = append(files, mfile{title, r0.Model[title]})
		}
		a := e.pushModel("llm/interop-cli", "v1", files)
		var bundles []string
		for _, k := range attest.Kinds {
			stmt := string(k) + ".stmt.json"
			if code, out := e.pullgateCLI(dir, "attest", "create", "--type", string(k), "--config", string(k)+".yaml", "--subject", a.digest, "-o", stmt); code != 0 {
				t.Fatalf("attest create %s: exit %d\n%s", k, code, out)
			}
			// Deterministic and identical to the library.
			got, _ := os.ReadFile(filepath.Join(dir, stmt))
			want, err := attest.Create(k, filepath.Join(dir, string(k)+".yaml"), attest.CreateOptions{Subjects: []string{a.digest}})
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: CLI statement differs from attest.Create (%v)", k, err)
			}
			b := string(k) + ".bundle.json"
			if code, out := e.pullgateCLI(dir, "attest", "sign", "--key", e.release.cosignKey, "--in", stmt, "-o", b); code != 0 {
				t.Fatalf("attest sign %s: exit %d\n%s", k, code, out)
			}
			bundles = append(bundles, b)
		}
		if code, out := e.pullgateCLI(dir, append([]string{"attest", "push", e.up.Host + "/" + a.repo + ":v1", "--plain-http"}, bundles...)...); code != 0 {
			t.Fatalf("attest push: exit %d\n%s", code, out)
		}
		for _, k := range attest.Kinds {
			stmt, _ := os.ReadFile(filepath.Join(dir, string(k)+".stmt.json"))
			out := e.cosignRun(append([]string{"verify-attestation", "--key", "release.pem.pub", "--type", k.PredicateType(),
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true"}, a.upRef(&e))...)
			if !strings.Contains(out, base64.StdEncoding.EncodeToString(stmt)) {
				t.Errorf("cosign verify-attestation --type %s: output lacks our statement", k.PredicateType())
			}
		}
		// The same check with the attacker's public key must fail.
		if out, err := e.cosignExec("verify-attestation", "--key", "attacker.pem.pub", "--type", evalType,
			"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", a.upRef(&e)); err == nil {
			t.Fatalf("cosign verified pullgate's eval with the attacker's key:\n%s", out)
		}
		o := e.pullModel(a, a.repo+":v1")
		e.expect(o, true, "", 0)
		// cosign reads the same bundles through the proxy: signature and
		// attestation manifests are meant to be served under a verify rule so
		// that clients can check them again (proxy/evaluate.go).
		t.Run("cosign verify-attestation through the proxy under a content rule", func(t *testing.T) {
			e := e
			e.t = t
			ref := e.px.Host + "/" + upName + "/" + a.repo + "@" + a.digest
			st, _, body, err := harness.Get(ctx, e.px.URL+"/v2/"+upName+"/"+a.repo+"/referrers/"+a.digest, nil)
			if err != nil || st != http.StatusOK {
				t.Fatalf("referrers through the proxy: %d %v", st, err)
			}
			var idx ocispec.Index
			if err := json.Unmarshal(body, &idx); err != nil || len(idx.Manifests) != len(attest.Kinds) {
				t.Fatalf("referrers through the proxy: %v, %d manifests: %s", err, len(idx.Manifests), body)
			}
			for _, d := range idx.Manifests {
				if st, reasons, _ := e.manifestGET(a.repo + "@" + d.Digest.String()); st != http.StatusOK {
					t.Logf("bundle manifest %s through the proxy: %d %s", d.Digest, st, strings.Join(reasons, "; "))
					t.Fatalf("bundle manifest %s through the proxy: %d", d.Digest, st)
				}
			}
			out, err := e.cosignExec("verify-attestation", "--key", "release.pem.pub", "--type", attest.KindSLO.PredicateType(),
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref)
			if err != nil {
				t.Fatalf("cosign verify-attestation through the proxy: %v\n%s", err, out)
			}
		})
	})

	// cosignEval attests an eval predicate with cosign v3 and returns the
	// statement digest verify.Collect sees.
	cosignEval := func(e *env, a *artifact, k *key, predicate []byte) string {
		e.t.Helper()
		p := filepath.Join(e.kdir, fmt.Sprintf("eval-%d.json", time.Now().UnixNano()))
		if err := os.WriteFile(p, predicate, 0o644); err != nil {
			e.t.Fatal(err)
		}
		e.cosignRun(append([]string{"attest", "--key", k.cosignKey, "--type", evalType, "--predicate", p}, append(cosignOffline, a.upRef(e))...)...)
		trust, err := verify.NewTrust(verify.TrustSpec{Keys: []verify.KeySpec{{Name: k.name, PEM: k.pub}}})
		if err != nil {
			e.t.Fatal(err)
		}
		repo, _ := name.NewRepository(e.up.Host+"/"+a.repo, name.Insecure)
		res := verify.Collect(ctx, &attesttest.Fetcher{Repo: repo}, digest.Digest(a.digest), trust, verify.CollectOptions{})
		for _, at := range res.Attestations {
			if at.PredicateType == evalType {
				return at.Statement.String()
			}
		}
		e.t.Fatalf("no eval attestation from cosign found: %+v", res)
		return ""
	}
	evalPredicate := func(e *env, metrics map[string]float64) ([]byte, *rel, *artifact, string) {
		repo := "evalonly/cosign-" + strings.ReplaceAll(fmt.Sprint(metrics["toxicity"]), ".", "-")
		a := e.pushModel(repo, "v1", goodModel())
		r := e.newRelease(a, relOpts{metrics: metrics})
		ps, err := attest.ParseStatement(r.st[attest.KindEval])
		if err != nil {
			e.t.Fatal(err)
		}
		return ps.Predicate, r, a, repo
	}

	t.Run("cosign attest eval satisfies the CEL condition through the proxy", func(t *testing.T) {
		e := *e
		e.t = t
		pred, _, a, _ := evalPredicate(&e, map[string]float64{"accuracy": 0.95, "toxicity": 0.002})
		cosignEval(&e, a, e.release, pred)
		e.expect(e.pullModel(a, a.repo+":v1"), true, "", 0)
		// Under a rule without content checks, cosign verifies cosign's
		// bundle through the proxy too.
		e.cosignRun("verify-attestation", "--key", "release.pem.pub", "--type", evalType,
			"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true",
			e.px.Host+"/"+upName+"/"+a.repo+"@"+a.digest)
	})
	t.Run("cosign attest eval with failing thresholds is denied through the proxy", func(t *testing.T) {
		e := *e
		e.t = t
		pred, _, a, _ := evalPredicate(&e, map[string]float64{"accuracy": 0.95, "toxicity": 0.3})
		cosignEval(&e, a, e.release, pred)
		e.expect(e.pullModel(a, a.repo+":v1"), false, "manifest", 13,
			"rule "+ruleEval+": attestation "+evalType+" signed by release: condition "+evalCondition+" is false")
	})
	t.Run("cosign attest eval signed by an untrusted key is denied through the proxy", func(t *testing.T) {
		e := *e
		e.t = t
		pred, _, a, _ := evalPredicate(&e, map[string]float64{"accuracy": 0.95, "toxicity": 0.004})
		cosignEval(&e, a, e.attacker, pred)
		e.expect(e.pullModel(a, a.repo+":v1"), false, "manifest", 11,
			"rule "+ruleEval+": attestation "+evalType+" signed by release: none found")
	})
	t.Run("cosign attest eval is the eval link of an llm-release chain pulled through the proxy", func(t *testing.T) {
		e := *e
		e.t = t
		a := e.pushModel("llm/interop-cosign-chain", "v1", goodModel())
		r := e.newRelease(a, relOpts{})
		ps, _ := attest.ParseStatement(r.st[attest.KindEval])
		evd := cosignEval(&e, a, e.release, ps.Predicate)
		rt, rtd := r.create("route-c", attest.KindRoute, r.routeCfg(3, evd))
		slo, _ := r.create("slo-c", attest.KindSLO, r.sloCfg(4, rtd))
		e.publish(a, e.release, r.st[attest.KindPrompt], r.st[attest.KindCorpus], rt, slo, r.st[attest.KindMBOM])
		e.expect(e.pullModel(a, a.repo+":v1"), true, "", 0)
		// Control: without cosign's eval the same route is a missing link.
		b := e.pushModel("llm/interop-cosign-chain-control", "v1", goodModel())
		rb := e.newRelease(b, relOpts{})
		rtb, rtbd := rb.create("route-c", attest.KindRoute, rb.routeCfg(3, evd))
		slob, _ := rb.create("slo-c", attest.KindSLO, rb.sloCfg(4, rtbd))
		e.publish(b, e.release, rb.st[attest.KindPrompt], rb.st[attest.KindCorpus], rtb, slob, rb.st[attest.KindMBOM])
		e.expect(e.pullModel(b, b.repo+":v1"), false, "manifest", -1,
			ruleReason(ruleLLM, "chain", "chain llm-release: route "+rtbd+" references eval "+evd+" which is not present or not signed by a trusted signer"))
	})
}
