package content

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// One blob, every declaration. A blob's bytes are inspected as what a
// manifest says they are: its media type and its file name. The same bytes
// can be declared several ways (twice in one manifest, differently by two
// tags of a repository, or by one descriptor whose title and ModelPack file
// path disagree: modctl writes the layer under org.cncf.model.filepath,
// oras under org.opencontainers.image.title). A blob passes only when it
// passes as every (media type, name) it is declared as: a README.md that is
// also a chat_template.jinja is checked as a template, one that is also
// modeling_evil.py as code.

// Declaration is how one descriptor declares a blob: its media type and
// every file name it gives it.
type Declaration struct {
	MediaType string
	// Names are the distinct non-empty names of the descriptor's
	// org.opencontainers.image.title, org.cncf.model.filepath and legacy
	// org.cnai.model.filepath annotations, in that order; empty when it
	// names none.
	Names []string
}

// nameAnnotations are the annotations that name a layer's file.
var nameAnnotations = [...]string{AnnotationTitle, AnnotationModelFilepath, AnnotationModelFilepathL}

// DeclarationOf returns how a descriptor declares its blob.
func DeclarationOf(d ocispec.Descriptor) Declaration {
	decl := Declaration{MediaType: d.MediaType}
	for _, k := range nameAnnotations {
		if v := d.Annotations[k]; v != "" && !slices.Contains(decl.Names, v) {
			decl.Names = append(decl.Names, v)
		}
	}
	return decl
}

// Class is one way a blob is inspected: a media type and one file name
// ("" when the descriptor names none). What content inspection concludes
// depends on the bytes and the class only.
type Class struct {
	MediaType string
	Name      string
}

// Key identifies the class in inspection records: 16 hex digits of
// sha256(mediaType NUL name).
func (c Class) Key() string {
	sum := sha256.Sum256([]byte(c.MediaType + "\x00" + c.Name))
	return hex.EncodeToString(sum[:8])
}

func (c Class) String() string {
	if c.Name == "" {
		return c.MediaType
	}
	return fmt.Sprintf("%q (%s)", c.Name, c.MediaType)
}

// Classes returns the classes of a declaration: one per name, or one
// without a name.
func (d Declaration) Classes() []Class {
	if len(d.Names) == 0 {
		return []Class{{MediaType: d.MediaType}}
	}
	out := make([]Class, len(d.Names))
	for i, n := range d.Names {
		out[i] = Class{MediaType: d.MediaType, Name: n}
	}
	return out
}

// ClassesOf returns the distinct classes of declarations, sorted (media
// type, then name), so that the same set gives the same order however it
// was gathered.
func ClassesOf(decls ...Declaration) []Class {
	var out []Class
	for _, d := range decls {
		out = MergeClasses(out, d.Classes())
	}
	return out
}

// MergeClasses returns the sorted union of a sorted, distinct list and
// more classes. a is returned as is when it already holds every class of b
// (no allocation); otherwise a new slice is returned and a is not modified.
func MergeClasses(a []Class, b []Class) []Class {
	var out []Class
	for _, c := range b {
		cur := a
		if out != nil {
			cur = out
		}
		i, found := slices.BinarySearchFunc(cur, c, compareClass)
		if found {
			continue
		}
		if out == nil {
			out = slices.Clone(a)
		}
		out = slices.Insert(out, i, c)
	}
	if out == nil {
		return a
	}
	return out
}

// blobClassesKey names BlobClasses' value among what is derived from a
// parsed manifest.
type blobClassesKey struct{}

// BlobClasses returns, by blob digest, every class (media type, file name)
// the manifest's descriptors declare the blob as: a blob listed twice, or
// by a descriptor whose names disagree, has several. Computed once per
// parsed manifest (parsed manifests are cached and never modified); the
// map is shared, do not modify it.
func BlobClasses(m *ocimanifest.Manifest) map[digest.Digest][]Class {
	return m.Derived(blobClassesKey{}, func() any {
		out := make(map[digest.Digest][]Class, len(m.Layers)+1)
		for _, d := range m.Blobs() {
			out[d.Digest] = MergeClasses(out[d.Digest], DeclarationOf(d).Classes())
		}
		return out
	}).(map[digest.Digest][]Class)
}

func compareClass(a, b Class) int {
	if c := strings.Compare(a.MediaType, b.MediaType); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// CheckDeclaration applies the rules that need only the descriptor
// (allowed media type, code layers) to every class of a declaration, and
// returns the first finding.
func CheckDeclaration(opts Options, d Declaration) *Finding {
	for _, c := range d.Classes() {
		if f := checkLayer(opts, c.MediaType, c.Name); f != nil {
			return f
		}
	}
	return nil
}

// NewDeclaredInspector returns the inspector of a blob declared as
// classes: one NewInspector per distinct class, each fed the same bytes.
// It is HeaderDone only when every one is, its Close succeeds only when
// every one's does, and the first finding of any refuses the blob. With a
// single class it is NewInspector itself. A *Finding error means a class
// is refused by its descriptor alone (media type, code name).
//
// Findings name the class when there are several ("as "chat_template.jinja"
// (application/...): template contains ..."). When several classes would
// refuse the bytes, the finding returned is the first met in stream order;
// classes that fail within the same Write are taken in class order. The
// finding of each class alone does not depend on how the stream is
// chunked; which class is reported first may, when two fail at different
// offsets.
func NewDeclaredInspector(opts Options, classes []Class, size int64) (Inspector, error) {
	classes = MergeClasses(nil, classes)
	switch len(classes) {
	case 0:
		return nil, errors.New("content: no declaration to inspect the blob as")
	case 1:
		return NewInspector(opts, classes[0].MediaType, classes[0].Name, size)
	}
	d := &declaredInspector{classes: classes}
	for _, c := range classes {
		in, err := NewInspector(opts, c.MediaType, c.Name, size)
		if err != nil {
			_ = d.Close()
			return nil, d.named(c, err)
		}
		d.ins = append(d.ins, in)
	}
	return d, nil
}

// declaredInspector tees a blob into one inspector per class.
type declaredInspector struct {
	classes []Class
	ins     []Inspector
	err     error
	closed  bool
}

// named prefixes a finding with the class it was found as.
func (d *declaredInspector) named(c Class, err error) error {
	var f *Finding
	if errors.As(err, &f) {
		return &Finding{Format: f.Format, Offset: f.Offset, Reason: "as " + c.String() + ": " + f.Reason}
	}
	return fmt.Errorf("as %s: %w", c, err)
}

func (d *declaredInspector) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	for i, in := range d.ins {
		if _, err := in.Write(p); err != nil {
			d.err = d.named(d.classes[i], err)
			return 0, d.err
		}
	}
	return len(p), nil
}

func (d *declaredInspector) HeaderDone() bool {
	if d.err != nil {
		return false
	}
	for _, in := range d.ins {
		if !in.HeaderDone() {
			return false
		}
	}
	return true
}

// Releasable is the least any class's inspector releases.
func (d *declaredInspector) Releasable() int64 {
	if d.err != nil {
		return 0
	}
	r := int64(math.MaxInt64)
	for _, in := range d.ins {
		r = min(r, ReleasableOf(in))
	}
	return r
}

// Close closes every inspector (they may hold resources) and returns the
// first failure in class order.
func (d *declaredInspector) Close() error {
	if d.closed {
		return d.err
	}
	d.closed = true
	for i, in := range d.ins {
		if err := in.Close(); err != nil && d.err == nil {
			d.err = d.named(d.classes[i], err)
		}
	}
	return d.err
}

// Tensors are the tensors the first inspector that lists any found: they
// depend on the bytes only.
func (d *declaredInspector) Tensors() []TensorInfo {
	for _, in := range d.ins {
		if tl, ok := in.(TensorLister); ok {
			if ts := tl.Tensors(); len(ts) > 0 {
				return ts
			}
		}
	}
	return nil
}

// Format is the format the inspectors detected (sniffing reads the bytes
// only).
func (d *declaredInspector) Format() string {
	for _, in := range d.ins {
		if fr, ok := in.(FormatReporter); ok {
			if f := fr.Format(); f != "" {
				return f
			}
		}
	}
	return ""
}

// References are the load-time references found as every class (the same
// bytes under each name the blob is declared by), each with its name.
func (d *declaredInspector) References() []Reference {
	var out []Reference
	for _, in := range d.ins {
		if rl, ok := in.(ReferenceLister); ok {
			out = append(out, rl.References()...)
		}
	}
	return out
}
