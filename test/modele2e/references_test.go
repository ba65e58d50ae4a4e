package modele2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	if err := os.WriteFile(filepath.Join(dir, "release.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
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
		ref, _ := name.ParseReference(up.Host+"/"+repo+":1", name.Insecure)
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(src, f.name), f.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mbom := "name: adapter\nbaseModel: registry.example/base/llama-3-8b@sha256:" + strings.Repeat("ab", 32) + "\n" + names +
			"files: [adapter_config.json, adapter_model.safetensors]\n"
		stmt, err := attest.CreateFromConfig(attest.KindMBOM, []byte(mbom), src,
			attest.CreateOptions{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Subjects: []string{desc.Digest.String()}})
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := attest.Sign(context.Background(), stmt, attest.SignOptions{Signer: key})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := attest.Push(context.Background(), up.Host+"/"+repo+"@"+desc.Digest.String(), [][]byte{bundle}, attest.PushOptions{Insecure: true}); err != nil {
			t.Fatal(err)
		}
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
