package content_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

const (
	docRaw    = "application/vnd.cncf.model.doc.v1.raw"
	weightRaw = "application/vnd.cncf.model.weight.v1.raw"
	configRaw = "application/vnd.cncf.model.weight.config.v1.raw"
)

// dunder is refused as a Jinja template (it does not parse as one, so
// pullgate cannot vouch for it) but is harmless text as a README: no engine
// parses it as a Jinja template, and as a Go template it only reads .Prompt.
var dunder = []byte("You are a helpful assistant. {{ .Prompt }} then {% if %}\n")

func desc(mt string, kv ...string) ocispec.Descriptor {
	d := ocispec.Descriptor{MediaType: mt, Annotations: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Annotations[kv[i]] = kv[i+1]
	}
	return d
}

func TestDeclarationOf(t *testing.T) {
	for _, tc := range []struct {
		d    ocispec.Descriptor
		want []string
	}{
		{desc(docRaw), nil},
		{desc(docRaw, content.AnnotationTitle, "README.md"), []string{"README.md"}},
		{desc(docRaw, content.AnnotationModelFilepath, "a/README.md", content.AnnotationTitle, "README.md"), []string{"README.md", "a/README.md"}},
		{desc(docRaw, content.AnnotationTitle, "README.md", content.AnnotationModelFilepath, "README.md", content.AnnotationModelFilepathL, "modeling_evil.py"), []string{"README.md", "modeling_evil.py"}},
		{desc(docRaw, content.AnnotationTitle, "", content.AnnotationModelFilepathL, "x.jinja"), []string{"x.jinja"}},
	} {
		got := content.DeclarationOf(tc.d)
		if got.MediaType != tc.d.MediaType || !slices.Equal(got.Names, tc.want) {
			t.Errorf("%v: %+v, want names %q", tc.d.Annotations, got, tc.want)
		}
		cls := got.Classes()
		if len(cls) != max(len(tc.want), 1) {
			t.Errorf("%v: classes %v", tc.d.Annotations, cls)
		}
	}
}

// The key of a class is the one the proxy recorded inspections under before
// declarations had several names (sha256 of media type NUL title, 8 bytes):
// records written by earlier versions stay valid.
func TestClassKeyStable(t *testing.T) {
	sum := sha256.Sum256([]byte(docRaw + "\x00" + "README.md"))
	if got, want := (content.Class{MediaType: docRaw, Name: "README.md"}).Key(), hex.EncodeToString(sum[:8]); got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	if (content.Class{MediaType: docRaw, Name: "a"}).Key() == (content.Class{MediaType: docRaw + "a"}).Key() {
		t.Fatal("media type and name run together in the key")
	}
}

func TestClassesOfSortedDistinct(t *testing.T) {
	a := content.DeclarationOf(desc(docRaw, content.AnnotationTitle, "README.md", content.AnnotationModelFilepath, "chat_template.jinja"))
	b := content.DeclarationOf(desc(docRaw, content.AnnotationTitle, "chat_template.jinja"))
	c := content.DeclarationOf(desc(configRaw, content.AnnotationTitle, "README.md"))
	got := content.ClassesOf(a, b, c, a)
	want := []content.Class{{docRaw, "README.md"}, {docRaw, "chat_template.jinja"}, {configRaw, "README.md"}}
	slices.SortFunc(want, func(x, y content.Class) int {
		return strings.Compare(x.MediaType+"\x00"+x.Name, y.MediaType+"\x00"+y.Name)
	})
	if !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if !slices.Equal(content.ClassesOf(c, b, a), got) {
		t.Fatal("order depends on the order declarations were gathered in")
	}
	// Merging what is there already returns the same slice, unmodified.
	same := content.MergeClasses(got, b.Classes())
	if &same[0] != &got[0] || len(same) != len(got) {
		t.Fatal("merging known classes allocated a new slice")
	}
	before := slices.Clone(got)
	more := content.MergeClasses(got, []content.Class{{"a/b", "z"}})
	if len(more) != len(got)+1 || !slices.Equal(got, before) {
		t.Fatalf("merge modified its input or lost a class: %v %v", got, more)
	}
}

// run feeds data to an inspector in chunks and returns its error.
func run(in content.Inspector, data []byte, chunk int) error {
	for off := 0; off < len(data); off += chunk {
		if _, err := in.Write(data[off:min(off+chunk, len(data))]); err != nil {
			_ = in.Close()
			return err
		}
	}
	return in.Close()
}

func TestDeclaredInspectorJudgesEveryClass(t *testing.T) {
	opts := content.Options{DenyCodeLayers: true}
	readme := content.Class{MediaType: docRaw, Name: "README.md"}
	tmpl := content.Class{MediaType: docRaw, Name: "chat_template.jinja"}
	code := content.Class{MediaType: docRaw, Name: "modeling_evil.py"}
	// Control: as a README alone the template passes.
	in, err := content.NewDeclaredInspector(opts, []content.Class{readme}, int64(len(dunder)))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(in, dunder, 7); err != nil {
		t.Fatalf("as README.md: %v", err)
	}
	for _, order := range [][]content.Class{{readme, tmpl}, {tmpl, readme}, {readme, readme, tmpl}} {
		in, err := content.NewDeclaredInspector(opts, order, int64(len(dunder)))
		if err != nil {
			t.Fatal(err)
		}
		err = run(in, dunder, 5)
		var f *content.Finding
		if !errors.As(err, &f) || !strings.Contains(f.Reason, `as "chat_template.jinja"`) || !strings.Contains(f.Reason, "does not parse as a Jinja template") {
			t.Fatalf("%v: %v, want a template finding naming chat_template.jinja", order, err)
		}
	}
	// A code name refuses the blob before any byte.
	_, err = content.NewDeclaredInspector(opts, []content.Class{readme, code}, 10)
	var f *content.Finding
	if !errors.As(err, &f) || !strings.Contains(f.Reason, "modeling_evil.py") || !strings.Contains(f.Reason, "denyCodeLayers") {
		t.Fatalf("code name: %v", err)
	}
	if _, err := content.NewDeclaredInspector(opts, nil, 10); err == nil {
		t.Fatal("no class: no error")
	}
}

// The header gate opens only when every class's inspector passed its
// header: text up to maxConfigBytes, as a README or as a chat template, is
// parsed whole at Close and held until then.
func TestDeclaredInspectorHeaderDoneWhenAllAre(t *testing.T) {
	data := []byte("Hello {{ name }}, how can I help?\n")
	readme := content.Class{MediaType: docRaw, Name: "README.md"}
	tmpl := content.Class{MediaType: docRaw, Name: "chat_template.jinja"}
	one, err := content.NewDeclaredInspector(content.Options{}, []content.Class{readme}, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	both, err := content.NewDeclaredInspector(content.Options{}, []content.Class{readme, tmpl}, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []content.Inspector{one, both} {
		if _, err := in.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if one.HeaderDone() || both.HeaderDone() {
		t.Fatal("text that may be a template released before it was parsed")
	}
	if err := both.Close(); err != nil {
		t.Fatal(err)
	}
	if !both.HeaderDone() {
		t.Fatal("not HeaderDone after every class passed")
	}
	if err := one.Close(); err != nil || !one.HeaderDone() {
		t.Fatalf("README: %v", err)
	}
}

// Tensors and format come through for the proxy's MBOM checks.
func TestDeclaredInspectorTensors(t *testing.T) {
	st := modelcorpus.Safetensors(modelcorpus.SmallModel(), nil)
	in, err := content.NewDeclaredInspector(content.Options{}, []content.Class{{weightRaw, "model.safetensors"}, {weightRaw, "other.safetensors"}}, int64(len(st)))
	if err != nil {
		t.Fatal(err)
	}
	if err := run(in, st, 1000); err != nil {
		t.Fatal(err)
	}
	if tl, ok := in.(content.TensorLister); !ok || len(tl.Tensors()) != len(modelcorpus.SmallModel()) {
		t.Fatalf("tensors not listed: %T", in)
	}
	if fr, ok := in.(content.FormatReporter); !ok || fr.Format() != content.FormatSafetensors {
		t.Fatalf("format not reported: %T", in)
	}
}

func TestCheckManifestEveryName(t *testing.T) {
	opts := content.Options{DenyCodeLayers: true}
	l := func(kv ...string) ocispec.Descriptor {
		d := desc(docRaw, kv...)
		d.Digest = digest.FromString(strings.Join(kv, ","))
		return d
	}
	m := &ocimanifest.Manifest{Layers: []ocispec.Descriptor{
		l(content.AnnotationTitle, "README.md", content.AnnotationModelFilepath, "modeling_evil.py"),
		l(content.AnnotationTitle, "NOTES.md", content.AnnotationModelFilepathL, "x/run.sh"),
		l(content.AnnotationTitle, "a.py"),
		l(content.AnnotationTitle, "USAGE.md", content.AnnotationModelFilepath, "USAGE.md"),
	}}
	fs := content.CheckManifest(opts, m)
	if len(fs) != 3 || !strings.Contains(fs[0].Reason, "layer 0") || !strings.Contains(fs[0].Reason, "modeling_evil.py") ||
		!strings.Contains(fs[1].Reason, "layer 1") || !strings.Contains(fs[1].Reason, "run.sh") ||
		!strings.Contains(fs[2].Reason, "layer 2") || !strings.Contains(fs[2].Reason, "a.py") {
		t.Fatalf("%v", fs)
	}
	if fs := content.CheckManifest(content.Options{}, m); len(fs) != 0 {
		t.Fatalf("without denyCodeLayers: %v", fs)
	}
}

// FuzzDeclaredInspector: a blob passes as a set of classes exactly when it
// passes as each class alone, and a finding of the set is a finding of one
// of them, whatever the chunking.
func FuzzDeclaredInspector(f *testing.F) {
	f.Add(dunder, uint8(3), uint8(0b0011))
	f.Add([]byte(`{"auto_map":{"a":"b"}}`), uint8(5), uint8(0b0101))
	f.Add([]byte("just text\n"), uint8(1), uint8(0b1001))
	f.Add(modelcorpus.Safetensors(modelcorpus.SmallModel(), nil), uint8(40), uint8(0b10001))
	f.Add(modelcorpus.OsSystemPickle(), uint8(2), uint8(0b1111))
	all := []content.Class{
		{docRaw, "README.md"}, {docRaw, "chat_template.jinja"}, {configRaw, "config.json"},
		{"", "notes.txt"}, {weightRaw, "model.safetensors"}, {"application/vnd.ollama.image.template", ""},
	}
	opts := content.Options{DenyCodeLayers: true}
	f.Fuzz(func(t *testing.T, data []byte, chunk, pick uint8) {
		var cls []content.Class
		for i, c := range all {
			if pick&(1<<i) != 0 {
				cls = append(cls, c)
			}
		}
		if len(cls) == 0 {
			return
		}
		size := int64(len(data))
		anyFails := false
		var reasons []string
		for _, c := range cls {
			in, err := content.NewInspector(opts, c.MediaType, c.Name, size)
			if err == nil {
				err = run(in, data, max(len(data), 1))
			}
			if err != nil {
				anyFails = true
				var f *content.Finding
				if !errors.As(err, &f) {
					t.Fatalf("%v: non-Finding error %v", c, err)
				}
				reasons = append(reasons, f.Reason)
			}
		}
		in, err := content.NewDeclaredInspector(opts, cls, size)
		if err == nil {
			err = run(in, data, int(chunk%61)+1)
		}
		if (err != nil) != anyFails {
			t.Fatalf("%v: set verdict %v, classes alone %q", cls, err, reasons)
		}
		if err != nil {
			var f *content.Finding
			if !errors.As(err, &f) {
				t.Fatalf("non-Finding error %v", err)
			}
			ok := false
			for _, r := range reasons {
				ok = ok || strings.HasSuffix(f.Reason, r)
			}
			if !ok {
				t.Fatalf("finding %q is none of the classes' %q", f.Reason, reasons)
			}
		}
	})
}

// Names are unique per kind (titles among titles, file paths among file
// paths) across different blobs; one blob under several names is fine.
func TestCheckManifestUniqueNames(t *testing.T) {
	l := func(data string, kv ...string) ocispec.Descriptor {
		d := desc(docRaw, kv...)
		d.Digest = digest.FromString(data)
		return d
	}
	dup := &ocimanifest.Manifest{Layers: []ocispec.Descriptor{
		l("a", content.AnnotationTitle, "README.md"),
		l("b", content.AnnotationTitle, "README.md"),
	}}
	if fs := content.CheckManifest(content.Options{}, dup); len(fs) != 1 || !strings.Contains(fs[0].Reason, `same file path "README.md"`) {
		t.Fatalf("two blobs titled README.md: %v", fs)
	}
	same := &ocimanifest.Manifest{Layers: []ocispec.Descriptor{
		l("a", content.AnnotationTitle, "README.md"),
		l("a", content.AnnotationTitle, "README.md"),
		l("a", content.AnnotationTitle, "chat_template.jinja"),
	}}
	if fs := content.CheckManifest(content.Options{}, same); len(fs) != 0 {
		t.Fatalf("one blob under several names: %v", fs)
	}
	unclean := &ocimanifest.Manifest{Layers: []ocispec.Descriptor{
		l("a", content.AnnotationTitle, "README.md", content.AnnotationModelFilepathL, "../../etc/x"),
	}}
	if fs := content.CheckManifest(content.Options{}, unclean); len(fs) != 1 || !strings.Contains(fs[0].Reason, "not a clean relative path") {
		t.Fatalf("a clean title hid an unclean legacy file path: %v", fs)
	}
}
