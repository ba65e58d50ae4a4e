package content

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ---- allowlist ----------------------------------------------------------------
//
// An allowlist entry names a global exactly as a loader resolves it: the
// module that is imported and the qualified name looked up in it. Matching
// is on the (module, qualname) pair, never on the concatenated string, so
// module "torch" with name "_utils._rebuild_tensor_v2" (an attribute walk
// from torch, see picklescan's sys_module_override_sploit.pkl) is a
// different global from module "torch._utils" with name
// "_rebuild_tensor_v2". Configuration accepts two spellings:
//
//   - "module:qualname" is exact and the only way to admit a dotted
//     qualname (which makes the loader walk attributes: "pkg.mod:Outer.Inner").
//   - "module.name" (the historical form) splits at the LAST dot, so the
//     name never contains a dot: "torch._utils._rebuild_tensor_v2" is module
//     "torch._utils", name "_rebuild_tensor_v2".
//
// Findings and Globals() print an entry as "module.name" when the name has
// no dot and "module:qualname" otherwise, i.e. in the form that admits it.
//
// Entries of the default list also carry what the walker lets a pickle do
// with them (call it, set state on what it returns, fill it as a dict, ...).
// Entries that only the policy lists are trusted classes: they may be
// called and instantiated, and what they return accepts any state and
// container opcode. Some names are never admitted, even when listed: they
// resolve names, reach attributes or run code (see pickleNever).

// argument rules for calls (REDUCE, INST, OBJ)
const (
	argNever       uint8 = iota // a value only: never called
	argTuple                    // any tuple of arguments
	argLatin1                   // (str, "latin1"): _codecs.encode as pickle writes bytes for protocol < 3
	argEmpty                    // ()
	argBytes                    // () or (bytes,)
	argDtype                    // (str spec, bool, bool): numpy.dtype as numpy pickles it
	argReconstruct              // (numpy.ndarray, shape, typecode)
	argScalar                   // (dtype, data)
	argFrombuffer               // (buffer, dtype, shape, order)
)

// result classes: what calling or instantiating an entry yields, and so
// which opcodes may later be applied to it.
const (
	rcOpaque  uint8 = iota // nothing (tensor, device, scalar, ...)
	rcDict                 // dict-like: SETITEM(S); BUILD with a plain dict state only
	rcNdarray              // numpy.ndarray: BUILD with (version, shape, dtype, fortran, data)
	rcDtype                // numpy.dtype: BUILD with its canonical state (validated)
	rcBytes                // bytes / bytearray
	rcSet                  // set: ADDITEMS
	rcFrozen               // frozenset
	rcUser                 // a class the policy lists: any state, any container opcode
	rcWrapper              // joblib NumpyArrayWrapper (joblib inspector only)
)

// entry tags
const (
	tagNone uint8 = iota
	tagNdarray
	tagMemmap
	tagMatrix
	tagWrapper
)

type pickleEntry struct {
	module, name string
	display      string
	call         bool  // REDUCE (INST/OBJ too when args == argTuple)
	newobj       bool  // NEWOBJ / NEWOBJ_EX
	args         uint8 // argument rule of a call
	rc           uint8 // result class
	elem         int64 // torch storage class: element size in bytes
	tag          uint8
}

func globalDisplay(module, name string) string {
	if strings.IndexByte(name, '.') >= 0 {
		return module + ":" + name
	}
	return module + "." + name
}

// torchStorageNames lists the typed storage classes torch pickles in
// persistent ids ("torch.<Name>") and their element size.
var torchStorageNames = []struct {
	name string
	size int64
}{
	{"LongStorage", 8}, {"FloatStorage", 4}, {"HalfStorage", 2}, {"QUInt2x4Storage", 1}, {"QUInt4x2Storage", 1},
	{"QInt32Storage", 4}, {"QInt8Storage", 1}, {"QUInt8Storage", 1}, {"ComplexFloatStorage", 8},
	{"ComplexDoubleStorage", 16}, {"DoubleStorage", 8}, {"BFloat16Storage", 2}, {"BoolStorage", 1},
	{"CharStorage", 1}, {"ShortStorage", 2}, {"IntStorage", 4}, {"ByteStorage", 1},
}

// torchDtypeNames are the torch dtype objects a checkpoint may name (torch
// pickles a dtype as the global torch.<name>); the aliases are kept from the
// earlier list. They are values: nothing may call them.
var torchDtypeNames = []string{
	"float32", "float64", "float16", "bfloat16", "complex32", "complex64", "complex128",
	"uint8", "int8", "int16", "int32", "int64", "bool", "uint16", "uint32", "uint64",
	"quint8", "qint8", "qint32", "quint4x2", "quint2x4",
	"float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2",
	"bits1x8", "bits2x4", "bits4x2", "bits8", "bits16",
	"int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1", "uint2", "uint3", "uint4", "uint5", "uint6", "uint7",
	"float", "double", "half", "short", "int", "long", "cfloat", "cdouble", "chalf",
}

// defaultPickleEntries is what real torch.save checkpoints (torch 0.4 to
// 2.x, zip and legacy layouts), numpy object arrays (.npy/.npz, numpy 1.x
// and 2.x) and protocol-2 pickles of builtin types need, narrowed from
// torch's own weights_only allowlist (torch/_weights_only_unpickler.py,
// _get_allowed_globals). Left out on purpose: _rebuild_from_type_v2 (calls
// an arbitrary callable from its arguments), the sparse, nested and
// wrapper-subclass rebuilders (torch validates their indices after loading;
// a static walker cannot), torch.serialization._get_layout, and anything
// that resolves names or reaches attributes.
var defaultPickleEntries = func() []pickleEntry {
	fn := func(m, n string, args, rc uint8) pickleEntry {
		return pickleEntry{module: m, name: n, call: true, args: args, rc: rc}
	}
	val := func(m, n string) pickleEntry { return pickleEntry{module: m, name: n} }
	e := []pickleEntry{
		fn("collections", "OrderedDict", argTuple, rcDict),
		fn("collections", "Counter", argTuple, rcDict),
		// protocol < 3 pickles write bytes as _codecs.encode(str, "latin1"),
		// empty bytes as builtins.bytes() and bytearray as bytearray(bytes).
		fn("_codecs", "encode", argLatin1, rcBytes),
		fn("builtins", "bytes", argEmpty, rcBytes),
		fn("builtins", "bytearray", argBytes, rcBytes),
		fn("builtins", "set", argTuple, rcSet),
		fn("builtins", "frozenset", argTuple, rcFrozen),
		fn("builtins", "complex", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_tensor", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_tensor_v2", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_tensor_v3", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_parameter", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_parameter_with_state", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_qtensor", argTuple, rcOpaque),
		fn("torch._utils", "_rebuild_meta_tensor_no_storage", argTuple, rcOpaque),
		fn("torch", "Size", argTuple, rcOpaque),
		fn("torch", "device", argTuple, rcOpaque),
		// numpy: ndarray.__reduce__ (both module spellings: numpy 1.x writes
		// numpy.core, 2.x numpy._core), dtype.__reduce__, scalars, and the
		// protocol-5 ndarray path.
		fn("numpy.core.multiarray", "_reconstruct", argReconstruct, rcNdarray),
		fn("numpy._core.multiarray", "_reconstruct", argReconstruct, rcNdarray),
		fn("numpy.core.multiarray", "scalar", argScalar, rcOpaque),
		fn("numpy._core.multiarray", "scalar", argScalar, rcOpaque),
		fn("numpy.core.numeric", "_frombuffer", argFrombuffer, rcOpaque),
		fn("numpy._core.numeric", "_frombuffer", argFrombuffer, rcOpaque),
		fn("numpy", "dtype", argDtype, rcDtype),
		{module: "numpy", name: "ndarray", rc: rcNdarray, tag: tagNdarray},
	}
	for _, s := range torchStorageNames {
		x := val("torch", s.name)
		x.elem = s.size
		e = append(e, x)
	}
	untyped := val("torch.storage", "UntypedStorage") // numel is a byte count
	untyped.elem = 1
	e = append(e, untyped)
	for _, d := range torchDtypeNames {
		e = append(e, val("torch", d))
	}
	for _, q := range []string{"per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
		"per_channel_symmetric", "per_channel_affine_float_qparams"} {
		e = append(e, val("torch", q))
	}
	for i := range e {
		e[i].display = globalDisplay(e[i].module, e[i].name)
	}
	return e
}()

// joblibEntries are added for the outer pickle of a joblib file.
var joblibEntries = []pickleEntry{
	{module: "joblib.numpy_pickle", name: "NumpyArrayWrapper", display: "joblib.numpy_pickle.NumpyArrayWrapper", newobj: true, rc: rcWrapper, tag: tagWrapper},
	{module: "numpy", name: "memmap", display: "numpy.memmap", tag: tagMemmap},
	{module: "numpy", name: "matrix", display: "numpy.matrix", tag: tagMatrix},
}

// DefaultPickleAllow is the default allowlist in configuration form (every
// name is undotted, so "module.name" is exact).
var DefaultPickleAllow = func() []string {
	out := make([]string, len(defaultPickleEntries))
	for i, e := range defaultPickleEntries {
		out[i] = e.display
	}
	return out
}()

// torchStorageElemSize maps a storage class (as printed) to its element size.
var torchStorageElemSize = func() map[string]int64 {
	m := map[string]int64{}
	for _, e := range defaultPickleEntries {
		if e.elem > 0 {
			m[e.display] = e.elem
		}
	}
	return m
}()

// pickleNeverModules are modules no allowlist entry can admit (any name in
// them, or in their submodules): they run commands, resolve names or load
// code.
var pickleNeverModules = []string{"sys", "os", "posix", "nt", "subprocess", "importlib", "runpy", "code",
	"codeop", "marshal", "pickle", "_pickle", "ctypes", "pty"}

// pickleNeverNames are (module, name) pairs no allowlist entry can admit:
// they resolve names, reach attributes or evaluate code.
var pickleNeverNames = func() map[string]bool {
	m := map[string]bool{}
	for _, b := range []string{"builtins", "__builtin__"} {
		for _, n := range []string{"getattr", "setattr", "delattr", "hasattr", "eval", "exec", "execfile", "compile",
			"__import__", "globals", "locals", "vars", "open", "breakpoint", "input", "help", "exit", "quit", "reload"} {
			m[b+"\x00"+n] = true
		}
	}
	for _, o := range []string{"operator", "_operator"} {
		for _, n := range []string{"attrgetter", "itemgetter", "methodcaller"} {
			m[o+"\x00"+n] = true
		}
	}
	for _, n := range []string{"resolve_name", "find_loader", "get_loader", "get_importer", "iter_importers"} {
		m["pkgutil\x00"+n] = true
	}
	return m
}()

// pickleNeverReason says why (module, qualname) can never be admitted, or "".
func pickleNeverReason(module, qualname string) string {
	for _, m := range pickleNeverModules {
		if module == m || strings.HasPrefix(module, m+".") {
			return "module " + m + " runs commands, resolves names or loads code"
		}
	}
	if pickleNeverNames[module+"\x00"+qualname] {
		return "it resolves names, reaches attributes or evaluates code"
	}
	for _, c := range strings.Split(qualname, ".") {
		if isDunder(c) {
			return "a dunder name reaches interpreter internals"
		}
	}
	for _, c := range strings.Split(module, ".") {
		if isDunder(c) && c != "__main__" && c != "__mp_main__" && c != "__builtin__" {
			return "a dunder module name reaches interpreter internals"
		}
	}
	return ""
}

func isDunder(s string) bool {
	return len(s) > 4 && strings.HasPrefix(s, "__") && strings.HasSuffix(s, "__")
}

// ParsePickleGlobal splits an allowlist entry into the module and the
// qualified name it admits: "module:qualname" exactly, "module.name" at the
// last dot.
func ParsePickleGlobal(s string) (module, qualname string, err error) {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		module, qualname = s[:i], s[i+1:]
	} else if i := strings.LastIndexByte(s, '.'); i > 0 {
		module, qualname = s[:i], s[i+1:]
	} else {
		return "", "", fmt.Errorf("pickle allowlist entry %q: write module.name or module:qualname", s)
	}
	if !isDottedIdent(module) || !isDottedIdent(qualname) {
		return "", "", fmt.Errorf("pickle allowlist entry %q: module and name must be Python identifiers separated by dots", s)
	}
	return module, qualname, nil
}

// CheckPickleAllow reports allowlist entries that are malformed or can never
// be admitted (they resolve names, reach attributes or run code).
func CheckPickleAllow(list []string) error {
	for _, s := range list {
		m, q, err := ParsePickleGlobal(s)
		if err != nil {
			return err
		}
		if r := pickleNeverReason(m, q); r != "" {
			return fmt.Errorf("pickle allowlist entry %q can never be allowed: %s", s, r)
		}
	}
	return nil
}

// pickleAllowlist is the resolved allowlist of one policy (immutable, shared
// by walkers).
type pickleAllowlist struct {
	entries []pickleEntry
	index   map[string]int32 // "module\x00qualname" -> entry
	never   map[string]string
	ndarray int32 // entry index of numpy.ndarray, -1 if absent
}

func buildPickleAllowlist(list []string, joblib bool) *pickleAllowlist {
	a := &pickleAllowlist{index: map[string]int32{}, never: map[string]string{}, ndarray: -1}
	add := func(e pickleEntry) {
		k := e.module + "\x00" + e.name
		if _, dup := a.index[k]; dup {
			return
		}
		a.index[k] = int32(len(a.entries))
		a.entries = append(a.entries, e)
	}
	if list == nil {
		for _, e := range defaultPickleEntries {
			add(e)
		}
	} else {
		for _, s := range list {
			m, q, err := ParsePickleGlobal(s)
			if err != nil {
				continue // Options.Validate reports it
			}
			if r := pickleNeverReason(m, q); r != "" {
				a.never[m+"\x00"+q] = r
				continue
			}
			if e, ok := defaultPickleEntryByKey()[m+"\x00"+q]; ok {
				add(e) // a default entry keeps its precise rules
				continue
			}
			add(pickleEntry{module: m, name: q, display: globalDisplay(m, q), call: true, newobj: true, args: argTuple, rc: rcUser})
		}
	}
	if joblib {
		for _, e := range joblibEntries {
			k := e.module + "\x00" + e.name
			if i, ok := a.index[k]; ok {
				a.entries[i] = e // the wrapper's rules replace a user entry
				continue
			}
			add(e)
		}
	}
	if i, ok := a.index["numpy\x00ndarray"]; ok {
		a.ndarray = i
	}
	return a
}

// defaultPickleEntryByKey indexes the default entries by
// "module\x00qualname" (built once).
var defaultPickleEntryByKey = sync.OnceValue(func() map[string]pickleEntry {
	m := make(map[string]pickleEntry, len(defaultPickleEntries))
	for _, e := range defaultPickleEntries {
		m[e.module+"\x00"+e.name] = e
	}
	return m
})

var (
	defaultAllowOnce, joblibAllowOnce sync.Once
	defaultAllow, defaultJoblibAllow  *pickleAllowlist
)

// policyAllow holds the allowlists built from policies' pickle.allow lists
// (read-only once built, like the defaults): a walker per pickle, zip
// member or object array reuses its policy's instead of rebuilding it.
var policyAllow, _ = lru.New[string, *pickleAllowlist](32)

func pickleAllowFor(opts Options, joblib bool) *pickleAllowlist {
	if opts.Pickle.Allow != nil {
		key := strconv.FormatBool(joblib) + "\x01" + strings.Join(opts.Pickle.Allow, "\x00")
		if a, ok := policyAllow.Get(key); ok {
			return a
		}
		a := buildPickleAllowlist(opts.Pickle.Allow, joblib)
		policyAllow.Add(key, a)
		return a
	}
	if joblib {
		joblibAllowOnce.Do(func() { defaultJoblibAllow = buildPickleAllowlist(nil, true) })
		return defaultJoblibAllow
	}
	defaultAllowOnce.Do(func() { defaultAllow = buildPickleAllowlist(nil, false) })
	return defaultAllow
}

// pickleImportMapping and pickleNameMapping are CPython's
// Lib/_compat_pickle.py IMPORT_MAPPING and NAME_MAPPING: find_class applies
// them when the pickle's protocol is below 3 (fix_imports, the default), so
// the walker matches the allowlist against the mapped pair.
var pickleImportMapping = map[string]string{
	"__builtin__": "builtins", "copy_reg": "copyreg", "Queue": "queue", "SocketServer": "socketserver",
	"ConfigParser": "configparser", "repr": "reprlib", "tkFileDialog": "tkinter.filedialog",
	"tkSimpleDialog": "tkinter.simpledialog", "tkColorChooser": "tkinter.colorchooser",
	"tkCommonDialog": "tkinter.commondialog", "Dialog": "tkinter.dialog", "Tkdnd": "tkinter.dnd",
	"tkFont": "tkinter.font", "tkMessageBox": "tkinter.messagebox", "ScrolledText": "tkinter.scrolledtext",
	"Tkconstants": "tkinter.constants", "Tix": "tkinter.tix", "ttk": "tkinter.ttk", "Tkinter": "tkinter",
	"markupbase": "_markupbase", "_winreg": "winreg", "thread": "_thread", "dummy_thread": "_dummy_thread",
	"dbhash": "dbm.bsd", "dumbdbm": "dbm.dumb", "dbm": "dbm.ndbm", "gdbm": "dbm.gnu", "xmlrpclib": "xmlrpc.client",
	"SimpleXMLRPCServer": "xmlrpc.server", "httplib": "http.client", "htmlentitydefs": "html.entities",
	"HTMLParser": "html.parser", "Cookie": "http.cookies", "cookielib": "http.cookiejar",
	"BaseHTTPServer": "http.server", "test.test_support": "test.support", "commands": "subprocess",
	"urlparse": "urllib.parse", "robotparser": "urllib.robotparser", "urllib2": "urllib.request",
	"anydbm": "dbm", "_abcoll": "collections.abc",
	"cPickle": "pickle", "_elementtree": "xml.etree.ElementTree", "FileDialog": "tkinter.filedialog",
	"SimpleDialog": "tkinter.simpledialog", "DocXMLRPCServer": "xmlrpc.server", "SimpleHTTPServer": "http.server",
	"CGIHTTPServer": "http.server", "UserDict": "collections", "UserList": "collections",
	"UserString": "collections", "whichdb": "dbm", "StringIO": "io", "cStringIO": "io",
}

var pickleNameMapping = func() map[string]string {
	m := map[string]string{}
	for _, p := range [][4]string{
		{"__builtin__", "xrange", "builtins", "range"}, {"__builtin__", "reduce", "functools", "reduce"},
		{"__builtin__", "intern", "sys", "intern"}, {"__builtin__", "unichr", "builtins", "chr"},
		{"__builtin__", "unicode", "builtins", "str"}, {"__builtin__", "long", "builtins", "int"},
		{"itertools", "izip", "builtins", "zip"}, {"itertools", "imap", "builtins", "map"},
		{"itertools", "ifilter", "builtins", "filter"}, {"itertools", "ifilterfalse", "itertools", "filterfalse"},
		{"itertools", "izip_longest", "itertools", "zip_longest"},
		{"UserDict", "IterableUserDict", "collections", "UserDict"}, {"UserList", "UserList", "collections", "UserList"},
		{"UserString", "UserString", "collections", "UserString"}, {"whichdb", "whichdb", "dbm", "whichdb"},
		{"_socket", "fromfd", "socket", "fromfd"},
		{"_multiprocessing", "Connection", "multiprocessing.connection", "Connection"},
		{"multiprocessing.process", "Process", "multiprocessing.context", "Process"},
		{"multiprocessing.forking", "Popen", "multiprocessing.popen_fork", "Popen"},
		{"urllib", "ContentTooShortError", "urllib.error", "ContentTooShortError"},
		{"urllib", "getproxies", "urllib.request", "getproxies"}, {"urllib", "pathname2url", "urllib.request", "pathname2url"},
		{"urllib", "quote_plus", "urllib.parse", "quote_plus"}, {"urllib", "quote", "urllib.parse", "quote"},
		{"urllib", "unquote_plus", "urllib.parse", "unquote_plus"}, {"urllib", "unquote", "urllib.parse", "unquote"},
		{"urllib", "url2pathname", "urllib.request", "url2pathname"}, {"urllib", "urlcleanup", "urllib.request", "urlcleanup"},
		{"urllib", "urlencode", "urllib.parse", "urlencode"}, {"urllib", "urlopen", "urllib.request", "urlopen"},
		{"urllib", "urlretrieve", "urllib.request", "urlretrieve"},
		{"urllib2", "HTTPError", "urllib.error", "HTTPError"}, {"urllib2", "URLError", "urllib.error", "URLError"},
		{"__builtin__", "basestring", "builtins", "str"}, {"exceptions", "StandardError", "builtins", "Exception"},
		{"UserDict", "UserDict", "collections", "UserDict"}, {"socket", "_socketobject", "socket", "SocketType"},
	} {
		m[p[0]+"\x00"+p[1]] = p[2] + "\x00" + p[3]
	}
	for _, e := range []string{"ArithmeticError", "AssertionError", "AttributeError", "BaseException", "BufferError",
		"BytesWarning", "DeprecationWarning", "EOFError", "EnvironmentError", "Exception", "FloatingPointError",
		"FutureWarning", "GeneratorExit", "IOError", "ImportError", "ImportWarning", "IndentationError", "IndexError",
		"KeyError", "KeyboardInterrupt", "LookupError", "MemoryError", "NameError", "NotImplementedError", "OSError",
		"OverflowError", "PendingDeprecationWarning", "ReferenceError", "RuntimeError", "RuntimeWarning",
		"StopIteration", "SyntaxError", "SyntaxWarning", "SystemError", "SystemExit", "TabError", "TargetScopeError",
		"TypeError", "UnboundLocalError", "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError",
		"UnicodeTranslateError", "UnicodeWarning", "UserWarning", "ValueError", "Warning", "ZeroDivisionError"} {
		m["exceptions\x00"+e] = "builtins\x00" + e
	}
	for _, e := range []string{"AuthenticationError", "BufferTooShort", "ProcessError", "TimeoutError"} {
		m["multiprocessing\x00"+e] = "multiprocessing.context\x00" + e
	}
	return m
}()

// ---- symbolic values --------------------------------------------------------

// value kinds tracked on the symbolic stack and in the memo.
const (
	vOther     uint8 = iota // opaque
	vStr                    // str with known value (ref, n: arena offset and length)
	vStrLong                // str not kept (too long, or escapes we do not decode)
	vBytes                  // bytes or bytearray
	vInt                    // int (n)
	vLong                   // int too large for int64 (ref, n: kept two's complement bytes)
	vFloat                  // float
	vBool                   // bool (n)
	vNone                   // None
	vTuple                  // tuple of n items; ref indexes w.tuples when tracked, else -1
	vList                   // list
	vDict                   // dict; ref indexes w.dicts when tracked, else -1
	vSet                    // set
	vFrozenset              // frozenset
	vGlobal                 // an allowlisted global (ref: entry index)
	vObj                    // what an allowlisted global returned (ref: entry index; n: record, see below)
	vPersist                // a torch storage returned by persistent_load
	vUnset     uint8 = 255  // memo hole
)

// For vObj: numpy.dtype objects keep itemsize<<8 | kind in n; joblib
// wrappers keep their record index in n; other objects have n = -1.

const maxKeptString = 256

// maxLineArg caps newline-terminated arguments (protocol 0 text opcodes).
const maxLineArg = 64 << 10

// maxTrackedTuple is the largest tuple whose items are kept (numpy allows
// 64 dimensions; real shapes, argument tuples and dtype states are shorter).
const maxTrackedTuple = 32

// bounds of the bookkeeping kept for container contents; past them values
// are still walked, but their contents count as unknown (which refuses
// only the rules that need them).
const (
	maxTupleSlots   = 1 << 19 // 8 MiB; ~20 per tensor of torch.save
	maxDictRecords  = 1 << 16
	maxDictEntries  = 1 << 18 // key/value pairs over all dicts
	maxEntriesInOne = 1024
)

// pval is one symbolic stack/memo value. It holds no pointers (strings live
// in the walker's arena, containers in its tables), so the stack and memo
// grow with plain memmoves and cost the garbage collector nothing.
type pval struct {
	kind uint8
	ref  int32
	n    int64
}

type dictRec struct {
	items []pval // key, value, key, value, ... (later keys override earlier)
	over  bool   // more entries than tracked
}

// maxArena caps the bytes of strings kept for resolution. Strings past it
// are pushed as unknown values (as a string longer than maxKeptString is),
// which refuses only what needs their text: a STACK_GLOBAL operand, a
// storage key. torch.save keeps about 60 bytes per tensor here.
const maxArena = 8 << 20

// maxStorages caps the torch storage references (BINPERSID) recorded,
// and maxStorageKeyBytes the bytes of their keys: one per tensor or view
// in an honest checkpoint, far fewer than the tuple slots allow.
const (
	maxStorages        = 1 << 16
	maxStorageKeyBytes = 4 << 20
)

// maxSparseMemo caps memo entries stored out of order (more than 1024
// past the dense memo, or past maxMemo): pickle.py and the C pickler
// number memo entries in order, so only a hand-made pickle has any.
const maxSparseMemo = 1 << 15

// storageRef is a persistent id ('storage', StorageType, key, location, numel).
type storageRef struct {
	Type  string
	Key   string
	Numel int64
}

// walker events
const (
	evMore  uint8 = iota // all bytes consumed, or the next opcode is incomplete
	evStop               // a STOP ended a pickle
	evArray              // joblib: a NumpyArrayWrapper was built; its array follows (w.block)
	evSkip               // b ended inside a bytes payload: w.skipLeft bytes of it follow
)

// pickleWalker statically walks pickle opcodes (protocols 0-5) without
// executing anything, with the stack, memo and frame semantics of CPython's
// unpicklers (refusing where the C and Python implementations differ). It
// resolves every import (GLOBAL, STACK_GLOBAL, INST), including through the
// memo, refuses anything not allowlisted, and checks what REDUCE, BUILD,
// NEWOBJ(_EX), INST, OBJ and the container opcodes apply to.
//
// Frames (PEP 3154) are enforced as the pure-Python unpickler and CPython
// with gh-154848 (3.13.15, 3.14.7 and later) enforce them; older C
// unpicklers read across frame ends from the file and so run bytes a linear
// reader never sees as opcodes. An opcode must lie wholly inside the frame
// it starts in (pickle.py would also let an argument start exactly at the
// frame's end; no pickler writes that, and it is refused here), a FRAME may
// only open once the previous frame ended, and a STOP must end its frame
// (pickle.py consumes the rest of the frame, the C unpickler does not).
// Memo semantics follow CPython: MEMOIZE stores at the number of entries,
// PUT may overwrite, GET of a missing index is refused, POP on an empty
// stack frame pops the mark.
type pickleWalker struct {
	al        *pickleAllowlist
	joblib    bool
	maxOps    int64
	maxStack  int
	maxMemo   int
	maxString int64
	format    string

	stack           []pval
	marks           []int
	memo            []pval // dense memo; kind vUnset marks holes
	memoSparse      map[uint64]pval
	memoCount       int
	proto           int   // last PROTO of the current pickle (0 before any)
	frameEnd        int64 // absolute end of the current FRAME; -1 outside frames
	tuples          []pval
	dicts           []dictRec
	dictItems       int
	wrappers        []wrapRec
	arena           []byte // kept strings (module/name candidates, keys)
	keyBuf          []byte
	ops             int64
	inPickle        bool
	result          pval // value returned by the last STOP
	globals         map[string]bool
	seen            []bool
	storages        []storageRef
	storageKeyBytes int64
	collect         *[]string // when set, every str pushed is appended
	pickles         int
	block           arrayBlock // joblib: the array announced by evArray
	event           uint8      // set by an opcode handler: evStop, evArray
	skipLeft        int64      // evSkip: payload bytes that follow
	// tsClasses admits TorchScript classes (see torchScriptClass) and
	// torch.jit._pickle builders (torchJitPickleBuilders); the first
	// admitted makes al a private copy. tsClass names the first.
	tsClasses bool
	tsOwned   bool
	tsClass   string
	tsCount   int
}

// maxTorchScriptClasses bounds the TorchScript classes and builders one
// pickle may name (each adds an allowlist entry to the walker's private copy).
const maxTorchScriptClasses = 4096

// torchScriptClass reports whether (module, name) is a class of a
// TorchScript archive's own code/ tree: torch.jit's pickler writes a
// scripted object as GLOBAL <qualified name prefix> <class name>, the
// prefix being __torch__ or __torch__.<path>, and torch.jit.load resolves
// it against the classes compiled from code/, never by importing Python
// modules. Dunder names after __torch__ are still refused.
func torchScriptClass(module, name []byte) bool {
	m := string(module)
	if m != "__torch__" && !strings.HasPrefix(m, "__torch__.") {
		return false
	}
	for _, c := range strings.Split(m, ".")[1:] {
		if isDunder(c) {
			return false
		}
	}
	return bytes.IndexByte(name, '.') < 0 && !isDunder(string(name))
}

// torchJitPickleBuilders are the torch.jit._pickle globals torch.jit's
// pickler writes into data.pkl and constants.pkl (pickler.cpp:
// pushSpecializedList, pushTensorReference, startTypeTag) and exactly the
// ones its unpickler resolves (unpickler.cpp readGlobal: any other name in
// torch.jit._pickle is "Unknown pickler class id"). Each is called once by
// REDUCE with a tuple and returns its argument (a list, a tagged list or
// dict, a tensor from the archive's tensor table); none imports, reads or
// runs anything.
var torchJitPickleBuilders = map[string]bool{
	"build_intlist": true, "build_tensorlist": true, "build_doublelist": true, "build_boollist": true,
	"build_tensor_from_id": true, "restore_type_tag": true,
}

// torchJitPickleBuilder reports whether (module, name) is one of
// torchJitPickleBuilders.
func torchJitPickleBuilder(module, name []byte) bool {
	return string(module) == "torch.jit._pickle" && torchJitPickleBuilders[string(name)]
}

// addTorchScriptClass adds a TorchScript class to the walker's allowlist
// (copied on first use: the shared one is immutable) as a class that
// NEWOBJ instantiates and BUILD fills, like a class a policy lists.
func (w *pickleWalker) addTorchScriptClass(module, name []byte) (int32, bool) {
	m, q := string(module), string(name)
	return w.addTorchScriptEntry(pickleEntry{module: m, name: q, call: true, newobj: true, args: argTuple, rc: rcUser})
}

// addTorchScriptBuilder adds a torch.jit._pickle builder: REDUCE calls it
// with a tuple; its result is a value.
func (w *pickleWalker) addTorchScriptBuilder(module, name []byte) (int32, bool) {
	return w.addTorchScriptEntry(pickleEntry{module: string(module), name: string(name), call: true, args: argTuple, rc: rcOpaque})
}

// addTorchScriptEntry adds e, a global only torch.jit.load resolves, to
// the walker's private copy of the allowlist.
func (w *pickleWalker) addTorchScriptEntry(e pickleEntry) (int32, bool) {
	if !w.tsOwned {
		al := &pickleAllowlist{entries: append([]pickleEntry(nil), w.al.entries...), index: make(map[string]int32, len(w.al.index)+1),
			never: w.al.never, ndarray: w.al.ndarray}
		for k, v := range w.al.index {
			al.index[k] = v
		}
		w.al, w.tsOwned = al, true
	}
	if w.tsCount >= maxTorchScriptClasses {
		return 0, false
	}
	w.tsCount++
	d := globalDisplay(e.module, e.name)
	e.display = d
	idx := int32(len(w.al.entries))
	w.al.entries = append(w.al.entries, e)
	w.al.index[e.module+"\x00"+e.name] = idx
	w.seen = append(w.seen, false)
	if w.tsClass == "" {
		w.tsClass = d
	}
	return idx, true
}

func newPickleWalker(opts Options, format string) *pickleWalker {
	return newPickleWalkerWith(opts, format, pickleAllowFor(opts, false), false)
}

func newPickleWalkerWith(opts Options, format string, al *pickleAllowlist, joblib bool) *pickleWalker {
	return &pickleWalker{
		al:        al,
		joblib:    joblib,
		maxOps:    def64(opts.Pickle.MaxOps, 1<<26),
		maxStack:  defInt(opts.Pickle.MaxStack, 1<<16),
		maxMemo:   defInt(opts.Pickle.MaxMemo, 1<<19),
		maxString: def64(opts.Pickle.MaxString, 16<<20),
		format:    format,
		globals:   map[string]bool{},
		seen:      make([]bool, len(al.entries)),
		frameEnd:  -1,
		tsClasses: opts.torchScriptClasses,
	}
}

func (w *pickleWalker) reset() {
	w.stack = w.stack[:0]
	w.marks = w.marks[:0]
	w.memo = w.memo[:0]
	w.memoSparse = nil
	w.memoCount = 0
	w.inPickle = false
	w.proto = 0
	w.frameEnd = -1
}

// Globals returns the sorted set of imports seen so far.
func (w *pickleWalker) Globals() []string {
	out := make([]string, 0, len(w.globals))
	for g := range w.globals {
		out = append(out, g)
	}
	sortStrings(out)
	return out
}

func (w *pickleWalker) errAt(off int64, reason string, args ...any) error {
	return newFinding(w.format, off, reason, args...)
}

func (w *pickleWalker) frameErr(off int64, op byte) error {
	return w.errAt(off, "%s runs past the end of the FRAME that ends at offset %d (CPython since gh-154848 refuses it; older versions execute what follows)", opName(op), w.frameEnd)
}

// resolve checks an import (GLOBAL, INST, STACK_GLOBAL) against the
// allowlist, after the name mapping the loader applies, and returns the
// global.
func (w *pickleWalker) resolve(off int64, module, name []byte, via string) (pval, error) {
	if !isDottedIdentBytes(module) || !isDottedIdentBytes(name) {
		return pval{}, w.errAt(off, "%s with malformed module or name %q %q", via, truncate(string(module)), truncate(string(name)))
	}
	k := append(append(append(w.keyBuf[:0], module...), 0), name...)
	w.keyBuf = k
	idx, ok := int32(0), false
	if w.proto < 3 {
		if m, hit := pickleNameMapping[string(k)]; hit {
			idx, ok = w.al.index[m]
			if !ok {
				return pval{}, w.notAllowed(off, via, module, name, m)
			}
		} else if m, hit := pickleImportMapping[string(module)]; hit {
			mk := m + "\x00" + string(name)
			idx, ok = w.al.index[mk]
			if !ok {
				return pval{}, w.notAllowed(off, via, module, name, mk)
			}
		} else {
			idx, ok = w.al.index[string(k)]
		}
	} else {
		idx, ok = w.al.index[string(k)]
	}
	if !ok && w.tsClasses && torchScriptClass(module, name) {
		idx, ok = w.addTorchScriptClass(module, name)
	} else if !ok && w.tsClasses && torchJitPickleBuilder(module, name) {
		idx, ok = w.addTorchScriptBuilder(module, name)
	}
	if !ok {
		return pval{}, w.notAllowed(off, via, module, name, string(k))
	}
	if !w.seen[idx] {
		w.seen[idx] = true
		w.globals[w.al.entries[idx].display] = true
	}
	return pval{kind: vGlobal, ref: idx}, nil
}

func (w *pickleWalker) notAllowed(off int64, via string, module, name []byte, resolved string) error {
	lit := globalDisplay(string(module), string(name))
	if m, q, ok := strings.Cut(resolved, "\x00"); ok {
		if r, listed := w.al.never[resolved]; listed {
			return w.errAt(off, "%s imports %s, which is not in the allowlist: it is listed, but can never be allowed (%s)", via, lit, r)
		}
		if m == "joblib.numpy_pickle" && (q == "NumpyArrayWrapper" || q == "NDArrayWrapper" || q == "ZNDArrayWrapper") && !w.joblib {
			return w.errAt(off, "%s imports %s, which is not in the allowlist (a joblib array wrapper: raw array bytes follow it, so the file is a joblib dump and is walked only as one)", via, lit)
		}
	}
	if !w.tsClasses && (torchScriptClass(module, name) || torchJitPickleBuilder(module, name)) {
		// torch.jit.save writes data.pkl, with the module's class, before
		// code/ and constants.pkl: name the format the archive is.
		return w.errAt(off, "%s imports %s, which is not in the allowlist (content.formats.pickle.allow): a name only TorchScript archives (torch.jit.save) use, "+
			"and torch.jit.load runs their code/ (CVE-2022-45907); content.formats.torchscript: allow admits them", via, lit)
	}
	// The key that holds the allowlist is named (a __main__ class, dill or
	// sklearn is refused here by design; entries that run code cannot be
	// added to it, see CheckPickleAllow).
	return w.errAt(off, "%s imports %s, which is not in the allowlist (content.formats.pickle.allow)", via, lit)
}

func (w *pickleWalker) entry(v pval) *pickleEntry { return &w.al.entries[v.ref] }

// describe names a value in a finding.
func (w *pickleWalker) describe(v pval) string {
	switch v.kind {
	case vStr, vStrLong:
		return "a str"
	case vBytes:
		return "bytes"
	case vInt, vLong:
		return "an int"
	case vFloat:
		return "a float"
	case vBool:
		return "a bool"
	case vNone:
		return "None"
	case vTuple:
		return "a tuple"
	case vList:
		return "a list"
	case vDict:
		return "a dict"
	case vSet:
		return "a set"
	case vFrozenset:
		return "a frozenset"
	case vGlobal:
		return "the global " + w.entry(v).display
	case vObj:
		return "the result of " + w.entry(v).display
	case vPersist:
		return "a torch storage"
	}
	return "an opaque value"
}

// call applies REDUCE: fn must be an allowlisted callable global and args a
// tuple that satisfies the entry's argument rule.
func (w *pickleWalker) call(off int64, op string, fn, args pval) (pval, error) {
	if fn.kind != vGlobal {
		if fn.kind == vObj {
			return pval{}, w.errAt(off, "%s calls %s, not an allowlisted global (cannot be resolved statically)", op, w.describe(fn))
		}
		return pval{}, w.errAt(off, "%s calls a value that is not an allowlisted global (cannot be resolved statically)", op)
	}
	e := w.entry(fn)
	if !e.call {
		return pval{}, w.errAt(off, "%s calls %s, which is not in the allowlist as a callable (it is admitted as a value only)", op, e.display)
	}
	if args.kind != vTuple {
		return pval{}, w.errAt(off, "%s calls %s with %s as its arguments, not a tuple", op, e.display, w.describe(args))
	}
	items, tracked := w.items(args)
	return w.apply(off, op, fn, e, items, tracked, args.n)
}

// callItems applies INST / OBJ: a call with the arguments found above the
// mark (no argument rule can be checked there, so only entries without one
// are accepted).
func (w *pickleWalker) callItems(off int64, op string, fn pval, items []pval) (pval, error) {
	if fn.kind != vGlobal {
		return pval{}, w.errAt(off, "%s instantiates a value that is not an allowlisted global", op)
	}
	e := w.entry(fn)
	if !e.call || e.args != argTuple {
		return pval{}, w.errAt(off, "%s instantiates %s, which is not in the allowlist for %s (only REDUCE may call it)", op, e.display, op)
	}
	return w.callResult(fn, e), nil
}

// apply checks a call's arguments against the entry's rule and returns its
// result.
func (w *pickleWalker) apply(off int64, op string, fn pval, e *pickleEntry, items []pval, tracked bool, n int64) (pval, error) {
	bad := func(want string) (pval, error) {
		return pval{}, w.errAt(off, "%s calls %s with arguments other than %s", op, e.display, want)
	}
	switch e.args {
	case argLatin1:
		if !tracked || n != 2 || (items[0].kind != vStr && items[0].kind != vStrLong) || !w.isStr(items[1], "latin1") {
			return bad(`(str, "latin1") (how pickle protocols < 3 write bytes)`)
		}
	case argEmpty:
		if n != 0 {
			return bad("()")
		}
	case argBytes:
		if n != 0 && (!tracked || n != 1 || items[0].kind != vBytes) {
			return bad("() or (bytes,)")
		}
	case argDtype:
		if !tracked || n != 3 || items[0].kind != vStr || items[1].kind != vBool || items[2].kind != vBool {
			return bad("(str, bool, bool) (how numpy pickles a dtype)")
		}
		k, size, ok := parseDtypeSpec(w.str(items[0]))
		if !ok {
			return pval{}, w.errAt(off, "%s calls numpy.dtype with %q, which is not a dtype numpy writes in a pickle", op, truncate(w.str(items[0])))
		}
		return pval{kind: vObj, ref: fn.ref, n: size<<8 | int64(k)}, nil
	case argReconstruct:
		if !tracked || n != 3 || items[0].kind != vGlobal || w.entry(items[0]).tag != tagNdarray {
			return bad("(numpy.ndarray, shape, typecode)")
		}
	case argScalar:
		if !tracked || n < 1 || n > 2 || !w.isDtype(items[0]) {
			return bad("(numpy.dtype, data)")
		}
	case argFrombuffer:
		if !tracked || n != 4 || !w.isDtype(items[1]) {
			return bad("(buffer, numpy.dtype, shape, order)")
		}
	}
	return w.callResult(fn, e), nil
}

func (w *pickleWalker) callResult(fn pval, e *pickleEntry) pval {
	switch e.rc {
	case rcBytes:
		return pval{kind: vBytes}
	case rcSet:
		return pval{kind: vSet}
	case rcFrozen:
		return pval{kind: vFrozenset}
	}
	return pval{kind: vObj, ref: fn.ref, n: -1}
}

// newObj applies NEWOBJ / NEWOBJ_EX: cls.__new__(cls, *args).
func (w *pickleWalker) newObj(off int64, op string, cls, args pval) (pval, error) {
	if cls.kind != vGlobal {
		return pval{}, w.errAt(off, "%s instantiates a value that is not an allowlisted global", op)
	}
	e := w.entry(cls)
	if !e.newobj {
		return pval{}, w.errAt(off, "%s instantiates %s, which is not in the allowlist for %s", op, e.display, op)
	}
	if args.kind != vTuple {
		return pval{}, w.errAt(off, "%s instantiates %s with %s as its arguments, not a tuple", op, e.display, w.describe(args))
	}
	if e.rc == rcWrapper {
		return w.newWrapper(off, cls)
	}
	return pval{kind: vObj, ref: cls.ref, n: -1}, nil
}

// checkTarget checks what APPEND(S), SETITEM(S) and ADDITEMS fill: a
// container of the expected kind or an object whose class accepts it.
func (w *pickleWalker) checkTarget(off int64, op string, t pval, want uint8) error {
	if t.kind == want {
		return nil
	}
	if t.kind == vObj {
		switch w.entry(t).rc {
		case rcUser:
			return nil
		case rcDict:
			if want == vDict {
				return nil
			}
		}
	}
	what := map[uint8]string{vList: "list", vDict: "dict", vSet: "set"}[want]
	return w.errAt(off, "%s on %s, which is not a %s (the loader would call its methods)", op, w.describe(t), what)
}

// build applies BUILD (inst.__setstate__(state) or the __dict__ update):
// only objects whose class the allowlist admits for state-setting, with the
// state that class takes. array is true when a joblib array wrapper was
// built: res then replaces it on the stack.
func (w *pickleWalker) build(off int64, inst, state pval) (res pval, array bool, err error) {
	if inst.kind != vObj {
		return pval{}, false, w.errAt(off, "BUILD sets the state of %s, which is not in the allowlist for state-setting", w.describe(inst))
	}
	e := w.entry(inst)
	switch e.rc {
	case rcUser:
		return pval{}, false, nil
	case rcDict:
		if state.kind != vDict {
			return pval{}, false, w.errAt(off, "BUILD sets the state of the result of %s from %s; only a dict state (no slot state) is accepted", e.display, w.describe(state))
		}
		return pval{}, false, nil
	case rcDtype:
		return pval{}, false, w.buildDtype(off, inst, state)
	case rcNdarray:
		items, tracked := w.items(state)
		var dt pval
		switch {
		case state.kind != vTuple || !tracked:
		case state.n == 5:
			dt = items[2]
		case state.n == 4:
			dt = items[1]
		}
		if !w.isDtype(dt) {
			return pval{}, false, w.errAt(off, "BUILD sets the state of a numpy array from %s, not (version, shape, numpy.dtype, fortran, data)", w.describe(state))
		}
		return pval{}, false, nil
	case rcWrapper:
		return w.buildWrapper(off, inst, state)
	}
	return pval{}, false, w.errAt(off, "BUILD sets the state of the result of %s, which is not in the allowlist for state-setting", e.display)
}

// ---- numpy dtypes -------------------------------------------------------------
//
// numpy.dtype.__setstate__ trusts its state: an object dtype whose flags
// claim plain data, a structured dtype with fields past its itemsize, or a
// subarray larger than the item make numpy read raw bytes as object
// pointers or out of bounds. The walker accepts exactly the states numpy's
// own arraydescr_reduce writes (numpy/_core/src/multiarray/descriptor.c),
// without Python objects inside structured or subarray dtypes, so no state
// can change a dtype's kind, itemsize or object-ness.

// parseDtypeSpec parses the "%c%d" spec numpy writes (kind, elsize; the
// count of characters for U) and returns the kind and the itemsize.
func parseDtypeSpec(s string) (kind byte, itemsize int64, ok bool) {
	if len(s) < 2 || len(s) > 12 {
		return 0, 0, false
	}
	n, err := strconv.ParseInt(s[1:], 10, 64)
	if err != nil || n <= 0 || s[1] == '0' || s[1] == '+' || s[1] == '-' {
		return 0, 0, false
	}
	kind = s[0]
	switch kind {
	case 'b':
		ok = n == 1
	case 'i', 'u':
		ok = n == 1 || n == 2 || n == 4 || n == 8
	case 'f':
		ok = n == 2 || n == 4 || n == 8 || n == 12 || n == 16
	case 'c':
		ok = n == 8 || n == 16 || n == 24 || n == 32
	case 'M', 'm', 'O':
		ok = n == 8
	case 'S', 'V':
		ok = n < 1<<31
	case 'U':
		ok = n < 1<<29
		n *= 4
	}
	return kind, n, ok
}

func (w *pickleWalker) isDtype(v pval) bool {
	return v.kind == vObj && w.entry(v).rc == rcDtype && v.n >= 0
}

func dtypeKind(v pval) byte      { return byte(v.n & 0xff) }
func dtypeItemsize(v pval) int64 { return v.n >> 8 }

func (w *pickleWalker) buildDtype(off int64, inst, state pval) error {
	kind, size := dtypeKind(inst), dtypeItemsize(inst)
	bad := func(why string, args ...any) error {
		return w.errAt(off, "BUILD sets the state of a numpy.dtype (%c%d) %s; only the state numpy writes is accepted", kind, size, fmt.Sprintf(why, args...))
	}
	it, tracked := w.items(state)
	if state.kind != vTuple || !tracked || (state.n != 8 && state.n != 9) {
		return bad("from %s, not an 8- or 9-item tuple", w.describe(state))
	}
	if it[0].kind != vInt || it[0].n != state.n-5 { // 3 for 8 items, 4 for 9
		return bad("with version %s", w.intText(it[0]))
	}
	if !(w.isStr(it[1], "<") || w.isStr(it[1], ">") || w.isStr(it[1], "|") || w.isStr(it[1], "=")) {
		return bad("with a byte order that is not one of < > | =")
	}
	extended := kind == 'S' || kind == 'U' || kind == 'V'
	if extended {
		if it[5].kind != vInt || it[5].n != size || it[6].kind != vInt || it[6].n < 1 || it[6].n > 64 {
			return bad("with elsize %s (want %d) or alignment %s", w.intText(it[5]), size, w.intText(it[6]))
		}
	} else if it[5].kind != vInt || it[5].n != -1 || it[6].kind != vInt || it[6].n != -1 {
		return bad("with elsize %s and alignment %s (want -1, -1)", w.intText(it[5]), w.intText(it[6]))
	}
	var flagsOK bool
	if it[7].kind == vInt {
		switch kind {
		case 'O':
			flagsOK = it[7].n == 63 // NPY_OBJECT_DTYPE_FLAGS
		case 'V':
			flagsOK = it[7].n == 0 || it[7].n == 0x80 // no objects; NPY_ALIGNED_STRUCT
		default:
			flagsOK = it[7].n == 0
		}
	}
	if !flagsOK {
		return bad("with flags %s (they decide whether numpy reads items as object pointers)", w.intText(it[7]))
	}
	if err := w.checkDtypeLayout(it, kind, size, bad); err != nil {
		return err
	}
	if state.n == 9 {
		switch {
		case kind == 'M' || kind == 'm':
			if it[8].kind != vTuple || it[8].n != 2 {
				return bad("with datetime metadata that is not a pair")
			}
		case it[8].kind != vDict && it[8].kind != vNone:
			return bad("with metadata that is not a dict")
		}
	} else if kind == 'M' || kind == 'm' {
		return bad("without datetime metadata")
	}
	return nil
}

// checkDtypeLayout checks the subarray (it[2]) and the names and fields
// (it[3], it[4]) of a dtype state: only structured void dtypes have them,
// without Python objects and inside the item.
func (w *pickleWalker) checkDtypeLayout(it []pval, kind byte, size int64, bad func(string, ...any) error) error {
	if it[2].kind != vNone {
		if kind != 'V' {
			return bad("with a subarray")
		}
		sub, ok := w.items(it[2])
		if it[2].kind != vTuple || !ok || it[2].n != 2 || !w.isDtype(sub[0]) || dtypeKind(sub[0]) == 'O' {
			return bad("with a subarray that is not (numpy.dtype without objects, shape)")
		}
		count, ok := w.shapeCount(sub[1], true)
		if !ok || count > math.MaxInt64/max(dtypeItemsize(sub[0]), 1) || count*dtypeItemsize(sub[0]) != size {
			return bad("with a subarray whose size is not the item size")
		}
	}
	if (it[3].kind == vNone) != (it[4].kind == vNone) {
		return bad("with names and fields that do not match")
	}
	if it[4].kind != vNone {
		if kind != 'V' || it[3].kind != vTuple || it[4].kind != vDict || it[4].ref < 0 || w.dicts[it[4].ref].over {
			return bad("with fields that are not a dict of (numpy.dtype, offset)")
		}
		d := w.dicts[it[4].ref].items
		for k := 1; k < len(d); k += 2 {
			f, ok := w.items(d[k])
			if d[k].kind != vTuple || !ok || d[k].n < 2 || d[k].n > 3 || !w.isDtype(f[0]) || f[1].kind != vInt {
				return bad("with a field that is not (numpy.dtype, offset[, title])")
			}
			if dtypeKind(f[0]) == 'O' {
				return bad("with a field holding Python objects")
			}
			if f[1].n < 0 || f[1].n > size || dtypeItemsize(f[0]) > size-f[1].n {
				return bad("with a field at offset %d of %d bytes outside the item", f[1].n, dtypeItemsize(f[0]))
			}
		}
	}
	return nil
}

// shapeCount returns the element count of a shape (a tracked tuple of
// non-negative ints; with scalarOK also a single int), refusing overflow.
func (w *pickleWalker) shapeCount(v pval, scalarOK bool) (int64, bool) {
	if scalarOK && v.kind == vInt {
		return v.n, v.n >= 0
	}
	dims, ok := w.items(v)
	if v.kind != vTuple || !ok {
		return 0, false
	}
	count := int64(1)
	for _, d := range dims {
		if d.kind != vInt || d.n < 0 {
			return 0, false
		}
		if d.n != 0 && count > math.MaxInt64/d.n {
			return 0, false
		}
		count *= d.n
	}
	return count, true
}

func (w *pickleWalker) intText(v pval) string {
	if v.kind == vInt {
		return strconv.FormatInt(v.n, 10)
	}
	return w.describe(v)
}

// ---- torch persistent ids -------------------------------------------------

// persistentID checks a BINPERSID argument: torch's persistent_load accepts
// ('storage', storage class, key, location, numel[, view metadata]).
func (w *pickleWalker) persistentID(off int64, v pval) error {
	t, tracked := w.items(v)
	if v.kind != vTuple || !tracked || (v.n != 5 && v.n != 6) || !w.isStr(t[0], "storage") {
		return w.errAt(off, "BINPERSID with %s, not a torch storage reference ('storage', type, key, location, numel)", w.describe(v))
	}
	if t[1].kind != vGlobal || w.entry(t[1]).elem == 0 || t[2].kind != vStr || t[3].kind != vStr || t[4].kind != vInt || t[4].n < 0 {
		return w.errAt(off, "BINPERSID with a malformed torch storage reference (want an allowlisted storage class, str key, str location and element count)")
	}
	if v.n == 6 && t[5].kind != vNone && t[5].kind != vTuple {
		return w.errAt(off, "BINPERSID with malformed storage view metadata")
	}
	if len(w.storages) >= maxStorages || w.storageKeyBytes+t[2].n > maxStorageKeyBytes {
		return w.errAt(off, "more than %d torch storage references or %d bytes of storage keys", maxStorages, maxStorageKeyBytes)
	}
	w.storageKeyBytes += t[2].n
	w.storages = append(w.storages, storageRef{Type: w.entry(t[1]).display, Key: w.str(t[2]), Numel: t[4].n})
	return nil
}

// ---- containers -------------------------------------------------------------

func (w *pickleWalker) frameLen() int {
	if len(w.marks) == 0 {
		return len(w.stack)
	}
	return len(w.stack) - w.marks[len(w.marks)-1]
}

func (w *pickleWalker) push(off int64, v pval) error {
	if len(w.stack)+len(w.marks) >= w.maxStack {
		return w.stackFull(off)
	}
	w.stack = append(w.stack, v)
	return nil
}

func (w *pickleWalker) stackFull(off int64) error {
	return w.errAt(off, "stack depth exceeds %d", w.maxStack)
}

func (w *pickleWalker) pushStr(off int64, data []byte, plain bool) error {
	v := pval{kind: vStrLong}
	if plain && len(data) <= maxKeptString {
		var err error
		if v, err = w.keep(off, vStr, data); err != nil {
			return err
		}
		if w.collect != nil {
			*w.collect = append(*w.collect, string(data))
		}
	}
	return w.push(off, v)
}

// keep stores b in the arena and returns a value of the given kind
// referring to it.
func (w *pickleWalker) keep(off int64, kind uint8, b []byte) (pval, error) {
	if len(w.arena)+len(b) > maxArena {
		if kind == vStr {
			return pval{kind: vStrLong}, nil
		}
		return pval{kind: kind, ref: -1}, nil
	}
	v := pval{kind: kind, ref: int32(len(w.arena)), n: int64(len(b))}
	w.arena = append(w.arena, b...)
	return v, nil
}

// str returns the kept string of v (allocates; used on the rare paths).
func (w *pickleWalker) str(v pval) string {
	switch v.kind {
	case vStr:
		return string(w.arena[v.ref : int64(v.ref)+v.n])
	case vLong:
		if v.ref >= 0 {
			return string(w.arena[v.ref : int64(v.ref)+v.n])
		}
	}
	return ""
}

// isStr reports whether v is the kept string s (no allocation).
func (w *pickleWalker) isStr(v pval, s string) bool {
	return v.kind == vStr && int(v.n) == len(s) && string(w.arena[v.ref:int64(v.ref)+v.n]) == s
}

func (w *pickleWalker) pop(off int64, what string) (pval, error) {
	if w.frameLen() == 0 {
		return pval{}, w.errAt(off, "%s on an empty stack", what)
	}
	v := w.stack[len(w.stack)-1]
	w.stack = w.stack[:len(w.stack)-1]
	return v, nil
}

// popMark removes the items above the topmost mark and the mark itself. The
// returned slice aliases the stack and is valid until the next push.
func (w *pickleWalker) popMark(off int64) ([]pval, error) {
	if len(w.marks) == 0 {
		return nil, w.errAt(off, "MARK expected but the mark stack is empty")
	}
	m := w.marks[len(w.marks)-1]
	w.marks = w.marks[:len(w.marks)-1]
	items := w.stack[m:]
	w.stack = w.stack[:m]
	return items, nil
}

// tuple records a tuple; its items are kept when it is small enough.
func (w *pickleWalker) tuple(items []pval) pval {
	if len(items) <= maxTrackedTuple && len(w.tuples)+len(items) <= maxTupleSlots {
		ref := int32(len(w.tuples))
		w.tuples = append(w.tuples, items...)
		return pval{kind: vTuple, ref: ref, n: int64(len(items))}
	}
	return pval{kind: vTuple, ref: -1, n: int64(len(items))}
}

// items returns a tuple's items, if they were kept.
func (w *pickleWalker) items(v pval) ([]pval, bool) {
	if v.kind != vTuple || v.ref < 0 {
		return nil, false
	}
	return w.tuples[v.ref : int64(v.ref)+v.n], true
}

func (w *pickleWalker) newDict(items []pval) pval {
	if len(w.dicts) >= maxDictRecords {
		return pval{kind: vDict, ref: -1}
	}
	v := pval{kind: vDict, ref: int32(len(w.dicts))}
	w.dicts = append(w.dicts, dictRec{})
	w.dictAdd(v, items)
	return v
}

// dictAdd records key/value pairs set on a tracked dict.
func (w *pickleWalker) dictAdd(d pval, kv []pval) {
	if d.kind != vDict || d.ref < 0 || len(kv) == 0 {
		return
	}
	r := &w.dicts[d.ref]
	if r.over {
		return
	}
	if len(r.items)+len(kv) > 2*maxEntriesInOne || w.dictItems+len(kv)/2 > maxDictEntries {
		r.over, r.items = true, nil
		return
	}
	r.items = append(r.items, kv...)
	w.dictItems += len(kv) / 2
}

// dictGet returns the value of str key k in a tracked dict (the last one
// set, as Python's dict keeps), and whether the dict is fully known.
func (w *pickleWalker) dictGet(d pval, k string) (v pval, found, known bool) {
	if d.kind != vDict || d.ref < 0 || w.dicts[d.ref].over {
		return pval{}, false, false
	}
	it := w.dicts[d.ref].items
	for j := len(it) - 2; j >= 0; j -= 2 {
		if w.isStr(it[j], k) {
			return it[j+1], true, true
		}
	}
	return pval{}, false, true
}

func (w *pickleWalker) memoGet(idx uint64) (pval, bool) {
	if idx < uint64(len(w.memo)) {
		v := w.memo[idx]
		return v, v.kind != vUnset
	}
	v, ok := w.memoSparse[idx]
	return v, ok
}

func (w *pickleWalker) memoPut(off int64, idx uint64, v pval) error {
	if idx < uint64(len(w.memo)) {
		if w.memo[idx].kind == vUnset {
			w.memoCount++
		}
		w.memo[idx] = v
		return nil
	}
	if _, ok := w.memoSparse[idx]; ok {
		w.memoSparse[idx] = v
		return nil
	}
	if w.memoCount >= w.maxMemo {
		return w.errAt(off, "memo exceeds %d entries", w.maxMemo)
	}
	w.memoCount++
	if idx < uint64(len(w.memo))+1024 && idx < uint64(w.maxMemo) {
		for uint64(len(w.memo)) < idx {
			w.memo = append(w.memo, pval{kind: vUnset})
		}
		w.memo = append(w.memo, v)
		return nil
	}
	if len(w.memoSparse) >= maxSparseMemo {
		return w.errAt(off, "memo index %d: more than %d memo entries out of order (pickle.py numbers them in order)", idx, maxSparseMemo)
	}
	if w.memoSparse == nil {
		w.memoSparse = map[uint64]pval{}
	}
	w.memoSparse[idx] = v
	return nil
}

func isDottedIdent(s string) bool { return isDottedIdentBytes([]byte(s)) }

func isDottedIdentBytes(s []byte) bool {
	if len(s) == 0 || len(s) > maxKeptString {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s[0] != '.' && s[len(s)-1] != '.' && !bytes.Contains(s, []byte(".."))
}

func isDecimal(s string) bool {
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

var opNames = map[byte]string{
	'(': "MARK", '.': "STOP", '0': "POP", '1': "POP_MARK", '2': "DUP", 'F': "FLOAT", 'I': "INT", 'J': "BININT",
	'K': "BININT1", 'L': "LONG", 'M': "BININT2", 'N': "NONE", 'P': "PERSID", 'Q': "BINPERSID", 'R': "REDUCE",
	'S': "STRING", 'T': "BINSTRING", 'U': "SHORT_BINSTRING", 'V': "UNICODE", 'X': "BINUNICODE", 'a': "APPEND",
	'b': "BUILD", 'c': "GLOBAL", 'd': "DICT", '}': "EMPTY_DICT", 'e': "APPENDS", 'g': "GET", 'h': "BINGET",
	'i': "INST", 'j': "LONG_BINGET", 'l': "LIST", ']': "EMPTY_LIST", 'o': "OBJ", 'p': "PUT", 'q': "BINPUT",
	'r': "LONG_BINPUT", 's': "SETITEM", 't': "TUPLE", ')': "EMPTY_TUPLE", 'u': "SETITEMS", 'G': "BINFLOAT",
	0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
	0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4", 'B': "BINBYTES",
	'C': "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8", 0x8f: "EMPTY_SET",
	0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME",
	0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}

func opName(op byte) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("opcode 0x%02x", op)
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// streamBuf accumulates bytes that a parser could not consume yet.
type streamBuf struct {
	b    []byte
	base int64 // absolute offset of b[0]
}

func (s *streamBuf) consume(n int) {
	s.b = s.b[n:]
	s.base += int64(n)
	if len(s.b) == 0 {
		s.b = s.b[:0:0]
	}
}

// ---- inspector ----------------------------------------------------------------

// PickleInspector validates a raw pickle stream (one pickle; with Legacy,
// the legacy torch.save layout of several pickles followed by storages;
// with joblib, a joblib dump: a pickle whose array wrappers are followed by
// the arrays' bytes).
type PickleInspector struct {
	w      *pickleWalker
	opts   Options
	buf    streamBuf
	size   int64
	seen   int64
	err    error
	legacy bool
	// legacy state
	stage    int // pickles completed
	keys     []string
	storage  int   // index of the storage being read
	need     int64 // raw bytes left in the current storage
	pending  []byte
	refs     map[string]storageRef
	finished bool // single pickle finished (non legacy) or all storages read
	retryAt  int  // buffered length at which to re-walk an incomplete opcode
	// joblib state: the array being read after a wrapper
	padPending bool          // the padding-length byte comes next
	rawLeft    int64         // raw array (and padding) bytes still to skip
	skipLeft   int64         // bytes payload (BINBYTES, BINBYTES8, BYTEARRAY8) bytes still to skip
	nested     *pickleWalker // the pickle of an object array
}

// legacyTorchMagic is torch's MAGIC_NUMBER 0x1950a86a20f9469cfc6c as LONG1
// little-endian bytes.
var legacyTorchMagic = string([]byte{0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19})

// NewPickleInspector returns an opcode-walking inspector for a raw pickle.
// The walker runs regardless of opts.Pickle.Mode; the mode is applied by
// NewInspector.
func NewPickleInspector(opts Options, size int64) *PickleInspector {
	p := newSpeculativePickleInspector(opts, size)
	p.w.presize(size)
	return p
}

// newSpeculativePickleInspector is NewPickleInspector without the tables
// reserved up front (about 3.5 bytes per pickle byte, 28.5 MiB from 8 MiB
// on): for a walk over bytes that are rarely a pickle (text and binary
// layers, opaqueInspector), which usually fails within a few bytes.
func newSpeculativePickleInspector(opts Options, size int64) *PickleInspector {
	return &PickleInspector{w: newPickleWalker(opts, FormatPickle), opts: opts, size: size}
}

// presize reserves memo, string arena and tuple space in proportion to the
// declared size (bounded), so that typical state dicts never regrow them.
func (w *pickleWalker) presize(size int64) {
	if size <= 0 {
		return
	}
	h := min(size, 8<<20)
	w.memo = make([]pval, 0, min(h/16, int64(w.maxMemo)))
	w.arena = make([]byte, 0, h/4)
	w.tuples = make([]pval, 0, min(h/8, maxTupleSlots)) // ~20 slots per tensor (~130 pickle bytes)
	w.storages = make([]storageRef, 0, h/128)           // one per tensor
	w.stack = make([]pval, 0, 2048)
}

// NewLegacyTorchInspector validates the legacy (pre-1.6) torch.save layout:
// magic pickle, protocol 1001, sys_info, the object pickle, the storage key
// list, then for each key an 8-byte element count and the raw storage.
func NewLegacyTorchInspector(opts Options, size int64) *PickleInspector {
	w := newPickleWalker(opts, FormatLegacyTorch)
	w.presize(size)
	return &PickleInspector{w: w, opts: opts, size: size, legacy: true}
}

func (p *PickleInspector) Format() string { return p.w.format }

// HeaderDone is true once every pickle has been walked (for a raw pickle,
// that is the whole blob; for legacy torch, before the raw storages).
func (p *PickleInspector) HeaderDone() bool {
	if p.legacy {
		return p.stage >= 5
	}
	return p.finished
}

// Globals lists the imports the pickle(s) make.
func (p *PickleInspector) Globals() []string {
	if p.nested != nil { // an object array's pickle is being walked
		for g := range p.nested.globals {
			p.w.globals[g] = true
		}
	}
	return p.w.Globals()
}

func (p *PickleInspector) fail(off int64, reason string, args ...any) error {
	p.err = newFinding(p.w.format, off, reason, args...)
	return p.err
}

func (p *PickleInspector) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n := len(b)
	start := p.seen
	p.seen += int64(n)
	if p.size >= 0 && p.seen > p.size {
		return 0, p.fail(p.size, "more bytes than the declared size %d", p.size)
	}
	if p.legacy && p.stage >= 5 {
		return n, p.storages(b, start)
	}
	if p.finished {
		return 0, p.fail(start, "%s", trailingReason(p.size, start, "the pickle STOP opcode"))
	}
	if len(p.buf.b) == 0 {
		p.buf.base = start
		rest, err := p.walk(b)
		if err != nil {
			return 0, err
		}
		p.buf.b = append(p.buf.b[:0:0], rest...)
		if len(rest) > 0 && len(rest) == len(b) {
			p.retryAt = 2 * len(rest)
		}
		return n, nil
	}
	p.buf.b = append(p.buf.b, b...)
	// An opcode argument is still incomplete: re-walk only once the buffer
	// has doubled, so dribbled bytes cost linear, not quadratic, time.
	if len(p.buf.b) < p.retryAt {
		return n, nil
	}
	before := len(p.buf.b)
	rest, err := p.walk(p.buf.b)
	if err != nil {
		return 0, err
	}
	p.retryAt = 0
	if len(rest) == before {
		p.retryAt = 2 * before
	}
	p.buf.b = rest
	return n, nil
}

// walk feeds data to the walker; it returns the unconsumed tail (an
// incomplete opcode). p.buf.base must be the offset of data[0].
func (p *PickleInspector) walk(data []byte) ([]byte, error) {
	for len(data) > 0 {
		if p.skipLeft > 0 {
			k := min(p.skipLeft, int64(len(data)))
			p.skipLeft -= k
			data = data[k:]
			p.buf.base += k
			continue
		}
		if p.padPending || p.rawLeft > 0 {
			k, err := p.arrayBytes(data, p.buf.base)
			if err != nil {
				return nil, err
			}
			data = data[k:]
			p.buf.base += int64(k)
			continue
		}
		w := p.w
		if p.nested != nil {
			w = p.nested
		}
		c, ev, err := w.feed(data, p.buf.base)
		if err != nil {
			p.err = err
			return nil, err
		}
		data = data[c:]
		p.buf.base += int64(c)
		switch ev {
		case evMore:
			return data, nil
		case evArray:
			if err := p.startArray(); err != nil {
				return nil, err
			}
			continue
		case evSkip:
			p.skipLeft, w.skipLeft = w.skipLeft, 0
			continue
		}
		if p.nested != nil { // an object array's pickle ended
			p.w.ops = p.nested.ops
			for g := range p.nested.globals {
				p.w.globals[g] = true
			}
			p.nested = nil
			continue
		}
		if err := p.afterStop(p.buf.base); err != nil {
			return nil, err
		}
		if p.finished {
			if len(data) > 0 {
				return nil, p.fail(p.buf.base, "%s", trailingReason(p.size, p.buf.base, "the pickle STOP opcode"))
			}
			return nil, nil
		}
		if p.legacy && p.stage >= 5 {
			if err := p.storages(data, p.buf.base); err != nil {
				return nil, err
			}
			return nil, nil
		}
	}
	return nil, nil
}

func (p *PickleInspector) afterStop(off int64) error {
	if !p.legacy {
		p.finished = true
		return nil
	}
	r := p.w.result
	switch p.stage {
	case 0:
		if r.kind != vLong || p.w.str(r) != legacyTorchMagic {
			return p.fail(off, "first pickle is not the torch legacy magic number")
		}
	case 1:
		if r.kind != vInt || r.n != 1001 {
			return p.fail(off, "second pickle is not torch legacy protocol version 1001")
		}
	case 3:
		// object pickle done; next pickle lists storage keys
		p.w.collect = &p.keys
	case 4:
		p.w.collect = nil
		p.refs = map[string]storageRef{}
		for _, s := range p.w.storages {
			if old, dup := p.refs[s.Key]; dup && old != s {
				return p.fail(off, "storage %q referenced with conflicting types or sizes", s.Key)
			}
			p.refs[s.Key] = s
		}
		seen := map[string]bool{}
		for _, k := range p.keys {
			if seen[k] {
				return p.fail(off, "storage key %q listed twice", k)
			}
			seen[k] = true
			if _, ok := p.refs[k]; !ok {
				return p.fail(off, "storage key %q is not referenced by the object pickle", k)
			}
		}
		if len(seen) != len(p.refs) {
			return p.fail(off, "object pickle references %d storages but the key list has %d", len(p.refs), len(seen))
		}
	}
	p.stage++
	return nil
}

// storages consumes the raw storage section of a legacy torch file.
func (p *PickleInspector) storages(b []byte, off int64) error {
	for len(b) > 0 {
		if p.storage >= len(p.keys) && p.need == 0 && len(p.pending) == 0 {
			return p.fail(off, "%s", trailingReason(p.size, off, "the last storage"))
		}
		if p.need > 0 {
			k := min(p.need, int64(len(b)))
			p.need -= k
			b = b[k:]
			off += k
			continue
		}
		k := min(8-len(p.pending), len(b))
		p.pending = append(p.pending, b[:k]...)
		b = b[k:]
		off += int64(k)
		if len(p.pending) < 8 {
			continue
		}
		numel := int64(binary.LittleEndian.Uint64(p.pending))
		p.pending = p.pending[:0]
		ref := p.refs[p.keys[p.storage]]
		if numel != ref.Numel {
			return p.fail(off-8, "storage %q has %d elements but the pickle declares %d", ref.Key, numel, ref.Numel)
		}
		es, ok := torchStorageElemSize[ref.Type]
		if !ok {
			return p.fail(off-8, "storage %q has unknown type %s", ref.Key, ref.Type)
		}
		if numel < 0 || numel > math.MaxInt64/es {
			return p.fail(off-8, "storage %q size overflows", ref.Key)
		}
		p.need = numel * es
		p.storage++
	}
	return nil
}

func (p *PickleInspector) Close() error {
	if p.err != nil {
		return p.err
	}
	if len(p.buf.b) > 0 {
		rest, err := p.walk(p.buf.b)
		if err != nil {
			return err
		}
		p.buf.b = rest
	}
	if p.size >= 0 && p.seen != p.size {
		return p.fail(p.seen, "truncated: %d of %d bytes", p.seen, p.size)
	}
	if p.legacy {
		if p.stage < 5 {
			return p.fail(p.seen, "truncated legacy torch file: %d of 5 pickles complete", p.stage)
		}
		if p.need > 0 || len(p.pending) > 0 || p.storage < len(p.keys) {
			return p.fail(p.seen, "truncated legacy torch file: storage data incomplete (%d of %d storages)", p.storage, len(p.keys))
		}
		return nil
	}
	if p.padPending || p.rawLeft > 0 || p.nested != nil {
		return p.fail(p.seen, "truncated joblib file: the stream ends inside an array")
	}
	if !p.finished {
		if p.w.ops == 0 {
			return p.fail(p.seen, "empty pickle")
		}
		return p.fail(p.seen, "truncated pickle: stream ends before the STOP opcode")
	}
	return nil
}
