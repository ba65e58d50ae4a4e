package verify_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/cosign"
)

// cosignTool runs a real cosign binary in an isolated HOME, offline.
type cosignTool struct {
	t     *testing.T
	bin   string
	dir   string
	v3    bool
	extra []string // e.g. --new-bundle-format
	env   []string
}

func newCosign(t *testing.T, name string) *cosignTool {
	bin := tools.Need(t, name)
	return &cosignTool{t: t, bin: bin, dir: t.TempDir(), v3: name == "cosign3"}
}

func (c *cosignTool) run(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "HOME="+c.dir, "COSIGN_PASSWORD=test-password", "TUF_ROOT="+filepath.Join(c.dir, "tuf"),
		"COSIGN_EXPERIMENTAL=0", "SIGSTORE_NO_CACHE=1", "HTTPS_PROXY=http://127.0.0.1:1", "https_proxy=http://127.0.0.1:1", "NO_PROXY=127.0.0.1,localhost")
	cmd.Env = append(cmd.Env, c.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(c.bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keyPair generates cosign.key/cosign.pub under prefix and returns the
// public key PEM.
func (c *cosignTool) keyPair(prefix string) []byte {
	c.t.Helper()
	c.run("generate-key-pair", "--output-key-prefix", prefix)
	pub, err := os.ReadFile(filepath.Join(c.dir, prefix+".pub"))
	if err != nil {
		c.t.Fatal(err)
	}
	return pub
}

func (c *cosignTool) offline() []string {
	f := []string{"--tlog-upload=false", "--allow-insecure-registry", "-y"}
	if c.v3 {
		f = append(f, "--use-signing-config=false")
	}
	return append(f, c.extra...)
}

func (c *cosignTool) sign(prefix, ref string) {
	c.t.Helper()
	c.run(append([]string{"sign", "--key", prefix + ".key"}, append(c.offline(), ref)...)...)
}

func (c *cosignTool) attest(prefix, ref, predicate string) {
	c.t.Helper()
	p := filepath.Join(c.dir, "predicate.json")
	if err := os.WriteFile(p, []byte(predicate), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.run(append([]string{"attest", "--key", prefix + ".key", "--type", "slsaprovenance", "--predicate", p}, append(c.offline(), ref)...)...)
}

const builderPredicate = `{"builder":{"id":"https://ci.example/builder"},"buildType":"https://ci.example/type","invocation":{},"materials":[]}`

func TestCosignBinaries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tool      string
		extra     []string
		referrers bool
		source    string
	}{
		{"cosign2/legacy", "cosign2", nil, false, ""},
		{"cosign2/new-bundle-format", "cosign2", []string{"--new-bundle-format"}, true, verify.SourceBundleReferrer},
		{"cosign3/referrers-api", "cosign3", nil, true, verify.SourceBundleReferrer},
		{"cosign3/referrers-tag", "cosign3", nil, false, verify.SourceBundleReferrer},
		{"cosign3/legacy", "cosign3", []string{"--new-bundle-format=false"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCosign(t, tc.tool)
			c.extra = tc.extra
			reg := startUpstream(t, tc.referrers)
			pub := c.keyPair("release")
			attackerPub := c.keyPair("attacker")
			repo := "cosign/app"
			img := pushImage(t, reg, repo, "v1")
			other := pushImage(t, reg, repo, "v2")
			ref := reg.Host + "/" + repo + "@" + img.Digest.String()
			c.sign("release", ref)
			c.attest("release", ref, builderPredicate)
			c.sign("attacker", reg.Host+"/"+repo+"@"+other.Digest.String())

			wantSource := func(legacy string) string {
				if tc.source != "" {
					return tc.source
				}
				return legacy
			}
			f := newFetcher(t, reg, repo)
			reg.ResetCounts()
			trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{{Name: "release", PEM: pub}}})
			res := verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{})
			if len(res.Signatures) != 1 || len(res.Attestations) != 1 || len(res.Failures) != 0 {
				t.Fatalf("release trust: %s", summarize(res))
			}
			if tc.source == verify.SourceBundleReferrer {
				tag := "/manifests/" + img.Digest.Algorithm().String() + "-" + img.Digest.Encoded()
				plainTag := reg.Count("GET", tag) - reg.Count("GET", tag+".sig") - reg.Count("GET", tag+".att")
				if reg.Count("GET", "/referrers/") != 1 || (plainTag > 0) == tc.referrers {
					t.Fatalf("referrers API calls %d, referrers tag fetches %d (API available: %v)", reg.Count("GET", "/referrers/"), plainTag, tc.referrers)
				}
			}
			s, a := res.Signatures[0], res.Attestations[0]
			if s.Signer != "release" || s.Source != wantSource(verify.SourceCosignSignature) || s.Subject != img.Digest {
				t.Fatalf("signature %+v", s)
			}
			if a.Signer != "release" || a.PredicateType != "https://slsa.dev/provenance/v0.2" || a.Source != wantSource(verify.SourceCosignAttestation) {
				t.Fatalf("attestation %+v", a)
			}
			pv, err := a.PredicateValue()
			if err != nil {
				t.Fatal(err)
			}
			if id := pv.(map[string]any)["builder"].(map[string]any)["id"]; id != "https://ci.example/builder" {
				t.Fatalf("predicate builder.id = %v", id)
			}

			// The attacker key is not trusted: everything found is invalid.
			res = verify.Collect(context.Background(), f, img.Digest, mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{{Name: "attacker", PEM: attackerPub}}}), verify.CollectOptions{})
			if len(res.Signatures)+len(res.Attestations) != 0 || len(res.Failures) != 2 {
				t.Fatalf("attacker trust: %s", summarize(res))
			}
			for _, fl := range res.Failures {
				if fl.Kind != verify.FailInvalid || !strings.Contains(fl.Reason, "not signed by any configured key/identity") {
					t.Fatalf("attacker trust failure %+v", fl)
				}
			}
			// The other image is signed only by the attacker.
			res = verify.Collect(context.Background(), f, other.Digest, trust, verify.CollectOptions{})
			if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailInvalid {
				t.Fatalf("other image: %s", summarize(res))
			}
			// Rekor required, none uploaded (offline signing): requirement unmet.
			res = verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{VerifyOptions: verify.VerifyOptions{RequireTlog: true}})
			if len(res.Signatures)+len(res.Attestations) != 0 || len(res.Failures) != 2 || res.Failures[0].Kind != verify.FailUnmet {
				t.Fatalf("tlog required: %s", summarize(res))
			}

			if tc.source == "" {
				// Replay: copy the release signature of img onto other's tag.
				body := getRaw(t, reg.URL+"/v2/"+repo+"/manifests/"+cosign.TagFor(img.Digest, "sig"))
				putManifest(t, reg, repo, cosign.TagFor(other.Digest, "sig"), "application/vnd.oci.image.manifest.v1+json", body)
				res = verify.Collect(context.Background(), f, other.Digest, trust, verify.CollectOptions{})
				if len(res.Signatures) != 0 || len(res.Failures) != 1 || res.Failures[0].Kind != verify.FailMismatch {
					t.Fatalf("replayed cosign signature: %s", summarize(res))
				}
			}
		})
	}
}

func getRaw(t *testing.T, url string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return b
}

// TestCosignExperimentalReferrers: cosign's experimental OCI 1.1 mode
// attaches legacy simple-signing manifests as referrers.
func TestCosignExperimentalReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers-api", false: "referrers-tag"}[api], func(t *testing.T) {
			c := newCosign(t, "cosign2")
			c.env = []string{"COSIGN_EXPERIMENTAL=1"}
			c.extra = []string{"--registry-referrers-mode=oci-1-1"}
			reg := startUpstream(t, api)
			pub := c.keyPair("release")
			repo := "cosign/exp"
			img := pushImage(t, reg, repo, "v1")
			other := pushImage(t, reg, repo, "v2")
			c.sign("release", reg.Host+"/"+repo+"@"+img.Digest.String())
			trust := mustTrust(t, verify.TrustSpec{Keys: []verify.KeySpec{{Name: "release", PEM: pub}}})
			f := newFetcher(t, reg, repo)
			res := verify.Collect(context.Background(), f, img.Digest, trust, verify.CollectOptions{})
			if len(res.Signatures) != 1 || len(res.Failures) != 0 || res.Signatures[0].Source != verify.SourceCosignSignatureReferrer {
				t.Fatalf("%s %+v", summarize(res), res.Signatures)
			}
			res = verify.Collect(context.Background(), f, other.Digest, trust, verify.CollectOptions{})
			if res.Found != 0 || len(res.Signatures) != 0 {
				t.Fatalf("unsigned image: %s", summarize(res))
			}
		})
	}
}
