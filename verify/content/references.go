package content

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pullgate/pullgate/policy/glob"
)

// Load-time closure: the names a config tells a loader to fetch more
// weights or code by. A model artifact is what its signature covers only
// if the loader reads nothing else; these references are what it reads
// besides. They are extracted from the JSON configs the strict parser
// already read (config.go), reported (ReferenceLister, Report.References)
// and, under a rule's content.references, judged (CheckReferences).

// Reference kinds: how a loader resolves the value (transformers and peft
// from_pretrained, get_class_from_dynamic_module).
const (
	// RefHub is a Hugging Face Hub repository id ("name" or
	// "namespace/name", huggingface_hub's validate_repo_id syntax): the
	// loader downloads it, unless a local directory of that name exists
	// (from_pretrained tries os.path.isdir first).
	RefHub = "hub"
	// RefLocal is a filesystem path (absolute, home-relative, with a "."
	// or ".." segment, a backslash or a drive, or more than two segments):
	// the loader reads the local filesystem of the machine that loads.
	RefLocal = "local"
	// RefURL is a value with a scheme ("https://...", "s3://...").
	RefURL = "url"
)

// Reference is one name a config tells a loader to fetch by.
type Reference struct {
	// File is the name the config was declared by (layer title or file
	// path, archive member), "" when it had none.
	File string `json:"file,omitempty"`
	// Key is where the value is: base_model_name_or_path, _name_or_path,
	// auto_map.<Auto class>, custom_pipelines.<task>.impl.
	Key string `json:"key"`
	// Value is the repository id, path or URL (for auto_map and
	// custom_pipelines, the part before "--").
	Value string `json:"value"`
	// Kind is RefHub, RefLocal or RefURL.
	Kind string `json:"kind"`
}

// String is "<file>: <key> = <value> (<kind>)".
func (r Reference) String() string {
	s := r.Key + " = " + strqQuote(r.Value) + " (" + r.Kind + ")"
	if r.File != "" {
		s = r.File + ": " + s
	}
	return s
}

// ReferenceLister is implemented by inspectors of configs that may name
// other repositories. References is valid once the inspection passed
// (Close returned nil).
type ReferenceLister interface {
	References() []Reference
}

// maxReferences bounds the references one config may declare (real
// configs declare a handful; auto_map lists one per Auto class).
const maxReferences = 256

// configReferences extracts the references of a parsed config's top level
// (the strict parser keeps the values of the top three levels):
//
//   - base_model_name_or_path (peft adapter_config.json: the model the
//     adapter is loaded onto);
//   - _name_or_path (transformers config.json, diffusers model_index.json,
//     processor configs: the name the files were saved from);
//   - auto_map values of the form "<repo>--<module>.<Class>" (config.json,
//     tokenizer_config.json, processor configs; a tokenizer's value may be
//     a list [slow, fast]): transformers' get_class_from_dynamic_module
//     imports the class from the other repository's code;
//   - custom_pipelines.<task>.impl of that form (config.json, pipeline()).
//
// A value without "--" names code of the repository itself (denyCodeLayers
// governs it) and is no reference; an empty name is none either.
func configReferences(top map[string]any) ([]Reference, error) {
	var out []Reference
	add := func(key, v string) {
		if v == "" {
			return
		}
		out = append(out, Reference{Key: key, Value: v, Kind: ClassifyReference(v)})
	}
	for _, k := range []string{"base_model_name_or_path", "_name_or_path"} {
		if s, ok := top[k].(string); ok {
			add(k, s)
		}
	}
	dynamic := func(key string, v any) {
		var vals []any
		switch t := v.(type) {
		case string:
			vals = []any{t}
		case []any:
			vals = t
		}
		for _, x := range vals {
			s, ok := x.(string)
			if !ok {
				continue
			}
			if repo, _, ok := strings.Cut(s, "--"); ok {
				add(key, repo)
			}
		}
	}
	if m, ok := top["auto_map"].(map[string]any); ok {
		for _, k := range sortedKeys(m) {
			dynamic("auto_map."+k, m[k])
		}
	}
	if m, ok := top["custom_pipelines"].(map[string]any); ok {
		for _, k := range sortedKeys(m) {
			if task, ok := m[k].(map[string]any); ok {
				dynamic("custom_pipelines."+k+".impl", task["impl"])
			}
		}
	}
	if len(out) > maxReferences {
		return nil, newFinding(FormatJSON, -1, "config declares %d load-time references (base_model_name_or_path, _name_or_path, auto_map, custom_pipelines), more than the limit of %d", len(out), maxReferences)
	}
	return out, nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// ClassifyReference says how a loader resolves a name: RefURL (a scheme),
// RefHub (a valid Hub repository id: one or two segments of letters,
// digits, '-', '_', '.', no "--" or "..", not starting or ending with '-'
// or '.', at most 96 characters), else RefLocal (a path: the loader reads
// the local filesystem).
func ClassifyReference(s string) string {
	if i := strings.Index(s, "://"); i > 0 && isScheme(s[:i]) {
		return RefURL
	}
	if isHubID(s) {
		return RefHub
	}
	return RefLocal
}

func isScheme(s string) bool {
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// isHubID follows huggingface_hub's validate_repo_id.
func isHubID(s string) bool {
	if s == "" || len(s) > 96 || strings.Contains(s, "--") || strings.Contains(s, "..") || strings.HasSuffix(s, ".git") {
		return false
	}
	parts := strings.Split(s, "/")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || p[0] == '-' || p[0] == '.' || p[len(p)-1] == '-' || p[len(p)-1] == '.' {
			return false
		}
		for _, c := range p {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return false
			}
		}
	}
	return true
}

// Reference requirements (content.references.require).
const (
	// RequireAny reports references and admits every one (the default).
	RequireAny = "any"
	// RequireAllowlist admits a reference only when an allow entry
	// matches it.
	RequireAllowlist = "allowlist"
	// RequireMBOM admits a Hub reference that is a name the verified MBOM
	// gives the artifact's base model (baseModelNames), and any reference
	// an allow entry matches.
	RequireMBOM = "mbom"
)

// ReferenceOptions is a rule's content.references.
type ReferenceOptions struct {
	// Require is RequireAny ("" too), RequireAllowlist or RequireMBOM.
	Require string
	// Allow admits references: a Hub repository id pattern (policy/glob
	// syntax: "*" within a segment, "**" across; matched without regard
	// to ASCII case, as the Hub resolves ids), or a local path or URL
	// written exactly (no pattern: a path or URL is admitted only as
	// written, case included).
	Allow []string
}

// Validate reports allow entries that are not patterns or exact values.
func (o ReferenceOptions) Validate() error {
	switch o.Require {
	case "", RequireAny, RequireAllowlist, RequireMBOM:
	default:
		return fmt.Errorf("content: references.require %q: want %s, %s or %s", o.Require, RequireAny, RequireAllowlist, RequireMBOM)
	}
	for _, a := range o.Allow {
		if err := checkReferenceAllow(a); err != nil {
			return err
		}
	}
	return nil
}

// checkReferenceAllow checks one allow entry: a Hub id pattern must be a
// valid glob; a path or URL is exact (a path with a wildcard is refused,
// since it would not match as a pattern).
func checkReferenceAllow(a string) error {
	if a == "" {
		return fmt.Errorf("content: references.allow: empty entry")
	}
	switch allowKind(a) {
	case RefLocal:
		if strings.ContainsAny(a, "*?[") {
			return fmt.Errorf("content: references.allow: %q is a local path, which is matched exactly: write it without wildcards", a)
		}
	case RefHub:
		if _, err := glob.Compile(hubFold(a)); err != nil {
			return fmt.Errorf("content: references.allow: %w", err)
		}
	}
	return nil
}

// allowKind is the kind of reference an allow entry admits: it is
// classified as a reference would be, its wildcards read as letters (a
// URL is one whatever follows its scheme).
func allowKind(a string) string {
	return ClassifyReference(strings.Map(func(r rune) rune {
		if r == '*' || r == '?' || r == '[' || r == ']' || r == '!' || r == '^' {
			return 'x'
		}
		return r
	}, a))
}

// allowed reports the allow entry that admits r, or "".
func (o ReferenceOptions) allowed(r Reference) string {
	for _, a := range o.Allow {
		if allowKind(a) != r.Kind {
			continue
		}
		if r.Kind != RefHub {
			if a == r.Value {
				return a
			}
			continue
		}
		if g, err := glob.Compile(hubFold(a)); err == nil && g.Match(hubFold(r.Value)) {
			return a
		}
	}
	return ""
}

// hubFold folds ASCII letters to lower case: the Hugging Face Hub resolves
// repository ids without regard to case ("Meta-Llama/Llama-3-8B" is
// "meta-llama/Llama-3-8B"), so Hub ids and their allow patterns are
// compared folded. Only ASCII is folded (a Hub id is ASCII): no Unicode
// folding makes another character (a Kelvin sign) match a letter.
func hubFold(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// SameHubID reports whether two Hub repository ids name one repository:
// equal without regard to ASCII case (hubFold), as the Hub resolves them.
func SameHubID(a, b string) bool { return hubFold(a) == hubFold(b) }

// CheckReferences judges a config's references under a rule's
// content.references. Hub ids are compared without regard to ASCII case
// (hubFold); local paths and URLs exactly. baseModels are the names the artifact's verified
// MBOM statements give its base model (every statement's, intersected;
// nil when there is none), mbom whether the artifact has a verified MBOM.
// The finding names the file, key, value and what would admit it.
func CheckReferences(o ReferenceOptions, refs []Reference, mbom bool, baseModels []string) *Finding {
	if o.Require == "" || o.Require == RequireAny {
		return nil
	}
	for _, r := range refs {
		if o.allowed(r) != "" {
			continue
		}
		if o.Require == RequireMBOM && r.Kind == RefHub {
			matched := false
			for _, b := range baseModels {
				matched = matched || SameHubID(b, r.Value)
			}
			if matched {
				continue
			}
		}
		return newFinding(FormatReferences, -1, "%s: the loader fetches this %s; %s", r, kindNoun(r.Kind), admitHint(o, r, mbom, baseModels))
	}
	return nil
}

func kindNoun(k string) string {
	switch k {
	case RefHub:
		return "Hugging Face Hub repository by name, outside the signed artifact"
	case RefURL:
		return "URL, outside the signed artifact"
	}
	return "local path, outside the signed artifact (it reads the filesystem of the machine that loads)"
}

// admitHint says what would admit r.
func admitHint(o ReferenceOptions, r Reference, mbom bool, baseModels []string) string {
	allow := "add it to content.references.allow"
	if r.Kind == RefHub {
		allow = "add it (or a pattern such as " + strqQuote(namespacePattern(r.Value)) + ") to content.references.allow"
	}
	if o.Require != RequireMBOM {
		return "content.references.require: allowlist admits only what content.references.allow lists; " + allow
	}
	switch {
	case r.Kind != RefHub:
		return "content.references.require: mbom admits only Hub repository ids named by the MBOM's baseModelNames; " + allow + " (exactly as written)"
	case !mbom:
		return "content.references.require: mbom, and no verified MBOM statement lists this file (the artifact has none, or the layer has no org.opencontainers.image.title); attest an MBOM whose baseModelNames lists it, or " + allow
	case len(baseModels) == 0:
		return "content.references.require: mbom, and the verified MBOM names its base model by no Hugging Face id (baseModelNames); list it there, or " + allow
	}
	return "content.references.require: mbom, and the verified MBOM's base model is " + strings.Join(quoteAll(baseModels), ", ") + " (baseModelNames); " + allow
}

func namespacePattern(id string) string {
	if ns, _, ok := strings.Cut(id, "/"); ok {
		return ns + "/*"
	}
	return id
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strqQuote(s)
	}
	return out
}

// FormatReferences names findings of content.references.
const FormatReferences = "references"
