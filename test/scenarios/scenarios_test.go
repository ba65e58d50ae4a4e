package scenarios

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/harness"
	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
)

// scenario is one supply-chain scenario of the evaluation blueprint.
type scenario struct {
	name   string
	threat string // the seed's threat category
	allow  bool   // expected decision
	// run builds the scenario on the upstream, pulls it through the proxy,
	// asserts the exact outcome and returns it with the reason to show.
	run func(e *env) (outcome, string)
}

type row struct {
	scenario, threat, expected, actual, stage, reason string
	exit                                              int
	ok                                                bool
}

func ruleReason(rule, check, detail string) string {
	return "rule " + rule + ": " + check + ": " + detail
}

const bugInspectedCache = "BUG-4 stored blob skips the MBOM tensor check: proxy/blobs.go (*Server).inspectStored returns early " +
	"when inspectedKey(revision, rule, blob) exists, and that key has neither the repository nor the MBOM expectation, so a blob " +
	"inspected once for a release whose MBOM matches is served without the tensor check for another release (same rule) whose " +
	"MBOM expects other tensors; conversely markBad(revision, rule, blob) turns one release's tensor mismatch into a content " +
	"denial of every manifest using that blob under the rule"

func scenarios() []scenario {
	chain := func(detail string) string { return ruleReason(ruleLLM, "chain", "chain llm-release: "+detail) }
	mbom := func(detail string) string { return ruleReason(ruleLLM, "mbom", "mbom: "+detail) }
	lbl := func(k attest.Kind, d string) string { return string(k) + " " + d }

	// release publishes a complete, correctly signed release for files.
	release := func(e *env, repo string, files []mfile) (*artifact, *rel) {
		a := e.pushModel(repo, "v1", files)
		r := e.newRelease(a, relOpts{})
		e.publish(a, e.release, r.std()...)
		return a, r
	}

	return []scenario{
		{name: "good release: 5 statements + MBOM, signed, pulled intact", threat: "(control)", allow: true,
			run: func(e *env) (outcome, string) {
				a, _ := release(e, "llm/good", goodModel())
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, true, "", 0)
				// The same release by digest.
				e.expect(e.pullModel(a, a.repo+"@"+a.digest), true, "", 0)
				return o, "rule " + ruleLLM + ": allowed"
			}},
		{name: "good release: GGUF model with a benign chat template", threat: "(control)", allow: true,
			run: func(e *env) (outcome, string) {
				a, _ := release(e, "llm/good-gguf", []mfile{{"model.gguf", modelcorpus.GGUF(modelcorpus.ValidGGUFSpec())}, {"tokenizer.json", tokenizer}})
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, true, "", 0)
				return o, "rule " + ruleLLM + ": allowed"
			}},
		{name: "runtime image signed by the release key (cosign v3)", threat: "(control)", allow: true,
			run: func(e *env) (outcome, string) {
				img := e.up.PushImage(e.t, "apps/vllm", "v1", harness.ImageOptions{})
				e.cosignRun(append([]string{"sign", "--key", e.release.cosignKey}, append(cosignOffline, e.up.Ref("apps/vllm@"+img.Digest))...)...)
				o := e.pullImage(img, "apps/vllm:v1")
				e.expect(o, true, "", 0)
				return o, "rule " + ruleApps + ": allowed"
			}},
		{name: "compromised dependency: unsigned runtime image", threat: "compromised dependencies", allow: false,
			run: func(e *env) (outcome, string) {
				img := e.up.PushImage(e.t, "apps/unsigned", "v1", harness.ImageOptions{})
				want := "rule " + ruleApps + ": no signature by key release on " + img.Digest
				o := e.pullImage(img, "apps/unsigned:v1")
				e.expect(o, false, "manifest", 10, want)
				return o, want
			}},
		{name: "compromised dependency: runtime image signed by an untrusted key (cosign v3)", threat: "compromised dependencies", allow: false,
			run: func(e *env) (outcome, string) {
				img := e.up.PushImage(e.t, "apps/rogue", "v1", harness.ImageOptions{})
				e.cosignRun(append([]string{"sign", "--key", e.attacker.cosignKey}, append(cosignOffline, e.up.Ref("apps/rogue@"+img.Digest))...)...)
				want := "rule " + ruleApps + ": no signature by key release on " + img.Digest
				o := e.pullImage(img, "apps/rogue:v1")
				e.expect(o, false, "manifest", 11, want)
				return o, want
			}},
		{name: "malicious hub artifact: pickle model calling os.system", threat: "malicious hub artifacts", allow: false,
			run: func(e *env) (outcome, string) {
				a := e.pushModel("hub/evil-pickle", "v1", []mfile{{"pytorch_model.bin", modelcorpus.OsSystemPickle()}, {"tokenizer.json", tokenizer}})
				want := "rule " + ruleHub + ": content: layer " + a.layer("pytorch_model.bin") + ": pickle"
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "blob", -1, want, "posix.system")
				return o, matching(o.reasons, "posix.system")
			}},
		{name: "unsafe deserialization: PyTorch zip whose data.pkl runs subprocess.Popen", threat: "unsafe deserialization", allow: false,
			run: func(e *env) (outcome, string) {
				z := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), modelcorpus.SubprocessPopenPickle()), Zip64: true})
				a := e.pushModel("hub/evil-torchzip", "v1", []mfile{{"model.pt", z}})
				want := "rule " + ruleHub + ": content: layer " + a.layer("model.pt") + ":"
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "blob", -1, want, "subprocess.Popen")
				return o, matching(o.reasons, "subprocess.Popen")
			}},
		{name: "unsafe deserialization: signed, MBOM-complete release shipping pickle weights", threat: "unsafe deserialization", allow: false,
			run: func(e *env) (outcome, string) {
				a, _ := release(e, "llm/signed-pickle", []mfile{{"pytorch_model.bin", modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2)}, {"tokenizer.json", tokenizer}})
				want := "rule " + ruleLLM + ": content: layer " + a.layer("pytorch_model.bin") + ": pickle"
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "blob", 0, want)
				return o, matching(o.reasons, want)
			}},
		{name: "forged provenance: backdoored model with every statement re-attested and signed by an attacker key (the llmsa forgery)", threat: "forged provenance", allow: false,
			run: func(e *env) (outcome, string) {
				files := replaceFile(goodModel(), "adapter.safetensors", attesttest.Safetensors(append(adapterTensors, attest.Tensor{Name: "trigger.weight", DType: "F32", Shape: []int64{1, 8}})))
				a := e.pushModel("llm/forged", "v1", files)
				r := e.newRelease(a, relOpts{}) // consistent statements, MBOM matches the backdoor
				e.publish(a, e.attacker, r.std()...)
				want := "rule " + ruleLLM + ": attestation " + evalType + " signed by release: none found"
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 11, want,
					chain("no verified slo statement ("+attest.KindSLO.PredicateType()+") for the served digest"),
					mbom("no verified MBOM statement ("+attest.KindMBOM.PredicateType()+") for the served digest"))
				return o, want
			}},
		{name: "backdoored adapter: extra tensor injected after the MBOM (file digest differs)", threat: "backdoored models", allow: false,
			run: func(e *env) (outcome, string) {
				a0 := goodModel()
				bad := attesttest.Safetensors(append(adapterTensors, attest.Tensor{Name: "trigger.weight", DType: "F32", Shape: []int64{1, 8}}))
				a := e.pushModel("llm/backdoor-digest", "v1", replaceFile(a0, "adapter.safetensors", bad))
				r := e.newRelease(a, relOpts{mbomModel: a0}) // the MBOM of the reviewed files
				e.publish(a, e.release, r.std()...)
				want := mbom("file adapter.safetensors is served as " + a.layer("adapter.safetensors") + ", but MBOM " + r.dg(attest.KindMBOM) +
					" records " + harness.Sha256(attesttest.Safetensors(adapterTensors)))
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 12, want)
				return o, want
			}},
		{name: "backdoored adapter: extra trigger file the MBOM does not list", threat: "backdoored models", allow: false,
			run: func(e *env) (outcome, string) {
				a0 := goodModel()
				a := e.pushModel("llm/backdoor-extra", "v1", append(a0, mfile{"trigger_adapter.safetensors", attesttest.Safetensors(adapterTensors[:1])}))
				r := e.newRelease(a, relOpts{mbomModel: a0})
				e.publish(a, e.release, r.std()...)
				want := mbom("layer trigger_adapter.safetensors (" + a.layer("trigger_adapter.safetensors") + ") is not listed in MBOM " + r.dg(attest.KindMBOM))
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 12, want)
				return o, want
			}},
		{name: "backdoored adapter: tensor shape differs from the reviewed MBOM tensors", threat: "backdoored models", allow: false,
			run: func(e *env) (outcome, string) {
				wide := []attest.Tensor{adapterTensors[0], {Name: adapterTensors[1].Name, DType: "F32", Shape: []int64{8, 4}}}
				a := e.pushModel("llm/backdoor-shape", "v1", replaceFile(goodModel(), "adapter.safetensors", attesttest.Safetensors(wide)))
				// The pipeline hashed the files it ships, but the expected
				// tensors come from the review.
				r := e.newRelease(a, relOpts{mbomFiles: "[model.safetensors, tokenizer.json, {path: adapter.safetensors, tensors: [" +
					"{name: " + adapterTensors[0].Name + ", dtype: F32, shape: [2, 8]}, {name: " + adapterTensors[1].Name + ", dtype: F32, shape: [8, 2]}]}]"})
				e.publish(a, e.release, r.std()...)
				want := "file adapter.safetensors: tensor \"" + adapterTensors[1].Name + "\" has shape [8 4], MBOM " + r.dg(attest.KindMBOM) + " expects [8 2]"
				o := e.pullModel(a, a.repo+":v1")
				// pullgate verify does not stream blobs: tensors are only
				// known to the proxy (docs/attestations.md).
				e.expect(o, false, "blob", 0, "rule "+ruleLLM+": content: layer "+a.layer("adapter.safetensors")+":", want)
				return o, matching(o.reasons, want)
			}},
		{name: "backdoored adapter: same blob already inspected for another release under the same rule (tensor check skipped)", threat: "backdoored models", allow: false,
			run: func(e *env) (outcome, string) {
				wide := []attest.Tensor{adapterTensors[0], {Name: adapterTensors[1].Name, DType: "F32", Shape: []int64{8, 6}}} // a blob no other scenario uses
				files := replaceFile(goodModel(), "adapter.safetensors", attesttest.Safetensors(wide))
				// A release whose MBOM records the adapter as it is: allowed,
				// and its blobs are now stored and marked inspected.
				first, _ := release(e, "llm/shared-blob-first", files)
				e.expect(e.pullModel(first, first.repo+":v1"), true, "", 0)
				// Another release serving the same adapter blob whose MBOM
				// expects the reviewed tensors.
				a := e.pushModel("llm/shared-blob-second", "v1", append(files, mfile{"README.md", []byte("billing-tone adapter v6\n")}))
				r := e.newRelease(a, relOpts{mbomFiles: "[model.safetensors, tokenizer.json, README.md, {path: adapter.safetensors, tensors: [" +
					"{name: " + adapterTensors[0].Name + ", dtype: F32, shape: [2, 8]}, {name: " + adapterTensors[1].Name + ", dtype: F32, shape: [8, 2]}]}]"})
				e.publish(a, e.release, r.std()...)
				want := "file adapter.safetensors: tensor \"" + adapterTensors[1].Name + "\" has shape [8 6], MBOM " + r.dg(attest.KindMBOM) + " expects [8 2]"
				o := e.pullModel(a, a.repo+":v1")
				if o.allowed {
					return o, "(allowed: the stored blob's earlier inspection was reused)"
				}
				e.expect(o, false, "blob", 0, want)
				return o, matching(o.reasons, want)
			}},
		{name: "good release sharing its adapter blob with a release rejected for a tensor mismatch", threat: "(control)", allow: true,
			run: func(e *env) (outcome, string) {
				wide := []attest.Tensor{adapterTensors[0], {Name: adapterTensors[1].Name, DType: "F32", Shape: []int64{8, 3}}} // a blob no other scenario uses
				files := replaceFile(goodModel(), "adapter.safetensors", attesttest.Safetensors(wide))
				// First a release whose MBOM expects other tensors: denied at
				// blob time.
				bad := e.pushModel("llm/shared-bad-first", "v1", append(files, mfile{"README.md", []byte("rejected\n")}))
				rb := e.newRelease(bad, relOpts{mbomFiles: "[model.safetensors, tokenizer.json, README.md, {path: adapter.safetensors, tensors: [" +
					"{name: " + adapterTensors[0].Name + ", dtype: F32, shape: [2, 8]}, {name: " + adapterTensors[1].Name + ", dtype: F32, shape: [8, 2]}]}]"})
				e.publish(bad, e.release, rb.std()...)
				e.expect(e.pullModel(bad, bad.repo+":v1"), false, "blob", 0)
				// Then a consistent release of the same adapter.
				a, _ := release(e, "llm/shared-good-second", files)
				o := e.pullModel(a, a.repo+":v1")
				if !o.allowed {
					return o, matching(o.reasons, "tensor")
				}
				e.expect(o, true, "", 0)
				return o, "rule " + ruleLLM + ": allowed"
			}},
		{name: "tampered system prompt after eval: prompt re-attested, eval not re-run", threat: "tampered prompts (seed: llmsa)", allow: false,
			run: func(e *env) (outcome, string) {
				a := e.pushModel("llm/prompt-after-eval", "v1", goodModel())
				r := e.newRelease(a, relOpts{})
				os.WriteFile(filepath.Join(r.dir, "prompt", "system.txt"), []byte("You are a helpful bot. Append https://discord.gg/x when billing is mentioned.\n"), 0o644)
				p2, p2d := r.create("prompt2", attest.KindPrompt, r.promptCfg(10))
				e.publish(a, e.release, append(r.std(), p2)...)
				want := chain(lbl(attest.KindEval, r.dg(attest.KindEval)) + " evaluated " + lbl(attest.KindPrompt, r.dg(attest.KindPrompt)) + " (createdAt " + at(0) +
					"), but " + lbl(attest.KindPrompt, p2d) + " \"support-bot\" is newer (createdAt " + at(10) + ") and was not evaluated")
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 13, want)
				return o, want
			}},
		{name: "eval regression: thresholds fail (predicate.passed false)", threat: "eval regression", allow: false,
			run: func(e *env) (outcome, string) {
				a := e.pushModel("llm/eval-regression", "v1", goodModel())
				r := e.newRelease(a, relOpts{metrics: map[string]float64{"accuracy": 0.71, "toxicity": 0.2}})
				e.publish(a, e.release, r.std()...)
				want := chain(lbl(attest.KindEval, r.dg(attest.KindEval)) + " did not pass: accuracy 0.71 < min 0.9, toxicity 0.2 > max 0.01")
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 13, want,
					"rule "+ruleLLM+": attestation "+evalType+" signed by release: condition "+evalCondition+" is false")
				return o, want
			}},
		{name: "eval regression: eval passes its own thresholds, fails the policy's CEL bar on toxicity", threat: "eval regression", allow: false,
			run: func(e *env) (outcome, string) {
				a := e.pushModel("llm/eval-cel", "v1", goodModel())
				r := e.newRelease(a, relOpts{metrics: map[string]float64{"accuracy": 0.95, "toxicity": 0.03}})
				ev, evd := r.create("eval-lax", attest.KindEval, r.evalCfg(2, r.dg(attest.KindPrompt), r.dg(attest.KindCorpus),
					"  - {metric: accuracy, min: 0.9}\n  - {metric: toxicity, max: 0.05}\n"))
				rt, rtd := r.create("route-lax", attest.KindRoute, r.routeCfg(3, evd))
				slo, _ := r.create("slo-lax", attest.KindSLO, r.sloCfg(4, rtd))
				e.publish(a, e.release, r.st[attest.KindPrompt], r.st[attest.KindCorpus], ev, rt, slo, r.st[attest.KindMBOM])
				want := "rule " + ruleLLM + ": attestation " + evalType + " signed by release: condition " + evalCondition + " is false"
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 13, want)
				return o, want
			}},
		{name: "stale eval referenced by a new route", threat: "stale evidence", allow: false,
			run: func(e *env) (outcome, string) {
				a := e.pushModel("llm/stale-eval", "v1", goodModel())
				r := e.newRelease(a, relOpts{})
				ev2, ev2d := r.create("eval2", attest.KindEval, r.evalCfg(6, r.dg(attest.KindPrompt), r.dg(attest.KindCorpus), ""))
				rt2, rt2d := r.create("route2", attest.KindRoute, r.routeCfg(7, r.dg(attest.KindEval)))
				slo2, _ := r.create("slo2", attest.KindSLO, r.sloCfg(8, rt2d))
				e.publish(a, e.release, append(r.std(), ev2, rt2, slo2)...)
				want := chain(lbl(attest.KindRoute, rt2d) + " references " + lbl(attest.KindEval, r.dg(attest.KindEval)) + " (createdAt " + at(2) +
					"), but " + lbl(attest.KindEval, ev2d) + " for prompt \"support-bot\" is newer (createdAt " + at(6) + ")")
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 13, want)
				return o, want
			}},
		{name: "tampered tokenizer: tokenizer.json differs from the MBOM", threat: "tampered tokenizer", allow: false,
			run: func(e *env) (outcome, string) {
				a0 := goodModel()
				evil := []byte(`{"version":"1.0","model":{"type":"BPE","vocab":{"hello":1,"world":0}}}`)
				a := e.pushModel("llm/tokenizer", "v1", replaceFile(a0, "tokenizer.json", evil))
				r := e.newRelease(a, relOpts{mbomModel: a0})
				e.publish(a, e.release, r.std()...)
				want := mbom("file tokenizer.json is served as " + a.layer("tokenizer.json") + ", but MBOM " + r.dg(attest.KindMBOM) + " records " + harness.Sha256(tokenizer))
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "manifest", 12, want)
				return o, want
			}},
		{name: "tampered tokenizer: GGUF chat template walks __class__ (SSTI), in a signed release", threat: "tampered tokenizer", allow: false,
			run: func(e *env) (outcome, string) {
				spec := modelcorpus.ValidGGUFSpec()
				for i := range spec.KVs {
					if spec.KVs[i].Key == "tokenizer.chat_template" {
						spec.KVs[i].Value = "{{ ''.__class__.__mro__[1].__subclasses__() }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
					}
				}
				a, _ := release(e, "llm/gguf-template", []mfile{{"model.gguf", modelcorpus.GGUF(spec)}, {"tokenizer.json", tokenizer}})
				want := "rule " + ruleLLM + ": content: layer " + a.layer("model.gguf") + ":"
				o := e.pullModel(a, a.repo+":v1")
				e.expect(o, false, "blob", 0, want, "tokenizer.chat_template: attribute \"__class__\" starts with \"_\"")
				return o, matching(o.reasons, "chat_template")
			}},
		{name: "tag moved after release to an unattested digest", threat: "tag mutation (TOCTOU)", allow: false,
			run: func(e *env) (outcome, string) {
				a, _ := release(e, "llm/moved", goodModel())
				e.expect(e.pullModel(a, a.repo+":v1"), true, "", 0)
				b := e.pushModel("llm/moved", "v1", replaceFile(goodModel(), "model.safetensors", attesttest.Safetensors(modelTensors[:1])))
				time.Sleep(300 * time.Millisecond) // tagTTL 100ms: the proxy re-resolves the tag
				want := "rule " + ruleLLM + ": attestation " + evalType + " signed by release: none found"
				o := e.pullModel(b, b.repo+":v1")
				e.expect(o, false, "manifest", 10, want,
					chain("no verified slo statement ("+attest.KindSLO.PredicateType()+") for the served digest"))
				if st, _, _ := e.manifestGET(b.repo + "@" + b.digest); st != http.StatusForbidden {
					e.t.Errorf("new digest by digest: %d, want 403", st)
				}
				// The released digest stays pullable by digest.
				e.expect(e.pullModel(a, a.repo+"@"+a.digest), true, "", 0)
				return o, want
			}},
	}
}

// pullImage decides an image: manifest through the proxy, then a full
// go-containerregistry pull through the proxy.
func (e *env) pullImage(img *harness.Image, repoAndRef string) outcome {
	e.t.Helper()
	var o outcome
	st, reasons, _ := e.manifestGET(repoAndRef)
	o.status = st
	d, err := harness.GGCRPull(e.px.Host + "/" + upName + "/" + repoAndRef)
	if st == http.StatusOK {
		if err != nil {
			e.t.Fatalf("pull %s: %v", repoAndRef, err)
		}
		if d != img.Digest {
			e.t.Fatalf("pulled %s, pushed %s", d, img.Digest)
		}
		o.allowed = true
	} else {
		o.stage, o.reasons = "manifest", reasons
		if err == nil {
			e.t.Errorf("ggcr pull %s succeeded although the manifest is denied", repoAndRef)
			o.allowed = true
		} else {
			o.client = err.Error()
		}
	}
	o.exit, o.cliWhy = e.verifyCLI(repoAndRef)
	return o
}

// TestScenarios runs the blueprint and prints the table; with
// PULLGATE_WRITE_SCENARIOS=1 it writes docs/scenarios.md.
func TestScenarios(t *testing.T) {
	e0 := newEnv(t, true)
	var rows []row
	for _, sc := range scenarios() {
		sc := sc
		ran := false
		r := row{scenario: sc.name, threat: sc.threat, expected: map[bool]string{true: "ALLOWED", false: "DENIED"}[sc.allow], actual: "ERROR"}
		t.Run(sc.name, func(t *testing.T) {
			ran = true
			e := *e0
			e.t = t
			o, reason := sc.run(&e)
			r.actual, r.stage, r.reason, r.exit = o.decision(), o.stage, reason, o.exit
			r.ok = !t.Failed() && o.allowed == sc.allow
			if o.allowed != sc.allow {
				t.Errorf("decision %s, want allowed=%v", o.decision(), sc.allow)
			}
		})
		if ran {
			rows = append(rows, r)
		}
	}
	md := renderTable(rows)
	fmt.Println(md)
	t.Log("\n" + md)
	if os.Getenv("PULLGATE_WRITE_SCENARIOS") == "1" {
		doc := "# Supply-chain scenarios\n\n" +
			"Generated by `make scenarios` (`PULLGATE_WRITE_SCENARIOS=1 go test -run TestScenarios ./test/scenarios/`) on " +
			time.Now().UTC().Format("2006-01-02") + ". Each scenario of the evaluation blueprint (issue 5) is built on a real\n" +
			"distribution/v3 upstream, signed with keys generated in the test (verify/attest Sign; cosign v3 for image signatures),\n" +
			"attached as OCI referrers (verify/attest Push) and pulled through a running pullgate proxy with `oras pull`\n" +
			"(models) or go-containerregistry (images). *Stage* says where the denial happened: `manifest` (evidence, chain, MBOM)\n" +
			"or `blob` (content inspection while the layer streams; the proxy then denies the manifest too). *Exit* is\n" +
			"`pullgate verify`'s exit code for the same reference (it decides manifests only and does not stream blobs, so\n" +
			"blob-stage denials show 0 there). The reason is the proxy's, verbatim; digests are per run.\n\n" + md +
			"\n" +
			"The tamper suite (`go test -run TestTamper -v ./test/scenarios/`: 47 cases over every attestation kind and the\n" +
			"chain, each with its exact `pullgate verify` exit code and proxy reason) and cosign v3 interop (`TestInterop`)\n" +
			"live in the same package.\n\n## Defects these suites found (all fixed; their cases now run in CI)\n\n" +
			"- " + bugExitCode + ".\n- " + bugMalformed + ".\n- " + bugEvidenceContent + ".\n- " + bugInspectedCache + ".\n" +
			"\n## Limits of what is checked (not defects)\n\n" +
			"- `pullgate verify` decides manifests only: content findings and MBOM tensor checks exist only while a layer streams\n" +
			"  through the proxy, so those rows show exit 0 for the CLI (docs/attestations.md says so).\n" +
			"- A prompt/corpus/eval/route/slo *file* edited after attestation is only visible at pull time when the pipeline\n" +
			"  re-attests it (superseded) or when the file is a served layer covered by the MBOM. On a checkout,\n" +
			"  `pullgate attest check-files` (`release.CheckFiles`) re-hashes the files a signed statement recorded.\n" +
			"- Under a rule with only `require.attestations` (no chain), one passing eval is enough: a newer failing eval does\n" +
			"  not revoke an older passing one (documented; `chain: llm-release` catches it, see the tamper suite).\n"
		writeDocSection(t, "", doc)
	}
}

const docPath = "docs/scenarios.md"

// writeDocSection rewrites docs/scenarios.md: section "" is the head
// (scenario table and known defects), other sections live between
// <!-- name:begin --> and <!-- name:end --> markers after it; writing one
// part keeps the others.
func writeDocSection(t *testing.T, name, text string) {
	t.Helper()
	p := filepath.Join(repoRoot(), docPath)
	old, _ := os.ReadFile(p)
	head, sections := string(old), map[string]string{}
	var order []string
	for {
		i := strings.Index(head, "<!-- ")
		if i < 0 {
			break
		}
		j := strings.Index(head[i:], ":begin -->")
		if j < 0 {
			break
		}
		n := head[i+5 : i+j]
		end := "<!-- " + n + ":end -->"
		k := strings.Index(head, end)
		if k < 0 {
			break
		}
		sections[n] = head[i : k+len(end)]
		order = append(order, n)
		head = head[:i] + head[k+len(end):]
	}
	head = strings.TrimRight(head, "\n") + "\n"
	if name == "" {
		head = text
	} else {
		if _, ok := sections[name]; !ok {
			order = append(order, name)
		}
		sections[name] = "<!-- " + name + ":begin -->\n" + text + "<!-- " + name + ":end -->"
	}
	out := strings.TrimRight(head, "\n") + "\n"
	for _, n := range order {
		out += "\n" + sections[n] + "\n"
	}
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

func renderTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| scenario | threat | expected | actual | stage | exit | reason |\n|---|---|---|---|---|---|---|\n")
	shouldBlock, blocked, allowOK, allowN := 0, 0, 0, 0
	for _, r := range rows {
		actual := r.actual
		if !r.ok {
			actual += " ✗"
		}
		stage := r.stage
		if stage == "" {
			stage = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %d | %s |\n", r.scenario, r.threat, r.expected, actual, stage, r.exit,
			strings.ReplaceAll(r.reason, "|", "\\|"))
		if r.expected == "DENIED" {
			shouldBlock++
			if r.actual == "DENIED" {
				blocked++
			}
		} else {
			allowN++
			if r.actual == "ALLOWED" {
				allowOK++
			}
		}
	}
	fmt.Fprintf(&b, "\n**Coverage: %d/%d scenarios that should be blocked were blocked; %d/%d controls that should be allowed were allowed.**\n", blocked, shouldBlock, allowOK, allowN)
	return b.String()
}
