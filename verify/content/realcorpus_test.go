package content_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/verify/content"
)

// realCorpusDir holds model files written and labelled by other projects
// (shared/model-corpus beside the checkout; CI has it there too).
const realCorpusDir = "../../../shared/model-corpus"

// strictModelRule is the rule a security team would write for model
// repositories: media types of the model packagings, pickles walked
// against the import allowlist, code layers and remote-code configs denied,
// bytes of no known format refused.
func strictModelRule() content.Options {
	return content.Options{
		MediaTypes:     []string{"modelpack", "ollama", "docker-ai"},
		Pickle:         content.PickleOptions{Mode: content.PickleScan},
		DenyCodeLayers: true,
	}
}

// publisherMediaType is the layer media type the file's publisher would
// declare: Ollama templates as Ollama template layers, other chat templates
// and JSON as ModelPack weight configs, everything else as ModelPack
// weights.
func publisherMediaType(p string) string {
	switch path.Ext(p) {
	case ".gotmpl":
		return "application/vnd.ollama.image.template"
	case ".jinja", ".jinja2", ".json":
		return "application/vnd.cncf.model.weight.config.v1.raw"
	}
	return "application/vnd.cncf.model.weight.v1.raw"
}

// corpusException is a deliberate verdict that differs from the peer's
// label: the reason a user reads must contain want.
type corpusException struct {
	bytesOnly, declared bool   // which of the two runs it applies to
	want                string // substring of the finding
	why                 string // why the gate refuses it (docs/model-gate.md)
}

var corpusExceptions = map[string]corpusException{
	"picklescan/tests/data/benign_password_protected.zip": {true, true, "is encrypted",
		"an encrypted member cannot be inspected, and loaders disagree on the flag (torch.load's zip reader honours it only in the central directory, not in the local header); no content key serves it, only a rule without content:"},
	"modelscan/tests/data/password_protected.zip": {true, true, "is encrypted",
		"an encrypted member cannot be inspected, and loaders disagree on the flag (torch.load's zip reader honours it only in the central directory, not in the local header); no content key serves it, only a rule without content:"},
	"picklescan/tests/data/bad_pytorch.pt": {false, true, "but bytes are an image",
		"a PNG image declared as model weights: no loader can load it as weights (bytes only, it is served as an image)"},
	"picklescan/tests/data/not_a_pickle.bin": {true, true, "bytes match no format pullgate knows",
		"bytes of no known format are refused under a model rule (fail closed); content.formats.unknown: allow serves them"},
}

type corpusEntry struct {
	path, corpus, label, class, note string
}

func readLabels(t testing.TB) []corpusEntry {
	t.Helper()
	f, err := os.Open(filepath.Join(realCorpusDir, "labels.tsv"))
	if err != nil {
		t.Fatalf("the real model corpus is required (shared/model-corpus beside the checkout): %v", err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		c := strings.Split(l, "\t")
		if len(c) < 5 {
			t.Fatalf("labels.tsv: bad line %q", l)
		}
		out = append(out, corpusEntry{c[0], c[1], c[2], c[3], c[4]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("labels.tsv lists %d files; the corpus is incomplete", len(out))
	}
	return out
}

type corpusVerdict struct {
	served  bool
	finding string
}

func inspectCorpusFile(t testing.TB, b []byte, mediaType, title string) corpusVerdict {
	t.Helper()
	opts := strictModelRule()
	if mediaType == "" {
		opts.MediaTypes = nil // bytes only: nothing declared to restrict
	}
	rep, err := content.InspectReader(opts, bytes.NewReader(b), int64(len(b)), mediaType, title)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if len(rep.Findings) > 0 {
		return corpusVerdict{false, rep.Findings[0].Error()}
	}
	return corpusVerdict{served: true}
}

// TestRealModelCorpus runs every file of shared/model-corpus through the
// gate twice, bytes only (no media type, no name: `pullgate inspect` on
// a file of unknown provenance) and as its publisher would declare it
// (media type and file name), under a strict model rule. Every label must
// match, except the deliberate refusals in corpusExceptions, whose reasons
// must say why. PULLGATE_WRITE_MODEL_GATE=1 (make model-gate) rewrites the
// table in docs/model-gate.md.
func TestRealModelCorpus(t *testing.T) {
	type row struct {
		e                  corpusEntry
		bytesOnly, declare corpusVerdict
	}
	var rows []row
	usedExc := map[string]bool{}
	for _, e := range readLabels(t) {
		b, err := os.ReadFile(filepath.Join(realCorpusDir, e.path))
		if err != nil {
			t.Fatalf("%s: %v", e.path, err)
		}
		r := row{e: e,
			bytesOnly: inspectCorpusFile(t, b, "", ""),
			declare:   inspectCorpusFile(t, b, publisherMediaType(e.path), path.Base(e.path))}
		rows = append(rows, r)
		exc, hasExc := corpusExceptions[e.path]
		for _, run := range []struct {
			name    string
			v       corpusVerdict
			applies bool
		}{{"bytes only", r.bytesOnly, exc.bytesOnly}, {"declared", r.declare, exc.declared}} {
			wantServed := e.label == "benign"
			if hasExc && run.applies {
				usedExc[e.path] = true
				if run.v.served || !strings.Contains(run.v.finding, exc.want) {
					t.Errorf("%s (%s): deliberate refusal expected with %q, got served=%v %q", e.path, run.name, exc.want, run.v.served, run.v.finding)
				}
				continue
			}
			if run.v.served != wantServed {
				t.Errorf("%s (%s, %s %s): served=%v, label %s; finding: %s", e.path, run.name, e.label, e.note, run.v.served, e.label, run.v.finding)
			}
		}
	}
	for p := range corpusExceptions {
		if !usedExc[p] {
			t.Errorf("exception for %s is not in labels.tsv", p)
		}
	}
	if os.Getenv("PULLGATE_WRITE_MODEL_GATE") == "" || t.Failed() {
		return
	}
	// The table of docs/model-gate.md.
	type tally struct{ attacks, refused, benign, served int }
	per := map[string]*tally{}
	var names []string
	for _, r := range rows {
		tl := per[r.e.corpus]
		if tl == nil {
			tl = &tally{}
			per[r.e.corpus] = tl
			names = append(names, r.e.corpus)
		}
		if r.e.label == "benign" {
			tl.benign++
			if r.declare.served && r.bytesOnly.served {
				tl.served++
			}
		} else {
			tl.attacks++
			if !r.declare.served && !r.bytesOnly.served {
				tl.refused++
			}
		}
	}
	sort.Strings(names)
	var out strings.Builder
	fmt.Fprintf(&out, "| corpus | attacks and malformed files refused | benign files served |\n|---|---|---|\n")
	for _, n := range names {
		tl := per[n]
		fmt.Fprintf(&out, "| %s | %d / %d | %d / %d |\n", n, tl.refused, tl.attacks, tl.served, tl.benign)
	}
	fmt.Fprintf(&out, "\nDeliberate refusals of files the peers label benign:\n\n| file | bytes only | declared | why |\n|---|---|---|---|\n")
	var excs []string
	for p := range corpusExceptions {
		excs = append(excs, p)
	}
	sort.Strings(excs)
	for _, p := range excs {
		exc := corpusExceptions[p]
		for _, r := range rows {
			if r.e.path != p {
				continue
			}
			fmt.Fprintf(&out, "| `%s` | %s | %s | %s |\n", p, verdictCell(r.bytesOnly), verdictCell(r.declare), exc.why)
		}
	}
	fmt.Fprintf(&out, "\nEvery file, with the reason a refused one is given (declared run):\n\n| file | label | bytes only | declared |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&out, "| `%s` | %s | %s | %s |\n", r.e.path, r.e.label, verdictCell(r.bytesOnly), verdictCell(r.declare))
	}
	writeDocSection(t, "../../docs/model-gate.md", "corpus-table", out.String())
}

func verdictCell(v corpusVerdict) string {
	if v.served {
		return "served"
	}
	f := strings.ReplaceAll(v.finding, "|", "\\|")
	if len(f) > 160 {
		f = f[:160] + "…"
	}
	return "refused: " + f
}

// writeDocSection replaces the text between <!-- begin NAME --> and
// <!-- end NAME --> in a doc.
func writeDocSection(t *testing.T, file, name, body string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := "<!-- begin "+name+" -->\n", "<!-- end "+name+" -->"
	i, j := bytes.Index(b, []byte(begin)), bytes.Index(b, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q section", file, begin, end)
	}
	out := append(append(append([]byte(nil), b[:i+len(begin)]...), body...), b[j:]...)
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
