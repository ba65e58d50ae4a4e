package chattemplate

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The real-template corpus (/work/shared/model-corpus, see its README.md):
// Hugging Face chat templates from Ollama's template/index.json, Ollama's
// renderer test data (Jinja) and Ollama's own Go templates.
const corpusDir = "../../../shared/model-corpus"

type corpusTemplate struct {
	name, src string
}

func readCorpus(t testing.TB) (jinja, gotmpl []corpusTemplate) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, "ollama/template/index.json"))
	if err != nil {
		t.Fatalf("the real-template corpus is missing (CI has it beside the checkout): %v", err)
	}
	var index []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	for i, x := range index {
		jinja = append(jinja, corpusTemplate{filepath.Join("index.json", x.Name, itoa(i)), x.Template})
	}
	files, _ := filepath.Glob(filepath.Join(corpusDir, "ollama/model/renderers/testdata/*.jinja2"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		jinja = append(jinja, corpusTemplate{filepath.Base(f), string(b)})
	}
	files, _ = filepath.Glob(filepath.Join(corpusDir, "ollama/template/*.gotmpl"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		gotmpl = append(gotmpl, corpusTemplate{filepath.Base(f), string(b)})
	}
	if len(index) != 37 || len(jinja) != 43 || len(gotmpl) != 20 {
		t.Fatalf("corpus changed: %d index.json templates, %d Jinja, %d Go templates (want 37, 43, 20)", len(index), len(jinja), len(gotmpl))
	}
	return jinja, gotmpl
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// Every real template passes, declared and undeclared.
func TestCorpusTemplatesPass(t *testing.T) {
	jinja, gotmpl := readCorpus(t)
	for _, c := range jinja {
		if err := CheckJinja(c.src); err != nil {
			t.Errorf("%s: CheckJinja: %v", c.name, err)
		}
		if err := Check(c.src); err != nil {
			t.Errorf("%s: Check: %v", c.name, err)
		}
	}
	for _, c := range gotmpl {
		if err := CheckGo(c.src); err != nil {
			t.Errorf("%s: CheckGo: %v", c.name, err)
		}
		if err := Check(c.src); err != nil {
			t.Errorf("%s: Check: %v", c.name, err)
		}
	}
}

// The dialects do not overlap on real templates: no real Jinja template is
// an Ollama Go template and no Go template parses as Jinja, so Check judges
// each under its own dialect only.
func TestCorpusDialectsDisjoint(t *testing.T) {
	jinja, gotmpl := readCorpus(t)
	for _, c := range jinja {
		if parsesAsOllamaGo(c.src) {
			t.Errorf("%s: Jinja template parses as an Ollama Go template", c.name)
		}
	}
	for _, c := range gotmpl {
		var e *Error
		if err := CheckJinja(c.src); !errors.As(err, &e) || !e.Syntax {
			t.Errorf("%s: Go template parses as Jinja (%v)", c.name, err)
		}
	}
}

// The parser builds the tree jinja2 builds: for every corpus template the
// dump of our tree hashes to the dump of jinja2's (testdata/jinja2_trees.json,
// written by testdata/jinja_dump.py), and for every case there the trees are
// equal, or both refuse the text.
func TestParserMatchesJinja2(t *testing.T) {
	b, err := os.ReadFile("testdata/jinja2_trees.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Cases []struct {
			Src    string `json:"src"`
			Jinja2 string `json:"jinja2"`
		} `json:"cases"`
		Corpus []struct {
			File   string `json:"file"`
			SHA256 string `json:"sha256"`
		} `json:"corpus"`
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	if len(golden.Cases) < 500 {
		t.Fatalf("only %d cases", len(golden.Cases))
	}
	for _, c := range golden.Cases {
		if got := dumpSource(c.Src); got != c.Jinja2 {
			t.Errorf("%q:\n jinja2: %s\n    got: %s", c.Src, c.Jinja2, got)
		}
	}
	jinja, _ := readCorpus(t)
	if len(golden.Corpus) != len(jinja) {
		t.Fatalf("%d corpus trees for %d templates", len(golden.Corpus), len(jinja))
	}
	for i, c := range jinja {
		if got := sha256hex(dumpSource(c.src)); got != golden.Corpus[i].SHA256 {
			t.Errorf("%s (%s): tree differs from jinja2's", c.name, golden.Corpus[i].File)
		}
	}
}
