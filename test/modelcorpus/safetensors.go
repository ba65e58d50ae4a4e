package modelcorpus

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// STTensor is one tensor of a generated safetensors file.
type STTensor struct {
	Name  string
	DType string
	Shape []uint64
}

// STDTypeBits is the safetensors dtype table used by the generator.
var STDTypeBits = map[string]uint64{
	"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
	"F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32, "C64": 64,
	"F64": 64, "I64": 64, "U64": 64,
}

// STByteSize returns the byte size of a tensor.
func STByteSize(t STTensor) uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n * STDTypeBits[t.DType] / 8
}

// SafetensorsHeader returns the JSON header for tensors laid out
// contiguously in the given order (as the reference serializer does, minus
// its sorting), with optional __metadata__ first.
func SafetensorsHeader(tensors []STTensor, meta map[string]string, metaKeys ...string) (string, uint64) {
	var parts []string
	if meta != nil {
		keys := metaKeys
		if keys == nil {
			for k := range meta {
				keys = append(keys, k)
			}
			sortStrings(keys)
		}
		var m []string
		for _, k := range keys {
			m = append(m, fmt.Sprintf("%q:%q", k, meta[k]))
		}
		parts = append(parts, `"__metadata__":{`+strings.Join(m, ",")+`}`)
	}
	var off uint64
	for _, t := range tensors {
		sz := STByteSize(t)
		shape := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			shape[i] = fmt.Sprint(d)
		}
		parts = append(parts, fmt.Sprintf(`%q:{"dtype":%q,"shape":[%s],"data_offsets":[%d,%d]}`,
			t.Name, t.DType, strings.Join(shape, ","), off, off+sz))
		off += sz
	}
	return "{" + strings.Join(parts, ",") + "}", off
}

// SafetensorsRaw assembles a file from a header string (space-padded to a
// multiple of 8 like the reference writer) and dataLen bytes of data.
func SafetensorsRaw(header string, dataLen uint64) []byte {
	h := []byte(header)
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+int(dataLen))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	for i := uint64(0); i < dataLen; i++ {
		out = append(out, byte(i*7+3))
	}
	return out
}

// Safetensors builds a valid safetensors file.
func Safetensors(tensors []STTensor, meta map[string]string) []byte {
	h, n := SafetensorsHeader(tensors, meta)
	return SafetensorsRaw(h, n)
}

// SmallModel is a typical adapter/model tensor set.
func SmallModel() []STTensor {
	return []STTensor{
		{"base_model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", []uint64{4, 16}},
		{"base_model.model.layers.0.self_attn.q_proj.lora_B.weight", "BF16", []uint64{16, 4}},
		{"base_model.model.layers.0.mlp.scale", "F16", []uint64{}},
		{"base_model.model.layers.0.mlp.empty", "F32", []uint64{0, 8}},
		{"base_model.model.layers.0.mlp.q8", "F8_E4M3", []uint64{3, 5}},
		{"base_model.model.layers.0.mlp.fp4", "F4", []uint64{2, 4}},
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
