package release_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
	"github.com/pullgate/pullgate/verify/release"
)

func TestReleaseHappyPath(t *testing.T) {
	e := newEnv(t, attesttest.ReleaseOptions{})
	if r := e.chain(e.set()); !r.OK {
		t.Fatalf("chain: %v", r.Err())
	}
	if r := release.CheckMBOM(e.set(), e.layers(), release.MBOMOptions{Tensors: e.tensors(), RequireTensors: true}); !r.OK {
		t.Fatalf("mbom: %v", r.Err())
	}
	for _, k := range attest.Kinds {
		fsys := os.DirFS(e.r.Dir)
		if k == attest.KindMBOM {
			fsys = os.DirFS(filepath.Join(e.r.Dir, "model"))
		}
		if r := release.CheckFiles(e.atts[k], fsys); !r.OK {
			t.Fatalf("files %s: %v", k, r.Err())
		}
	}
	// Signing times consistent with createdAt pass too.
	atts := e.set()
	for i := range atts {
		atts[i].SignedAt = base.Add(time.Duration(i)*time.Minute + 30*time.Second)
	}
	if r := e.chain(atts); !r.OK {
		t.Fatalf("chain with signing times: %v", r.Err())
	}
}

type tamper struct {
	name string
	// run mutates and checks; it returns the report and the exact failure
	// (code and reason) the report must contain.
	run func(e *env) (release.Report, string, string)
	opt attesttest.ReleaseOptions
}

func editFile(e *env, rel string) {
	p := filepath.Join(e.r.Dir, filepath.FromSlash(rel))
	b, err := os.ReadFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, []byte("# tampered\n")...), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func fileHash(e *env, rel string) string {
	b, err := os.ReadFile(filepath.Join(e.r.Dir, filepath.FromSlash(rel)))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimPrefix(sha(b), "sha256:")
}

func recorded(e *env, k attest.Kind, rel string) string {
	p, _ := attest.DecodePredicate(e.atts[k].PredicateType, e.atts[k].Predicate)
	for _, f := range release.RecordedFiles(p) {
		if f.Path == rel {
			return f.SHA256
		}
	}
	e.t.Fatalf("%s records no %s", k, rel)
	return ""
}

// fileTamper: a file edited after it was attested.
func fileTamper(k attest.Kind, rel string) tamper {
	return tamper{name: "file edited after attestation: " + string(k) + " " + rel, run: func(e *env) (release.Report, string, string) {
		root, inRoot := e.r.Dir, rel
		if k == attest.KindMBOM {
			root = filepath.Join(e.r.Dir, "model")
			rel = strings.TrimPrefix(rel, "model/")
		}
		want := recorded(e, k, rel)
		editFile(e, inRoot)
		got := fileHash(e, inRoot)
		return release.CheckFiles(e.atts[k], os.DirFS(root)), release.CodeDigestMismatch,
			"files: " + string(k) + " " + e.digest(k) + ": file " + rel + " has sha256:" + got + ", the attestation records sha256:" + want
	}}
}

func tamperCases() []tamper {
	var cs []tamper
	for _, f := range []struct {
		k   attest.Kind
		rel string
	}{
		{attest.KindPrompt, "prompt/system.txt"}, {attest.KindPrompt, "prompt/templates/base.txt"},
		{attest.KindPrompt, "prompt/tools/search.json"}, {attest.KindPrompt, "prompt/safety.yaml"},
		{attest.KindCorpus, "corpus/docs/a.md"}, {attest.KindCorpus, "corpus/manifest.json"},
		{attest.KindCorpus, "corpus/chunking.yaml"}, {attest.KindCorpus, "corpus/embedding.yaml"},
		{attest.KindEval, "eval/bench.jsonl"}, {attest.KindEval, "eval/results.json"},
		{attest.KindRoute, "route/route.yaml"}, {attest.KindSLO, "slo/profile.json"},
		{attest.KindMBOM, "model/tokenizer.json"},
	} {
		cs = append(cs, fileTamper(f.k, f.rel))
	}
	cs = append(cs,
		tamper{name: "attested file deleted", run: func(e *env) (release.Report, string, string) {
			os.Remove(filepath.Join(e.r.Dir, "prompt", "safety.yaml"))
			return release.CheckFiles(e.atts[attest.KindPrompt], os.DirFS(e.r.Dir)), release.CodeMissingFile,
				"files: prompt " + e.digest(attest.KindPrompt) + ": file prompt/safety.yaml is missing"
		}},
		tamper{name: "llmsa forgery: prompt edited, re-attested, back-dated and signed by an untrusted key", run: func(e *env) (release.Report, string, string) {
			want := recorded(e, attest.KindPrompt, "prompt/system.txt")
			editFile(e, "prompt/system.txt")
			forged, err := attest.Create(attest.KindPrompt, filepath.Join(e.r.Dir, "prompt.yaml"), attest.CreateOptions{Time: base.Add(-time.Hour)})
			if err != nil {
				e.t.Fatal(err)
			}
			if _, ok := e.verified(forged, e.attacker); ok {
				e.t.Fatal("a statement signed by an untrusted key verified")
			}
			// The forged statement is not evidence; the trusted prompt
			// statement no longer matches the file being served.
			if r := e.chain(e.set()); !r.OK {
				e.t.Fatalf("chain over trusted statements: %v", r.Err())
			}
			return release.CheckFiles(e.atts[attest.KindPrompt], os.DirFS(e.r.Dir)), release.CodeDigestMismatch,
				"files: prompt " + e.digest(attest.KindPrompt) + ": file prompt/system.txt has sha256:" + fileHash(e, "prompt/system.txt") + ", the attestation records sha256:" + want
		}},
		tamper{name: "prompt re-signed by an untrusted key: missing link", run: func(e *env) (release.Report, string, string) {
			atts := e.without(attest.KindPrompt)
			if a, ok := e.verified(e.r.Statements[attest.KindPrompt], e.attacker); ok {
				atts = append(atts, a)
			}
			return e.chain(atts), release.CodeMissingLink,
				"chain llm-release: " + label(attest.KindEval, e.digest(attest.KindEval)) + " references prompt " + e.digest(attest.KindPrompt) + " which is not present or not signed by a trusted signer"
		}},
		tamper{name: "eval re-signed by an untrusted key: missing link", run: func(e *env) (release.Report, string, string) {
			atts := e.without(attest.KindEval)
			if a, ok := e.verified(e.r.Statements[attest.KindEval], e.attacker); ok {
				atts = append(atts, a)
			}
			return e.chain(atts), release.CodeMissingLink,
				"chain llm-release: " + label(attest.KindRoute, e.digest(attest.KindRoute)) + " references eval " + e.digest(attest.KindEval) + " which is not present or not signed by a trusted signer"
		}},
		tamper{name: "route missing: missing link", run: func(e *env) (release.Report, string, string) {
			return e.chain(e.without(attest.KindRoute)), release.CodeMissingLink,
				"chain llm-release: " + label(attest.KindSLO, e.digest(attest.KindSLO)) + " references route " + e.digest(attest.KindRoute) + " which is not present or not signed by a trusted signer"
		}},
		tamper{name: "corpus missing: missing link", run: func(e *env) (release.Report, string, string) {
			return e.chain(e.without(attest.KindCorpus)), release.CodeMissingLink,
				"chain llm-release: " + label(attest.KindEval, e.digest(attest.KindEval)) + " references corpus " + e.digest(attest.KindCorpus) + " which is not present or not signed by a trusted signer"
		}},
		tamper{name: "no slo", run: func(e *env) (release.Report, string, string) {
			return e.chain(e.without(attest.KindSLO)), release.CodeMissing,
				"chain llm-release: no verified slo statement (https://pullgate.dev/attestation/slo/v1) for the served digest"
		}},
		tamper{name: "signatures replayed onto another digest", run: func(e *env) (release.Report, string, string) {
			other := "sha256:" + strings.Repeat("3", 64)
			var atts []verify.Attestation
			for _, k := range attest.Kinds {
				b, _ := attestSign(e, e.r.Statements[k])
				if _, ok := e.verifyBundle(b, other); ok {
					e.t.Fatalf("%s verified for a digest it does not name", k)
				}
			}
			// Even if a caller passed them along, they are not about other.
			atts = e.set()
			return release.Chain(release.ChainLLMRelease, atts, release.ChainOptions{Subject: digest.Digest(other), Now: func() time.Time { return now }}),
				release.CodeMissing,
				"chain llm-release: no verified slo statement (https://pullgate.dev/attestation/slo/v1) for the served digest (0 malformed, 5 not about the served digest)"
		}},
		tamper{name: "back-dated eval older than its prompt", run: func(e *env) (release.Report, string, string) {
			_, ev, eva := e.create("eval-old", attest.KindEval, evalCfg(-60, e.digest(attest.KindPrompt), e.digest(attest.KindCorpus), "eval/results.json"))
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(10, ev))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(11, rt))
			return e.chain([]verify.Attestation{e.atts[attest.KindPrompt], e.atts[attest.KindCorpus], eva, rta, sloa}), release.CodeTemporalOrder,
				"chain llm-release: " + label(attest.KindEval, ev) + " (createdAt " + at(-60) + ") is older than the " + label(attest.KindPrompt, e.digest(attest.KindPrompt)) + " it references (createdAt " + at(0) + ")"
		}},
		tamper{name: "back-dated route older than its eval", run: func(e *env) (release.Report, string, string) {
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(1, e.digest(attest.KindEval)))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(11, rt))
			return e.chain(append(e.without(attest.KindRoute, attest.KindSLO), rta, sloa)), release.CodeTemporalOrder,
				"chain llm-release: " + label(attest.KindRoute, rt) + " (createdAt " + at(1) + ") is older than the " + label(attest.KindEval, e.digest(attest.KindEval)) + " it references (createdAt " + at(2) + ")"
		}},
		tamper{name: "createdAt after the verified signing time", run: func(e *env) (release.Report, string, string) {
			atts := e.set()
			signed := base.Add(-time.Hour)
			for i := range atts {
				if atts[i].PredicateType == attest.KindRoute.PredicateType() {
					atts[i].SignedAt = signed
				}
			}
			return e.chain(atts), release.CodeFutureDated,
				"chain llm-release: " + label(attest.KindRoute, e.digest(attest.KindRoute)) + " claims createdAt " + at(3) + ", after its verified signing time " + signed.Format(time.RFC3339)
		}},
		tamper{name: "route signed before its eval was signed", run: func(e *env) (release.Report, string, string) {
			atts := e.set()
			for i := range atts {
				switch atts[i].PredicateType {
				case attest.KindEval.PredicateType():
					atts[i].SignedAt = base.Add(5 * time.Hour)
				case attest.KindRoute.PredicateType():
					atts[i].SignedAt = base.Add(4 * time.Hour)
				}
			}
			return e.chain(atts), release.CodeTemporalOrder,
				"chain llm-release: " + label(attest.KindRoute, e.digest(attest.KindRoute)) + " was signed at " + base.Add(4*time.Hour).Format(time.RFC3339) + ", before the " + label(attest.KindEval, e.digest(attest.KindEval)) + " it references was signed (" + base.Add(5*time.Hour).Format(time.RFC3339) + ")"
		}},
		tamper{name: "future-dated slo", run: func(e *env) (release.Report, string, string) {
			_, s, sa := e.create("slo2", attest.KindSLO, sloCfg(60*24*30, e.digest(attest.KindRoute)))
			return e.chain(append(e.set(), sa)), release.CodeFutureDated,
				"chain llm-release: " + label(attest.KindSLO, s) + " claims createdAt " + at(60*24*30) + ", in the future"
		}},
		tamper{name: "wrong link type: route references a corpus", run: func(e *env) (release.Report, string, string) {
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(10, e.digest(attest.KindCorpus)))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(11, rt))
			return e.chain(append(e.without(attest.KindRoute, attest.KindSLO), rta, sloa)), release.CodeWrongLinkType,
				"chain llm-release: " + label(attest.KindRoute, rt) + " references " + e.digest(attest.KindCorpus) + " which is a corpus statement, expected eval"
		}},
		tamper{name: "wrong link type: slo skips the route", run: func(e *env) (release.Report, string, string) {
			_, s, sa := e.create("slo2", attest.KindSLO, sloCfg(11, e.digest(attest.KindEval)))
			return e.chain(append(e.without(attest.KindSLO), sa)), release.CodeWrongLinkType,
				"chain llm-release: " + label(attest.KindSLO, s) + " references " + e.digest(attest.KindEval) + " which is a eval statement, expected route"
		}},
		tamper{name: "wrong link type: eval's prompt is a corpus", run: func(e *env) (release.Report, string, string) {
			_, ev, eva := e.create("eval2", attest.KindEval, evalCfg(10, e.digest(attest.KindCorpus), "", "eval/results.json"))
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(11, ev))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(12, rt))
			return e.chain([]verify.Attestation{e.atts[attest.KindCorpus], eva, rta, sloa}), release.CodeWrongLinkType,
				"chain llm-release: " + label(attest.KindEval, ev) + " references " + e.digest(attest.KindCorpus) + " which is a corpus statement, expected prompt"
		}},
		tamper{name: "eval thresholds fail", opt: attesttest.ReleaseOptions{Metrics: map[string]float64{"accuracy": 0.95, "toxicity": 0.2}},
			run: func(e *env) (release.Report, string, string) {
				return e.chain(e.set()), release.CodeEvalFailed,
					"chain llm-release: " + label(attest.KindEval, e.digest(attest.KindEval)) + " did not pass: toxicity 0.2 > max 0.01"
			}},
		tamper{name: "eval regression on two metrics", opt: attesttest.ReleaseOptions{Metrics: map[string]float64{"accuracy": 0.5, "toxicity": 0.2}},
			run: func(e *env) (release.Report, string, string) {
				return e.chain(e.set()), release.CodeEvalFailed,
					"chain llm-release: " + label(attest.KindEval, e.digest(attest.KindEval)) + " did not pass: accuracy 0.5 < min 0.9, toxicity 0.2 > max 0.01"
			}},
		tamper{name: "eval with forged passed (signed by trusted key) is malformed", run: func(e *env) (release.Report, string, string) {
			var st map[string]any
			json.Unmarshal(e.r.Statements[attest.KindEval], &st)
			p := st["predicate"].(map[string]any)
			p["metrics"].(map[string]any)["toxicity"] = 0.5
			for _, th := range p["thresholds"].([]any) {
				if th.(map[string]any)["metric"] == "toxicity" {
					th.(map[string]any)["value"] = 0.5
				}
			}
			forged, _ := attest.MarshalCanonical(st)
			if _, err := signWith(forged, e.ci); err == nil {
				e.t.Fatal("attest.Sign signed an inconsistent eval")
			}
			fb, err := rawSign(forged, e.ci)
			if err != nil {
				e.t.Fatal(err)
			}
			fa, ok := e.verifyBundle(fb, artifact)
			if !ok {
				e.t.Fatal("forged eval did not verify")
			}
			fd := attest.StatementDigest(forged)
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(10, fd))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(11, rt))
			return e.chain([]verify.Attestation{e.atts[attest.KindPrompt], e.atts[attest.KindCorpus], fa, rta, sloa}), release.CodeMalformed,
				"chain llm-release: " + label(attest.KindRoute, rt) + " references eval " + fd + " whose predicate is invalid: eval predicate: thresholds: toxicity passed=true contradicts its bounds (toxicity 0.5 > max 0.01)"
		}},
		tamper{name: "stale eval referenced by a new route", run: func(e *env) (release.Report, string, string) {
			_, ev2, eva2 := e.create("eval2", attest.KindEval, evalCfg(10, e.digest(attest.KindPrompt), e.digest(attest.KindCorpus), "eval/results.json"))
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(11, e.digest(attest.KindEval)))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(12, rt))
			return e.chain(append(e.set(), eva2, rta, sloa)), release.CodeStaleEval,
				"chain llm-release: " + label(attest.KindRoute, rt) + " references " + label(attest.KindEval, e.digest(attest.KindEval)) + " (createdAt " + at(2) + "), but " + label(attest.KindEval, ev2) + ` for prompt "support-bot" is newer (createdAt ` + at(10) + ")"
		}},
		tamper{name: "system prompt changed after the eval and re-attested", run: func(e *env) (release.Report, string, string) {
			editFile(e, "prompt/system.txt")
			_, p2, pa2 := e.create("prompt2", attest.KindPrompt, common("support-bot", 10)+"systemPrompts: [prompt/system.txt]\n")
			return e.chain(append(e.set(), pa2)), release.CodeSuperseded,
				"chain llm-release: " + label(attest.KindEval, e.digest(attest.KindEval)) + " evaluated " + label(attest.KindPrompt, e.digest(attest.KindPrompt)) + " (createdAt " + at(0) + "), but " + label(attest.KindPrompt, p2) + ` "support-bot" is newer (createdAt ` + at(10) + ") and was not evaluated"
		}},
		tamper{name: "corpus changed after the eval and re-attested", run: func(e *env) (release.Report, string, string) {
			editFile(e, "corpus/docs/b.md")
			_, c2, ca2 := e.create("corpus2", attest.KindCorpus, common("support-docs", 10)+"documents: [corpus/docs]\n")
			return e.chain(append(e.set(), ca2)), release.CodeSuperseded,
				"chain llm-release: " + label(attest.KindEval, e.digest(attest.KindEval)) + " evaluated " + label(attest.KindCorpus, e.digest(attest.KindCorpus)) + " (createdAt " + at(1) + "), but " + label(attest.KindCorpus, c2) + ` "support-docs" is newer (createdAt ` + at(10) + ") and was not evaluated"
		}},
		tamper{name: "eval skipped the attested corpus", run: func(e *env) (release.Report, string, string) {
			_, ev, eva := e.create("eval2", attest.KindEval, evalCfg(10, e.digest(attest.KindPrompt), "", "eval/results.json"))
			_, rt, rta := e.create("route2", attest.KindRoute, routeCfg(11, ev))
			_, _, sloa := e.create("slo2", attest.KindSLO, sloCfg(12, rt))
			return e.chain([]verify.Attestation{e.atts[attest.KindPrompt], e.atts[attest.KindCorpus], eva, rta, sloa}), release.CodeSuperseded,
				"chain llm-release: " + label(attest.KindEval, ev) + " evaluated no corpus, but " + label(attest.KindCorpus, e.digest(attest.KindCorpus)) + " is attested for the served digest"
		}},
		tamper{name: "unknown chain", run: func(e *env) (release.Report, string, string) {
			return release.Chain("llm-relase", e.set(), release.ChainOptions{}), release.CodeUnsupported,
				`chain llm-relase: unknown chain "llm-relase" (supported: llm-release)`
		}},
	)
	cs = append(cs, mbomCases()...)
	cs = append(cs, openSSFCases()...)
	return cs
}

func attestSign(e *env, stmt []byte) ([]byte, error) {
	return signWith(stmt, e.ci)
}

func TestTamperSuite(t *testing.T) {
	cases := tamperCases()
	if len(cases) < 30 {
		t.Fatalf("only %d tamper cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opt)
			r, code, reason := c.run(e)
			if r.OK {
				t.Fatalf("report passed; want %s: %s", code, reason)
			}
			for _, f := range r.Failures() {
				if f.Code == code && f.Reason == reason {
					return
				}
			}
			t.Fatalf("want failure\n  %s: %s\ngot\n  %s", code, reason, strings.Join(codesAndReasons(r), "\n  "))
		})
	}
}

func codesAndReasons(r release.Report) []string {
	var out []string
	for _, f := range r.Failures() {
		out = append(out, f.Code+": "+f.Reason)
	}
	return out
}
