package release

import (
	"fmt"
	"regexp"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"

	"github.com/pullgate/pullgate/verify"
	"github.com/pullgate/pullgate/verify/attest"
	"github.com/pullgate/pullgate/verify/content"
	"github.com/pullgate/pullgate/verify/ocimanifest"
)

// AnnotationTitle names a layer's file.
const AnnotationTitle = "org.opencontainers.image.title"

// Layer is one layer of the artifact being served.
type Layer struct {
	Digest    string `json:"digest"` // sha256:<hex>
	Size      int64  `json:"size"`
	Title     string `json:"title"` // org.opencontainers.image.title, "" when absent
	MediaType string `json:"mediaType,omitempty"`
}

var layerDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// LayersOf returns the layers of a parsed OCI or Docker image manifest (an
// index has none). Layers here are sha256 only (the MBOM records sha256
// digests): another algorithm, or a negative size, is an error.
func LayersOf(m *ocimanifest.Manifest) ([]Layer, error) {
	out := make([]Layer, 0, len(m.Layers))
	for i, l := range m.Layers {
		if !layerDigestRE.MatchString(string(l.Digest)) || l.Size < 0 {
			return nil, fmt.Errorf("manifest: layer %d has an invalid digest or size", i)
		}
		out = append(out, Layer{Digest: string(l.Digest), Size: l.Size, Title: l.Annotations[AnnotationTitle], MediaType: l.MediaType})
	}
	return out, nil
}

// MBOMOptions shape CheckMBOM.
type MBOMOptions struct {
	// Tensors are the tensors content inspection found, by file (layer
	// title). Files the MBOM gives tensors for are compared when present.
	Tensors map[string][]attest.Tensor
	// RequireTensors fails files with expected tensors but no entry in
	// Tensors (instead of passing them on digests alone).
	RequireTensors bool
	// Subject, when set, is the digest being served: MBOMs that do not name
	// it are not evidence for it (verify.Collect already guarantees this).
	Subject digest.Digest
}

// CheckMBOM checks the artifact's layers against every verified MBOM
// statement in atts: each layer is one file of the MBOM (by title), none is
// missing, none is extra, each has the MBOM's sha256 and size; and, when
// tensor information is supplied, each file's tensor names, dtypes and
// shapes equal the MBOM's. No MBOM is a failure.
func CheckMBOM(atts []verify.Attestation, layers []Layer, opts MBOMOptions) Report {
	rp := newReporter("mbom")
	byTitle, ok := indexLayers(rp, layers, nil)
	n := eachMBOM(rp, atts, opts, func(a *verify.Attestation, p *attest.MBOMPredicate) {
		if ok {
			checkMBOM(rp, a.Statement.String(), p, byTitle, opts)
		}
	})
	if n == 0 {
		rp.fail(CodeNoEvidence, "no verified MBOM statement (%s) for the served digest", attest.KindMBOM.PredicateType())
	}
	return rp.done()
}

// eachMBOM calls fn with every MBOM statement of atts about opts.Subject
// (any subject when it is empty) whose predicate decodes; one that does not
// is a failure. It returns how many MBOM statements there were.
func eachMBOM(rp *reporter, atts []verify.Attestation, opts MBOMOptions, fn func(*verify.Attestation, *attest.MBOMPredicate)) int {
	n := 0
	for i := range atts {
		a := &atts[i]
		if a.PredicateType != attest.KindMBOM.PredicateType() {
			continue
		}
		if opts.Subject != "" && !subjectsContain(a.Subjects, opts.Subject) {
			continue
		}
		n++
		p, err := attest.DecodePredicate(a.PredicateType, a.Predicate)
		if err != nil {
			rp.fail(CodeMalformed, "statement %s: %v", a.Statement, err)
			continue
		}
		fn(a, p.(*attest.MBOMPredicate))
	}
	return n
}

// indexLayers maps titles to layers; ignored(title) layers are left out.
func indexLayers(rp *reporter, layers []Layer, ignored func(string) bool) (map[string]Layer, bool) {
	ok := true
	by := make(map[string]Layer, len(layers))
	for i, l := range layers {
		if !layerDigestRE.MatchString(l.Digest) || l.Size < 0 {
			rp.fail(CodeInvalidInput, "layer %d has an invalid digest %q or size", i, l.Digest)
			ok = false
			continue
		}
		if l.Title == "" {
			rp.fail(CodeUntitled, "layer %s has no %s annotation, so no file can account for it", l.Digest, AnnotationTitle)
			ok = false
			continue
		}
		if ignored != nil && ignored(l.Title) {
			continue
		}
		if _, dup := by[l.Title]; dup {
			rp.fail(CodeDuplicateTitle, "two layers are titled %q", l.Title)
			ok = false
			continue
		}
		by[l.Title] = l
	}
	return by, ok
}

func checkMBOM(rp *reporter, stmt string, p *attest.MBOMPredicate, layers map[string]Layer, opts MBOMOptions) {
	failed := false
	listed := make(map[string]bool, len(p.Files))
	for _, f := range p.Files {
		listed[f.Path] = true
		l, ok := layers[f.Path]
		if !ok {
			rp.fail(CodeMissingFile, "file %s (sha256:%s) listed by MBOM %s is not served by any layer", f.Path, f.SHA256, stmt)
			failed = true
			continue
		}
		if l.Digest != "sha256:"+f.SHA256 {
			rp.fail(CodeDigestMismatch, "file %s is served as %s, but MBOM %s records sha256:%s", f.Path, l.Digest, stmt, f.SHA256)
			failed = true
			continue
		}
		if l.Size != f.Size {
			rp.fail(CodeSizeMismatch, "file %s is served with size %d, but MBOM %s records %d", f.Path, l.Size, stmt, f.Size)
			failed = true
			continue
		}
		if len(f.Tensors) > 0 {
			got, have := opts.Tensors[f.Path]
			switch {
			case have:
				if !compareTensors(rp, f.Path, stmt, f.Tensors, got) {
					failed = true
				}
			case opts.RequireTensors:
				rp.fail(CodeMissingTensors, "file %s: MBOM %s expects %d tensors but no tensor information was inspected", f.Path, stmt, len(f.Tensors))
				failed = true
			}
		}
	}
	var extra []string
	for t := range layers {
		if !listed[t] {
			extra = append(extra, t)
		}
	}
	sort.Strings(extra)
	for _, t := range extra {
		rp.fail(CodeExtraFile, "layer %s (%s) is not listed in MBOM %s", t, layers[t].Digest, stmt)
		failed = true
	}
	if !failed {
		rp.pass("%d file(s) match MBOM %s", len(p.Files), stmt)
	}
}

func compareTensors(rp *reporter, file, stmt string, want, got []attest.Tensor) bool {
	ok := true
	g := make(map[string]attest.Tensor, len(got))
	for _, t := range got {
		g[t.Name] = t
	}
	w := make(map[string]bool, len(want))
	for _, t := range want {
		w[t.Name] = true
		x, found := g[t.Name]
		if !found {
			rp.fail(CodeTensorMismatch, "file %s: tensor %q expected by MBOM %s is missing", file, t.Name, stmt)
			ok = false
			continue
		}
		if x.DType != t.DType {
			rp.fail(CodeTensorMismatch, "file %s: tensor %q has dtype %s, MBOM %s expects %s", file, t.Name, x.DType, stmt, t.DType)
			ok = false
		}
		if !equalShape(x.Shape, t.Shape) {
			rp.fail(CodeTensorMismatch, "file %s: tensor %q has shape %v, MBOM %s expects %v", file, t.Name, x.Shape, stmt, t.Shape)
			ok = false
		}
	}
	var extra []string
	for _, t := range got {
		if !w[t.Name] {
			extra = append(extra, t.Name)
		}
	}
	sort.Strings(extra)
	for _, n := range extra {
		rp.fail(CodeTensorMismatch, "file %s: tensor %q is not in MBOM %s", file, n, stmt)
		ok = false
	}
	return ok
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CheckMBOMTensors compares the tensors content inspection found in one
// served file (by layer title) with what every verified MBOM in atts
// expects for that file. It is the blob-time half of CheckMBOM, for callers
// that learn tensors only while the layer streams. Files for which no MBOM
// lists tensors pass; no MBOM is a failure.
func CheckMBOMTensors(atts []verify.Attestation, title string, tensors []attest.Tensor, opts MBOMOptions) Report {
	rp := newReporter("mbom")
	n := eachMBOM(rp, atts, opts, func(a *verify.Attestation, p *attest.MBOMPredicate) {
		for _, f := range p.Files {
			if f.Path != title {
				continue
			}
			if len(f.Tensors) == 0 {
				rp.pass("file %s: MBOM %s lists no tensors", title, a.Statement)
			} else if compareTensors(rp, title, a.Statement.String(), f.Tensors, tensors) {
				rp.pass("file %s: %d tensor(s) match MBOM %s", title, len(f.Tensors), a.Statement)
			}
		}
	})
	if n == 0 {
		rp.fail(CodeNoEvidence, "no verified MBOM statement (%s) for the served digest", attest.KindMBOM.PredicateType())
	} else if len(rp.r.Checks) == 0 {
		rp.fail(CodeExtraFile, "layer %s is not listed in any MBOM", title)
	}
	return rp.done()
}

// MBOMBaseModelNames returns the Hugging Face Hub ids under which every
// verified MBOM statement about opts.Subject (any subject when empty)
// names its base model (baseModelNames; the names all of them list, so
// that no statement is overruled; compared as the Hub compares ids,
// without regard to ASCII case: content.SameHubID), and how many MBOM
// statements there were. When a statement's predicate does not decode, no name is
// returned. This is what content.references.require: mbom compares a
// config's references with (content.CheckReferences).
func MBOMBaseModelNames(atts []verify.Attestation, opts MBOMOptions) ([]string, int) {
	var names []string
	decoded := 0
	n := eachMBOM(newReporter("mbom"), atts, opts, func(_ *verify.Attestation, p *attest.MBOMPredicate) {
		if decoded == 0 {
			names = append([]string(nil), p.BaseModelNames...)
		} else {
			names = slices.DeleteFunc(names, func(s string) bool {
				return !slices.ContainsFunc(p.BaseModelNames, func(n string) bool { return content.SameHubID(n, s) })
			})
		}
		decoded++
	})
	if decoded != n {
		return nil, n
	}
	return names, n
}
