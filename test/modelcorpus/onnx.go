package modelcorpus

import "google.golang.org/protobuf/encoding/protowire"

// ONNX models are serialized onnx.ModelProto messages, encoded here field by
// field with protowire using the field numbers of onnx/onnx.proto (the
// layout onnx.save writes: ir_version first, then producer, opset_import,
// graph with its nodes and initializers, then functions).

// ONNXTensor is an initializer: raw_data inline, or external_data entries
// (key, value pairs such as {"location", "weights.bin"}).
type ONNXTensor struct {
	Name     string
	Dims     []int64
	Raw      []byte
	External [][2]string
}

// ONNXNode is a node; Graphs are graph-valued attributes (If's
// then_branch/else_branch, Loop's and Scan's body), by attribute name.
type ONNXNode struct {
	OpType, Domain  string
	Inputs, Outputs []string
	Graphs          [][2]any // {name string, ONNXGraph}
	Tensors         [][2]any // {name string, ONNXTensor}: tensor attributes
	// GraphList is a GRAPHS attribute (repeated graphs, field 11).
	GraphList []ONNXGraph
	// Sparse are SPARSE_TENSOR attributes (field 22), by attribute name
	// (a Constant node's sparse_value).
	Sparse [][2]any // {name string, ONNXSparseTensor}
}

// ONNXSparseTensor is a SparseTensorProto: values (field 1) and indices
// (field 2) are TensorProtos, either of which may be stored externally.
type ONNXSparseTensor struct {
	Values, Indices ONNXTensor
	Dims            []int64
}

// ONNXGraph is a GraphProto.
type ONNXGraph struct {
	Name         string
	Nodes        []ONNXNode
	Initializers []ONNXTensor
	// SparseInitializers is sparse_initializer (field 15).
	SparseInitializers []ONNXSparseTensor
	// NodesAfter are nodes encoded after the initializers (field order
	// is free; exporters write nodes first).
	NodesAfter []ONNXNode
}

// ONNXFunction is a model-local FunctionProto.
type ONNXFunction struct {
	Name, Domain string
	Nodes        []ONNXNode
	Opsets       [][2]any // opset_import (field 9): {domain string, version int64}
}

// ONNXModel is a ModelProto.
type ONNXModel struct {
	IRVersion int64
	Opsets    [][2]any // {domain string, version int64}
	Graph     ONNXGraph
	Functions []ONNXFunction
}

func pbBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func pbString(b []byte, num protowire.Number, s string) []byte {
	return pbBytes(b, num, []byte(s))
}

func pbVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// ONNXTensorProto encodes a TensorProto (float32 data).
func ONNXTensorProto(t ONNXTensor) []byte {
	var b []byte
	for _, d := range t.Dims {
		b = pbVarint(b, 1, uint64(d))
	}
	b = pbVarint(b, 2, 1) // data_type FLOAT
	b = pbString(b, 8, t.Name)
	if t.External == nil {
		b = pbBytes(b, 9, t.Raw)
		return b
	}
	for _, kv := range t.External {
		var e []byte
		e = pbString(e, 1, kv[0])
		e = pbString(e, 2, kv[1])
		b = pbBytes(b, 13, e)
	}
	return pbVarint(b, 14, 1) // data_location EXTERNAL
}

// ONNXNodeProto encodes a NodeProto.
func ONNXNodeProto(n ONNXNode) []byte {
	var b []byte
	for _, s := range n.Inputs {
		b = pbString(b, 1, s)
	}
	for _, s := range n.Outputs {
		b = pbString(b, 2, s)
	}
	b = pbString(b, 3, n.OpType+"_0")
	b = pbString(b, 4, n.OpType)
	for _, g := range n.Graphs {
		b = pbAttr(b, g[0].(string), 6, ONNXGraphProto(g[1].(ONNXGraph)), 5) // GRAPH
	}
	if n.GraphList != nil {
		var a []byte
		a = pbString(a, 1, "graphs")
		for _, g := range n.GraphList {
			a = pbBytes(a, 11, ONNXGraphProto(g))
		}
		a = pbVarint(a, 20, 10) // type GRAPHS
		b = pbBytes(b, 5, a)
	}
	for _, t := range n.Tensors {
		b = pbAttr(b, t[0].(string), 5, ONNXTensorProto(t[1].(ONNXTensor)), 4) // TENSOR
	}
	for _, t := range n.Sparse {
		b = pbAttr(b, t[0].(string), 22, ONNXSparseTensorProto(t[1].(ONNXSparseTensor)), 11) // SPARSE_TENSOR
	}
	if n.Domain != "" {
		b = pbString(b, 7, n.Domain)
	}
	return b
}

// pbAttr appends a NodeProto attribute (field 5): an AttributeProto with
// name, one message-valued field and its AttributeType.
func pbAttr(b []byte, name string, field protowire.Number, value []byte, typ uint64) []byte {
	var a []byte
	a = pbString(a, 1, name)
	a = pbBytes(a, field, value)
	a = pbVarint(a, 20, typ)
	return pbBytes(b, 5, a)
}

// ONNXSparseTensorProto encodes a SparseTensorProto.
func ONNXSparseTensorProto(t ONNXSparseTensor) []byte {
	var b []byte
	b = pbBytes(b, 1, ONNXTensorProto(t.Values))
	b = pbBytes(b, 2, ONNXTensorProto(t.Indices))
	for _, d := range t.Dims {
		b = pbVarint(b, 3, uint64(d))
	}
	return b
}

func onnxOpsets(b []byte, num protowire.Number, opsets [][2]any) []byte {
	for _, o := range opsets {
		var e []byte
		e = pbString(e, 1, o[0].(string))
		e = pbVarint(e, 2, uint64(o[1].(int64)))
		b = pbBytes(b, num, e)
	}
	return b
}

// ONNXGraphProto encodes a GraphProto.
func ONNXGraphProto(g ONNXGraph) []byte {
	var b []byte
	for _, n := range g.Nodes {
		b = pbBytes(b, 1, ONNXNodeProto(n))
	}
	b = pbString(b, 2, g.Name)
	for _, t := range g.Initializers {
		b = pbBytes(b, 5, ONNXTensorProto(t))
	}
	for _, t := range g.SparseInitializers {
		b = pbBytes(b, 15, ONNXSparseTensorProto(t))
	}
	for _, n := range g.NodesAfter {
		b = pbBytes(b, 1, ONNXNodeProto(n))
	}
	return b
}

// ONNX encodes a ModelProto.
func ONNX(m ONNXModel) []byte {
	var b []byte
	b = pbVarint(b, 1, uint64(m.IRVersion))
	b = pbString(b, 2, "pullgate-modelcorpus")
	b = pbString(b, 3, "1")
	opsets := m.Opsets
	if opsets == nil {
		opsets = [][2]any{{"", int64(21)}}
	}
	b = onnxOpsets(b, 8, opsets)
	b = pbBytes(b, 7, ONNXGraphProto(m.Graph))
	for _, f := range m.Functions {
		var e []byte
		e = pbString(e, 1, f.Name)
		e = pbString(e, 4, "x")
		e = pbString(e, 5, "y")
		for _, n := range f.Nodes {
			e = pbBytes(e, 7, ONNXNodeProto(n))
		}
		e = onnxOpsets(e, 9, f.Opsets)
		e = pbString(e, 10, f.Domain)
		b = pbBytes(b, 25, e)
	}
	return b
}

// BenignONNX is a model with a MatMul node, an inline initializer of
// rawBytes bytes (to prove streaming) and an external initializer stored in
// "weights.bin" next to the model.
func BenignONNX(rawBytes int) ONNXModel {
	raw := make([]byte, rawBytes)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	return ONNXModel{IRVersion: 10, Graph: ONNXGraph{Name: "main",
		Nodes: []ONNXNode{{OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"h"}},
			{OpType: "Add", Inputs: []string{"h", "b"}, Outputs: []string{"y"}, Domain: "ai.onnx"}},
		Initializers: []ONNXTensor{{Name: "w", Dims: []int64{int64(rawBytes / 4)}, Raw: raw},
			{Name: "b", Dims: []int64{1024}, External: [][2]string{{"location", "weights.bin"}, {"offset", "0"}, {"length", "4096"}}}}}}
}
