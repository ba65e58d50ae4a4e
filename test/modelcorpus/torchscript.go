package modelcorpus

// ScriptedModulePickle is the data.pkl torch.jit.save writes for a scripted
// module __torch__.Net whose attributes use every torch.jit._pickle global
// torch.jit's pickler emits (torch/csrc/jit/serialization/pickler.cpp):
// the module itself (pushObject: GLOBAL __torch__ Net, EMPTY_TUPLE, NEWOBJ,
// attribute dict, BUILD), specialized lists (pushSpecializedList: GLOBAL
// build_<kind>list, MARK, EMPTY_LIST, MARK, items, APPENDS, TUPLE, REDUCE),
// a type-tagged dict (startTypeTag/endTypeTag: GLOBAL restore_type_tag, the
// dict, its annotation string, TUPLE2, REDUCE) and a tensor-table
// reference (pushTensorReference: GLOBAL build_tensor_from_id, MARK, id,
// TUPLE, REDUCE), at protocol 2 as torch writes.
func ScriptedModulePickle() []byte {
	p := NewPickler(2).Global("__torch__", "Net").Tuple(0).Op(0x81).Op('}', '(')
	p.Str("training").Op(0x88)
	p.Str("sizes").Global("torch.jit._pickle", "build_intlist").Op('(', ']', '(').Int(1).Int(2).Op('e', 't', 'R')
	p.Str("flags").Global("torch.jit._pickle", "build_boollist").Op('(', ']', '(', 0x88, 0x89, 'e', 't', 'R')
	p.Str("scales").Global("torch.jit._pickle", "build_doublelist").Op('(', ']', '(', 'G', 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 'e', 't', 'R')
	p.Str("tensors").Global("torch.jit._pickle", "build_tensorlist").Op('(', ']', 't', 'R')
	p.Str("t").Global("torch.jit._pickle", "build_tensor_from_id").Op('(').Int(0).Op('t', 'R')
	p.Str("names").Global("torch.jit._pickle", "restore_type_tag").Op('}', '(').Str("k").Int(1).Op('u').Str("Dict[str, int]").Op(0x86, 'R')
	return p.Op('u', 'b').Stop()
}
