// Package modele2e pushes model artifacts to a real upstream with the oras
// binary (ModelPack and plain ORAS layouts), pulls them through a running
// pullgate with `oras pull` and go-containerregistry, and checks that good
// models arrive intact while unsafe ones are refused with the reason visible
// to the client and nothing of them is in the store.
package modele2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/test/tools"
)

const (
	mtModelManifest = "application/vnd.cncf.model.manifest.v1+json"
	mtModelConfig   = "application/vnd.cncf.model.config.v1+json"
	mtWeightRaw     = "application/vnd.cncf.model.weight.v1.raw"
	mtCodeRaw       = "application/vnd.cncf.model.code.v1.raw"
)

const modelPolicy = `rules:
  - name: models
    match: ["upstream.local/models/**"]
    action: allow
    content:
      mediaTypes: [modelpack, oras]
      formats:
        safetensors: { maxHeaderBytes: 1MiB }
        gguf: {}
        pickle: deny
      denyCodeLayers: true
  - name: open
    match: ["upstream.local/**"]
    action: allow
`

type env struct {
	up *harness.Upstream
	px *gate.Proxy
}

func start(t *testing.T) *env {
	t.Helper()
	up := harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	px := gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{up}, Policy: modelPolicy})
	return &env{up: up, px: px}
}

// file is one file pushed as a layer.
type file struct {
	name, mediaType string
	data            []byte
}

// push runs `oras push` of files to the upstream. modelpack selects the
// ModelPack layout (artifact type and config); otherwise oras's defaults.
func (e *env) push(t *testing.T, repoTag string, modelpack bool, files ...file) {
	t.Helper()
	e.pushAnnotated(t, repoTag, modelpack, nil, files...)
}

// pushAnnotated is push with per-file annotations (oras --annotation-file:
// file name -> annotations).
func (e *env) pushAnnotated(t *testing.T, repoTag string, modelpack bool, annotations map[string]map[string]string, files ...file) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"push", "--plain-http", "--disable-path-validation", e.up.Host + "/" + repoTag}
	if annotations != nil {
		b, err := json.Marshal(annotations)
		if err != nil {
			t.Fatal(err)
		}
		af := filepath.Join(t.TempDir(), "annotations.json")
		if err := os.WriteFile(af, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--annotation-file", af)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
		spec := f.name
		if f.mediaType != "" {
			spec += ":" + f.mediaType
		}
		args = append(args, spec)
	}
	if modelpack {
		cfg := filepath.Join(dir, "config.json")
		os.WriteFile(cfg, []byte(`{"descriptor":{"name":"test"},"modelfs":{"type":"layers","diffIds":[]},"config":{}}`), 0o644)
		args = append(args, "--artifact-type", mtModelManifest, "--config", "config.json:"+mtModelConfig)
	}
	r := runIn(t, dir, "oras", args...)
	if r.Err != nil {
		t.Fatalf("oras push: %v\n%s", r.Err, r.Output())
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func goodSafetensors() []byte {
	return modelcorpus.Safetensors(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
}

func TestGoodModelsArriveIntact(t *testing.T) {
	e := start(t)
	st := goodSafetensors()
	gg := modelcorpus.GGUF(modelcorpus.ValidGGUFSpec())
	e.push(t, "models/llm:1", true, file{"model.safetensors", mtWeightRaw, st})
	e.push(t, "models/plain:1", false, file{"model.gguf", "", gg})

	for _, c := range []struct {
		ref, file string
		want      []byte
	}{{"models/llm:1", "model.safetensors", st}, {"models/plain:1", "model.gguf", gg}} {
		r, dir := harness.OrasPull(t, e.px.Host+"/upstream.local/"+c.ref)
		if r.Err != nil {
			t.Fatalf("oras pull %s: %v\n%s", c.ref, r.Err, r.Output())
		}
		got, err := os.ReadFile(filepath.Join(dir, c.file))
		if err != nil || !bytes.Equal(got, c.want) {
			t.Fatalf("%s: pulled file differs (%d bytes, %v)", c.ref, len(got), err)
		}
		// The digest through the proxy is the upstream's.
		ref, _ := name.ParseReference(e.px.Host+"/upstream.local/"+c.ref, name.Insecure)
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatal(err)
		}
		upRef, _ := name.ParseReference(e.up.Host+"/"+c.ref, name.Insecure)
		upDesc, _ := remote.Get(upRef)
		if desc.Digest != upDesc.Digest {
			t.Fatalf("%s: digest through proxy %s, upstream %s", c.ref, desc.Digest, upDesc.Digest)
		}
	}
}

// assertRefused pulls with oras and go-containerregistry and checks both
// fail with the reason in the client's output, and that the bad blob is not
// in the store.
func (e *env) assertRefused(t *testing.T, repoTag string, bad []byte, reason string) {
	t.Helper()
	r, dir := harness.OrasPull(t, e.px.Host+"/upstream.local/"+repoTag)
	if r.Err == nil {
		t.Fatalf("oras pull of %s succeeded; want refusal (%s)", repoTag, reason)
	}
	if !strings.Contains(r.Output(), reason) {
		t.Errorf("oras output for %s lacks %q:\n%s", repoTag, reason, r.Output())
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Equal(b, bad) {
				t.Errorf("the refused file reached the client: %s", p)
			}
		}
		return nil
	})
	// go-containerregistry sees the refusal too, with the reason.
	ref, _ := name.ParseReference(e.px.Host+"/upstream.local/"+repoTag, name.Insecure)
	err := func() error {
		img, err := remote.Image(ref)
		if err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}()
	if err == nil {
		t.Fatalf("go-containerregistry pulled %s; want refusal (%s)", repoTag, reason)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("go-containerregistry error for %s lacks %q: %v", repoTag, reason, err)
	}
	if _, ok := e.px.Server.Store().Has(digest.Digest(sha(bad))); ok {
		t.Errorf("refused blob %s is in the store", sha(bad))
	}
}

func TestPickleRefusedBeforeAnyByte(t *testing.T) {
	e := start(t)
	evil := modelcorpus.OsSystemPickle()
	e.push(t, "models/evil:1", true, file{"model.bin", mtWeightRaw, evil})
	e.assertRefused(t, "models/evil:1", evil, "pickle")

	// The blob itself: 403 DENIED with the reason, no body bytes of the blob.
	resp, err := http.Get(e.px.URL + "/v2/upstream.local/models/evil/blobs/" + sha(evil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"DENIED"`) || !strings.Contains(string(body), "pickle") {
		t.Fatalf("pickle blob: %d %s", resp.StatusCode, body)
	}
	// From now on the manifest itself is denied with the reason, and audited.
	r := harness.OrasManifestFetch(t, e.px.Host+"/upstream.local/models/evil:1", false)
	if r.Err == nil || !strings.Contains(r.Output(), "pickle") {
		t.Fatalf("manifest after a refused blob: %v\n%s", r.Err, r.Output())
	}
	audit, _ := os.ReadFile(e.px.AuditPath)
	if !strings.Contains(string(audit), "pickle") {
		t.Errorf("audit log does not record the pickle denial:\n%s", audit)
	}
}

func TestTrailingBytesAbortedAtTheEnd(t *testing.T) {
	e := start(t)
	// A valid header followed by extra bytes: the failure is only known at
	// the end of the stream, so the stream is aborted with its tail held back.
	bad := append(goodSafetensors(), bytes.Repeat([]byte{0x41}, 200<<10)...)
	e.push(t, "models/polyglot:1", true, file{"model.safetensors", mtWeightRaw, bad})
	e.assertRefused(t, "models/polyglot:1", bad, "")
	resp, err := http.Get(e.px.URL + "/v2/upstream.local/models/polyglot/blobs/" + sha(bad))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && n == int64(len(bad)) {
		t.Fatal("client received the complete refused blob")
	}
	// Later pulls of the manifest are denied with the reason.
	r := harness.OrasManifestFetch(t, e.px.Host+"/upstream.local/models/polyglot:1", false)
	if r.Err == nil || !strings.Contains(r.Output(), "safetensors") {
		t.Fatalf("manifest after a refused blob: %v\n%s", r.Err, r.Output())
	}
}

func TestCodeLayerAndMismatchedType(t *testing.T) {
	e := start(t)
	e.push(t, "models/code:1", true, file{"model.safetensors", mtWeightRaw, goodSafetensors()},
		file{"modeling.py", mtCodeRaw, []byte("import os\nos.system('id')\n")})
	r := harness.OrasManifestFetch(t, e.px.Host+"/upstream.local/models/code:1", false)
	if r.Err == nil || !strings.Contains(r.Output(), "denyCodeLayers") {
		t.Fatalf("code layer: %v\n%s", r.Err, r.Output())
	}
	// A GGUF file declared as a safetensors-bearing ModelPack weight is
	// recognised by its bytes; a pickle declared as weights is refused.
	zipped := modelcorpus.TorchZip(modelcorpus.SmallTorchModel())
	e.push(t, "models/torchzip:1", true, file{"pytorch_model.bin", mtWeightRaw, zipped})
	e.assertRefused(t, "models/torchzip:1", zipped, "pickle")
}

func TestUnlistedMediaTypeRefused(t *testing.T) {
	e := start(t)
	e.push(t, "models/odd:1", true, file{"model.safetensors", "application/x-custom-weights", goodSafetensors()})
	r := harness.OrasManifestFetch(t, e.px.Host+"/upstream.local/models/odd:1", false)
	if r.Err == nil || !strings.Contains(r.Output(), "application/x-custom-weights") {
		t.Fatalf("unlisted media type: %v\n%s", r.Err, r.Output())
	}
}

// runIn runs a tool with its working directory set (oras names layers after
// the relative paths it is given), with an isolated HOME.
func runIn(t *testing.T, dir, tool string, args ...string) harness.Result {
	t.Helper()
	bin := tools.Need(t, tool)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "NO_PROXY=127.0.0.1"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return harness.Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// An upstream that sends other bytes for a good model's layer is refused,
// but the finding about those bytes is not held against the real blob: once
// the upstream is honest, the model pulls intact.
func TestLyingUpstreamDoesNotPoisonAGoodBlob(t *testing.T) {
	e := start(t)
	st := goodSafetensors()
	e.push(t, "models/honest:1", true, file{"model.safetensors", mtWeightRaw, st})
	e.up.Liar.LieBlob(sha(st)) // every byte flipped: fails inspection at the header
	r, _ := harness.OrasPull(t, e.px.Host+"/upstream.local/models/honest:1")
	if r.Err == nil {
		t.Fatal("pull with a lying upstream succeeded")
	}
	// The client is refused (a digest error, or the stream aborted when the
	// bytes had started to flow); nothing about the model is concluded.
	if strings.Contains(r.Output(), "content:") {
		t.Errorf("a lying upstream's bytes were reported as a content verdict:\n%s", r.Output())
	}
	e.up.Liar.Honest()
	r, dir := harness.OrasPull(t, e.px.Host+"/upstream.local/models/honest:1")
	if r.Err != nil {
		t.Fatalf("honest pull after a lie: %v\n%s", r.Err, r.Output())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors")); !bytes.Equal(got, st) {
		t.Fatal("pulled file differs")
	}
}
