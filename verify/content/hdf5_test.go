package content_test

import (
	"bytes"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// hdf5Check feeds data whole, in odd chunks and byte by byte (small files)
// through NewInspector and returns the error, the same for each chunking,
// and whether HeaderDone was true before Close.
func hdf5Check(t *testing.T, name string, data []byte) (error, bool) {
	t.Helper()
	var first error
	var early bool
	for i, chunk := range []int{len(data), 4093, 97, 1} {
		if chunk == 1 && len(data) > 1<<20 {
			continue
		}
		in, err := content.NewInspector(content.Options{}, "", name, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		done := false
		rng := rand.New(rand.NewSource(int64(i)))
		for b := data; len(b) > 0 && werr == nil; {
			n := min(len(b), chunk)
			if chunk == 97 {
				n = min(len(b), 1+rng.Intn(97))
			}
			_, werr = in.Write(b[:n])
			b = b[n:]
			done = done || in.HeaderDone() && len(b) > 0 && chunk == 4093
		}
		if werr == nil {
			werr = in.Close()
		}
		if f, ok := in.(content.FormatReporter); ok && werr == nil && f.Format() != content.FormatHDF5 {
			t.Fatalf("%s: format %q, want hdf5", name, f.Format())
		}
		if chunk == 4093 {
			early = done
		}
		if i == 0 {
			first = werr
			continue
		}
		if (werr == nil) != (first == nil) || werr != nil && werr.Error() != first.Error() {
			t.Fatalf("%s: chunk %d: %v; whole: %v", name, chunk, werr, first)
		}
	}
	return first, early
}

func TestHDF5Benign(t *testing.T) {
	files := modelcorpus.H5Py(t, modelcorpus.WeightsH5Script+modelcorpus.KerasH5Script)
	for _, name := range modelcorpus.HDF5Names(files) {
		if strings.Contains(name, "lambda") || name == "many_latest.h5" || strings.HasPrefix(name, "userblock") {
			continue
		}
		data := files[name]
		if got := content.Sniff(data[:min(len(data), 4096)], int64(len(data))); got != content.FormatHDF5 {
			t.Fatalf("%s: Sniff = %q", name, got)
		}
		err, early := hdf5Check(t, name, data)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if strings.HasPrefix(name, "weights_") && !early {
			// the root header is at the start: the data streams at once
			t.Errorf("%s: HeaderDone only at the end", name)
		}
		t.Logf("%s: %d bytes, HeaderDone before the end: %v", name, len(data), early)
	}
}

func TestHDF5Refused(t *testing.T) {
	files := modelcorpus.H5Py(t, modelcorpus.WeightsH5Script+modelcorpus.KerasH5Script)
	for _, c := range []struct{ name, want string }{
		{"keras_lambdafixed_earliest.h5", "root attribute model_config: Lambda layer"},
		{"keras_lambdafixed_latest.h5", "root attribute model_config: Lambda layer"},
		{"keras_lambdavlen_earliest.h5", "root attribute model_config: Lambda layer"},
		{"keras_lambdavlen_latest.h5", "root attribute model_config: Lambda layer"},
		{"keras_lambdatrain_earliest.h5", "root attribute training_config: Lambda layer"},
		{"keras_lambdatrain_latest.h5", "root attribute training_config: Lambda layer"},
		{"track_order_lambda.h5", "root attribute model_config: Lambda layer"},
		{"many_latest.h5", "dense storage"},
		{"userblock.h5", "512-byte userblock"},
		{"userblock_script.h5", "shebang script"},
	} {
		err, _ := hdf5Check(t, c.name, files[c.name])
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// FuzzHDF5 runs the HDF5 reader over mutations of h5py-written files
// (testdata/hdf5, made by make_seeds.py there): no panic, a Finding for
// every refusal, the same verdict however the stream is chunked.
func FuzzHDF5(f *testing.F) {
	seeds, err := filepath.Glob("testdata/hdf5/*.h5")
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds in testdata/hdf5: %v", err)
	}
	for i, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i*7+1))
		f.Add(b[:len(b)/2], uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewHDF5Inspector(content.Options{}, size) }, data, chunk)
		fuzzChunking(t, func(size int64) content.Inspector { return content.NewHDF5Inspector(content.Options{}, -1) }, data, chunk)
	})
}

// BenchmarkHDF5 streams 1 GiB HDF5 files written by libhdf5 (sparse: the
// dataset's never-written bytes are fed from one 1 MiB buffer of random
// bytes, like float weights; the metadata blocks are the file's own) in
// 1 MiB writes. weights: the root header is complete
// near the start (HeaderDone early, the rest counted); keras: a
// training_config continuation after the data keeps the reader looking
// for global heap collections over the whole file.
func BenchmarkHDF5(b *testing.B) {
	dir := modelcorpus.H5PyDir(b, modelcorpus.BigH5Script)
	for _, kind := range []string{"weights", "keras"} {
		b.Run(kind, func(b *testing.B) {
			f, err := os.Open(filepath.Join(dir, "big_"+kind+".h5"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			zero := make([]byte, 1<<20)
			fill := make([]byte, len(zero))
			rand.New(rand.NewSource(1)).Read(fill)
			var blocks [][]byte // nil: a block of zeros
			var total int64
			for {
				buf := make([]byte, 1<<20)
				n, err := io.ReadFull(f, buf)
				if n > 0 {
					total += int64(n)
					if bytes.Equal(buf[:n], zero[:n]) {
						buf = nil
						if n < len(zero) {
							buf = zero[:n:n]
						}
					}
					blocks = append(blocks, buf[:min(n, len(buf))])
				}
				if err != nil {
					break
				}
			}
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				in := content.NewHDF5Inspector(content.Options{}, total)
				for _, blk := range blocks {
					if blk == nil {
						blk = fill
					}
					if _, err := in.Write(blk); err != nil {
						b.Fatal(err)
					}
				}
				if err := in.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A Keras v3 archive's model.weights.h5 member is read as HDF5 by the zip
// validator (NewInspector by member name).
func TestHDF5InKerasArchive(t *testing.T) {
	files := modelcorpus.H5Py(t, modelcorpus.KerasZipScript)
	for name, want := range map[string]string{
		"model.keras":          "",
		"lambda_weights.keras": `hdf5: zip member "model.weights.h5": root attribute model_config: Lambda layer`,
	} {
		data := files[name]
		in, err := content.NewInspector(content.Options{}, "", name, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		err = feed(in, data, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
}

// HDF5 in a weights layer is read; in a dataset layer it is data (served
// as unrecognised binary was before HDF5 was read), even a file the
// reader would refuse.
func TestHDF5LayerKinds(t *testing.T) {
	files := modelcorpus.H5Py(t, modelcorpus.WeightsH5Script)
	dense := files["many_latest.h5"]
	for mt, want := range map[string]string{
		"application/vnd.cncf.model.weight.v1.raw":  "dense storage",
		"application/vnd.cncf.model.dataset.v1.raw": "",
	} {
		in, err := content.NewInspector(content.Options{}, mt, "data.h5", int64(len(dense)))
		if err != nil {
			t.Fatal(err)
		}
		err = feed(in, dense, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", mt, err, want)
		}
	}
}
