package modelcorpus

import (
	"encoding/binary"
	"math"
	"strconv"
)

// GGUF value types.
const (
	GGUFUint8 uint32 = iota
	GGUFInt8
	GGUFUint16
	GGUFInt16
	GGUFUint32
	GGUFInt32
	GGUFFloat32
	GGUFBool
	GGUFString
	GGUFArray
	GGUFUint64
	GGUFInt64
	GGUFFloat64
)

// GGUFRaw is a KV value written verbatim after the type field.
type GGUFRaw []byte

// GGUFArrayOf is an array value.
type GGUFArrayOf struct {
	Elem   uint32
	Values []any // uint32, int32, float32, string, uint8, bool
	Count  *uint64
}

// GGUFKV is one metadata entry.
type GGUFKV struct {
	Key   string
	Type  uint32
	Value any // uint32, uint64, string, bool, GGUFArrayOf, GGUFRaw
}

// GGUFTensor is one tensor info. Offset nil means "next aligned offset".
type GGUFTensor struct {
	Name   string
	Dims   []uint64
	Type   uint32 // ggml type
	Offset *uint64
}

// GGUFSpec describes a generated GGUF file.
type GGUFSpec struct {
	Version     uint32
	KVs         []GGUFKV
	Tensors     []GGUFTensor
	Alignment   uint64  // padding alignment used by the writer (default 32)
	TensorCount *uint64 // header override
	KVCount     *uint64 // header override
	NoLastPad   bool    // omit the padding after the last tensor
	// NoHeaderPad omits the padding after the tensor infos, as gguf-py's
	// vocab-only writer does (write_header_to_file + write_kv_data_to_file,
	// no tensor infos, no padding).
	NoHeaderPad bool
}

// GGMLSize returns the byte size of a tensor for the types the generator
// uses (F32, F16, Q4_0, Q8_0, I8).
func GGMLSize(typ uint32, dims []uint64) uint64 {
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	switch typ {
	case 0:
		return n * 4
	case 1:
		return n * 2
	case 2:
		return n / 32 * 18
	case 8:
		return n / 32 * 34
	case 24:
		return n
	}
	return n
}

func ggufStr(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func ggufScalar(b []byte, t uint32, v any) []byte {
	switch t {
	case GGUFUint8, GGUFInt8:
		switch x := v.(type) {
		case uint8:
			return append(b, x)
		case int:
			return append(b, byte(x))
		}
	case GGUFBool:
		if v.(bool) {
			return append(b, 1)
		}
		return append(b, 0)
	case GGUFUint32:
		return binary.LittleEndian.AppendUint32(b, v.(uint32))
	case GGUFInt32:
		return binary.LittleEndian.AppendUint32(b, uint32(v.(int32)))
	case GGUFFloat32:
		return binary.LittleEndian.AppendUint32(b, math.Float32bits(v.(float32)))
	case GGUFUint64:
		return binary.LittleEndian.AppendUint64(b, v.(uint64))
	case GGUFString:
		return ggufStr(b, v.(string))
	}
	panic("modelcorpus: unsupported GGUF value")
}

// GGUF writes the file: header, KVs, tensor infos, padding, tensor data.
func GGUF(s GGUFSpec) []byte {
	if s.Version == 0 {
		s.Version = 3
	}
	if s.Alignment == 0 {
		s.Alignment = 32
	}
	b := []byte("GGUF")
	b = binary.LittleEndian.AppendUint32(b, s.Version)
	nt, nk := uint64(len(s.Tensors)), uint64(len(s.KVs))
	if s.TensorCount != nil {
		nt = *s.TensorCount
	}
	if s.KVCount != nil {
		nk = *s.KVCount
	}
	b = binary.LittleEndian.AppendUint64(b, nt)
	b = binary.LittleEndian.AppendUint64(b, nk)
	for _, kv := range s.KVs {
		b = ggufStr(b, kv.Key)
		b = binary.LittleEndian.AppendUint32(b, kv.Type)
		switch v := kv.Value.(type) {
		case GGUFRaw:
			b = append(b, v...)
		case GGUFArrayOf:
			b = binary.LittleEndian.AppendUint32(b, v.Elem)
			c := uint64(len(v.Values))
			if v.Count != nil {
				c = *v.Count
			}
			b = binary.LittleEndian.AppendUint64(b, c)
			for _, e := range v.Values {
				b = ggufScalar(b, v.Elem, e)
			}
		default:
			b = ggufScalar(b, kv.Type, v)
		}
	}
	var off uint64
	var sizes []uint64
	for _, t := range s.Tensors {
		b = ggufStr(b, t.Name)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(t.Dims)))
		for _, d := range t.Dims {
			b = binary.LittleEndian.AppendUint64(b, d)
		}
		b = binary.LittleEndian.AppendUint32(b, t.Type)
		o := off
		if t.Offset != nil {
			o = *t.Offset
		}
		b = binary.LittleEndian.AppendUint64(b, o)
		sz := GGMLSize(t.Type, t.Dims)
		sizes = append(sizes, sz)
		off += sz
		off += (s.Alignment - off%s.Alignment) % s.Alignment
	}
	for !s.NoHeaderPad && uint64(len(b))%s.Alignment != 0 {
		b = append(b, 0)
	}
	for i, sz := range sizes {
		for j := uint64(0); j < sz; j++ {
			b = append(b, byte(j*5+1))
		}
		if i == len(sizes)-1 && s.NoLastPad {
			break
		}
		for uint64(len(b))%s.Alignment != 0 {
			b = append(b, 0)
		}
	}
	return b
}

// U64 returns a pointer (for overrides).
func U64(v uint64) *uint64 { return &v }

// U32 returns a pointer (for CRC overrides).
func U32(v uint32) *uint32 { return &v }

// ValidGGUFSpec is a small llama-style file with a benign chat template and
// tokenizer arrays.
func ValidGGUFSpec() GGUFSpec {
	return GGUFSpec{
		Version: 3,
		KVs: []GGUFKV{
			{Key: "general.architecture", Type: GGUFString, Value: "llama"},
			{Key: "general.alignment", Type: GGUFUint32, Value: uint32(32)},
			{Key: "general.quantization_version", Type: GGUFUint32, Value: uint32(2)},
			{Key: "tokenizer.ggml.tokens", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFString, Values: []any{"<s>", "</s>", "hello", "world"}}},
			{Key: "tokenizer.ggml.scores", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFFloat32, Values: []any{float32(0), float32(0), float32(-1.5), float32(-2)}}},
			{Key: "tokenizer.ggml.token_type", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFInt32, Values: []any{int32(3), int32(3), int32(1), int32(1)}}},
			{Key: "tokenizer.ggml.add_bos_token", Type: GGUFBool, Value: true},
			{Key: "tokenizer.chat_template", Type: GGUFString, Value: "{% for m in messages %}{% set ns = namespace(x=1) %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"},
		},
		Tensors: []GGUFTensor{
			{Name: "token_embd.weight", Dims: []uint64{64, 4}, Type: 8},
			{Name: "blk.0.attn_norm.weight", Dims: []uint64{7}, Type: 0},
			{Name: "blk.0.attn_q.weight", Dims: []uint64{32, 2}, Type: 2},
			{Name: "output_norm.weight", Dims: []uint64{3}, Type: 1},
		},
	}
}

// VocabGGUFSpec is a vocabulary-only file (n_tensors = 0) as llama.cpp's
// convert_hf_to_gguf.py --vocab-only writes it: n byte-level BPE tokens
// (ASCII, "Ġ"-prefixed words, CJK, <0xNN> byte tokens), their scores and
// token types, n merges, a chat template, and no padding after the
// metadata. The content is deterministic.
func VocabGGUFSpec(n int) GGUFSpec {
	tokens := make([]any, n)
	scores := make([]any, n)
	types := make([]any, n)
	merges := make([]any, n)
	x := uint32(2463534242)
	rnd := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	const letters = "abcdefghijklmnopqrstuvwxyzetaoinshrdlu"
	word := func() string {
		l := 2 + int(rnd()%8)
		w := make([]byte, l)
		for i := range w {
			w[i] = letters[rnd()%uint32(len(letters))]
		}
		return string(w)
	}
	for i := range tokens {
		var t string
		switch r := rnd() % 16; {
		case i < 256:
			t = "<0x" + strconv.FormatUint(uint64(i)|0x100, 16)[1:] + ">"
		case r < 8:
			t = "\u0120" + word()
		case r < 14:
			t = word()
		default:
			t = string([]rune{rune(0x4E00 + rnd()%0x5000), rune(0x4E00 + rnd()%0x5000)})
		}
		tokens[i] = t + strconv.Itoa(i%10)
		scores[i] = -float32(i)
		types[i] = int32(1)
		if i < 256 {
			types[i] = int32(6)
		}
		merges[i] = word() + " " + word()
	}
	return GGUFSpec{
		Version: 3,
		KVs: []GGUFKV{
			{Key: "general.architecture", Type: GGUFString, Value: "llama"},
			{Key: "general.name", Type: GGUFString, Value: "vocab"},
			{Key: "llama.vocab_size", Type: GGUFUint32, Value: uint32(n)},
			{Key: "tokenizer.ggml.model", Type: GGUFString, Value: "gpt2"},
			{Key: "tokenizer.ggml.pre", Type: GGUFString, Value: "llama-bpe"},
			{Key: "tokenizer.ggml.tokens", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFString, Values: tokens}},
			{Key: "tokenizer.ggml.scores", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFFloat32, Values: scores}},
			{Key: "tokenizer.ggml.token_type", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFInt32, Values: types}},
			{Key: "tokenizer.ggml.merges", Type: GGUFArray, Value: GGUFArrayOf{Elem: GGUFString, Values: merges}},
			{Key: "tokenizer.ggml.bos_token_id", Type: GGUFUint32, Value: uint32(1)},
			{Key: "tokenizer.ggml.add_bos_token", Type: GGUFBool, Value: true},
			{Key: "tokenizer.chat_template", Type: GGUFString, Value: VocabChatTemplate},
		},
		NoHeaderPad: true,
	}
}

// VocabChatTemplate is a real-shaped Llama 3 chat template.
const VocabChatTemplate = "{{- bos_token }}\n{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = \"\" %}\n{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n{%- endif %}\n"
