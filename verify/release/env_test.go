package release_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/attest/attesttest"
	"github.com/pullgate/pullgate/verify/release"
)

const artifact = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

var (
	base = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	now  = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
)

// env is one release, signed by the trusted "ci" key, verified with
// sigstore-go against trust that holds only "ci" (as verify.Collect does).
type env struct {
	t        testing.TB
	r        *attesttest.Release
	ci       *ecdsa.PrivateKey
	attacker *ecdsa.PrivateKey
	atts     map[attest.Kind]verify.Attestation
}

func newEnv(t testing.TB, o attesttest.ReleaseOptions) *env {
	t.Helper()
	if o.Subject == "" {
		o.Subject = artifact
	}
	o.Base = base
	r, err := attesttest.WriteRelease(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	ci, _, err := attesttest.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	attacker, _, _ := attesttest.NewKey()
	e := &env{t: t, r: r, ci: ci, attacker: attacker, atts: map[attest.Kind]verify.Attestation{}}
	for _, k := range attest.Kinds {
		a, ok := e.verified(r.Statements[k], ci)
		if !ok {
			t.Fatalf("%s does not verify", k)
		}
		e.atts[k] = a
	}
	return e
}

// verified signs stmt with key and returns what verification against the
// trusted key yields for the served artifact; false when it is excluded.
func (e *env) verified(stmt []byte, key crypto.Signer) (verify.Attestation, bool) {
	e.t.Helper()
	b, err := attest.Sign(context.Background(), stmt, attest.SignOptions{Signer: key})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.verifyBundle(b, artifact)
}

func (e *env) verifyBundle(b []byte, subject string) (verify.Attestation, bool) {
	a, err := attesttest.Verify(b, map[string]crypto.PublicKey{"ci": e.ci.Public()}, digest.Digest(subject))
	if err != nil {
		return verify.Attestation{}, false
	}
	return *a, true
}

func (e *env) digest(k attest.Kind) string { return attest.StatementDigest(e.r.Statements[k]) }

// set returns the verified attestations of the given kinds (all when none).
func (e *env) set(kinds ...attest.Kind) []verify.Attestation {
	if len(kinds) == 0 {
		kinds = attest.Kinds
	}
	var out []verify.Attestation
	for _, k := range kinds {
		out = append(out, e.atts[k])
	}
	return out
}

func (e *env) without(drop ...attest.Kind) []verify.Attestation {
	var out []verify.Attestation
	for _, k := range attest.Kinds {
		keep := true
		for _, d := range drop {
			keep = keep && d != k
		}
		if keep {
			out = append(out, e.atts[k])
		}
	}
	return out
}

// create makes a statement from cfg in the release directory (signed by ci,
// verified) and returns its bytes, digest and attestation.
func (e *env) create(name string, k attest.Kind, cfg string) ([]byte, string, verify.Attestation) {
	e.t.Helper()
	st, err := attesttest.CreateNamed(e.r.Dir, name, k, cfg)
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	a, ok := e.verified(st, e.ci)
	if !ok {
		e.t.Fatalf("%s does not verify", name)
	}
	return st, attest.StatementDigest(st), a
}

func at(min int) string { return base.Add(time.Duration(min) * time.Minute).Format(time.RFC3339) }

func common(name string, min int) string {
	return fmt.Sprintf("name: %s\ncreated: %s\nsubjects: [%q]\n", name, at(min), artifact)
}

func evalCfg(min int, prompt, corpus, results string) string {
	c := common("support-bot-eval", min) + "promptStatement: " + prompt + "\n"
	if corpus != "" {
		c += "corpusStatement: " + corpus + "\n"
	}
	return c + "benchmark: [eval/bench.jsonl]\nresults: " + results + "\nthresholds:\n  - {metric: accuracy, min: 0.9}\n  - {metric: toxicity, max: 0.01}\n"
}

func routeCfg(min int, eval string) string {
	return common("support-bot-route", min) + "evalStatement: " + eval + "\nconfigs: [route/route.yaml]\n"
}

func sloCfg(min int, route string) string {
	return common("support-bot-slo", min) + "routeStatement: " + route + "\nbudgets: {latencyP95Ms: 800}\n"
}

func (e *env) chain(atts []verify.Attestation) release.Report {
	return release.Chain(release.ChainLLMRelease, atts, release.ChainOptions{Subject: digest.Digest(artifact), Now: func() time.Time { return now }})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// layers are the served artifact's layers: one per model file.
func (e *env) layers() []release.Layer {
	var out []release.Layer
	for title, b := range e.r.Model {
		out = append(out, release.Layer{Digest: sha(b), Size: int64(len(b)), Title: title})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Title < out[j].Title })
	return out
}

func (e *env) tensors() map[string][]attest.Tensor {
	return map[string][]attest.Tensor{"model.safetensors": append([]attest.Tensor(nil), e.r.Tensors...)}
}

func label(k attest.Kind, d string) string { return string(k) + " " + d }
