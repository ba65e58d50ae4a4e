package modele2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/attest"
)

// mtWeightConfig is ModelPack's weight config layer type (config.json,
// adapter_config.json).
const mtWeightConfig = "application/vnd.cncf.model.weight.config.v1.raw"

// referencesPolicy verifies each adapter's MBOM (signed by release) and
// requires the base model its adapter_config.json names to be the MBOM's.
const referencesPolicy = `trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: adapters
    match: ["upstream.local/models/**"]
    require:
      attestations:
        - predicateType: https://pullgate.dev/attestation/mbom/v1
          signedBy: [release]
      mbom: required
    content:
      mediaTypes: [modelpack, oras]
      denyCodeLayers: true
      references: {require: mbom}
`

// A LoRA adapter (peft's adapter_config.json and adapter weights, pushed
// with oras under ModelPack media types) whose base_model_name_or_path is
// the base model its signed MBOM names is served; one whose config sends
// the loader to another repository, and one whose MBOM names the base
// model by no Hub id, are refused at the config blob with the file, key
// and reference in the client's error, and nothing of them is stored.
func TestAdapterBaseModelMatchesTheMBOM(t *testing.T) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	dir := t.TempDir()
	key := writeKey(t, dir, "release")
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: referencesPolicy, Dir: dir})
	e := &env{up: up, px: px}

	const base = "meta-llama/Meta-Llama-3-8B"
	weights := goodSafetensors()
	// release pushes the adapter and attaches its MBOM, created and
	// signed by pullgate's own attestation code.
	release := func(repo string, cfg []byte, names string) {
		t.Helper()
		files := []file{{"adapter_config.json", mtWeightConfig, cfg}, {"adapter_model.safetensors", mtWeightRaw, weights}}
		e.push(t, repo+":1", true, files...)
		e.attest(t, key, repo+":1", mbomStatement(t, files, names))
	}

	good := modelcorpus.PEFTAdapterConfig(base)
	release("models/adapter", good, "baseModelNames: ["+base+"]\n")
	e.pullIntact(t, "models/adapter:1", file{"adapter_config.json", mtWeightConfig, good}, file{"adapter_model.safetensors", mtWeightRaw, weights})

	elsewhere := modelcorpus.PEFTAdapterConfig("llama-team/Meta-Llama-3-8B")
	release("models/adapter-elsewhere", elsewhere, "baseModelNames: ["+base+"]\n")
	e.assertRefused(t, "models/adapter-elsewhere:1", elsewhere, "llama-team/Meta-Llama-3-8B")

	// The good config under an MBOM that names another base model is
	// refused there; the refusal depends on that MBOM, so the release
	// whose MBOM it matches is still served (under the same rule).
	release("models/adapter-other-mbom", good, "baseModelNames: [mistralai/Mistral-7B-v0.1]\n")
	if r, _ := harness.OrasPull(t, px.Host+"/upstream.local/models/adapter-other-mbom:1"); r.Err == nil ||
		!strings.Contains(r.Output(), `the verified MBOM's base model is "mistralai/Mistral-7B-v0.1"`) {
		t.Fatalf("the config under an MBOM naming another base model: %v\n%s", r.Err, r.Output())
	}
	e.pullIntact(t, "models/adapter:1", file{"adapter_config.json", mtWeightConfig, good}, file{"adapter_model.safetensors", mtWeightRaw, weights})

	unnamed := modelcorpus.PEFTAdapterConfig("meta-llama/Meta-Llama-3-8B-Instruct")
	release("models/adapter-unnamed", unnamed, "")
	e.assertRefused(t, "models/adapter-unnamed:1", unnamed, "names its base model by no Hugging Face id")
}

const referencesAllowlistPolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack, oras]
      references: {require: allowlist, allow: ["meta-llama/*", "/opt/models/llama-3-8b"]}
`

// Under content.references.require: allowlist (no signatures needed), a
// config naming an allowed Hub id or the exact local path listed is
// served; one whose _name_or_path climbs to another local path, and a
// tokenizer config importing its tokenizer class from a URL, are refused.
func TestConfigReferencesAllowlist(t *testing.T) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	e := &env{up: up, px: gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: referencesAllowlistPolicy})}

	hub := file{"config.json", "", modelcorpus.TransformersConfig("meta-llama/Meta-Llama-3-8B", nil)}
	e.push(t, "models/hub:1", false, hub)
	e.pullIntact(t, "models/hub:1", hub)

	local := file{"config.json", "", modelcorpus.TransformersConfig("/opt/models/llama-3-8b", nil)}
	e.push(t, "models/local:1", false, local)
	e.pullIntact(t, "models/local:1", local)

	climb := modelcorpus.TransformersConfig("../../../home/user/base", nil)
	e.push(t, "models/climb:1", false, file{"config.json", "", climb})
	e.assertRefused(t, "models/climb:1", climb, "local path, outside the signed artifact")

	url := modelcorpus.TokenizerConfigAutoMap(nil, "https://evil.example/x--tokenization_x.XTokenizerFast")
	e.push(t, "models/url:1", false, file{"tokenizer_config.json", "", url})
	e.assertRefused(t, "models/url:1", url, "URL, outside the signed artifact")
}

// writeKey generates a P-256 key and writes its public half to
// dir/<name>.pub (a trust key of the policy).
func writeKey(t *testing.T, dir, name string) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	if err := os.WriteFile(filepath.Join(dir, name+".pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return key
}

// attest signs the statement statement(subject) makes about repoTag's
// manifest digest with key (pullgate's own signing code) and attaches it
// upstream as a referrer.
func (e *env) attest(t *testing.T, key *ecdsa.PrivateKey, repoTag string, statement func(subject string) []byte) {
	t.Helper()
	ref, _ := name.ParseReference(e.up.Host+"/"+repoTag, name.Insecure)
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := attest.Sign(context.Background(), statement(desc.Digest.String()), attest.SignOptions{Signer: key})
	if err != nil {
		t.Fatal(err)
	}
	repo, _, _ := strings.Cut(repoTag, ":")
	if _, err := attest.Push(context.Background(), e.up.Host+"/"+repo+"@"+desc.Digest.String(), [][]byte{bundle}, attest.PushOptions{Insecure: true}); err != nil {
		t.Fatal(err)
	}
}

// mbomStatement is the MBOM of an adapter's files (names: its
// baseModelNames line, or ""), created by pullgate's attestation code.
func mbomStatement(t *testing.T, files []file, names string) func(string) []byte {
	return func(subject string) []byte {
		t.Helper()
		src := t.TempDir()
		var paths []string
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(src, f.name), f.data, 0o644); err != nil {
				t.Fatal(err)
			}
			paths = append(paths, f.name)
		}
		mbom := "name: adapter\nbaseModel: registry.example/base/llama-3-8b@sha256:" + strings.Repeat("ab", 32) + "\n" + names +
			"files: [" + strings.Join(paths, ", ") + "]\n"
		stmt, err := attest.CreateFromConfig(attest.KindMBOM, []byte(mbom), src,
			attest.CreateOptions{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Subjects: []string{subject}})
		if err != nil {
			t.Fatal(err)
		}
		return stmt
	}
}

// referencesOptionalMBOMPolicy admits every adapter CI attested (a build
// statement signed by ci); one with an MBOM (signed by release) is
// checked against it; content.references requires the base model to be
// the MBOM's.
const referencesOptionalMBOMPolicy = `trust:
  keys:
    - name: ci
      path: ./ci.pub
    - name: release
      path: ./release.pub
rules:
  - name: adapters
    match: ["upstream.local/models/**"]
    require:
      attestations:
        - predicateType: https://ci.example/build/v1
          signedBy: [ci]
      mbom: optional
    content:
      mediaTypes: [modelpack, oras]
      denyCodeLayers: true
      references: {require: mbom}
`

// ciStatement is CI's build statement about a manifest digest.
func ciStatement(subject string) []byte {
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"adapter","digest":{"sha256":"` +
		strings.TrimPrefix(subject, "sha256:") + `"}}],"predicateType":"https://ci.example/build/v1","predicate":{"builder":"ci.example"}}`)
}

// optionalMBOMEnv starts a gate under referencesOptionalMBOMPolicy;
// push pushes an adapter (adapter_config.json cfg and weights) attested by
// CI and, when mbomNames is set, released with an MBOM naming it;
// refused pulls a reference and wants the refusal to name reason.
func optionalMBOMEnv(t *testing.T, wrap func(http.Handler) http.Handler) (e *env, push func(repo string, files []file, mbomNames string), refused func(repoTag, reason string)) {
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true, Wrap: wrap})
	dir := t.TempDir()
	ci, rel := writeKey(t, dir, "ci"), writeKey(t, dir, "release")
	e = &env{up: up, px: gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: referencesOptionalMBOMPolicy, Dir: dir})}
	push = func(repo string, files []file, mbomNames string) {
		t.Helper()
		e.push(t, repo+":1", true, files...)
		e.attest(t, ci, repo+":1", ciStatement)
		if mbomNames != "" {
			e.attest(t, rel, repo+":1", mbomStatement(t, files, "baseModelNames: ["+mbomNames+"]\n"))
		}
	}
	refused = func(repoTag, reason string) {
		t.Helper()
		r, _ := harness.OrasPull(t, e.px.Host+"/upstream.local/"+repoTag)
		if r.Err == nil || !strings.Contains(r.Output(), reason) {
			t.Fatalf("oras pull of %s: %v; want a refusal naming %q\n%s", repoTag, r.Err, reason, r.Output())
		}
	}
	return e, push, refused
}

const noMBOMRefusal = "no verified MBOM statement lists this file"

// adapterFiles are a LoRA adapter's files: its adapter_config.json cfg and
// its weights.
func adapterFiles(cfg []byte) []file {
	return []file{{"adapter_config.json", mtWeightConfig, cfg}, {"adapter_model.safetensors", mtWeightRaw, goodSafetensors()}}
}

// A content.references refusal that depends on the MBOM is scoped to its
// absence: an adapter pushed without an MBOM is refused (and stays
// refused), and the release with the same adapter_config.json bytes whose
// MBOM names the base model is still served, not denied rule-wide.
func TestReferenceRefusalWithoutMBOMDoesNotDenyTheRelease(t *testing.T) {
	e, push, refused := optionalMBOMEnv(t, nil)
	const base = "meta-llama/Meta-Llama-3-8B"
	files := adapterFiles(modelcorpus.PEFTAdapterConfig(base))
	push("models/dev", files, "")
	refused("models/dev:1", noMBOMRefusal)
	push("models/release", files, base)
	e.pullIntact(t, "models/release:1", files...)
	refused("models/dev:1", noMBOMRefusal)
}

// The other way round: a config that passed against a release's MBOM is
// judged again when an artifact without an MBOM (in another repository
// of the rule) serves the same bytes, and refused there.
func TestReferencePassWithMBOMDoesNotServeWithoutOne(t *testing.T) {
	e, push, refused := optionalMBOMEnv(t, nil)
	const base = "meta-llama/Meta-Llama-3-70B"
	files := adapterFiles(modelcorpus.PEFTAdapterConfig(base))
	push("models/release", files, base)
	e.pullIntact(t, "models/release:1", files...)
	push("models/dev", files, "")
	refused("models/dev:1", noMBOMRefusal)
}

// A fetch in flight when a refusal without an MBOM is recorded for its
// blob (by another declaration's fetch) is refused by it, and does not
// record it again rule-wide: the release whose MBOM names the base model
// is still served. The fetch under way reads the config bytes as a chat
// template (repository dev-tmpl), which judges no reference, so the
// recorded refusal is what refuses it.
func TestRecordedReferenceRefusalKeepsItsScope(t *testing.T) {
	const base = "meta-llama/Meta-Llama-3-8B"
	cfg := modelcorpus.PEFTAdapterConfig(base)
	held := "/models/dev-tmpl/blobs/" + sha(cfg)
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, held) {
				once.Do(func() { close(arrived) })
				<-release
			}
			next.ServeHTTP(w, r)
		})
	}
	e, push, refused := optionalMBOMEnv(t, wrap)
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	push("models/dev-tmpl", []file{{"chat_template.jinja", "application/vnd.cncf.model.doc.v1.raw", cfg}}, "")
	files := adapterFiles(cfg)
	push("models/dev", files, "")
	push("models/release", files, base)

	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.px.Host+"/v2/upstream.local/"+path, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get("models/dev-tmpl/manifests/1"); st != http.StatusOK {
		t.Fatalf("dev-tmpl manifest: %d %s", st, body)
	}
	done := make(chan string, 1)
	go func() {
		st, body := get("models/dev-tmpl/blobs/" + sha(cfg))
		done <- fmt.Sprintf("%d %s", st, body)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("the dev-tmpl blob fetch never reached the upstream")
	}
	refused("models/dev:1", noMBOMRefusal)
	releaseOnce.Do(func() { close(release) })
	select {
	case r := <-done:
		if !strings.Contains(r, noMBOMRefusal) {
			t.Fatalf("the fetch in flight: %s; want the recorded refusal", r)
		}
	case <-ctx.Done():
		t.Fatal("the dev-tmpl blob fetch never finished")
	}
	e.pullIntact(t, "models/release:1", files...)
}
