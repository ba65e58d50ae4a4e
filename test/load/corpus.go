package load

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/cosign"
)

// Rule names of the load policy (Policy). A denial must name the rule that
// decided it.
const (
	RuleDeny   = "load-deny"
	RuleSigned = "load-signed"
	RuleModels = "load-models"
	RuleOpen   = "load-open"
	// RuleAccess stands for client access control (auth: access), which
	// refuses before any policy rule is consulted.
	RuleAccess = "auth-access"

	keyName = "load-release"
)

// Policy is the policy of the load runs: blocked/** denied, signed/** needs
// a signature by the release key, models/** allowed with content
// inspection (safetensors and GGUF checked, no pickle, no code layers),
// open/** allowed. The model rule lists ModelPack media types: clients
// fetch each model's config blob too (refused under such a list until
// a703200).
const Policy = `trust:
  keys:
    - name: ` + keyName + `
      path: ./release.pub
rules:
  - name: ` + RuleDeny + `
    match: ["upstream.local/blocked/**"]
    action: deny
  - name: ` + RuleSigned + `
    match: ["upstream.local/signed/**"]
    require:
      signatures: [` + keyName + `]
  - name: ` + RuleModels + `
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack]
      formats: { safetensors: { maxHeaderBytes: 1MiB }, gguf: {}, pickle: deny }
      denyCodeLayers: true
  - name: ` + RuleOpen + `
    match: ["upstream.local/open/**"]
    action: allow
`

// Model media types (CNCF ModelPack).
const (
	mtModelManifest = "application/vnd.cncf.model.manifest.v1+json"
	mtModelConfig   = "application/vnd.cncf.model.config.v1+json"
	mtWeightRaw     = "application/vnd.cncf.model.weight.v1.raw"
	mtCodeRaw       = "application/vnd.cncf.model.code.v1.raw"
)

// Artifact is one seeded image or model and what every request for it must
// get through pullgate under Policy.
type Artifact struct {
	Repo      string // repository on the upstream, e.g. "open/app-3"
	Tag       string
	Digest    string // manifest digest
	Manifest  []byte
	Blobs     []harness.Blob // config and layers: what clients fetch
	Referrers []string       // digests pullgate must list as referrers
	// Rule decides the artifact; Allowed is its decision; Reason is a
	// substring every denial's reasons must contain.
	Rule    string
	Allowed bool
	Reason  string
	// ListDenied: tag lists and referrers of the repository are refused by
	// the rule itself (an action: deny rule).
	ListDenied bool
	// Open: a guest (a user with access to open/** only) may pull it.
	Open bool
}

// Corpus is the seeded content and the public key its signatures verify with.
type Corpus struct {
	Artifacts []*Artifact
	PublicKey []byte // PEM, written next to the policy as release.pub
}

// Seed pushes n artifacts to the upstream (distribution's registry binary)
// in a fixed mix: of every ten, four open images (OCI and Docker types, some
// with a referrer), two images signed by a release key (cosign's legacy
// simple-signing layout, signed here with crypto/ecdsa; each with a signed
// referrer), one unsigned image where signatures are required, one image in
// a denied repository, and two ModelPack models (safetensors and GGUF
// layers); every fifth model carries a code layer, which the rule refuses.
func Seed(t testing.TB, up *harness.Upstream, n int) *Corpus {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c := &Corpus{PublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
	s := &seeder{t: t, up: up, key: key}
	for i := range n {
		var a *Artifact
		switch i % 10 {
		case 0, 1, 2, 3:
			a = s.image(fmt.Sprintf("open/app-%d", i), i, i%2 == 1)
			a.Rule, a.Allowed, a.Open = RuleOpen, true, true
			if i%4 == 0 {
				a.Referrers = append(a.Referrers, s.referrer(a, false))
			}
		case 4, 5:
			a = s.image(fmt.Sprintf("signed/app-%d", i), i, false)
			a.Rule, a.Allowed = RuleSigned, true
			s.sign(a.Repo, a.Digest)
			a.Referrers = append(a.Referrers, s.referrer(a, true))
		case 6:
			a = s.image(fmt.Sprintf("signed/unsigned-%d", i), i, false)
			a.Rule, a.Reason = RuleSigned, keyName
		case 7:
			a = s.image(fmt.Sprintf("blocked/app-%d", i), i, false)
			a.Rule, a.Reason, a.ListDenied = RuleDeny, "action deny", true
		default:
			code := i%20 == 9
			a = s.model(fmt.Sprintf("models/llm-%d", i), i, code)
			a.Rule, a.Allowed = RuleModels, !code
			if code {
				a.Reason = "denyCodeLayers"
			}
		}
		c.Artifacts = append(c.Artifacts, a)
	}
	return c
}

type seeder struct {
	t   testing.TB
	up  *harness.Upstream
	key *ecdsa.PrivateKey
}

// layerSizes cycle over the images: a small layer and a larger one, so that
// blobs both below and above pullgate's 64 KiB held-back tail are pulled.
var layerSizes = []int64{64 << 10, 256 << 10, 1 << 20, 2 << 20, 100 << 10}

func randomBytes(n int64) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// image pushes a two-layer image (random bytes, distinct per image).
func (s *seeder) image(repo string, i int, docker bool) *Artifact {
	s.t.Helper()
	mt, cmt, lmt := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if docker {
		mt, cmt, lmt = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	img := mutate.MediaType(empty.Image, mt)
	img = mutate.ConfigMediaType(img, cmt)
	img, err := mutate.AppendLayers(img,
		static.NewLayer(randomBytes(int64(2<<10+i*97)), lmt),
		static.NewLayer(randomBytes(layerSizes[i%len(layerSizes)]), lmt))
	if err != nil {
		s.t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		s.t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/app", fmt.Sprint(i)}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		s.t.Fatal(err)
	}
	im := s.up.PushV1Image(s.t, repo, "v1", img)
	a := &Artifact{Repo: repo, Tag: "v1", Digest: im.Digest, Manifest: im.Manifest}
	a.Blobs = append([]harness.Blob{im.Config}, im.Layers...)
	return a
}

// model pushes a ModelPack model: config, a safetensors and a GGUF weight
// layer, and with code a Python layer.
func (s *seeder) model(repo string, i int, code bool) *Artifact {
	s.t.Helper()
	tensors := []modelcorpus.STTensor{
		{Name: "model.embed_tokens.weight", DType: "BF16", Shape: []uint64{64, uint64(256 * (1 + i%4))}},
		{Name: "model.layers.0.mlp.up_proj.weight", DType: "F32", Shape: []uint64{32, 64}},
	}
	st := modelcorpus.Safetensors(tensors, map[string]string{"format": "pt", "model": repo})
	spec := modelcorpus.ValidGGUFSpec()
	spec.KVs = append(spec.KVs, modelcorpus.GGUFKV{Key: "general.name", Type: modelcorpus.GGUFString, Value: repo})
	gg := modelcorpus.GGUF(spec)
	cfg := []byte(fmt.Sprintf(`{"descriptor":{"name":%q},"modelfs":{"type":"layers","diffIds":[]},"config":{}}`, repo))
	files := []struct {
		title, mt string
		data      []byte
	}{{"model.safetensors", mtWeightRaw, st}, {"model.gguf", mtWeightRaw, gg}}
	if code {
		files = append(files, struct {
			title, mt string
			data      []byte
		}{"modeling.py", mtCodeRaw, []byte("import os\nprint(os.getcwd())\n")})
	}
	a := &Artifact{Repo: repo, Tag: "v1"}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: mtModelManifest,
		Config: s.blob(a, repo, mtModelConfig, cfg, nil)}
	m.SchemaVersion = 2
	for _, f := range files {
		m.Layers = append(m.Layers, s.blob(a, repo, f.mt, f.data, map[string]string{ocispec.AnnotationTitle: f.title}))
	}
	a.Manifest, a.Digest = s.putManifest(repo, "v1", m)
	return a
}

// blob pushes data into repo and returns its descriptor; with a it is also
// one of the artifact's blobs that clients fetch.
func (s *seeder) blob(a *Artifact, repo, mt string, data []byte, ann map[string]string) ocispec.Descriptor {
	d := s.up.PushBlob(s.t, repo, data)
	if a != nil {
		a.Blobs = append(a.Blobs, harness.Blob{Digest: d, Size: int64(len(data)), MediaType: mt, Data: data})
	}
	return ocispec.Descriptor{MediaType: mt, Digest: digestOf(d), Size: int64(len(data)), Annotations: ann}
}

// putManifest PUTs a manifest under ref ("" = its digest).
func (s *seeder) putManifest(repo, ref string, m ocispec.Manifest) ([]byte, string) {
	s.t.Helper()
	body, err := json.Marshal(m)
	if err != nil {
		s.t.Fatal(err)
	}
	d := harness.Sha256(body)
	if ref == "" {
		ref = d
	}
	req, _ := http.NewRequest(http.MethodPut, s.up.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", m.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("manifest put %s:%s: %s %s", repo, ref, resp.Status, b)
	}
	return body, d
}

// referrer attaches an SBOM-like artifact to a's image (go-containerregistry
// maintains the referrers tag fallback when the upstream has no referrers
// API); signed makes the release key sign it too, so that a repository
// requiring signatures lists it.
func (s *seeder) referrer(a *Artifact, signed bool) string {
	s.t.Helper()
	h, err := v1.NewHash(a.Digest)
	if err != nil {
		s.t.Fatal(err)
	}
	mt := types.OCIManifestSchema1
	if bytes.Contains(a.Manifest, []byte(types.DockerManifestSchema2)) {
		mt = types.DockerManifestSchema2
	}
	r := s.up.PushArtifact(s.t, a.Repo, harness.ArtifactOptions{
		ArtifactType: "application/vnd.example.sbom.v1+json",
		Subject:      &v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(a.Manifest))},
	})
	if signed {
		s.sign(a.Repo, r.Digest)
	}
	return r.Digest
}

// sign writes a cosign legacy signature (sha256-<hex>.sig) over subject: a
// simple-signing payload signed with the release key (ECDSA P-256, SHA-256,
// ASN.1), as `cosign sign --key` stores it.
func (s *seeder) sign(repo, subject string) {
	s.t.Helper()
	payload := []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":%q},"optional":null}`,
		s.up.Host+"/"+repo, subject, cosign.SimpleSigningType))
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, sum[:])
	if err != nil {
		s.t.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: s.blob(nil, repo, ocispec.MediaTypeImageConfig, []byte("{}"), nil)}
	m.SchemaVersion = 2
	m.Layers = []ocispec.Descriptor{s.blob(nil, repo, cosign.SimpleSigningMediaType, payload,
		map[string]string{cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)})}
	s.putManifest(repo, cosign.TagFor(digestOf(subject), "sig"), m)
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }
