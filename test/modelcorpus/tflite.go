package modelcorpus

import (
	"encoding/binary"

	flatbuffers "github.com/google/flatbuffers/go"
)

// TFLite models are tflite.Model flatbuffers (file identifier "TFL3"),
// built here with the flatbuffers project's own Go builder (back to front,
// vtables deduplicated, as the converter's C++ builder writes them) using
// the table and field ids of tensorflow/lite/schema/schema.fbs:
//
//	Model        0 version, 1 operator_codes, 2 subgraphs, 3 description, 4 buffers
//	OperatorCode 0 deprecated_builtin_code (byte), 1 custom_code, 2 version, 3 builtin_code (int)
//	SubGraph     0 tensors, 1 inputs, 2 outputs, 3 operators, 4 name
//	Tensor       0 shape, 1 type, 2 buffer, 3 name
//	Operator     0 opcode_index, 1 inputs, 2 outputs
//	Buffer       0 data, 1 offset (ulong), 2 size (ulong)
//
// Like the converter (flatbuffer_export.cc), each constant's buffer is
// built when its op is translated, and each operator code when it is
// first used, so codes and tensor data interleave in the file.

// TFLiteOp is one operator: a builtin code (CONV_2D = 3, ...; CUSTOM = 32
// with Custom naming it) and the bytes of its constant weight tensor.
type TFLiteOp struct {
	Builtin int32
	Custom  string
	Weights []byte
	// Deprecated writes the code only in deprecated_builtin_code (as
	// converters before TF 2.5 did) and builtin_code as an explicit 0.
	Deprecated bool
	// Options is the operator's custom_options (for a Flex op, see
	// FlexOptions).
	Options []byte
}

// FlexOptions encodes a Flex op's custom_options as TFLite's converter
// writes them (tensorflow/lite/delegates/flex/kernel.cc reads them): a
// flexbuffer vector of two strings, the TensorFlow op name and the
// serialized NodeDef. Widths are 4 bytes (flexbuffers allows 1 to 8).
func FlexOptions(op string, nodeDef []byte) []byte {
	const w = 4
	var b []byte
	var starts []int
	for _, s := range []string{op, string(nodeDef)} {
		for len(b)%w != 0 {
			b = append(b, 0)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		starts = append(starts, len(b))
		b = append(append(b, s...), 0)
	}
	for len(b)%w != 0 {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, 2) // vector length
	vec := len(b)
	for i, st := range starts {
		b = binary.LittleEndian.AppendUint32(b, uint32(vec+i*w-st))
	}
	b = append(b, 5<<2|2, 5<<2|2) // element types: FBT_STRING, 4-byte size
	for len(b)%w != 0 {
		b = append(b, 0)
	}
	root := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(root-vec))
	return append(b, 10<<2|2, w) // root: FBT_VECTOR of 4-byte elements; root width
}

// TFLiteModel describes a model.
type TFLiteModel struct {
	Ops []TFLiteOp
	// External lists buffers whose data follows the flatbuffer (Buffer
	// offset/size, the layout of models over 2 GB): sizes only; TFLite
	// appends the data after the flatbuffer, which callers stream.
	External []uint64
	Version  uint32 // 3 when 0
}

// TFLite builds the model's flatbuffer. For External buffers the data is
// not included: it is what follows the returned bytes (offsets are
// computed from len(flatbuffer), padded to 16 bytes, as the converter
// does); TFLiteTail returns those padding bytes.
func TFLite(m TFLiteModel) []byte {
	b := flatbuffers.NewBuilder(1 << 16)
	type opRef struct {
		code, weightBuf int
		options         []byte
	}
	var codes []flatbuffers.UOffsetT
	codeIndex := map[[2]any]int{}
	var buffers []flatbuffers.UOffsetT
	emptyBuffer := func() flatbuffers.UOffsetT {
		b.StartObject(3)
		return b.EndObject()
	}
	buffers = append(buffers, emptyBuffer()) // buffer 0: the empty sentinel
	var refs []opRef
	for _, op := range m.Ops {
		data := b.CreateByteVector(op.Weights)
		b.StartObject(3)
		b.PrependUOffsetTSlot(0, data, 0)
		buffers = append(buffers, b.EndObject())
		key := [2]any{op.Builtin, op.Custom}
		idx, ok := codeIndex[key]
		if !ok {
			var custom flatbuffers.UOffsetT
			if op.Custom != "" {
				custom = b.CreateString(op.Custom)
			}
			b.StartObject(4)
			if op.Builtin < 127 {
				b.PrependInt8Slot(0, int8(op.Builtin), 0)
			} else {
				b.PrependInt8Slot(0, 127, 0) // PLACEHOLDER_FOR_GREATER_OP_CODES
			}
			if custom != 0 {
				b.PrependUOffsetTSlot(1, custom, 0)
			}
			b.PrependInt32Slot(2, 1, 1)
			if !op.Deprecated || op.Builtin >= 127 {
				b.PrependInt32Slot(3, op.Builtin, 0)
			} else {
				// builtin_code written explicitly as 0 (ADD): TFLite takes
				// the larger of the two codes.
				b.PrependInt32(0)
				b.Slot(3)
			}
			codes = append(codes, b.EndObject())
			idx = len(codes) - 1
			codeIndex[key] = idx
		}
		refs = append(refs, opRef{code: idx, weightBuf: len(buffers) - 1, options: op.Options})
	}
	// External buffers: offset and size are patched below once the
	// flatbuffer's length is known; here they get placeholders of the same
	// width (ulong fields are fixed size).
	var extSlots []flatbuffers.UOffsetT
	for range m.External {
		b.StartObject(3)
		b.PrependUint64Slot(1, 0xFFFFFFFFFFFFFFFF, 0)
		b.PrependUint64Slot(2, 0xFFFFFFFFFFFFFFFF, 0)
		t := b.EndObject()
		buffers = append(buffers, t)
		extSlots = append(extSlots, t)
	}
	// One subgraph: input tensor 0, a weight tensor per op, chained outputs.
	var tensors []flatbuffers.UOffsetT
	mkTensor := func(name string, buf int) flatbuffers.UOffsetT {
		n := b.CreateString(name)
		b.StartVector(4, 1, 4)
		b.PrependInt32(4)
		shape := b.EndVector(1)
		b.StartObject(4)
		b.PrependUOffsetTSlot(0, shape, 0)
		b.PrependInt8Slot(1, 0, 0) // FLOAT32
		b.PrependUint32Slot(2, uint32(buf), 0)
		b.PrependUOffsetTSlot(3, n, 0)
		return b.EndObject()
	}
	tensors = append(tensors, mkTensor("input", 0))
	var operators []flatbuffers.UOffsetT
	for i, r := range refs {
		tensors = append(tensors, mkTensor("w", r.weightBuf))
		tensors = append(tensors, mkTensor("act", 0))
		in := []int32{int32(len(tensors) - 3 - boolInt(i > 0)), int32(len(tensors) - 2)}
		if i == 0 {
			in[0] = 0
		}
		inputs := int32Vector(b, in)
		outputs := int32Vector(b, []int32{int32(len(tensors) - 1)})
		var options flatbuffers.UOffsetT
		if len(r.options) > 0 {
			options = b.CreateByteVector(r.options)
		}
		b.StartObject(6)
		b.PrependUint32Slot(0, uint32(r.code), 0)
		b.PrependUOffsetTSlot(1, inputs, 0)
		b.PrependUOffsetTSlot(2, outputs, 0)
		if options != 0 {
			b.PrependUOffsetTSlot(5, options, 0) // custom_options
		}
		operators = append(operators, b.EndObject())
	}
	tv := offsetVector(b, tensors)
	ov := offsetVector(b, operators)
	sin := int32Vector(b, []int32{0})
	sout := int32Vector(b, []int32{int32(len(tensors) - 1)})
	name := b.CreateString("main")
	b.StartObject(5)
	sg := offsetSlots(b, 0, tv, sin, sout, ov, name)
	subgraphs := offsetVector(b, []flatbuffers.UOffsetT{sg})
	opcodes := offsetVector(b, codes)
	bufs := offsetVector(b, buffers)
	desc := b.CreateString("MLIR Converted.")
	version := m.Version
	if version == 0 {
		version = 3
	}
	b.StartObject(8)
	b.PrependUint32Slot(0, version, 0)
	model := offsetSlots(b, 1, opcodes, subgraphs, desc, bufs)
	b.FinishWithFileIdentifier(model, []byte("TFL3"))
	out := append([]byte(nil), b.FinishedBytes()...)
	// Patch the external buffers' offset and size (absolute file offsets
	// of data laid out after the flatbuffer, each 16-byte aligned).
	at := uint64(len(out)+15) / 16 * 16
	for i, t := range extSlots {
		pos := len(out) - int(t) // tables are addressed from the buffer's end
		tab := &flatbuffers.Table{Bytes: out, Pos: flatbuffers.UOffsetT(pos)}
		tab.MutateUint64Slot(6, at)
		tab.MutateUint64Slot(8, m.External[i])
		at = (at + m.External[i] + 15) / 16 * 16
	}
	return out
}

// TFLiteTail is the padding between the flatbuffer and its first external
// buffer.
func TFLiteTail(fb []byte) []byte { return make([]byte, (len(fb)+15)/16*16-len(fb)) }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func int32Vector(b *flatbuffers.Builder, v []int32) flatbuffers.UOffsetT {
	return vector(b, len(v), func(i int) { b.PrependInt32(v[i]) })
}

func offsetVector(b *flatbuffers.Builder, v []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	return vector(b, len(v), func(i int) { b.PrependUOffsetT(v[i]) })
}

// offsetSlots fills slots first, first+1, ... of the table being built
// with offsets and ends it.
func offsetSlots(b *flatbuffers.Builder, first int, offs ...flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	for i, o := range offs {
		b.PrependUOffsetTSlot(first+i, o, 0)
	}
	return b.EndObject()
}

// vector writes a vector of n 4-byte elements, last first.
func vector(b *flatbuffers.Builder, n int, prepend func(i int)) flatbuffers.UOffsetT {
	b.StartVector(4, n, 4)
	for i := n - 1; i >= 0; i-- {
		prepend(i)
	}
	return b.EndVector(n)
}

// BenignTFLite is a small convolutional model: CONV_2D (3), DEPTHWISE_CONV_2D
// (4), FULLY_CONNECTED (9), SOFTMAX (25) and a BROADCAST_TO (130, past
// the deprecated byte) with weightBytes bytes of weights each.
func BenignTFLite(weightBytes int) TFLiteModel {
	w := func(seed int) []byte {
		d := make([]byte, weightBytes)
		for i := range d {
			d[i] = byte(i*seed + 3)
		}
		return d
	}
	return TFLiteModel{Ops: []TFLiteOp{
		{Builtin: 3, Weights: w(5), Deprecated: true},
		{Builtin: 4, Weights: w(7)},
		{Builtin: 3, Weights: w(11)},
		{Builtin: 9, Weights: w(13)},
		{Builtin: 130, Weights: w(17)},
		{Builtin: 25},
	}}
}
