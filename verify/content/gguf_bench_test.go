package content_test

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// largestVocabGGUF returns the largest real llama.cpp vocabulary file of the
// corpus (the corpus must be present: CI has it).
func largestVocabGGUF(tb testing.TB) (string, []byte) {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(ggufCorpusDir, "llamacpp", "models", "*.gguf"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no llama.cpp vocab GGUF under %s (the model corpus is required): %v", ggufCorpusDir, err)
	}
	var best string
	var bestSize int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			tb.Fatal(err)
		}
		if st.Size() > bestSize {
			best, bestSize = f, st.Size()
		}
	}
	data, err := os.ReadFile(best)
	if err != nil {
		tb.Fatal(err)
	}
	return filepath.Base(best), data
}

var vocab150k = sync.OnceValue(func() []byte { return modelcorpus.GGUF(modelcorpus.VocabGGUFSpec(150000)) })

// BenchmarkGGUFVocab runs the GGUF inspector (whole metadata walk, Close
// included) over a real llama.cpp vocabulary file and a generated 150k-token
// one, in 1 MiB and 32 KiB chunks, with and without the chat template check.
func BenchmarkGGUFVocab(b *testing.B) {
	name, real := largestVocabGGUF(b)
	files := []struct {
		name string
		data []byte
	}{{"real-" + name, real}, {"generated-150k", vocab150k()}}
	for _, f := range files {
		for _, chunk := range []int{1 << 20, 32 << 10} {
			for _, tmpl := range []bool{true, false} {
				opts := content.Options{GGUF: content.GGUFOptions{AllowChatTemplateDunder: !tmpl}}
				label := f.name + "/chunk=" + strconv.Itoa(chunk>>10) + "KiB/template-check=" + strconv.FormatBool(tmpl)
				b.Run(label, func(b *testing.B) { benchGGUF(b, opts, f.data, chunk) })
			}
		}
	}
}

func benchGGUF(b *testing.B, opts content.Options, data []byte, chunk int) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	clk := startCPU()
	for i := 0; i < b.N; i++ {
		in := content.NewGGUFInspector(opts, int64(len(data)))
		for off := 0; off < len(data); off += chunk {
			if _, err := in.Write(data[off:min(off+chunk, len(data))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	clk.report(b, int64(len(data)))
}
