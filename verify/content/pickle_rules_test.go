package content_test

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

const corpusDir = "../../../shared/model-corpus"

func pickleVerdict(t *testing.T, opts content.Options, data []byte) string {
	t.Helper()
	whole := verdict(t, func(size int64) content.Inspector { return content.NewPickleInspector(opts, size) }, data, len(data)+1)
	for _, c := range []int{1, 5} {
		if got := verdict(t, func(size int64) content.Inspector { return content.NewPickleInspector(opts, size) }, data, c); got != whole {
			t.Fatalf("chunk %d: %q, whole: %q", c, got, whole)
		}
	}
	return whole
}

func allowing(names ...string) content.Options {
	return content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan, Allow: names}}
}

// p2 starts a protocol-2 pickle.
func p2() *modelcorpus.Pickler { return modelcorpus.NewPickler(2) }

func glob(m, n string) []byte { return []byte("c" + m + "\n" + n + "\n") }

func cat(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			b = append(b, v...)
		case []byte:
			b = append(b, v...)
		case byte:
			b = append(b, v)
		case int:
			b = append(b, byte(v))
		}
	}
	return b
}

func binunicode(s string) []byte {
	return append(binary.LittleEndian.AppendUint32([]byte{'X'}, uint32(len(s))), s...)
}

func frame(n int) []byte { return binary.LittleEndian.AppendUint64([]byte{0x95}, uint64(n)) }

// dtypeState is numpy's dtype state tuple (MARK ... TUPLE), protocol 2.
func dtypeState(endian string, subarray, names, fields []byte, elsize, align, flags int32) []byte {
	i := func(v int32) []byte { return binary.LittleEndian.AppendUint32([]byte{'J'}, uint32(v)) }
	none := func(b []byte) []byte {
		if b == nil {
			return []byte("N")
		}
		return b
	}
	return cat("(", "K\x03", binunicode(endian), none(subarray), none(names), none(fields), i(elsize), i(align), i(flags), "t")
}

// dtypeObj is numpy.dtype(spec, False, True) with a BUILD of state.
func dtypeObj(spec string, state []byte) []byte {
	return cat(glob("numpy", "dtype"), binunicode(spec), "\x89\x88\x87R", state, "b")
}

func realTorch2DataPkl(t *testing.T) []byte {
	zr, err := zip.OpenReader(corpusDir + "/modelscan/tests/data/unsafe_zip_pytorch.pt")
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/data.pkl") {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatal("no data.pkl")
	return nil
}

func TestPickleRealShapes(t *testing.T) {
	// torch 2.x data.pkl (modelscan's torch.save output): posix.system is
	// REDUCEd first (bytes 2..61), then the state dict with its _metadata
	// BUILD. Without the payload it is the shape every torch 2.x state dict
	// has, and must pass.
	evil := realTorch2DataPkl(t)
	if v := pickleVerdict(t, scanOpts, evil); v != "pickle: GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)" {
		t.Fatalf("real payload: %q", v)
	}
	if string(evil[2:16]) != "cposix\nsystem\n" || evil[61] != 3 {
		t.Fatalf("unexpected layout of the corpus file: %q", evil[:64])
	}
	benign := append(append([]byte(nil), evil[:2]...), evil[62:]...)
	if v := pickleVerdict(t, scanOpts, benign); v != "" {
		t.Fatalf("torch 2.x state dict shape refused: %s", v)
	}

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"bytes at protocol 2 (_codecs.encode, latin1)", cat("\x80\x02", glob("_codecs", "encode"), binunicode("\xc3\xbf"), binunicode("latin1"), "\x86R.")},
		{"empty bytes at protocol 2 (__builtin__.bytes mapped to builtins)", cat("\x80\x02", glob("__builtin__", "bytes"), ")R.")},
		{"bytearray at protocol 2", cat("\x80\x02", glob("__builtin__", "bytearray"), glob("_codecs", "encode"), binunicode("ab"), binunicode("latin1"), "\x86R\x85R.")},
		{"set at protocol 2", cat("\x80\x02", glob("__builtin__", "set"), "](K\x01K\x02e\x85R.")},
		{"set at protocol 4", cat("\x80\x04\x8f(K\x01K\x02\x90.")},
		{"POP on an empty frame pops the mark (CPython)", cat("\x80\x02", glob("collections", "OrderedDict"), "(0)R.")},
		{"numpy float64 scalar", cat("\x80\x02", glob("numpy.core.multiarray", "scalar"), dtypeObj("f8", dtypeState("<", nil, nil, nil, -1, -1, 0)),
			glob("_codecs", "encode"), binunicode("\x00\x00\x00\x00\x00\x00\xf0?"), binunicode("latin1"), "\x86R\x86R.")},
		{"numpy numeric array (numpy 2)", cat("\x80\x02", glob("numpy._core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), "K\x00\x85C\x01b\x87R",
			"(K\x01K\x02\x85", dtypeObj("i2", dtypeState("<", nil, nil, nil, -1, -1, 0)), "\x89C\x04\x01\x00\x02\x00tb.")},
		{"numpy structured dtype", cat("\x80\x02", dtypeObj("V12", dtypeState("|", nil,
			cat(binunicode("a"), binunicode("b"), "\x86"),
			cat("}(", binunicode("a"), dtypeObj("f4", dtypeState("<", nil, nil, nil, -1, -1, 0)), "K\x00\x86",
				binunicode("b"), dtypeObj("i8", dtypeState("<", nil, nil, nil, -1, -1, 0)), "K\x04\x86u"),
			12, 1, 0)), ".")},
		{"numpy subarray dtype", cat("\x80\x02", dtypeObj("V24", dtypeState("|",
			cat(dtypeObj("f8", dtypeState("<", nil, nil, nil, -1, -1, 0)), "K\x03\x85\x86"), nil, nil, 24, 8, 0)), ".")},
		{"numpy datetime64 dtype (version 4, metadata)", cat("\x80\x02", glob("numpy", "dtype"), binunicode("M8"), "\x89\x88\x87R",
			"(K\x04", binunicode("<"), "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00", "}", "(", binunicode("ns"), "K\x01K\x01K\x01t\x86", "tb.")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := pickleVerdict(t, scanOpts, tc.data); v != "" {
				t.Fatal(v)
			}
		})
	}
}

func TestPickleAllowlistExact(t *testing.T) {
	tensorV2Dotted := modelcorpus.NewPickler(4)
	tensorV2Dotted.Str("torch").Str("_utils._rebuild_tensor_v2").Op(0x93)
	dotted := tensorV2Dotted.Op('0', 'N').Stop()
	plain := modelcorpus.NewPickler(4)
	plain.Str("torch._utils").Str("_rebuild_tensor_v2").Op(0x93)
	undotted := plain.Op('0', 'N').Stop()
	for _, tc := range []struct {
		name string
		opts content.Options
		data []byte
		want string
	}{
		// "module.name" strings conflated these two; the pair does not.
		{"torch + _utils._rebuild_tensor_v2 (attribute walk)", scanOpts, dotted,
			"STACK_GLOBAL imports torch:_utils._rebuild_tensor_v2, which is not in the allowlist (content.formats.pickle.allow)"},
		{"GLOBAL with a dotted name at protocol 4", scanOpts, cat("\x80\x04", glob("torch", "_utils._rebuild_tensor_v2"), "0N."),
			"GLOBAL imports torch:_utils._rebuild_tensor_v2, which is not in the allowlist (content.formats.pickle.allow)"},
		{"torch._utils + _rebuild_tensor_v2", scanOpts, undotted, ""},
		{"module:qualname admits the dotted pair", allowing("torch:_utils._rebuild_tensor_v2"), dotted, ""},
		{"module:qualname admits only that pair", allowing("torch:_utils._rebuild_tensor_v2"), undotted,
			"STACK_GLOBAL imports torch._utils._rebuild_tensor_v2, which is not in the allowlist (content.formats.pickle.allow)"},
		{"module.name splits at the last dot", allowing("torch._utils._rebuild_tensor_v2"), dotted,
			"STACK_GLOBAL imports torch:_utils._rebuild_tensor_v2, which is not in the allowlist (content.formats.pickle.allow)"},
		// protocol < 3: find_class maps Python 2 names first
		{"listed Python 2 name maps to subprocess", allowing("commands.getoutput"), cat("\x80\x02", glob("commands", "getoutput"), "0N."),
			"GLOBAL imports commands.getoutput, which is not in the allowlist (content.formats.pickle.allow)"},
		{"no mapping at protocol 3", allowing("commands.getoutput"), cat("\x80\x03", glob("commands", "getoutput"), "0N."), ""},
		{"__builtin__ is builtins below protocol 3 only", scanOpts, cat("\x80\x03", glob("__builtin__", "set"), "0N."),
			"GLOBAL imports __builtin__.set, which is not in the allowlist (content.formats.pickle.allow)"},
		// listed, but never admitted
		{"getattr listed", allowing("builtins.getattr"), cat("\x80\x02", glob("__builtin__", "getattr"), "0N."),
			"GLOBAL imports __builtin__.getattr, which is not in the allowlist: it is listed, but can never be allowed (it resolves names, reaches attributes or evaluates code)"},
		{"attrgetter listed", allowing("_operator.attrgetter"), cat("\x80\x03", glob("_operator", "attrgetter"), "0N."), "can never be allowed"},
		{"importlib listed", allowing("importlib.import_module"), cat("\x80\x03", glob("importlib", "import_module"), "0N."), "can never be allowed"},
		{"dunder listed", allowing("collections:OrderedDict.__reduce__"), cat("\x80\x04", glob("collections", "OrderedDict.__reduce__"), "0N."),
			"can never be allowed (a dunder name reaches interpreter internals)"},
		{"pkgutil.resolve_name listed", allowing("pkgutil.resolve_name"), modelcorpus.PkgutilResolveNamePickle(), "can never be allowed"},
		{"__main__ class listed", allowing("__main__.Net"), cat("\x80\x02", glob("__main__", "Net"), ")\x81}b."), ""},
		{"__main__ class not listed", scanOpts, cat("\x80\x02", glob("__main__", "Net"), ")\x81}b."),
			"GLOBAL imports __main__.Net, which is not in the allowlist (content.formats.pickle.allow)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickleVerdict(t, tc.opts, tc.data)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"builtins.getattr", "operator:attrgetter", "importlib.import_module", "torch:Tensor.__reduce_ex__",
		"os.path.join", "sys.modules", "nodot", "a..b", "mod:"} {
		if content.CheckPickleAllow([]string{bad}) == nil {
			t.Errorf("CheckPickleAllow accepted %q", bad)
		}
	}
	if err := content.CheckPickleAllow(append([]string{"__main__.Net", "torch:_utils._rebuild_tensor_v2"}, content.DefaultPickleAllow...)); err != nil {
		t.Errorf("CheckPickleAllow: %v", err)
	}
}

func TestPickleWhatOpcodesApplyTo(t *testing.T) {
	od := glob("collections", "OrderedDict")
	tensor := cat(glob("torch._utils", "_rebuild_tensor_v2"), "(", "(", binunicode("storage"), glob("torch", "FloatStorage"), binunicode("0"),
		binunicode("cpu"), "K\x01tQK\x00K\x01\x85K\x01\x85\x89", od, ")RtR")
	f8 := dtypeObj("f8", dtypeState("<", nil, nil, nil, -1, -1, 0))
	for _, tc := range []struct {
		name string
		opts content.Options
		data []byte
		want string
	}{
		{"a state dict tensor (baseline)", scanOpts, cat("\x80\x02", tensor, "."), ""},
		{"REDUCE of a value-only global", scanOpts, cat("\x80\x02", glob("torch", "FloatStorage"), ")R."),
			"REDUCE calls torch.FloatStorage, which is not in the allowlist as a callable (it is admitted as a value only)"},
		{"REDUCE with a list of arguments", scanOpts, cat("\x80\x02", od, "]R."), "REDUCE calls collections.OrderedDict with a list as its arguments, not a tuple"},
		{"REDUCE of what a call returned", scanOpts, cat("\x80\x02", od, ")R)R."), "REDUCE calls the result of collections.OrderedDict, not an allowlisted global"},
		{"_codecs.encode with another codec", scanOpts, cat("\x80\x02", glob("_codecs", "encode"), binunicode("x"), binunicode("rot13"), "\x86R."),
			`REDUCE calls _codecs.encode with arguments other than (str, "latin1")`},
		{"bytes(n) allocates n bytes", scanOpts, cat("\x80\x02", glob("__builtin__", "bytes"), "J\x00\x00\x00\x40\x85R."), "REDUCE calls builtins.bytes with arguments other than ()"},
		{"NEWOBJ of a default class", scanOpts, cat("\x80\x02", od, ")\x81."), "NEWOBJ instantiates collections.OrderedDict, which is not in the allowlist for NEWOBJ"},
		{"NEWOBJ of a listed class", allowing("mymod.Config"), cat("\x80\x02", glob("mymod", "Config"), ")\x81}b."), ""},
		{"NEWOBJ_EX with kwargs that are not a dict", allowing("mymod.Config"), cat("\x80\x04", glob("mymod", "Config"), "))\x92."), "NEWOBJ_EX keyword arguments are a tuple, not a dict"},
		{"INST of a call with an argument rule", scanOpts, cat("(", binunicode("x"), binunicode("rot13"), "i_codecs\nencode\n."),
			"INST instantiates _codecs.encode, which is not in the allowlist for INST (only REDUCE may call it)"},
		{"OBJ of a value-only global", scanOpts, cat("(", glob("torch", "FloatStorage"), "o."), "OBJ instantiates torch.FloatStorage, which is not in the allowlist for OBJ"},
		{"BUILD on a class (monkeypatching a global)", scanOpts, cat("\x80\x02", glob("torch", "Size"), "}b."),
			"BUILD sets the state of the global torch.Size, which is not in the allowlist for state-setting"},
		{"BUILD on OrderedDict with slot state (setattr)", scanOpts, cat("\x80\x02", od, ")RN}\x86b."),
			"BUILD sets the state of the result of collections.OrderedDict from a tuple; only a dict state (no slot state) is accepted"},
		{"BUILD on a tensor", scanOpts, cat("\x80\x02", tensor, "}b."), "BUILD sets the state of the result of torch._utils._rebuild_tensor_v2, which is not in the allowlist for state-setting"},
		{"BUILD on a str", scanOpts, cat("\x80\x02", binunicode("x"), "}b."), "BUILD sets the state of a str"},
		{"SETITEM on a list", scanOpts, cat("\x80\x02", "]K\x01K\x02s."), "SETITEM on a list, which is not a dict"},
		{"SETITEMS on a tensor", scanOpts, cat("\x80\x02", tensor, "(K\x01K\x02u."), "SETITEMS on the result of torch._utils._rebuild_tensor_v2, which is not a dict"},
		{"APPEND on a dict", scanOpts, cat("\x80\x02", "}K\x01a."), "APPEND on a dict, which is not a list"},
		{"APPENDS on the global OrderedDict", scanOpts, cat("\x80\x02", od, "(K\x01e."), "APPENDS on the global collections.OrderedDict, which is not a list"},
		{"ADDITEMS on a list", scanOpts, cat("\x80\x04", "](K\x01\x90."), "ADDITEMS on a list, which is not a set"},
		{"SETITEMS on an OrderedDict", scanOpts, cat("\x80\x02", od, ")R(K\x01K\x02u."), ""},
		// persistent ids: only torch storage references
		{"BINPERSID of a legacy module reference", scanOpts, cat("\x80\x02", "(", binunicode("module"), od, "NNtQ."),
			"BINPERSID with a tuple, not a torch storage reference"},
		{"BINPERSID of another type with a storage's shape", scanOpts, cat("\x80\x02", "(", binunicode("module"), glob("torch", "FloatStorage"), binunicode("0"), binunicode("cpu"), "K\x01tQ."),
			"BINPERSID with a tuple, not a torch storage reference"},
		{"BINPERSID with a non-storage class", scanOpts, cat("\x80\x02", "(", binunicode("storage"), glob("torch", "Size"), binunicode("0"), binunicode("cpu"), "K\x01tQ."),
			"BINPERSID with a malformed torch storage reference"},
		{"BINPERSID of a str", scanOpts, cat("\x80\x02", binunicode("storage"), "Q."), "BINPERSID with a str"},
		{"PERSID", scanOpts, []byte("P0\n."), "PERSID (text persistent id) is not a torch storage reference"},
		// numpy dtype states (numpy trusts them)
		{"object dtype with flags 0", scanOpts, cat("\x80\x02", dtypeObj("O8", dtypeState("|", nil, nil, nil, -1, -1, 0)), "."), "with flags 0"},
		{"float dtype with object flags", scanOpts, cat("\x80\x02", dtypeObj("f8", dtypeState("<", nil, nil, nil, -1, -1, 63)), "."), "with flags 63"},
		{"void dtype field outside the item", scanOpts, cat("\x80\x02", dtypeObj("V8", dtypeState("|", nil, cat(binunicode("a"), "\x85"),
			cat("}", binunicode("a"), f8, "K\x04\x86s"), 8, 1, 0)), "."), "with a field at offset 4 of 8 bytes outside the item"},
		{"void dtype with an object field", scanOpts, cat("\x80\x02", dtypeObj("V8", dtypeState("|", nil, cat(binunicode("a"), "\x85"),
			cat("}", binunicode("a"), dtypeObj("O8", dtypeState("|", nil, nil, nil, -1, -1, 63)), "K\x00\x86s"), 8, 1, 0)), "."), "with a field holding Python objects"},
		{"subarray larger than the item", scanOpts, cat("\x80\x02", dtypeObj("V16", dtypeState("|", cat(f8, "K\x04\x85\x86"), nil, nil, 16, 8, 0)), "."),
			"with a subarray whose size is not the item size"},
		{"float dtype with an elsize", scanOpts, cat("\x80\x02", dtypeObj("f8", dtypeState("<", nil, nil, nil, 8, 8, 0)), "."), "with elsize 8 and alignment 8 (want -1, -1)"},
		{"unicode dtype with a larger elsize", scanOpts, cat("\x80\x02", dtypeObj("U2", dtypeState("<", nil, nil, nil, 400, 4, 0)), "."), "with elsize 400 (want 8)"},
		{"dtype spec numpy never writes", scanOpts, cat("\x80\x02", glob("numpy", "dtype"), binunicode("f3"), "\x89\x88\x87R."), `calls numpy.dtype with "f3"`},
		{"dtype spec that is not a str", scanOpts, cat("\x80\x02", glob("numpy", "dtype"), "}\x89\x88\x87R."), "REDUCE calls numpy.dtype with arguments other than (str, bool, bool)"},
		{"array state with a str for the dtype", scanOpts, cat("\x80\x02", glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), "K\x00\x85C\x01b\x87R",
			"(K\x01K\x01\x85", binunicode("<f8"), "\x89C\x08\x00\x00\x00\x00\x00\x00\x00\x00tb."), "BUILD sets the state of a numpy array from a tuple, not (version, shape, numpy.dtype, fortran, data)"},
		{"scalar of a non-dtype", scanOpts, cat("\x80\x02", glob("numpy.core.multiarray", "scalar"), binunicode("<f8"), "C\x08\x00\x00\x00\x00\x00\x00\x00\x00\x86R."),
			"REDUCE calls numpy.core.multiarray.scalar with arguments other than (numpy.dtype, data)"},
		{"_reconstruct of another class", scanOpts, cat("\x80\x02", glob("numpy.core.multiarray", "_reconstruct"), od, "K\x00\x85C\x01b\x87R."),
			"REDUCE calls numpy.core.multiarray._reconstruct with arguments other than (numpy.ndarray, shape, typecode)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickleVerdict(t, tc.opts, tc.data)
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// cpythonFrameSmuggle is the gh-154848 shape: a BINUNICODE whose length runs
// past its FRAME. Read linearly (pickletools, fickling, a walker ignoring
// frames) it is two strings; unpatched CPython's C unpickler, reading from a
// file, takes the string from the bytes after the frame (dropping the
// frame's tail) and so executes the GLOBAL hidden in the second "string".
func cpythonFrameSmuggle() []byte {
	hidden := cat(glob("posix", "system"), binunicode("id"), "\x85R.")
	const n = 16
	inFrame := cat(binunicode("")[:1], binary.LittleEndian.AppendUint32(nil, n), "hello")                     // X, len 16, 5 bytes
	after := cat(strings.Repeat("a", n-5-5), "X", binary.LittleEndian.AppendUint32(nil, uint32(len(hidden)))) // 16 bytes
	return cat("\x80\x04", frame(len(inFrame)), inFrame, after, hidden, "0.")
}

func TestPickleFrames(t *testing.T) {
	smuggle := cpythonFrameSmuggle()
	// the linear reading is harmless: two strings, POP, STOP
	if !bytes.Contains(smuggle, []byte("cposix\nsystem\n")) || !bytes.HasSuffix(smuggle, []byte("0.")) {
		t.Fatal("fixture")
	}
	inner := cat(glob("collections", "OrderedDict"), ")R")
	legacy := modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), nil)
	// legacy magic pickle framed, its frame running on into the next pickle
	framedMagic := cat("\x80\x02", frame(len(modelcorpus.LegacyTorchMagic)-2+6), modelcorpus.LegacyTorchMagic[2:], legacy[len(modelcorpus.LegacyTorchMagic):])
	for _, tc := range []struct {
		name   string
		data   []byte
		legacy bool
		want   string
	}{
		{"argument past the frame end (gh-154848)", smuggle, false, "BINUNICODE runs past the end of the FRAME that ends at offset 21"},
		{"text line past the frame end", cat("\x80\x04", frame(14), "ccollections\nOrderedDict\n)R."), false, "GLOBAL runs past the end of the FRAME that ends at offset 25"},
		{"fixed argument past the frame end", cat("\x80\x04", frame(2), "NK\x05"), false, "BININT1 runs past the end of the FRAME that ends at offset 13"},
		{"frame inside a frame", cat("\x80\x04", frame(20), frame(2), "N."), false, "FRAME opened 20 bytes before the previous FRAME ends"},
		{"STOP before the frame end", cat("\x80\x04", frame(4), "N.NN"), false, "STOP 2 bytes before the end of its FRAME"},
		{"legacy torch: a pickle ends inside its frame", framedMagic, true, "STOP 6 bytes before the end of its FRAME"},
		{"frames end exactly between opcodes", cat("\x80\x04", frame(len(inner)), inner, frame(1), "."), false, ""},
		{"empty frame", cat("\x80\x04", frame(0), "N."), false, ""},
		{"argument right after a frame that ended", cat("\x80\x04", frame(1), "N", "0N."), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func(size int64) content.Inspector { return content.NewPickleInspector(scanOpts, size) }
			if tc.legacy {
				mk = func(size int64) content.Inspector { return content.NewLegacyTorchInspector(scanOpts, size) }
			}
			got := verdict(t, mk, tc.data, len(tc.data))
			if c := verdict(t, mk, tc.data, 1); c != got {
				t.Fatalf("byte by byte %q, whole %q", c, got)
			}
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPickleMemoExact(t *testing.T) {
	// MEMOIZE stores at len(memo) (CPython: the count of entries, which a
	// sparse PUT does not advance past): BINPUT 1 <- OrderedDict, then the
	// value-only torch.FloatStorage is MEMOIZEd at index 1, overwriting it.
	// A walker that put it at max+1 would call OrderedDict here.
	data := cat("\x80\x04", glob("collections", "OrderedDict"), "q\x010", glob("torch", "FloatStorage"), "\x940", "h\x01)R.")
	if got := pickleVerdict(t, scanOpts, data); got != "pickle: REDUCE calls torch.FloatStorage, which is not in the allowlist as a callable (it is admitted as a value only)" {
		t.Fatalf("got %q", got)
	}
	// and GET of an index never stored is refused (CPython raises)
	if got := pickleVerdict(t, scanOpts, cat("\x80\x04", "h\x07.")); got != "pickle: BINGET of memo index 7 that was never stored" {
		t.Fatalf("got %q", got)
	}
	// the memo resets between the pickles of a legacy torch file
	if got := pickleVerdict(t, scanOpts, cat("\x80\x02N.")); got != "" {
		t.Fatal(got)
	}
}

// corpusPickles returns the pickles a corpus file carries, as a loader
// would find them: the file itself (a pickle, or a legacy torch.save
// file), the pickle after an object-dtype NPY header, the members of a
// zip that are pickles or object-dtype NPY files. Files with no pickle
// (PNG, 7z, encrypted zips, numeric arrays, GGUF, templates) give none.
func corpusPickles(t *testing.T, name string, b []byte) (out []struct {
	where  string
	data   []byte
	legacy bool
}) {
	add := func(where string, d []byte, legacy bool) {
		out = append(out, struct {
			where  string
			data   []byte
			legacy bool
		}{where, d, legacy})
	}
	npyPickle := func(d []byte) ([]byte, bool) {
		if !bytes.HasPrefix(d, []byte("\x93NUMPY")) || len(d) < 10 {
			return nil, false
		}
		hl := 10 + int(binary.LittleEndian.Uint16(d[8:]))
		if d[6] >= 2 {
			hl = 12 + int(binary.LittleEndian.Uint32(d[8:]))
		}
		return d[hl:], bytes.Contains(d[:hl], []byte("'|O'"))
	}
	// a loader unpickles *.pkl whatever the bytes; other names only when
	// they start with PROTO (not_a_pickle.bin is served as opaque bytes)
	isPickle := func(n string, d []byte) bool {
		return strings.HasSuffix(n, ".pkl") || strings.HasSuffix(n, ".pickle") || len(d) > 1 && d[0] == 0x80 && d[1] <= 5
	}
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return nil
		}
		for _, f := range zr.File {
			if f.Flags&1 != 0 && strings.Contains(name, "password") {
				continue // really encrypted
			}
			rc, err := f.Open()
			if err != nil {
				continue
			}
			d, _ := io.ReadAll(rc) // a CRC mismatch still yields the bytes a loader would see
			rc.Close()
			if p, obj := npyPickle(d); p != nil {
				if obj {
					add(name+":"+f.Name, p, false)
				}
			} else if isPickle(f.Name, d) {
				add(name+":"+f.Name, d, false)
			}
		}
	case bytes.HasPrefix(b, []byte("\x93NUMPY")):
		if p, obj := npyPickle(b); obj {
			add(name, p, false)
		}
	case len(b) > 15 && string(b[:4]) == "\x80\x02\x8a\x0a":
		add(name, b, true)
	case isPickle(name, b):
		add(name, b, false)
	}
	return out
}

// TestPickleCorpusScanMode walks every pickle the real corpus carries in
// scan mode with the default allowlist: each benign one is served, each
// malicious one refused.
func TestPickleCorpusScanMode(t *testing.T) {
	labels, err := os.ReadFile(corpusDir + "/labels.tsv")
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	// exact reasons for the files that probe the walker's own rules
	reasons := map[string]string{
		"picklescan/tests/data/sys_module_override_sploit.pkl": "STACK_GLOBAL imports torch._utils, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data/malicious12.pkl":                "STACK_GLOBAL imports operator.attrgetter, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data/malicious19.pkl":                "STACK_GLOBAL imports functools.partial, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data2/GHSA-vvpj-8cmc-gx39.pkl":       "STACK_GLOBAL imports pkgutil.resolve_name, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data2/GHSA-86cj-95qr-2p4f.pkl":       "STACK_GLOBAL imports torch._dynamo.guards:GuardBuilder.get, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data2/keyerror-exploit.pkl":          "GLOBAL imports os.system, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data2/type-confusion-exploit.pkl":    "GLOBAL imports os.system, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data2/malicious23.pkl":               "STACK_GLOBAL imports os.system, which is not in the allowlist (content.formats.pickle.allow)",
		"picklescan/tests/data/malicious6.pkl":                 "60 bytes of trailing data after the pickle STOP opcode",
		"picklescan/tests/data/pytorch_magic_bypass.pt":        "GLOBAL imports __builtin__.eval, which is not in the allowlist (content.formats.pickle.allow)",
	}
	served, refused := 0, 0
	for _, line := range strings.Split(string(labels), "\n") {
		f := strings.Split(line, "\t")
		if len(f) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := os.ReadFile(corpusDir + "/" + f[0])
		if err != nil {
			t.Fatalf("corpus: %v", err)
		}
		pickles := corpusPickles(t, f[0], b)
		for _, pk := range pickles {
			mk := func(size int64) content.Inspector { return content.NewPickleInspector(scanOpts, size) }
			if pk.legacy {
				mk = func(size int64) content.Inspector { return content.NewLegacyTorchInspector(scanOpts, size) }
			}
			got := verdict(t, mk, pk.data, len(pk.data))
			if c := verdict(t, mk, pk.data, 3); c != got {
				t.Errorf("%s: chunked %q, whole %q", pk.where, c, got)
			}
			switch {
			case f[2] == "benign" && got != "":
				t.Errorf("%s (benign): refused: %s", pk.where, got)
			case f[2] != "benign" && got == "":
				t.Errorf("%s (%s): served", pk.where, f[2])
			case reasons[f[0]] != "" && !strings.HasSuffix(got, ": "+reasons[f[0]]):
				t.Errorf("%s: %q, want %q", pk.where, got, reasons[f[0]])
			}
			if got == "" {
				served++
			} else {
				refused++
			}
		}
		if len(pickles) == 0 && (strings.HasSuffix(f[0], ".pkl") || strings.HasSuffix(f[0], ".pickle")) {
			t.Errorf("%s: no pickle found", f[0])
		}
	}
	t.Logf("corpus pickles: %d served, %d refused", served, refused)
	if served < 9 || refused < 80 {
		t.Errorf("corpus coverage dropped: %d served, %d refused", served, refused)
	}
}

// FuzzPickleRules fuzzes the walker from the shapes its newer rules judge:
// frames, numpy dtype and array states, persistent ids, BUILD targets.
func FuzzPickleRules(f *testing.F) {
	f8 := dtypeObj("f8", dtypeState("<", nil, nil, nil, -1, -1, 0))
	od := glob("collections", "OrderedDict")
	for _, s := range [][]byte{
		cpythonFrameSmuggle(),
		cat("\x80\x04", frame(14), "ccollections\nOrderedDict\n)R."),
		cat("\x80\x04", frame(20), frame(2), "N."),
		cat("\x80\x02", dtypeObj("V12", dtypeState("|", nil, cat(binunicode("a"), binunicode("b"), "\x86"),
			cat("}(", binunicode("a"), dtypeObj("f4", dtypeState("<", nil, nil, nil, -1, -1, 0)), "K\x00\x86", binunicode("b"), f8, "K\x04\x86u"), 12, 1, 0)), "."),
		cat("\x80\x02", dtypeObj("V24", dtypeState("|", cat(f8, "K\x03\x85\x86"), nil, nil, 24, 8, 0)), "."),
		cat("\x80\x02", glob("numpy._core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), "K\x00\x85C\x01b\x87R(K\x01K\x01\x85", f8, "\x89C\x08\x00\x00\x00\x00\x00\x00\x00\x00tb."),
		cat("\x80\x02", od, ")RN}\x86b."),
		cat("\x80\x04", od, "q\x010", glob("torch", "FloatStorage"), "\x940", "h\x01)R."),
		cat("\x80\x02", "(", binunicode("storage"), glob("torch", "FloatStorage"), binunicode("0"), binunicode("cpu"), "K\x01tQ."),
		cat("\x80\x02", glob("_codecs", "encode"), binunicode("x"), binunicode("latin1"), "\x86R."),
	} {
		f.Add(s, uint8(len(s)))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewPickleInspector(scanOpts, size) }, data, chunk)
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewLegacyTorchInspector(scanOpts, size) }, data, chunk)
	})
}
