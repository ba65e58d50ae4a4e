package content_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// verdict runs an inspector over data, whole or in chunks of the given size,
// and returns the finding reason ("" = accepted). Any non-Finding error is a
// test failure: hostile input must always yield a precise Finding.
func verdict(t *testing.T, mk func(size int64) content.Inspector, data []byte, chunk int) string {
	t.Helper()
	in := mk(int64(len(data)))
	var err error
	for off := 0; off < len(data) && err == nil; off += chunk {
		_, err = in.Write(data[off:min(off+chunk, len(data))])
	}
	if err == nil {
		err = in.Close()
	}
	if err == nil {
		return ""
	}
	var f *content.Finding
	if !errors.As(err, &f) {
		t.Fatalf("non-Finding error: %v", err)
	}
	if f.Reason == "" || f.Format == "" {
		t.Fatalf("finding without format or reason: %+v", f)
	}
	return f.Format + ": " + f.Reason
}

// fuzzChunking asserts the verdict (and the exact reason) does not depend on
// how the stream is chunked.
func fuzzChunking(t *testing.T, mk func(size int64) content.Inspector, data []byte, chunk uint8) {
	whole := verdict(t, mk, data, max(len(data), 1))
	c := int(chunk%61) + 1
	if got := verdict(t, mk, data, c); got != whole {
		t.Fatalf("chunk size %d changed the verdict:\n whole: %q\nchunks: %q", c, whole, got)
	}
}

func mustRead(f *testing.F, name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

var scanOpts = content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}

func FuzzSafetensors(f *testing.F) {
	f.Add(modelcorpus.Safetensors(modelcorpus.SmallModel(), map[string]string{"format": "pt"}), uint8(7))
	f.Add(modelcorpus.SafetensorsRaw(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 16), uint8(3))
	f.Add(modelcorpus.SafetensorsRaw(`{"__metadata__":{"k":"\u00e9\ud83d\ude00"},"b":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, 2), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewSafetensorsInspector(content.Options{}, size) }, data, chunk)
	})
}

func FuzzGGUF(f *testing.F) {
	f.Add(modelcorpus.GGUF(modelcorpus.ValidGGUFSpec()), uint8(5))
	s := modelcorpus.ValidGGUFSpec()
	s.Version = 2
	s.NoLastPad = true
	f.Add(modelcorpus.GGUF(s), uint8(11))
	// vocabulary-only files (n_tensors = 0) as gguf-py writes them (no
	// padding) and as ggml's writer does (padded), with named templates
	// and an empty array
	v := modelcorpus.VocabGGUFSpec(6)
	v.KVs[5].Value = modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFString, Values: []any{"<s>", "\u0120the", "\u4e2d\u6587", "a", "", "\U0001F600"}}
	v.KVs[len(v.KVs)-1].Value = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
	f.Add(modelcorpus.GGUF(v), uint8(3))
	v.NoHeaderPad = false
	v.KVs = append(v.KVs,
		modelcorpus.GGUFKV{Key: "tokenizer.chat_template.tool_use", Type: modelcorpus.GGUFString, Value: "{{ tools[0] }}"},
		modelcorpus.GGUFKV{Key: "tokenizer.chat_templates", Type: modelcorpus.GGUFArray, Value: modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFString, Values: []any{"tool_use"}}},
		modelcorpus.GGUFKV{Key: "tokenizer.ggml.added_tokens", Type: modelcorpus.GGUFArray, Value: modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFString}})
	f.Add(modelcorpus.GGUF(v), uint8(29))
	f.Add([]byte("0000"), uint8(0)) // bad magic: judged at 4 bytes, not at 24
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewGGUFInspector(content.Options{}, size) }, data, chunk)
		// size unknown (chunked transfer): trailing bytes are judged as they come
		fuzzChunking(t, func(int64) content.Inspector { return content.NewGGUFInspector(content.Options{}, -1) }, data, chunk)
	})
}

func FuzzPickle(f *testing.F) {
	for _, p := range [][]byte{
		modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2),
		modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 4),
		modelcorpus.OsSystemPickle(), modelcorpus.BuiltinsEvalPickle(), modelcorpus.StackGlobalViaMemoPickle(),
		modelcorpus.PkgutilResolveNamePickle(), modelcorpus.BrokenPayloadFirstPickle(),
		modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), nil),
	} {
		f.Add(p, uint8(len(p)))
	}
	// bytes payloads skipped as they stream (outside a frame), read whole
	// inside one, and cut short
	bin := append(append([]byte{0x80, 4, ']', '(', 0x8e}, binary.LittleEndian.AppendUint64(nil, 300)...), bytes.Repeat([]byte{'c'}, 300)...)
	bin = append(append(bin, 'B', 20, 0, 0, 0), bytes.Repeat([]byte{0x93}, 20)...)
	f.Add(append(bin, 'e', '.'), uint8(7))
	f.Add(bin[:200], uint8(3))
	framed := append([]byte{0x80, 4, 0x95}, binary.LittleEndian.AppendUint64(nil, 40)...)
	framed = append(append(framed, ']', '(', 'B', 30, 0, 0, 0), bytes.Repeat([]byte{'x'}, 30)...)
	f.Add(append(framed, 'e', '.'), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewPickleInspector(scanOpts, size) }, data, chunk)
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewLegacyTorchInspector(scanOpts, size) }, data, chunk)
	})
}

func FuzzZip(f *testing.F) {
	f.Add(modelcorpus.TorchZip(modelcorpus.SmallTorchModel()[:1]), uint8(9))
	deflated := modelcorpus.TorchZipEntries("a", modelcorpus.SmallTorchModel()[:1], nil)
	deflated[0].Deflate = true
	f.Add(modelcorpus.Zip(modelcorpus.ZipSpec{Entries: deflated}), uint8(2))
	f.Add(modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "x", Data: []byte("y")}}}), uint8(1))
	// torch.save's layout: every record with a PK\x07\x08 data descriptor
	torch2 := modelcorpus.TorchSave2Records("archive", modelcorpus.SmallTorchModel()[:1], nil, nil)
	f.Add(modelcorpus.TorchSaveZip(torch2), uint8(5))
	torch2[0].Compress, torch2[0].NoDescriptorSig = true, true // deflated, unsigned descriptor
	torch2[2].Zip64 = true                                     // 8-byte descriptor sizes
	f.Add(modelcorpus.TorchSaveZip(torch2), uint8(16))
	f.Add(modelcorpus.TorchSaveZip([]modelcorpus.MinizRecord{
		{Name: "m/config.json", Data: []byte(`{"auto_map":{"a":"b"}}`)},
		{Name: "m/chat_template.jinja", Data: []byte("{{ x }}"), Compress: true},
		{Name: "m/modeling.py", Data: []byte("import os\n")},
	}), uint8(23))
	// torch.jit.save's layout (code/, constants.pkl): refused, then admitted
	// by the allowTS target below.
	f.Add(modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", modelcorpus.SmallTorchModel()[:1], nil, nil)), uint8(11))
	tsPkl := modelcorpus.NewPickler(2).Global("__torch__", "Net").Tuple(0).Op(0x81).Op('}').Op('b').Stop()
	f.Add(modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("m", nil, tsPkl, nil)), uint8(3))
	f.Add(tsArchive(tsBuilderModule(), nil), uint8(5)) // every torch.jit._pickle builder
	f.Add(tsRenamed(tsModulePickle("__torch__", "Net"), "archive/constants.pkl", "archive/CONSTANTS.PKL"), uint8(9))
	// Small inflate bounds: a few bytes of deflate inflate to the limit,
	// which would make each input cost seconds at the 1 GiB default.
	opts := scanOpts
	opts.Zip.MaxInflatedMember, opts.Zip.MaxDeflatedMember = 1<<20, 1<<20
	denyCode := opts
	denyCode.DenyCodeLayers = true
	allowTS := opts
	allowTS.AllowTorchScript = true
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewZipInspector(opts, size) }, data, chunk)
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewZipInspector(denyCode, size) }, data, chunk)
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewZipInspector(allowTS, size) }, data, chunk)
	})
}

// FuzzInspector drives the sniffing dispatcher with every media type kind.
func FuzzInspector(f *testing.F) {
	f.Add(modelcorpus.Safetensors(modelcorpus.SmallModel(), nil), uint8(3), uint8(0))
	f.Add(modelcorpus.GGUF(modelcorpus.ValidGGUFSpec()), uint8(17), uint8(1))
	f.Add([]byte(`{"auto_map":{"a":"b"},"chat_template":"{{x}}"}`), uint8(2), uint8(2))
	f.Add([]byte("(dp0\nVa\np1\nI1\ns."), uint8(1), uint8(3))
	f.Add(modelcorpus.Gzip(modelcorpus.Tar(modelcorpus.ModelTar()[:3], nil)), uint8(40), uint8(5))
	f.Add(elfHeader(), uint8(9), uint8(1))
	f.Add([]byte(shebang), uint8(3), uint8(0))
	f.Add(apeHeader("MZqFpD='"), uint8(5), uint8(3))
	f.Add(modelcorpus.ONNX(modelcorpus.BenignONNX(64)), uint8(9), uint8(1))
	f.Add(mustRead(f, "testdata/hdf5/keras_latest.h5"), uint8(11), uint8(0))
	f.Add(polyglotNoPROTO(f), uint8(7), uint8(1))                                                      // safetensors and pickle (polyglot.go)
	f.Add(safetensorsHiding(f, mustRead(f, "testdata/hdf5/keras_latest.h5"), 512), uint8(5), uint8(1)) // hidden HDF5 file
	f.Add(picklePolyglotTFLite(), uint8(9), uint8(0))                                                  // TFLite and pickle
	mts := []string{"", "application/vnd.ollama.image.model", "application/vnd.cncf.model.weight.config.v1.raw", "application/vnd.oci.image.layer.v1.tar", "application/vnd.ollama.image.template", "application/vnd.oci.image.layer.v1.tar+gzip"}
	f.Fuzz(func(t *testing.T, data []byte, chunk, mt uint8) {
		m := mts[int(mt)%len(mts)]
		opts := scanOpts
		opts.DenyCodeLayers = true
		fuzzChunking(t, func(size int64) content.Inspector {
			in, err := content.NewInspector(opts, m, "", size)
			if err != nil {
				t.Fatal(err)
			}
			return in
		}, data, chunk)
	})
}

func FuzzTar(f *testing.F) {
	f.Add(modelcorpus.Tar(modelcorpus.ModelTar(), nil), uint8(13))
	f.Add(modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "a", Data: []byte("x"), PAX: true}}, nil), uint8(1))
	f.Add(modelcorpus.Tar(modelcorpus.SavedModelDir("m/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 4096), nil), uint8(40))
	content.SetTarFirstRelease(f, 0) // release as early as allowed: the check below has something to check
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewTarInspector(scanOpts, size) }, data, chunk)
		tarReleaseTrace(t, scanOpts, data, int(chunk%61)+1) // Releasable never decreases nor passes the bytes written
	})
}

// FuzzKerasArchive fuzzes the zip validator on Keras v3 archives (the
// Keras recognition and member rules run inside it).
func FuzzKerasArchive(f *testing.F) {
	seq := modelcorpus.KerasConfig("sequential.json")
	meta := `{"keras_version": "3.6.0", "date_saved": "2026-12-06@13:58:01"}`
	zip := func(members ...[2]string) []byte {
		var spec modelcorpus.ZipSpec
		for _, m := range members {
			spec.Entries = append(spec.Entries, modelcorpus.ZipEntry{Name: m[0], Data: []byte(m[1])})
		}
		return modelcorpus.Zip(spec)
	}
	f.Add(zip([2]string{"metadata.json", meta}, [2]string{"config.json", seq}, [2]string{"model.weights.h5", ""}), uint8(7))
	f.Add(zip([2]string{"model.weights.h5", ""}, [2]string{"config.json", seq}, [2]string{"metadata.json", meta}, [2]string{"assets/vocab.txt", "a\n"}), uint8(3))
	f.Add(zip([2]string{"metadata.json", meta}, [2]string{"config.json", `{"class_name": "Lambda", "config": {}}`}), uint8(1))
	f.Add(zip([2]string{"config.json", seq}, [2]string{"model.weights.h5", ""}), uint8(5))
	f.Add(zip([2]string{"config.json", `{"model_type": "bert", "x": [{"class_name": "Dense", "config": {"units": NaN}}]}`}, [2]string{"vocab.txt", "a"}), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewZipInspector(content.Options{}, size) }, data, chunk)
	})
}
