package content_test

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// headerDoneAt writes data one byte at a time and returns the number of
// bytes written when HeaderDone first became true (-1 if never) and the
// first error.
func headerDoneAt(in content.Inspector, data []byte) (int, error) {
	at := -1
	for i := range data {
		if in.HeaderDone() && at < 0 {
			at = i
		}
		if _, err := in.Write(data[i : i+1]); err != nil {
			return at, err
		}
	}
	if in.HeaderDone() && at < 0 {
		at = len(data)
	}
	err := in.Close()
	if in.HeaderDone() && at < 0 {
		at = len(data) + 1 // only after Close
	}
	return at, err
}

func TestSafetensorsHeaderDone(t *testing.T) {
	data := modelcorpus.Safetensors(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	n := int(binary.LittleEndian.Uint64(data))
	in := content.NewSafetensorsInspector(content.Options{}, int64(len(data)))
	at, err := headerDoneAt(in, data)
	if err != nil {
		t.Fatal(err)
	}
	if at != 8+n {
		t.Fatalf("HeaderDone became true after %d bytes, want exactly %d (8+N)", at, 8+n)
	}
	if got := len(in.Tensors()); got != len(modelcorpus.SmallModel()) {
		t.Fatalf("Tensors() = %d entries", got)
	}
	if in.Metadata()["format"] != "pt" {
		t.Fatalf("metadata %v", in.Metadata())
	}
	// sorted by offset, contiguous from 0
	var end int64
	for _, ti := range in.Tensors() {
		if ti.Begin != end {
			t.Fatalf("tensor %s begins at %d, want %d", ti.Name, ti.Begin, end)
		}
		end = ti.End
	}

	// A bad header is reported while HeaderDone is still false and before
	// any tensor byte is accepted.
	bad := modelcorpus.SafetensorsRaw(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 16)
	n = int(binary.LittleEndian.Uint64(bad))
	in = content.NewSafetensorsInspector(content.Options{}, int64(len(bad)))
	for i := range bad {
		_, err := in.Write(bad[i : i+1])
		if in.HeaderDone() {
			t.Fatalf("HeaderDone true for a bad header after %d bytes", i+1)
		}
		if err != nil {
			if i+1 != 8+n {
				t.Fatalf("error after %d bytes, want exactly at the end of the header (%d)", i+1, 8+n)
			}
			return
		}
	}
	t.Fatal("duplicate key not reported")
}

func TestGGUFHeaderDone(t *testing.T) {
	spec := modelcorpus.ValidGGUFSpec()
	data := modelcorpus.GGUF(spec)
	in := content.NewGGUFInspector(content.Options{}, int64(len(data)))
	at, err := headerDoneAt(in, data)
	if err != nil {
		t.Fatal(err)
	}
	// data starts at the first 32-aligned offset after the tensor infos;
	// tensors are 272, 28, 36 and 6 bytes, each padded to 32: 416 data bytes.
	dataStart := len(data) - 416
	if dataStart%32 != 0 || at != dataStart {
		t.Fatalf("HeaderDone after %d bytes, want %d (start of tensor data)", at, dataStart)
	}
	ts := in.Tensors()
	if len(ts) != 4 || ts[0].DType != "Q8_0" || ts[0].End != 272 || ts[3].Begin != 384 || in.Architecture() != "llama" {
		t.Fatalf("tensors %+v arch %q", ts, in.Architecture())
	}

	spec.KVs[7].Value = "{{ ''.__class__.__mro__ }}"
	bad := modelcorpus.GGUF(spec)
	in = content.NewGGUFInspector(content.Options{}, int64(len(bad)))
	at, err = headerDoneAt(in, bad)
	if err == nil || at != -1 {
		t.Fatalf("bad chat template: HeaderDone at %d, err %v", at, err)
	}
}

func TestNewInspectorHeaderDoneBeforeData(t *testing.T) {
	// A large file: the proxy may start sending once the header is valid,
	// long before Close.
	ts := []modelcorpus.STTensor{{Name: "w", DType: "F32", Shape: []uint64{1 << 16}}}
	data := modelcorpus.Safetensors(ts, nil)
	in, err := content.NewInspector(content.Options{}, "application/vnd.cncf.model.weight.v1.raw", "model.safetensors", int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write(data[:8192]); err != nil {
		t.Fatal(err)
	}
	if !in.HeaderDone() {
		t.Fatal("HeaderDone false after header and sniff window")
	}
	if _, err := in.Write(data[8192:]); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if fr, ok := in.(content.FormatReporter); !ok || fr.Format() != content.FormatSafetensors {
		t.Fatal("format not reported")
	}
	if tl, ok := in.(content.TensorLister); !ok || len(tl.Tensors()) != 1 {
		t.Fatal("tensors not listed")
	}
}

// A zip is released only after Close, except a PyTorch checkpoint, which
// opens once its data.pkl (first member, only pickle) passed: a finding
// after that (a second pickle among the storages) still refuses the blob,
// at Close at the latest, and the proxy aborts with the tail held back.
func TestZipHeaderDoneOnlyAtClose(t *testing.T) {
	scanOpts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	plain := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "a.json", Data: []byte(`{"a":1}`)}, {Name: "b.txt", Data: []byte("hello")}}})
	pin := content.NewZipInspector(scanOpts, int64(len(plain)))
	if at, err := headerDoneAt(pin, plain); err != nil || at != len(plain)+1 {
		t.Fatalf("plain zip HeaderDone at %d (%v), want only after Close", at, err)
	}
	evil := modelcorpus.TorchSaveZip(append(modelcorpus.TorchSave2Records("archive", modelcorpus.SmallTorchModel(), nil, nil),
		modelcorpus.MinizRecord{Name: "archive/extra.pkl", Data: modelcorpus.OsSystemPickle()}))
	ein := content.NewZipInspector(scanOpts, int64(len(evil)))
	at, err := headerDoneAt(ein, evil)
	if err == nil || !strings.Contains(err.Error(), "posix.system") || at < 0 || at >= len(evil) {
		t.Fatalf("torch zip with a second pickle: HeaderDone at %d, err %v; want early HeaderDone and the finding", at, err)
	}
	data := modelcorpus.TorchZip(modelcorpus.SmallTorchModel())
	in := content.NewZipInspector(scanOpts, int64(len(data)))
	at, err = headerDoneAt(in, data)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 || at >= len(data) {
		t.Fatalf("torch checkpoint HeaderDone at %d of %d, want once data.pkl passed", at, len(data))
	}
	want := []string{"archive/data.pkl"}
	if got := in.PickleMembers(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("pickle members %v", got)
	}
}

// Generated zips must be standard: Go's archive/zip reads them and verifies
// every CRC (cross-check of the generator, so validator tests are honest).
func TestGeneratedZipsReadByArchiveZip(t *testing.T) {
	for name, data := range map[string][]byte{
		"torch zip64": modelcorpus.TorchZip(modelcorpus.SmallTorchModel()),
		"plain":       modelcorpus.Zip(modelcorpus.ZipSpec{Entries: modelcorpus.TorchZipEntries("m", modelcorpus.SmallTorchModel(), nil)}),
	} {
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatalf("%s/%s: %v", name, f.Name, err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("%s/%s: %v", name, f.Name, err)
			}
			rc.Close()
		}
		if len(zr.File) != 9 {
			t.Fatalf("%s: %d files", name, len(zr.File))
		}
	}
}

// Generated pickles must be what CPython can parse: pickletools.dis checks
// opcode arguments, the stack and the memo. Skipped when python3 is absent.
func TestGeneratedPicklesParseWithCPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	dir := t.TempDir()
	files := map[string][]byte{
		"sd2.pkl":        modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2),
		"sd4.pkl":        modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 4),
		"os.pkl":         modelcorpus.OsSystemPickle(),
		"eval.pkl":       modelcorpus.BuiltinsEvalPickle(),
		"popen.pkl":      modelcorpus.SubprocessPopenPickle(),
		"memo.pkl":       modelcorpus.StackGlobalViaMemoPickle(),
		"resolve.pkl":    modelcorpus.PkgutilResolveNamePickle(),
		"legacy.pt":      modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), nil),
		"bigsd.pkl":      modelcorpus.BigStateDict(1001, 2),
		"proto1text.pkl": []byte("(dp0\nVa\np1\nI1\ns."),
	}
	var names []string
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	script := `
import io, pickletools, sys
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    f = io.BytesIO(data)
    n = 5 if path.endswith(".pt") else 1
    for _ in range(n):
        pickletools.dis(f, out=io.StringIO())
    if not path.endswith(".pt") and f.tell() != len(data):
        sys.exit(path + ": trailing bytes")
`
	args := []string{"-c", script}
	for _, n := range names {
		args = append(args, filepath.Join(dir, n))
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("CPython rejected a generated pickle: %v\n%s", err, out)
	}
}

func TestCheckManifest(t *testing.T) {
	d := func(mt, title string) ocispec.Descriptor {
		desc := ocispec.Descriptor{MediaType: mt, Digest: digest.FromString(mt + title), Size: 1}
		if title != "" {
			desc.Annotations = map[string]string{"org.cncf.model.filepath": title}
		}
		return desc
	}
	m := &ocimanifest.Manifest{
		Config: &ocispec.Descriptor{MediaType: "application/vnd.cncf.model.config.v1+json"},
		Layers: []ocispec.Descriptor{
			d("application/vnd.cncf.model.weight.v1.raw", "model.safetensors"),
			d("application/vnd.cncf.model.weight.config.v1.raw", "config.json"),
			d("application/vnd.cncf.model.code.v1.raw", "modeling.py"),
			d("application/vnd.cncf.model.doc.v1.raw", "../README.md"),
			d("application/vnd.cncf.model.doc.v1.raw", "model.safetensors"),
			d("application/x-unknown", ""),
		},
	}
	m.Layers[5].URLs = []string{"https://evil.example/blob"}
	fs := content.CheckManifest(content.Options{MediaTypes: []string{"modelpack"}, DenyCodeLayers: true}, m)
	var reasons []string
	for _, f := range fs {
		reasons = append(reasons, f.Reason)
	}
	got := strings.Join(reasons, "\n")
	for _, want := range []string{
		`layer 2 (` + m.Layers[2].Digest.String() + `): code layer "application/vnd.cncf.model.code.v1.raw" is denied (denyCodeLayers)`,
		`layer 3 (` + m.Layers[3].Digest.String() + `): org.cncf.model.filepath "../README.md" is not a clean relative path`,
		`layers 0 and 4 declare the same file path "model.safetensors"`,
		`layer 5 (` + m.Layers[5].Digest.String() + `) has urls (foreign layer); only registry-hosted blobs are allowed`,
		`layer 5 (` + m.Layers[5].Digest.String() + `): layer media type "application/x-unknown" is not allowed by this rule`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing finding %q in:\n%s", want, got)
		}
	}
	if len(fs) != 5 {
		t.Errorf("%d findings, want 5:\n%s", len(fs), got)
	}
	// Config type of another family is refused under a modelpack-only rule.
	m2 := &ocimanifest.Manifest{Config: &ocispec.Descriptor{MediaType: "application/vnd.docker.container.image.v1+json"}}
	fs = content.CheckManifest(content.Options{MediaTypes: []string{"modelpack"}}, m2)
	if len(fs) != 1 || fs[0].Reason != `config media type "application/vnd.docker.container.image.v1+json" is not allowed by this rule` {
		t.Fatalf("config finding: %+v", fs)
	}
	// Ollama manifest under the ollama set is clean.
	m3 := &ocimanifest.Manifest{Config: &ocispec.Descriptor{MediaType: "application/vnd.docker.container.image.v1+json"},
		Layers: []ocispec.Descriptor{d("application/vnd.ollama.image.model", ""), d("application/vnd.ollama.image.template", "")}}
	if fs := content.CheckManifest(content.Options{MediaTypes: []string{"ollama"}}, m3); len(fs) != 0 {
		t.Fatalf("clean ollama manifest: %+v", fs)
	}
}

func TestMediaTypeSets(t *testing.T) {
	names := content.MediaTypeSetNames()
	if strings.Join(names, ",") != "docker-ai,kitops,modelpack,ollama,oras" {
		t.Fatalf("sets %v", names)
	}
	for _, want := range []struct{ set, mt string }{
		{"modelpack", "application/vnd.cncf.model.weight.v1.raw"},
		{"modelpack", "application/vnd.cnai.model.weight.config.v1.tar+zstd"},
		{"kitops", "application/vnd.kitops.modelkit.modelpart.v1.tar+gzip"},
		{"ollama", "application/vnd.ollama.image.adapter"},
		{"docker-ai", "application/vnd.docker.ai.gguf.v3.mmproj"},
		{"oras", "application/vnd.oci.image.layer.v1.tar"},
	} {
		found := false
		for _, mt := range content.MediaTypeSet(want.set) {
			found = found || mt == want.mt
		}
		if !found {
			t.Errorf("%s lacks %s", want.set, want.mt)
		}
	}
	if content.MediaTypeSet("nope") != nil {
		t.Fatal("unknown set")
	}
}

func TestInspectReader(t *testing.T) {
	data := modelcorpus.Safetensors(modelcorpus.SmallModel(), nil)
	rep, err := content.InspectReader(content.Options{}, bytes.NewReader(data), int64(len(data)), "", "model.safetensors")
	if err != nil || rep.Format != "safetensors" || len(rep.Findings) != 0 || len(rep.Tensors) != 6 {
		t.Fatalf("%+v %v", rep, err)
	}
	evil := modelcorpus.OsSystemPickle()
	rep, err = content.InspectReader(content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}, bytes.NewReader(evil), -1, "", "model.pkl")
	if err != nil || rep.Format != "pickle" || len(rep.Findings) != 1 || rep.Findings[0].Reason != "GLOBAL imports posix.system, which is not in the allowlist (content.formats.pickle.allow)" {
		t.Fatalf("%+v %v", rep, err)
	}
	good := modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2)
	rep, err = content.InspectReader(content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}, bytes.NewReader(good), -1, "", "model.pkl")
	if err != nil || len(rep.Findings) != 0 || strings.Join(rep.Globals, ",") != "collections.OrderedDict,torch.FloatStorage,torch.HalfStorage,torch._utils._rebuild_tensor_v2" {
		t.Fatalf("%+v %v", rep, err)
	}
	rerr := errors.New("disk on fire")
	_, err = content.InspectReader(content.Options{}, io.MultiReader(bytes.NewReader(data[:10]), errReader{rerr}), -1, "", "")
	if !errors.Is(err, rerr) {
		t.Fatalf("I/O error not returned: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestOptionsValidate(t *testing.T) {
	for _, o := range []content.Options{
		{Pickle: content.PickleOptions{Mode: "maybe"}},
		{Safetensors: content.SafetensorsOptions{MaxHeaderBytes: 200_000_000}},
		{MediaTypes: []string{""}},
		{TensorAllow: []*regexp.Regexp{nil}},
	} {
		if o.Validate() == nil {
			t.Errorf("%+v accepted", o)
		}
		if _, err := content.NewInspector(o, "", "", 1); err == nil {
			t.Errorf("NewInspector accepted %+v", o)
		}
	}
	if err := (content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSafetensorsHeaderCapConfigurable(t *testing.T) {
	data := modelcorpus.Safetensors(modelcorpus.SmallModel(), nil)
	n := binary.LittleEndian.Uint64(data)
	in := content.NewSafetensorsInspector(content.Options{Safetensors: content.SafetensorsOptions{MaxHeaderBytes: int64(n) - 8}}, int64(len(data)))
	_, err := in.Write(data)
	var f *content.Finding
	if !errors.As(err, &f) || !strings.HasPrefix(f.Reason, "header length ") || !strings.HasSuffix(f.Reason, "exceeds the limit of "+strconv.Itoa(int(n)-8)+" bytes") {
		t.Fatalf("cap not applied: %v", err)
	}
}

func TestLegacyTorchStorageChecks(t *testing.T) {
	opts := content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}
	ts := modelcorpus.SmallTorchModel()
	data := modelcorpus.LegacyTorch(ts, nil)
	// corrupt the first storage's element count (right after the 5 pickles)
	total := 0
	for _, t := range ts {
		total += 8 + int(t.Numel()*modelcorpus.ElemSize(t.StorageType))
	}
	first := len(data) - total
	bad := append([]byte(nil), data...)
	binary.LittleEndian.PutUint64(bad[first:], 99)
	in := content.NewLegacyTorchInspector(opts, int64(len(bad)))
	_, err := in.Write(bad)
	var f *content.Finding
	if !errors.As(err, &f) || f.Reason != `storage "0" has 99 elements but the pickle declares 12` || f.Offset != int64(first) {
		t.Fatalf("got %v", err)
	}
	// truncated storages
	in = content.NewLegacyTorchInspector(opts, -1)
	if _, err := in.Write(data[:len(data)-3]); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err == nil || !strings.Contains(err.Error(), "storage data incomplete") {
		t.Fatalf("truncation not detected: %v", err)
	}
	if !in.HeaderDone() {
		t.Fatal("legacy HeaderDone must be true once all pickles were walked")
	}
}

func TestHeaderDoneOnlyAtCloseForWholeFileFormats(t *testing.T) {
	for name, c := range map[string]struct {
		mt   string
		data []byte
	}{
		"tar":      {"application/vnd.cncf.model.weight.v1.tar", modelcorpus.Tar(modelcorpus.ModelTar(), nil)},
		"tar+gzip": {"application/vnd.kitops.modelkit.model.v1.tar+gzip", modelcorpus.Gzip(modelcorpus.Tar(modelcorpus.ModelTar(), nil))},
		"json":     {"application/vnd.cncf.model.weight.config.v1.raw", []byte(`{"architectures":["X"],"pad":"` + strings.Repeat("x", 10000) + `"}`)},
		"pickle":   {"", modelcorpus.StateDictPickle(modelcorpus.SmallTorchModel(), 2)},
	} {
		in, err := content.NewInspector(content.Options{Pickle: content.PickleOptions{Mode: content.PickleScan}}, c.mt, "", int64(len(c.data)))
		if err != nil {
			t.Fatal(err)
		}
		at, err := headerDoneAt(in, c.data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// raw pickles are done at STOP, the last byte; the others at Close
		if name == "pickle" && at != len(c.data) || name != "pickle" && at != len(c.data)+1 {
			t.Fatalf("%s: HeaderDone after %d of %d bytes", name, at, len(c.data))
		}
	}
}
