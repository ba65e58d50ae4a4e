package chattemplate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusSeeds returns the real templates when the corpus is there (fuzzing
// without it still runs on the hand-written seeds).
func corpusSeeds() []string {
	var out []string
	files, _ := filepath.Glob(filepath.Join(corpusDir, "ollama/model/renderers/testdata/*.jinja2"))
	more, _ := filepath.Glob(filepath.Join(corpusDir, "ollama/template/*.gotmpl"))
	for _, f := range append(files, more...) {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, string(b))
		}
	}
	if b, err := os.ReadFile(filepath.Join(corpusDir, "ollama/template/index.json")); err == nil {
		out = append(out, string(b))
	}
	return out
}

func checkErrorShape(t *testing.T, src string, err error, d Dialect) {
	t.Helper()
	if err == nil {
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error of type %T: %v", err, err)
	}
	if strings.HasPrefix(e.Reason, internalError) {
		t.Fatalf("checker failed: %v", e)
	}
	if e.Dialect != d || e.Reason == "" || e.Line < 0 || e.Col < 0 || e.Line > strings.Count(src, "\n")+strings.Count(src, "\r")+1 {
		t.Fatalf("malformed error %#v", e)
	}
}

func FuzzJinja(f *testing.F) {
	for _, s := range corpusSeeds() {
		f.Add(s)
	}
	for _, c := range jinjaHostile {
		f.Add(c.src)
	}
	for _, c := range jinjaBenign {
		f.Add(c.src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		err := CheckJinja(src)
		checkErrorShape(t, src, err, Jinja)
		if again := CheckJinja(src); (err == nil) != (again == nil) || err != nil && err.Error() != again.Error() {
			t.Fatalf("not deterministic: %v, then %v", err, again)
		}
		var e *Error
		if errors.As(err, &e) && !e.Syntax {
			if cerr := Check(src); cerr == nil || cerr.Error() != err.Error() {
				t.Fatalf("Check = %v, CheckJinja = %v", cerr, err)
			}
		}
		if err == nil {
			// a template that passes still passes with text around it
			if err := CheckJinja("x" + src + "\n"); err != nil && !isSyntax(err) {
				t.Fatalf("passes alone, refused with text around it: %v", err)
			}
		}
	})
}

func isSyntax(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Syntax
}

func FuzzGo(f *testing.F) {
	for _, s := range corpusSeeds() {
		f.Add(s)
	}
	for _, s := range []string{`{{ call .X }}`, `{{ .Env }}`, `{{ define "x" }}{{ .Nope }}{{ end }}{{ template "x" .Tools }}`,
		`{{ range $i, $m := .Messages }}{{ $m.ToolCalls }}{{ end }}`, `{{ (index .Tools 0).Function.Parameters.Properties.x.Set 1 2 }}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		err := CheckGo(src)
		checkErrorShape(t, src, err, GoTemplate)
		if again := CheckGo(src); (err == nil) != (again == nil) || err != nil && err.Error() != again.Error() {
			t.Fatalf("not deterministic: %v, then %v", err, again)
		}
		// what Ollama's parser accepts, CheckGo parses too
		if parsesAsOllamaGo(src) && isSyntax(err) {
			t.Fatalf("Ollama parses it, CheckGo reports %v", err)
		}
		cerr := Check(src)
		if cerr != nil {
			var e *Error
			if !errors.As(cerr, &e) {
				t.Fatalf("Check error of type %T", cerr)
			}
		}
	})
}
