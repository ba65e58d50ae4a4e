package content_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// modelCorpusDir holds the real files written by other projects (see its
// README.md). CI has it; a missing directory fails the tests.
const modelCorpusDir = "../../../shared/model-corpus"

func readCorpus(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(modelCorpusDir, rel))
	if err != nil {
		t.Fatalf("model corpus file: %v", err)
	}
	return b
}

// recordsOf reads a zip with Go's archive/zip (which reads data
// descriptors) and returns its members as torch records, in order.
func recordsOf(t testing.TB, b []byte) []modelcorpus.MinizRecord {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var rs []modelcorpus.MinizRecord
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		d, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, modelcorpus.MinizRecord{Name: f.Name, Data: d})
	}
	return rs
}

// TestTorchSaveZipIsByteExact proves the fixture generator writes what
// torch.save writes: fed the members of the real checkpoints of the corpus
// (torch 1.x archive/ layout and torch 2.x with byteorder and
// .data/serialization_id), it reproduces them byte for byte.
func TestTorchSaveZipIsByteExact(t *testing.T) {
	for _, rel := range []string{
		"picklescan/tests/data/new_pytorch_model.bin",
		"modelscan/tests/data/unsafe_zip_pytorch.pt",
	} {
		real := readCorpus(t, rel)
		got := modelcorpus.TorchSaveZip(recordsOf(t, real))
		if !bytes.Equal(got, real) {
			n := 0
			for n < min(len(got), len(real)) && got[n] == real[n] {
				n++
			}
			t.Errorf("%s: generated %d bytes, real file %d; first difference at offset %d", rel, len(got), len(real), n)
		}
	}
}

type zipCase struct {
	name   string
	opts   func(*content.Options)
	data   []byte
	format string // "" = accepted
	reason string // exact reason; with prefix set, the reason must start with it
	prefix bool
}

func ptr[T any](v T) *T { return &v }

// torch2 returns the records of a torch 2.x checkpoint of SmallTorchModel,
// after mut.
func torch2(mut func([]modelcorpus.MinizRecord) []modelcorpus.MinizRecord) []byte {
	rs := modelcorpus.TorchSave2Records("archive", modelcorpus.SmallTorchModel(), nil, nil)
	if mut != nil {
		rs = mut(rs)
	}
	return modelcorpus.TorchSaveZip(rs)
}

func recIndex(rs []modelcorpus.MinizRecord, name string) int {
	for i, r := range rs {
		if r.Name == name {
			return i
		}
	}
	panic(name)
}

func withRec(name string, f func(*modelcorpus.MinizRecord)) func([]modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
	return func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
		f(&rs[recIndex(rs, name)])
		return rs
	}
}

// descriptorAt returns the offset of the stored-record descriptor with the
// given CRC-32 in a generated archive.
func descriptorAt(b []byte, crc uint32) int {
	return bytes.Index(b, binary.LittleEndian.AppendUint32([]byte("PK\x07\x08"), crc))
}

func encrypted(name string) string {
	return fmt.Sprintf("entry %q is encrypted (general purpose flag bit 0): an encrypted member cannot be inspected. "+
		"Loaders disagree on the bit (torch.load's zip reader, miniz, honours it only in the central directory and ignores it in the local header), "+
		"and no content option admits encrypted members: only a rule without a content: section serves this blob", name)
}

func noStoredEnd(name string) string {
	return fmt.Sprintf("stored entry %q sets general purpose flag 0x0008 with no sizes in its local header, and no PK\\x07\\x08 data descriptor matching its length and CRC-32 follows its data (a descriptor without the signature cannot end stored data)", name)
}

func zipCases(t testing.TB) []zipCase {
	small := modelcorpus.SmallTorchModel()
	w0 := modelcorpus.TorchStorageBytes(small[0]) // archive/data/0, 48 bytes
	crc0 := crc32.ChecksumIEEE(w0)

	// stored data that contains PK\x07\x08 records that are not its end
	decoys := func(tt modelcorpus.TorchTensor) []byte {
		d := modelcorpus.TorchStorageBytes(tt)
		for _, at := range []int{0, 5, len(d) - 20, len(d) - 4} {
			if at >= 0 && at+4 <= len(d) {
				copy(d[at:], "PK\x07\x08")
			}
		}
		return d
	}
	// a descriptor-shaped record inside the data: right length, wrong CRC
	fakeEnd := func(tt modelcorpus.TorchTensor) []byte {
		d := modelcorpus.TorchStorageBytes(tt)
		if tt.Key == "0" {
			f := binary.LittleEndian.AppendUint32([]byte("PK\x07\x08"), 0x12345678)
			f = binary.LittleEndian.AppendUint32(f, 20)
			f = binary.LittleEndian.AppendUint32(f, 20)
			copy(d[20:], f)
		}
		return d
	}
	fakeEndData := fakeEnd(small[0])
	// a valid descriptor for the first 8 bytes, then a smuggled member
	smuggle := func(tt modelcorpus.TorchTensor) []byte {
		d := modelcorpus.TorchStorageBytes(tt)
		if tt.Key != "0" {
			return d
		}
		p := d[:8]
		f := append([]byte(nil), p...)
		f = append(f, "PK\x07\x08"...)
		f = binary.LittleEndian.AppendUint32(f, crc32.ChecksumIEEE(p))
		f = binary.LittleEndian.AppendUint32(f, 8)
		f = binary.LittleEndian.AppendUint32(f, 8)
		// local header of a stored 0-byte member "x", no flags
		f = binary.LittleEndian.AppendUint32(f, 0x04034b50)
		f = append(f, make([]byte, 22)...)
		f = binary.LittleEndian.AppendUint16(f, 1)
		f = binary.LittleEndian.AppendUint16(f, 0)
		f = append(f, 'x')
		return append(f, make([]byte, len(d)-len(f))...)
	}
	big := []modelcorpus.TorchTensor{{Name: "w", StorageType: "FloatStorage", Key: "0", Shape: []int64{32}}}
	smuggled := modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", big, nil, smuggle))
	smuggledAt := bytes.Index(smuggled, []byte("PK\x03\x04\x00\x00\x00\x00"))

	evil := modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", small, modelcorpus.OsSystemPickle(), nil))
	osSys := modelcorpus.OsSystemPickle()
	pickleFirst := func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
		// archive/data/0 holding a pickle, before data.pkl: not a storage yet
		i := recIndex(rs, "archive/data/0")
		r := rs[i]
		r.Data = append(append([]byte(nil), osSys...), make([]byte, 48-len(osSys)%48)...)
		rs = append(rs[:i], rs[i+1:]...)
		return append([]modelcorpus.MinizRecord{r}, rs...)
	}
	st := modelcorpus.Safetensors(modelcorpus.SmallModel(), nil)
	autoMap := []byte(`{"architectures":["X"],"auto_map":{"AutoModel":"modeling_x.XModel"}}`)
	plain := func(es ...modelcorpus.ZipEntry) []byte { return modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es}) }

	// archives written by Go's archive/zip: every member has a data
	// descriptor (flag 0x0008, signature, 4-byte sizes), stored or deflated
	goZip := func(method uint16) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for _, m := range []struct {
			name string
			data []byte
		}{{"model/config.json", []byte(`{"architectures":["X"]}`)}, {"model/model.safetensors", st}, {"model/empty.txt", nil}} {
			w, err := zw.CreateHeader(&zip.FileHeader{Name: m.name, Method: method})
			if err != nil {
				t.Fatal(err)
			}
			w.Write(m.data)
		}
		zw.Close()
		return buf.Bytes()
	}
	// a deflated member whose compressed size runs past the end of its
	// deflate stream: bytes no reader inflates
	payload := []byte("hello hello hello hello")
	var tailCSize int
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(payload)
	fw.Close()
	// rawDeflated is a zip whose one member notes.txt (payload) has raw as
	// its compressed bytes
	rawDeflated := func(raw []byte) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateRaw(&zip.FileHeader{Name: "notes.txt", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(payload),
			CompressedSize64: uint64(len(raw)), UncompressedSize64: uint64(len(payload))})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
		zw.Close()
		return buf.Bytes()
	}
	deflateTail := rawDeflated(append(bytes.Clone(comp.Bytes()), "hidden"...))
	tailCSize = comp.Len() + len("hidden")

	cs := []zipCase{
		{name: "go/archive/zip, deflated members with descriptors", data: goZip(zip.Deflate)},
		{name: "go/archive/zip, stored members with descriptors", data: goZip(zip.Store)},
		{name: "zip/deflate stream ends before the compressed size", data: deflateTail,
			format: "zip", reason: fmt.Sprintf(`entry "notes.txt": its deflate stream ends 6 bytes before the end of its %d compressed bytes (hidden data)`, tailCSize)},
		{name: "zip/deflate stream truncated", data: rawDeflated(comp.Bytes()[:comp.Len()-2]),
			format: "zip", reason: `entry "notes.txt": invalid deflate data: unexpected EOF`},
		{name: "zip/deflate block type 3", data: rawDeflated([]byte{0x07, 0, 0, 0}),
			format: "zip", reason: `entry "notes.txt": invalid deflate data: `, prefix: true},
		// ---- real files --------------------------------------------------
		{name: "corpus/new_pytorch_model.bin (torch 1.x)", opts: scan, data: readCorpus(t, "picklescan/tests/data/new_pytorch_model.bin")},
		{name: "corpus/new_pytorch_model.bin, pickle deny", data: readCorpus(t, "picklescan/tests/data/new_pytorch_model.bin"),
			format: "pickle", reason: `zip member "archive/data.pkl" is a pickle; pickle content is denied by policy (pickle: deny)`},
		{name: "corpus/unsafe_zip_pytorch.pt (torch 2.x, posix.system)", opts: scan, data: readCorpus(t, "modelscan/tests/data/unsafe_zip_pytorch.pt"),
			format: "pickle", reason: `zip member "unsafe_zip_pytorch/data.pkl": GLOBAL imports posix.system`, prefix: true},
		{name: "corpus/benign_password_protected.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/benign_password_protected.zip"),
			format: "zip", reason: encrypted("test.txt")},
		{name: "corpus/password_protected.zip", opts: scan, data: readCorpus(t, "modelscan/tests/data/password_protected.zip"),
			format: "zip", reason: encrypted("test.txt")},
		{name: "corpus/malicious1.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/malicious1.zip"),
			format: "pickle", reason: `zip member "data.pkl": STACK_GLOBAL imports builtins.eval`, prefix: true},
		{name: "corpus/malicious1_0x1.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/malicious1_0x1.zip"),
			format: "zip", reason: encrypted("model/config.pkl")},
		{name: "corpus/malicious1_0x20.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/malicious1_0x20.zip"),
			format: "zip", reason: `entry "model/config.pkl" has unsupported general purpose flags 0x0020`},
		{name: "corpus/malicious1_0x40.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/malicious1_0x40.zip"),
			format: "zip", reason: `entry "model/config.pkl" has unsupported general purpose flags 0x0040`},
		{name: "corpus/malicious1_central_directory.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/malicious1_central_directory.zip"),
			format: "pickle", reason: `zip member "datap.kl": STACK_GLOBAL imports builtins.eval`, prefix: true},
		{name: "corpus/malicious1_wrong_ext.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data/malicious1_wrong_ext.zip"),
			format: "pickle", reason: `zip member "data.txt": STACK_GLOBAL imports builtins.eval`, prefix: true},
		{name: "corpus/malicious1_crc.zip", opts: scan, data: readCorpus(t, "picklescan/tests/data2/malicious1_crc.zip"),
			format: "pickle", reason: `zip member "data.pkl": STACK_GLOBAL imports builtins.eval`, prefix: true},

		// ---- torch.save layouts -------------------------------------------
		{name: "torch2/state dict", opts: scan, data: torch2(nil)},
		{name: "torch1/state dict", opts: scan, data: modelcorpus.TorchSaveZip(modelcorpus.TorchSave1Records("archive", small, nil))},
		{name: "torch2/pickle deny", data: torch2(nil),
			format: "pickle", reason: `zip member "archive/data.pkl" is a pickle; pickle content is denied by policy (pickle: deny)`},
		{name: "torch2/os.system data.pkl", opts: scan, data: evil,
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports posix.system`, prefix: true},
		{name: "torch2/deflated data.pkl", opts: scan, data: torch2(withRec("archive/data.pkl", func(r *modelcorpus.MinizRecord) { r.Compress = true }))},
		{name: "torch2/deflated, descriptor without signature", opts: scan, data: torch2(withRec("archive/data.pkl", func(r *modelcorpus.MinizRecord) {
			r.Compress, r.NoDescriptorSig = true, true
		}))},
		{name: "torch2/ZIP64 records (8-byte descriptors)", opts: scan, data: torch2(func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
			for i := range rs {
				rs[i].Zip64 = true
			}
			rs[0].Compress = true
			return rs
		})},
		{name: "torch2/storage bytes containing descriptor signatures", opts: scan,
			data: modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", append(small, modelcorpus.TorchTensor{Name: "w", StorageType: "FloatStorage", Key: "3", Shape: []int64{64}}), nil, decoys))},
		{name: "torch2/empty record (no descriptor)", opts: scan, data: torch2(func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
			return append(rs, modelcorpus.MinizRecord{Name: "archive/extra/empty"})
		})},

		// ---- descriptors: strict on every disagreement ----------------------
		{name: "dd/descriptor CRC disagrees with the data", opts: scan,
			data:   torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.DescriptorCRC = ptr(uint32(0xdeadbeef)) })),
			format: "zip", reason: fmt.Sprintf(`entry "archive/data/0": data descriptor at offset %d declares CRC-32 0xdeadbeef, but the 48 bytes before it have CRC-32 0x%08x`,
				descriptorAt(torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.DescriptorCRC = ptr(uint32(0xdeadbeef)) })), 0xdeadbeef), crc0)},
		{name: "dd/descriptor uncompressed size disagrees", opts: scan,
			data:   torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.DescriptorUSize = ptr(uint64(47)) })),
			format: "zip", reason: fmt.Sprintf(`stored entry "archive/data/0": data descriptor at offset %d declares 47 uncompressed bytes for 48 stored bytes`,
				descriptorAt(torch2(nil), crc0))},
		{name: "dd/descriptor compressed size disagrees (stored)", opts: scan,
			data:   torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.DescriptorSize = ptr(uint64(49)) })),
			format: "zip", reason: noStoredEnd("archive/data/0")},
		{name: "dd/stored data, descriptor without signature", opts: scan,
			data:   torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.NoDescriptorSig = true })),
			format: "zip", reason: noStoredEnd("archive/data/0")},
		{name: "dd/ZIP64 local field, 4-byte descriptor", opts: scan,
			data: torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) {
				r.Zip64, r.NoDescriptor = true, true
				d := binary.LittleEndian.AppendUint32([]byte("PK\x07\x08"), crc0)
				d = binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(d, 48), 48)
				r.After = d
			})),
			format: "zip", reason: noStoredEnd("archive/data/0")},
		{name: "dd/descriptor-shaped record inside stored data, wrong CRC", opts: scan,
			data:   modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", small, nil, fakeEnd)),
			format: "zip", reason: fmt.Sprintf(`entry "archive/data/0": data descriptor at offset %d declares CRC-32 0x12345678, but the 20 bytes before it have CRC-32 0x%08x`,
				bytes.Index(modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", small, nil, fakeEnd)), fakeEndData[20:28]), crc32.ChecksumIEEE(fakeEndData[:20]))},
		{name: "dd/stored member cut short by an embedded descriptor (smuggled member)", opts: scan, data: smuggled,
			format: "zip", reason: fmt.Sprintf(`unexpected bytes at offset %d (signature 0x00000000) where a zip record was expected`, smuggledAt+31)},
		{name: "dd/central directory CRC disagrees with descriptor", opts: scan,
			data:   torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.CentralCRC = ptr(uint32(1)) })),
			format: "zip", reason: fmt.Sprintf(`entry "archive/data/0": central directory CRC-32 0x00000001, 48 compressed and 48 uncompressed bytes disagree with its data and data descriptor (0x%08x, 48, 48)`, crc0)},
		{name: "dd/central directory size disagrees with descriptor", opts: scan,
			data:   torch2(withRec("archive/data/0", func(r *modelcorpus.MinizRecord) { r.CentralSize = ptr(uint64(40)) })),
			format: "zip", reason: fmt.Sprintf(`entry "archive/data/0": central directory CRC-32 0x%08x, 40 compressed and 40 uncompressed bytes disagree with its data and data descriptor (0x%08x, 48, 48)`, crc0, crc0)},
		{name: "dd/central directory name disagrees", opts: scan,
			data:   torch2(withRec("archive/version", func(r *modelcorpus.MinizRecord) { r.CentralName = "archive/.data/version" })),
			format: "zip", reason: `central directory name "archive/.data/version" disagrees with local header name "archive/version"`},
		{name: "dd/central directory points into another member's data (overlap)", opts: scan,
			data:   torch2(withRec("archive/version", func(r *modelcorpus.MinizRecord) { r.CentralOffset = ptr(uint64(descriptorAt(torch2(nil), crc0) - 48)) })),
			format: "zip", reason: fmt.Sprintf(`central directory entry "archive/version" points to offset %d, where there is no local header`, descriptorAt(torch2(nil), crc0)-48)},
		{name: "dd/hidden record", opts: scan,
			data: torch2(func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
				return append(rs, modelcorpus.MinizRecord{Name: "archive/notes.txt", Data: []byte("hi"), OmitCentral: true})
			}),
			format: "zip", reason: `local entry "archive/notes.txt" is missing from the central directory (hidden entry)`},
		{name: "dd/data between members", opts: scan,
			data:   torch2(withRec("archive/byteorder", func(r *modelcorpus.MinizRecord) { r.After = []byte("junk") })),
			format: "zip", reason: fmt.Sprintf(`unexpected bytes at offset %d (signature 0x6b6e756a) where a zip record was expected`, bytes.Index(torch2(withRec("archive/byteorder", func(r *modelcorpus.MinizRecord) { r.After = []byte("junk") })), []byte("junk")))},
		{name: "dd/deflated, no descriptor", opts: scan,
			data:   torch2(withRec("archive/data.pkl", func(r *modelcorpus.MinizRecord) { r.Compress, r.NoDescriptor = true, true })),
			format: "zip", reason: `entry "archive/data.pkl" sets general purpose flag 0x0008 but no data descriptor follows its data`},
		{name: "dd/deflated, descriptor CRC disagrees", opts: scan,
			data:   torch2(withRec("archive/data.pkl", func(r *modelcorpus.MinizRecord) { r.Compress, r.DescriptorCRC = true, ptr(uint32(7)) })),
			format: "zip", reason: "data descriptor of entry \"archive/data.pkl\" declares CRC-32 0x00000007", prefix: true},
		{name: "dd/deflated, unsigned descriptor size disagrees", opts: scan,
			data: torch2(withRec("archive/data.pkl", func(r *modelcorpus.MinizRecord) {
				r.Compress, r.NoDescriptorSig, r.DescriptorUSize = true, true, ptr(uint64(1))
			})),
			format: "zip", reason: "data descriptor (without signature) of entry \"archive/data.pkl\" declares CRC-32", prefix: true},
		{name: "dd/deflate stream does not end", opts: func(o *content.Options) { scan(o); o.Zip.MaxDeflatedMember = 64 },
			data: torch2(withRec("archive/data.pkl", func(r *modelcorpus.MinizRecord) {
				r.Compress = true
				r.Data = modelcorpus.NewPickler(2).Op(bytes.Repeat([]byte("N0"), 4000)...).Stop()
				rand.New(rand.NewSource(1)).Read(r.Data[2 : len(r.Data)-1]) // incompressible
			})),
			format: "zip", reason: `deflated entry "archive/data.pkl": its deflate stream does not end within 64 bytes, the limit for deflated members`},
		{name: "dd/names differing only in case", opts: scan,
			data: torch2(func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
				return append(rs, modelcorpus.MinizRecord{Name: "archive/VERSION", Data: []byte("3\n")})
			}),
			format: "zip", reason: `entry names "archive/version" and "archive/VERSION" differ only in letter case; torch.load's zip reader (miniz) looks names up case-insensitively, so either may be loaded`},
		{name: "dd/encrypted record", opts: scan,
			data:   torch2(withRec("archive/byteorder", func(r *modelcorpus.MinizRecord) { r.Flags = 1 })),
			format: "zip", reason: encrypted("archive/byteorder")},
		{name: "dd/encrypted in the central directory only", opts: scan,
			data: func() []byte {
				b := torch2(nil)
				i := bytes.Index(b, []byte("PK\x01\x02"))
				b[i+8] |= 1
				return b
			}(),
			format: "zip", reason: encrypted("archive/data.pkl")},
		{name: "dd/strong encryption flag", opts: scan,
			data:   torch2(withRec("archive/byteorder", func(r *modelcorpus.MinizRecord) { r.Flags = 0x40 })),
			format: "zip", reason: `entry "archive/byteorder" has unsupported general purpose flags 0x0848`},

		// ---- members get the checks a layer of that name gets -------------
		{name: "member/code file under denyCodeLayers", opts: func(o *content.Options) { scan(o); denyCode(o) },
			data: torch2(func(rs []modelcorpus.MinizRecord) []modelcorpus.MinizRecord {
				return append(rs, modelcorpus.MinizRecord{Name: "archive/code/modeling_evil.py", Data: []byte("import os\nos.system('id')\n")})
			}),
			format: "zip", reason: `entry "archive/code/modeling_evil.py" is code (.py) and is denied (denyCodeLayers)`},
		{name: "member/code file without denyCodeLayers", opts: scan,
			data: plain(modelcorpus.ZipEntry{Name: "modeling_evil.py", Data: []byte("import os\n")})},
		{name: "member/auto_map config under denyCodeLayers", opts: denyCode,
			data:   plain(modelcorpus.ZipEntry{Name: "model/config.json", Data: autoMap}),
			format: "json", reason: `zip member "model/config.json": config declares auto_map`, prefix: true},
		{name: "member/auto_map config with a data descriptor", opts: denyCode,
			data:   modelcorpus.TorchSaveZip([]modelcorpus.MinizRecord{{Name: "model/config.json", Data: autoMap}}),
			format: "json", reason: `zip member "model/config.json": config declares auto_map`, prefix: true},
		{name: "member/auto_map config deflated with a data descriptor", opts: denyCode,
			data:   modelcorpus.TorchSaveZip([]modelcorpus.MinizRecord{{Name: "model/config.json", Data: autoMap, Compress: true}}),
			format: "json", reason: `zip member "model/config.json": config declares auto_map`, prefix: true},
		{name: "member/auto_map config without denyCodeLayers", data: plain(modelcorpus.ZipEntry{Name: "model/config.json", Data: autoMap})},
		{name: "member/chat template injection in tokenizer_config.json",
			data:   plain(modelcorpus.ZipEntry{Name: "tokenizer_config.json", Data: []byte(`{"chat_template":"{{ self.__init__.__globals__ }}"}`), Deflate: true}),
			format: "json", reason: `zip member "tokenizer_config.json": `, prefix: true},
		{name: "member/chat_template.jinja injection",
			data:   plain(modelcorpus.ZipEntry{Name: "chat_template.jinja", Data: []byte(`{{ "".__class__.__mro__[1] }}`)}),
			format: "template", reason: `zip member "chat_template.jinja": `, prefix: true},
		{name: "member/safetensors with trailing data",
			data:   plain(modelcorpus.ZipEntry{Name: "model.safetensors", Data: withTrailing(st, []byte("evil"))}),
			format: "safetensors", reason: `zip member "model.safetensors": 4 bytes of trailing data after the last tensor (polyglot or appended payload)`},
		{name: "member/valid safetensors", data: plain(modelcorpus.ZipEntry{Name: "model.safetensors", Data: st})},
		{name: "member/pickle in data/ before data.pkl is not a storage", opts: scan, data: torch2(pickleFirst),
			format: "pickle", reason: `zip member "archive/data/0": GLOBAL imports posix.system`, prefix: true},
		{name: "member/pickle in data/ without any data.pkl", opts: scan,
			data:   modelcorpus.TorchSaveZip([]modelcorpus.MinizRecord{{Name: "archive/data/0", Data: osSys}}),
			format: "pickle", reason: `zip member "archive/data/0": GLOBAL imports posix.system`, prefix: true},

		// ---- TorchScript (torch.jit.save): code/ and constants.pkl ---------
		{name: "torchscript/refused by default", opts: scan, data: tscript(nil),
			format: "torchscript", reason: torchScriptRefused("archive/code/__torch__.py")},
		{name: "torchscript/constants.pkl alone marks it", opts: scan,
			data: modelcorpus.TorchSaveZip(append(modelcorpus.TorchSave2Records("archive", small, nil, nil),
				modelcorpus.MinizRecord{Name: "archive/constants.pkl", Data: modelcorpus.NewPickler(2).Tuple(0).Stop()})),
			format: "torchscript", reason: torchScriptRefused("archive/constants.pkl")},
		{name: "torchscript/another top directory name", opts: scan,
			data: modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("Net", small, nil, nil)), format: "torchscript", reason: torchScriptRefused("Net/code/__torch__.py")},
		{name: "torchscript/allowed", opts: func(o *content.Options) { scan(o); o.AllowTorchScript = true }, data: tscript(nil)},
		{name: "torchscript/allowed, malicious constants.pkl", opts: func(o *content.Options) { scan(o); o.AllowTorchScript = true },
			data:   tscript(osSys),
			format: "pickle", reason: `zip member "archive/constants.pkl": GLOBAL imports posix.system`, prefix: true},
		// torch.jit.save pickles the module itself: GLOBAL __torch__ <Class>,
		// EMPTY_TUPLE, NEWOBJ, state, BUILD (jit/serialization/pickler.cpp);
		// torch.jit.load resolves the class against code/, not by import.
		{name: "torchscript/allowed, data.pkl with a __torch__ class", opts: allowTS, data: tsModule("__torch__", "Net", true)},
		{name: "torchscript/allowed, data.pkl with a mangled submodule class", opts: allowTS, data: tsModule("__torch__.___torch_mangle_3", "Net", true)},
		{name: "torchscript/allowed, __torch__ class in a zip without constants.pkl", opts: allowTS, data: tsModule("__torch__", "Net", false),
			format: "torchscript", reason: tsNoConstants("archive/data.pkl imports __torch__.Net")},
		// torch.jit's pickler writes typed lists, container type tags and
		// tensor-table references as torch.jit._pickle globals; the six its
		// unpickler resolves are admitted in a TorchScript archive only.
		{name: "torchscript/allowed, torch.jit._pickle builders in data.pkl", opts: allowTS, data: tsArchive(tsBuilderModule(), nil)},
		{name: "torchscript/allowed, torch.jit._pickle builders in constants.pkl", opts: allowTS,
			data: tsArchive(nil, modelcorpus.NewPickler(2).Global("torch.jit._pickle", "build_intlist").Op('(', ']', '(').Int(3).Op('e', 't', 'R').Tuple(1).Stop())},
		{name: "torchscript/allowed, torch.jit._pickle name its unpickler does not know", opts: allowTS,
			data:   tsArchive(modelcorpus.NewPickler(2).Global("torch.jit._pickle", "build_strlist").Op('(', ']', 't', 'R').Stop(), nil),
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports torch.jit._pickle.build_strlist, which is not in the allowlist (content.formats.pickle.allow)`, prefix: true},
		{name: "torchscript/refused, torch.jit._pickle builder in a torch.save zip under pickle scan", opts: scan,
			data:   modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", nil, tsIntList(), nil)),
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports torch.jit._pickle.build_intlist, which is not in the allowlist (content.formats.pickle.allow)`, prefix: true},
		{name: "torchscript/allowed, torch.jit._pickle builder in a zip without constants.pkl", opts: allowTS,
			data:   modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", nil, tsIntList(), nil)),
			format: "torchscript", reason: tsNoConstants("archive/data.pkl imports torch.jit._pickle.build_intlist")},
		// torch.load hands a zip to torch.jit.load only when a record is
		// named constants.pkl exactly (a case-sensitive Python match).
		{name: "torchscript/allowed, CONSTANTS.PKL does not admit __torch__ classes", opts: allowTS,
			data:   tsRenamed(tsModulePickle("__torch__", "Net"), "archive/constants.pkl", "archive/CONSTANTS.PKL"),
			format: "torchscript", reason: tsNoConstants("archive/data.pkl imports __torch__.Net")},
		{name: "torchscript/refused by default, CONSTANTS.PKL still marks it", opts: scan,
			data:   tsRenamed(nil, "archive/constants.pkl", "archive/CONSTANTS.PKL"),
			format: "torchscript", reason: torchScriptRefused("archive/code/__torch__.py")},
		{name: "torchscript/allowed, constants.pkl under another top directory does not admit __torch__ classes", opts: allowTS,
			data:   tsRenamed(tsModulePickle("__torch__", "Net"), "archive/constants.pkl", "other/constants.pkl"),
			format: "torchscript", reason: tsNoConstants("archive/data.pkl imports __torch__.Net")},
		{name: "torchscript/allowed, dunder module under __torch__", opts: allowTS, data: tsModule("__torch__.__builtin__", "eval", true),
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports __torch__.__builtin__.eval, which is not in the allowlist (content.formats.pickle.allow)`, prefix: true},
		{name: "torchscript/allowed, dunder class under __torch__", opts: allowTS, data: tsModule("__torch__", "__class__", true),
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports __torch__.__class__, which is not in the allowlist (content.formats.pickle.allow)`, prefix: true},
		{name: "torchscript/refused, __torch__ class in a torch.save zip under pickle scan", opts: scan, data: tsModule("__torch__", "Net", false),
			format: "pickle", reason: `zip member "archive/data.pkl": GLOBAL imports __torch__.Net, which is not in the allowlist (content.formats.pickle.allow)`, prefix: true},
		{name: "torchscript/allowed, pickles denied", opts: func(o *content.Options) { o.AllowTorchScript = true }, data: tscript(nil),
			format: "pickle", reason: `zip member "archive/data.pkl" is a pickle; pickle content is denied by policy (pickle: deny)`},
		{name: "torchscript/allowed, code still denied by denyCodeLayers",
			opts: func(o *content.Options) { scan(o); denyCode(o); o.AllowTorchScript = true }, data: tscript(nil),
			format: "zip", reason: `entry "archive/code/__torch__.py" is code (.py) and is denied (denyCodeLayers)`},
		{name: "torchscript/code directory outside the top directory is not TorchScript", opts: scan,
			data: plain(modelcorpus.ZipEntry{Name: "a/b/code/x.txt", Data: []byte("x")})},
	}
	return cs
}

func allowTS(o *content.Options) { scan(o); o.AllowTorchScript = true }

func tsNoConstants(what string) string {
	return what + ", which only torch.jit.load resolves (a TorchScript class or torch.jit._pickle builder), but the archive has no <top>/constants.pkl spelled exactly so: " +
		"torch.load does not treat it as a TorchScript archive, and only TorchScript archives may name __torch__ classes or torch.jit._pickle builders (content.formats.torchscript: allow)"
}

// tsArchive is a torch.jit.save archive (no tensors) with the given
// data.pkl and constants.pkl (nil: the defaults of TorchScriptRecords).
func tsArchive(pkl, constants []byte) []byte {
	return modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", nil, pkl, constants))
}

// tsRenamed is tsArchive(pkl, nil) with the record from renamed to.
func tsRenamed(pkl []byte, from, to string) []byte {
	rs := modelcorpus.TorchScriptRecords("archive", nil, pkl, nil)
	for i := range rs {
		if rs[i].Name == from {
			rs[i].Name = to
		}
	}
	return modelcorpus.TorchSaveZip(rs)
}

// tsIntList is torch.jit._pickle.build_intlist([1, 2]) as pickler.cpp's
// pushSpecializedList writes it: GLOBAL, MARK, EMPTY_LIST, MARK, items,
// APPENDS, TUPLE, REDUCE.
func tsIntList() []byte {
	return modelcorpus.NewPickler(2).Global("torch.jit._pickle", "build_intlist").Op('(', ']', '(').Int(1).Int(2).Op('e', 't', 'R').Stop()
}

// tsModulePickle is a scripted module's data.pkl (see tsModule).
func tsModulePickle(module, name string) []byte {
	return modelcorpus.NewPickler(2).Global(module, name).Tuple(0).Op(0x81).Op('}').Str("training").Op(0x88).Op('s').Op('b').Stop()
}

// tsBuilderModule is modelcorpus.ScriptedModulePickle: a scripted
// module using every torch.jit._pickle builder.
func tsBuilderModule() []byte { return modelcorpus.ScriptedModulePickle() }

// tsModule is an archive whose data.pkl pickles a scripted module as
// torch.jit's pickler does (GLOBAL module name, EMPTY_TUPLE, NEWOBJ, an
// attribute dict, BUILD): torch.jit.save's layout when script is true,
// torch.save's otherwise.
func tsModule(module, name string, script bool) []byte {
	pkl := modelcorpus.NewPickler(2).Global(module, name).Tuple(0).Op(0x81).Op('}').Str("training").Op(0x88).Op('s').Op('b').Stop()
	if script {
		return modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", nil, pkl, nil))
	}
	return modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", nil, pkl, nil))
}

// tscript is a torch.jit.save archive of SmallTorchModel whose constants.pkl
// is constants (nil: the empty tuple).
func tscript(constants []byte) []byte {
	return modelcorpus.TorchSaveZip(modelcorpus.TorchScriptRecords("archive", modelcorpus.SmallTorchModel(), nil, constants))
}

func torchScriptRefused(name string) string {
	return fmt.Sprintf("entry %q: the archive is a TorchScript model (torch.jit.save: code/ and constants.pkl); "+
		"torch.jit.load compiles and runs its code/ (CVE-2022-45907), so it is refused (content.formats.torchscript: allow admits it; its pickles are still walked)", name)
}

func runZipCase(t *testing.T, c zipCase, chunk int) {
	t.Helper()
	opts := content.Options{}
	if c.opts != nil {
		c.opts(&opts)
	}
	got := verdict(t, func(size int64) content.Inspector {
		in, err := content.NewInspector(opts, "", "", size)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}, c.data, chunk)
	want := ""
	if c.format != "" {
		want = c.format + ": " + c.reason
	}
	switch {
	case c.prefix && c.format != "":
		if !strings.HasPrefix(got, want) {
			t.Fatalf("chunk %d:\n got: %q\nwant prefix: %q", chunk, got, want)
		}
	case got != want:
		t.Fatalf("chunk %d:\n got: %q\nwant: %q", chunk, got, want)
	}
}

func TestZip(t *testing.T) {
	for _, c := range zipCases(t) {
		t.Run(c.name, func(t *testing.T) {
			for _, chunk := range []int{max(len(c.data), 1), 4096, 61, 7, 1} {
				runZipCase(t, c, chunk)
			}
			// random chunk sizes, and the Inspector's HeaderDone contract
			rng := rand.New(rand.NewSource(int64(len(c.data))))
			opts := content.Options{}
			if c.opts != nil {
				c.opts(&opts)
			}
			in := content.NewZipInspector(opts, int64(len(c.data)))
			var err error
			for d := c.data; len(d) > 0 && err == nil; {
				n := 1 + rng.Intn(min(len(d), 300))
				_, err = in.Write(d[:n])
				d = d[n:]
				// Only a PyTorch checkpoint opens early: once its data.pkl,
				// the only pickle so far, passed.
				if pm := in.PickleMembers(); err == nil && in.HeaderDone() && (len(pm) != 1 || !strings.HasSuffix(pm[0], "/data.pkl")) {
					t.Fatalf("HeaderDone before Close (pickle members %v)", pm)
				}
			}
			if err == nil {
				err = in.Close()
			}
			if (err == nil) != (c.format == "") {
				t.Fatalf("random chunks: %v", err)
			}
			if err == nil && !in.HeaderDone() {
				t.Fatal("accepted but HeaderDone is false")
			}
		})
	}
}

// TestZipAcceptedByGo checks the accepted generated layouts are zips Go's
// reader opens with the same members (the validator accepts real zips, not
// something of its own).
func TestZipAcceptedByGo(t *testing.T) {
	for _, c := range zipCases(t) {
		if c.format != "" || !strings.HasPrefix(c.name, "torch") {
			continue
		}
		zr, err := zip.NewReader(bytes.NewReader(c.data), int64(len(c.data)))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, f := range zr.File {
			rc, err := f.Open()
			if err == nil {
				_, err = io.Copy(io.Discard, rc)
			}
			if err != nil {
				t.Fatalf("%s: %s: %v", c.name, f.Name, err)
			}
		}
	}
}

// torchCheckpoint returns a torch 2.x layout checkpoint of n float tensors
// of per bytes each (random tensor bytes with descriptor signatures
// planted in them), as torch.save writes it.
func torchCheckpoint(n int, per int64) []byte {
	var ts []modelcorpus.TorchTensor
	for i := 0; i < n; i++ {
		ts = append(ts, modelcorpus.TorchTensor{Name: fmt.Sprintf("layers.%d.weight", i), StorageType: "FloatStorage", Key: fmt.Sprint(i), Shape: []int64{per / 4}})
	}
	rng := rand.New(rand.NewSource(1))
	return modelcorpus.TorchSaveZip(modelcorpus.TorchSave2Records("archive", ts, nil, func(t modelcorpus.TorchTensor) []byte {
		d := make([]byte, t.Numel()*4)
		rng.Read(d)
		for at := 1000; at+4 < len(d); at += 1 << 20 {
			copy(d[at:], "PK\x07\x08")
		}
		return d
	}))
}

var (
	benchOnce  sync.Once
	benchZip   []byte // torch.save layout: data descriptors
	benchKnown []byte // the same members with sizes in the local headers
)

func benchData(b *testing.B) {
	benchOnce.Do(func() {
		benchZip = torchCheckpoint(8, 32<<20)
		var es []modelcorpus.ZipEntry
		for _, r := range recordsOf(b, benchZip) {
			es = append(es, modelcorpus.ZipEntry{Name: r.Name, Data: r.Data, AlignExtra: 64})
		}
		benchKnown = modelcorpus.Zip(modelcorpus.ZipSpec{Entries: es, Zip64: true})
	})
}

func benchInspect(b *testing.B, data []byte) {
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	benchStream(b, data, 1<<20, func() content.Inspector {
		in, err := content.NewInspector(opts, "application/vnd.cncf.model.weight.v1.raw", "pytorch_model.bin", int64(len(data)))
		if err != nil {
			b.Fatal(err)
		}
		return in
	})
}

// BenchmarkZipTorchSave streams a 256 MiB checkpoint in torch.save's
// layout (every record with a data descriptor, random tensor bytes with
// descriptor signatures planted) through the layer inspector in 1 MiB
// chunks, as the proxy does.
func BenchmarkZipTorchSave(b *testing.B) {
	benchData(b)
	benchInspect(b, benchZip)
}

// BenchmarkZipKnownSizes is the same checkpoint with sizes in the local
// headers (no descriptor search): the cost of the search is the difference.
func BenchmarkZipKnownSizes(b *testing.B) {
	benchData(b)
	benchInspect(b, benchKnown)
}

// BenchmarkZipCRC32 is the floor: CRC-32 of the same 256 MiB in 1 MiB
// chunks.
func BenchmarkZipCRC32(b *testing.B) {
	benchData(b)
	data := benchZip
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	var c uint32
	for i := 0; i < b.N; i++ {
		for off := 0; off < len(data); off += 1 << 20 {
			c = crc32.Update(c, crc32.IEEETable, data[off:min(off+1<<20, len(data))])
		}
	}
	_ = c
}

// A deflated member whose sizes follow in a data descriptor is held to
// what the archive's total leaves while it inflates, not only to the
// per-member cap checked when its stream ends (up to 1 GiB past the
// total before).
func TestZipDeflatedDescriptorMemberCountsTowardsTotal(t *testing.T) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("big.bin") // streaming: flag 8, sizes in a descriptor
	noise := make([]byte, 8<<20)
	rand.New(rand.NewSource(1)).Read(noise) // incompressible: 8 MiB in, 8 MiB out
	w.Write(noise)
	zw.Close()
	data := b.Bytes()
	opts := content.Options{AllowUnknown: true, Zip: content.ZipOptions{MaxUncompressed: 1 << 20}}
	in := content.NewZipInspector(opts, int64(len(data)))
	var err error
	fed := 0
	for fed < len(data) && err == nil {
		n := min(64<<10, len(data)-fed)
		_, err = in.Write(data[fed : fed+n])
		fed += n
	}
	if err == nil || !strings.Contains(err.Error(), "total uncompressed size exceeds 1048576") {
		t.Fatalf("got %v, want the total exceeded", err)
	}
	if fed > 2<<20 {
		t.Fatalf("refused after %d of %d bytes: the member inflated past the total before it was counted", fed, len(data))
	}
}
