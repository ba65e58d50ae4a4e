// Package promotee2e drives `pullgate promote` between two real
// distribution registries (the source with the referrers API, the
// destination without, so the destination's referrers live in the
// sha256-<hex> tag fallback), with images signed by cosign v3 and models
// pushed by oras, and checks what the destination holds with the real
// cosign v2/v3 binaries, `pullgate vsa check` and the registry's own
// request counts.
package promotee2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/vsa"
)

var pullgateBin string

func TestMain(m *testing.M) { tools.RunWithPullgate(m, &pullgateBin) }

const (
	password   = "promote-e2e-password"
	verifierID = "https://pullgate.example/promote"

	mtModelManifest = "application/vnd.cncf.model.manifest.v1+json"
	mtModelConfig   = "application/vnd.cncf.model.config.v1+json"
	mtWeightRaw     = "application/vnd.cncf.model.weight.v1.raw"
)

// policyFor: models under a content rule that denies pickle; everything
// else must be signed by the release key.
func policyFor(src string) string {
	return fmt.Sprintf(`trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: models
    match: ["%[1]s/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack, oras]
      formats:
        safetensors: { maxHeaderBytes: 1MiB }
        pickle: deny
  - name: apps
    match: ["%[1]s/**"]
    require:
      signatures: [release]
`, src)
}

type env struct {
	t        *testing.T
	src, dst *harness.Upstream
	dir      string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(),
		src: harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true, Name: "src"}),
		dst: harness.StartUpstream(t, harness.UpstreamOptions{Name: "dst"}),
	}
	e.cosign("cosign3", "generate-key-pair", "--output-key-prefix", "release")
	e.cosign("cosign3", "generate-key-pair", "--output-key-prefix", "promote")
	os.WriteFile(filepath.Join(e.dir, "policy.yaml"), []byte(policyFor(e.src.Host)), 0o644)
	os.WriteFile(filepath.Join(e.dir, "trusted_root.json"), []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
	return e
}

func (e *env) run(bin string, args ...string) (string, int) {
	e.t.Helper()
	stdout, stderr, code := e.exec(bin, args...)
	return stdout + stderr, code
}

// exec runs a program in the test's directory, with its HOME, Docker
// config and the key password, and logs what it printed.
func (e *env) exec(bin string, args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), "HOME="+e.dir, "DOCKER_CONFIG="+filepath.Join(e.dir, ".docker"), "COSIGN_PASSWORD="+password,
		"TUF_ROOT="+filepath.Join(e.dir, "tuf"), "SIGSTORE_NO_CACHE=true")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s: %v", bin, err)
	}
	e.t.Logf("$ %s %s (exit %d)\n%s%s", filepath.Base(bin), strings.Join(args, " "), code, out.String(), errb.String())
	return out.String(), errb.String(), code
}

func (e *env) cosign(v string, args ...string) string {
	e.t.Helper()
	out, code := e.run(tools.Need(e.t, v), args...)
	if code != 0 {
		e.t.Fatalf("%s %s: exit %d\n%s", v, strings.Join(args, " "), code, out)
	}
	return out
}

var insecureFlags = []string{"--allow-http-registry=true", "--allow-insecure-registry=true"}

// releaseSign signs repo@dgst at the source with the release key (cosign
// v3, a bundle referrer), as the publisher would.
func (e *env) releaseSign(repo, dgst string) {
	e.t.Helper()
	e.cosign("cosign3", append([]string{"sign", "--key", "release.key", "--tlog-upload=false", "--use-signing-config=false", "-y",
		e.src.Ref(repo + "@" + dgst)}, insecureFlags...)...)
}

// promote runs pullgate promote with -o json and returns its result.
func (e *env) promote(src, dst string, extra ...string) (promoteJSON, int) {
	e.t.Helper()
	return e.promoteWith(src, dst, []string{"--key", "promote.key"}, extra...)
}

// promoteWith is promote signing as sign says (--key K, or keyless flags).
func (e *env) promoteWith(src, dst string, sign []string, extra ...string) (promoteJSON, int) {
	e.t.Helper()
	args := append(append([]string{"promote", e.src.Ref(src), e.dst.Ref(dst), "--policy", "policy.yaml"}, sign...),
		append([]string{"--verifier-id", verifierID, "--plain-http", "-o", "json"}, extra...)...)
	stdout, _, code := e.exec(pullgateBin, args...)
	var r promoteJSON
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		e.t.Fatalf("promote -o json: %v\n%s", err, stdout)
	}
	return r, code
}

type promoteJSON struct {
	Source, Destination string
	Digest              string
	Decision            struct {
		Allowed  bool
		Reasons  []string
		ExitCode int
	}
	ManifestsCopied []string
	BlobsCopied     []string
	Signature, VSA  string
	Signer          *struct{ KeyHint, Identity, Issuer string }
	EvidenceCopied  []string
	AlreadyPromoted bool
	ExitCode        int
	Error           string
}

// writes is every request that could write to the destination registry.
func (e *env) writes() int {
	return e.dst.Count("PUT", "") + e.dst.Count("POST", "") + e.dst.Count("PATCH", "") + e.dst.Count("DELETE", "")
}

// assertDstEmpty: the destination repository has no tag, no manifest of
// the digest and no referrers fallback tag for it.
func (e *env) assertDstEmpty(repo, dgst string) {
	e.t.Helper()
	r, _ := name.NewRepository(e.dst.Ref(repo), name.Insecure)
	if tags, err := remote.List(r); err == nil && len(tags) > 0 {
		e.t.Errorf("destination %s has tags %v", repo, tags)
	}
	if _, err := remote.Head(r.Digest(dgst)); err == nil {
		e.t.Errorf("destination %s has manifest %s", repo, dgst)
	}
	if _, err := remote.Head(r.Tag("sha256-" + strings.TrimPrefix(dgst, "sha256:"))); err == nil {
		e.t.Errorf("destination %s has referrers of %s", repo, dgst)
	}
}

func (e *env) oras(dir string, args ...string) {
	e.t.Helper()
	cmd := exec.Command(tools.Need(e.t, "oras"), args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("oras %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// pushModel pushes one weight file in the ModelPack layout with oras.
func (e *env) pushModel(repoTag, file string, data []byte) {
	e.t.Helper()
	dir := e.t.TempDir()
	os.WriteFile(filepath.Join(dir, file), data, 0o644)
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"descriptor":{"name":"test"},"modelfs":{"type":"layers","diffIds":[]},"config":{}}`), 0o644)
	e.oras(dir, "push", "--plain-http", "--disable-path-validation", e.src.Ref(repoTag), file+":"+mtWeightRaw,
		"--artifact-type", mtModelManifest, "--config", "config.json:"+mtModelConfig)
}

// TestPromoteSignedImage: a signed image is copied with the same digest,
// signed by the promote key and given a VSA that cosign v2/v3 and
// pullgate vsa check verify; with --copy-evidence the release signature
// comes along; a second run writes nothing.
func TestPromoteSignedImage(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/web", "1.0", harness.ImageOptions{Layers: 2})
	e.releaseSign("apps/web", img.Digest)

	// Without --copy-evidence: the image's config and 2 layers.
	r, code := e.promote("apps/web:1.0", "prod/web:1.0")
	if code != 0 || !r.Decision.Allowed || r.Digest != img.Digest || r.AlreadyPromoted || r.Signature == "" || r.VSA == "" ||
		len(r.BlobsCopied) != 3 || len(r.EvidenceCopied) != 0 {
		t.Fatalf("promote: exit %d %+v", code, r)
	}
	// With it, the release signature the decision counted comes along
	// (the earlier promotion lacks it: it is not "already promoted").
	r, code = e.promote("apps/web:1.0", "prod/web:1.0", "--copy-evidence")
	if code != 0 || r.AlreadyPromoted || r.Signature == "" || r.VSA == "" {
		t.Fatalf("promote --copy-evidence: exit %d %+v", code, r)
	}
	// The image's config and 2 layers, the signature's config and bundle.
	if len(r.BlobsCopied) != 5 || len(r.ManifestsCopied) != 1 || len(r.EvidenceCopied) != 1 {
		t.Fatalf("copied %d blobs, %d manifests, %d evidence; want 5, 1, 1", len(r.BlobsCopied), len(r.ManifestsCopied), len(r.EvidenceCopied))
	}
	for _, b := range append([]harness.Blob{img.Config}, img.Layers...) {
		if !slices.Contains(r.BlobsCopied, b.Digest) {
			t.Fatalf("blob %s not copied", b.Digest)
		}
	}
	// Same digest under the tag, exact bytes.
	dref, _ := name.ParseReference(e.dst.Ref("prod/web:1.0"), name.Insecure)
	got, err := remote.Get(dref)
	if err != nil || got.Digest.String() != img.Digest || !bytes.Equal(got.Manifest, img.Manifest) {
		t.Fatalf("destination tag: %v, digest %v, want %s", err, got, img.Digest)
	}
	at := e.dst.Ref("prod/web@" + img.Digest)
	for _, v := range []string{"cosign3", "cosign2"} {
		extra := []string{}
		if v == "cosign2" {
			extra = []string{"--new-bundle-format", "--trusted-root", "trusted_root.json"}
		}
		e.cosign(v, append(append([]string{"verify", "--key", "promote.pub", "--insecure-ignore-tlog=true"}, append(extra, insecureFlags...)...), at)...)
		out := e.cosign(v, append(append([]string{"verify-attestation", "--key", "promote.pub", "--type", vsa.PredicateType, "--insecure-ignore-tlog=true"}, append(extra, insecureFlags...)...), at)...)
		if !strings.Contains(out, strings.TrimPrefix(img.Digest, "sha256:")) {
			t.Fatalf("%s verify-attestation output lacks the digest:\n%s", v, out)
		}
	}
	// The release signature was copied: cosign finds it at the destination.
	e.cosign("cosign3", append([]string{"verify", "--key", "release.pub", "--insecure-ignore-tlog=true"}, append(insecureFlags, at)...)...)

	out, _, code := e.exec(pullgateBin, "vsa", "check", e.dst.Ref("prod/web:1.0"), "--key", "promote.pub", "--verifier-id", verifierID, "--max-age", "1h", "--plain-http", "-o", "json")
	var vr struct {
		Passed  bool
		Summary struct {
			ResourceURI       string `json:"resourceUri"`
			InputAttestations []struct{ Digest map[string]string }
			VerifiedLevels    []string
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &vr) != nil || !vr.Passed {
		t.Fatalf("vsa check: exit %d\n%s", code, out)
	}
	if vr.Summary.ResourceURI != "oci://"+at || len(vr.Summary.InputAttestations) != 1 || !strings.Contains(strings.Join(vr.Summary.VerifiedLevels, " "), vsa.LevelSignatures) {
		t.Fatalf("VSA: %+v", vr.Summary)
	}

	// Twice: nothing written.
	before := e.writes()
	r2, code := e.promote("apps/web:1.0", "prod/web:1.0", "--copy-evidence")
	if code != 0 || !r2.AlreadyPromoted || len(r2.BlobsCopied) != 0 || r2.Signature != "" {
		t.Fatalf("second promote: exit %d %+v", code, r2)
	}
	if after := e.writes(); after != before {
		t.Fatalf("second promote wrote to the destination: %d write requests, before %d", after, before)
	}
}

// TestPromoteUnsignedWritesNothing: an unsigned image is refused with
// pullgate verify's exit code (10) and the destination registry sees no
// write at all.
func TestPromoteUnsignedWritesNothing(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/unsigned", "1.0", harness.ImageOptions{})
	if _, code := e.run(pullgateBin, "verify", e.src.Ref("apps/unsigned:1.0"), "--policy", "policy.yaml", "--plain-http"); code != 10 {
		t.Fatalf("pullgate verify: exit %d, want 10", code)
	}
	r, code := e.promote("apps/unsigned:1.0", "prod/unsigned:1.0")
	if code != 10 || r.Decision.Allowed || r.Decision.ExitCode != 10 || len(r.BlobsCopied) != 0 {
		t.Fatalf("promote unsigned: exit %d %+v", code, r)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("refused promote made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/unsigned", img.Digest)
}

// TestPromotePickleRefused: a model whose manifest the policy allows (the
// decision alone passes: pullgate verify exits 0) but whose weight layer
// is a pickle is refused while its bytes stream through the content
// inspection, before anything is written to the destination.
func TestPromotePickleRefused(t *testing.T) {
	e := newEnv(t)
	e.pushModel("models/evil:1", "model.bin", modelcorpus.OsSystemPickle())
	if _, code := e.run(pullgateBin, "verify", e.src.Ref("models/evil:1"), "--policy", "policy.yaml", "--plain-http"); code != 0 {
		t.Fatalf("pullgate verify of the pickle model: exit %d; this test wants a decision that only the content inspection refuses", code)
	}
	r, code := e.promote("models/evil:1", "prod/evil:1")
	if code != 13 || r.Decision.Allowed || !strings.Contains(strings.Join(r.Decision.Reasons, " "), "pickle") {
		t.Fatalf("promote pickle model: exit %d %+v", code, r)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("refused promote made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/evil", r.Digest)

	// A safetensors model under the same rule is promoted.
	st := modelcorpus.Safetensors(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	e.pushModel("models/good:1", "model.safetensors", st)
	r, code = e.promote("models/good:1", "prod/good:1")
	if code != 0 || len(r.BlobsCopied) != 2 || r.VSA == "" {
		t.Fatalf("promote safetensors model: exit %d %+v", code, r)
	}
	// The VSA names the formats the inspection recognised.
	out, _, code := e.exec(pullgateBin, "vsa", "check", e.dst.Ref("prod/good:1"), "--key", "promote.pub", "--plain-http", "-o", "json")
	var vr struct {
		Passed  bool
		Summary struct{ VerifiedLevels []string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &vr) != nil || !vr.Passed {
		t.Fatalf("vsa check: exit %d\n%s", code, out)
	}
	t.Logf("verifiedLevels %v", vr.Summary.VerifiedLevels)
	if l := vr.Summary.VerifiedLevels; !slices.Contains(l, vsa.LevelContent) || !slices.Contains(l, vsa.ContentLevel("safetensors")) || slices.Contains(l, vsa.ContentLevel("pickle")) {
		t.Fatalf("verifiedLevels %v: want %s and %s", l, vsa.LevelContent, vsa.ContentLevel("safetensors"))
	}
}

// TestPromoteIndex: a signed multi-platform index is copied with its
// children and their blobs, each under its own digest, the index under the
// tag; the signature and VSA are about the index digest.
func TestPromoteIndex(t *testing.T) {
	e := newEnv(t)
	idx := e.src.PushIndex(t, "apps/multi", "2.0", false)
	e.releaseSign("apps/multi", idx.Digest)
	r, code := e.promote("apps/multi:2.0", "prod/multi:2.0")
	if code != 0 || r.Digest != idx.Digest || len(r.ManifestsCopied) != 3 || len(r.BlobsCopied) != 4 {
		t.Fatalf("promote index: exit %d %+v", code, r)
	}
	if r.ManifestsCopied[2] != idx.Digest {
		t.Fatalf("the index was not written last: %v", r.ManifestsCopied)
	}
	dref, _ := name.ParseReference(e.dst.Ref("prod/multi:2.0"), name.Insecure)
	got, err := remote.Get(dref)
	if err != nil || got.Digest.String() != idx.Digest || !bytes.Equal(got.Manifest, idx.Manifest) {
		t.Fatalf("destination index: %v", err)
	}
	for _, c := range idx.Children {
		cref, _ := name.ParseReference(e.dst.Ref("prod/multi@"+c.Digest), name.Insecure)
		img, err := remote.Image(cref)
		if err != nil {
			t.Fatalf("child %s: %v", c.Digest, err)
		}
		layers, _ := img.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatalf("child %s layer: %v", c.Digest, err)
			}
			rc.Close()
		}
	}
	if out, code := e.run(pullgateBin, "vsa", "check", e.dst.Ref("prod/multi:2.0"), "--key", "promote.pub", "--plain-http"); code != 0 {
		t.Fatalf("vsa check of the index: exit %d\n%s", code, out)
	}
}

// TestPromoteTamperedBlob: a source registry that serves other bytes for
// a layer of a signed image (the manifest and signature are genuine) is
// refused with exit 12 (as a digest mismatch in pullgate verify) and the
// destination sees no write.
func TestPromoteTamperedBlob(t *testing.T) {
	e := newEnv(t)
	img := e.src.PushImage(t, "apps/web", "1.0", harness.ImageOptions{Layers: 2})
	e.releaseSign("apps/web", img.Digest)
	e.src.Liar.LieBlob(img.Layers[1].Digest)
	r, code := e.promote("apps/web:1.0", "prod/web:1.0")
	if code != 12 || r.Decision.Allowed || !strings.Contains(strings.Join(r.Decision.Reasons, " "), img.Layers[1].Digest) {
		t.Fatalf("promote with a tampered layer: exit %d %+v", code, r)
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("refused promote made %d write requests to the destination", w)
	}
	e.assertDstEmpty("prod/web", img.Digest)
}
