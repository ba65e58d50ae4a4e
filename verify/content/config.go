package content

import (
	"cmp"
	"hash/maphash"
	"path"
	"slices"

	"github.com/pullgate/pullgate/verify/chattemplate"
	"strings"
	"unicode/utf8"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// newConfigInspector buffers a JSON file (bounded by MaxConfigBytes), parses it
// strictly (duplicate keys rejected at every level) and, with
// DenyCodeLayers, refuses Hugging Face remote-code hooks (auto_map). Chat
// templates embedded in tokenizer_config.json are checked like GGUF ones.
// The whole file is its "header": HeaderDone becomes true at Close.
// The references the config names (load-time closure, references.go) are
// kept for References.
func newConfigInspector(opts Options, size int64) *configInspector {
	c := &configInspector{}
	c.BufferedInspector = NewBufferedInspector(FormatJSON, size, opts.maxConfig(), "JSON file larger than the %d-byte limit for parsed config files",
		func(b []byte) error {
			refs, err := checkConfigJSON(opts, b)
			c.refs = refs
			return err
		})
	return c
}

// configInspector is the BufferedInspector of a JSON config that lists
// the config's load-time references once it passed.
type configInspector struct {
	*BufferedInspector
	refs []Reference
}

// References lists the names the config tells a loader to fetch by.
func (c *configInspector) References() []Reference {
	if !c.HeaderDone() {
		return nil
	}
	return c.refs
}

// CheckConfigJSON validates a JSON config file (config.json,
// tokenizer_config.json, chat_template.json, ...): strict UTF-8 JSON, no
// duplicate keys, depth at most 128; with opts.DenyCodeLayers no remote-code
// hook (see remoteCodeHook); and every string under a key whose name
// contains "template", at any depth (chat_template as a string or as a list
// of {name, template}, prompt templates, ...), checked as a Jinja template.
func CheckConfigJSON(opts Options, b []byte) error {
	_, err := checkConfigJSON(opts, b)
	return err
}

// checkConfigJSON is CheckConfigJSON that also returns the config's
// load-time references (configReferences) when it passed.
func checkConfigJSON(opts Options, b []byte) ([]Reference, error) {
	if !utf8.Valid(b) {
		return nil, newFinding(FormatJSON, 0, "not valid UTF-8")
	}
	p := &jsonParser{b: b, pyFloats: opts.pyJSONFloats, maxValues: opts.maxJSONValues, tooMany: opts.tooManyJSONValues, lean: true}
	p.ws()
	v, err := p.value(0, "")
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, p.errf("unexpected data after the JSON value")
	}
	top, _ := v.(map[string]any)
	if top != nil && opts.DenyCodeLayers {
		if hook := remoteCodeHook(top); hook != "" {
			return nil, newFinding(FormatJSON, -1, "%s; denied by denyCodeLayers", hook)
		}
	}
	for _, t := range p.templates {
		if err := checkTemplateSource(opts, FormatJSON, "key "+strqQuote(t.key), t.src, chattemplate.Jinja, true); err != nil {
			return nil, err
		}
	}
	if top == nil {
		return nil, nil
	}
	return configReferences(top)
}

// remoteCodeHook names the Hugging Face remote-code hook a config declares
// (code that transformers or diffusers import from the model repository,
// with trust_remote_code), or "".
func remoteCodeHook(top map[string]any) string {
	if _, ok := top["auto_map"]; ok {
		return "config declares auto_map (Hugging Face remote code: classes imported from the repository's .py files, with trust_remote_code)"
	}
	if _, ok := top["custom_pipelines"]; ok {
		return "config declares custom_pipelines (transformers pipeline() imports the pipeline class from the repository's .py files, with trust_remote_code)"
	}
	// diffusers model_index.json: components are [library, class]; a
	// library other than diffusers/transformers is a module of the
	// repository (a custom pipeline or component, with trust_remote_code).
	if _, ok := top["_class_name"]; ok {
		if l, ok := top["_class_name"].([]any); ok && len(l) > 0 {
			return "model_index.json names a custom pipeline class (_class_name is [module, class]: diffusers imports it from the repository, with trust_remote_code)"
		}
		for k, v := range top {
			l, ok := v.([]any)
			if !ok || len(l) != 2 {
				continue
			}
			lib, ok := l[0].(string)
			if !ok {
				continue
			}
			switch lib {
			case "diffusers", "transformers", "onnxruntime.training":
				continue
			}
			return "model_index.json component " + strqQuote(k) + " comes from module " + strqQuote(lib) + " (diffusers imports it from the repository, with trust_remote_code)"
		}
	}
	return ""
}

// jsonParser is a strict generic JSON parser. Objects become map[string]any
// only at the top level's direct children (deeper values are validated and
// discarded) to keep memory proportional to the input.
type jsonParser struct {
	b         []byte
	i         int
	templates []keyedString // strings under template keys, at any depth
	// keepAll keeps every value (numbers as jsonNumber) instead of the
	// shallow ones only (skops schema.json, bounded by MaxConfigBytes).
	keepAll bool

	// onObject, when set, is called with every object once it is parsed
	// (the Keras configuration check, kerasconfig.go); p.path is then the
	// object's JSON path. Objects are then kept at every depth, but each
	// only with its string members and its child objects' string members
	// (shallowObject), and arrays are not kept.
	onObject func(m map[string]any) error
	path     []string
	// pyFloats accepts NaN, Infinity and -Infinity, which Python's json
	// writes for non-finite floats (Keras configurations).
	pyFloats bool
	// maxValues, when positive, bounds the JSON values (objects, arrays,
	// strings, numbers, literals) the document may hold: the parse
	// tree's size, whatever the bytes (a value can take two bytes).
	// tooMany is the refusal, with one %d for the limit.
	maxValues int
	values    int
	tooMany   string

	// lean keeps of a JSON config only what remoteCodeHook and
	// configReferences read: the top-level members and their objects'
	// members, lists under auto_map, custom_pipelines' impl strings, and
	// a top-level list's first three items (its length is read only as
	// 0, 2 or more); the keys of objects deeper down (a tokenizer.json's
	// vocab) are checked for duplicates by hash, 16 bytes a key.
	lean   bool
	topKey string // the top-level key being parsed

	// keep, when set, says which members of an object are kept (the
	// others are parsed, counted and checked for duplicates, not
	// stored): the Keras check reads a few keys of each object.
	keep   func(key string) bool
	keys   []jsonKey // the keys of the open objects, when keep is set
	hseed  maphash.Seed
	seeded bool
}

// jsonKey is a key of an open object: 32 bits of its hash and its
// offset (held files are far below 4 GiB), 8 bytes a key.
type jsonKey struct {
	h   uint32
	off uint32
}

// maxOpenJSONKeys bounds the keys of open objects checked by hash (8 bytes
// each: 16 MiB): a tokenizer.json's vocabulary has up to a few hundred
// thousand (Gemma's 262,144), a hostile 64 MiB file of two-byte keys
// several million.
const maxOpenJSONKeys = 1 << 21

func (p *jsonParser) seed() maphash.Seed {
	if !p.seeded {
		p.hseed, p.seeded = maphash.MakeSeed(), true
	}
	return p.hseed
}

// dupKeys refuses a key that occurs twice among p.keys[from:] (one
// object's keys), then drops them. Equal hashes are compared as strings
// (a random seed: no input can make keys collide on purpose, and a
// collision is only a comparison more).
func (p *jsonParser) dupKeys(from int) error {
	ks := p.keys[from:]
	slices.SortFunc(ks, func(a, b jsonKey) int { return cmp.Or(cmp.Compare(a.h, b.h), cmp.Compare(a.off, b.off)) })
	for i := 1; i < len(ks); i++ {
		for j := i - 1; j >= 0 && ks[j].h == ks[i].h; j-- {
			a, _ := (&jsonParser{b: p.b, i: int(ks[j].off)}).str()
			b, _ := (&jsonParser{b: p.b, i: int(ks[i].off)}).str()
			if a == b {
				p.i = int(ks[i].off)
				return p.errf("duplicate key %q", b)
			}
		}
	}
	p.keys = p.keys[:from]
	return nil
}

// jsonNumber is a JSON number's text, kept when jsonParser.keepAll is set.
type jsonNumber string

type keyedString struct{ key, src string }

// maxTemplateStrings bounds the template strings one config may carry.
const maxTemplateStrings = 4096

func (p *jsonParser) errf(reason string, args ...any) error {
	return newFinding(FormatJSON, int64(p.i), reason, args...)
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

// value parses one JSON value. tkey is the nearest enclosing key whose
// name marks a template ("" if none): strings below it are collected.
func (p *jsonParser) value(depth int, tkey string) (any, error) {
	if depth > 128 {
		return nil, p.errf("JSON nested deeper than 128 levels")
	}
	if p.values++; p.maxValues > 0 && p.values > p.maxValues {
		return nil, p.errf(p.tooMany, p.maxValues)
	}
	p.ws()
	if p.i >= len(p.b) {
		return nil, p.errf("unexpected end of JSON")
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.i++
		m := map[string]any{}
		keys := len(p.keys)
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return m, nil
		}
		for {
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != '"' {
				return nil, p.errf("expected a string key")
			}
			if p.onObject != nil && len(p.path) > depth {
				p.path = p.path[:depth]
			}
			koff := p.i
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			if depth == 0 {
				p.topKey = k
			}
			if p.keep != nil || p.lean && depth >= 2 {
				// Only the members the check reads are kept: the
				// others are checked for duplicates by hash (at the
				// object's end), 16 bytes a key instead of a map entry.
				if len(p.keys) >= maxOpenJSONKeys {
					p.i = koff
					return nil, p.errf("more than %d keys in open JSON objects (the limit that bounds the duplicate-key check's memory; no key raises it)", maxOpenJSONKeys)
				}
				p.keys = append(p.keys, jsonKey{uint32(maphash.String(p.seed(), k)), uint32(koff)})
			} else if _, dup := m[k]; dup {
				p.i = koff
				return nil, p.errf("duplicate key %q", k)
			}
			p.ws()
			if p.i >= len(p.b) || p.b[p.i] != ':' {
				return nil, p.errf("expected ':'")
			}
			p.i++
			vk := tkey
			if isTemplateKey(k) {
				vk = k
			}
			if p.onObject != nil {
				p.path = append(p.path[:depth], pathKey(k))
			}
			v, err := p.value(depth+1, vk)
			if err != nil {
				return nil, err
			}
			if depth > 2 && !p.keepAll && p.onObject == nil {
				v = nil // keep only shallow values
			}
			switch {
			case p.keep != nil:
				if p.keep(k) {
					m[k] = v
				}
			case p.lean && depth >= 2:
				if p.topKey == "custom_pipelines" && k == "impl" {
					m[k] = v
				}
			default:
				m[k] = v
			}
			p.ws()
			if p.i >= len(p.b) {
				return nil, p.errf("unexpected end of JSON")
			}
			if p.b[p.i] == ',' {
				p.i++
				continue
			}
			if p.b[p.i] == '}' {
				p.i++
				if p.keep != nil || p.lean && depth >= 2 {
					if err := p.dupKeys(keys); err != nil {
						return nil, err
					}
				}
				if p.onObject != nil {
					p.path = p.path[:depth]
					if err := p.onObject(m); err != nil {
						return nil, err
					}
					return shallowObject(m), nil
				}
				return m, nil
			}
			return nil, p.errf("expected ',' or '}'")
		}
	case c == '[':
		p.i++
		var a []any
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return a, nil
		}
		for n := 0; ; n++ {
			if p.onObject != nil {
				p.path = append(p.path[:depth], "["+itoa(n)+"]")
			}
			v, err := p.value(depth+1, tkey)
			if err != nil {
				return nil, err
			}
			keepEl := (depth <= 2 || p.keepAll) && p.onObject == nil
			if p.lean {
				switch depth {
				case 0:
					keepEl = false // a root array: nothing reads it
				case 1:
					keepEl = n < 3 // a top-level list: its length up to 3 and first items
				case 2:
					keepEl = p.topKey == "auto_map"
				}
			}
			if keepEl {
				a = append(a, v)
			}
			p.ws()
			if p.i >= len(p.b) {
				return nil, p.errf("unexpected end of JSON")
			}
			if p.b[p.i] == ',' {
				p.i++
				continue
			}
			if p.b[p.i] == ']' {
				p.i++
				if p.onObject != nil {
					p.path = p.path[:depth]
				}
				return a, nil
			}
			return nil, p.errf("expected ',' or ']'")
		}
	case c == '"':
		s, err := p.str()
		if err == nil && tkey != "" {
			if len(p.templates) >= maxTemplateStrings {
				return nil, p.errf("more than %d strings under template keys", maxTemplateStrings)
			}
			p.templates = append(p.templates, keyedString{tkey, s})
		}
		return s, err
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(string(p.b[p.i:min(p.i+5, len(p.b))]), lit) {
				p.i += len(lit)
				return nil, nil
			}
		}
		return nil, p.errf("invalid literal")
	case p.pyFloats && (c == 'N' || c == 'I' || c == '-' && p.i+1 < len(p.b) && p.b[p.i+1] == 'I'):
		for _, lit := range []string{"NaN", "Infinity", "-Infinity"} {
			if strings.HasPrefix(string(p.b[p.i:min(p.i+len(lit), len(p.b))]), lit) {
				p.i += len(lit)
				return nil, nil
			}
		}
		return nil, p.errf("invalid literal")
	case c == '-' || c >= '0' && c <= '9':
		start := p.i
		if err := p.number(); err != nil || !p.keepAll {
			return nil, err
		}
		return jsonNumber(p.b[start:p.i]), nil
	}
	return nil, p.errf("unexpected character %q", p.b[p.i])
}

func (p *jsonParser) number() error {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		s := p.i
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
		}
		return p.i - s
	}
	intStart := p.i
	if n := digits(); n == 0 || n > 1 && p.b[intStart] == '0' {
		p.i = start
		return p.errf("invalid number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return p.errf("invalid number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return p.errf("invalid number")
		}
	}
	return nil
}

func (p *jsonParser) str() (string, error) {
	sp := &stParser{b: p.b, i: p.i}
	s, err := sp.str()
	if err != nil {
		if f, ok := err.(*Finding); ok {
			return "", newFinding(FormatJSON, f.Offset-8, "%s", f.Reason)
		}
		return "", err
	}
	p.i = sp.i
	return s, nil
}

// Title annotations that name a layer's file.
const (
	AnnotationTitle          = ocispec.AnnotationTitle
	AnnotationModelFilepath  = "org.cncf.model.filepath"
	AnnotationModelFilepathL = "org.cnai.model.filepath"
)

// LayerTitle returns the file name a layer declares (image title, then
// ModelPack filepath), or "".
func LayerTitle(d ocispec.Descriptor) string {
	for _, k := range []string{AnnotationTitle, AnnotationModelFilepath, AnnotationModelFilepathL} {
		if v := d.Annotations[k]; v != "" {
			return v
		}
	}
	return ""
}

// CheckManifest applies the descriptor-level content rules to a model
// artifact manifest: allowed config and layer media types, foreign layers
// (urls), code layers (DenyCodeLayers) under every name a layer declares
// (title, ModelPack file paths: a README.md title with a modeling_evil.py
// file path is judged as the code file modctl writes), and the names
// themselves (clean, relative; unique per annotation, since a client writes
// each file under that name). The same digest under several names is
// legitimate. Blob contents are checked by NewInspector as the layers
// stream. The config media type is m.Config.MediaType (Docker v2 manifests
// decode into the same struct; an index has no config, judged as "").
func CheckManifest(opts Options, m *ocimanifest.Manifest) []Finding {
	var out []Finding
	add := func(f *Finding) {
		if f != nil {
			out = append(out, *f)
		}
	}
	var configType string
	if m.Config != nil {
		configType = m.Config.MediaType
	}
	if !opts.configAllowed(configType) {
		add(newFinding(FormatMediaType, -1, "config media type %q is not allowed by this rule", configType))
	}
	// Uniqueness per kind of name: titles among titles (oras writes by
	// title), file paths among file paths (modctl writes by either).
	titles, paths := map[string]int{}, map[string]int{}
	for i, l := range m.Layers {
		layer := "layer " + itoa(i) + " (" + l.Digest.String() + "): "
		if len(l.URLs) > 0 {
			add(newFinding(FormatMediaType, -1, "layer %d (%s) has urls (foreign layer); only registry-hosted blobs are allowed", i, l.Digest))
		}
		names := DeclarationOf(l).Names
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			if f := checkLayer(opts, l.MediaType, n); f != nil {
				f.Reason = layer + f.Reason
				add(f)
				break
			}
		}
		for _, k := range []string{AnnotationTitle, AnnotationModelFilepath, AnnotationModelFilepathL} {
			p, ok := l.Annotations[k]
			if !ok {
				continue
			}
			if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "\\") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
				add(newFinding(FormatMediaType, -1, "layer %d (%s): %s %q is not a clean relative path", i, l.Digest, k, p))
			}
			seen := paths
			if k == AnnotationTitle {
				seen = titles
			}
			if j, dup := seen[p]; dup && j != i && m.Layers[j].Digest != l.Digest {
				add(newFinding(FormatMediaType, -1, "layers %d and %d declare the same file path %q", j, i, p))
			}
			if _, dup := seen[p]; !dup {
				seen[p] = i
			}
		}
	}
	return out
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
