package content_test

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// ---- a joblib.dump emulator -------------------------------------------------
//
// jlDump writes the bytes joblib.dump writes, following joblib at 53cea7b
// (2026-07-23):
//
//   - joblib/numpy_pickle_utils.py: Pickler = pickle._Pickler (the pure-Python
//     pickler), so pyPickler below emulates CPython's Lib/pickle.py _Pickler:
//     PROTO outside frames, _Framer (frames committed at 64 KiB or when
//     forced; a FRAME header only for frames of >= 4 bytes), memoize/put
//     (MEMOIZE for protocol >= 4, BINPUT/LONG_BINPUT below), save_str,
//     save_long, save_tuple (TUPLE1-3 for protocol >= 2), save_dict and
//     _batch_setitems, save_global (STACK_GLOBAL with memoized strings for
//     protocol >= 4, GLOBAL below) and save_reduce (NEWOBJ for
//     copyreg.__newobj__, REDUCE otherwise, then memoize, state, BUILD).
//   - joblib/numpy_pickle.py NumpyPickler.save (lines 366-403): a
//     NumpyArrayWrapper replaces the array (object.__reduce_ex__ gives
//     __newobj__ with state = its __dict__: subclass, shape, order, dtype,
//     allow_mmap, numpy_array_alignment_bytes), then for protocol >= 4
//     framer.commit_frame(force=True), then wrapper.write_array.
//   - NumpyArrayWrapper.write_array (lines 118-161): object dtypes as a
//     nested pickle.dump(array, protocol=5) (protocol 2 before joblib #1682);
//     otherwise, with numpy_array_alignment_bytes (16, joblib >= 1.2 on a
//     seekable file), a padding-length byte 16 - ((tell()+1) % 16) and that
//     many 0xff, then the raw bytes.
//   - numpy's dtype.__reduce__ (numpy/_core/src/multiarray/descriptor.c
//     arraydescr_reduce): (numpy.dtype, (kind+elsize, False, True), (3,
//     endian, None, None, None, elsize or -1, alignment or -1, flags)), and
//     ndarray.__reduce__ for object arrays: (numpy._core.multiarray._reconstruct,
//     (numpy.ndarray, (0,), b'b'), (1, shape, dtype, False, [items])).
//
// The output was checked byte for byte against CPython 3.11's pickle._Pickler
// driving joblib's NumpyPickler.save/write_array code over stand-in numpy
// classes with numpy's __reduce__ results (TestJoblibDumpMatchesCPython holds
// those bytes).

type pyGlobal struct{ mod, name string }

type pyTuple []any

type pyList []any

// pyDict keeps insertion order, as Python dicts do.
type pyDict struct{ keys, vals []any }

func (d *pyDict) set(k string, v any) { d.keys = append(d.keys, k); d.vals = append(d.vals, v) }

// pyReduce is an object pickled through __reduce__: fn(*args), then BUILD
// with state when state != nil. id names the object for the memo ("" = a
// fresh object every time).
type pyReduce struct {
	id    string
	fn    pyGlobal
	args  pyTuple
	state any
}

// pyNewobj is an instance of a plain class (copyreg.__newobj__ + BUILD).
type pyNewobj struct {
	cls   pyGlobal
	state *pyDict
}

// pyDtype is a numpy dtype as numpy pickles it.
type pyDtype struct {
	spec   string // "f8", "i8", "O8", "U5", ...
	endian string // "<", ">", "|"
	elsize int64  // state elsize (-1 except for S, U, V)
	align  int64
	flags  int64
}

func dtypeOf(spec string) pyDtype {
	d := pyDtype{spec: spec, endian: "<", elsize: -1, align: -1}
	switch spec[0] {
	case 'O':
		d.endian, d.flags = "|", 63
	case 'b', 'S', 'V':
		d.endian = "|"
	}
	if spec == "i1" || spec == "u1" {
		d.endian = "|"
	}
	switch spec[0] {
	case 'S', 'V':
		fmt.Sscan(spec[1:], &d.elsize)
		d.align = 1
	case 'U':
		fmt.Sscan(spec[1:], &d.elsize)
		d.elsize *= 4
		d.align = 4
	}
	return d
}

func (d pyDtype) reduce() pyReduce {
	return pyReduce{id: "dtype:" + d.spec + d.endian, fn: pyGlobal{"numpy", "dtype"},
		args:  pyTuple{d.spec, false, true},
		state: pyTuple{int64(3), d.endian, nil, nil, nil, d.elsize, d.align, d.flags}}
}

type pyPickler struct {
	proto   int
	out     []byte // the file
	frame   []byte // the current frame
	framing bool
	memo    map[string]int
	nmemo   int
}

func newPyPickler(proto int) *pyPickler { return &pyPickler{proto: proto, memo: map[string]int{}} }

func (p *pyPickler) write(b ...byte) {
	if p.framing {
		p.frame = append(p.frame, b...)
	} else {
		p.out = append(p.out, b...)
	}
}

// commitFrame is _Framer.commit_frame.
func (p *pyPickler) commitFrame(force bool) {
	if !p.framing || !(len(p.frame) >= 64<<10 || force) {
		return
	}
	if len(p.frame) >= 4 {
		p.out = append(p.out, 0x95)
		p.out = binary.LittleEndian.AppendUint64(p.out, uint64(len(p.frame)))
	}
	p.out = append(p.out, p.frame...)
	p.frame = p.frame[:0]
}

// tell is the file position (what joblib's write_array reads).
func (p *pyPickler) tell() int { return len(p.out) }

// dump is _Pickler.dump.
func (p *pyPickler) dump(obj any, save func(any)) []byte {
	if p.proto >= 2 {
		p.write(0x80, byte(p.proto))
	}
	p.framing = p.proto >= 4
	save(obj)
	p.write('.')
	p.commitFrame(true)
	p.framing = false
	return p.out
}

func (p *pyPickler) memoize(id string) {
	idx := p.nmemo
	p.nmemo++
	if id != "" {
		p.memo[id] = idx
	}
	switch {
	case p.proto >= 4:
		p.write(0x94)
	case idx < 256:
		p.write('q', byte(idx))
	default:
		p.write('r')
		p.write(binary.LittleEndian.AppendUint32(nil, uint32(idx))...)
	}
}

func (p *pyPickler) get(idx int) {
	if idx < 256 {
		p.write('h', byte(idx))
		return
	}
	p.write('j')
	p.write(binary.LittleEndian.AppendUint32(nil, uint32(idx))...)
}

func identity(o any) string {
	switch v := o.(type) {
	case string:
		return "s:" + v // interned identifiers and short strings are shared objects
	case pyGlobal:
		return "g:" + v.mod + "." + v.name
	case pyReduce:
		return v.id
	}
	return ""
}

// save is _Pickler.save for the types a joblib dump of arrays holds.
func (p *pyPickler) save(o any) {
	p.commitFrame(false)
	if id := identity(o); id != "" {
		if idx, ok := p.memo[id]; ok {
			p.get(idx)
			return
		}
	}
	switch v := o.(type) {
	case nil:
		p.write('N')
	case bool:
		if v {
			p.write(0x88)
		} else {
			p.write(0x89)
		}
	case int64:
		p.saveLong(v)
	case int:
		p.saveLong(int64(v))
	case string:
		n := len(v)
		if n <= 0xff && p.proto >= 4 {
			p.write(0x8c, byte(n))
		} else {
			p.write('X')
			p.write(binary.LittleEndian.AppendUint32(nil, uint32(n))...)
		}
		p.write([]byte(v)...)
		p.memoize(identity(o))
	case []byte:
		if p.proto < 3 {
			// save_bytes for protocol < 3: codecs.encode(str(obj, 'latin1'), 'latin1')
			p.saveReduce(pyReduce{fn: pyGlobal{"_codecs", "encode"}, args: pyTuple{string(v), "latin1"}}, "")
			return
		}
		if len(v) < 256 {
			p.write('C', byte(len(v)))
		} else {
			p.write('B')
			p.write(binary.LittleEndian.AppendUint32(nil, uint32(len(v)))...)
		}
		p.write(v...)
		p.memoize("")
	case pyTuple:
		if len(v) == 0 {
			p.write(')')
			return
		}
		if len(v) <= 3 && p.proto >= 2 {
			for _, e := range v {
				p.save(e)
			}
			p.write(0x84 + byte(len(v)))
			p.memoize("")
			return
		}
		p.write('(')
		for _, e := range v {
			p.save(e)
		}
		p.write('t')
		p.memoize("")
	case pyList:
		p.write(']')
		p.memoize("")
		for i := 0; i < len(v); i += 1000 {
			batch := v[i:min(i+1000, len(v))]
			if len(batch) > 1 {
				p.write('(')
			}
			for _, e := range batch {
				p.save(e)
			}
			if len(batch) > 1 {
				p.write('e')
			} else {
				p.write('a')
			}
		}
	case *pyDict:
		p.write('}')
		p.memoize("")
		for i := 0; i < len(v.keys); i += 1000 {
			end := min(i+1000, len(v.keys))
			if end-i > 1 {
				p.write('(')
			}
			for j := i; j < end; j++ {
				p.save(v.keys[j])
				p.save(v.vals[j])
			}
			if end-i > 1 {
				p.write('u')
			} else {
				p.write('s')
			}
		}
	case pyGlobal:
		if p.proto >= 4 {
			p.save(v.mod)
			p.save(v.name)
			p.write(0x93)
		} else {
			p.write('c')
			p.write([]byte(v.mod + "\n" + v.name + "\n")...)
		}
		p.memoize(identity(o))
	case pyReduce:
		p.saveReduce(v, v.id)
	case pyDtype:
		p.save(v.reduce())
	case pyNewobj:
		// save_reduce with func copyreg.__newobj__: save(cls), save(()), NEWOBJ
		p.save(v.cls)
		p.save(pyTuple{})
		p.write(0x81)
		p.memoize("")
		p.save(v.state)
		p.write('b')
	default:
		panic(fmt.Sprintf("pyPickler: %T", o))
	}
}

func (p *pyPickler) saveReduce(r pyReduce, id string) {
	p.save(r.fn)
	p.save(r.args)
	p.write('R')
	p.memoize(id)
	if r.state != nil {
		p.save(r.state)
		p.write('b')
	}
}

func (p *pyPickler) saveLong(x int64) {
	if x >= 0 && x <= 0xff {
		p.write('K', byte(x))
		return
	}
	if x >= 0 && x <= 0xffff {
		p.write('M')
		p.write(binary.LittleEndian.AppendUint16(nil, uint16(x))...)
		return
	}
	if x >= -0x80000000 && x <= 0x7fffffff {
		p.write('J')
		p.write(binary.LittleEndian.AppendUint32(nil, uint32(int32(x)))...)
		return
	}
	// encode_long: two's complement little-endian, minimal length
	b := big.NewInt(x)
	n := (b.BitLen() + 8) / 8
	enc := make([]byte, n)
	u := uint64(x)
	for i := range enc {
		enc[i] = byte(u >> (8 * i))
	}
	p.write(0x8a, byte(n))
	p.write(enc...)
}

// jlArray is a numpy array to dump.
type jlArray struct {
	dtype   pyDtype
	shape   []int64
	order   string // "C" or "F"
	data    []byte // raw items, in order
	objects []any  // items of an object array
	numpy1  bool   // nested pickle from numpy 1.x (numpy.core.multiarray)
	// hooks for hostile variants
	editState func(*pyDict) // change the wrapper's state dict
	pad       int           // padding length to write instead of joblib's (0: joblib's)
	nested    []byte        // nested pickle to write instead of the object array's
}

type jlSpec struct {
	proto           int
	align           bool // numpy_array_alignment_bytes = 16 (else None)
	nestedProto     int  // protocol of object-array pickles (5; 2 before joblib #1682)
	opsAfterWrapper bool // hostile: NONE, POP in the wrapper's frame after its BUILD
}

// jlDump writes joblib.dump(value) for a value made of dicts, lists, str,
// int and arrays.
func jlDump(s jlSpec, value any) []byte {
	p := newPyPickler(s.proto)
	var save func(any)
	save = func(o any) {
		a, ok := o.(*jlArray)
		if !ok {
			switch v := o.(type) {
			case *pyDict: // containers recurse through this save (NumpyPickler.save)
				p.commitFrame(false)
				p.write('}')
				p.memoize("")
				if len(v.keys) > 1 {
					p.write('(')
				}
				for j := range v.keys {
					save(v.keys[j])
					save(v.vals[j])
				}
				if len(v.keys) > 1 {
					p.write('u')
				} else if len(v.keys) == 1 {
					p.write('s')
				}
				return
			case pyList:
				p.commitFrame(false)
				p.write(']')
				p.memoize("")
				if len(v) > 1 {
					p.write('(')
				}
				for _, e := range v {
					save(e)
				}
				if len(v) > 1 {
					p.write('e')
				} else if len(v) == 1 {
					p.write('a')
				}
				return
			}
			p.save(o)
			return
		}
		shape := make(pyTuple, len(a.shape))
		for i, d := range a.shape {
			shape[i] = d
		}
		st := &pyDict{}
		st.set("subclass", pyGlobal{"numpy", "ndarray"})
		st.set("shape", shape)
		st.set("order", a.order)
		st.set("dtype", a.dtype)
		st.set("allow_mmap", a.dtype.spec[0] != 'O')
		if s.align {
			st.set("numpy_array_alignment_bytes", int64(16))
		} else {
			st.set("numpy_array_alignment_bytes", nil)
		}
		if a.editState != nil {
			a.editState(st)
		}
		p.save(pyNewobj{cls: pyGlobal{"joblib.numpy_pickle", "NumpyArrayWrapper"}, state: st})
		if s.opsAfterWrapper {
			p.write('N', '0') // hostile: the frame goes on after the wrapper
		}
		if p.proto >= 4 {
			p.commitFrame(true)
		}
		if a.nested != nil {
			p.out = append(p.out, a.nested...)
			return
		}
		if a.dtype.spec[0] == 'O' {
			np := newPyPickler(s.nestedProto)
			mod := "numpy._core.multiarray"
			if a.numpy1 {
				mod = "numpy.core.multiarray"
			}
			arr := pyReduce{fn: pyGlobal{mod, "_reconstruct"},
				args:  pyTuple{pyGlobal{"numpy", "ndarray"}, pyTuple{int64(0)}, []byte("b")},
				state: pyTuple{int64(1), shape, a.dtype, false, pyList(a.objects)}}
			p.out = append(p.out, np.dump(arr, np.save)...)
			return
		}
		if s.align {
			pad := 16 - (p.tell()+1)%16
			if a.pad != 0 {
				pad = a.pad
			}
			p.out = append(p.out, byte(pad))
			p.out = append(p.out, bytes.Repeat([]byte{0xff}, pad)...)
		}
		p.out = append(p.out, a.data...)
	}
	return p.dump(value, save)
}

func f64Array(vals ...float64) *jlArray {
	a := &jlArray{dtype: dtypeOf("f8"), shape: []int64{int64(len(vals))}, order: "C"}
	for _, v := range vals {
		a.data = binary.LittleEndian.AppendUint64(a.data, math.Float64bits(v))
	}
	return a
}

func i32Array(shape []int64, order string) *jlArray {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	a := &jlArray{dtype: dtypeOf("i4"), shape: shape, order: order}
	for i := int64(0); i < n; i++ {
		a.data = binary.LittleEndian.AppendUint32(a.data, uint32(i))
	}
	return a
}

func strArray(width int, vals ...string) *jlArray {
	a := &jlArray{dtype: dtypeOf(fmt.Sprintf("U%d", width)), shape: []int64{int64(len(vals))}, order: "C"}
	for _, v := range vals {
		for i := 0; i < width; i++ {
			var r uint32
			if i < len(v) {
				r = uint32(v[i])
			}
			a.data = binary.LittleEndian.AppendUint32(a.data, r)
		}
	}
	return a
}

func objArray(vals ...any) *jlArray {
	return &jlArray{dtype: dtypeOf("O8"), shape: []int64{int64(len(vals))}, order: "C", objects: vals}
}

// sklearnLike is the shape of a small fitted estimator's payload: named
// arrays of several dtypes in a dict, plus plain attributes.
func sklearnLike() *pyDict {
	d := &pyDict{}
	d.set("coef_", f64Array(0.5, -1.25, 3))
	d.set("intercept_", f64Array(0.1))
	d.set("classes_", objArray("cat", "dog", "emu"))
	d.set("feature_names_in_", strArray(6, "height", "weight", "age"))
	d.set("n_iter_", i32Array([]int64{2, 3}, "F"))
	d.set("n_features_in_", int64(3))
	d.set("solver", "lbfgs")
	return d
}

func jlZlib(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, 3) // BinaryZlibFile: zlib, level 3, wbits 15
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func jlGzip(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, 3) // BinaryGzipFile: zlib with wbits 31
	w.Header.OS = 3                      // zlib's gzip header says Unix
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// jlXz and jlLzma compress as joblib's compress='xz' and 'lzma' do
// (Python's LZMAFile with FORMAT_XZ and FORMAT_ALONE), with
// github.com/ulikunitz/xz's writers.
func jlXz(b []byte) []byte {
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func jlLzma(b []byte) []byte {
	var buf bytes.Buffer
	w, err := lzma.NewWriter(&buf)
	if err != nil {
		panic(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

var joblibScan = content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}

func joblibVerdict(t *testing.T, opts content.Options, data []byte) string {
	t.Helper()
	return verdict(t, func(size int64) content.Inspector { return content.NewJoblibInspector(opts, size) }, data, len(data))
}

func TestJoblibDumpsServed(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec jlSpec
	}{
		{"protocol 4, aligned (joblib >= 1.2, default)", jlSpec{proto: 4, align: true, nestedProto: 5}},
		{"protocol 5, aligned", jlSpec{proto: 5, align: true, nestedProto: 5}},
		{"protocol 3, unaligned (joblib < 1.2)", jlSpec{proto: 3, nestedProto: 2}},
		{"protocol 2, aligned, old nested protocol", jlSpec{proto: 2, align: true, nestedProto: 2}},
	} {
		raw := jlDump(tc.spec, sklearnLike())
		for _, form := range []struct {
			name string
			data []byte
		}{{"raw", raw}, {"zlib", jlZlib(raw)}, {"gzip", jlGzip(raw)}, {"xz", jlXz(raw)}, {"lzma", jlLzma(raw)}} {
			t.Run(tc.name+"/"+form.name, func(t *testing.T) {
				for _, chunk := range []int{len(form.data), 1, 7, 4096} {
					got := verdict(t, func(size int64) content.Inspector { return content.NewJoblibInspector(joblibScan, size) }, form.data, chunk)
					if got != "" {
						t.Fatalf("chunk %d: %s", chunk, got)
					}
				}
			})
		}
	}
}

func TestJoblibGlobals(t *testing.T) {
	raw := jlDump(jlSpec{proto: 4, align: true, nestedProto: 5}, sklearnLike())
	in := content.NewJoblibInspector(joblibScan, int64(len(raw)))
	if _, err := in.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	g := strings.Join(in.(interface{ Globals() []string }).Globals(), ",")
	want := "joblib.numpy_pickle.NumpyArrayWrapper,numpy._core.multiarray._reconstruct,numpy.dtype,numpy.ndarray"
	if g != want {
		t.Fatalf("globals %s, want %s", g, want)
	}
}

// cpythonJoblibProto4 is CPython 3.11 pickle._Pickler driven by joblib's NumpyPickler.save /
// write_array over stand-ins returning numpy's __reduce__ results: joblib.dump(sklearnLike())
// with protocol 4, alignment 16, object arrays at protocol 5.
const cpythonJoblibProto4 = "" +
	"800495d6000000000000007d94288c05636f65665f948c136a6f626c69622e6e756d70795f7069636b6c65948c114e75" +
	"6d70794172726179577261707065729493942981947d94288c08737562636c617373948c056e756d7079948c076e6461" +
	"727261799493948c057368617065944b0385948c056f72646572948c0143948c056474797065946808680f93948c0266" +
	"3894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494628c0a616c6c6f775f6d6d617094888c" +
	"1b6e756d70795f61727261795f616c69676e6d656e745f6279746573944b1075620effffffffffffffffffffffffffff" +
	"000000000000e03f000000000000f4bf00000000000008409530000000000000008c0a696e746572636570745f946804" +
	"2981947d94286807680a680b4b018594680d680e680f681368168868174b1075620effffffffffffffffffffffffffff" +
	"9a9999999999b93f9552000000000000008c08636c61737365735f9468042981947d94286807680a680b4b038594680d" +
	"680e680f68108c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f74946268168968174b" +
	"1075628005959c000000000000008c166e756d70792e5f636f72652e6d756c74696172726179948c0c5f7265636f6e73" +
	"74727563749493948c056e756d7079948c076e6461727261799493944b0085944301629487945294284b014b03859468" +
	"038c0564747970659493948c024f3894898887945294284b038c017c944e4e4e4affffffff4affffffff4b3f74946289" +
	"5d94288c03636174948c03646f67948c03656d7594657494622e9553000000000000008c11666561747572655f6e616d" +
	"65735f696e5f9468042981947d94286807680a680b4b038594680d680e680f68108c02553694898887945294284b0368" +
	"144e4e4e4b184b044b0074946268168868174b10756209ffffffffffffffffff68000000650000006900000067000000" +
	"680000007400000077000000650000006900000067000000680000007400000061000000670000006500000000000000" +
	"00000000000000009553000000000000008c076e5f697465725f9468042981947d94286807680a680b4b024b03869468" +
	"0d8c014694680f68108c02693494898887945294284b0368144e4e4e4affffffff4affffffff4b007494626816886817" +
	"4b1075620bffffffffffffffffffffff0000000001000000020000000300000004000000050000009526000000000000" +
	"008c0e6e5f66656174757265735f696e5f944b038c06736f6c766572948c056c6266677394752e"

// cpythonJoblibProto3 is the same with protocol 3, no alignment (joblib < 1.2), object arrays at
// protocol 2 (joblib before #1682).
const cpythonJoblibProto3 = "" +
	"80037d7100285805000000636f65665f7101636a6f626c69622e6e756d70795f7069636b6c650a4e756d707941727261" +
	"79577261707065720a7102298171037d7104285808000000737562636c6173737105636e756d70790a6e646172726179" +
	"0a71065805000000736861706571074b0385710858050000006f726465727109580100000043710a5805000000647479" +
	"7065710b636e756d70790a64747970650a710c58020000006638710d898887710e52710f284b0358010000003c71104e" +
	"4e4e4affffffff4affffffff4b0074711162580a000000616c6c6f775f6d6d6170711288581b0000006e756d70795f61" +
	"727261795f616c69676e6d656e745f627974657371134e7562000000000000e03f000000000000f4bf00000000000008" +
	"40580a000000696e746572636570745f71146802298171157d7116286805680668074b018571176809680a680b680f68" +
	"128868134e75629a9999999999b93f5808000000636c61737365735f71186802298171197d711a286805680668074b03" +
	"85711b6809680a680b680c58020000004f38711c898887711d52711e284b0358010000007c711f4e4e4e4affffffff4a" +
	"ffffffff4b3f7471206268128968134e75628002636e756d70792e5f636f72652e6d756c746961727261790a5f726563" +
	"6f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f6465" +
	"0a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b0385710a636e756d" +
	"70790a64747970650a710b58020000004f38710c898887710d52710e284b0358010000007c710f4e4e4e4affffffff4a" +
	"ffffffff4b3f74711062895d711128580300000063617471125803000000646f6771135803000000656d757114657471" +
	"15622e5811000000666561747572655f6e616d65735f696e5f71216802298171227d7123286805680668074b03857124" +
	"6809680a680b680c5802000000553671258988877126527127284b0368104e4e4e4b184b044b00747128626812886813" +
	"4e7562680000006500000069000000670000006800000074000000770000006500000069000000670000006800000074" +
	"00000061000000670000006500000000000000000000000000000058070000006e5f697465725f712968022981712a7d" +
	"712b286805680668074b024b0386712c6809580100000046712d680b680c58020000006934712e898887712f52713028" +
	"4b0368104e4e4e4affffffff4affffffff4b007471316268128868134e75620000000001000000020000000300000004" +
	"00000005000000580e0000006e5f66656174757265735f696e5f71324b035806000000736f6c76657271335805000000" +
	"6c626667737134752e"

// cpythonJoblibProto4Bz2 is cpythonJoblibProto4 compressed by CPython's bz2 (level 3), as
// joblib.dump(..., compress=('bz2', 3)) writes it through bz2.BZ2File.
const cpythonJoblibProto4Bz2 = "" +
	"QlpoMzFBWSZTWT4CX5EAAVT/6///7cgBYUVE6Rmagr//36Zj5A40ACCBAEAABADAAczrd0u4MoKnshT01PUABkZBkPKAANAB" +
	"6QNNNDepqeoNQpskyRjZAJBhMEaAGIMEMEwTajTIwMJKYoAADQAANANNNAAAAAACUSifqajT2qNPU0z1TJoAHqGEBkxMhkZA" +
	"AGjQxDoa+GWXUqqdyQYqDEgmpGnx55+nlthYhCw9ltJJFIAQQdkpIexeww/qQcEMosNAChMlgPxiRnREJ0gGbhNcEnACbAml" +
	"KCUwyJyEYCSCQBjMWJBIgXzzYPJWxXL900cbjHuQuadQRBMUk198UaxF9IutWDQsKAgRtSKq0C8kCg7T7Qx93v8ws3Emqynv" +
	"MVoyXOBeqy7iV/YXRGPdhGwA9mJeSfl9ahp7zW2LW5FBBIGsICiRg2CyTpadCooo6H0OHDpeRU1txJHlKbWHAQUQC+oKIMC4" +
	"l0YtHpCgOOtfxNp7jQe96ziYsukk33dzkGs+lPPIOCVJsHFyhBh5yEHwYWGh9qpzDLFU+noDRpLgIY0VQgMkOrl+lwONAJKl" +
	"YjiGiiBecDphMptDIdDLAwgqz1P5AjlefDxqE0kOlvziEUaarCQlQcG6um3vQyshGqNjQ10jIiiGRSWkxdwkqjCUIhBBOZwk" +
	"kqGaiHUD+AfaBQ5Fa1Vv4BQDoA7b7AGpNDoKCMmt+4HGzjiOa8tcNRMxxpHlKfTYwzT2eG59H+7J5aU94vgECkAUxeA/xdyR" +
	"ThQkD4CX5EA="

func unhex(t testing.TB, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJoblibDumpMatchesCPython(t *testing.T) {
	for _, tc := range []struct {
		spec   jlSpec
		golden string
	}{
		{jlSpec{proto: 4, align: true, nestedProto: 5}, cpythonJoblibProto4},
		{jlSpec{proto: 3, align: false, nestedProto: 2}, cpythonJoblibProto3},
	} {
		want := unhex(t, tc.golden)
		if got := jlDump(tc.spec, sklearnLike()); !bytes.Equal(got, want) {
			t.Errorf("protocol %d: emulator differs from CPython:\n got %x\nwant %x", tc.spec.proto, got, want)
		}
		if v := joblibVerdict(t, joblibScan, want); v != "" {
			t.Errorf("protocol %d: CPython's bytes refused: %s", tc.spec.proto, v)
		}
	}
	bz, err := base64.StdEncoding.DecodeString(cpythonJoblibProto4Bz2)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{len(bz), 13} {
		if v := verdict(t, func(size int64) content.Inspector { return content.NewJoblibInspector(joblibScan, size) }, bz, chunk); v != "" {
			t.Errorf("bz2 (chunk %d): %s", chunk, v)
		}
	}
}

// set replaces a key of a state dict (or adds it).
func (d *pyDict) replace(k string, v any) {
	for i, x := range d.keys {
		if x == k {
			d.vals[i] = v
			return
		}
	}
	d.set(k, v)
}

func (d *pyDict) remove(k string) {
	for i, x := range d.keys {
		if x == k {
			d.keys = append(d.keys[:i], d.keys[i+1:]...)
			d.vals = append(d.vals[:i], d.vals[i+1:]...)
			return
		}
	}
}

func oneArray(a *jlArray) *pyDict {
	d := &pyDict{}
	d.set("w", a)
	return d
}

var jlDefault = jlSpec{proto: 4, align: true, nestedProto: 5}

func TestJoblibHostile(t *testing.T) {
	// Raw array bytes that spell an os.system call: joblib reads them as
	// data, so the joblib walk serves them; a plain pickle walk of the same
	// file refuses the wrapper (it cannot tell where the arrays are).
	payload := []byte("cposix\nsystem\n(S'id'\ntR.")
	bytesArr := &jlArray{dtype: dtypeOf("u1"), shape: []int64{int64(len(payload))}, order: "C", data: payload}
	dataSpelling := jlDump(jlDefault, oneArray(bytesArr))
	if v := joblibVerdict(t, joblibScan, dataSpelling); v != "" {
		t.Errorf("array data refused: %s", v)
	}
	if v := verdict(t, func(size int64) content.Inspector { return content.NewPickleInspector(joblibScan, size) }, dataSpelling, len(dataSpelling)); !strings.Contains(v, "a joblib array wrapper: raw array bytes follow it") {
		t.Errorf("plain pickle walk of a joblib file: %q", v)
	}

	evilNested := modelcorpusOsSystem()
	withObject := func(edit func(*jlArray)) []byte {
		a := objArray("a", "b")
		edit(a)
		return jlDump(jlDefault, oneArray(a))
	}
	f8 := func(edit func(*jlArray)) []byte {
		a := f64Array(1, 2, 3)
		edit(a)
		return jlDump(jlDefault, oneArray(a))
	}
	raw := jlDump(jlDefault, sklearnLike())
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"object array pickle runs os.system", withObject(func(a *jlArray) { a.nested = evilNested }),
			"joblib: GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)"},
		{"object dtype whose flags say plain data (joblib would read raw bytes, numpy would deref them)",
			withObject(func(a *jlArray) { a.dtype.flags = 0 }), "flags 0 (they decide whether numpy reads items as object pointers)"},
		{"float dtype whose flags claim objects", f8(func(a *jlArray) { a.dtype.flags = 63 }), "flags 63"},
		{"void dtype whose state elsize differs from its spec (item size forged)",
			jlDump(jlDefault, oneArray(&jlArray{dtype: pyDtype{spec: "V8", endian: "|", elsize: 1, align: 1}, shape: []int64{3}, order: "C", data: make([]byte, 24)})),
			"with elsize 1 (want 8)"},
		{"unicode dtype with a wrong elsize", jlDump(jlDefault, oneArray(&jlArray{dtype: pyDtype{spec: "U2", endian: "<", elsize: 2, align: 4}, shape: []int64{1}, order: "C", data: make([]byte, 8)})),
			"with elsize 2 (want 8)"},
		{"dtype given as a str", f8(func(a *jlArray) { a.editState = func(d *pyDict) { d.replace("dtype", "f8") } }),
			"joblib array wrapper whose dtype is a str, not a numpy.dtype"},
		{"negative dimension", f8(func(a *jlArray) { a.editState = func(d *pyDict) { d.replace("shape", pyTuple{int64(-1), int64(-3)}) } }),
			"whose shape is a tuple, not a tuple of non-negative ints"},
		{"shape product overflows", f8(func(a *jlArray) {
			a.editState = func(d *pyDict) { d.replace("shape", pyTuple{int64(1) << 40, int64(1) << 40}) }
		}), "not a tuple of non-negative ints (with a product that fits 64 bits)"},
		{"item count times itemsize overflows", f8(func(a *jlArray) {
			a.editState = func(d *pyDict) { d.replace("shape", pyTuple{int64(1) << 61}) }
		}), "of 2305843009213693952 items of 8 bytes overflows"},
		{"subclass is an allowlisted non-array class", f8(func(a *jlArray) {
			a.editState = func(d *pyDict) { d.replace("subclass", pyGlobal{"collections", "OrderedDict"}) }
		}), "whose subclass is the global collections.OrderedDict"},
		{"subclass is a str", f8(func(a *jlArray) { a.editState = func(d *pyDict) { d.replace("subclass", "numpy.ndarray") } }),
			"whose subclass is a str, not numpy.ndarray"},
		{"order other than C/F", f8(func(a *jlArray) { a.order = "K" }), `whose order is a str, not "C" or "F"`},
		{"no allow_mmap", f8(func(a *jlArray) { a.editState = func(d *pyDict) { d.remove("allow_mmap") } }), "whose allow_mmap is missing"},
		{"no dtype", f8(func(a *jlArray) { a.editState = func(d *pyDict) { d.remove("dtype") } }), "whose dtype is missing"},
		{"padding length that is a pickle opcode", f8(func(a *jlArray) { a.pad = '(' }),
			"joblib padding length 40 is a pickle opcode (joblib writes 1 to 16)"},
		{"wrapper built inside a frame that goes on", jlDump(jlSpec{proto: 4, align: true, nestedProto: 5, opsAfterWrapper: true}, oneArray(f64Array(1))),
			"joblib array wrapper built"},
		{"truncated array", raw[:len(raw)-60], "truncated"},
		{"trailing data", append(append([]byte(nil), raw...), "cposix\nsystem\n"...), "14 bytes of trailing data after the pickle STOP opcode"},
		{"zlib stream with data after it", append(jlZlib(raw), 'x'), "joblib: data after the end of the zlib stream"},
		{"two gzip members", append(jlGzip(raw), jlGzip(raw)...), "joblib: data after the end of the gzip stream"},
		{"xz header only", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4}, "xz stream"},
		{"lzma header only", []byte{0x5d, 0, 0, 0x80, 0}, "lzma stream"},
		{"xz stream carrying posix.system", jlXz(modelcorpus.OsSystemPickle()), "posix.system"},
		{"lzma stream carrying posix.system", jlLzma(modelcorpus.OsSystemPickle()), "posix.system"},
		{"lz4", []byte{0x04, 0x22, 0x4d, 0x18, 0x64}, "compressed with lz4"},
		{"joblib < 0.9.3", []byte("ZF0x00000000000003e8"), "keeps its arrays in companion files"},
		{"old NDArrayWrapper (arrays in companion files)", []byte("\x80\x02cjoblib.numpy_pickle\nNDArrayWrapper\n)\x81}b."),
			"GLOBAL imports joblib.numpy_pickle.NDArrayWrapper, which is not in the allowlist (content.formats.pickle.allow)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := joblibVerdict(t, joblibScan, tc.data)
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if c := verdict(t, func(size int64) content.Inspector { return content.NewJoblibInspector(joblibScan, size) }, tc.data, 3); c != got {
				t.Fatalf("chunked verdict %q differs from %q", c, got)
			}
		})
	}
}

// modelcorpusOsSystem is a protocol-2 pickle of posix.system('id').
func modelcorpusOsSystem() []byte {
	return []byte("\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")
}

// A second BUILD on the same wrapper (fetched from the memo) makes joblib
// read a second array with the wrapper's attributes: the walker expects it.
func TestJoblibRebuiltWrapper(t *testing.T) {
	base := jlDump(jlSpec{proto: 2, align: false, nestedProto: 2}, oneArray(f64Array(1, 2)))
	// base: ... BUILD <16 raw bytes> SETITEM? no: {'w': arr} is one SETITEM; STOP
	if !bytes.HasSuffix(base, []byte("s.")) {
		t.Fatalf("unexpected layout %x", base)
	}
	body := base[:len(base)-2]
	// the wrapper was memoized right after NEWOBJ: find its BINPUT index
	i := bytes.Index(body, []byte{0x81, 'q'})
	if i < 0 {
		t.Fatal("no NEWOBJ")
	}
	idx := body[i+2]
	again := append(append([]byte(nil), body...), 's', 'h', idx, '}', 'b') // SETITEM, then BINGET wrapper, {}, BUILD
	second := make([]byte, 16)
	withData := append(append(append([]byte(nil), again...), second...), '0', '.')
	if v := joblibVerdict(t, joblibScan, withData); v != "" {
		t.Fatalf("second array refused: %s", v)
	}
	if v := joblibVerdict(t, joblibScan, append(append([]byte(nil), again...), '0', '.')); !strings.Contains(v, "truncated joblib file") {
		t.Fatalf("missing second array: %q", v)
	}
}

func FuzzJoblib(f *testing.F) {
	raw := jlDump(jlDefault, sklearnLike())
	f.Add(raw, uint8(7))
	f.Add(jlDump(jlSpec{proto: 3, nestedProto: 2}, sklearnLike()), uint8(3))
	f.Add(jlDump(jlSpec{proto: 2, align: true, nestedProto: 2}, oneArray(objArray("x", int64(1)))), uint8(1))
	f.Add(jlZlib(raw), uint8(11))
	f.Add(jlGzip(raw), uint8(5))
	f.Add(jlXz(raw), uint8(9))
	f.Add(jlLzma(raw), uint8(4))
	if bz, err := base64.StdEncoding.DecodeString(cpythonJoblibProto4Bz2); err == nil {
		f.Add(bz, uint8(2))
	}
	f.Add(jlDump(jlDefault, oneArray(&jlArray{dtype: pyDtype{spec: "V8", endian: "|", elsize: 1, align: 1}, shape: []int64{3}, order: "C", data: make([]byte, 24)})), uint8(9))
	f.Add(jlDump(jlSpec{proto: 4, align: true, nestedProto: 5, opsAfterWrapper: true}, oneArray(f64Array(1))), uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewJoblibInspector(scanOpts, size) }, data, chunk)
	})
}

// cpythonJoblibBz2Bomb is joblib.dump({"w": numpy.zeros(100 << 20, "u1")},
// compress=("bz2", 9)) made as cpythonJoblibProto4: 350 bytes that expand to
// 100 MiB.
const cpythonJoblibBz2Bomb = "QlpoOTFBWSZTWah/IHQFfjH/4v/U6AgAYSAAaBkQgL7/3qZi5A4ABAAACLAA2YjmATACYAATAAEwABqaTTUaep6mJoNDQaaAAHqbKAARVCQzIjTTExqA0xGTIYmIZmlKZoCoqKqJIgKoqomGJAVRVRKieNVFRVRKAij/JAni9ojnj5slZgnpgdC/QgYnngUxJM1x9WGFrEb2INFzKlK0SU1J1KbGQXBWzuQ+WtgdD1D64o5ANjW8edxxKjXNXPYAJ182ClAsBR5XpbVeajgxOaoZeiRYITzHeRk5cOrPfxICSBtyjh8ml38/b97lC7WpvUY5ZaZoSecu6vJCr0VRUVUTihSZP8xQVkmU1kOCeLfAV+OQADAAAAIIAAwgE1GQqAlqQqAlzFBWSZTWQbHIRIAZB1UgMAAAAEQAAgAAAggAFBmgClE05KgRbsKQpHZ2JUCL4u5IpwoSF2UMr8A="

func TestJoblibDecompressionBomb(t *testing.T) {
	bz, err := base64.StdEncoding.DecodeString(cpythonJoblibBz2Bomb)
	if err != nil {
		t.Fatal(err)
	}
	if got := joblibVerdict(t, joblibScan, bz); got != "joblib: bz2 stream expands more than 1024x beyond 64 MiB (decompression bomb)" {
		t.Fatalf("got %q", got)
	}
}
