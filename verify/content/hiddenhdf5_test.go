package content_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// kerasH5 is an h5py-written Keras model (testdata/hdf5/make_seeds.py).
func kerasH5(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/hdf5/keras_latest.h5")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// safetensorsHiding returns a safetensors file with one U8 tensor whose
// data holds h5 at file offset at (libhdf5 opens it there: its signature
// search probes 512, 1024, 2048, ...).
func safetensorsHiding(t testing.TB, h5 []byte, at int) []byte {
	n := uint64(at + len(h5) + 64)
	hdr, _ := modelcorpus.SafetensorsHeader([]modelcorpus.STTensor{{Name: "w", DType: "U8", Shape: []uint64{n}}}, nil)
	b := modelcorpus.SafetensorsHeaderLen(hdr, n, 256)
	if at < 8+256 {
		t.Fatalf("offset %d is inside the header", at)
	}
	copy(b[at:], h5)
	return b
}

func inspectHidden(t *testing.T, opts content.Options, b []byte, mt, title string) content.Report {
	t.Helper()
	rep, err := content.InspectReader(opts, bytes.NewReader(b), int64(len(b)), mt, title)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestHiddenHDF5Refused(t *testing.T) {
	h5 := kerasH5(t)
	hidden := func(rep content.Report) bool {
		return len(rep.Findings) > 0 && strings.Contains(rep.Findings[0].Reason, "HDF5 file is hidden")
	}
	for _, at := range []int{512, 8192} {
		st := safetensorsHiding(t, h5, at)
		for _, title := range []string{"model.h5", "model.safetensors"} {
			if rep := inspectHidden(t, content.Options{}, st, "", title); !hidden(rep) || rep.Findings[0].Offset != int64(at) {
				t.Errorf("safetensors hiding an HDF5 file at %d, named %s: format %q, findings %v", at, title, rep.Format, rep.Findings)
			}
		}
		// The same safetensors as a zip member (stored: its bytes are
		// the member's).
		z := modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{{Name: "model.safetensors", Data: st}}})
		if rep := inspectHidden(t, content.Options{}, z, "", "model.zip"); !hidden(rep) {
			t.Errorf("zip member hiding an HDF5 file at %d: format %q, findings %v", at, rep.Format, rep.Findings)
		}
	}
	// An HDF5 file after a userblock of 4096 bytes (Sniff looks at 4096
	// bytes only): refused even where unknown binary is served.
	ub := append(make([]byte, 4096), h5...)
	for _, opts := range []content.Options{{}, {AllowUnknown: true}} {
		if rep := inspectHidden(t, opts, ub, "", "model.h5"); len(rep.Findings) == 0 {
			t.Errorf("HDF5 after a 4096-byte userblock (allow unknown %v): served as %q", opts.AllowUnknown, rep.Format)
		}
	}
	if rep := inspectHidden(t, content.Options{}, ub, "application/vnd.cncf.model.dataset.v1.raw", "data.bin"); !hidden(rep) {
		t.Errorf("dataset layer hiding an HDF5 file at 4096: format %q, findings %v", rep.Format, rep.Findings)
	}
}

// Honest files are served: the signature at a probed offset occurs only
// where an archive stores a member there, which is inspected on its own.
func TestHiddenHDF5HonestServed(t *testing.T) {
	h5 := kerasH5(t)
	big := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 4096)
	npyData := append([]byte(nil), big...)
	cases := map[string][]byte{
		"safetensors": modelcorpus.Safetensors(modelcorpus.SmallModel(), nil),
		"gguf":        modelcorpus.GGUF(modelcorpus.ValidGGUFSpec()),
		"npy":         modelcorpus.NPY("<u1", "(32768,)", npyData),
		"hdf5":        h5,
		// tar: the first member's data starts at 512
		"tar": modelcorpus.Tar([]modelcorpus.TarEntry{{Name: "model.h5", Data: h5}, {Name: "config.json", Data: []byte(`{"a":1}`)}}, nil),
		// zip: a stored member's data at 512
		"zip": modelcorpus.Zip(modelcorpus.ZipSpec{Entries: []modelcorpus.ZipEntry{
			{Name: "a.json", Data: []byte(`{"a":"` + strings.Repeat("x", 512-30-6-30-8-8) + `"}`)},
			{Name: "model.h5", Data: h5}}}),
	}
	for name, b := range cases {
		mt, title := "", "model."+name
		if name == "tar" {
			mt = "application/vnd.oci.image.layer.v1.tar"
		}
		if rep := inspectHidden(t, content.Options{}, b, mt, title); len(rep.Findings) > 0 {
			t.Errorf("%s: findings %v", name, rep.Findings)
		}
	}
	if z := cases["zip"]; !bytes.Equal(z[512:520], []byte("\x89HDF\r\n\x1a\n")) {
		t.Fatalf("zip fixture: member data not at 512")
	}
	if tr := cases["tar"]; !bytes.Equal(tr[512:520], []byte("\x89HDF\r\n\x1a\n")) {
		t.Fatalf("tar fixture: member data not at 512")
	}
}
