package content

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"strings"

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

// isNeMoConfigName reports whether a file is a NeMo model configuration.
func isNeMoConfigName(title string) bool {
	return path.Base(title) == nemoConfigName
}

// nemoTargetAllowed reports whether a Hydra target is allowed.
func (o Options) nemoTargetAllowed(t string) bool {
	for _, lists := range [][]string{DefaultNeMoTargets, o.NeMo.Targets} {
		for _, a := range lists {
			if strings.HasSuffix(a, ".") && strings.HasPrefix(t, a) || a == t {
				return true
			}
		}
	}
	return false
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
// and checks it at Close with checkNeMoConfig (text and JSON: JSON is YAML).
func newNeMoConfigInspector(opts Options, size int64) *textInspector {
	return newHeldTextInspector(opts, size, FormatNeMo, "NeMo model_config.yaml larger than %d bytes (content.maxConfigBytes)", func(b []byte) error {
		return CheckNeMoConfig(opts, b)
	})
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
func CheckNeMoConfig(opts Options, b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newFinding(FormatNeMo, -1, "model_config.yaml does not parse (the YAML parser failed: %v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil // empty configuration: nothing to instantiate
		}
		return newFinding(FormatNeMo, -1, "model_config.yaml does not parse (%v)", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return newFinding(FormatNeMo, -1, "model_config.yaml holds more than one YAML document (OmegaConf.load reads one)")
	}
	w := &nemoWalker{opts: opts, budget: maxYAMLNodes}
	if err := w.walk(&doc, "", 0); err != nil {
		return err
	}
	return checkYAMLConfig(opts, b)
}

type nemoWalker struct {
	opts   Options
	budget int
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
		return w.fail(at, "YAML tag %q is not a core tag (a loader with custom constructors would build objects from it)", n.Tag)
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
		}
	case yaml.AliasNode:
		// The anchored node was walked where it is defined.
	case yaml.ScalarNode:
	}
	return nil
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
	if !w.opts.nemoTargetAllowed(v) {
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
