package modelcorpus

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
)

// TarEntry is one member of a generated tar.
type TarEntry struct {
	Name     string
	Data     []byte
	Type     byte   // tar.TypeReg when 0
	Mode     int64  // 0644 when 0
	Linkname string // for links
	PAX      bool   // force a PAX header (long names use one anyway)
}

// Tar writes a tar archive with Go's archive/tar (so valid archives are
// standard), then appends extra bytes.
func Tar(entries []TarEntry, extra []byte) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: e.Mode, Size: int64(len(e.Data)), Typeflag: e.Type, Linkname: e.Linkname, Format: tar.FormatUSTAR}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if e.PAX || len(e.Name) > 100 {
			h.Format = tar.FormatPAX
		}
		if err := w.WriteHeader(h); err != nil {
			panic(fmt.Sprintf("modelcorpus: tar header %q: %v", e.Name, err))
		}
		if h.Typeflag == tar.TypeReg {
			w.Write(e.Data)
		}
	}
	w.Close()
	return append(b.Bytes(), extra...)
}

// ModelTar is a ModelPack-style weight tar: a directory, safetensors
// weights, a config and a tokenizer.
func ModelTar() []TarEntry {
	return []TarEntry{
		{Name: "model/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "model/model.safetensors", Data: Safetensors(SmallModel(), map[string]string{"format": "pt"})},
		{Name: "model/config.json", Data: []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":16}`)},
		{Name: "model/tokenizer.model", Data: []byte{0x0a, 0x07, 0x0a, 0x05, '<', 'u', 'n', 'k', '>'}},
		{Name: "model/" + string(bytes.Repeat([]byte("long-name-"), 12)) + "gguf", Data: GGUF(ValidGGUFSpec())},
	}
}

// Gzip compresses b as a single gzip member (what `kit pack` and `oras push`
// of a directory produce around a tar).
func Gzip(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}
