package policy

import (
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/verify/content"
)

// References is a rule's content.references: what the load-time
// references of model configs (peft base_model_name_or_path,
// _name_or_path, auto_map "repo--module.Class") must match. Every
// reference is reported whatever the requirement.
type References struct {
	// Require is content.RequireAny (default: report only),
	// content.RequireAllowlist (each reference must match Allow) or
	// content.RequireMBOM (each Hub reference must be a baseModelNames
	// entry of the artifact's verified MBOM, or match Allow; needs action
	// verify).
	Require string `json:"require"`
	// Allow admits references: Hub repository id patterns (policy glob
	// syntax), local paths and URLs written exactly.
	Allow []string `json:"allow,omitempty"`

	requireNode *yaml.Node
}

// options are the validators' view of the section.
func (r *References) options() content.ReferenceOptions {
	if r == nil {
		return content.ReferenceOptions{}
	}
	return content.ReferenceOptions{Require: r.Require, Allow: r.Allow}
}

func (l *loader) parseReferences(f field, what string) *References {
	what += ".references"
	fs, ok := l.mapping(f.val, what, "require", "allow")
	if !ok {
		return nil
	}
	modes := []string{content.RequireAny, content.RequireAllowlist, content.RequireMBOM}
	r := &References{Require: content.RequireAny}
	if rf, ok := fs["require"]; ok {
		r.requireNode = rf.val
		if v := l.oneOf(fs, "require", what, "use one of "+strings.Join(modes, ", "), modes...); v != "" {
			r.Require = v
		}
	}
	if af, ok := fs["allow"]; ok {
		items, nodes, _ := l.strList(af, what+".allow", `list Hub repository id patterns ("meta-llama/*"), local paths or URLs (exact)`)
		for j, it := range items {
			if err := (content.ReferenceOptions{Allow: []string{it}}).Validate(); err != nil {
				l.errAt(nodes[j], `write a Hub repository id or pattern ("org/name", "org/*"), or a path or URL exactly as configs name it (no wildcard)`,
					"%s.allow: %v", what, strings.TrimPrefix(err.Error(), "content: references.allow: "))
				continue
			}
			r.Allow = append(r.Allow, it)
		}
		if af.val.Kind == yaml.SequenceNode && len(af.val.Content) == 0 {
			l.errAt(af.val, "list at least one entry, or remove allow", "%s.allow is empty", what)
		}
	}
	if _, has := fs["allow"]; r.Require == content.RequireAllowlist && !has {
		l.errAt(f.val, "add allow: [<Hub id pattern>, ...], or use require: mbom", "%s: require: allowlist without allow refuses every config that names another repository", what)
	}
	return r
}

// checkReferencesAction reports content.references.require: mbom under a
// rule that verifies nothing (no MBOM can be verified there).
func (l *loader) checkReferencesAction(r *Rule, what string) {
	if r.Content == nil || r.Content.References == nil || r.Content.References.Require != content.RequireMBOM || r.Action == ActionVerify {
		return
	}
	l.errAt(r.Content.References.requireNode, "set action: verify with require: {mbom: required} (the MBOM is verified with the rule's trust), or use require: allowlist",
		"%s.content.references: require: mbom needs action verify (the rule verifies no MBOM)", what)
}
