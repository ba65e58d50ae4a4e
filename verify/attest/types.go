package attest

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pullgate/pullgate/verify/content"
)

// Media and statement types.
const (
	// StatementTypeV1 is the in-toto Statement v1 `_type`.
	StatementTypeV1 = "https://in-toto.io/Statement/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// BundleMediaType is the Sigstore bundle v0.3 media type; it is also the
	// artifactType and layer media type of a pushed referrer (as cosign v3).
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// OpenSSFModelSigningType is the OpenSSF model signing (OMS) v1.0
	// predicate type, which pullgate verifies but does not produce.
	OpenSSFModelSigningType = "https://model_signing/signature/v1.0"
)

// Kind names a pullgate attestation kind.
type Kind string

// The pullgate attestation kinds, in chain order.
const (
	KindPrompt Kind = "prompt"
	KindCorpus Kind = "corpus"
	KindEval   Kind = "eval"
	KindRoute  Kind = "route"
	KindSLO    Kind = "slo"
	KindMBOM   Kind = "mbom"
)

// Kinds lists every kind.
var Kinds = []Kind{KindPrompt, KindCorpus, KindEval, KindRoute, KindSLO, KindMBOM}

const predicatePrefix = "https://pullgate.dev/attestation/"

// PredicateType returns the predicate type URI of a kind,
// https://pullgate.dev/attestation/<kind>/v1.
func (k Kind) PredicateType() string { return predicatePrefix + string(k) + "/v1" }

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// ParseKind accepts a kind name ("eval") and returns it, or an error listing
// the valid names.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(strings.TrimSpace(s)))
	if !k.Valid() {
		return "", fmt.Errorf("unknown attestation kind %q (want one of prompt, corpus, eval, route, slo, mbom)", s)
	}
	return k, nil
}

// KindOf returns the kind of a pullgate predicate type URI.
func KindOf(predicateType string) (Kind, bool) {
	for _, k := range Kinds {
		if k.PredicateType() == predicateType {
			return k, true
		}
	}
	return "", false
}

// Statement is an in-toto Statement v1. Field order is the serialization
// order.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     any       `json:"predicate"`
}

// Subject is an in-toto resource descriptor as used in statement subjects.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Common is the header every pullgate predicate starts with.
type Common struct {
	// Name identifies the component (e.g. "support-bot"); the chain check
	// uses it to find newer statements of the same component.
	Name string `json:"name"`
	// Version is free-form release information.
	Version string `json:"version,omitempty"`
	// CreatedAt is when the statement was created (RFC 3339, UTC, seconds).
	CreatedAt string `json:"createdAt"`
}

// File is one hashed file. Path is relative to the config's root, with "/"
// separators.
type File struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// PromptPredicate is the predicate of https://pullgate.dev/attestation/prompt/v1.
type PromptPredicate struct {
	Common
	SystemPrompts  []File `json:"systemPrompts"`
	Templates      []File `json:"templates,omitempty"`
	ToolSchemas    []File `json:"toolSchemas,omitempty"`
	SafetyPolicies []File `json:"safetyPolicies,omitempty"`
}

// CorpusPredicate is the predicate of https://pullgate.dev/attestation/corpus/v1.
type CorpusPredicate struct {
	Common
	Documents       []File `json:"documents,omitempty"`
	Manifests       []File `json:"manifests,omitempty"`
	ChunkingConfig  *File  `json:"chunkingConfig,omitempty"`
	EmbeddingConfig *File  `json:"embeddingConfig,omitempty"`
	EmbeddingModel  string `json:"embeddingModel,omitempty"`
}

// EvalPredicate is the predicate of https://pullgate.dev/attestation/eval/v1.
type EvalPredicate struct {
	Common
	Suite string `json:"suite,omitempty"`
	// PromptStatement and CorpusStatement are the digests (sha256:<hex>) of
	// the exact statement bytes that were evaluated.
	PromptStatement string `json:"promptStatement"`
	CorpusStatement string `json:"corpusStatement,omitempty"`
	Benchmark       []File `json:"benchmark"`
	Results         File   `json:"results"`
	// Metrics are read from the results file.
	Metrics    map[string]float64 `json:"metrics"`
	Thresholds []Threshold        `json:"thresholds"`
	// Passed is true when every threshold holds; computed, never configured.
	Passed bool `json:"passed"`
}

// Threshold is a bound on one metric and its outcome.
type Threshold struct {
	Metric string   `json:"metric"`
	Min    *float64 `json:"min,omitempty"`
	Max    *float64 `json:"max,omitempty"`
	Value  float64  `json:"value"`
	Passed bool     `json:"passed"`
}

// Holds reports whether v satisfies the bound.
func (t Threshold) Holds(v float64) bool {
	if t.Min != nil && v < *t.Min {
		return false
	}
	if t.Max != nil && v > *t.Max {
		return false
	}
	return true
}

// Describe renders the bound, e.g. "toxicity 0.2 > max 0.01".
func (t Threshold) Describe(v float64) string {
	switch {
	case t.Min != nil && v < *t.Min:
		return fmt.Sprintf("%s %v < min %v", t.Metric, v, *t.Min)
	case t.Max != nil && v > *t.Max:
		return fmt.Sprintf("%s %v > max %v", t.Metric, v, *t.Max)
	}
	return fmt.Sprintf("%s %v within bounds", t.Metric, v)
}

// RoutePredicate is the predicate of https://pullgate.dev/attestation/route/v1.
type RoutePredicate struct {
	Common
	// EvalStatement is the digest of the eval statement the route relies on.
	EvalStatement string     `json:"evalStatement"`
	Configs       []File     `json:"configs"`
	Strategy      string     `json:"strategy,omitempty"`
	Providers     []Provider `json:"providers,omitempty"`
}

// Provider is one model a route may send requests to.
type Provider struct {
	Provider string `json:"provider"`
	Model    string `json:"model"`
}

// SLOPredicate is the predicate of https://pullgate.dev/attestation/slo/v1.
type SLOPredicate struct {
	Common
	// RouteStatement is the digest of the route statement the SLO covers.
	RouteStatement string  `json:"routeStatement"`
	Budgets        Budgets `json:"budgets"`
	Window         string  `json:"window,omitempty"`
	Profiles       []File  `json:"profiles,omitempty"`
}

// Budgets are the service-level objectives. Absent budgets are not set; at
// least one must be.
type Budgets struct {
	LatencyP50Ms       *float64 `json:"latencyP50Ms,omitempty"`
	LatencyP95Ms       *float64 `json:"latencyP95Ms,omitempty"`
	LatencyP99Ms       *float64 `json:"latencyP99Ms,omitempty"`
	TTFTP95Ms          *float64 `json:"ttftP95Ms,omitempty"`
	CostPer1kTokensUSD *float64 `json:"costPer1kTokensUsd,omitempty"`
	ErrorRate          *float64 `json:"errorRate,omitempty"`
}

// MBOMPredicate is the predicate of https://pullgate.dev/attestation/mbom/v1,
// the model bill of materials.
type MBOMPredicate struct {
	Common
	// BaseModel is ref@sha256:<hex>.
	BaseModel string `json:"baseModel"`
	// BaseModelNames are the Hugging Face Hub repository ids the base
	// model is known to loaders by ("meta-llama/Meta-Llama-3-8B"): what an
	// adapter's base_model_name_or_path or a config's _name_or_path names.
	// A rule with content.references.require: mbom admits a config's Hub
	// reference only when it is one of them (exactly, case-sensitively).
	// Optional, sorted, unique; omitted when empty (statements without it
	// are byte for byte what earlier versions wrote).
	BaseModelNames []string  `json:"baseModelNames,omitempty"`
	Adapters       []Adapter `json:"adapters,omitempty"`
	// RuntimeImage is ref@sha256:<hex>, when the model is served by one.
	RuntimeImage string `json:"runtimeImage,omitempty"`
	// Files is every file of the artifact (each is one OCI layer whose
	// org.opencontainers.image.title is Path).
	Files []MBOMFile `json:"files"`
}

// Adapter is a fine-tuning adapter the model is assembled from.
type Adapter struct {
	Name string `json:"name"`
	// Ref is ref@sha256:<hex>.
	Ref string `json:"ref"`
}

// MBOMFile is one file with, optionally, its expected tensors.
type MBOMFile struct {
	Path    string   `json:"path"`
	SHA256  string   `json:"sha256"`
	Size    int64    `json:"size"`
	Tensors []Tensor `json:"tensors,omitempty"`
}

// Tensor is one expected tensor: name, dtype and shape.
type Tensor struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
}

// Validation.

var (
	hexRE       = regexp.MustCompile(`^[0-9a-f]{64}$`)
	digestRE    = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	pinnedRefRE = regexp.MustCompile(`^[^\s@]+@sha256:[0-9a-f]{64}$`)
	metricRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

const maxText = 1024

// IsDigest reports whether s is sha256:<64 lowercase hex>.
func IsDigest(s string) bool { return digestRE.MatchString(s) }

func checkText(field, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%s is required", field)
		}
		return nil
	}
	if len(s) > maxText {
		return fmt.Errorf("%s is longer than %d bytes", field, maxText)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s contains a control character", field)
		}
	}
	return nil
}

// CheckPath validates a recorded file path: relative, "/"-separated, clean,
// without "." or ".." components.
func CheckPath(p string) error {
	if err := checkText("path", p, true); err != nil {
		return err
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
		return fmt.Errorf("path %q must be relative and use / separators", p)
	}
	if p == "." {
		return fmt.Errorf("path %q names the root, not a file", p)
	}
	if path.Clean(p) != p {
		return fmt.Errorf("path %q is not clean", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." || c == "." || c == "" {
			return fmt.Errorf("path %q escapes its root", p)
		}
	}
	return nil
}

func (c Common) validate() error {
	if err := checkText("name", c.Name, true); err != nil {
		return err
	}
	if err := checkText("version", c.Version, false); err != nil {
		return err
	}
	if _, err := ParseCreatedAt(c.CreatedAt); err != nil {
		return err
	}
	return nil
}

// ParseCreatedAt parses a predicate's createdAt (RFC 3339).
func ParseCreatedAt(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("createdAt is required")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("createdAt %q is not RFC 3339", s)
	}
	return t, nil
}

func (f File) validate(field string) error {
	if err := CheckPath(f.Path); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if !hexRE.MatchString(f.SHA256) {
		return fmt.Errorf("%s %s: sha256 must be 64 lowercase hex digits", field, f.Path)
	}
	if f.Size < 0 {
		return fmt.Errorf("%s %s: negative size", field, f.Path)
	}
	return nil
}

func validateFiles(field string, fs []File, required bool) error {
	if required && len(fs) == 0 {
		return fmt.Errorf("%s: at least one file is required", field)
	}
	seen := make(map[string]bool, len(fs))
	for _, f := range fs {
		if err := f.validate(field); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%s: duplicate path %q", field, f.Path)
		}
		seen[f.Path] = true
	}
	return nil
}

func checkDigestRef(field, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%s is required", field)
		}
		return nil
	}
	if !IsDigest(s) {
		return fmt.Errorf("%s %q must be sha256:<64 lowercase hex>", field, s)
	}
	return nil
}

func checkPinned(field, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("%s is required", field)
		}
		return nil
	}
	if len(s) > maxText || !pinnedRefRE.MatchString(s) {
		return fmt.Errorf("%s %q must be pinned as ref@sha256:<64 hex>", field, s)
	}
	return nil
}

func finite(field string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s is not a finite number", field)
	}
	return nil
}

// Validate checks the prompt predicate.
func (p *PromptPredicate) Validate() error {
	if err := p.Common.validate(); err != nil {
		return err
	}
	if err := validateFiles("systemPrompts", p.SystemPrompts, true); err != nil {
		return err
	}
	if err := validateFiles("templates", p.Templates, false); err != nil {
		return err
	}
	if err := validateFiles("toolSchemas", p.ToolSchemas, false); err != nil {
		return err
	}
	return validateFiles("safetyPolicies", p.SafetyPolicies, false)
}

// Validate checks the corpus predicate.
func (p *CorpusPredicate) Validate() error {
	if err := p.Common.validate(); err != nil {
		return err
	}
	if len(p.Documents)+len(p.Manifests) == 0 {
		return fmt.Errorf("corpus: at least one document or manifest is required")
	}
	if err := validateFiles("documents", p.Documents, false); err != nil {
		return err
	}
	if err := validateFiles("manifests", p.Manifests, false); err != nil {
		return err
	}
	if p.ChunkingConfig != nil {
		if err := p.ChunkingConfig.validate("chunkingConfig"); err != nil {
			return err
		}
	}
	if p.EmbeddingConfig != nil {
		if err := p.EmbeddingConfig.validate("embeddingConfig"); err != nil {
			return err
		}
	}
	return checkText("embeddingModel", p.EmbeddingModel, false)
}

// Validate checks the eval predicate, including that every threshold's value
// and outcome agree with the metrics and that Passed is their conjunction.
func (p *EvalPredicate) Validate() error {
	if err := p.Common.validate(); err != nil {
		return err
	}
	if err := checkText("suite", p.Suite, false); err != nil {
		return err
	}
	if err := checkDigestRef("promptStatement", p.PromptStatement, true); err != nil {
		return err
	}
	if err := checkDigestRef("corpusStatement", p.CorpusStatement, false); err != nil {
		return err
	}
	if err := validateFiles("benchmark", p.Benchmark, true); err != nil {
		return err
	}
	if err := p.Results.validate("results"); err != nil {
		return err
	}
	if len(p.Metrics) == 0 {
		return fmt.Errorf("metrics: at least one metric is required")
	}
	for k, v := range p.Metrics {
		if !metricRE.MatchString(k) {
			return fmt.Errorf("metrics: invalid metric name %q", k)
		}
		if err := finite("metrics."+k, v); err != nil {
			return err
		}
	}
	if len(p.Thresholds) == 0 {
		return fmt.Errorf("thresholds: at least one threshold is required")
	}
	all := true
	seen := map[string]bool{}
	for _, t := range p.Thresholds {
		if err := t.validate(); err != nil {
			return err
		}
		if seen[t.Metric] {
			return fmt.Errorf("thresholds: duplicate metric %q", t.Metric)
		}
		seen[t.Metric] = true
		v, ok := p.Metrics[t.Metric]
		if !ok {
			return fmt.Errorf("thresholds: metric %q has no value in metrics", t.Metric)
		}
		if v != t.Value {
			return fmt.Errorf("thresholds: %s value %v differs from metrics value %v", t.Metric, t.Value, v)
		}
		if t.Holds(v) != t.Passed {
			return fmt.Errorf("thresholds: %s passed=%v contradicts its bounds (%s)", t.Metric, t.Passed, t.Describe(v))
		}
		all = all && t.Passed
	}
	if p.Passed != all {
		return fmt.Errorf("passed=%v contradicts the thresholds (all passed: %v)", p.Passed, all)
	}
	return nil
}

func (t Threshold) validate() error {
	if !metricRE.MatchString(t.Metric) {
		return fmt.Errorf("thresholds: invalid metric name %q", t.Metric)
	}
	if t.Min == nil && t.Max == nil {
		return fmt.Errorf("thresholds: %s needs min or max", t.Metric)
	}
	if t.Min != nil {
		if err := finite("thresholds."+t.Metric+".min", *t.Min); err != nil {
			return err
		}
	}
	if t.Max != nil {
		if err := finite("thresholds."+t.Metric+".max", *t.Max); err != nil {
			return err
		}
	}
	if t.Min != nil && t.Max != nil && *t.Min > *t.Max {
		return fmt.Errorf("thresholds: %s min %v > max %v", t.Metric, *t.Min, *t.Max)
	}
	return finite("thresholds."+t.Metric+".value", t.Value)
}

// Validate checks the route predicate.
func (p *RoutePredicate) Validate() error {
	if err := p.Common.validate(); err != nil {
		return err
	}
	if err := checkDigestRef("evalStatement", p.EvalStatement, true); err != nil {
		return err
	}
	if err := validateFiles("configs", p.Configs, true); err != nil {
		return err
	}
	if err := checkText("strategy", p.Strategy, false); err != nil {
		return err
	}
	for i, pr := range p.Providers {
		if err := checkText(fmt.Sprintf("providers[%d].provider", i), pr.Provider, true); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("providers[%d].model", i), pr.Model, true); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks the SLO predicate.
func (p *SLOPredicate) Validate() error {
	if err := p.Common.validate(); err != nil {
		return err
	}
	if err := checkDigestRef("routeStatement", p.RouteStatement, true); err != nil {
		return err
	}
	if err := checkText("window", p.Window, false); err != nil {
		return err
	}
	if err := validateFiles("profiles", p.Profiles, false); err != nil {
		return err
	}
	return p.Budgets.validate()
}

func (b Budgets) validate() error {
	n := 0
	for _, x := range []struct {
		name string
		v    *float64
	}{
		{"latencyP50Ms", b.LatencyP50Ms}, {"latencyP95Ms", b.LatencyP95Ms}, {"latencyP99Ms", b.LatencyP99Ms},
		{"ttftP95Ms", b.TTFTP95Ms}, {"costPer1kTokensUsd", b.CostPer1kTokensUSD}, {"errorRate", b.ErrorRate},
	} {
		if x.v == nil {
			continue
		}
		n++
		if err := finite("budgets."+x.name, *x.v); err != nil {
			return err
		}
		if *x.v < 0 {
			return fmt.Errorf("budgets.%s must not be negative", x.name)
		}
	}
	if b.ErrorRate != nil && *b.ErrorRate > 1 {
		return fmt.Errorf("budgets.errorRate %v must be a fraction in [0,1]", *b.ErrorRate)
	}
	if n == 0 {
		return fmt.Errorf("budgets: at least one budget is required")
	}
	return nil
}

// Validate checks the MBOM predicate.
func (p *MBOMPredicate) Validate() error {
	if err := p.Common.validate(); err != nil {
		return err
	}
	if err := checkPinned("baseModel", p.BaseModel, true); err != nil {
		return err
	}
	if err := checkPinned("runtimeImage", p.RuntimeImage, false); err != nil {
		return err
	}
	for i, n := range p.BaseModelNames {
		if content.ClassifyReference(n) != content.RefHub {
			return fmt.Errorf("baseModelNames[%d]: %q is not a Hugging Face Hub repository id (namespace/name)", i, n)
		}
		if i > 0 && p.BaseModelNames[i-1] >= n {
			return fmt.Errorf("baseModelNames: not sorted and unique at %q", n)
		}
	}
	names := map[string]bool{}
	for i, a := range p.Adapters {
		if err := checkText(fmt.Sprintf("adapters[%d].name", i), a.Name, true); err != nil {
			return err
		}
		if names[a.Name] {
			return fmt.Errorf("adapters: duplicate name %q", a.Name)
		}
		names[a.Name] = true
		if err := checkPinned(fmt.Sprintf("adapters[%d].ref", i), a.Ref, true); err != nil {
			return err
		}
	}
	if len(p.Files) == 0 {
		return fmt.Errorf("files: at least one file is required")
	}
	seen := map[string]bool{}
	for _, f := range p.Files {
		if err := (File{Path: f.Path, SHA256: f.SHA256, Size: f.Size}).validate("files"); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("files: duplicate path %q", f.Path)
		}
		seen[f.Path] = true
		if err := validateTensors(f.Path, f.Tensors); err != nil {
			return err
		}
	}
	return nil
}

func validateTensors(file string, ts []Tensor) error {
	seen := map[string]bool{}
	for _, t := range ts {
		if err := checkText("tensor name in "+file, t.Name, true); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("files %s: duplicate tensor %q", file, t.Name)
		}
		seen[t.Name] = true
		if err := checkText("tensor dtype of "+t.Name, t.DType, true); err != nil {
			return err
		}
		for _, d := range t.Shape {
			if d < 0 {
				return fmt.Errorf("files %s: tensor %s has a negative dimension", file, t.Name)
			}
		}
	}
	return nil
}

func sortFiles(fs []File) {
	sort.Slice(fs, func(i, j int) bool { return fs[i].Path < fs[j].Path })
}

func sortTensors(ts []Tensor) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
}
