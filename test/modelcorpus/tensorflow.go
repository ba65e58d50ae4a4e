package modelcorpus

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// TensorFlow SavedModels and frozen graphs are serialized
// tensorflow.SavedModel and tensorflow.GraphDef messages, encoded here field
// by field with protowire using the field numbers of
// tensorflow/core/protobuf/saved_model.proto, meta_graph.proto and
// tensorflow/core/framework/{graph,node_def,function,attr_value,op_def,
// tensor,tensor_shape,versions}.proto, in field-number order as the C++
// serializer writes them. BenignSavedModel mirrors what
// tf.saved_model.save writes for a Keras-free tf.Module with one variable
// and a serving signature: a main graph of Placeholders, VarHandleOps and
// StatefulPartitionedCalls whose f attributes name __inference_ functions
// of the library, the saver's __inference__traced_save/_restore functions
// (StaticRegexFullMatch, StringJoin, ShardedFilename, SaveV2,
// MergeV2Checkpoints, RestoreV2, AssignVariableOp), a SaverDef and a
// signature_def.

// TFAttr is one NodeDef or FunctionDef attribute (map entry key -> AttrValue).
// Exactly one of its value fields is used.
type TFAttr struct {
	Key      string
	S        *string  // s
	Type     int      // type (DataType), when > 0
	I        *int64   // i
	Func     *TFFunc  // func (NameAttrList)
	FuncList []TFFunc // list.func
	Tensor   []byte   // tensor: a float TensorProto with this tensor_content
	// Raw, when set, is the encoded AttrValue itself (for tricks).
	Raw []byte
}

// TFFunc is a NameAttrList: a function (or op) name with attributes.
type TFFunc struct {
	Name  string
	Attrs []TFAttr
}

// TFNode is a NodeDef.
type TFNode struct {
	Name, Op string
	Inputs   []string
	Device   string
	Attrs    []TFAttr
	// Extra is appended to the encoded NodeDef (unknown fields, repeats).
	Extra []byte
}

// TFFunction is a FunctionDef.
type TFFunction struct {
	Name  string
	Nodes []TFNode
	Attrs []TFAttr
}

// TFGraph is a GraphDef.
type TFGraph struct {
	Nodes     []TFNode
	Functions []TFFunction
	Gradients [][2]string // {function_name, gradient_func}
}

func strp(s string) *string { return &s }

// TFAttrValue encodes an AttrValue.
func TFAttrValue(a TFAttr) []byte {
	if a.Raw != nil {
		return a.Raw
	}
	var b []byte
	switch {
	case a.S != nil:
		b = pbString(b, 2, *a.S)
	case a.I != nil:
		b = pbVarint(b, 3, uint64(*a.I))
	case a.Type > 0:
		b = pbVarint(b, 6, uint64(a.Type))
	case a.Tensor != nil:
		b = pbBytes(b, 8, TFTensorProto(a.Tensor))
	case a.Func != nil:
		b = pbBytes(b, 10, tfNameAttrList(*a.Func))
	case a.FuncList != nil:
		var l []byte
		for _, f := range a.FuncList {
			l = pbBytes(l, 9, tfNameAttrList(f))
		}
		b = pbBytes(b, 1, l)
	}
	return b
}

func tfAttrEntries(b []byte, num protowire.Number, attrs []TFAttr) []byte {
	for _, a := range attrs {
		var e []byte
		e = pbString(e, 1, a.Key)
		e = pbBytes(e, 2, TFAttrValue(a))
		b = pbBytes(b, num, e)
	}
	return b
}

func tfNameAttrList(f TFFunc) []byte {
	b := pbString(nil, 1, f.Name)
	return tfAttrEntries(b, 2, f.Attrs)
}

// TFTensorProto is a DT_FLOAT TensorProto of len(content)/4 elements.
func TFTensorProto(content []byte) []byte {
	b := pbVarint(nil, 1, 1) // dtype DT_FLOAT
	dim := pbVarint(nil, 1, uint64(len(content)/4))
	b = pbBytes(b, 2, pbBytes(nil, 2, dim)) // tensor_shape { dim { size } }
	return pbBytes(b, 4, content)           // tensor_content
}

// TFNodeDef encodes a NodeDef.
func TFNodeDef(n TFNode) []byte {
	var b []byte
	b = pbString(b, 1, n.Name)
	b = pbString(b, 2, n.Op)
	for _, in := range n.Inputs {
		b = pbString(b, 3, in)
	}
	if n.Device != "" {
		b = pbString(b, 4, n.Device)
	}
	b = tfAttrEntries(b, 5, n.Attrs)
	return append(b, n.Extra...)
}

// TFFunctionDef encodes a FunctionDef.
func TFFunctionDef(f TFFunction) []byte {
	sig := pbString(nil, 1, f.Name)
	sig = pbBytes(sig, 2, pbVarint(pbString(nil, 1, "x"), 3, 1)) // input_arg {name type}
	sig = pbBytes(sig, 3, pbVarint(pbString(nil, 1, "y"), 3, 1)) // output_arg
	sig = pbVarint(sig, 16, 1)                                   // is_stateful
	b := pbBytes(nil, 1, sig)
	for _, n := range f.Nodes {
		b = pbBytes(b, 3, TFNodeDef(n))
	}
	b = pbBytes(b, 4, pbString(pbString(nil, 1, "y"), 2, "identity:output:0")) // ret
	return tfAttrEntries(b, 5, f.Attrs)
}

// TFGraphDef encodes a GraphDef (a frozen graph file).
func TFGraphDef(g TFGraph) []byte {
	var b []byte
	for _, n := range g.Nodes {
		b = pbBytes(b, 1, TFNodeDef(n))
	}
	if len(g.Functions) > 0 || len(g.Gradients) > 0 {
		var lib []byte
		for _, f := range g.Functions {
			lib = pbBytes(lib, 1, TFFunctionDef(f))
		}
		for _, gr := range g.Gradients {
			lib = pbBytes(lib, 2, pbString(pbString(nil, 1, gr[0]), 2, gr[1]))
		}
		b = pbBytes(b, 2, lib)
	}
	return pbBytes(b, 4, pbVarint(pbVarint(nil, 1, 1645), 2, 12)) // versions {producer min_consumer}
}

// TFSavedModel encodes a SavedModel (saved_model.pb) with one meta graph
// tagged "serve" around the graph.
func TFSavedModel(g TFGraph) []byte {
	info := pbString(nil, 4, "serve")                         // tags
	info = pbString(info, 5, "2.16.1")                        // tensorflow_version
	info = pbString(info, 6, "v2.16.0-rc0-18-g5bc9d26649c")   // tensorflow_git_version
	info = pbVarint(info, 7, 1)                               // stripped_default_attrs
	mg := pbBytes(nil, 1, info)                               // meta_info_def
	mg = pbBytes(mg, 2, TFGraphDef(g))                        // graph_def
	saver := pbString(nil, 1, "saver_filename:0")             // filename_tensor_name
	saver = pbString(saver, 2, "StatefulPartitionedCall_1:0") // save_tensor_name
	saver = pbString(saver, 3, "StatefulPartitionedCall_2")   // restore_op_name
	saver = pbVarint(saver, 4, 5)                             // max_to_keep
	saver = pbVarint(saver, 7, 2)                             // version V2
	mg = pbBytes(mg, 3, saver)                                // saver_def
	sig := pbString(nil, 3, "tensorflow/serving/predict")     // method_name
	mg = pbBytes(mg, 5, pbBytes(pbString(nil, 1, "serving_default"), 2, sig))
	obj := pbBytes(nil, 1, pbBytes(nil, 4, pbString(nil, 1, "_generic_user_object"))) // nodes { user_object { identifier } }
	mg = pbBytes(mg, 7, obj)                                                          // object_graph_def
	b := pbVarint(nil, 1, 1)                                                          // saved_model_schema_version
	return pbBytes(b, 2, mg)                                                          // meta_graphs
}

func i64p(v int64) *int64 { return &v }

func tfCall(name, f string, inputs ...string) TFNode {
	return TFNode{Name: name, Op: "StatefulPartitionedCall", Inputs: inputs, Attrs: []TFAttr{
		{Key: "Tin", Raw: pbBytes(nil, 1, pbVarint(nil, 6, 1))}, // list { type: DT_FLOAT }
		{Key: "_collective_manager_ids", Raw: pbBytes(nil, 1, nil)},
		{Key: "config_proto", S: strp("\n\a\n\x03CPU\x10\x01\n\a\n\x03GPU\x10\x002\x02J\x008\x01\x82\x01\x00")},
		{Key: "f", Func: &TFFunc{Name: f}},
	}}
}

// BenignSavedModel is the graph of a tf.Module with one variable (held in
// variables/, not in the graph) and a serving signature, as
// tf.saved_model.save writes it.
func BenignSavedModel() TFGraph {
	return TFGraph{
		Nodes: []TFNode{
			{Name: "Variable", Op: "VarHandleOp", Attrs: []TFAttr{{Key: "dtype", Type: 1}, {Key: "shared_name", S: strp("Variable")}}},
			{Name: "Variable/Read/ReadVariableOp", Op: "ReadVariableOp", Inputs: []string{"Variable"}, Attrs: []TFAttr{{Key: "dtype", Type: 1}}},
			{Name: "serving_default_x", Op: "Placeholder", Attrs: []TFAttr{{Key: "dtype", Type: 1}}},
			tfCall("StatefulPartitionedCall", "__inference_signature_wrapper_126", "serving_default_x", "Variable"),
			{Name: "saver_filename", Op: "Placeholder", Attrs: []TFAttr{{Key: "dtype", Type: 7}}},
			tfCall("StatefulPartitionedCall_1", "__inference__traced_save_171", "saver_filename", "Variable/Read/ReadVariableOp"),
			tfCall("StatefulPartitionedCall_2", "__inference__traced_restore_184", "saver_filename", "Variable"),
		},
		Functions: []TFFunction{
			{Name: "__inference___call___103", Nodes: []TFNode{
				{Name: "ReadVariableOp", Op: "ReadVariableOp", Inputs: []string{"readvariableop_resource"}, Attrs: []TFAttr{{Key: "dtype", Type: 1}}},
				{Name: "mul", Op: "Mul", Inputs: []string{"x", "ReadVariableOp:value:0"}, Attrs: []TFAttr{{Key: "T", Type: 1}}},
				{Name: "Identity", Op: "Identity", Inputs: []string{"mul:z:0"}, Attrs: []TFAttr{{Key: "T", Type: 1}}},
			}, Attrs: []TFAttr{{Key: "_input_shapes", Raw: pbBytes(nil, 1, nil)}}},
			{Name: "__inference_signature_wrapper_126", Nodes: []TFNode{
				tfCall("StatefulPartitionedCall", "__inference___call___103", "x", "unknown"),
				{Name: "Identity", Op: "Identity", Inputs: []string{"StatefulPartitionedCall:output:0"}, Attrs: []TFAttr{{Key: "T", Type: 1}}},
			}},
			{Name: "__inference__traced_save_171", Nodes: []TFNode{
				{Name: "StaticRegexFullMatch", Op: "StaticRegexFullMatch", Inputs: []string{"file_prefix"}, Attrs: []TFAttr{{Key: "pattern", S: strp("^s3://.*")}}},
				{Name: "Const", Op: "Const", Attrs: []TFAttr{{Key: "dtype", Type: 7}, {Key: "value", Raw: pbBytes(nil, 8, pbBytes(pbVarint(nil, 1, 7), 8, []byte(".part")))}}},
				{Name: "Select", Op: "Select", Inputs: []string{"StaticRegexFullMatch:output:0", "Const:output:0", "Const_1:output:0"}},
				{Name: "StringJoin", Op: "StringJoin", Inputs: []string{"file_prefix", "Select:output:0"}},
				{Name: "ShardedFilename", Op: "ShardedFilename", Inputs: []string{"StringJoin:output:0", "num_shards", "shard"}},
				{Name: "SaveV2", Op: "SaveV2", Inputs: []string{"ShardedFilename:filename:0", "SaveV2/tensor_names", "SaveV2/shape_and_slices", "savev2_variable_read_readvariableop"},
					Attrs: []TFAttr{{Key: "dtypes", Raw: pbBytes(nil, 1, pbVarint(nil, 6, 1))}}},
				{Name: "MergeV2Checkpoints", Op: "MergeV2Checkpoints", Inputs: []string{"MergeV2Checkpoints/checkpoint_prefixes", "file_prefix"}},
				{Name: "Identity", Op: "Identity", Inputs: []string{"file_prefix"}, Attrs: []TFAttr{{Key: "T", Type: 7}}},
			}},
			{Name: "__inference__traced_restore_184", Nodes: []TFNode{
				{Name: "RestoreV2", Op: "RestoreV2", Inputs: []string{"file_prefix", "RestoreV2/tensor_names", "RestoreV2/shape_and_slices"}},
				{Name: "AssignVariableOp", Op: "AssignVariableOp", Inputs: []string{"assignvariableop_variable", "Identity:output:0"}},
				{Name: "NoOp", Op: "NoOp"},
				{Name: "Identity_1", Op: "Identity", Inputs: []string{"file_prefix"}},
			}},
		},
	}
}

// BenignFrozenGraph is a frozen inference graph (tf.compat.v1
// graph_util.convert_variables_to_constants): a Placeholder, a Const
// holding constBytes bytes of weights, MatMul, Softmax.
func BenignFrozenGraph(constBytes int) TFGraph {
	w := make([]byte, constBytes/4*4)
	for i := 0; i+4 <= len(w); i += 4 {
		binary.LittleEndian.PutUint32(w[i:], math.Float32bits(float32(i%97)/97))
	}
	return TFGraph{Nodes: []TFNode{
		{Name: "input", Op: "Placeholder", Attrs: []TFAttr{{Key: "dtype", Type: 1}}},
		{Name: "dense/kernel", Op: "Const", Attrs: []TFAttr{{Key: "dtype", Type: 1}, {Key: "value", Tensor: w}}},
		{Name: "dense/MatMul", Op: "MatMul", Inputs: []string{"input", "dense/kernel"}, Attrs: []TFAttr{{Key: "T", Type: 1}, {Key: "transpose_a", Raw: pbVarint(nil, 5, 0)}}},
		{Name: "output", Op: "Softmax", Inputs: []string{"dense/MatMul"}, Attrs: []TFAttr{{Key: "T", Type: 1}}},
	}}
}

// SavedModelDir is the files of a SavedModel directory as
// tf.saved_model.save lays them out, under prefix ("" or "model/"):
// saved_model.pb, fingerprint.pb, variables/variables.index and one data
// shard of dataBytes bytes, and an asset.
func SavedModelDir(prefix string, savedModel []byte, dataBytes int) []TarEntry {
	fp := pbVarint(nil, 1, 0x1c2f3e4d5a697887) // saved_model_checksum
	fp = pbVarint(fp, 2, 0x0102030405060708)   // graph_def_program_hash
	fp = pbVarint(fp, 3, 0x1112131415161718)   // signature_def_hash
	fp = pbVarint(fp, 4, 0x2122232425262728)   // saved_object_graph_hash
	fp = pbVarint(fp, 5, 0x3132333435363738)   // checkpoint_hash
	fp = pbBytes(fp, 6, pbVarint(nil, 1, 1))   // version { producer }
	data := make([]byte, dataBytes)
	for i := range data {
		data[i] = byte(i*31 + 1)
	}
	// variables.index is a leveldb-format table (TensorBundle); its exact
	// bytes do not matter to the gate, which reads it as data.
	index := append([]byte{0x00, 0x00, 0x00, 0x00}, []byte(fmt.Sprintf("\x00\x0a\x00_CHECKPOINTABLE_OBJECT_GRAPH%016x", dataBytes))...)
	index = append(index, make([]byte, 48)...)
	index = append(index, 0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb) // table magic
	return []TarEntry{
		{Name: prefix + "saved_model.pb", Data: savedModel},
		{Name: prefix + "fingerprint.pb", Data: fp},
		{Name: prefix + "variables/variables.index", Data: index},
		{Name: prefix + "variables/variables.data-00000-of-00001", Data: data},
		{Name: prefix + "assets/vocab.txt", Data: []byte("[PAD]\n[UNK]\nhello\nworld\n")},
	}
}
