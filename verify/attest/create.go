package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/verify/strictjson"
)

// CreateOptions adjust Create.
type CreateOptions struct {
	// Time is the creation time recorded in the predicate. When zero, the
	// config's `created` is used, then SOURCE_DATE_EPOCH; with none of them
	// Create fails rather than embed the wall clock (output must be
	// reproducible).
	Time time.Time
	// Subjects are extra subject digests, `sha256:<hex>` or
	// `ref@sha256:<hex>`: the OCI artifact(s) the statement must bind to
	// (pullgate only counts attestations whose subject is the served digest).
	Subjects []string
}

const maxConfigSize = 1 << 20

// maxResultsSize bounds eval result files.
const maxResultsSize = 16 << 20

// Create reads a YAML config of the given kind, hashes the files it names
// (relative to the config's directory, or to its `root:`), and returns the
// in-toto Statement v1 as canonical JSON. The same config, files and time
// always give the same bytes.
func Create(kind Kind, configPath string, opts CreateOptions) ([]byte, error) {
	b, err := readLimited("config", configPath, maxConfigSize)
	if err != nil {
		return nil, err
	}
	return CreateFromConfig(kind, b, filepath.Dir(configPath), opts)
}

// CreateFromConfig is Create with the config's bytes given; baseDir is the
// directory relative paths are resolved against.
func CreateFromConfig(kind Kind, config []byte, baseDir string, opts CreateOptions) ([]byte, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("unknown attestation kind %q", kind)
	}
	var (
		cc   *configCommon
		body any
	)
	switch kind {
	case KindPrompt:
		c := &promptConfig{}
		cc, body = &c.configCommon, c
	case KindCorpus:
		c := &corpusConfig{}
		cc, body = &c.configCommon, c
	case KindEval:
		c := &evalConfig{}
		cc, body = &c.configCommon, c
	case KindRoute:
		c := &routeConfig{}
		cc, body = &c.configCommon, c
	case KindSLO:
		c := &sloConfig{}
		cc, body = &c.configCommon, c
	case KindMBOM:
		c := &mbomConfig{}
		cc, body = &c.configCommon, c
	}
	dec := yaml.NewDecoder(bytes.NewReader(config))
	dec.KnownFields(true)
	if err := dec.Decode(body); err != nil {
		return nil, fmt.Errorf("%s config: %w", kind, err)
	}
	created, err := resolveTime(opts.Time, cc.Created)
	if err != nil {
		return nil, fmt.Errorf("%s config: %w", kind, err)
	}
	root := baseDir
	if cc.Root != "" {
		if filepath.IsAbs(cc.Root) {
			root = cc.Root
		} else {
			root = filepath.Join(baseDir, filepath.FromSlash(cc.Root))
		}
	}
	b := &builder{
		kind: kind, files: newFileSet(root), baseDir: baseDir,
		common: Common{Name: cc.Name, Version: cc.Version, CreatedAt: created.Format(time.RFC3339)},
	}
	var pred interface{ Validate() error }
	switch c := body.(type) {
	case *promptConfig:
		pred, err = b.prompt(c)
	case *corpusConfig:
		pred, err = b.corpus(c)
	case *evalConfig:
		pred, err = b.eval(c)
	case *routeConfig:
		pred, err = b.route(c)
	case *sloConfig:
		pred, err = b.slo(c)
	case *mbomConfig:
		pred, err = b.mbom(c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s config: %w", kind, err)
	}
	if err := pred.Validate(); err != nil {
		return nil, fmt.Errorf("%s config: %w", kind, err)
	}
	for _, s := range append(append([]string{}, cc.Subjects...), opts.Subjects...) {
		sub, err := ParseSubjectRef(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		b.subjects = append(b.subjects, sub)
	}
	st := Statement{
		Type:          StatementTypeV1,
		Subject:       canonicalSubjects(b.subjects),
		PredicateType: kind.PredicateType(),
		Predicate:     pred,
	}
	if len(st.Subject) == 0 {
		return nil, fmt.Errorf("%s: the statement has no subject (name files or pass --subject)", kind)
	}
	return MarshalCanonical(st)
}

// MarshalCanonical encodes v as compact JSON without HTML escaping and
// without a trailing newline. Struct fields keep declaration order and map
// keys are sorted, so equal values give equal bytes.
func MarshalCanonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// resolveTime picks the creation time: option, then config, then
// SOURCE_DATE_EPOCH. It is truncated to seconds, in UTC.
func resolveTime(opt time.Time, configured string) (time.Time, error) {
	if !opt.IsZero() {
		return opt.UTC().Truncate(time.Second), nil
	}
	if configured != "" {
		t, err := time.Parse(time.RFC3339, configured)
		if err != nil {
			return time.Time{}, fmt.Errorf("created %q is not RFC 3339", configured)
		}
		return t.UTC().Truncate(time.Second), nil
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 253402300799 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a Unix time in seconds", v)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, errors.New("no creation time: set `created` in the config, pass a time, or set SOURCE_DATE_EPOCH")
}

// ParseSubjectRef turns `sha256:<hex>` or `ref@sha256:<hex>` into a subject.
func ParseSubjectRef(s string) (Subject, error) {
	name, dg := "", s
	if i := strings.LastIndex(s, "@"); i >= 0 {
		name, dg = s[:i], s[i+1:]
	}
	if !IsDigest(dg) {
		return Subject{}, fmt.Errorf("subject %q must be sha256:<64 lowercase hex> or ref@sha256:<64 hex>", s)
	}
	if name == "" {
		name = "oci-artifact"
	}
	if err := checkText("subject name", name, true); err != nil {
		return Subject{}, err
	}
	return Subject{Name: name, Digest: map[string]string{"sha256": dg[len("sha256:"):]}}, nil
}

func canonicalSubjects(in []Subject) []Subject {
	type key struct{ n, d string }
	seen := map[key]bool{}
	out := make([]Subject, 0, len(in))
	for _, s := range in {
		k := key{s.Name, s.Digest["sha256"]}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Digest["sha256"] < out[j].Digest["sha256"]
	})
	return out
}

// Configs.

type configCommon struct {
	Name     string   `yaml:"name"`
	Version  string   `yaml:"version"`
	Created  string   `yaml:"created"`
	Root     string   `yaml:"root"`
	Subjects []string `yaml:"subjects"`
}

type promptConfig struct {
	configCommon   `yaml:",inline"`
	SystemPrompts  []string `yaml:"systemPrompts"`
	Templates      []string `yaml:"templates"`
	ToolSchemas    []string `yaml:"toolSchemas"`
	SafetyPolicies []string `yaml:"safetyPolicies"`
}

type corpusConfig struct {
	configCommon    `yaml:",inline"`
	Documents       []string `yaml:"documents"`
	Manifests       []string `yaml:"manifests"`
	ChunkingConfig  string   `yaml:"chunkingConfig"`
	EmbeddingConfig string   `yaml:"embeddingConfig"`
	EmbeddingModel  string   `yaml:"embeddingModel"`
}

type evalConfig struct {
	configCommon    `yaml:",inline"`
	Suite           string            `yaml:"suite"`
	PromptStatement string            `yaml:"promptStatement"`
	CorpusStatement string            `yaml:"corpusStatement"`
	Benchmark       []string          `yaml:"benchmark"`
	Results         string            `yaml:"results"`
	Thresholds      []thresholdConfig `yaml:"thresholds"`
}

type thresholdConfig struct {
	Metric string   `yaml:"metric"`
	Min    *float64 `yaml:"min"`
	Max    *float64 `yaml:"max"`
}

type routeConfig struct {
	configCommon  `yaml:",inline"`
	EvalStatement string     `yaml:"evalStatement"`
	Configs       []string   `yaml:"configs"`
	Strategy      string     `yaml:"strategy"`
	Providers     []Provider `yaml:"providers"`
}

type sloConfig struct {
	configCommon   `yaml:",inline"`
	RouteStatement string `yaml:"routeStatement"`
	Budgets        struct {
		LatencyP50Ms       *float64 `yaml:"latencyP50Ms"`
		LatencyP95Ms       *float64 `yaml:"latencyP95Ms"`
		LatencyP99Ms       *float64 `yaml:"latencyP99Ms"`
		TTFTP95Ms          *float64 `yaml:"ttftP95Ms"`
		CostPer1kTokensUSD *float64 `yaml:"costPer1kTokensUsd"`
		ErrorRate          *float64 `yaml:"errorRate"`
	} `yaml:"budgets"`
	Window   string   `yaml:"window"`
	Profiles []string `yaml:"profiles"`
}

type mbomConfig struct {
	configCommon `yaml:",inline"`
	BaseModel    string `yaml:"baseModel"`
	// BaseModelNames: Hub ids of the base model (sorted and deduplicated
	// into the predicate).
	BaseModelNames []string         `yaml:"baseModelNames"`
	Adapters       []Adapter        `yaml:"adapters"`
	RuntimeImage   string           `yaml:"runtimeImage"`
	Files          []mbomFileConfig `yaml:"files"`
	// InspectSafetensors records the tensors of every .safetensors file
	// whose tensors are not given explicitly.
	InspectSafetensors bool `yaml:"inspectSafetensors"`
}

type mbomFileConfig struct {
	Path    string   `yaml:"path"`
	Tensors []Tensor `yaml:"tensors"`
}

// UnmarshalYAML accepts a plain path or {path, tensors}.
func (m *mbomFileConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		m.Path = n.Value
		return nil
	}
	type plain mbomFileConfig
	var p plain
	if err := decodeNodeStrict(n, &p); err != nil {
		return err
	}
	*m = mbomFileConfig(p)
	return nil
}

func decodeNodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// Building predicates.

type builder struct {
	kind     Kind
	files    *fileSet
	baseDir  string
	common   Common
	subjects []Subject
}

func (b *builder) addSubjects(fs ...[]File) {
	for _, l := range fs {
		for _, f := range l {
			b.subjects = append(b.subjects, Subject{Name: f.Path, Digest: map[string]string{"sha256": f.SHA256}})
		}
	}
}

func (b *builder) addOne(f *File) {
	if f != nil {
		b.addSubjects([]File{*f})
	}
}

func (b *builder) prompt(c *promptConfig) (*PromptPredicate, error) {
	p := &PromptPredicate{Common: b.common}
	var err error
	if p.SystemPrompts, err = b.files.expand("systemPrompts", c.SystemPrompts); err != nil {
		return nil, err
	}
	if p.Templates, err = b.files.expand("templates", c.Templates); err != nil {
		return nil, err
	}
	if p.ToolSchemas, err = b.files.expand("toolSchemas", c.ToolSchemas); err != nil {
		return nil, err
	}
	if p.SafetyPolicies, err = b.files.expand("safetyPolicies", c.SafetyPolicies); err != nil {
		return nil, err
	}
	b.addSubjects(p.SystemPrompts, p.Templates, p.ToolSchemas, p.SafetyPolicies)
	return p, nil
}

func (b *builder) corpus(c *corpusConfig) (*CorpusPredicate, error) {
	p := &CorpusPredicate{Common: b.common, EmbeddingModel: c.EmbeddingModel}
	var err error
	if p.Documents, err = b.files.expand("documents", c.Documents); err != nil {
		return nil, err
	}
	if p.Manifests, err = b.files.expand("manifests", c.Manifests); err != nil {
		return nil, err
	}
	if p.ChunkingConfig, err = b.files.one("chunkingConfig", c.ChunkingConfig); err != nil {
		return nil, err
	}
	if p.EmbeddingConfig, err = b.files.one("embeddingConfig", c.EmbeddingConfig); err != nil {
		return nil, err
	}
	b.addSubjects(p.Documents, p.Manifests)
	b.addOne(p.ChunkingConfig)
	b.addOne(p.EmbeddingConfig)
	return p, nil
}

func (b *builder) eval(c *evalConfig) (*EvalPredicate, error) {
	p := &EvalPredicate{Common: b.common, Suite: c.Suite}
	var err error
	if p.PromptStatement, err = b.statementRef("promptStatement", c.PromptStatement, KindPrompt, true); err != nil {
		return nil, err
	}
	if p.CorpusStatement, err = b.statementRef("corpusStatement", c.CorpusStatement, KindCorpus, false); err != nil {
		return nil, err
	}
	if p.Benchmark, err = b.files.expand("benchmark", c.Benchmark); err != nil {
		return nil, err
	}
	if c.Results == "" {
		return nil, errors.New("results is required")
	}
	res, err := b.files.one("results", c.Results)
	if err != nil {
		return nil, err
	}
	p.Results = *res
	raw, err := b.files.readSmall("results", res.Path, maxResultsSize)
	if err != nil {
		return nil, err
	}
	// The bytes read must be the bytes hashed (no change in between).
	if StatementDigest(raw) != "sha256:"+res.SHA256 {
		return nil, fmt.Errorf("results: %s changed while it was being read", res.Path)
	}
	if p.Metrics, err = ParseResults(raw); err != nil {
		return nil, fmt.Errorf("results %s: %w", res.Path, err)
	}
	if len(c.Thresholds) == 0 {
		return nil, errors.New("thresholds: at least one threshold is required")
	}
	p.Passed = true
	for _, tc := range c.Thresholds {
		v, ok := p.Metrics[tc.Metric]
		if !ok {
			return nil, fmt.Errorf("thresholds: metric %q is not in the results file %s", tc.Metric, res.Path)
		}
		t := Threshold{Metric: tc.Metric, Min: tc.Min, Max: tc.Max, Value: v}
		t.Passed = t.Holds(v)
		p.Passed = p.Passed && t.Passed
		p.Thresholds = append(p.Thresholds, t)
	}
	sort.Slice(p.Thresholds, func(i, j int) bool { return p.Thresholds[i].Metric < p.Thresholds[j].Metric })
	b.addSubjects(p.Benchmark, []File{p.Results})
	return p, nil
}

// ParseResults reads the metrics of an eval results file (JSON or YAML):
// an object with a `metrics` object of metric name → finite number.
func ParseResults(raw []byte) (map[string]float64, error) {
	var doc struct {
		Metrics map[string]any `yaml:"metrics"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not JSON or YAML: %w", err)
	}
	if len(doc.Metrics) == 0 {
		return nil, errors.New("no `metrics` object with values")
	}
	out := make(map[string]float64, len(doc.Metrics))
	for k, v := range doc.Metrics {
		if !metricRE.MatchString(k) {
			return nil, fmt.Errorf("invalid metric name %q", k)
		}
		var f float64
		switch x := v.(type) {
		case int:
			f = float64(x)
		case int64:
			f = float64(x)
		case uint64:
			f = float64(x)
		case float64:
			f = x
		default:
			return nil, fmt.Errorf("metric %q is not a number", k)
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("metric %q is not a finite number", k)
		}
		out[k] = f
	}
	return out, nil
}

func (b *builder) route(c *routeConfig) (*RoutePredicate, error) {
	p := &RoutePredicate{Common: b.common, Strategy: c.Strategy, Providers: c.Providers}
	var err error
	if p.EvalStatement, err = b.statementRef("evalStatement", c.EvalStatement, KindEval, true); err != nil {
		return nil, err
	}
	if p.Configs, err = b.files.expand("configs", c.Configs); err != nil {
		return nil, err
	}
	sort.Slice(p.Providers, func(i, j int) bool {
		if p.Providers[i].Provider != p.Providers[j].Provider {
			return p.Providers[i].Provider < p.Providers[j].Provider
		}
		return p.Providers[i].Model < p.Providers[j].Model
	})
	b.addSubjects(p.Configs)
	return p, nil
}

func (b *builder) slo(c *sloConfig) (*SLOPredicate, error) {
	p := &SLOPredicate{Common: b.common, Window: c.Window, Budgets: Budgets(c.Budgets)}
	var err error
	if p.RouteStatement, err = b.statementRef("routeStatement", c.RouteStatement, KindRoute, true); err != nil {
		return nil, err
	}
	if p.Profiles, err = b.files.expand("profiles", c.Profiles); err != nil {
		return nil, err
	}
	b.addSubjects(p.Profiles)
	return p, nil
}

func (b *builder) mbom(c *mbomConfig) (*MBOMPredicate, error) {
	p := &MBOMPredicate{Common: b.common, BaseModel: c.BaseModel, RuntimeImage: c.RuntimeImage, Adapters: c.Adapters}
	p.BaseModelNames = slices.Compact(slices.Sorted(slices.Values(c.BaseModelNames)))
	sort.Slice(p.Adapters, func(i, j int) bool { return p.Adapters[i].Name < p.Adapters[j].Name })
	explicit := map[string][]Tensor{}
	var entries []string
	for _, f := range c.Files {
		entries = append(entries, f.Path)
		if len(f.Tensors) > 0 {
			rel, err := cleanEntry("files", f.Path, false)
			if err != nil {
				return nil, err
			}
			ts := append([]Tensor(nil), f.Tensors...)
			sortTensors(ts)
			explicit[rel] = ts
		}
	}
	files, err := b.files.expand("files", entries)
	if err != nil {
		return nil, err
	}
	for rel := range explicit {
		found := false
		for _, f := range files {
			found = found || f.Path == rel
		}
		if !found {
			return nil, fmt.Errorf("files: tensors are given for %s, which is a directory", rel)
		}
	}
	for _, f := range files {
		mf := MBOMFile{Path: f.Path, SHA256: f.SHA256, Size: f.Size, Tensors: explicit[f.Path]}
		if mf.Tensors == nil && c.InspectSafetensors && strings.HasSuffix(f.Path, ".safetensors") {
			fh, err := os.Open(filepath.Join(b.files.root, filepath.FromSlash(f.Path)))
			if err != nil {
				return nil, fmt.Errorf("files: %w", err)
			}
			mf.Tensors, err = SafetensorsTensors(fh)
			fh.Close()
			if err != nil {
				return nil, fmt.Errorf("files %s: %w", f.Path, err)
			}
		}
		p.Files = append(p.Files, mf)
	}
	b.addSubjects(files)
	return p, nil
}

// statementRef resolves a configured reference to another statement: a
// literal sha256:<hex>, or the path (relative to the config's directory) of a
// statement file or of a Sigstore bundle holding it. A file is checked to be
// a statement of the wanted kind.
func (b *builder) statementRef(field, v string, want Kind, required bool) (string, error) {
	if v == "" {
		if required {
			return "", fmt.Errorf("%s is required", field)
		}
		return "", nil
	}
	if strings.HasPrefix(v, "sha256:") {
		if !IsDigest(v) {
			return "", fmt.Errorf("%s %q must be sha256:<64 lowercase hex>", field, v)
		}
		return v, nil
	}
	full := v
	if !filepath.IsAbs(full) {
		full = filepath.Join(b.baseDir, filepath.FromSlash(v))
	}
	raw, err := readLimited(field, full, MaxStatementSize)
	if err != nil {
		return "", err
	}
	stmt, err := StatementFromFile(raw)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", field, v, err)
	}
	ps, err := ParseStatement(stmt)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", field, v, err)
	}
	if ps.PredicateType != want.PredicateType() {
		return "", fmt.Errorf("%s %s is a %s statement, want %s", field, v, ps.PredicateType, want.PredicateType())
	}
	if _, err := DecodePredicate(ps.PredicateType, ps.Predicate); err != nil {
		return "", fmt.Errorf("%s %s: %w", field, v, err)
	}
	return ps.Digest, nil
}

// StatementFromFile returns the statement bytes of a file that holds a
// statement, a Sigstore bundle or a bare DSSE envelope (whose payload is
// returned). It does
// not verify the bundle's signature: the digest it yields is only a reference
// and the chain check requires the referenced statement to be verified.
func StatementFromFile(raw []byte) ([]byte, error) {
	type envelope struct {
		Payload     string `json:"payload"`
		PayloadType string `json:"payloadType"`
	}
	var probe struct {
		MediaType    string    `json:"mediaType"`
		DSSEEnvelope *envelope `json:"dsseEnvelope"`
		envelope
	}
	if err := strictjson.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if probe.MediaType == "" && probe.PayloadType != "" {
		probe.DSSEEnvelope = &probe.envelope // a bare DSSE envelope
	} else if probe.MediaType == "" {
		return raw, nil
	}
	if probe.MediaType != "" && !strings.HasPrefix(probe.MediaType, "application/vnd.dev.sigstore.bundle") {
		return nil, fmt.Errorf("unexpected mediaType %q", probe.MediaType)
	}
	if probe.DSSEEnvelope == nil {
		return nil, errors.New("bundle holds no DSSE envelope")
	}
	if probe.DSSEEnvelope.PayloadType != PayloadType {
		return nil, fmt.Errorf("bundle payloadType %q is not %s", probe.DSSEEnvelope.PayloadType, PayloadType)
	}
	p, err := base64.StdEncoding.DecodeString(probe.DSSEEnvelope.Payload)
	if err != nil {
		return nil, fmt.Errorf("bundle payload is not base64: %w", err)
	}
	return p, nil
}
