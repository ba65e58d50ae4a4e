package policy

import (
	"github.com/pullgate/pullgate/verify/content"

	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/policy/bytesize"
	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/pubkey"
)

// File size limits for everything the loader reads.
const (
	MaxPolicyBytes      = 4 << 20
	MaxKeyBytes         = 64 << 10
	MaxTrustedRootBytes = 16 << 20
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

const nameFix = "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"

// Load reads, validates and compiles a policy file. An invalid policy
// returns a *LoadError carrying every diagnostic.
func Load(path string) (*Policy, error) {
	p, diags := load(path)
	if len(diags) > 0 {
		return nil, &LoadError{Diagnostics: diags}
	}
	return p, nil
}

// Lint returns every problem in a policy file (nil when it is valid). It
// reads the same files Load reads and compiles every CEL condition.
func Lint(path string) []Diagnostic { return LintAt(path, time.Now()) }

// LintAt is Lint at a given time: exceptions expired at now are errors
// (the policy still loads: they waive nothing), exceptions that expire
// within ExpiryWarning warnings.
func LintAt(path string, now time.Time) []Diagnostic {
	l := &loader{file: path, now: now}
	_, diags := l.load(path)
	if diags == nil {
		diags = l.lint
	} else {
		diags = append(diags, l.lint...)
	}
	sortDiags(diags)
	return diags
}

func load(path string) (*Policy, []Diagnostic) {
	l := &loader{file: path, now: time.Now()}
	return l.load(path)
}

func sortDiags(diags []Diagnostic) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i], diags[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

func (l *loader) load(path string) (*Policy, []Diagnostic) {
	abs, err := filepath.Abs(path)
	if err != nil {
		l.errAt(nil, "check the policy path", "cannot resolve path: %v", err)
		return nil, l.diags
	}
	l.dir = filepath.Dir(abs)
	data, err := readLimited(abs, MaxPolicyBytes)
	if err != nil {
		l.errAt(nil, "check the policy path and its permissions", "cannot read policy: %v", err)
		return nil, l.diags
	}
	p := l.parse(data)
	if len(l.diags) > 0 {
		sortDiags(l.diags)
		return nil, l.diags
	}
	p.File = abs
	p.deps = append([]string{abs}, p.deps...)
	return p, nil
}

// readLimited reads a regular file of at most max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, nil
}

var (
	yamlLineRE       = regexp.MustCompile(`line (\d+)`)
	yamlLinePrefixRE = regexp.MustCompile(`^line \d+: `)
)

func (l *loader) parse(data []byte) *Policy {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.errPos(1, 1, "add a rules: list", "policy file is empty")
			return nil
		}
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		col := 0
		if line > 0 {
			col = 1
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLinePrefixRE.FindString(msg); m != "" {
			msg = strings.TrimPrefix(msg, m)
		}
		l.errPos(line, col, "fix the YAML syntax (the problem is at or after this line)", "YAML syntax: %s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.errPos(extra.Line, extra.Column, "keep the whole policy in one YAML document (remove the '---')", "policy file has more than one YAML document")
	} else if !errors.Is(err, io.EOF) {
		l.errPos(0, 0, "fix the YAML syntax", "%v", err)
	}
	if len(doc.Content) == 0 {
		l.errPos(1, 1, "add a rules: list", "policy file is empty")
		return nil
	}
	if !withinBudget(&doc, maxExpandedNodes) {
		l.errPos(1, 1, "write the policy without (nested) YAML aliases", "policy expands to more than %d YAML nodes through aliases", maxExpandedNodes)
		return nil
	}
	root := resolve(doc.Content[0])
	fs, ok := l.mapping(root, "policy", "version", "trust", "rules", "exceptions")
	if !ok {
		return nil
	}
	p := &Policy{}
	if f, ok := fs["version"]; ok {
		if v := f.val; v.Kind != yaml.ScalarNode || v.Value != "1" {
			l.errAt(v, "write version: 1 or remove the key", "version %q is not supported", v.Value)
		}
	}
	p.Trust.kinds = map[string]TrustKind{}
	p.Trust.keyIDs = map[string]string{}
	var files []trustFile
	var trustNode *yaml.Node
	if f, ok := fs["trust"]; ok {
		trustNode = f.key
		files = l.parseTrust(f.val, &p.Trust)
	}
	if len(l.diags) == 0 {
		l.compileTrust(trustNode, &p.Trust)
	}
	f, ok := fs["rules"]
	if !ok {
		l.errAt(root, "add a rules: list; a policy without rules denies everything", "policy has no rules key")
		return nil
	}
	p.Rules = l.parseRules(f, &p.Trust)
	if xf, ok := fs["exceptions"]; ok {
		p.Exceptions = l.parseExceptions(xf, p.Rules)
	}
	if len(l.diags) > 0 {
		return nil
	}
	files = append(files, l.regoFiles...)
	p.revision = computeRevision(p, files)
	for _, tf := range files {
		p.deps = append(p.deps, tf.path)
	}
	return p
}

// maxExpandedNodes bounds the YAML tree size after alias expansion, so that
// nested aliases ("billion laughs") cannot make loading exponential.
const maxExpandedNodes = 1 << 20

// withinBudget walks the tree, following aliases, and reports whether it has
// at most budget nodes.
func withinBudget(n *yaml.Node, budget int) bool {
	count := 0
	var walk func(n *yaml.Node, depth int) bool
	walk = func(n *yaml.Node, depth int) bool {
		count++
		if count > budget || depth > 10000 {
			return false
		}
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				return true
			}
			return walk(n.Alias, depth+1)
		}
		for _, c := range n.Content {
			if !walk(c, depth+1) {
				return false
			}
		}
		return true
	}
	return walk(n, 0)
}

// trustFile is a file the policy depends on, with its hash for the revision.
type trustFile struct {
	role string // "key:<name>" or "trustedRoot"
	path string
	sum  [32]byte
}

func (l *loader) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(l.dir, p)
}

func (l *loader) parseTrust(n *yaml.Node, t *Trust) []trustFile {
	fs, ok := l.mapping(n, "trust", "keys", "identities", "trustedRoot")
	if !ok {
		return nil
	}
	var files []trustFile
	declared := map[string]int{}
	declare := func(nameNode *yaml.Node, name string, kind TrustKind) {
		if line, dup := declared[name]; dup {
			l.errAt(nameNode, "give every key and identity a distinct name", "trust name %q is already used at line %d", name, line)
			return
		}
		declared[name] = nameNode.Line
		t.kinds[name] = kind
	}
	if f, ok := fs["keys"]; ok {
		if f.val.Kind != yaml.SequenceNode {
			l.errAt(f.val, "write keys as a list of {name, path}", "trust.keys must be a list, got %s", kindName(f.val))
		} else {
			for i, it := range f.val.Content {
				what := fmt.Sprintf("trust.keys[%d]", i)
				kf, ok := l.mapping(it, what, "name", "path")
				if !ok {
					continue
				}
				var k Key
				if name, nf, ok := l.name(kf, resolve(it), what, "add name: <key name>"); ok {
					k.Name = name
					declare(nf.val, name, TrustKey)
				}
				pf, hasPath := kf["path"]
				if !hasPath {
					l.errAt(resolve(it), "add path: <PEM public key file>", "%s: path is required", what)
					continue
				}
				path, ok := l.str(pf, what+".path", "give the path of a PEM public key file, relative to the policy file")
				if !ok {
					continue
				}
				k.Path = l.abs(path)
				pemBytes, err := readLimited(k.Path, MaxKeyBytes)
				if err != nil {
					l.errAt(pf.val, "check that the key file exists and is readable (paths are relative to the policy file)", "%s: cannot read key: %v", what, err)
					continue
				}
				pub, err := pubkey.ParsePEM(pemBytes)
				if err != nil {
					l.errAt(pf.val, "export the public key in PEM (e.g. cosign public-key): "+pubkey.Supported, "%s: %s: %v", what, path, err)
					continue
				}
				if id, ok := keyID(pub); ok && k.Name != "" {
					t.keyIDs[k.Name] = id
				}
				t.Keys = append(t.Keys, k)
				t.Spec.Keys = append(t.Spec.Keys, verify.KeySpec{Name: k.Name, PEM: pemBytes})
				files = append(files, trustFile{role: "key:" + k.Name, path: k.Path, sum: sha256.Sum256(pemBytes)})
			}
		}
	}
	var identitiesNode *yaml.Node
	hasIdentities := false
	if f, ok := fs["identities"]; ok {
		identitiesNode = f.key
		hasIdentities = f.val.Kind == yaml.SequenceNode && len(f.val.Content) > 0
		if f.val.Kind != yaml.SequenceNode {
			l.errAt(f.val, "write identities as a list of {name, issuer, subjectRegExp}", "trust.identities must be a list, got %s", kindName(f.val))
		} else {
			for i, it := range f.val.Content {
				what := fmt.Sprintf("trust.identities[%d]", i)
				idf, ok := l.mapping(it, what, "name", "issuer", "issuerRegExp", "subject", "subjectRegExp")
				if !ok {
					continue
				}
				var id verify.IdentitySpec
				valid := true
				if nf, ok := idf["name"]; !ok {
					l.errAt(resolve(it), "add name: <identity name>", "%s: name is required", what)
					valid = false
				} else if name, ok := l.str(nf, what+".name", nameFix); ok {
					if !nameRE.MatchString(name) {
						l.errAt(nf.val, nameFix, "%s.name %q is not a valid name", what, name)
						valid = false
					}
					id.Name = name
					declare(nf.val, name, TrustIdentity)
				} else {
					valid = false
				}
				exact, re, ok := l.exactOrRegexp(resolve(it), idf, what, "issuer", "issuerRegExp",
					"set issuer to the OIDC issuer URL, e.g. https://token.actions.githubusercontent.com")
				id.Issuer, id.IssuerRegExp = exact, re
				valid = valid && ok
				exact, re, ok = l.exactOrRegexp(resolve(it), idf, what, "subject", "subjectRegExp",
					"set subject (exact certificate SAN) or subjectRegExp, e.g. ^https://github\\.com/acme/.+")
				id.Subject, id.SubjectRegExp = exact, re
				valid = valid && ok
				if valid {
					t.Identities = append(t.Identities, id)
					t.Spec.Identities = append(t.Spec.Identities, id)
				}
			}
		}
	}
	if f, ok := fs["trustedRoot"]; ok {
		if path, ok := l.str(f, "trust.trustedRoot", "give the path of a Sigstore trusted_root.json, relative to the policy file"); ok {
			t.TrustedRoot = l.abs(path)
			b, err := readLimited(t.TrustedRoot, MaxTrustedRootBytes)
			switch {
			case err != nil:
				l.errAt(f.val, "check that the file exists (fetch it once with `cosign trusted-root create` or from the sigstore TUF repository)", "trust.trustedRoot: cannot read: %v", err)
			case !isJSONObject(b):
				l.errAt(f.val, "use a Sigstore trusted_root.json (a JSON object)", "trust.trustedRoot: %s is not a JSON object", path)
			default:
				t.Spec.TrustedRootJSON = b
				files = append(files, trustFile{role: "trustedRoot", path: t.TrustedRoot, sum: sha256.Sum256(b)})
			}
		}
	} else if identitiesNode != nil && hasIdentities {
		l.errAt(identitiesNode, "add trust.trustedRoot: ./trusted_root.json so keyless certificates can be checked offline", "keyless identities need trust.trustedRoot")
	}
	return files
}

// compileTrust is the single place trust material is handed to package
// verify: it parses keys and the trusted root once per load, so a file that
// verify cannot use is a policy error (reported at the trust section), not
// a failure on the first pull.
func (l *loader) compileTrust(at *yaml.Node, t *Trust) {
	v, err := verify.NewTrust(t.Spec)
	if err != nil {
		l.errAt(at, "check the files under trust (keys: PEM public keys; trustedRoot: a Sigstore trusted_root.json)",
			"trust material rejected by the verifier: %v", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	t.Verifier = v
}

func isJSONObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil
}

// exactOrRegexp reads exactly one of an exact-value key and a regexp key.
func (l *loader) exactOrRegexp(at *yaml.Node, fs map[string]field, what, exactKey, reKey, fix string) (string, string, bool) {
	ef, hasE := fs[exactKey]
	rf, hasR := fs[reKey]
	switch {
	case hasE && hasR:
		l.errAt(rf.key, fmt.Sprintf("keep either %s or %s", exactKey, reKey), "%s: %s and %s are mutually exclusive", what, exactKey, reKey)
		return "", "", false
	case !hasE && !hasR:
		l.errAt(at, fix, "%s: one of %s or %s is required", what, exactKey, reKey)
		return "", "", false
	case hasE:
		s, ok := l.str(ef, what+"."+exactKey, fix)
		return s, "", ok
	default:
		s, ok := l.str(rf, what+"."+reKey, fix)
		if !ok {
			return "", "", false
		}
		if _, err := regexp.Compile(s); err != nil {
			l.errAt(rf.val, "use RE2 syntax (https://github.com/google/re2/wiki/Syntax); anchor it with ^ and $", "%s.%s does not compile: %v", what, reKey, err)
			return "", "", false
		}
		if !strings.HasPrefix(s, "^") {
			l.errAt(rf.val, "start the expression with ^ (and end with $ or a bounded suffix) so it cannot match inside an attacker's value", "%s.%s %q is not anchored", what, reKey, s)
			return "", "", false
		}
		return "", s, true
	}
}

func (l *loader) parseRules(f field, t *Trust) []*Rule {
	n := f.val
	if n.Kind != yaml.SequenceNode {
		l.errAt(n, "write rules as a list of {name, match, action, require}", "rules must be a list, got %s", kindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		l.errAt(f.key, "add at least one rule; a policy without rules denies everything", "rules is empty")
		return nil
	}
	var rules []*Rule
	names := map[string]int{}
	for i, it := range n.Content {
		r := l.parseRule(resolve(it), i, t)
		if r == nil {
			continue
		}
		if r.Name != "" {
			if line, dup := names[r.Name]; dup {
				l.errAt(resolve(it), "give every rule a distinct name", "rule name %q is already used at line %d", r.Name, line)
			}
			names[r.Name] = r.Line
		}
		rules = append(rules, r)
	}
	return rules
}

func (l *loader) parseRule(n *yaml.Node, i int, t *Trust) *Rule {
	what := fmt.Sprintf("rules[%d]", i)
	fs, ok := l.mapping(n, what, "name", "description", "match", "action", "mode", "require", "content", "rego")
	if !ok {
		return nil
	}
	r := &Rule{Line: n.Line, Action: ActionVerify, Mode: ModeEnforce, trust: t}
	if name, _, ok := l.name(fs, n, what, "add name: <rule name>; it appears in every denial"); ok {
		r.Name = name
		what = fmt.Sprintf("rule %s", name)
	}
	if df, ok := fs["description"]; ok {
		r.Description, _ = l.str(df, what+".description", "write a short text")
	}
	if mf, ok := fs["match"]; !ok {
		l.errAt(n, `add match: ["<upstream>/<repo>/**"]`, "%s: match is required", what)
	} else {
		pats, nodes, _ := l.strList(mf, what+".match", `write match: ["upstream.local/app/**"]`)
		if mf.val.Kind == yaml.SequenceNode && len(mf.val.Content) == 0 {
			l.errAt(mf.val, `add at least one pattern, e.g. "upstream.local/**"`, "%s.match is empty", what)
		}
		for j, pat := range pats {
			g, ok := l.glob(nodes[j], pat, what+".match")
			if !ok {
				continue
			}
			switch prev, dup := l.patterns[pat]; {
			case l.catchAll != "":
				l.errAt(nodes[j], "move this rule above rule "+l.catchAll+", or narrow that rule's pattern", "%s.match: %q can never match: rule %s matches every repository first", what, pat, l.catchAll)
			case dup:
				l.errAt(nodes[j], "remove the pattern, or move this rule above rule "+prev, "%s.match: %q can never match: rule %s has the same pattern first", what, pat, prev)
			}
			r.Patterns = append(r.Patterns, pat)
			r.globs = append(r.globs, g)
		}
		if l.patterns == nil {
			l.patterns = map[string]string{}
		}
		for _, pat := range r.Patterns {
			if _, dup := l.patterns[pat]; !dup {
				l.patterns[pat] = r.Name
			}
			if pat == "**" && l.catchAll == "" {
				l.catchAll = r.Name
			}
		}
	}
	actionOK := true
	if af, ok := fs["action"]; ok {
		actionOK = false
		if s, ok := l.str(af, what+".action", "write allow, deny or verify"); ok {
			switch Action(s) {
			case ActionAllow, ActionDeny, ActionVerify:
				r.Action = Action(s)
				actionOK = true
			default:
				l.errAt(af.val, "write allow, deny or verify", "%s.action %q is not one of allow, deny, verify", what, s)
			}
		}
	}
	if mf, ok := fs["mode"]; ok {
		if s, ok := l.str(mf, what+".mode", "write enforce or audit"); ok {
			switch Mode(s) {
			case ModeEnforce, ModeAudit:
				r.Mode = Mode(s)
			default:
				l.errAt(mf.val, "write enforce or audit", "%s.mode %q is not one of enforce, audit", what, s)
			}
		}
	}
	rf, hasReq := fs["require"]
	switch {
	case !actionOK:
		// The action is already reported; do not guess what it meant.
	case r.Action == ActionVerify && !hasReq:
		at := n
		if af, ok := fs["action"]; ok {
			at = af.val
		} else if nf, ok := fs["name"]; ok {
			at = nf.key
		}
		l.errAt(at, "add require: {signatures: [<trust key or identity>]}, or set action: allow or deny", "%s: action verify (the default) needs a require section", what)
	case r.Action != ActionVerify && hasReq:
		l.errAt(rf.key, "remove require, or set action: verify", "%s: require has no effect with action %s", what, r.Action)
	case hasReq:
		r.Require = l.parseRequire(rf, what, t)
	}
	if cf, ok := fs["content"]; ok {
		if r.Action == ActionDeny {
			l.errAt(cf.key, "remove content, or set action: allow or verify", "%s: content has no effect with action deny", what)
		} else {
			r.Content = l.parseContent(cf, what)
			l.checkReferencesAction(r, what)
		}
	}
	if rf, ok := fs["rego"]; ok {
		if r.Action != ActionVerify {
			l.errAt(rf.key, "remove rego, or set action: verify with a require section", "%s: rego needs action verify", what)
		} else {
			r.Rego = l.parseRego(rf, what, r.Name)
		}
	}
	return r
}

func (l *loader) trustNames(t *Trust, list []string, nodes []*yaml.Node, what string) {
	for j, name := range list {
		if _, ok := t.kinds[name]; !ok {
			fix := "define it under trust.keys or trust.identities"
			if len(t.kinds) > 0 {
				fix += "; defined: " + strings.Join(sortedKeys(t.kinds), ", ")
			}
			l.errAt(nodes[j], fix, "%s: %q is not a trust key or identity", what, name)
		}
	}
}

func (l *loader) parseRequire(f field, what string, t *Trust) *Require {
	what += ".require"
	fs, ok := l.mapping(f.val, what, "signatures", "attestations", "chain", "mbom", "tlog", "timestamp", "conditions", "signals")
	if !ok {
		return nil
	}
	req := &Require{}
	if sf, ok := fs["signatures"]; ok {
		req.Signatures, req.SignaturesMin, _ = l.signers(sf, what+".signatures", t, "list at least one trust name, or remove signatures")
	}
	if af, ok := fs["attestations"]; ok {
		its, _ := l.items(af, what+".attestations", "write attestations as a list of {predicateType, signedBy, condition}",
			"list at least one attestation, or remove attestations")
		for i, it := range its {
			if a := l.parseAttestation(it, fmt.Sprintf("%s.attestations[%d]", what, i), t); a != nil {
				req.Attestations = append(req.Attestations, a)
			}
		}
	}
	if cf, ok := fs["chain"]; ok {
		if s, ok := l.str(cf, what+".chain", "name a chain profile: "+strings.Join(KnownChains, ", ")); ok {
			if !contains(KnownChains, s) {
				l.errAt(cf.val, "name a chain profile: "+strings.Join(KnownChains, ", "), "%s.chain %q is not a known chain profile", what, s)
			}
			req.Chain = s
		}
	}
	if mf, ok := fs["mbom"]; ok {
		if s, ok := l.str(mf, what+".mbom", "write required or optional"); ok {
			switch MBOMMode(s) {
			case MBOMRequired, MBOMOptional:
				req.MBOM = MBOMMode(s)
			default:
				l.errAt(mf.val, "write required or optional", "%s.mbom %q is not one of required, optional", what, s)
			}
		}
	}
	if bf, ok := fs["tlog"]; ok {
		req.TLog, _ = l.boolean(bf, what+".tlog")
	}
	if bf, ok := fs["timestamp"]; ok {
		req.Timestamp, _ = l.boolean(bf, what+".timestamp")
	}
	if cf, ok := fs["conditions"]; ok {
		req.Conditions = l.parseConditions(cf, what+".conditions")
	}
	if sf, ok := fs["signals"]; ok {
		req.Signals = l.parseSignals(sf, what+".signals", t)
	}
	for _, c := range req.Conditions {
		if c.UsesSignals && len(req.Signals) == 0 {
			l.errAt(fs["conditions"].key, "add signals: [<provider>] to require (a condition reads the answers of the providers the rule requires)",
				"%s.conditions: condition %s reads signals, but require.signals names no provider", what, c.label())
			break
		}
	}
	if len(fs) > 0 && len(req.Signatures) == 0 && len(req.Attestations) == 0 && req.Chain == "" && req.MBOM != MBOMRequired {
		_, c := fs["conditions"]
		if _, sg := fs["signals"]; sg {
			c = true
		}
		if _, s := fs["signatures"]; !s && !c {
			if _, a := fs["attestations"]; !a {
				l.errAt(f.key, "add signatures: [<trust name>] or attestations", "%s requires nothing that identifies a signer", what)
			}
		}
	} else if len(fs) == 0 {
		l.errAt(f.key, "add signatures: [<trust name>] or attestations", "%s is empty", what)
	}
	return req
}

const conditionsFix = "conditions are CEL over subject, manifest, annotations (maps), config, model (dyn, null when absent) and now (timestamp) and must return bool"

// parseConditions reads require.conditions: a list of CEL strings or
// {name, expr} mappings, each compiled and type-checked now.
func (l *loader) parseConditions(f field, what string) []*Condition {
	its, ok := l.items(f, what, `write conditions as a list of CEL strings or {name, expr}, e.g. ['config.user != ""']`,
		"list at least one condition, or remove conditions")
	if !ok {
		return nil
	}
	var out []*Condition
	names := map[string]bool{}
	for i, it := range its {
		w := fmt.Sprintf("%s[%d]", what, i)
		c := &Condition{}
		ef := field{key: it, val: it}
		if it.Kind == yaml.MappingNode {
			fs, ok := l.mapping(it, w, "name", "expr")
			if !ok {
				continue
			}
			if nf, ok := fs["name"]; ok {
				if name, ok := l.str(nf, w+".name", nameFix); ok {
					switch {
					case !nameRE.MatchString(name):
						l.errAt(nf.val, nameFix, "%s.name %q is not a valid name", w, name)
					case names[name]:
						l.errAt(nf.val, "give each condition its own name", "%s.name %q is used twice", w, name)
					}
					names[name] = true
					c.Name = name
				}
			}
			xf, hasExpr := fs["expr"]
			if !hasExpr {
				l.errAt(it, `add expr: <CEL expression>, e.g. expr: 'config.user != ""'`, "%s: expr is required", w)
				continue
			}
			ef, w = xf, w+".expr"
		}
		src, ok := l.str(ef, w, "write a CEL expression over subject, manifest, annotations, config, model and now")
		if !ok {
			continue
		}
		prg, refs, issues := compileArtifactCondition(src)
		for _, is := range issues {
			line, col := celPosition(ef.val, is.line, is.col)
			l.errPos(line, col, conditionsFix, "%s: %s", w, is.msg)
		}
		if len(issues) > 0 {
			continue
		}
		if refs.config && trueWithoutConfig(prg) {
			l.errAt(ef.val, "guard it: config != null && ... (an image whose config pullgate does not read must fail it)",
				"%s: %v", w, errTrueWithoutConfig)
			continue
		}
		if refs.signals && refs.artifact() {
			l.errAt(ef.val, "split it: one condition over signals, another over the artifact (every condition must hold)",
				"%s: a condition reads signals and the artifact together: an answer could then lift a requirement on the artifact (signals can only add requirements)", w)
			continue
		}
		c.Expr, c.UsesNow, c.UsesSignals, c.prg = src, refs.now, refs.signals, prg
		out = append(out, c)
	}
	return out
}

func (l *loader) parseAttestation(n *yaml.Node, what string, t *Trust) *AttestationRequirement {
	fs, ok := l.mapping(n, what, "predicateType", "signedBy", "condition")
	if !ok {
		return nil
	}
	a := &AttestationRequirement{}
	valid := true
	if pf, ok := fs["predicateType"]; !ok {
		l.errAt(n, "add predicateType: <URI>, e.g. https://slsa.dev/provenance/v1", "%s: predicateType is required", what)
		valid = false
	} else if s, ok := l.str(pf, what+".predicateType", "write the predicate type URI"); ok {
		if strings.ContainsAny(s, " \t\r\n") {
			l.errAt(pf.val, "write the predicate type URI exactly as the attestation carries it", "%s.predicateType %q contains whitespace", what, s)
			valid = false
		}
		a.PredicateType = s
	} else {
		valid = false
	}
	if sf, ok := fs["signedBy"]; !ok {
		l.errAt(n, "add signedBy: [<trust key or identity>]", "%s: signedBy is required", what)
		valid = false
	} else {
		names, k, ok := l.signers(sf, what+".signedBy", t, "list at least one trust name")
		valid = valid && ok
		a.SignedBy, a.SignedByMin = names, k
	}
	if cf, ok := fs["condition"]; ok {
		if src, ok := l.str(cf, what+".condition", "write a CEL expression over predicate, statement, repository and digest"); ok {
			prg, issues := compileCondition(src)
			for _, is := range issues {
				line, col := celPosition(cf.val, is.line, is.col)
				l.errPos(line, col, "conditions are CEL over predicate (dyn), statement (map), repository and digest (strings) and must return bool", "%s.condition: %s", what, is.msg)
			}
			a.Condition, a.prg = src, prg
			valid = valid && len(issues) == 0
		} else {
			valid = false
		}
	}
	if !valid {
		return nil
	}
	return a
}

// celPosition maps a position inside a CEL expression (1-based line,
// 0-based column; negative when unknown) to the policy file.
func celPosition(n *yaml.Node, line, col int) (int, int) {
	if line < 1 || col < 0 {
		return n.Line, n.Column
	}
	switch {
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		// Block scalars start on the line after the indicator; the
		// indentation is not recorded, so point at the line.
		return n.Line + line, 1
	case line > 1:
		return n.Line + line - 1, col + 1
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		return n.Line, n.Column + 1 + col
	default:
		return n.Line, n.Column + col
	}
}

func (l *loader) parseContent(f field, what string) *Content {
	what += ".content"
	fs, ok := l.mapping(f.val, what, "mediaTypes", "formats", "denyCodeLayers", "tensors", "allowArchives", "maxConfigBytes", "references")
	if !ok {
		return nil
	}
	c := &Content{Formats: Formats{Pickle: PickleFormat{Mode: PickleDeny}}, mediaTypeSet: map[string]struct{}{}}
	if mf, ok := fs["mediaTypes"]; ok {
		items, nodes, _ := l.strList(mf, what+".mediaTypes", "list set names ("+mediaTypeSetNames()+") or exact media types")
		for j, it := range items {
			if isMediaTypeSet(it) {
				c.MediaTypeSets = append(c.MediaTypeSets, it)
				for _, mt := range content.MediaTypeSet(it) {
					if _, dup := c.mediaTypeSet[mt]; !dup {
						c.mediaTypeSet[mt] = struct{}{}
						c.MediaTypes = append(c.MediaTypes, mt)
					}
				}
				continue
			}
			if !strings.Contains(it, "/") {
				l.errAt(nodes[j], "use one of the sets "+mediaTypeSetNames()+", or an exact media type such as application/vnd.oci.image.layer.v1.tar", "%s.mediaTypes: unknown media type set %q", what, it)
				continue
			}
			if !mediaTypeRE.MatchString(it) {
				l.errAt(nodes[j], "write type/subtype without parameters, e.g. application/vnd.cncf.model.weight.v1.raw", "%s.mediaTypes: %q is not a valid media type", what, it)
				continue
			}
			if _, dup := c.mediaTypeSet[it]; !dup {
				c.mediaTypeSet[it] = struct{}{}
				c.MediaTypes = append(c.MediaTypes, it)
				c.ExactMediaTypes = append(c.ExactMediaTypes, it)
			}
		}
		if mf.val.Kind == yaml.SequenceNode && len(mf.val.Content) == 0 {
			l.errAt(mf.val, "list at least one set or media type, or remove mediaTypes", "%s.mediaTypes is empty (it would refuse every layer)", what)
		}
	}
	if ff, ok := fs["formats"]; ok {
		l.parseFormats(ff, what+".formats", &c.Formats)
	}
	if df, ok := fs["denyCodeLayers"]; ok {
		c.DenyCodeLayers, _ = l.boolean(df, what+".denyCodeLayers")
	}
	if rf, ok := fs["references"]; ok {
		c.References = l.parseReferences(rf, what)
	}
	if af, ok := fs["allowArchives"]; ok {
		c.AllowArchives, _ = l.boolean(af, what+".allowArchives")
	}
	if mf, ok := fs["maxConfigBytes"]; ok {
		c.MaxConfigBytes = l.size(mf, what+".maxConfigBytes")
	}
	if tf, ok := fs["tensors"]; ok {
		tfs, ok := l.mapping(tf.val, what+".tensors", "allow")
		if ok {
			af, has := tfs["allow"]
			if !has {
				l.errAt(tf.val, "add allow: ['<regexp>']", "%s.tensors: allow is required", what)
			} else {
				pats, nodes, _ := l.strList(af, what+".tensors.allow", "list RE2 regular expressions over tensor names")
				for j, p := range pats {
					re, err := regexp.Compile(p)
					if err != nil {
						l.errAt(nodes[j], "use RE2 syntax; anchor with ^ and $", "%s.tensors.allow: %q does not compile: %v", what, p, err)
						continue
					}
					c.TensorAllow = append(c.TensorAllow, re)
				}
				if af.val.Kind == yaml.SequenceNode && len(af.val.Content) == 0 {
					l.errAt(af.val, "list at least one regexp, or remove tensors", "%s.tensors.allow is empty (it would refuse every tensor)", what)
				}
			}
		}
	}
	return c
}

// oneOf reads the optional string key of fs, which must be one of values
// ("" when absent or wrong, the error reported with fix).
func (l *loader) oneOf(fs map[string]field, key, what, fix string, values ...string) string {
	f, ok := fs[key]
	if !ok {
		return ""
	}
	s, ok := l.str(f, what+"."+key, fix)
	if !ok {
		return ""
	}
	for _, v := range values {
		if s == v {
			return s
		}
	}
	l.errAt(f.val, fix, "%s.%s %q is not one of %s", what, key, s, strings.Join(values, ", "))
	return ""
}

// dottedList parses {key: [python.dotted.path, ...]} (null: no list),
// reporting each entry check refuses at its line.
func (l *loader) dottedList(f field, what, key string, check func([]string) error, fix string) []string {
	if isNull(f.val) {
		return nil
	}
	m, ok := l.mapping(f.val, what, key)
	if !ok {
		return nil
	}
	v, ok := m[key]
	if !ok {
		return nil
	}
	names, nodes, _ := l.strList(v, what+"."+key, fix)
	var out []string
	for j, n := range names {
		if err := check([]string{n}); err != nil {
			l.errAt(nodes[j], fix, "%s.%s: %q is not a dotted Python path", what, key, n)
			continue
		}
		out = append(out, n)
	}
	return out
}

// checkedList reads a list of strings, each passing check (fix says how to
// correct one that does not).
func (l *loader) checkedList(v field, what, listFix, fix string, check func(string) error) []string {
	names, nodes, _ := l.strList(v, what, listFix)
	var out []string
	for j, n := range names {
		if err := check(n); err != nil {
			l.errAt(nodes[j], fix, "%s: %v", what, err)
			continue
		}
		out = append(out, n)
	}
	return out
}

// formatSection reads formats.<name>, a mapping of the given keys (or
// null: the validator's defaults). ok is false when the section is absent;
// keys of a malformed section are reported and the map is empty.
func (l *loader) formatSection(fs map[string]field, name, what string, keys ...string) (map[string]field, bool) {
	f, ok := fs[name]
	if !ok {
		return nil, false
	}
	if isNull(f.val) {
		return nil, true
	}
	m, _ := l.mapping(f.val, what+"."+name, keys...)
	return m, true
}

// opNames reads a list of op names: non-empty, printable, no spaces.
func (l *loader) opNames(f field, what, fix string) []string {
	names, nodes, _ := l.strList(f, what, fix)
	var out []string
	for j, n := range names {
		if n == "" || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			l.errAt(nodes[j], fix, "%s: %q is not an op name", what, n)
			continue
		}
		out = append(out, n)
	}
	return out
}

// parseKeras reads formats.keras: {modules, registered, lambda}.
func (l *loader) parseKeras(kf field, what string) *KerasFormat {
	k := &KerasFormat{}
	if isNull(kf.val) {
		return k
	}
	m, ok := l.mapping(kf.val, what, "modules", "registered", "lambda")
	if !ok {
		return k
	}
	if v, ok := m["modules"]; ok {
		k.Modules = l.checkedList(v, what+".modules", "list Python modules, e.g. [mypkg.layers]",
			"write a dotted Python module name, e.g. mypkg.layers", content.CheckKerasModule)
	}
	if v, ok := m["registered"]; ok {
		k.Registered = l.checkedList(v, what+".registered", "list registered names, e.g. [MyPackage>MyLayer]",
			"write Package>Name, as keras.saving.register_keras_serializable registers it", content.CheckKerasRegistered)
	}
	k.Lambda = l.oneOf(m, "lambda", what,
		"write lambda: refuse (default) or lambda: allow (admits Lambda layers, whose marshalled Python bytecode Keras runs; unsafe)", "refuse", "allow")
	return k
}

func (l *loader) parseFormats(f field, what string, out *Formats) {
	fs, ok := l.mapping(f.val, what, "safetensors", "gguf", "pickle", "zip", "onnx", "tensorflow", "tflite", "allow", "unknown", "torchscript", "nemo", "skops", "keras")
	if !ok {
		return
	}
	if af, ok := fs["allow"]; ok {
		names, nodes, _ := l.strList(af, what+".allow", "list formats: "+strings.Join(content.KnownFormats, ", "))
		for j, n := range names {
			known := false
			for _, k := range content.KnownFormats {
				known = known || k == n
			}
			if !known {
				l.errAt(nodes[j], "use one of "+strings.Join(content.KnownFormats, ", "), "%s.allow: unknown format %q", what, n)
				continue
			}
			out.Allow = append(out.Allow, n)
		}
		if af.val.Kind == yaml.SequenceNode && len(af.val.Content) == 0 {
			l.errAt(af.val, "list at least one format, or remove allow", "%s.allow is empty (it would refuse every layer)", what)
		}
	}
	out.Unknown = l.oneOf(fs, "unknown", what,
		"write unknown: deny (default) or unknown: allow (serves bytes pullgate cannot inspect; unsafe)", "deny", "allow")
	out.TorchScript = l.oneOf(fs, "torchscript", what,
		"write torchscript: refuse (default) or torchscript: allow (admits TorchScript archives, whose code runs on torch.jit.load; their pickles are still walked)", "refuse", "allow")
	if zf, ok := fs["zip"]; ok {
		z := &ZipFormat{}
		if !isNull(zf.val) {
			if m, ok := l.mapping(zf.val, what+".zip", "maxEntries", "maxDeflatedMember", "maxInflatedMember", "maxUncompressed"); ok {
				if v, ok := m["maxEntries"]; ok {
					z.MaxEntries = l.count(v, what+".zip.maxEntries")
				}
				if v, ok := m["maxDeflatedMember"]; ok {
					z.MaxDeflatedMember = l.size(v, what+".zip.maxDeflatedMember")
				}
				if v, ok := m["maxInflatedMember"]; ok {
					z.MaxInflatedMember = l.size(v, what+".zip.maxInflatedMember")
				}
				if v, ok := m["maxUncompressed"]; ok {
					z.MaxUncompressed = l.size(v, what+".zip.maxUncompressed")
				}
			}
		}
		out.Zip = z
	}
	if m, ok := l.formatSection(fs, "onnx", what, "domains"); ok {
		o := &ONNXFormat{}
		if v, ok := m["domains"]; ok {
			o.Domains, _, _ = l.strList(v, what+".onnx.domains", "list operator domains, e.g. [com.microsoft]")
		}
		out.ONNX = o
	}
	if nf, ok := fs["nemo"]; ok {
		out.NeMo = &NeMoFormat{Targets: l.dottedList(nf, what+".nemo", "targets", content.CheckNeMoTargets,
			"list Hydra targets, exact (mypkg.models.MyModel) or prefixes ending in '.' (mypkg.models.)")}
	}
	if sf, ok := fs["skops"]; ok {
		out.Skops = &SkopsFormat{Trusted: l.dottedList(sf, what+".skops", "trusted", content.CheckSkopsTrusted,
			"list types as skops.io.get_untrusted_types names them, e.g. [mypkg.est.MyEstimator]")}
	}
	if m, ok := l.formatSection(fs, "tensorflow", what, "allowOps", "denyOps"); ok {
		o := &TensorFlowFormat{}
		if v, ok := m["allowOps"]; ok {
			o.AllowOps = l.opNames(v, what+".tensorflow.allowOps", "list TensorFlow op names, e.g. [InitializeTableFromTextFileV2]")
		}
		if v, ok := m["denyOps"]; ok {
			o.DenyOps = l.opNames(v, what+".tensorflow.denyOps", "list TensorFlow op names, e.g. [SaveV2]")
		}
		out.TensorFlow = o
	}
	if m, ok := l.formatSection(fs, "tflite", what, "customOps", "flex"); ok {
		o := &TFLiteFormat{}
		if v, ok := m["customOps"]; ok {
			o.CustomOps = l.opNames(v, what+".tflite.customOps", "list custom op names (OperatorCode.custom_code), e.g. [TFLite_Detection_PostProcess]")
		}
		o.Flex = l.oneOf(m, "flex", what+".tflite",
			"write flex: refuse (default) or flex: allow (admits Flex ops, TensorFlow kernels, whose op, named in their custom options, passes the tensorflow denylist)", "refuse", "allow")
		out.TFLite = o
	}
	if kf, ok := fs["keras"]; ok {
		out.Keras = l.parseKeras(kf, what+".keras")
	}
	if sf, ok := fs["safetensors"]; ok {
		st := &SafetensorsFormat{}
		if !isNull(sf.val) {
			if m, ok := l.mapping(sf.val, what+".safetensors", "maxHeaderBytes", "maxTensors"); ok {
				if v, ok := m["maxHeaderBytes"]; ok {
					st.MaxHeaderBytes = l.size(v, what+".safetensors.maxHeaderBytes")
					if st.MaxHeaderBytes > SafetensorsHardMaxHeader {
						l.errAt(v.val, "use at most 100MB (the safetensors format's own limit)", "%s.safetensors.maxHeaderBytes exceeds %d bytes", what, SafetensorsHardMaxHeader)
					}
				}
				if v, ok := m["maxTensors"]; ok {
					st.MaxTensors = l.count(v, what+".safetensors.maxTensors")
				}
			}
		}
		out.Safetensors = st
	}
	if gf, ok := fs["gguf"]; ok {
		g := &GGUFFormat{}
		if !isNull(gf.val) {
			if m, ok := l.mapping(gf.val, what+".gguf", "maxStringBytes", "maxArrayElements", "maxKV", "maxTensors", "allowChatTemplateDunder"); ok {
				if v, ok := m["maxStringBytes"]; ok {
					g.MaxStringBytes = l.size(v, what+".gguf.maxStringBytes")
				}
				if v, ok := m["maxArrayElements"]; ok {
					g.MaxArrayElements = l.count(v, what+".gguf.maxArrayElements")
				}
				if v, ok := m["maxKV"]; ok {
					g.MaxKV = l.count(v, what+".gguf.maxKV")
				}
				if v, ok := m["maxTensors"]; ok {
					g.MaxTensors = l.count(v, what+".gguf.maxTensors")
				}
				if v, ok := m["allowChatTemplateDunder"]; ok {
					g.AllowChatTemplateDunder, _ = l.boolean(v, what+".gguf.allowChatTemplateDunder")
				}
			}
		}
		out.GGUF = g
	}
	if pf, ok := fs["pickle"]; ok {
		const fix = "write pickle: deny, pickle: scan, or pickle: {mode: scan, allow: [torch._utils._rebuild_tensor_v2, ...]}"
		v := pf.val
		if v.Kind == yaml.ScalarNode {
			if s, ok := l.str(pf, what+".pickle", fix); ok {
				out.Pickle.Mode = l.pickleMode(v, s, what, fix)
			}
		} else if m, ok := l.mapping(v, what+".pickle", "mode", "allow"); ok {
			if mf, ok := m["mode"]; ok {
				if s, ok := l.str(mf, what+".pickle.mode", fix); ok {
					out.Pickle.Mode = l.pickleMode(mf.val, s, what, fix)
				}
			}
			if af, ok := m["allow"]; ok {
				names, nodes, _ := l.strList(af, what+".pickle.allow", "list module.name globals")
				for j, g := range names {
					if err := content.CheckPickleAllow([]string{g}); err != nil {
						l.errAt(nodes[j], "write module.name, e.g. collections.OrderedDict, or module:qualname for a dotted qualname", "%s.pickle.allow: %v", what, err)
					}
				}
				out.Pickle.Allow = append([]string{}, names...)
				if out.Pickle.Mode != PickleScan {
					l.errAt(af.key, "set mode: scan, or remove allow", "%s.pickle.allow only applies with mode: scan", what)
				}
			}
		}
	}
}

func (l *loader) pickleMode(n *yaml.Node, s, what, fix string) PickleMode {
	switch PickleMode(s) {
	case PickleDeny, PickleScan:
		return PickleMode(s)
	}
	l.errAt(n, fix, "%s.pickle %q is not one of deny, scan", what, s)
	return PickleDeny
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (l *loader) size(f field, what string) int64 {
	if f.val.Kind != yaml.ScalarNode || (f.val.Tag != "!!int" && f.val.Tag != "!!str") {
		l.errAt(f.val, "write a size such as 16MiB", "%s must be a size, got %s", what, kindName(f.val))
		return 0
	}
	n, err := bytesize.Parse(f.val.Value)
	if err != nil {
		l.errAt(f.val, "write a positive size such as 16MiB, 512KiB or 1048576 (units B, KB, MB, GB, KiB, MiB, GiB)", "%s: %v", what, err)
		return 0
	}
	return n
}

func (l *loader) count(f field, what string) int64 {
	if f.val.Kind != yaml.ScalarNode || f.val.Tag != "!!int" {
		l.errAt(f.val, "write a positive whole number", "%s must be a number, got %s", what, kindName(f.val))
		return 0
	}
	n, err := strconv.ParseInt(f.val.Value, 10, 64)
	if err != nil || n <= 0 {
		l.errAt(f.val, "write a positive whole number", "%s: %q is not a positive number", what, f.val.Value)
		return 0
	}
	return n
}

// revisionVersion changes when the meaning of a policy changes between
// pullgate versions, so caches built by an older evaluator are not reused.
// v2: model content checks changed (issue 11): blobs inspected under v1
// are inspected again.
const revisionVersion = "pullgate-policy/v2"

// computeRevision hashes the canonical policy (after defaults; independent
// of comments, formatting and file paths) and every trust file's bytes.
func computeRevision(p *Policy, files []trustFile) string {
	type canonAtt struct {
		PredicateType string   `json:"predicateType"`
		SignedBy      []string `json:"signedBy"`
		Condition     string   `json:"condition"`
		// k of n; omitted for "any one", so older revisions are unchanged
		SignedByMin int `json:"signedByMin,omitempty"`
	}
	type canonCond struct {
		Name string `json:"name"`
		Expr string `json:"expr"`
	}
	type canonReq struct {
		// omitted when absent: the revision of a policy without
		// conditions is unchanged
		Conditions   []canonCond `json:"conditions,omitempty"`
		Signatures   []string    `json:"signatures"`
		SignersMin   int         `json:"signaturesMin,omitempty"` // k of n; omitted for "any one"
		Attestations []canonAtt  `json:"attestations"`
		Chain        string      `json:"chain"`
		MBOM         string      `json:"mbom"`
		TLog         bool        `json:"tlog"`
		Timestamp    bool        `json:"timestamp"`
	}
	type canonContent struct {
		MediaTypes     []string `json:"mediaTypes"`
		Formats        Formats  `json:"formats"`
		DenyCodeLayers bool     `json:"denyCodeLayers"`
		TensorAllow    []string `json:"tensorAllow"`
		AllowArchives  bool     `json:"allowArchives"`
		MaxConfigBytes int64    `json:"maxConfigBytes"`
		// omitted when absent: the revision of a policy without it is
		// unchanged
		References *References `json:"references,omitempty"`
	}
	type canonRego struct {
		Modules []string `json:"modules"` // roles of the module files (bytes in files)
		Query   string   `json:"query"`
	}
	type canonRule struct {
		Name     string        `json:"name"`
		Patterns []string      `json:"match"`
		Action   Action        `json:"action"`
		Mode     Mode          `json:"mode"`
		Require  *canonReq     `json:"require"`
		Content  *canonContent `json:"content"`
		Rego     *canonRego    `json:"rego,omitempty"` // omitted when absent: revision unchanged
	}
	type canonFile struct {
		Role   string `json:"role"`
		SHA256 string `json:"sha256"`
	}
	type canonException struct {
		Name           string    `json:"name"`
		Digest         string    `json:"digest,omitempty"`
		Repositories   []string  `json:"repositories,omitempty"`
		Waive          []string  `json:"waive"`
		FindingClasses []string  `json:"findingClasses,omitempty"`
		Expires        time.Time `json:"expires"`
		Reason         string    `json:"reason"`
		ApprovedBy     string    `json:"approvedBy"`
	}
	c := struct {
		Version    string                `json:"version"`
		Files      []canonFile           `json:"files"`
		Identities []verify.IdentitySpec `json:"identities"`
		Rules      []canonRule           `json:"rules"`
		// omitted when absent: the revision of a policy without
		// exceptions is unchanged
		Exceptions []canonException `json:"exceptions,omitempty"`
	}{Version: revisionVersion, Identities: p.Trust.Identities}
	for _, x := range p.Exceptions {
		c.Exceptions = append(c.Exceptions, canonException{Name: x.Name, Digest: string(x.Digest), Repositories: x.Repositories,
			Waive: x.Waive, FindingClasses: x.FindingClasses, Expires: x.Expires.UTC(), Reason: x.Reason, ApprovedBy: x.ApprovedBy})
	}
	for _, f := range files {
		c.Files = append(c.Files, canonFile{Role: f.role, SHA256: hex.EncodeToString(f.sum[:])})
	}
	for _, r := range p.Rules {
		cr := canonRule{Name: r.Name, Patterns: r.Patterns, Action: r.Action, Mode: r.Mode}
		if r.Require != nil {
			q := &canonReq{Signatures: r.Require.Signatures, SignersMin: kOfN(r.Require.SignaturesMin), Chain: r.Require.Chain, MBOM: string(r.Require.MBOM), TLog: r.Require.TLog, Timestamp: r.Require.Timestamp}
			for _, a := range r.Require.Attestations {
				q.Attestations = append(q.Attestations, canonAtt{a.PredicateType, a.SignedBy, a.Condition, kOfN(a.SignedByMin)})
			}
			for _, c := range r.Require.Conditions {
				q.Conditions = append(q.Conditions, canonCond{c.Name, c.Expr})
			}
			cr.Require = q
		}
		if r.Content != nil {
			cc := &canonContent{MediaTypes: r.Content.MediaTypes, Formats: r.Content.Formats, DenyCodeLayers: r.Content.DenyCodeLayers,
				AllowArchives: r.Content.AllowArchives, MaxConfigBytes: r.Content.MaxConfigBytes, References: r.Content.References}
			for _, re := range r.Content.TensorAllow {
				cc.TensorAllow = append(cc.TensorAllow, re.String())
			}
			cr.Content = cc
		}
		if r.Rego != nil {
			cr.Rego = &canonRego{Query: r.Rego.Query}
			for i := range r.Rego.Modules {
				cr.Rego.Modules = append(cr.Rego.Modules, regoRole(r.Name, i))
			}
		}
		c.Rules = append(c.Rules, cr)
	}
	b, err := json.Marshal(c)
	if err != nil {
		// Only plain data is marshalled; this cannot happen. Fail closed
		// with a revision that never matches a cache entry.
		panic("policy: canonical encoding: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
