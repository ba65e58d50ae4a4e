package chattemplate

import (
	"errors"
	"strings"
	"testing"
)

func TestGoHostileRefused(t *testing.T) {
	for _, c := range []struct{ name, src, reason string }{
		{"call", `{{ call .Tools }}`, `function "call" is not one Ollama provides`},
		{"call in pipeline", `{{ range .Messages }}{{ .Content | call }}{{ end }}`, `function "call"`},
		{"unknown function", `{{ exec "id" }}`, `function "exec" is not one Ollama provides`},
		{"unknown root field", `{{ .Env }}`, `field "Env" is not one Ollama passes to templates (on the template data)`},
		{"unknown message field", `{{ range .Messages }}{{ .Secret }}{{ end }}`, `field "Secret" is not one Ollama passes to templates (on a message)`},
		{"field of a string", `{{ .System.Len }}`, `field "Len" is not one Ollama passes to templates (on a string)`},
		{"mutating method", `{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments.Set "k" "v" }}{{ end }}{{ end }}`, `method "Set" changes the value`},
		{"unmarshal", `{{ range .Messages }}{{ .UnmarshalJSON "{}" }}{{ end }}`, `method "UnmarshalJSON"`},
		{"through a variable", `{{ $m := index .Messages 0 }}{{ $m.Nope }}`, `field "Nope"`},
		{"range variables", `{{ range $i, $m := .Messages }}{{ $m.Role }}{{ $i.Nope }}{{ end }}`, `field "Nope" is not one Ollama passes to templates (on an int)`},
		{"defined template", `{{ define "x" }}{{ .Nope }}{{ end }}{{ range .Messages }}{{ template "x" . }}{{ end }}`, `field "Nope" is not one Ollama passes to templates (on a message)`},
		{"uninvoked template", `{{ define "x" }}{{ call . }}{{ end }}`, `function "call"`},
		{"chain", `{{ (index .Tools 0).Function.Nope }}`, `field "Nope"`},
		{"dollar in template", `{{ define "x" }}{{ $.Nope }}{{ end }}{{ template "x" .Tools }}`, `field "Nope"`},
	} {
		err := CheckGo(c.src)
		var e *Error
		if !errors.As(err, &e) || e.Syntax || e.Dialect != GoTemplate || !strings.Contains(e.Reason, c.reason) || e.Line < 1 {
			t.Errorf("%s: %q: got %v, want a refusal with %q", c.name, c.src, err, c.reason)
			continue
		}
		err2 := Check(c.src)
		if c.name == "unknown function" {
			// Ollama's template.Parse refuses it, so undeclared it is
			// not an Ollama template at all
			if !errors.As(err2, &e) || !e.Syntax {
				t.Errorf("%s: Check = %v, want a syntax error", c.name, err2)
			}
		} else if err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%s: Check = %v, CheckGo = %v", c.name, err2, err)
		}
	}
}

func TestGoBenignPass(t *testing.T) {
	for _, src := range []string{
		`{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}{{ .Response }}{{ .Suffix }}{{ if .First }}{{ end }}`,
		`{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}{{ .Role }}{{ .Content }}{{ .Thinking }}{{ if $last }}{{ end }}{{ end }}`,
		`{{ range .Messages }}{{ range .ToolCalls }}{{ .ID }}{{ .Function.Index }}{{ .Function.Name }}{{ .Function.Arguments }}{{ json .Function.Arguments }}{{ .Function.Arguments.city }}{{ end }}{{ .ToolName }}{{ .ToolCallID }}{{ range .Images }}{{ end }}{{ end }}`,
		`{{ range .Tools }}{{ .Type }}{{ .Function.Name }}{{ .Function.Description }}{{ range $k, $v := .Function.Parameters.Properties }}{{ $k }}{{ $v.Type }}{{ $v.Description }}{{ toTypeScriptType $v }}{{ $v.ToTypeScriptType }}{{ range $v.Enum }}{{ . }}{{ end }}{{ end }}{{ .Function.Parameters.Required }}{{ . }}{{ end }}{{ json .Tools }}`,
		`{{ if .Think }}{{ .ThinkLevel }}{{ end }}{{ if .IsThinkSet }}{{ end }}{{ currentDate }}{{ yesterdayDate "x" }}{{ printf "%s" .System | html }}`,
		`{{ define "m" }}{{ .Role }}: {{ .Content }}{{ end }}{{ range .Messages }}{{ template "m" . }}{{ end }}{{ block "b" . }}{{ .System }}{{ end }}`,
		`no actions at all`,
	} {
		if err := CheckGo(src); err != nil {
			t.Errorf("%v\n%s", err, src)
		}
	}
}

func TestGoSyntax(t *testing.T) {
	for _, src := range []string{`{{ if .X }}`, `{{ .X `, `{{ end }}`, `{{ template }}`} {
		var e *Error
		if err := CheckGo(src); !errors.As(err, &e) || !e.Syntax || e.Line < 1 {
			t.Errorf("%q: got %v, want a syntax error with a line", src, err)
		}
	}
}

// Check judges a text under each dialect it parses as; a text that parses as
// neither is a syntax error.
func TestCheckUndeclared(t *testing.T) {
	for _, c := range []struct {
		src     string
		dialect Dialect
		syntax  bool
		ok      bool
	}{
		{`{{ .System }}`, 0, false, true},                                  // Go only
		{`{{ messages[0]['content'] }}`, 0, false, true},                   // Jinja only
		{`plain text`, 0, false, true},                                     // both, nothing to refuse
		{`{% set x = y.__class__ %}`, Jinja, false, false},                 // Jinja refuses; as Go it is plain text
		{`{{ call .X }}`, GoTemplate, false, false},                        // Go refuses; not Jinja
		{`{{ json }}{% if x.__class__ %}{% endif %}`, Jinja, false, false}, // both parse, Jinja refuses
		{`{{ .X }}{{ if }}`, 0, true, false},                               // neither
	} {
		err := Check(c.src)
		if c.ok {
			if err != nil {
				t.Errorf("%q: %v", c.src, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Syntax != c.syntax || e.Dialect != c.dialect {
			t.Errorf("%q: got %#v, want dialect %v syntax %v", c.src, err, c.dialect, c.syntax)
		}
	}
}
