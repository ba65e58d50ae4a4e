package content_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// ggufRun feeds data to a GGUF inspector declared as size bytes (-1:
// unknown) in chunks of the given size and returns its finding (nil:
// accepted) and whether HeaderDone was true before Close.
func ggufRun(t *testing.T, opts content.Options, data []byte, size int64, chunk int) (*content.Finding, bool) {
	t.Helper()
	in := content.NewGGUFInspector(opts, size)
	var err error
	for off := 0; off < len(data) && err == nil; off += chunk {
		_, err = in.Write(data[off:min(off+chunk, len(data))])
	}
	done := in.HeaderDone()
	if err == nil {
		err = in.Close()
	}
	if err == nil {
		return nil, done
	}
	var f *content.Finding
	if !errors.As(err, &f) {
		t.Fatalf("non-Finding error: %v", err)
	}
	return f, done
}

// ggufExpect checks the exact finding ("" = accepted) at every chunking.
func ggufExpect(t *testing.T, opts content.Options, data []byte, size int64, wantOff int64, want string) {
	t.Helper()
	for _, chunk := range []int{max(len(data), 1), 1, 7, 4093, 1 << 20} {
		if chunk == 1 && len(data) > 1<<16 {
			continue
		}
		f, _ := ggufRun(t, opts, data, size, chunk)
		switch {
		case f == nil && want != "":
			t.Fatalf("chunk %d: accepted, want %q at %d", chunk, want, wantOff)
		case f != nil && want == "":
			t.Fatalf("chunk %d: refused at %d: %s", chunk, f.Offset, f.Reason)
		case f != nil && (f.Format != "gguf" || f.Reason != want || f.Offset != wantOff):
			t.Fatalf("chunk %d: %s at %d: %q\nwant gguf at %d: %q", chunk, f.Format, f.Offset, f.Reason, wantOff, want)
		}
	}
}

// ggufCorpusDir is the shared real-file corpus (never copied into the repo).
const ggufCorpusDir = "../../../shared/model-corpus"

func alignUp32(n int) int { return (n + 31) / 32 * 32 }

func zeros(n int) []byte { return make([]byte, n) }

// TestGGUFRealCorpus runs the real GGUF files of the model corpus bytes-only
// through InspectReader, and directly at several chunkings and without a
// declared size.
func TestGGUFRealCorpus(t *testing.T) {
	cases := []struct {
		path    string
		tensors int
		off     int64
		reason  string
	}{
		// llama.cpp's vocabulary-only files: n_tensors = 0, written by
		// gguf-py without padding after the metadata.
		{path: "llamacpp/models/ggml-vocab-baichuan.gguf"},
		{path: "llamacpp/models/ggml-vocab-bert-bge.gguf"},
		{path: "llamacpp/models/ggml-vocab-deepseek-coder.gguf"},
		{path: "llamacpp/models/ggml-vocab-deepseek-llm.gguf"},
		{path: "llamacpp/models/ggml-vocab-falcon.gguf"},
		{path: "llamacpp/models/ggml-vocab-gpt-2.gguf"},
		{path: "llamacpp/models/ggml-vocab-gpt-neox.gguf"},
		{path: "llamacpp/models/ggml-vocab-llama-spm.gguf"},
		{path: "llamacpp/models/ggml-vocab-mpt.gguf"},
		{path: "llamacpp/models/ggml-vocab-phi-3.gguf"},
		{path: "llamacpp/models/ggml-vocab-refact.gguf"},
		{path: "llamacpp/models/ggml-vocab-starcoder.gguf"},
		// Copies whose non-UTF-8 bytes were replaced by U+FFFD: the lengths
		// after the first replaced byte are garbage.
		{path: "llamacpp-mangled/models/ggml-vocab-bert-bge.gguf", off: 212, reason: "metadata key: string length 1572864 exceeds the limit of 65535 bytes"},
		{path: "llamacpp-mangled/models/ggml-vocab-phi-3.gguf", off: 443, reason: "metadata key: string length 108299533759 exceeds the limit of 65535 bytes"},
		// Ollama's tiny llama-2 with tensors.
		{path: "ollama/api/data/llama-2-tiny-random.gguf", tensors: 12},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(ggufCorpusDir, c.path))
			if err != nil {
				t.Fatalf("model corpus file missing: %v", err)
			}
			for _, mt := range []string{"", "application/vnd.ollama.image.model"} {
				rep, err := content.InspectReader(content.Options{}, bytes.NewReader(data), int64(len(data)), mt, "")
				if err != nil {
					t.Fatal(err)
				}
				if rep.Format != content.FormatGGUF {
					t.Fatalf("media type %q: format %q, want gguf", mt, rep.Format)
				}
				switch {
				case c.reason == "" && len(rep.Findings) > 0:
					t.Fatalf("media type %q: benign file refused: %+v", mt, rep.Findings)
				case c.reason != "" && (len(rep.Findings) != 1 || rep.Findings[0].Reason != c.reason || rep.Findings[0].Offset != c.off):
					t.Fatalf("media type %q: findings %+v, want %q at %d", mt, rep.Findings, c.reason, c.off)
				case c.reason == "" && len(rep.Tensors) != c.tensors:
					t.Fatalf("%d tensors, want %d", len(rep.Tensors), c.tensors)
				}
			}
			ggufExpect(t, content.Options{}, data, int64(len(data)), c.off, c.reason)
			ggufExpect(t, content.Options{}, data, -1, c.off, c.reason)
			if c.reason != "" {
				return
			}
			if f, done := ggufRun(t, content.Options{}, data, int64(len(data)), 1<<20); f != nil || !done {
				t.Fatalf("HeaderDone %v before Close, finding %v", done, f)
			}
			if c.tensors > 0 {
				return
			}
			// The same vocabulary as ggml's and Ollama's writers write it:
			// zero padding to the alignment after the metadata.
			end := len(data)
			pad := alignUp32(end) - end
			if pad == 0 {
				t.Fatalf("%s ends aligned; the padding cases below need a file that does not", c.path)
			}
			padded := append(append([]byte(nil), data...), zeros(pad)...)
			ggufExpect(t, content.Options{}, padded, int64(len(padded)), 0, "")
			ggufExpect(t, content.Options{}, padded, -1, 0, "")
			// ... but nothing else after it.
			extra := append(append([]byte(nil), padded...), 0)
			ggufExpect(t, content.Options{}, extra, int64(len(extra)), int64(len(padded)),
				"1 bytes of trailing data after the metadata (the file has no tensors)")
			ggufExpect(t, content.Options{}, extra, -1, int64(len(padded)),
				fmt.Sprintf("trailing data after the metadata (the file has no tensors) (at offset %d)", len(padded)))
		})
	}
}

// vocabFile is a small vocabulary-only file as gguf-py writes it (no
// padding) whose metadata does not end aligned.
func vocabFile(t *testing.T, mut func(*modelcorpus.GGUFSpec)) []byte {
	t.Helper()
	s := modelcorpus.VocabGGUFSpec(40)
	if mut != nil {
		mut(&s)
	}
	data := modelcorpus.GGUF(s)
	if len(data)%32 == 0 {
		t.Fatal("vocab fixture ends aligned; change it so the padding cases mean something")
	}
	return data
}

func TestGGUFVocabOnlyEnds(t *testing.T) {
	data := vocabFile(t, nil)
	end := len(data)
	padEnd := alignUp32(end)
	pad := padEnd - end
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	nonZeroPad := cat(data, zeros(pad))
	nonZeroPad[end+3] = 'x'
	partial := fmt.Sprintf("truncated padding: the file ends 5 bytes into the %d-byte padding after the metadata (the file has no tensors); writers end a GGUF file right after it or after the whole padding to the alignment of 32", pad)
	cases := []struct {
		name   string
		data   []byte
		size   int64 // 0: len(data)
		off    int64
		reason string
	}{
		{name: "gguf-py: no padding", data: data},
		{name: "gguf-py: no padding, size unknown", data: data, size: -1},
		{name: "ggml/Ollama: zero padding to the alignment", data: cat(data, zeros(pad))},
		{name: "zero padding, size unknown", data: cat(data, zeros(pad)), size: -1},
		{name: "partial padding", data: cat(data, zeros(5)), off: int64(end + 5), reason: partial},
		{name: "partial padding, size unknown", data: cat(data, zeros(5)), size: -1, off: int64(end + 5), reason: partial},
		{name: "non-zero padding", data: nonZeroPad, off: int64(end + 3),
			reason: "non-zero byte in the padding after the metadata (the file has no tensors)"},
		{name: "junk after the metadata", data: cat(data, []byte("JUNK!")), off: int64(end + 5), reason: partial},
		{name: "junk after the metadata, size unknown", data: cat(data, []byte("JUNK!")), size: -1, off: int64(end),
			reason: "non-zero byte in the padding after the metadata (the file has no tensors)"},
		{name: "junk after the padding", data: cat(data, zeros(pad), []byte("PK\x03\x04")), off: int64(padEnd),
			reason: "4 bytes of trailing data after the metadata (the file has no tensors)"},
		{name: "junk after the padding, size unknown", data: cat(data, zeros(pad), []byte("PK\x03\x04")), size: -1, off: int64(padEnd),
			reason: fmt.Sprintf("trailing data after the metadata (the file has no tensors) (at offset %d)", padEnd)},
		{name: "a second padding", data: cat(data, zeros(pad+32)), off: int64(padEnd),
			reason: "32 bytes of trailing data after the metadata (the file has no tensors)"},
		{name: "truncated inside the tokens", data: data[:end/2], size: -1, off: int64(end / 2),
			reason: "truncated GGUF: the stream ends inside the header, metadata or tensor infos"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			size := c.size
			if size == 0 {
				size = int64(len(c.data))
			}
			ggufExpect(t, content.Options{}, c.data, size, c.off, c.reason)
		})
	}

	// Aligned metadata end: no padding is possible, any byte is trailing.
	as := modelcorpus.VocabGGUFSpec(40)
	as.KVs = append(as.KVs, modelcorpus.GGUFKV{Key: "general.x", Type: modelcorpus.GGUFString, Value: ""})
	n := len(modelcorpus.GGUF(as))
	as.KVs[len(as.KVs)-1].Value = strings.Repeat("x", alignUp32(n)-n)
	aligned := modelcorpus.GGUF(as)
	if len(aligned)%32 != 0 {
		t.Fatalf("aligned fixture is %d bytes", len(aligned))
	}
	ggufExpect(t, content.Options{}, aligned, int64(len(aligned)), 0, "")
	ggufExpect(t, content.Options{}, append(aligned, 0), int64(len(aligned)+1), int64(len(aligned)),
		"1 bytes of trailing data after the metadata (the file has no tensors)")

	// general.alignment sets the padding without tensors too: a file whose
	// metadata ends 8 bytes past a multiple of 64 pads 56 bytes, not 24.
	s64 := modelcorpus.VocabGGUFSpec(40)
	s64.KVs = append(s64.KVs, modelcorpus.GGUFKV{Key: "general.alignment", Type: modelcorpus.GGUFUint32, Value: uint32(64)},
		modelcorpus.GGUFKV{Key: "general.x", Type: modelcorpus.GGUFString, Value: ""})
	n64 := len(modelcorpus.GGUF(s64))
	s64.KVs[len(s64.KVs)-1].Value = strings.Repeat("x", (64-n64%64+8)%64)
	d64 := modelcorpus.GGUF(s64)
	if len(d64)%64 != 8 {
		t.Fatalf("alignment 64 fixture ends at %d", len(d64))
	}
	ggufExpect(t, content.Options{}, cat(d64, zeros(56)), int64(len(d64)+56), 0, "")
	ggufExpect(t, content.Options{}, cat(d64, zeros(24)), int64(len(d64)+24), int64(len(d64)+24),
		"truncated padding: the file ends 24 bytes into the 56-byte padding after the metadata (the file has no tensors); writers end a GGUF file right after it or after the whole padding to the alignment of 64")

	// HeaderDone: at the end of the metadata, before the optional padding.
	in := content.NewGGUFInspector(content.Options{}, int64(len(data)))
	if _, err := in.Write(data[:end-1]); err != nil || in.HeaderDone() {
		t.Fatalf("HeaderDone %v one byte before the end of the metadata (err %v)", in.HeaderDone(), err)
	}
	if _, err := in.Write(data[end-1:]); err != nil || !in.HeaderDone() {
		t.Fatalf("HeaderDone %v at the end of the metadata (err %v)", in.HeaderDone(), err)
	}
}

// TestGGUFTensorDataEnds: with tensors the padding before the data is
// required (ggml's reader seeks to it); after the last tensor the writers
// put either no padding (older Ollama) or all of it (ggml, gguf-py, newer
// Ollama), and it is zero.
func TestGGUFTensorDataEnds(t *testing.T) {
	full := modelcorpus.GGUF(modelcorpus.ValidGGUFSpec())
	s := modelcorpus.ValidGGUFSpec()
	s.NoLastPad = true
	bare := modelcorpus.GGUF(s)
	pad := len(full) - len(bare) // last tensor: 6 bytes, padded to 32
	if pad != 26 {
		t.Fatalf("fixture: last padding %d", pad)
	}
	ggufExpect(t, content.Options{}, full, int64(len(full)), 0, "")
	ggufExpect(t, content.Options{}, bare, int64(len(bare)), 0, "")
	ggufExpect(t, content.Options{}, bare, -1, 0, "")
	partial := full[:len(bare)+10]
	want := "truncated padding: the file ends 10 bytes into the 26-byte padding after the tensor data; writers end a GGUF file right after it or after the whole padding to the alignment of 32"
	ggufExpect(t, content.Options{}, partial, int64(len(partial)), int64(len(partial)), want)
	ggufExpect(t, content.Options{}, partial, -1, int64(len(partial)), want)
	dirty := append([]byte(nil), full...)
	dirty[len(bare)+20] = 0xff
	ggufExpect(t, content.Options{}, dirty, int64(len(dirty)), int64(len(bare)+20), "non-zero byte in the padding after the tensor data")
	ggufExpect(t, content.Options{}, dirty, -1, int64(len(bare)+20), "non-zero byte in the padding after the tensor data")
	// the padding between the tensor infos and the data is required
	spec := modelcorpus.ValidGGUFSpec()
	infosEnd := len(modelcorpus.GGUF(modelcorpus.GGUFSpec{KVs: spec.KVs, NoHeaderPad: true}))
	for _, ts := range spec.Tensors {
		infosEnd += 8 + len(ts.Name) + 4 + 8*len(ts.Dims) + 4 + 8
	}
	dataStart := len(full) - 416
	if gap := dataStart - infosEnd; gap <= 0 || gap >= 32 || !bytes.Equal(full[infosEnd:dataStart], zeros(gap)) {
		t.Fatalf("fixture: tensor infos end at %d, data starts at %d", infosEnd, dataStart)
	}
	ggufExpect(t, content.Options{}, full[:infosEnd+1], -1, int64(infosEnd+1),
		"truncated GGUF: the stream ends inside the header, metadata or tensor infos")
	dirtyHead := append([]byte(nil), full...)
	dirtyHead[dataStart-1] = 1
	ggufExpect(t, content.Options{}, dirtyHead, int64(len(dirtyHead)), int64(dataStart-1), "non-zero byte in the padding before tensor data")
}

// TestGGUFEmptyArray: llama.cpp writes and reads arrays of 0 elements
// (gguf_set_arr_str with n = 0); one used to stall the walk.
func TestGGUFEmptyArray(t *testing.T) {
	for _, elem := range []uint32{modelcorpus.GGUFString, modelcorpus.GGUFInt32} {
		empty := modelcorpus.GGUFKV{Key: "tokenizer.ggml.added_tokens", Type: modelcorpus.GGUFArray, Value: modelcorpus.GGUFArrayOf{Elem: elem}}
		last := vocabFile(t, func(s *modelcorpus.GGUFSpec) { s.KVs = append(s.KVs, empty) })
		ggufExpect(t, content.Options{}, last, int64(len(last)), 0, "")
		ggufExpect(t, content.Options{}, last, -1, 0, "")
		first := vocabFile(t, func(s *modelcorpus.GGUFSpec) { s.KVs = append([]modelcorpus.GGUFKV{empty}, s.KVs...) })
		ggufExpect(t, content.Options{}, first, int64(len(first)), 0, "")
	}
}

// TestGGUFChatTemplateKeys: every template carrier gguf-py writes
// (add_chat_template: tokenizer.chat_template, tokenizer.chat_template.<name>
// and the list of names tokenizer.chat_templates) goes through CheckTemplate
// and must have the type gguf-py gives it.
func TestGGUFChatTemplateKeys(t *testing.T) {
	const evil = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
	str := func(k, v string) modelcorpus.GGUFKV {
		return modelcorpus.GGUFKV{Key: k, Type: modelcorpus.GGUFString, Value: v}
	}
	names := func(vs ...string) modelcorpus.GGUFKV {
		a := make([]any, len(vs))
		for i, v := range vs {
			a[i] = v
		}
		return modelcorpus.GGUFKV{Key: "tokenizer.chat_templates", Type: modelcorpus.GGUFArray, Value: modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFString, Values: a}}
	}
	benign := []modelcorpus.GGUFKV{
		str("tokenizer.chat_template.tool_use", "{% for m in messages %}{{ m['content'] }}{% endfor %}"),
		str("tokenizer.chat_template.rag", "{{ documents[0]['text'] }}"),
		names("tool_use", "rag"),
	}
	cases := []struct {
		name   string
		kvs    []modelcorpus.GGUFKV
		reason string
	}{
		{name: "named templates as gguf-py writes them", kvs: benign},
		{name: "evil named template", kvs: []modelcorpus.GGUFKV{str("tokenizer.chat_template.tool_use", evil)},
			reason: `tokenizer.chat_template.tool_use: attribute "__init__" starts with "_" (reaches Python internals) at line 1, column 10 (template injection; a chat template may only read the values it is given)`},
		{name: "evil template in the list of names", kvs: []modelcorpus.GGUFKV{names("tool_use", evil)},
			reason: `tokenizer.chat_templates element 1: attribute "__init__" starts with "_" (reaches Python internals) at line 1, column 10 (template injection; a chat template may only read the values it is given)`},
		{name: "named template not a string", kvs: []modelcorpus.GGUFKV{{Key: "tokenizer.chat_template.rag", Type: modelcorpus.GGUFUint32, Value: uint32(7)}},
			reason: `metadata key "tokenizer.chat_template.rag" has type UINT32, want STRING`},
		{name: "named template as an array", kvs: []modelcorpus.GGUFKV{{Key: "tokenizer.chat_template.rag", Type: modelcorpus.GGUFArray,
			Value: modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFString, Values: []any{evil}}}},
			reason: `metadata key "tokenizer.chat_template.rag" has type ARRAY, want STRING`},
		{name: "list of names not strings", kvs: []modelcorpus.GGUFKV{{Key: "tokenizer.chat_templates", Type: modelcorpus.GGUFArray,
			Value: modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFInt32, Values: []any{int32(1)}}}},
			reason: `metadata key "tokenizer.chat_templates" is an array of INT32, want STRING`},
		{name: "list of names a string", kvs: []modelcorpus.GGUFKV{str("tokenizer.chat_templates", evil)},
			reason: `metadata key "tokenizer.chat_templates" has type STRING, want ARRAY`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := vocabFile(t, func(s *modelcorpus.GGUFSpec) { s.KVs = append(s.KVs, c.kvs...) })
			off := int64(len(vocabFile(t, nil))) // the added KVs follow the vocabulary
			if strings.Contains(c.reason, "element 1") {
				off += int64(8 + len("tokenizer.chat_templates") + 4 + 4 + 8 + 8 + len("tool_use"))
			}
			want := c.reason
			if want == "" {
				off = 0
			}
			ggufExpect(t, content.Options{}, data, int64(len(data)), off, want)
			// The policy switch turns the template check off, not the types.
			allow := content.Options{GGUF: content.GGUFOptions{AllowChatTemplateDunder: true}}
			if strings.Contains(want, "template injection") {
				want, off = "", 0
			}
			ggufExpect(t, allow, data, int64(len(data)), off, want)
		})
	}
}
