package chattemplate

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkCheckJinja checks the largest real template of the corpus.
func BenchmarkCheckJinja(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "ollama/model/renderers/testdata/*.jinja2"))
	var src string
	for _, f := range files {
		if d, err := os.ReadFile(f); err == nil && len(d) > len(src) {
			src = string(d)
		}
	}
	if src == "" {
		b.Fatal("the real-template corpus is missing")
	}
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckJinja(src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckGo(b *testing.B) {
	d, err := os.ReadFile(filepath.Join(corpusDir, "ollama/template/command-r.gotmpl"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckGo(string(d)); err != nil {
			b.Fatal(err)
		}
	}
}
