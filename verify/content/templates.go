package content

import (
	"bytes"
	"errors"
	"path"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/verify/chattemplate"
)

// Chat templates are checked by parsing them (verify/chattemplate), in the
// dialect their loader uses:
//
//   - declared: a template media type (Ollama's template and prompt layers are
//     Go text/template; Docker AI's chat.template.jinja is Jinja), a template
//     file name (.jinja, .j2, .jinja2: Jinja; .gotmpl: Go; .template, .tmpl:
//     either), a template key in a JSON or YAML config, or a GGUF
//     tokenizer.chat_template* key. A declared template must parse (a text
//     pullgate cannot parse is one it cannot vouch for) and pass the checks.
//   - detected: any other text of at most MaxConfigBytes that contains "{{"
//     or "{%" is checked as both dialects; it is refused only when it parses
//     as a template and that template reaches what it must not (a text that
//     parses as neither is not a template to any engine).

// templateDialect returns the template dialect a layer declares by media
// type or file name (0 for "either"), and whether it declares a template.
func templateDialect(mediaType, title string) (chattemplate.Dialect, bool) {
	switch mediaType {
	case "application/vnd.ollama.image.template", "application/vnd.ollama.image.prompt":
		return chattemplate.GoTemplate, true
	case "application/vnd.docker.ai.chat.template.jinja":
		return chattemplate.Jinja, true
	}
	base := strings.ToLower(path.Base(title))
	switch path.Ext(base) {
	case ".jinja", ".j2", ".jinja2":
		return chattemplate.Jinja, true
	case ".gotmpl":
		return chattemplate.GoTemplate, true
	case ".template", ".tmpl":
		return 0, true
	}
	if k, ok := knownKind(mediaType); ok && k == kindTemplate {
		return 0, true
	}
	return 0, false
}

// isYAMLName reports whether a file name says YAML.
func isYAMLName(title string) bool {
	e := strings.ToLower(path.Ext(title))
	return e == ".yaml" || e == ".yml"
}

func dialectName(d chattemplate.Dialect) string {
	switch d {
	case chattemplate.Jinja:
		return "a Jinja template"
	case chattemplate.GoTemplate:
		return "a Go text/template"
	}
	return "a Jinja or Go template"
}

// checkTemplateSource checks one template's source. where names the carrier
// ("template", "chat_template", "tokenizer.chat_template", ...). dialect 0
// means either; declared says whether the carrier makes it a template (then
// a text that does not parse is refused too).
func checkTemplateSource(opts Options, format, where, src string, dialect chattemplate.Dialect, declared bool) error {
	if opts.GGUF.AllowChatTemplateDunder {
		return nil
	}
	var err error
	switch dialect {
	case chattemplate.Jinja:
		err = chattemplate.CheckJinja(src)
	case chattemplate.GoTemplate:
		err = chattemplate.CheckGo(src)
	default:
		err = chattemplate.Check(src)
	}
	if err == nil {
		return nil
	}
	var te *chattemplate.Error
	if !errors.As(err, &te) {
		return newFinding(format, -1, "%s: %v", where, err)
	}
	if te.Syntax && !declared {
		return nil
	}
	pos := ""
	if te.Line > 0 {
		pos = " at line " + itoa(te.Line)
		if te.Col > 0 {
			pos += ", column " + itoa(te.Col)
		}
	}
	if te.Syntax {
		return newFinding(format, -1, "%s does not parse as %s%s (%s); pullgate checks templates by parsing them and refuses one it cannot parse",
			where, dialectName(dialect), pos, te.Reason)
	}
	return newFinding(format, -1, "%s: %s%s (template injection; a chat template may only read the values it is given)",
		where, te.Reason, pos)
}

// CheckTemplate checks a Jinja chat template and returns why it is refused,
// or "" when it passes.
func CheckTemplate(t string) string {
	if err := checkTemplateSource(Options{}, FormatTemplate, "template", t, chattemplate.Jinja, true); err != nil {
		return err.(*Finding).Reason
	}
	return ""
}

// newTemplateInspector buffers a declared template layer (bounded) and
// checks it at Close, with the speculative pickle walk of text (a template
// name does not stop a loader from unpickling the bytes).
func newTemplateInspector(opts Options, size int64, dialect chattemplate.Dialect) *textInspector {
	return newHeldTextInspector(opts, size, FormatTemplate, "template larger than %d bytes", func(b []byte) error {
		return checkTemplateSource(opts, FormatTemplate, "template", string(b), dialect, true)
	})
}

// mayBeTemplate reports whether text contains template syntax.
func mayBeTemplate(b []byte) bool {
	return bytes.Contains(b, []byte("{{")) || bytes.Contains(b, []byte("{%"))
}

// textInspector handles a text layer small enough to parse
// (MaxConfigBytes): the bytes are held until Close, where YAML configs
// (by name) are parsed and their template keys checked, and text that
// contains template syntax is checked as a template. The speculative pickle
// walk of opaque text runs as well (protocol 0 pickles are text).
type textInspector struct {
	*BufferedInspector
	opaque *opaqueInspector
	refs   []Reference // of a JSON config found behind leading whitespace
}

// References lists the load-time references of a JSON config the sniff
// window saw only whitespace of.
func (t *textInspector) References() []Reference {
	if !t.HeaderDone() {
		return nil
	}
	return t.refs
}

func newTextInspector(opts Options, size int64, title string) *textInspector {
	yamlName, jsonLines := isYAMLName(title), isJSONLinesName(title)
	var t *textInspector
	t = newHeldTextInspector(opts, size, FormatText, "text larger than %d bytes", func(b []byte) error {
		if yamlName {
			return checkYAMLConfig(opts, b)
		}
		if looksJSON(b) && !jsonLines {
			// JSON after more leading whitespace than the sniff window
			// holds: Python's json reads it as the config it is, so it
			// is checked as one (strict parse, remote-code hooks,
			// templates, load-time references), as without the padding
			// (JSON Lines by name is text, as in decide).
			refs, err := checkConfigJSON(opts, b)
			t.refs = refs
			return err
		}
		if mayBeTemplate(b) {
			return checkTemplateSource(opts, FormatTemplate, "text with template syntax", string(b), 0, false)
		}
		return nil
	})
	return t
}

// newHeldTextInspector holds text (at most MaxConfigBytes) until Close,
// where the speculative pickle walk and the trailing-zip check of opaque
// text conclude before check runs on the whole text.
func newHeldTextInspector(opts Options, size int64, format, tooLarge string, check func([]byte) error) *textInspector {
	t := &textInspector{opaque: newOpaqueInspector(opts, size, FormatText)}
	t.BufferedInspector = NewBufferedInspector(format, size, opts.maxConfig(), tooLarge, func(b []byte) error {
		if err := t.opaque.Close(); err != nil {
			return err
		}
		return check(b)
	})
	return t
}

func (t *textInspector) Write(p []byte) (int, error) {
	if _, err := t.opaque.Write(p); err != nil {
		return 0, err
	}
	return t.BufferedInspector.Write(p)
}

// checkYAMLConfig parses a YAML config and checks every string under a key
// whose name contains "template" as a Jinja template (YAML configs of
// serving and training stacks carry Hugging Face chat templates).
// A file that does not parse as YAML is refused: its template keys could
// not be found.
func checkYAMLConfig(opts Options, b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newFinding(FormatYAML, -1, "YAML config does not parse (the YAML parser failed: %v)", r)
		}
	}()
	if yamlTagDirective(b) {
		return newFinding(FormatYAML, -1, "YAML config has a %%TAG directive (the YAML parser copies its prefix into every node that uses it: a bounded file would parse into gigabytes; configs have none)")
	}
	if k := yamlNodeBound(b); k > maxYAMLParseNodes {
		return newFinding(FormatYAML, -1, "YAML config of up to %d nodes; pullgate parses YAML configs whole and refuses more than %d nodes (about 200 bytes of memory each; no key raises it)", k, maxYAMLParseNodes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if err != nil {
			if err.Error() == "EOF" {
				return nil
			}
			return newFinding(FormatYAML, -1, "YAML config does not parse (%v); pullgate checks the template keys of YAML configs and refuses one it cannot read", err)
		}
		w := yamlTemplateWalk{budget: maxYAMLNodes, checked: map[*yaml.Node]bool{}}
		if err := w.walk(opts, &n, "", 0, false); err != nil {
			return err
		}
	}
}

// maxYAMLParseNodes bounds the nodes yaml.v3 may build from one YAML
// config (yamlNodeBound, counted before the parse): a flow sequence takes
// two bytes a node and yaml.v3 about 200 bytes of memory, so 64 MiB of
// "[0,0,...]" would parse into gigabytes. 2^17 nodes are about 26 MiB; a
// serving or training config has hundreds.
const maxYAMLParseNodes = 1 << 17

// maxYAMLNodes bounds the nodes walked in one YAML document, aliases
// expanded (an alias bomb expands exponentially).
const maxYAMLNodes = 1 << 20

// yamlTemplateWalk walks a YAML document for template strings: budget
// bounds the nodes visited (aliases expanded), checked holds the scalars
// already checked as templates (an alias repeats its node, not its
// check: 2,000 aliases of a 1 MiB template took 38 s).
type yamlTemplateWalk struct {
	budget  int
	checked map[*yaml.Node]bool
}

func (w *yamlTemplateWalk) walk(opts Options, n *yaml.Node, key string, depth int, under bool) error {
	if depth > 128 {
		return newFinding(FormatYAML, -1, "YAML nested deeper than 128 levels")
	}
	if w.budget--; w.budget < 0 {
		return newFinding(FormatYAML, -1, "YAML expands to more than %d nodes (alias bomb)", maxYAMLNodes)
	}
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := w.walk(opts, c, key, depth+1, under); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn := n.Content[i]
			for kn.Kind == yaml.AliasNode && kn.Alias != nil {
				kn = kn.Alias // "*k : ..." is the anchored key's value
			}
			k := kn.Value
			if err := w.walk(opts, n.Content[i+1], k, depth+1, under || isTemplateKey(k)); err != nil {
				return err
			}
		}
	case yaml.AliasNode:
		// Aliases repeat a node already walked where it was anchored, but
		// under another key: walk it again under this key (bounded by depth).
		if n.Alias != nil {
			return w.walk(opts, n.Alias, key, depth+1, under)
		}
	case yaml.ScalarNode:
		// Whatever its tag (!!python/str, !!binary, ...): a loader may
		// hand the value to the template engine as a string.
		if under && !w.checked[n] {
			w.checked[n] = true
			return checkTemplateSource(opts, FormatYAML, "YAML key "+strqQuote(key), n.Value, chattemplate.Jinja, true)
		}
	}
	return nil
}

// isTemplateKey reports whether a config key carries a template
// (chat_template, chat_template_jinja, prompt_template, template, ...).
func isTemplateKey(k string) bool {
	return strings.Contains(strings.ToLower(k), "template")
}

func strqQuote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}
