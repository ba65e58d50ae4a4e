package content

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/pullgate/pullgate/verify/chattemplate"
	"gopkg.in/yaml.v3"
)

// FormatNeMo names findings about a NeMo .nemo archive (a tar, optionally
// gzip-compressed, written by NeMo's SaveRestoreConnector: ./model_config.yaml,
// ./model_weights.ckpt, tokenizer and other artifacts). The layer's format
// stays FormatTar or FormatGzip.
const FormatNeMo = "nemo"

// NeMoOptions configure the NeMo check (policy key content.formats.nemo).
type NeMoOptions struct {
	// Targets lists the Hydra _target_ values model_config.yaml may name
	// besides DefaultNeMoTargets: an entry ending in "." is a prefix
	// ("mypkg.models."), any other an exact dotted path.
	Targets []string
}

// DefaultNeMoTargets mirrors NeMo's ALLOWED_TARGET_PREFIXES
// (nemo/core/classes/common.py, the fix of CVE-2025-23304, NeMo 2.3.2+):
// safe_instantiate refuses any _target_ that starts with none of them.
var DefaultNeMoTargets = []string{
	"nemo.collections.",
	"nemo.core.",
	"nemo.utils.",
	"nemo.lightning.",
	"tests.collections.",
	"torch.nn.",
	"torch.optim.",
	"torch.utils.data.",
	"lightning.pytorch.callbacks.",
	"lightning.pytorch.loggers.",
	"lightning.pytorch.strategies.",
	"lightning.pytorch.accelerators.",
	"omegaconf.",
	"megatron.",
}

// nemoConfigName is the member SaveRestoreConnector reads the model's
// configuration from; a tar holding it at its root is a NeMo archive.
const nemoConfigName = "model_config.yaml"

// isNeMoConfigName reports whether a file is a NeMo model configuration,
// in any letter case (a .nemo extracted on a case-insensitive filesystem
// is read through any case of the name).
func isNeMoConfigName(title string) bool {
	return strings.EqualFold(path.Base(title), nemoConfigName)
}

// nemoTargetAllowed reports whether a Hydra target is allowed: an exact
// entry admits it as written; a prefix admits it only if no segment after
// the prefix leaves the package (nemoEscapeSegment), since Hydra's _locate
// imports the first segment and then getattr's each following one (trying
// import_module when getattr fails): "nemo.core.classes.common.os.system"
// is os.system, reached through the os module common.py imported.
// why is "" when allowed, else the reason it is not.
func (o Options) nemoTargetAllowed(t string) (ok bool, why string) {
	for _, lists := range [][]string{DefaultNeMoTargets, o.NeMo.Targets} {
		for _, a := range lists {
			if a == t {
				return true, ""
			}
		}
	}
	for _, lists := range [][]string{DefaultNeMoTargets, o.NeMo.Targets} {
		for _, a := range lists {
			if strings.HasSuffix(a, ".") && strings.HasPrefix(t, a) {
				if why := nemoEscapeSegment(t, a); why != "" {
					return false, why
				}
				return true, ""
			}
		}
	}
	return false, ""
}

// nemoModuleNames are module names (and their usual import aliases) that
// code under an allowed package commonly imports: as a segment after the
// allowed prefix they walk out of the package into that module
// (getattr(common, "os") is the os module). Standard-library modules that
// run code, touch files, processes or the network, serialise objects or
// reach other objects, and the third-party packages NeMo code imports.
var nemoModuleNames = map[string]bool{
	// processes, code, interpreter
	"os": true, "posix": true, "nt": true, "sys": true, "subprocess": true, "builtins": true, "__builtins__": true,
	"importlib": true, "imp": true, "runpy": true, "code": true, "codeop": true, "pty": true, "signal": true,
	"ctypes": true, "cffi": true, "multiprocessing": true, "threading": true, "_thread": true, "concurrent": true,
	"asyncio": true, "atexit": true, "gc": true, "inspect": true, "types": true, "functools": true,
	"operator": true, "itertools": true, "contextlib": true, "pdb": true, "bdb": true, "trace": true,
	"sysconfig": true, "site": true, "pkgutil": true, "zipimport": true, "platform": true,
	// files
	"shutil": true, "pathlib": true, "tempfile": true, "glob": true, "fnmatch": true, "fileinput": true,
	"io": true, "_io": true, "codecs": true, "zipfile": true, "tarfile": true, "gzip": true, "bz2": true, "lzma": true,
	"mmap": true, "fcntl": true, "filecmp": true, "linecache": true,
	// serialisation
	"pickle": true, "cPickle": true, "_pickle": true, "dill": true, "cloudpickle": true, "marshal": true,
	"shelve": true, "copyreg": true, "json": true, "yaml": true, "ruamel": true, "joblib": true,
	"pickletools": true, "copy": true,
	// network
	"socket": true, "ssl": true, "http": true, "urllib": true, "urllib3": true, "requests": true,
	"httpx": true, "aiohttp": true, "ftplib": true, "smtplib": true, "webbrowser": true, "xmlrpc": true,
	"huggingface_hub": true, "wget": true, "boto3": true, "botocore": true,
	// third-party packages NeMo and its dependencies import
	"torch": true, "np": true, "numpy": true, "pd": true, "pandas": true, "scipy": true, "hydra": true,
	"OmegaConf": true, "lightning": true, "pl": true, "pytorch_lightning": true,
	"transformers": true, "sentencepiece": true, "tokenizers": true, "datasets": true,
	"apex": true, "transformer_engine": true, "te": true, "tensorrt": true, "onnx": true,
	"onnxruntime": true, "triton": true, "jinja2": true, "sklearn": true, "librosa": true, "soundfile": true,
	"sf": true, "wandb": true, "mlflow": true, "fsspec": true, "s3fs": true, "ray": true, "tqdm": true,
	"logging": true, "warnings": true, "setuptools": true, "distutils": true, "pkg_resources": true,
}

// nemoEscapeSegment returns why a target under an allowed prefix leaves
// the package, or "": a segment after the prefix that is a module name
// code commonly imports (nemoModuleNames), the target's own top-level
// package again (torch.nn.functional.torch.load), or private
// ("_x", "__x__": __globals__, __builtins__, _private helpers). This is a
// name rule: a module under the prefix that imports a dangerous function
// under another name, or a class attribute that reads files
// (Model.restore_from), still passes (see docs/model-gate.md).
func nemoEscapeSegment(t, prefix string) string {
	parts := strings.Split(t, ".")
	from := len(strings.Split(prefix, ".")) - 1 // segments of the prefix
	for i := from; i < len(parts); i++ {
		seg := parts[i]
		switch {
		case strings.HasPrefix(seg, "_"):
			return fmt.Sprintf("segment %q is private (a leading underscore): a target under an allowed prefix names public package code only", seg)
		case seg == parts[0]:
			return fmt.Sprintf("segment %q repeats the top-level package: Hydra's _locate getattr's it from the module before (one that imported %s), leaving the allowed package", seg, seg)
		case nemoModuleNames[seg] && !nemoOwnModules[strings.Join(parts[:i+1], ".")]:
			return fmt.Sprintf("segment %q is a module name code commonly imports: Hydra's _locate getattr's it from the module before, leaving the allowed package", seg)
		}
	}
	return ""
}

// nemoOwnModules are packages under the allowed prefixes whose last
// segment is also a module name of nemoModuleNames: NeMo's own
// subpackages, not an import.
var nemoOwnModules = map[string]bool{
	"nemo.collections.tts.torch": true, // NeMo 1.x TTS datasets and tokenizers
	"nemo.lightning.io":          true, // NeMo 2 serialisation
	"nemo.lightning.io.pl":       true,
}

// isDottedPath reports whether s is a Python dotted name (a.b.c).
func isDottedPath(s string) bool {
	if s == "" || len(s) > 1024 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || part[0] >= '0' && part[0] <= '9' {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

// newNeMoConfigInspector holds a model_config.yaml (at most MaxConfigBytes)
// and checks it at Close with checkNeMoConfig (text and JSON: JSON is YAML),
// then, when the layer also declares a template (tmpl), as a template of
// that dialect. It lists the config's load-time references.
func newNeMoConfigInspector(opts Options, size int64, dialect chattemplate.Dialect, tmpl bool) *nemoConfigInspector {
	n := &nemoConfigInspector{}
	n.textInspector = newHeldTextInspector(opts, size, FormatNeMo, "NeMo model_config.yaml larger than %d bytes (the limit for a NeMo configuration; content.maxConfigBytes lowers it, no key raises it)", func(b []byte) error {
		refs, err := checkNeMoConfig(opts, b)
		if err != nil {
			return err
		}
		n.refs = refs
		if tmpl {
			return checkTemplateSource(opts, FormatTemplate, "template", string(b), dialect, true)
		}
		return nil
	})
	n.textInspector.BufferedInspector.max = heldLimit(opts, nemoMaxConfig)
	return n
}

// nemoConfigInspector is the held model_config.yaml check with the
// references it found.
type nemoConfigInspector struct {
	*textInspector
	refs []Reference
	ok   bool
}

func (n *nemoConfigInspector) Close() error {
	err := n.textInspector.Close()
	n.ok = err == nil
	return err
}

// References are the names the config tells NeMo to fetch by
// (nemoReferenceKeys), once the check passed.
func (n *nemoConfigInspector) References() []Reference {
	if !n.ok {
		return nil
	}
	return n.refs
}

// nemoReferenceKeys are the model_config.yaml keys whose value NeMo (or
// the scripts that restore a model) fetches or reads by name: a Hugging
// Face tokenizer or language model (tokenizer.pretrained_model_name with
// library huggingface, or no library; language_model.pretrained_model_name:
// from_pretrained downloads it when the model is built, restore_from
// included), and the checkpoints ModelPT.maybe_init_from_pretrained_checkpoint
// and the Megatron fine-tuning scripts load (init_from_pretrained_model:
// an NGC or Hub name; init_from_nemo_model, init_from_ptl_ckpt,
// restore_from_path: paths). Found at any depth.
var nemoReferenceKeys = map[string]bool{
	"pretrained_model_name": true, "init_from_pretrained_model": true, "init_from_nemo_model": true,
	"init_from_ptl_ckpt": true, "restore_from_path": true,
}

// Bounds of the NeMo configuration walk: the file is at most
// MaxConfigBytes (held whole, parsed once by yaml.v3 into nodes); the walk
// visits each node once (aliases are not expanded: the anchored node is
// walked where it is defined), at most maxYAMLNodes nodes, 128 levels deep.
const nemoMaxDepth = 128

// yamlCoreTags are the tags PyYAML's SafeLoader (OmegaConf's loader)
// resolves without custom constructors. Any other tag (!!python/..., local
// tags) is refused.
var yamlCoreTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!map": true, "!!seq": true, "!!merge": true, "!!timestamp": true,
}

// CheckNeMoConfig checks a NeMo model_config.yaml as OmegaConf.load and
// hydra.utils.instantiate would read it: one YAML document, core tags
// only, no duplicate keys, non-scalar or alias keys resolved; every Hydra
// _target_ at any depth (in mappings, lists, merged or aliased mappings)
// must be a literal dotted path the allowlist (DefaultNeMoTargets and
// NeMoOptions.Targets) admits, as must a legacy Hydra 0.x target or cls
// key (NeMo's from_config_dict imports "target" by path) whose value is a
// dotted path. The template keys are checked as in any YAML config.
func CheckNeMoConfig(opts Options, b []byte) error {
	_, err := checkNeMoConfig(opts, b)
	return err
}

// checkNeMoConfig is CheckNeMoConfig, also returning the config's
// load-time references (nemoReferenceKeys).
func checkNeMoConfig(opts Options, b []byte) (refs []Reference, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newFinding(FormatNeMo, -1, "model_config.yaml does not parse (the YAML parser failed: %v)", r)
		}
	}()
	if yamlTagDirective(b) {
		return nil, newFinding(FormatNeMo, -1, "model_config.yaml has a %%TAG directive (the YAML parser copies its prefix into every node that uses it: a bounded file would parse into gigabytes; NeMo configs have none)")
	}
	if n := yamlNodeBound(b); n > nemoMaxNodes {
		return nil, newFinding(FormatNeMo, -1, "model_config.yaml may hold up to %d YAML nodes, more than the %d the check parses (each costs about 200 bytes parsed; no key raises it)", n, nemoMaxNodes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, nil // empty configuration: nothing to instantiate
		}
		return nil, newFinding(FormatNeMo, -1, "model_config.yaml does not parse (%v)", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, newFinding(FormatNeMo, -1, "model_config.yaml holds more than one YAML document (OmegaConf.load reads one)")
	}
	w := &nemoWalker{opts: opts, budget: maxYAMLNodes}
	if err := w.walk(&doc, "", 0); err != nil {
		return nil, err
	}
	if err := checkYAMLConfig(opts, b); err != nil {
		return nil, err
	}
	return w.refs, nil
}

type nemoWalker struct {
	opts   Options
	budget int
	refs   []Reference
}

// reference records the value of a nemoReferenceKeys key k at path at in
// mapping n (a pretrained_model_name whose sibling library names another
// tokenizer library than huggingface is a name of that library, not a
// repository).
func (w *nemoWalker) reference(n *yaml.Node, k, at string, vn *yaml.Node) error {
	for j := 0; vn.Kind == yaml.AliasNode && vn.Alias != nil && j < nemoMaxDepth; j++ {
		vn = vn.Alias
	}
	if !nemoReferenceKeys[k] || vn.Kind != yaml.ScalarNode || vn.ShortTag() != "!!str" || vn.Value == "" {
		return nil
	}
	if k == "pretrained_model_name" {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "library" && n.Content[i+1].Kind == yaml.ScalarNode && n.Content[i+1].Value != "huggingface" {
				return nil
			}
		}
	}
	w.refs = append(w.refs, Reference{Key: at, Value: vn.Value, Kind: ClassifyReference(vn.Value)})
	if len(w.refs) > maxReferences {
		return w.fail("", "more than %d load-time references (%s)", maxReferences, "pretrained_model_name, init_from_*, restore_from_path")
	}
	return nil
}

func (w *nemoWalker) fail(at, reason string, args ...any) error {
	return findingAt(FormatNeMo, "model_config.yaml", at, reason, args...)
}

// findingAt is a finding about a place (at, "" for the whole file) in a
// file a validator parsed whole.
func findingAt(format, file, at, reason string, args ...any) *Finding {
	f := newFinding(format, -1, reason, args...)
	if at != "" {
		file += " " + at
	}
	f.Reason = file + ": " + f.Reason
	return f
}

func (w *nemoWalker) walk(n *yaml.Node, at string, depth int) error {
	if depth > nemoMaxDepth {
		return w.fail(at, "nested deeper than %d levels", nemoMaxDepth)
	}
	if w.budget--; w.budget < 0 {
		return w.fail("", "more than %d YAML nodes", maxYAMLNodes)
	}
	if n.Kind != yaml.DocumentNode && n.Kind != yaml.AliasNode && !yamlCoreTags[n.ShortTag()] {
		return w.fail(at, "YAML tag %q is not a core tag (a loader with custom constructors would build objects from it)", clip(n.Tag))
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for i, c := range n.Content {
			p := at
			if n.Kind == yaml.SequenceNode {
				p = at + "[" + itoa(i) + "]"
			}
			if err := w.walk(c, p, depth+1); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if err := w.walk(kn, at, depth+1); err != nil {
				return err
			}
			for j := 0; kn.Kind == yaml.AliasNode && kn.Alias != nil && j < nemoMaxDepth; j++ {
				kn = kn.Alias
			}
			if kn.Kind != yaml.ScalarNode {
				return w.fail(at, "a mapping key is not a scalar (OmegaConf keys are strings)")
			}
			k := kn.Value
			if kn.ShortTag() != "!!merge" {
				if seen[k] {
					return w.fail(at, "duplicate key %q (loaders disagree on which value wins)", k)
				}
				seen[k] = true
			}
			p := k
			if at != "" {
				p = at + "." + k
			}
			if err := w.walk(vn, p, depth+1); err != nil {
				return err
			}
			if err := w.target(k, vn, p); err != nil {
				return err
			}
			if err := w.reference(n, k, p, vn); err != nil {
				return err
			}
		}
	case yaml.AliasNode:
		// The anchored node was walked where it is defined.
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			if err := checkNeMoResolvers(n.Value); err != "" {
				return w.fail(at, "%s", err)
			}
		}
	}
	return nil
}

// nemoResolvers are the OmegaConf resolvers a model_config.yaml may call
// (${name:args}): OmegaConf's own that return a value of the config or the
// environment, never a new config node (oc.env, oc.select, oc.dict.keys,
// oc.dict.values, oc.deprecated, the legacy env), and the arithmetic ones
// NeMo's training scripts register (multiply, int_div, subtract, not).
// oc.create and oc.decode build config nodes from a string at resolution,
// which hydra.utils.instantiate does before it reads _target_: a mapping
// they build is a target the walk never sees. Any other resolver is code
// the loading process registered, unknown here.
var nemoResolvers = map[string]bool{
	"oc.env": true, "oc.select": true, "oc.dict.keys": true, "oc.dict.values": true, "oc.deprecated": true, "env": true,
	"multiply": true, "int_div": true, "subtract": true, "not": true,
}

// checkNeMoResolvers returns why a string value's OmegaConf resolver call
// is refused, or "". Every "${" starts an interpolation: a backslash
// escape (OmegaConf reads "\${" as text) is not honoured, which is
// stricter (such text naming a resolver is refused too). After "${" and
// blanks, the text up to the first '}' or ':' is a node path (plain
// interpolation: allowed) if a '}' ends it, a resolver name if a ':' does;
// a name or path that holds another interpolation (computed at
// resolution) is refused, since it cannot be judged here. Interpolations
// nested in arguments are found by the same scan.
func checkNeMoResolvers(v string) string {
	for rest := v; ; {
		i := strings.Index(rest, "${")
		if i < 0 {
			return ""
		}
		rest = rest[i+2:]
		end := strings.IndexAny(rest, "}:")
		if end < 0 {
			return "" // not an interpolation OmegaConf can parse: text
		}
		name := strings.Trim(rest[:end], " \t")
		if strings.ContainsAny(name, "${") {
			return fmt.Sprintf("OmegaConf interpolation in %q computes its key or resolver name from another interpolation; it cannot be checked and is refused", v)
		}
		if rest[end] == ':' && !nemoResolvers[name] {
			return fmt.Sprintf("OmegaConf resolver %q in %q is refused: hydra.utils.instantiate resolves interpolations before it reads _target_, and a resolver "+
				"(oc.create, oc.decode, or one the loader registered) can build a _target_ mapping or run code at load (CVE-2025-23304); only %s are accepted", name, v, nemoResolverList())
		}
	}
}

func nemoResolverList() string {
	return "oc.env, oc.select, oc.dict.keys, oc.dict.values, oc.deprecated, env, multiply, int_div, subtract, not"
}

// target checks the value of a Hydra target key.
func (w *nemoWalker) target(k string, vn *yaml.Node, at string) error {
	if k != "_target_" && k != "target" && k != "cls" {
		return nil
	}
	for j := 0; vn.Kind == yaml.AliasNode && vn.Alias != nil && j < nemoMaxDepth; j++ {
		vn = vn.Alias
	}
	legacy := k != "_target_"
	if vn.Kind != yaml.ScalarNode || vn.ShortTag() != "!!str" {
		if legacy {
			return nil
		}
		return w.fail(at, "Hydra _target_ is not a string; refused (CVE-2025-23304: _target_ names what hydra.utils.instantiate imports and calls)")
	}
	v := vn.Value
	if strings.Contains(v, "${") {
		return w.fail(at, "Hydra %s %q is an OmegaConf interpolation; the target must be written literally to be checked", k, v)
	}
	if legacy && !isDottedPath(v) || legacy && !strings.Contains(v, ".") {
		return nil // "target: text" and the like are data, not an import path
	}
	if !isDottedPath(v) {
		return w.fail(at, "Hydra _target_ %q is not a Python dotted path", v)
	}
	if ok, why := w.opts.nemoTargetAllowed(v); !ok {
		if why != "" {
			return w.fail(at, "Hydra %s %q starts with an allowed prefix but leaves the package: %s (CVE-2025-23304); "+
				"list the exact path in content.formats.nemo.targets to admit it", k, v, why)
		}
		return w.fail(at, "Hydra %s %q is outside the NeMo target allowlist (CVE-2025-23304: hydra.utils.instantiate imports and calls it on load); "+
			"list it in content.formats.nemo.targets to admit it", k, v)
	}
	return nil
}

// maxArchiveDepth bounds tars inside tars (a .nemo in a tar layer, a
// .nemo artifact inside a .nemo): each level holds a tar state and, for
// tar+gzip, a decompressor with a 256 KiB buffer.
const maxArchiveDepth = 3

// archiveProbe validates a tar (or tar+gzip) layer whose media type does
// not declare tar packaging: a NeMo .nemo file is such a tar under a
// weight media type or a file name of its own. The tar is validated
// strictly, member by member, like a declared tar layer; at Close it must
// have held a root model_config.yaml (a NeMo archive), or the rule must
// allow archives, else it is refused as an undeclared archive.
type archiveProbe struct {
	inner  Inspector
	tar    *TarInspector
	format string
	opts   Options
	notIt  *Finding // the refusal of a tar that is not a NeMo archive
	done   bool
	err    error
}

// newArchiveProbe returns the probe; notIt is the finding for an archive
// that turns out not to be a NeMo one (nil: served, the rule allows
// archives), also given when the bytes fail before the first tar entry
// (gzip data that is no tar).
func newArchiveProbe(opts Options, size int64, format string, notIt *Finding) *archiveProbe {
	p := &archiveProbe{format: format, opts: opts, notIt: notIt}
	if format == FormatGzip {
		g := NewGzipTarInspector(opts, size)
		p.inner, p.tar = g, g.g.tar
	} else {
		t := NewTarInspector(opts, size)
		p.inner, p.tar = t, t
	}
	return p
}

func (p *archiveProbe) Format() string { return p.format }

// The chain a tar's references pass through to the report: declared →
// auto → archive probe → tar or tar+gzip.
var (
	_ ReferenceLister = (*declaredInspector)(nil)
	_ ReferenceLister = (*autoInspector)(nil)
	_ ReferenceLister = (*archiveProbe)(nil)
	_ ReferenceLister = (*TarInspector)(nil)
	_ ReferenceLister = (*GzipTarInspector)(nil)
)

// References are the load-time references of the configs inside the
// archive (adapter_config.json and the like, each named by its member
// path), once the archive passed.
func (p *archiveProbe) References() []Reference {
	if !p.done {
		return nil
	}
	if rl, ok := p.inner.(ReferenceLister); ok {
		return rl.References()
	}
	return nil
}

// memberDataAt: a plain tar's members (polyglot.go).
func (p *archiveProbe) memberDataAt(off int64) bool {
	return p.format == FormatTar && p.tar.memberDataAt(off)
}

func (p *archiveProbe) HeaderDone() bool { return p.done }

func (p *archiveProbe) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.inner.Write(b)
	if err != nil {
		p.err = p.failed(err)
		return 0, p.err
	}
	return n, nil
}

// failed replaces a structural failure before the first tar entry (the
// bytes are not a tar at all) by the refusal of a non-NeMo archive. The
// tar state is read after the decompressing goroutine ended (the gzip
// inspector returns its error only then).
func (p *archiveProbe) failed(err error) error {
	if p.notIt != nil && p.tar.count == 0 && p.tar.member == nil {
		return p.notIt
	}
	return err
}

func (p *archiveProbe) Close() error {
	if p.err != nil {
		return p.err
	}
	if err := p.inner.Close(); err != nil {
		p.err = p.failed(err)
		return p.err
	}
	if !p.tar.nemo && p.notIt != nil {
		p.err = p.notIt
		return p.err
	}
	p.done = true
	return nil
}

// CheckNeMoTargets reports an entry of NeMoOptions.Targets that is not a
// dotted Python path (an exact target) or one followed by "." (a prefix).
func CheckNeMoTargets(targets []string) error {
	for _, t := range targets {
		if !isDottedPath(strings.TrimSuffix(t, ".")) {
			return fmt.Errorf("content: formats.nemo.targets: %q is not a dotted Python path (module.Name) or a prefix ending in \".\" (package.)", t)
		}
	}
	return nil
}
