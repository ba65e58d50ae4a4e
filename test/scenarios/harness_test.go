package scenarios

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/pullgate/pullgate/proxy"
	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/harness/gate"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

// pullgateBin is the CLI, built once in TestMain.
var pullgateBin string

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestMain(m *testing.M) { tools.RunWithPullgate(m, &pullgateBin) }

const (
	upName   = harness.DefaultUpstream
	ruleLLM  = "pg-llm-release"
	ruleHub  = "pg-model-hub"
	ruleApps = "pg-runtime-images"
	ruleEval = "pg-eval-only"

	// Layer media type `oras push <file>` writes; the rule's `oras` media
	// type set accepts it and content inspection sniffs the bytes.
	orasLayer    = "application/vnd.oci.image.layer.v1.tar"
	modelArtType = "application/vnd.pullgate.test.model.v1"
	emptyConfig  = "application/vnd.oci.empty.v1+json"

	evalCondition = `predicate.passed && predicate.metrics.toxicity <= 0.01`
)

var (
	evalType = attest.KindEval.PredicateType()
	base     = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
)

// policyYAML: LLM releases need the whole chain, the MBOM and a passing eval
// under the CEL bar, plus content safety; evalonly/ needs only the eval
// attestation and its condition; hub models are pulled without
// evidence but inspected; runtime images need a cosign signature.
var policyYAML = `trust:
  keys:
    - name: release
      path: ./release.pub
rules:
  - name: ` + ruleLLM + `
    match: ["upstream.local/llm/**"]
    require:
      attestations:
        - predicateType: ` + evalType + `
          signedBy: [release]
          condition: '` + evalCondition + `'
      chain: llm-release
      mbom: required
    content:
      mediaTypes: [oras]
      formats: { safetensors: {}, gguf: { allowChatTemplateDunder: false }, pickle: deny }
  - name: ` + ruleHub + `
    match: ["upstream.local/hub/**"]
    action: allow
    content:
      mediaTypes: [oras]
      formats: { safetensors: {}, gguf: {}, pickle: scan }
  - name: ` + ruleApps + `
    match: ["upstream.local/apps/**"]
    require:
      signatures: [release]
  - name: ` + ruleEval + `
    match: ["upstream.local/evalonly/**"]
    require:
      attestations:
        - predicateType: ` + evalType + `
          signedBy: [release]
          condition: '` + evalCondition + `'
`

// key is an ECDSA P-256 key made in the test; when cosign is available it
// is also imported into cosign's encrypted key format.
type key struct {
	name      string
	priv      *ecdsa.PrivateKey
	pub       []byte // PEM
	pemPath   string // PKCS#8 private key
	cosignKey string // cosign .key ("" without cosign)
}

// env is one upstream, one proxy, the keys and the tools of a test.
type env struct {
	t        *testing.T
	up       *harness.Upstream
	px       *gate.Proxy
	kdir     string
	release  *key
	attacker *key
	cosign   string // cosign3 binary, "" when not requested
}

func newEnv(t *testing.T, withCosign bool) *env {
	t.Helper()
	e := &env{t: t, kdir: t.TempDir()}
	if withCosign {
		e.cosign = tools.Need(t, "cosign3")
	}
	e.release = e.newKey("release")
	e.attacker = e.newKey("attacker")
	e.up = harness.StartUpstream(t, harness.UpstreamOptions{Referrers: true})
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "release.pub"), e.release.pub, 0o644); err != nil {
		t.Fatal(err)
	}
	e.px = gate.Start(t, gate.Options{Upstreams: []*harness.Upstream{e.up}, Policy: policyYAML, Dir: pdir, TagTTL: "100ms"})
	return e
}

func (e *env) newKey(name string) *key {
	e.t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubDER, _ := x509.MarshalPKIXPublicKey(priv.Public())
	k := &key{name: name, priv: priv, pub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		pemPath: filepath.Join(e.kdir, name+"-plain.pem")}
	if err := os.WriteFile(k.pemPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		e.t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.kdir, name+".pem.pub"), k.pub, 0o644)
	if e.cosign != "" {
		e.cosignRun("import-key-pair", "--key", k.pemPath, "--output-key-prefix", name, "-y")
		k.cosignKey = filepath.Join(e.kdir, name+".key")
	}
	return k
}

const cosignPassword = "pullgate-scenarios"

func (e *env) cosignExec(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.cosign, args...)
	cmd.Dir = e.kdir
	cmd.Env = append(os.Environ(), "HOME="+e.kdir, "COSIGN_PASSWORD="+cosignPassword, "TUF_ROOT="+filepath.Join(e.kdir, "tuf"),
		"COSIGN_EXPERIMENTAL=0", "SIGSTORE_NO_CACHE=1", "HTTPS_PROXY=http://127.0.0.1:1", "https_proxy=http://127.0.0.1:1",
		"HTTP_PROXY=http://127.0.0.1:1", "http_proxy=http://127.0.0.1:1", "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	out, err := cmd.CombinedOutput()
	e.t.Logf("$ cosign %s\n%s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	return string(out), err
}

func (e *env) cosignRun(args ...string) string {
	e.t.Helper()
	out, err := e.cosignExec(args...)
	if err != nil {
		e.t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// cosignOffline are the flags that keep cosign v3 off the network (no Rekor,
// no TUF, no signing config) and let it talk plain HTTP to the test registry.
var cosignOffline = []string{"--tlog-upload=false", "--use-signing-config=false", "--allow-http-registry=true", "--allow-insecure-registry=true", "-y"}

// ---------------------------------------------------------------- artifacts

type mfile struct {
	title string
	data  []byte
}

// artifact is a model pushed to the upstream: one layer per file, titled.
type artifact struct {
	repo, tag string
	digest    string
	manifest  []byte
	files     []mfile
}

func (a *artifact) upRef(e *env) string { return e.up.Host + "/" + a.repo + "@" + a.digest }

func (a *artifact) layer(title string) string {
	for _, f := range a.files {
		if f.title == title {
			return harness.Sha256(f.data)
		}
	}
	panic("no layer " + title)
}

// pushModel pushes files as an ORAS-style model artifact and tags it.
func (e *env) pushModel(repo, tag string, files []mfile) *artifact {
	e.t.Helper()
	cfg := e.up.PushBlob(e.t, repo, []byte("{}"))
	var layers []map[string]any
	for _, f := range files {
		d := e.up.PushBlob(e.t, repo, f.data)
		layers = append(layers, map[string]any{"mediaType": orasLayer, "digest": d, "size": len(f.data),
			"annotations": map[string]string{"org.opencontainers.image.title": f.title}})
	}
	raw, err := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": modelArtType,
		"config": map[string]any{"mediaType": emptyConfig, "digest": cfg, "size": 2}, "layers": layers,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.up.TagManifest(e.t, repo, tag, raw, "application/vnd.oci.image.manifest.v1+json")
	return &artifact{repo: repo, tag: tag, digest: harness.Sha256(raw), manifest: raw, files: files}
}

var (
	modelTensors = []attest.Tensor{
		{Name: "lm_head.weight", DType: "F32", Shape: []int64{4, 8}},
		{Name: "model.embed.weight", DType: "F32", Shape: []int64{8, 4}},
	}
	adapterTensors = []attest.Tensor{
		{Name: "base_model.model.layers.0.q_proj.lora_A.weight", DType: "F32", Shape: []int64{2, 8}},
		{Name: "base_model.model.layers.0.q_proj.lora_B.weight", DType: "F32", Shape: []int64{8, 2}},
	}
	tokenizer = []byte(`{"version":"1.0","model":{"type":"BPE","vocab":{"hello":0,"world":1}}}`)
)

// goodModel: base weights, a LoRA adapter and the tokenizer.
func goodModel() []mfile {
	return []mfile{
		{"model.safetensors", attesttest.Safetensors(modelTensors)},
		{"adapter.safetensors", attesttest.Safetensors(adapterTensors)},
		{"tokenizer.json", tokenizer},
	}
}

func replaceFile(fs []mfile, title string, data []byte) []mfile {
	out := append([]mfile(nil), fs...)
	for i := range out {
		if out[i].title == title {
			out[i].data = data
			return out
		}
	}
	return append(out, mfile{title, data})
}

// ---------------------------------------------------------------- releases

// rel is the release evidence of one artifact: the five chain statements
// and the MBOM written by attesttest.WriteRelease (real attest.Create over
// real files) with the MBOM recomputed over the artifact's own files.
type rel struct {
	e   *env
	a   *artifact
	dir string
	st  map[attest.Kind][]byte
}

type relOpts struct {
	metrics map[string]float64
	// mbomFiles is the YAML of the MBOM's files: list (default "[.]", every
	// file of the model).
	mbomFiles string
	// mbomModel are the files the MBOM is made from (default the artifact's).
	mbomModel []mfile
}

func (e *env) newRelease(a *artifact, o relOpts) *rel {
	e.t.Helper()
	dir := e.t.TempDir()
	r0, err := attesttest.WriteRelease(dir, attesttest.ReleaseOptions{Subject: a.digest, Base: base, Metrics: o.metrics})
	if err != nil {
		e.t.Fatal(err)
	}
	r := &rel{e: e, a: a, dir: dir, st: r0.Statements}
	model := o.mbomModel
	if model == nil {
		model = a.files
	}
	os.RemoveAll(filepath.Join(dir, "model"))
	for _, f := range model {
		if err := attesttest.WriteFile(dir, "model/"+f.title, f.data); err != nil {
			e.t.Fatal(err)
		}
	}
	files := o.mbomFiles
	if files == "" {
		files = "[.]"
	}
	st, _ := r.create("mbom", attest.KindMBOM, "name: support-bot-model\n"+r.at(5)+r.subj()+`root: model
baseModel: registry.example/base/mistral-7b@sha256:`+strings.Repeat("a", 64)+`
runtimeImage: registry.example/runtime/vllm@sha256:`+strings.Repeat("b", 64)+`
adapters: [{name: billing-tone, ref: registry.example/adapters/billing@sha256:`+strings.Repeat("c", 64)+`}]
inspectSafetensors: true
files: `+files+"\n")
	r.st[attest.KindMBOM] = st
	return r
}

func at(min int) string { return base.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }

func (r *rel) at(min int) string { return "created: " + at(min) + "\n" }
func (r *rel) subj() string      { return fmt.Sprintf("subjects: [%q]\n", r.a.digest) }

// dg is the statement digest of a standard statement.
func (r *rel) dg(k attest.Kind) string { return attest.StatementDigest(r.st[k]) }

// create writes cfg as <name>.yaml in the release dir and creates the
// statement with attest.Create.
func (r *rel) create(name string, k attest.Kind, cfg string) ([]byte, string) {
	r.e.t.Helper()
	st, err := attesttest.CreateNamed(r.dir, name, k, cfg)
	if err != nil {
		r.e.t.Fatalf("create %s: %v\n%s", name, err, cfg)
	}
	return st, attest.StatementDigest(st)
}

func (r *rel) evalCfg(min int, prompt, corpus, thresholds string) string {
	if thresholds == "" {
		thresholds = "  - {metric: accuracy, min: 0.9}\n  - {metric: toxicity, max: 0.01}\n"
	}
	c := "name: support-bot-eval\n" + r.at(min) + r.subj() + "suite: regression\npromptStatement: " + prompt + "\n"
	if corpus != "" {
		c += "corpusStatement: " + corpus + "\n"
	}
	return c + "benchmark: [eval/bench.jsonl]\nresults: eval/results.json\nthresholds:\n" + thresholds
}

func (r *rel) routeCfg(min int, eval string) string {
	return "name: support-bot-route\n" + r.at(min) + r.subj() + "evalStatement: " + eval + "\nconfigs: [route/route.yaml]\nstrategy: cost-aware\n"
}

func (r *rel) sloCfg(min int, route string) string {
	return "name: support-bot-slo\n" + r.at(min) + r.subj() + "routeStatement: " + route + "\nbudgets: {latencyP95Ms: 800, errorRate: 0.01}\n"
}

func (r *rel) promptCfg(min int) string {
	return "name: support-bot\n" + r.at(min) + r.subj() + "systemPrompts: [prompt/system.txt]\ntemplates: [prompt/templates]\ntoolSchemas: [prompt/tools/search.json]\nsafetyPolicies: [prompt/safety.yaml]\n"
}

func (r *rel) corpusCfg(min int) string {
	return "name: support-docs\n" + r.at(min) + r.subj() + "documents: [corpus/docs]\nmanifests: [corpus/manifest.json]\n"
}

// std returns the standard statements of the given kinds (all six when
// none are given).
func (r *rel) std(kinds ...attest.Kind) [][]byte {
	if len(kinds) == 0 {
		kinds = attest.Kinds
	}
	var out [][]byte
	for _, k := range kinds {
		out = append(out, r.st[k])
	}
	return out
}

func without(kinds []attest.Kind, drop ...attest.Kind) []attest.Kind {
	var out []attest.Kind
	for _, k := range kinds {
		keep := true
		for _, d := range drop {
			keep = keep && k != d
		}
		if keep {
			out = append(out, k)
		}
	}
	return out
}

// sign signs statements with a key using verify/attest Sign.
func (e *env) sign(k *key, stmts ...[]byte) [][]byte {
	e.t.Helper()
	var out [][]byte
	for _, st := range stmts {
		b, err := attest.Sign(context.Background(), st, attest.SignOptions{Signer: k.priv})
		if err != nil {
			e.t.Fatalf("sign: %v", err)
		}
		out = append(out, b)
	}
	return out
}

// attach pushes bundles as referrers of the artifact with verify/attest Push.
func (e *env) attach(a *artifact, bundles [][]byte) {
	e.t.Helper()
	if len(bundles) == 0 {
		return
	}
	if _, err := attest.Push(context.Background(), a.upRef(e), bundles, attest.PushOptions{Insecure: true, Created: base}); err != nil {
		e.t.Fatalf("attest push: %v", err)
	}
}

// publish signs statements with k and attaches them.
func (e *env) publish(a *artifact, k *key, stmts ...[]byte) { e.attach(a, e.sign(k, stmts...)) }

// attachRaw writes a referrer manifest in Push's layout by hand, for
// attacks Push refuses (a bundle whose statement names another digest).
func (e *env) attachRaw(a *artifact, bundle []byte, predicateType string) {
	e.t.Helper()
	cfg := e.up.PushBlob(e.t, a.repo, []byte("{}"))
	ld := e.up.PushBlob(e.t, a.repo, bundle)
	raw, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": attest.BundleMediaType,
		"config":  map[string]any{"mediaType": emptyConfig, "artifactType": attest.BundleMediaType, "digest": cfg, "size": 2},
		"layers":  []any{map[string]any{"mediaType": attest.BundleMediaType, "digest": ld, "size": len(bundle)}},
		"subject": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": a.digest, "size": len(a.manifest)},
		"annotations": map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicateType,
			"org.opencontainers.image.created": base.Format(time.RFC3339)},
	})
	e.up.TagManifest(e.t, a.repo, "replayed-"+strings.TrimPrefix(harness.Sha256(raw), "sha256:")[:12], raw, "application/vnd.oci.image.manifest.v1+json")
}

// ---------------------------------------------------------------- decisions

// outcome is what the proxy and the CLI decided about one reference.
type outcome struct {
	allowed bool
	stage   string // "manifest" or "blob" (content inspection while streaming)
	status  int
	reasons []string
	client  string // what the real client reported
	exit    int    // pullgate verify exit code
	cliWhy  []string
}

func (o outcome) decision() string {
	if o.allowed {
		return "ALLOWED"
	}
	return "DENIED"
}

// manifestGET fetches a manifest through the proxy.
func (e *env) manifestGET(repoAndRef string) (int, []string, []byte) {
	e.t.Helper()
	repo, ref := splitRef(repoAndRef)
	url := e.px.URL + "/v2/" + upName + "/" + repo + "/manifests/" + ref
	st, _, body, err := harness.Get(context.Background(), url, map[string]string{
		"Accept": "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json"})
	if err != nil {
		e.t.Fatalf("GET %s: %v", url, err)
	}
	if st == http.StatusOK {
		return st, nil, body
	}
	oe, err := harness.ParseOCIError(body)
	if err != nil {
		e.t.Fatalf("GET %s: %d: %v", url, st, err)
	}
	return st, reasonsOf(oe), body
}

func reasonsOf(oe harness.OCIError) []string {
	var out []string
	if d, ok := oe.Detail.(map[string]any); ok {
		if rs, ok := d["reasons"].([]any); ok {
			for _, r := range rs {
				if s, ok := r.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	if len(out) == 0 {
		out = []string{oe.Message}
	}
	return out
}

func splitRef(repoAndRef string) (string, string) {
	if i := strings.Index(repoAndRef, "@"); i >= 0 {
		return repoAndRef[:i], repoAndRef[i+1:]
	}
	i := strings.LastIndex(repoAndRef, ":")
	return repoAndRef[:i], repoAndRef[i+1:]
}

// pullModel decides a model reference: the manifest through the proxy, then
// `oras pull` through the proxy (every layer streams and is inspected); a
// failed pull is explained by the proxy's answer for the manifest afterwards
// (a blob that failed inspection denies every manifest that references it).
// Allowed means every file arrived with the digest the upstream has.
func (e *env) pullModel(a *artifact, repoAndRef string) outcome {
	e.t.Helper()
	var o outcome
	st, reasons, body := e.manifestGET(repoAndRef)
	o.status = st
	if st == http.StatusOK && harness.Sha256(body) != a.digest {
		e.t.Fatalf("proxy served manifest %s for %s, the upstream has %s", harness.Sha256(body), repoAndRef, a.digest)
	}
	if st != http.StatusOK {
		o.stage, o.reasons = "manifest", reasons
		res, _ := harness.OrasPull(e.t, e.px.Host+"/"+upName+"/"+repoAndRef)
		if res.Err == nil {
			e.t.Errorf("oras pull %s succeeded although the manifest is denied", repoAndRef)
			o.allowed = true
		}
		o.client = lastLine(res.Output())
	} else {
		res, dir := harness.OrasPull(e.t, e.px.Host+"/"+upName+"/"+repoAndRef)
		o.client = lastLine(res.Output())
		if res.Err == nil {
			for _, f := range a.files {
				got, err := os.ReadFile(filepath.Join(dir, f.title))
				if err != nil || !bytes.Equal(got, f.data) {
					e.t.Fatalf("oras pull %s: %s differs from what was pushed (%v)", repoAndRef, f.title, err)
				}
			}
			o.allowed = true
		} else {
			st2, reasons2, _ := e.manifestGET(repoAndRef)
			if st2 == http.StatusOK {
				e.t.Fatalf("oras pull %s failed but the proxy still serves the manifest: %s", repoAndRef, res.Output())
			}
			o.stage, o.status, o.reasons = "blob", st2, reasons2
		}
	}
	o.exit, o.cliWhy = e.verifyCLI(repoAndRef)
	return o
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// verifyCLI runs `pullgate verify upstream.local/<repoAndRef> -o json`.
func (e *env) verifyCLI(repoAndRef string) (int, []string) {
	e.t.Helper()
	args := []string{"verify", upName + "/" + repoAndRef, "--policy", e.px.PolicyPath, "--config", e.px.ConfigPath, "-o", "json"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pullgateBin, args...)
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:1", "NO_PROXY=127.0.0.1,localhost")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var xe *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &xe):
		code = xe.ExitCode()
	default:
		e.t.Fatalf("pullgate verify: %v", err)
	}
	var d proxy.Decision
	if strings.TrimSpace(out.String()) != "" {
		if err := json.Unmarshal(out.Bytes(), &d); err != nil {
			e.t.Fatalf("pullgate verify -o json: %v\n%s", err, out.String())
		}
	}
	e.t.Logf("$ pullgate %s → exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return code, d.Reasons
}

// expect checks an outcome: the decision, the stage, every wanted reason
// (each must occur in one of the proxy's reasons), and the CLI exit code.
func (e *env) expect(o outcome, allow bool, stage string, exit int, want ...string) {
	e.t.Helper()
	if o.allowed != allow {
		e.t.Errorf("decision %s, want allowed=%v; reasons:\n  %s", o.decision(), allow, strings.Join(o.reasons, "\n  "))
	}
	if !allow && stage != "" && o.stage != stage {
		e.t.Errorf("denied at %s, want at %s", o.stage, stage)
	}
	all := strings.Join(o.reasons, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			e.t.Errorf("proxy reasons\n  %s\nlack\n  %s", strings.Join(o.reasons, "\n  "), w)
		}
	}
	if exit >= 0 && o.exit != exit {
		e.t.Errorf("pullgate verify exit %d, want %d (reasons: %s)", o.exit, exit, strings.Join(o.cliWhy, "; "))
	}
	if stage == "manifest" && !allow {
		// The CLI runs the same engine: its reasons are the proxy's.
		cli := strings.Join(o.cliWhy, "\n")
		for _, w := range want {
			if !strings.Contains(cli, w) {
				e.t.Errorf("pullgate verify reasons\n  %s\nlack\n  %s", strings.Join(o.cliWhy, "\n  "), w)
			}
		}
	}
}

// matching returns the reason containing want (for the table), else the first.
func matching(rs []string, want string) string {
	for _, r := range rs {
		if want != "" && strings.Contains(r, want) {
			return r
		}
	}
	if len(rs) > 0 {
		return rs[0]
	}
	return ""
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// subjectOf is the artifact's descriptor, for referrers.
func subjectOf(a *artifact) *v1.Descriptor {
	h, _ := v1.NewHash(a.digest)
	return &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: int64(len(a.manifest))}
}
