package content_test

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// npyCorpusDir holds the real NumPy files (picklescan's test data).
const npyCorpusDir = "../../../shared/model-corpus/picklescan/tests/data2"

func npyCorpusFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(npyCorpusDir, name))
	if err != nil {
		t.Fatalf("real-file corpus missing: %v", err)
	}
	return b
}

// npyFile writes a .npy file exactly as numpy's _wrap_header does: magic,
// version, header length, the header padded with spaces so that the data
// starts on a 64-byte boundary, '\n', then the data.
func npyFile(major byte, header string, data []byte) []byte {
	lenSize := 2
	if major > 1 {
		lenSize = 4
	}
	hl := len(header) + 1
	pad := 64 - (8+lenSize+hl)%64
	return npyRaw(major, []byte(header+strings.Repeat(" ", pad)+"\n"), data)
}

// npyRaw writes the header bytes as given.
func npyRaw(major byte, header, data []byte) []byte {
	b := append([]byte("\x93NUMPY"), major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(header)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(header)))
	}
	return append(append(b, header...), data...)
}

func npyHeader(descr, shape string) string {
	return "{'descr': " + descr + ", 'fortran_order': False, 'shape': " + shape + ", }"
}

var npyDeny = "pickle: an object array is a pickle; pickle content is denied by policy (pickle: deny)"

// numpyAllow is the default allowlist plus the globals numpy writes for an
// object array.
func numpyAllow() []string {
	return append(slices.Clone(content.DefaultPickleAllow),
		"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype")
}

// inspectBytes runs content.InspectReader with bytes only (no media type,
// no title), as `pullgate inspect` does, and returns the format and the
// finding ("" = served) with its offset.
func inspectBytes(t *testing.T, opts content.Options, b []byte) (format, finding string, off int64) {
	t.Helper()
	rep, err := content.InspectReader(opts, bytes.NewReader(b), int64(len(b)), "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) == 0 {
		return rep.Format, "", -1
	}
	f := rep.Findings[0]
	return rep.Format, f.Format + ": " + f.Reason, f.Offset
}

func TestNPYRealFiles(t *testing.T) {
	// Whether numpy's reconstruction globals are in the default allowlist
	// (another change adds them) decides what the object arrays give under
	// scan with the default allowlist; both outcomes are exact.
	numpyDefault := slices.Contains(content.DefaultPickleAllow, "numpy.core.multiarray._reconstruct")
	notAllowed := func(via, g string) string {
		return "pickle: the object array's pickle (after the 128-byte NPY header): " + via + " imports " + g + ", which is not in the allowlist (content.formats.pickle.allow)"
	}
	type want struct {
		finding string
		off     int64
	}
	objScan := want{notAllowed("GLOBAL", "numpy.core.multiarray._reconstruct"), 130}
	dnsScan := want{notAllowed("STACK_GLOBAL", "numpy._core.multiarray._reconstruct"), 128 + 51}
	if numpyDefault {
		objScan = want{"", -1}
		dnsScan = want{notAllowed("STACK_GLOBAL", "ssl.get_server_certificate"), 128 + 174}
	}
	scanNumpy := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan, Allow: numpyAllow()}}
	for _, c := range []struct {
		file string
		opts content.Options
		want want
	}{
		{"int_array.npy", content.Options{}, want{"", -1}},
		{"int_array.npy", scanOpts, want{"", -1}},
		{"object_array.npy", content.Options{}, want{npyDeny, 128}},
		{"object_array.npy", scanOpts, objScan},
		{"object_array.npy", scanNumpy, want{"", -1}},
		{"dns_exfiltration.npy", content.Options{}, want{npyDeny, 128}},
		{"dns_exfiltration.npy", scanOpts, dnsScan},
		// with numpy allowed, the walker reaches the payload
		{"dns_exfiltration.npy", scanNumpy, want{notAllowed("STACK_GLOBAL", "ssl.get_server_certificate"), 128 + 174}},
	} {
		b := npyCorpusFile(t, c.file)
		name := c.file + "/" + string(c.opts.Pickle.Mode)
		if c.opts.Pickle.Allow != nil {
			name += "+numpy"
		}
		t.Run(name, func(t *testing.T) {
			format, finding, off := inspectBytes(t, c.opts, b)
			if format != content.FormatNPY {
				t.Errorf("sniffed %q, want npy", format)
			}
			if finding != c.want.finding || off != c.want.off {
				t.Errorf("got %q at %d\nwant %q at %d", finding, off, c.want.finding, c.want.off)
			}
			// same verdict however the stream is chunked
			mk := func(size int64) content.Inspector { return content.NewNPYInspector(c.opts, size) }
			for _, chunk := range []int{1, 3, 64, 129} {
				if got := verdict(t, mk, b, chunk); got != c.want.finding {
					t.Errorf("chunk %d: %q", chunk, got)
				}
			}
		})
	}
}

// TestNPYWriterMatchesNumpy pins the test helper to the real file numpy wrote.
func TestNPYWriterMatchesNumpy(t *testing.T) {
	real := npyCorpusFile(t, "int_array.npy")
	data := []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}
	if got := npyFile(1, npyHeader("'<i4'", "(2, 2)"), data); !bytes.Equal(got, real) {
		t.Fatalf("npyFile differs from numpy's int_array.npy:\n%q\n%q", got, real)
	}
}

// TestNPYZipMembers runs the validator on every member of the real .npz
// files (zips of .npy files; wiring them in the zip validator is separate).
func TestNPYZipMembers(t *testing.T) {
	objScan := "pickle: the object array's pickle (after the 128-byte NPY header): GLOBAL imports numpy.core.multiarray._reconstruct, which is not in the allowlist (content.formats.pickle.allow)"
	if slices.Contains(content.DefaultPickleAllow, "numpy.core.multiarray._reconstruct") {
		objScan = ""
	}
	scanNumpy := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan, Allow: numpyAllow()}}
	for _, c := range []struct {
		file       string
		deny, scan string // verdict per member (scan: default allowlist)
	}{
		{"int_arrays.npz", "", ""},
		{"int_arrays_compressed.npz", "", ""},
		{"object_arrays.npz", npyDeny, objScan},
		{"object_arrays_compressed.npz", npyDeny, objScan},
	} {
		b := npyCorpusFile(t, c.file)
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if len(zr.File) != 2 {
			t.Fatalf("%s: %d members", c.file, len(zr.File))
		}
		for _, zf := range zr.File {
			rc, err := zf.Open()
			if err != nil {
				t.Fatal(err)
			}
			m, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []struct {
				opts content.Options
				want string
			}{{content.Options{}, c.deny}, {scanOpts, c.scan}, {scanNumpy, ""}} {
				mk := func(size int64) content.Inspector { return content.NewNPYInspector(o.opts, size) }
				if got := verdict(t, mk, m, 5); got != o.want {
					t.Errorf("%s/%s (pickle %s, allow %d):\n got %q\nwant %q", c.file, zf.Name, o.opts.Pickle.Mode, len(o.opts.Pickle.Allow), got, o.want)
				}
			}
		}
	}
}

func TestNPYHostile(t *testing.T) {
	f4x4 := make([]byte, 16)
	objHeader := func(descr string) []byte {
		return npyFile(1, npyHeader(descr, "(1,)"), modelcorpus.OsSystemPickle())
	}
	osSystem := "pickle: the object array's pickle (after the 128-byte NPY header): GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)"
	deep := strings.Repeat("[('a', ", 20) + "'<f4'" + strings.Repeat(")]", 20)
	v3big := npyFile(3, npyHeader("[('"+strings.Repeat("é", 2600)+"', '<f4')]", "(1,)")+strings.Repeat(" ", 7500), f4x4[:4])
	v3ok := npyFile(3, npyHeader("[('"+strings.Repeat("é", 5500)+"', '<f4')]", "(1,)"), f4x4[:4])
	latin1 := npyFile(1, npyHeader("[('caf\xe9', '<f4')]", "(4,)"), f4x4) // numpy writes 1.0 when latin-1 encodes the header
	zipTail := append(make([]byte, 10), "PK\x05\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)
	for _, c := range []struct {
		name string
		opts content.Options
		data []byte
		want string
	}{
		// accepted: what numpy and other writers produce
		{"plain f4", content.Options{}, npyFile(1, npyHeader("'<f4'", "(4,)"), f4x4), ""},
		{"scalar", content.Options{}, npyFile(1, npyHeader("'<f8'", "()"), f4x4[:8]), ""},
		{"empty", content.Options{}, npyFile(1, npyHeader("'<f8'", "(0, 5)"), nil), ""},
		{"fortran true, cnpy spacing", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,2), }", f4x4), ""},
		{"no spaces, double quotes, key order", content.Options{}, npyFile(1, `{"shape":(4,),"fortran_order":False,"descr":"<f4"}`, f4x4), ""},
		{"python 2 long", content.Options{}, npyFile(1, npyHeader("'<f4'", "(2L, 2L)"), f4x4), ""},
		{"unicode", content.Options{}, npyFile(1, npyHeader("'<U2'", "(2,)"), f4x4), ""},
		{"datetime", content.Options{}, npyFile(1, npyHeader("'<M8[ns]'", "(2,)"), f4x4), ""},
		{"structured with subarray, title, padding", content.Options{}, npyFile(2, npyHeader(`[(('t', 'a'), '<u2', (3,)), ('', '|V2'), ('b', [('c', '|i1'), ('d', '>f4')])]`, "(1,)"), f4x4[:13]), ""},
		{"escaped field names", content.Options{}, npyFile(1, npyHeader(`[('it\'s', '<u2'), ("\"q\"", '<u2'), ('\x00\u00e9\U0001f600', '|u1'), ('\\', '|S3')]`, "(2,)"), f4x4), ""},
		{"latin-1 field name in 1.0", content.Options{}, latin1, ""},
		{"3.0 header over 10000 bytes, under 10000 characters", content.Options{}, v3ok, ""},
		{"object array in a structured dtype, scan", scanOpts, objHeader("[('a', '<f4'), ('b', '|O')]"), osSystem},

		// object dtype anywhere: the data is a pickle
		{"object |O", content.Options{}, objHeader("'|O'"), npyDeny},
		{"object bare O", content.Options{}, objHeader("'O'"), npyDeny},
		{"object O8", content.Options{}, objHeader("'|O8'"), npyDeny},
		{"object field", content.Options{}, objHeader("[('a', '<f4'), ('b', '|O')]"), npyDeny},
		{"object nested field", content.Options{}, objHeader("[('a', [('b', '<f4'), ('c', [('d', '|O')])])]"), npyDeny},
		{"object subarray field", content.Options{}, objHeader("[('a', '|O', (0,))]"), npyDeny},
		{"object spelled by escapes", content.Options{}, objHeader(`'\x7cO'`), npyDeny},
		{"object scan walks the pickle", scanOpts, objHeader("'|O'"), osSystem},
		{"object spelled 'object'", scanOpts, objHeader("'object'"),
			`npy: NPY header: descr "object" is not a dtype string numpy writes (e.g. '<f4', '|u1', '<U10', '|O')`},
		{"object comma string", scanOpts, objHeader("'<f4,O'"),
			`npy: NPY header: descr "<f4,O" is not a dtype string numpy writes (e.g. '<f4', '|u1', '<U10', '|O')`},
		{"pickle with trailing bytes", content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan, Allow: numpyAllow()}}, append(npyFile(1, npyHeader("'|O'", "(2, 2)"), npyCorpusFile(t, "object_array.npy")[128:]), 'x'),
			"pickle: the object array's pickle (after the 128-byte NPY header): 1 bytes of trailing data after the pickle STOP opcode"},

		// lying shapes
		{"data shorter", content.Options{}, npyFile(1, npyHeader("'<f4'", "(5,)"), f4x4),
			"npy: shape (5,) of \"<f4\" (itemsize 4) needs 20 data bytes after the 128-byte header, but the file has 16"},
		{"data longer", content.Options{}, npyFile(1, npyHeader("'<f4'", "(3,)"), f4x4),
			"npy: shape (3,) of \"<f4\" (itemsize 4) needs 12 data bytes after the 128-byte header, but the file has 16"},
		{"element count overflows", content.Options{}, npyFile(1, npyHeader("'|u1'", "(4294967296, 4294967296, 0)"), nil),
			"npy: NPY header: shape (4294967296, 4294967296, 0) has more than 2^63-1 elements"},
		{"byte size overflows", content.Options{}, npyFile(1, npyHeader("'<c32'", "(1152921504606846976,)"), nil),
			"npy: shape (1152921504606846976,) of \"<c32\" (itemsize 32) is too large: its size overflows"},
		{"dimension beyond int64", content.Options{}, npyFile(1, npyHeader("'<f4'", "(99999999999999999999,)"), nil),
			"npy: NPY header: shape has a dimension beyond 2^63-1"},
		{"negative dimension", content.Options{}, npyFile(1, npyHeader("'<f4'", "(-1,)"), f4x4),
			"npy: NPY header: shape has a negative dimension -1"},
		{"itemsize overflows", content.Options{}, npyFile(1, npyHeader("[('a', '|V999999999999999', (999999,))]", "(0,)"), nil),
			`npy: NPY header: field "a" is too large: its size overflows`},
		{"bool dimension", content.Options{}, npyFile(1, npyHeader("'<f4'", "(True,)"), f4x4[:4]),
			"npy: NPY header: shape is not a tuple of integers"},
		{"shape not a tuple", content.Options{}, npyFile(1, npyHeader("'<f4'", "(4)"), f4x4),
			"npy: NPY header: parenthesised value without a comma is not a tuple"},
		{"shape a list", content.Options{}, npyFile(1, npyHeader("'<f4'", "[4]"), f4x4),
			"npy: NPY header: shape is not a tuple of integers"},
		{"too many dimensions", content.Options{}, npyFile(1, npyHeader("'<f4'", "("+strings.Repeat("1, ", 65)+")"), f4x4[:4]),
			"npy: NPY header: shape has 65 dimensions (numpy allows 64)"},

		// nesting bombs
		{"descr nesting bomb", content.Options{}, npyFile(1, npyHeader(deep, "(1,)"), f4x4[:4]),
			"npy: NPY header: nested deeper than 16 levels"},
		{"shape nesting bomb", content.Options{}, npyFile(1, npyHeader("'<f4'", strings.Repeat("(", 5000)), nil),
			"npy: NPY header: nested deeper than 16 levels"},

		// header dict
		{"extra key", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1, }", f4x4),
			`npy: NPY header: unexpected key "x" (numpy requires exactly 'descr', 'fortran_order' and 'shape')`},
		{"duplicate key", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'shape': (100,), }", f4x4),
			`npy: NPY header: key "shape" appears twice (Python keeps the last one, other readers the first)`},
		{"missing key", content.Options{}, npyFile(1, "{'descr': '<f4', 'shape': (4,), }", f4x4),
			`npy: NPY header: missing key 'fortran_order' (numpy requires exactly 'descr', 'fortran_order' and 'shape')`},
		{"fortran_order 0", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (4,), }", f4x4),
			"npy: NPY header: fortran_order is not True or False"},
		{"fortran_order string", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': 'False', 'shape': (4,), }", f4x4),
			"npy: NPY header: fortran_order is not True or False"},
		{"fortran_order None", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': None, 'shape': (4,), }", f4x4),
			`npy: NPY header: name "None" is not a literal numpy writes (only True and False)`},
		{"not a dict", content.Options{}, npyFile(1, "['descr', '<f4']", f4x4),
			"npy: NPY header: does not start with '{' (want a Python dict literal)"},
		{"comment", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } # x", f4x4),
			`npy: NPY header: '#' after the dict (only spaces may pad the header)`},
		{"duplicate field", content.Options{}, npyFile(1, npyHeader("[('a', '<f4'), ('a', '<f4')]", "(1,)"), f4x4[:8]),
			`npy: NPY header: structured descr has field name or title "a" twice`},
		{"unknown escape", content.Options{}, npyFile(1, npyHeader(`'\q'`, "(1,)"), f4x4[:8]),
			`npy: NPY header: string escape "\\q" is not one Python's repr() writes`},
		{"string prefix", content.Options{}, npyFile(1, npyHeader("b'<f4'", "(4,)"), f4x4),
			`npy: NPY header: name "b" is not a literal numpy writes (only True and False)`},
		{"hex dimension", content.Options{}, npyFile(1, npyHeader("'<f4'", "(0x4,)"), f4x4),
			"npy: NPY header: number is not a plain decimal integer"},
		{"L suffix in 3.0", content.Options{}, npyFile(3, npyHeader("'<f4'", "(4L,)"), f4x4),
			"npy: NPY header: number is not a plain decimal integer"},

		// framing
		{"no final newline", content.Options{}, npyRaw(1, []byte(npyHeader("'<f4'", "(4,)")), f4x4),
			`npy: NPY header: does not end with a newline (numpy pads the header with spaces and a final '\n')`},
		{"newline padding", content.Options{}, npyRaw(1, []byte(npyHeader("'<f4'", "(4,)")+"\n\n"), f4x4),
			`npy: NPY header: byte 0x0a after the dict (only spaces may pad the header)`},
		{"non-ASCII space in 1.0", content.Options{}, npyFile(1, "{'descr':\xa0'<f4', 'fortran_order': False, 'shape': (4,), }", f4x4),
			"npy: NPY header: unexpected byte 0xa0"},
		{"non-ASCII letter in 1.0", content.Options{}, npyFile(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), \xe9}", f4x4),
			"npy: NPY header: unexpected byte 0xe9"},
		{"C1 control in a 1.0 string", content.Options{}, npyFile(1, npyHeader("[('a\x85', '<f4')]", "(1,)"), f4x4[:4]),
			"npy: NPY header: control character 0x85 in a string"},
		{"invalid UTF-8 in 3.0", content.Options{}, npyFile(3, npyHeader("[('a\xff', '<f4')]", "(1,)"), f4x4[:4]),
			"npy: NPY header: version 3.0 header is not valid UTF-8"},
		{"3.0 header over 10000 characters", content.Options{}, v3big,
			"npy: NPY header: header of 10188 characters exceeds numpy's limit of 10000 (max_header_size)"},
		{"header over 10000 bytes", content.Options{}, npyRaw(2, []byte(npyHeader("'<f4'", "(4,)")+strings.Repeat(" ", 10000)+"\n"), f4x4),
			"npy: NPY header of 10058 bytes exceeds numpy's limit of 10000 characters (max_header_size)"},
		{"header beyond the file", content.Options{}, npyRaw(1, []byte("{"), nil)[:10],
			"npy: NPY header of 1 bytes does not fit the 10-byte file"},
		{"version 4.0", content.Options{}, append([]byte("\x93NUMPY\x04\x00"), npyFile(1, npyHeader("'<f4'", "(4,)"), f4x4)[8:]...),
			"npy: unsupported NPY format version 4.0 (numpy reads 1.0, 2.0 and 3.0)"},
		{"version 1.1", content.Options{}, append([]byte("\x93NUMPY\x01\x01"), npyFile(1, npyHeader("'<f4'", "(4,)"), f4x4)[8:]...),
			"npy: unsupported NPY format version 1.1 (numpy reads 1.0, 2.0 and 3.0)"},
		{"truncated header", content.Options{}, npyFile(1, npyHeader("'<f4'", "(4,)"), f4x4)[:40],
			"npy: NPY header of 118 bytes does not fit the 40-byte file"},
		{"zip appended (polyglot)", content.Options{}, npyFile(1, npyHeader("'|u1'", "(32,)"), zipTail),
			"zip: a zip archive ends this NPY file but does not start it (polyglot)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mk := func(size int64) content.Inspector { return content.NewNPYInspector(c.opts, size) }
			for _, chunk := range []int{len(c.data) + 1, 1, 7, 64} {
				if got := verdict(t, mk, c.data, chunk); got != c.want {
					t.Fatalf("chunk %d:\n got %q\nwant %q", chunk, got, c.want)
				}
			}
			// bytes only, through the sniffing dispatcher
			if _, got, _ := inspectBytes(t, c.opts, c.data); got != c.want {
				t.Fatalf("InspectReader:\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestNPYUnknownSize covers streams of unknown length (-1): a lying shape
// shows as trailing or missing data.
func TestNPYUnknownSize(t *testing.T) {
	run := func(b []byte) string {
		in := content.NewNPYInspector(content.Options{}, -1)
		if _, err := in.Write(b); err != nil {
			return err.Error()
		}
		if err := in.Close(); err != nil {
			return err.Error()
		}
		return ""
	}
	h := npyFile(1, npyHeader("'<f4'", "(4,)"), nil)
	if got := run(append(h, make([]byte, 16)...)); got != "" {
		t.Errorf("exact: %q", got)
	}
	if got, want := run(append(h, make([]byte, 17)...)), "npy: trailing data after the array data (at offset 144)"; got != want {
		t.Errorf("longer: %q, want %q", got, want)
	}
	if got, want := run(append(h, make([]byte, 15)...)), "npy: truncated array data: 15 of 16 bytes after the header"; got != want {
		t.Errorf("shorter: %q, want %q", got, want)
	}
	if got, want := run([]byte("\x93NUM")), "npy: truncated NPY header: the file ends after 4 bytes"; got != want {
		t.Errorf("short: %q, want %q", got, want)
	}
	if got, want := run([]byte("\x93NUMPZ\x01")), "npy: not an NPY file: the magic string is not \\x93NUMPY"; got != want {
		t.Errorf("magic: %q, want %q", got, want)
	}
}

// TestNPYHeaderDone: plain arrays are released after the header, object
// arrays only once their pickle has been walked.
func TestNPYHeaderDone(t *testing.T) {
	h := npyFile(1, npyHeader("'<f4'", "(4,)"), nil)
	in := content.NewNPYInspector(content.Options{}, int64(len(h)+16))
	if _, err := in.Write(h[:len(h)-1]); err != nil || in.HeaderDone() {
		t.Fatalf("before the header's end: done=%v err=%v", in.HeaderDone(), err)
	}
	if _, err := in.Write(h[len(h)-1:]); err != nil || !in.HeaderDone() {
		t.Fatalf("after the header: done=%v err=%v", in.HeaderDone(), err)
	}

	obj := npyCorpusFile(t, "object_array.npy")
	scan := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan, Allow: numpyAllow()}}
	in = content.NewNPYInspector(scan, int64(len(obj)))
	if _, err := in.Write(obj[:len(obj)-1]); err != nil || in.HeaderDone() {
		t.Fatalf("object array before its end: done=%v err=%v", in.HeaderDone(), err)
	}
	if _, err := in.Write(obj[len(obj)-1:]); err != nil || !in.HeaderDone() {
		t.Fatalf("object array at its end: done=%v err=%v", in.HeaderDone(), err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	g, ok := in.(interface{ Globals() []string })
	if !ok || !slices.Equal(g.Globals(), []string{"numpy.core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray"}) {
		t.Fatalf("globals: %v", g)
	}
}

func FuzzNPY(f *testing.F) {
	for _, name := range []string{"int_array.npy", "object_array.npy", "dns_exfiltration.npy"} {
		f.Add(npyCorpusFile(f, name), uint8(7))
	}
	f.Add(npyFile(2, npyHeader(`[(('t', 'a'), '<u2', (3,)), ('', '|V2'), ('b', [('c', '|i1'), ('d', '>f4')])]`, "(1,)"), make([]byte, 13)), uint8(3))
	f.Add(npyFile(3, npyHeader(`[('\x00\u00e9é', '<U1'), ("it's", '|O')]`, "(2L,)"), modelcorpus.OsSystemPickle()), uint8(1))
	f.Add(npyFile(1, npyHeader("'<M8[ns]'", "(4294967296, 4294967296, 0)"), nil), uint8(60))
	// header texts: the input is also wrapped as the header of a 1.0 and a
	// 3.0 file, so the fuzzer reaches the literal parser directly
	f.Add([]byte(npyHeader("[('a', '<f4', (2,)), ('b', [('c', '|O')])]", "(1,)")), uint8(2))
	f.Add([]byte(npyHeader(`'\x3cU2'`, "(2L, 0)")), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		if len(data) > 1<<16 {
			return
		}
		files := [][]byte{data}
		if !bytes.HasPrefix(data, []byte("\x93NUMPY")) {
			files = append(files, npyFile(1, string(data), make([]byte, int(chunk)%9*4)), npyFile(3, string(data), modelcorpus.OsSystemPickle()))
		}
		for _, b := range files {
			for _, o := range []content.Options{{}, scanOpts} {
				fuzzChunking(t, func(size int64) content.Inspector { return content.NewNPYInspector(o, size) }, b, chunk)
			}
		}
	})
}

// BenchmarkNPY streams a 256 MiB float32 array in 1 MiB chunks (the data is
// only counted; the tail is kept for the zip end-record check).
func BenchmarkNPY(b *testing.B) {
	const n = 64 << 20
	h := npyFile(1, npyHeader("'<f4'", "(67108864,)"), nil)
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(h)) + 4*n)
	for b.Loop() {
		in := content.NewNPYInspector(content.Options{}, int64(len(h))+4*n)
		if _, err := in.Write(h); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 4*n; i += len(chunk) {
			if _, err := in.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
