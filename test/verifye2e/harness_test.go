package verifye2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/cosign"
	"github.com/pullgate/pullgate/verify/dsse"
)

// pullgateBin is the CLI built once in TestMain.
var pullgateBin string

func TestMain(m *testing.M) { tools.RunWithPullgate(m, &pullgateBin) }

const (
	slsa02     = "https://slsa.dev/provenance/v0.2"
	builderID  = "https://ci.example/builder"
	goodPred   = `{"builder":{"id":"https://ci.example/builder"},"buildType":"https://ci.example/type","invocation":{},"materials":[]}`
	evilPred   = `{"builder":{"id":"https://evil.example/builder"},"buildType":"https://ci.example/type","invocation":{},"materials":[]}`
	ghIssuer   = "https://token.actions.githubusercontent.com"
	ghSubject  = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
	upName     = harness.DefaultUpstream
	conditionQ = `predicate.builder.id == "https://ci.example/builder"`
)

// ---------------------------------------------------------------- cosign

// cosignTool runs a real cosign binary in an isolated HOME, offline.
type cosignTool struct {
	t   testing.TB
	bin string
	dir string
	v3  bool
}

func newCosign(t testing.TB, name, dir string) *cosignTool {
	return &cosignTool{t: t, bin: tools.Need(t, name), dir: dir, v3: name == "cosign3"}
}

func (c *cosignTool) exec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "HOME="+c.dir, "COSIGN_PASSWORD=test-password", "TUF_ROOT="+filepath.Join(c.dir, "tuf"),
		"COSIGN_EXPERIMENTAL=0", "SIGSTORE_NO_CACHE=1", "HTTPS_PROXY=http://127.0.0.1:1", "https_proxy=http://127.0.0.1:1",
		"HTTP_PROXY=http://127.0.0.1:1", "http_proxy=http://127.0.0.1:1", "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	out, err := cmd.CombinedOutput()
	c.t.Logf("$ %s %s\n%s", filepath.Base(c.bin), strings.Join(args, " "), strings.TrimSpace(string(out)))
	return string(out), err
}

func (c *cosignTool) run(args ...string) string {
	c.t.Helper()
	out, err := c.exec(args...)
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", filepath.Base(c.bin), strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cosignTool) offline() []string {
	f := []string{"--tlog-upload=false", "--allow-insecure-registry", "-y"}
	if c.v3 {
		f = append(f, "--use-signing-config=false")
	}
	return f
}

func (c *cosignTool) sign(k *key, ref string) {
	c.t.Helper()
	c.run(append([]string{"sign", "--key", k.cosignKey}, append(c.offline(), ref)...)...)
}

func (c *cosignTool) attest(k *key, ref, predicate string) {
	c.t.Helper()
	p := filepath.Join(c.dir, fmt.Sprintf("predicate-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(predicate), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.run(append([]string{"attest", "--key", k.cosignKey, "--type", "slsaprovenance", "--predicate", p}, append(c.offline(), ref)...)...)
}

// ---------------------------------------------------------------- keys

// key is an ECDSA P-256 key made in the test and imported into cosign's
// encrypted key format, so both cosign and hand-made evidence use it.
type key struct {
	name      string
	priv      *ecdsa.PrivateKey
	pub       []byte // PEM
	cosignKey string // path of the cosign .key
}

func newKey(t testing.TB, c *cosignTool, name string) *key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemPath := filepath.Join(c.dir, name+"-plain.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c.run("import-key-pair", "--key", pemPath, "--output-key-prefix", name, "-y")
	pub, err := os.ReadFile(filepath.Join(c.dir, name+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	return &key{name: name, priv: priv, pub: pub, cosignKey: filepath.Join(c.dir, name+".key")}
}

func (k *key) sign(t testing.TB, msg []byte) []byte {
	t.Helper()
	h := sha256.Sum256(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// ---------------------------------------------------------------- environment

// env is one upstream, one proxy and the signing material of a test.
type env struct {
	t        *testing.T
	up       *harness.Upstream
	px       *gate.Proxy
	dir      string // proxy dir: pullgate.yaml, policy.yaml, trust files
	c2, c3   *cosignTool
	release  *key
	attacker *key
	vs       *ca.VirtualSigstore
}

type envOptions struct {
	referrers bool
	policy    string // default defaultPolicy
	tagTTL    string
	edit      func(doc map[string]any) // edits pullgate.yaml
	files     map[string]string        // more files in the proxy dir (Rego modules), written before it starts
	setup     func(e *env)             // writes more trust files before the proxy starts
}

// defaultPolicy has one rule per scenario family; each test case uses its
// own repository under the family's prefix.
const defaultPolicy = `trust:
  keys:
    - name: release
      path: ./release.pub
  identities:
    - name: ci
      issuer: https://token.actions.githubusercontent.com
      subjectRegExp: ^https://github\.com/acme/.+
  trustedRoot: ./trusted_root.json
rules:
  - name: pg-apps
    match: ["upstream.local/app/**"]
    require:
      signatures: [release]
  - name: pg-attested
    match: ["upstream.local/att/**"]
    require:
      signatures: [release]
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: [release]
          condition: 'predicate.builder.id == "https://ci.example/builder"'
  - name: pg-keyless
    match: ["upstream.local/kl/**"]
    require:
      signatures: [ci]
  - name: pg-keyless-att
    match: ["upstream.local/klatt/**"]
    require:
      attestations:
        - predicateType: https://slsa.dev/provenance/v0.2
          signedBy: [ci]
          condition: 'predicate.builder.id == "https://ci.example/builder"'
  - name: pg-audited
    match: ["upstream.local/audit/**"]
    mode: audit
    require:
      signatures: [release]
  - name: pg-tlog
    match: ["upstream.local/tlog/**"]
    require:
      signatures: [release]
      tlog: true
`

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	cdir := t.TempDir()
	e.c2 = newCosign(t, "cosign2", cdir)
	e.c3 = newCosign(t, "cosign3", cdir)
	e.release = newKey(t, e.c2, "release")
	e.attacker = newKey(t, e.c2, "attacker")
	e.vs = newVirtualSigstore(t)
	e.writeFile("release.pub", e.release.pub)
	e.writeFile("trusted_root.json", trustedRootJSON(t, e.vs))
	for name, b := range o.files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(e.dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		e.writeFile(name, []byte(b))
	}
	if o.setup != nil {
		o.setup(e)
	}
	e.up = harness.StartUpstream(t, harness.UpstreamOptions{Referrers: o.referrers})
	if o.policy == "" {
		o.policy = defaultPolicy
	}
	e.px = gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{e.up}, Policy: o.policy, Dir: e.dir, TagTTL: o.tagTTL, Edit: o.edit})
	return e
}

func (e *env) writeFile(name string, b []byte) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), b, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// replaceFile writes a file the way editors and Kubernetes do: a new file
// renamed over the old one.
func (e *env) replaceFile(name string, b []byte) {
	e.t.Helper()
	tmp := filepath.Join(e.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.dir, name)); err != nil {
		e.t.Fatal(err)
	}
}

// waitRevision waits until the proxy's policy revision differs from old.
func (e *env) waitRevision(old string) string {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r := e.px.Server.Policy().Revision(); r != old {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("policy revision still %s after 10s", old)
	return ""
}

// upRef is the upstream-side reference (what cosign signs).
func (e *env) upRef(repo string, d string) string { return e.up.Host + "/" + repo + "@" + d }

// pxRef is the client-side reference through the proxy.
func (e *env) pxRef(repoAndRef string) string { return e.px.Ref(e.up, repoAndRef) }

// image pushes a random image to repo:tag.
func (e *env) image(repo, tag string) *harness.Image {
	e.t.Helper()
	return e.up.PushImage(e.t, repo, tag, harness.ImageOptions{Layers: 1})
}

func desc(img *harness.Image) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: img.MediaType, Digest: digest.Digest(img.Digest), Size: int64(len(img.Manifest))}
}

// ---------------------------------------------------------------- proxy checks

// manifestGET fetches a manifest through the proxy with a broad Accept.
func (e *env) manifestGET(repoAndRef string) (int, http.Header, []byte) {
	e.t.Helper()
	repo, ref := splitRef(repoAndRef)
	url := e.px.URL + "/v2/" + upName + "/" + repo + "/manifests/" + ref
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, h, b, err := harness.Get(ctx, url, map[string]string{"Accept": strings.Join([]string{
		ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", ")})
	if err != nil {
		e.t.Fatalf("GET %s: %v", url, err)
	}
	return st, h, b
}

func splitRef(repoAndRef string) (string, string) {
	if i := strings.Index(repoAndRef, "@"); i >= 0 {
		return repoAndRef[:i], repoAndRef[i+1:]
	}
	i := strings.LastIndex(repoAndRef, ":")
	return repoAndRef[:i], repoAndRef[i+1:]
}

// expectProxyAllowed pulls through the proxy with go-containerregistry (every
// blob read and digest-checked) and checks the digest.
func (e *env) expectProxyAllowed(repoAndRef, wantDigest string) {
	e.t.Helper()
	got, err := harness.GGCRPull(e.pxRef(repoAndRef))
	if err != nil {
		e.t.Fatalf("ggcr pull %s through the proxy: %v", repoAndRef, err)
	}
	if got != wantDigest {
		e.t.Fatalf("ggcr pull %s: digest %s, want %s", repoAndRef, got, wantDigest)
	}
}

// expectProxyDenied checks the raw 403 DENIED answer and the error a real
// client (go-containerregistry) reports; both must carry every reason.
func (e *env) expectProxyDenied(repoAndRef string, reasons ...string) harness.OCIError {
	e.t.Helper()
	st, _, body := e.manifestGET(repoAndRef)
	if st != http.StatusForbidden {
		e.t.Fatalf("GET manifest %s: status %d, want 403; body %s", repoAndRef, st, body)
	}
	oe, err := harness.ParseOCIError(body)
	if err != nil {
		e.t.Fatal(err)
	}
	if oe.Code != "DENIED" {
		e.t.Fatalf("GET manifest %s: code %s, want DENIED (%s)", repoAndRef, oe.Code, oe.Message)
	}
	_, gerr := harness.GGCRPull(e.pxRef(repoAndRef))
	if gerr == nil {
		e.t.Fatalf("ggcr pull %s succeeded, want denied", repoAndRef)
	}
	for _, r := range reasons {
		if !strings.Contains(oe.Message, r) {
			e.t.Errorf("denial message of %s\n  %s\nlacks %q", repoAndRef, oe.Message, r)
		}
		if !strings.Contains(gerr.Error(), r) {
			e.t.Errorf("ggcr error for %s\n  %v\nlacks %q", repoAndRef, gerr, r)
		}
	}
	return oe
}

// ---------------------------------------------------------------- CLI

type cliResult struct {
	code     int
	stdout   string
	stderr   string
	decision proxy.Decision
}

// cli runs `pullgate verify upstream.local/<repoAndRef> --policy --config -o json`.
func (e *env) cli(repoAndRef string, extra ...string) cliResult {
	e.t.Helper()
	args := append([]string{"verify", upName + "/" + repoAndRef, "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath, "-o", "json"}, extra...)
	return runCLI(e.t, args...)
}

func runCLI(t testing.TB, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pullgateBin, args...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:1", "NO_PROXY=127.0.0.1,localhost")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var xe *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &xe):
		r.code = xe.ExitCode()
	default:
		t.Fatalf("pullgate %s: %v", strings.Join(args, " "), err)
	}
	if strings.Contains(strings.Join(args, " "), "-o json") && strings.TrimSpace(r.stdout) != "" {
		if err := json.Unmarshal(out.Bytes(), &r.decision); err != nil {
			t.Fatalf("pullgate verify -o json: %v\n%s", err, r.stdout)
		}
	}
	t.Logf("$ pullgate %s  → exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// expectCLI checks the exit code and that every reason occurs in the JSON
// decision's reasons.
func (e *env) expectCLI(repoAndRef string, code int, reasons ...string) cliResult {
	e.t.Helper()
	r := e.cli(repoAndRef)
	if r.code != code {
		e.t.Errorf("pullgate verify %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", repoAndRef, r.code, code, r.stdout, r.stderr)
	}
	all := strings.Join(r.decision.Reasons, "\n")
	for _, want := range reasons {
		if !strings.Contains(all, want) {
			e.t.Errorf("pullgate verify %s: reasons\n  %s\nlack %q", repoAndRef, all, want)
		}
	}
	return r
}

// ---------------------------------------------------------------- raw upstream writes

func (e *env) pushBlob(repo string, data []byte) digest.Digest {
	e.t.Helper()
	return digest.Digest(e.up.PushBlob(e.t, repo, data))
}

func (e *env) putManifest(repo, ref, mediaType string, body []byte) digest.Digest {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, e.up.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(body))
	req.Header.Set("Content-Type", mediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("manifest put %s:%s: %s %s", repo, ref, resp.Status, b)
	}
	return digest.FromBytes(body)
}

// getUpstream reads a manifest straight from the upstream.
func (e *env) getUpstream(repo, ref string) []byte {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, _, b, err := harness.Get(ctx, e.up.URL+"/v2/"+repo+"/manifests/"+ref, map[string]string{"Accept": ocispec.MediaTypeImageManifest + ", " + ocispec.MediaTypeImageIndex})
	if err != nil || st != http.StatusOK {
		e.t.Fatalf("GET upstream %s:%s: %d %v %s", repo, ref, st, err, b)
	}
	return b
}

type layerSpec struct {
	mediaType   string
	blob        []byte
	annotations map[string]string
}

var emptyJSON = []byte("{}")

// pushArtifact writes an OCI manifest with the given layers under ref ("" =
// by digest) and returns its bytes and digest.
func (e *env) pushArtifact(repo, ref, artifactType string, subject *ocispec.Descriptor, annotations map[string]string, layers ...layerSpec) ([]byte, digest.Digest) {
	e.t.Helper()
	cfgMT := "application/vnd.oci.image.config.v1+json"
	if artifactType != "" {
		cfgMT = "application/vnd.oci.empty.v1+json"
	}
	cfg := ocispec.Descriptor{MediaType: cfgMT, Digest: e.pushBlob(repo, emptyJSON), Size: int64(len(emptyJSON))}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Config: cfg, Subject: subject, Annotations: annotations}
	m.SchemaVersion = 2
	for _, l := range layers {
		d := e.pushBlob(repo, l.blob)
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.mediaType, Digest: d, Size: int64(len(l.blob)), Annotations: l.annotations})
	}
	body, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	d := digest.FromBytes(body)
	if ref == "" {
		ref = d.String()
	}
	e.putManifest(repo, ref, ocispec.MediaTypeImageManifest, body)
	return body, d
}

// pushLegacy writes cosign's sha256-<hex>.<suffix> manifest.
func (e *env) pushLegacy(repo string, subject digest.Digest, suffix string, layers ...layerSpec) {
	e.t.Helper()
	e.pushArtifact(repo, cosign.TagFor(subject, suffix), "", nil, nil, layers...)
}

// pushBundle attaches a sigstore bundle as an OCI referrer as cosign v3 does,
// maintaining the sha256-<hex> referrers tag when the upstream has no API.
func (e *env) pushBundle(repo string, subject ocispec.Descriptor, bundleJSON []byte, fallback bool) digest.Digest {
	e.t.Helper()
	body, d := e.pushArtifact(repo, "", cosign.BundleMediaType, &subject,
		map[string]string{cosign.BundleContentAnnotation: "dsse-envelope"},
		layerSpec{mediaType: cosign.BundleMediaType, blob: bundleJSON})
	if fallback {
		tag := subject.Digest.Algorithm().String() + "-" + subject.Digest.Encoded()
		idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
		idx.SchemaVersion = 2
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: cosign.BundleMediaType})
		ib, _ := json.Marshal(idx)
		e.putManifest(repo, tag, ocispec.MediaTypeImageIndex, ib)
	}
	return d
}

func simpleSigningPayload(d digest.Digest, ref string) []byte {
	return []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref, d))
}

// sigLayer is a cosign legacy signature layer over payload signed by k.
func sigLayer(t testing.TB, k *key, payload []byte) layerSpec {
	return layerSpec{
		mediaType:   cosign.SimpleSigningMediaType,
		blob:        payload,
		annotations: map[string]string{cosign.SignatureAnnotation: base64.StdEncoding.EncodeToString(k.sign(t, payload))},
	}
}

func statementJSON(predType, predicate string, digests ...digest.Digest) []byte {
	var subs []string
	for i, d := range digests {
		subs = append(subs, fmt.Sprintf(`{"name":"img%d","digest":{%q:%q}}`, i, d.Algorithm().String(), d.Encoded()))
	}
	return []byte(fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[%s],"predicateType":%q,"predicate":%s}`, strings.Join(subs, ","), predType, predicate))
}

// envelopeJSON signs payload into a DSSE envelope with k.
func envelopeJSON(t testing.TB, k *key, payloadType string, payload []byte) []byte {
	sig := k.sign(t, dsse.PAE(payloadType, payload))
	b, _ := json.Marshal(map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []map[string]string{{"keyid": "", "sig": base64.StdEncoding.EncodeToString(sig)}},
	})
	return b
}

func attLayer(env []byte) layerSpec {
	return layerSpec{mediaType: cosign.DSSEMediaType, blob: env, annotations: map[string]string{cosign.SignatureAnnotation: "", "predicateType": slsa02}}
}

// pullGGCR is a bare go-containerregistry manifest fetch (no blobs).
func pullManifest(ref string) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	_, err = remote.Get(r, harness.NoRetry())
	return err
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
