// Package policytest runs offline policy tests: YAML files that list
// artifacts (repository, digest, evidence fixtures) with the decision the
// policy must reach, like `kyverno test`. `pullgate policy test <dir>` calls
// Run. The file format is documented in docs/policy.md.
package policytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/policy"
	"github.com/pullgate/pullgate/verify"
)

// TestFileName is the name of test files Run looks for in a directory tree.
// Files ending in ".pgtest.yaml" are found too.
const TestFileName = "pullgate-test.yaml"

// File is one test file.
type File struct {
	// Policy is the policy file under test, relative to the test file.
	Policy string `yaml:"policy"`
	Cases  []Case `yaml:"cases"`
}

// Case is one artifact and the decision expected for it.
type Case struct {
	Name       string   `yaml:"name"`
	Repository string   `yaml:"repository"`
	Digest     string   `yaml:"digest"`  // default: sha256 of "case:<name>"
	Parents    []string `yaml:"parents"` // index digests whose evidence covers Digest
	// Evidence is what verify would have found, one entry per subject.
	Evidence        []Evidence `yaml:"evidence"`
	ContentFindings []string   `yaml:"contentFindings"`
	// Checks are results of external evaluators (chain, mbom).
	Checks []CheckFixture `yaml:"checks"`
	// Artifact is the artifact itself, for rules with require.conditions.
	Artifact *ArtifactFixture `yaml:"artifact"`
	// Signals are the answers of the providers the rule requires, by name.
	Signals map[string]SignalFixture `yaml:"signals"`
	// At is the decision time exceptions are judged at (default: now).
	At     *time.Time `yaml:"at"`
	Expect Expect     `yaml:"expect"`
}

// SignalFixture is what one provider answered about the case's digest.
type SignalFixture struct {
	Status    string                 `yaml:"status"` // done (default), pending or error
	Error     string                 `yaml:"error"`
	OnError   string                 `yaml:"onError"`
	OnPending string                 `yaml:"onPending"`
	Version   string                 `yaml:"version"` // default 1
	DBVersion string                 `yaml:"dbVersion"`
	Verdict   string                 `yaml:"verdict"`
	Findings  []policy.SignalFinding `yaml:"findings"`
	Facts     yaml.Node              `yaml:"facts"`
	// SignedBy: the answer carries a verified statement of the signal
	// predicate about the case's digest, signed by this trust name, saying
	// the same (status, verdict, findings, facts).
	SignedBy string `yaml:"signedBy"`
}

func (sf SignalFixture) signal(name string, subject digest.Digest) (*policy.Signal, error) {
	s := &policy.Signal{Provider: name, Status: sf.Status, Error: sf.Error, OnError: sf.OnError, OnPending: sf.OnPending,
		Version: sf.Version, DBVersion: sf.DBVersion, Verdict: sf.Verdict, Findings: sf.Findings}
	if s.Status == "" {
		s.Status = policy.SignalDone
	}
	if s.Version == "" {
		s.Version = "1"
	}
	switch s.Status {
	case policy.SignalDone, policy.SignalPending, policy.SignalError:
	default:
		return nil, fmt.Errorf("status %q: must be done, pending or error", s.Status)
	}
	if sf.Facts.Kind != 0 {
		var v any
		if err := sf.Facts.Decode(&v); err != nil {
			return nil, fmt.Errorf("facts: %v", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("facts: %v", err)
		}
		if err := json.Unmarshal(b, &s.Facts); err != nil {
			return nil, fmt.Errorf("facts must be a mapping: %v", err)
		}
	}
	if sf.SignedBy != "" {
		pred, err := json.Marshal(map[string]any{"provider": map[string]any{"name": name, "version": s.Version, "dbVersion": s.DBVersion},
			"status": s.Status, "verdict": s.Verdict, "findings": s.Findings, "facts": s.Facts})
		if err != nil {
			return nil, err
		}
		ed := fixtureDigest("signal", name, sf.SignedBy, string(pred))
		s.Evidence = []verify.Attestation{{Signer: sf.SignedBy, PredicateType: policy.SignalPredicateType, StatementType: "https://in-toto.io/Statement/v1",
			Predicate: pred, Subjects: []verify.Subject{{Name: "fixture", Digest: map[string]string{string(subject.Algorithm()): subject.Encoded()}}},
			Source: "fixture", Evidence: ed, Statement: ed}}
	}
	return s, nil
}

// ArtifactFixture is the manifest annotations and config blob of the
// case's artifact; it is read by policy.ReadArtifact, as the proxy reads
// the real ones.
type ArtifactFixture struct {
	Annotations map[string]string `yaml:"annotations"`
	// ConfigMediaType is the config descriptor's media type (default the
	// OCI image config; application/vnd.cncf.model.config.v1+json for a
	// ModelPack model).
	ConfigMediaType string `yaml:"configMediaType"`
	// Config is the config blob as a YAML/JSON value, e.g.
	// {config: {User: "1000", Env: [A=1]}, created: 2026-01-01T00:00:00Z}.
	Config yaml.Node `yaml:"config"`
	// Index makes the artifact an image index (no config).
	Index bool `yaml:"index"`
	// Now is the time conditions see (default the current time).
	Now time.Time `yaml:"now"`
}

// Evidence is a fixture for one verify.Result.
type Evidence struct {
	Subject      string        `yaml:"subject"` // default: the case digest
	Signatures   []Signature   `yaml:"signatures"`
	Attestations []Attestation `yaml:"attestations"`
	Failures     []Failure     `yaml:"failures"`
	// Found defaults to the number of signatures, attestations and failures.
	Found *int `yaml:"found"`
}

// Signature is a verified signature fixture.
type Signature struct {
	Signer   string `yaml:"signer"`
	Subject  string `yaml:"subject"` // default: the evidence subject
	Identity string `yaml:"identity"`
	Source   string `yaml:"source"`
}

// Attestation is a verified attestation fixture. Predicate is any YAML
// value (JSON is YAML too).
type Attestation struct {
	Signer        string    `yaml:"signer"`
	PredicateType string    `yaml:"predicateType"`
	StatementType string    `yaml:"statementType"` // default https://in-toto.io/Statement/v1
	Predicate     yaml.Node `yaml:"predicate"`
	// Subjects are the statement's subject digests (default: the evidence subject).
	Subjects []string  `yaml:"subjects"`
	SignedAt time.Time `yaml:"signedAt"`
	Source   string    `yaml:"source"`
	// Identity is a keyless signer's certificate identity (as for
	// signatures; k-of-n counts one identity once).
	Identity string `yaml:"identity"`
}

// Failure is a verify.Failure fixture; Kind is signature-invalid,
// digest-mismatch, malformed or fetch-error.
type Failure struct {
	Kind   string `yaml:"kind"`
	Source string `yaml:"source"`
	Reason string `yaml:"reason"`
}

// CheckFixture is an external check result (policy.Check).
type CheckFixture struct {
	Name     string `yaml:"name"`
	Passed   bool   `yaml:"passed"`
	Detail   string `yaml:"detail"`
	ExitCode int    `yaml:"exitCode"`
}

// Expect is the expected decision.
type Expect struct {
	Decision  string  `yaml:"decision"` // allow | deny | waived (required); audit-mode serves count as allow, waived ones as waived
	WouldDeny *bool   `yaml:"wouldDeny"`
	ExitCode  *int    `yaml:"exitCode"`
	Rule      *string `yaml:"rule"`
	// Reason must be a substring of one of the decision's reasons.
	Reason string `yaml:"reason"`
}

// Result is the outcome of one case.
type Result struct {
	File     string
	Case     string
	Passed   bool
	Problems []string
	Decision policy.Decision
}

// Run runs every test file under path (a test file or a directory searched
// recursively), prints a table to w and returns the number of failed
// cases. An error means the tests could not run (bad test file, invalid
// policy): the CLI exits 2.
func Run(path string, w io.Writer) (int, error) {
	files, err := Discover(path)
	if err != nil {
		return 0, err
	}
	if len(files) == 0 {
		return 0, fmt.Errorf("no %s or *.pgtest.yaml files under %s", TestFileName, path)
	}
	var all []Result
	for _, f := range files {
		rs, err := RunFile(f)
		if err != nil {
			return 0, err
		}
		all = append(all, rs...)
	}
	failed := Print(w, all)
	return failed, nil
}

// Discover lists test files under path.
func Discover(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (d.Name() == TestFileName || strings.HasSuffix(d.Name(), ".pgtest.yaml")) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Print writes the result table and returns the number of failures.
func Print(w io.Writer, results []Result) int {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tFILE\tCASE\tDECISION\tEXIT\tRULE\tDETAIL")
	failed := 0
	for _, r := range results {
		status := "PASS"
		if !r.Passed {
			status = "FAIL"
			failed++
		}
		dec := "deny"
		if r.Decision.Allowed {
			dec = "allow"
			if r.Decision.WouldDeny {
				dec = "allow(audit)"
			}
			if len(r.Decision.Waivers) > 0 {
				dec = "waived"
			}
		}
		detail := strings.Join(r.Problems, "; ")
		if r.Passed && len(r.Decision.Reasons) > 0 {
			detail = r.Decision.Reasons[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", status, r.File, r.Case, dec, r.Decision.ExitCode, r.Decision.Rule, oneLine(detail))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d passed, %d failed\n", len(results)-failed, failed)
	return failed
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// RunFile runs one test file.
func RunFile(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var tf File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if tf.Policy == "" {
		return nil, fmt.Errorf("%s: policy: is required (the policy file under test, relative to this file)", path)
	}
	if len(tf.Cases) == 0 {
		return nil, fmt.Errorf("%s: cases: is empty", path)
	}
	pp := tf.Policy
	if !filepath.IsAbs(pp) {
		pp = filepath.Join(filepath.Dir(path), pp)
	}
	pol, err := policy.Load(pp)
	if err != nil {
		return nil, fmt.Errorf("%s: policy %s: %w", path, tf.Policy, err)
	}
	var out []Result
	seen := map[string]bool{}
	for i, c := range tf.Cases {
		if c.Name == "" {
			return nil, fmt.Errorf("%s: cases[%d]: name is required", path, i)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s: case %q: duplicate name", path, c.Name)
		}
		seen[c.Name] = true
		in, err := c.input()
		if err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", path, c.Name, err)
		}
		if err := c.Expect.validate(); err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", path, c.Name, err)
		}
		at := time.Now()
		if c.At != nil {
			at = *c.At
			if in.Now.IsZero() {
				// the case's decision time is also the clock conditions
				// and Rego's time.now_ns read (artifact.now overrides it
				// for conditions)
				in.Now = at
			}
		}
		d := pol.Waive(pol.Evaluate(in), at)
		r := Result{File: path, Case: c.Name, Decision: d, Problems: c.Expect.compare(d)}
		r.Passed = len(r.Problems) == 0
		out = append(out, r)
	}
	return out, nil
}

func (e *Expect) validate() error {
	if e.Decision != "allow" && e.Decision != "deny" && e.Decision != "waived" {
		return fmt.Errorf("expect.decision must be allow, deny or waived, got %q", e.Decision)
	}
	return nil
}

func (e *Expect) compare(d policy.Decision) []string {
	var p []string
	got := "deny"
	switch {
	case d.Allowed && len(d.Waivers) > 0:
		got = "waived"
	case d.Allowed:
		got = "allow"
	}
	if got != e.Decision {
		msg := fmt.Sprintf("expected %s, got %s", e.Decision, got)
		if len(d.Reasons) > 0 {
			msg += " (" + strings.Join(d.Reasons, "; ") + ")"
		}
		p = append(p, msg)
	}
	if e.WouldDeny != nil && *e.WouldDeny != d.WouldDeny {
		p = append(p, fmt.Sprintf("expected wouldDeny %v, got %v", *e.WouldDeny, d.WouldDeny))
	}
	if e.ExitCode != nil {
		code := d.ExitCode
		if d.WouldDeny {
			code = d.DenyExitCode
		}
		if code != *e.ExitCode {
			p = append(p, fmt.Sprintf("expected exit code %d, got %d", *e.ExitCode, code))
		}
	}
	if e.Rule != nil && *e.Rule != d.Rule {
		p = append(p, fmt.Sprintf("expected rule %q, got %q", *e.Rule, d.Rule))
	}
	if e.Reason != "" {
		found := false
		for _, r := range d.Reasons {
			if strings.Contains(r, e.Reason) {
				found = true
			}
		}
		if !found {
			p = append(p, fmt.Sprintf("no reason contains %q (reasons: %q)", e.Reason, d.Reasons))
		}
	}
	return p
}

func parseDigest(s, what string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%s %q: %v", what, s, err)
	}
	return d, nil
}

func (c *Case) input() (policy.Input, error) {
	in := policy.Input{Repository: c.Repository, ContentFindings: c.ContentFindings}
	if c.Repository == "" {
		return in, errors.New("repository is required")
	}
	if c.Digest == "" {
		sum := sha256.Sum256([]byte("case:" + c.Name))
		in.Digest = digest.Digest("sha256:" + hex.EncodeToString(sum[:]))
	} else {
		d, err := parseDigest(c.Digest, "digest")
		if err != nil {
			return in, err
		}
		in.Digest = d
	}
	for _, p := range c.Parents {
		d, err := parseDigest(p, "parents")
		if err != nil {
			return in, err
		}
		in.Parents = append(in.Parents, d)
	}
	for i, ev := range c.Evidence {
		r, err := ev.result(in.Digest)
		if err != nil {
			return in, fmt.Errorf("evidence[%d]: %w", i, err)
		}
		in.Evidence = append(in.Evidence, r)
	}
	for _, ch := range c.Checks {
		if ch.Name == "" {
			return in, errors.New("checks: name is required")
		}
		in.Checks = append(in.Checks, policy.Check{Name: ch.Name, Passed: ch.Passed, Detail: ch.Detail, ExitCode: ch.ExitCode})
	}
	for name, sf := range c.Signals {
		s, err := sf.signal(name, in.Digest)
		if err != nil {
			return in, fmt.Errorf("signals.%s: %w", name, err)
		}
		if in.Signals == nil {
			in.Signals = map[string]*policy.Signal{}
		}
		in.Signals[name] = s
	}
	if c.Artifact != nil {
		a, err := c.Artifact.read(c.Repository, in.Digest)
		if err != nil {
			return in, fmt.Errorf("artifact: %w", err)
		}
		in.Artifact, in.Now = a, c.Artifact.Now
	}
	return in, nil
}

func (af *ArtifactFixture) read(repository string, d digest.Digest) (*policy.Artifact, error) {
	ct := af.ConfigMediaType
	if ct == "" {
		ct = policy.MediaTypeOCIConfig
	}
	cfg := []byte("{}")
	if af.Config.Kind != 0 {
		var v any
		if err := af.Config.Decode(&v); err != nil {
			return nil, fmt.Errorf("config: %v", err)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("config: %v", err)
		}
		cfg = b
	}
	cd := digest.FromBytes(cfg)
	mf := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": ct, "digest": cd, "size": len(cfg)}, "layers": []any{}}
	if af.Index {
		mf = map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{}}
	}
	if af.Annotations != nil {
		mf["annotations"] = af.Annotations
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return nil, err
	}
	upstreamName, _, _ := strings.Cut(repository, "/")
	return policy.ReadArtifact(policy.ArtifactSubject{Upstream: upstreamName, Repository: repository, Digest: d}, raw, af.Index, ct, cd, cfg)
}

func (ev *Evidence) result(caseDigest digest.Digest) (verify.Result, error) {
	subject := caseDigest
	if ev.Subject != "" {
		d, err := parseDigest(ev.Subject, "subject")
		if err != nil {
			return verify.Result{}, err
		}
		subject = d
	}
	r := verify.Result{Subject: subject}
	for i, s := range ev.Signatures {
		if s.Signer == "" {
			return r, fmt.Errorf("signatures[%d]: signer is required", i)
		}
		sub := subject
		if s.Subject != "" {
			d, err := parseDigest(s.Subject, "signature subject")
			if err != nil {
				return r, err
			}
			sub = d
		}
		src := s.Source
		if src == "" {
			src = "fixture"
		}
		r.Signatures = append(r.Signatures, verify.Signature{Signer: s.Signer, Subject: sub, Source: src, Identity: s.Identity,
			Evidence: fixtureDigest("signature", s.Signer, string(sub), fmt.Sprint(i))})
	}
	for i, a := range ev.Attestations {
		if a.Signer == "" || a.PredicateType == "" {
			return r, fmt.Errorf("attestations[%d]: signer and predicateType are required", i)
		}
		pred := json.RawMessage("{}")
		if a.Predicate.Kind != 0 {
			var v any
			if err := a.Predicate.Decode(&v); err != nil {
				return r, fmt.Errorf("attestations[%d].predicate: %v", i, err)
			}
			b, err := json.Marshal(v)
			if err != nil {
				return r, fmt.Errorf("attestations[%d].predicate: %v", i, err)
			}
			pred = b
		}
		subs := a.Subjects
		if len(subs) == 0 {
			subs = []string{string(subject)}
		}
		var vs []verify.Subject
		for _, s := range subs {
			d, err := parseDigest(s, "attestation subject")
			if err != nil {
				return r, err
			}
			vs = append(vs, verify.Subject{Name: "fixture", Digest: map[string]string{string(d.Algorithm()): d.Encoded()}})
		}
		st := a.StatementType
		if st == "" {
			st = "https://in-toto.io/Statement/v1"
		}
		src := a.Source
		if src == "" {
			src = "fixture"
		}
		ed := fixtureDigest("attestation", a.Signer, a.PredicateType, string(pred), fmt.Sprint(i))
		r.Attestations = append(r.Attestations, verify.Attestation{Signer: a.Signer, PredicateType: a.PredicateType, StatementType: st,
			Predicate: pred, Subjects: vs, Source: src, Evidence: ed, Statement: ed, SignedAt: a.SignedAt, Identity: a.Identity})
	}
	for i, f := range ev.Failures {
		k := verify.FailureKind(f.Kind)
		switch k {
		case verify.FailInvalid, verify.FailMismatch, verify.FailMalformed, verify.FailFetch:
		default:
			return r, fmt.Errorf("failures[%d].kind %q: must be %s, %s, %s or %s", i, f.Kind, verify.FailInvalid, verify.FailMismatch, verify.FailMalformed, verify.FailFetch)
		}
		src := f.Source
		if src == "" {
			src = "fixture"
		}
		r.Failures = append(r.Failures, verify.Failure{Kind: k, Source: src, Reason: f.Reason, Evidence: fixtureDigest("failure", f.Kind, f.Reason, fmt.Sprint(i))})
	}
	r.Found = len(r.Signatures) + len(r.Attestations) + len(r.Failures)
	if ev.Found != nil {
		r.Found = *ev.Found
	}
	return r, nil
}

func fixtureDigest(parts ...string) digest.Digest {
	return digest.FromString(strings.Join(parts, "\x00"))
}
