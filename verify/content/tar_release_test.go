package content_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// tarReleaseTrace feeds a tar to a fresh TarInspector in chunks of chunk
// bytes (traceRelease).
func tarReleaseTrace(t *testing.T, opts content.Options, data []byte, chunk int) ([]int64, error) {
	t.Helper()
	return traceRelease(t, content.NewTarInspector(opts, int64(len(data))), data, chunk)
}

// entryAt is the offset of the tar header of the member named name.
func entryAt(t *testing.T, data []byte, name string) int64 {
	t.Helper()
	i := bytes.Index(data, append([]byte(name), 0))
	if i < 0 || i%512 != 0 {
		t.Fatalf("no header for %q", name)
	}
	return int64(i)
}

// A SavedModel directory's tar is released as its entries are judged:
// nothing of saved_model.pb before its graph was walked, the variables
// shard (raw data) as it streams; the end-of-archive marker at Close.
func TestTarReleasesJudgedEntries(t *testing.T) {
	content.SetTarFirstRelease(t, 0)
	sm := modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel())
	files := modelcorpus.SavedModelDir("m/", sm, 4<<20)
	data := modelcorpus.Tar(files, nil)
	const chunk = 64 << 10
	rels, err := tarReleaseTrace(t, content.Options{}, data, 100)
	if err != nil {
		t.Fatal(err)
	}
	pbEnd := entryAt(t, data, "m/saved_model.pb") + 512 + int64(len(sm))
	for i, r := range rels {
		if written := int64(i+1) * 100; written < pbEnd && r > 0 {
			t.Fatalf("after %d bytes %d released, saved_model.pb (ends at %d) not yet walked", written, r, pbEnd)
		}
	}
	rels, err = tarReleaseTrace(t, content.Options{}, data, chunk)
	if err != nil {
		t.Fatal(err)
	}
	shard := entryAt(t, data, "m/variables/variables.data-00000-of-00001") + 512
	for i, r := range rels {
		written := int64(i+1) * chunk
		if written > shard+chunk+64<<10 && written < shard+4<<20 && r != written-64<<10 {
			t.Fatalf("after %d bytes (in the variables shard) %d released", written, r)
		}
	}
	if last := rels[len(rels)-1]; last >= int64(len(data))-1024 {
		t.Fatalf("released %d of %d bytes before Close: the end-of-archive marker too", last, len(data))
	}
}

// A member refused after a large released one: nothing of it is released
// (its header included), whatever its validator (a graph refused at its
// end, a pickle refused at once); a config that declares load-time
// references stops the release for good (they are judged at Close).
func TestTarReleaseStopsBeforeUnjudged(t *testing.T) {
	content.SetTarFirstRelease(t, 0)
	g := modelcorpus.BenignSavedModel()
	g.Functions = append(g.Functions, modelcorpus.TFFunction{Name: "__inference_leak_7", Nodes: []modelcorpus.TFNode{{Name: "leak", Op: "ReadFile", Inputs: []string{"path"}}}})
	big := modelcorpus.TarEntry{Name: "m/variables/variables.data-00000-of-00001", Data: bytes.Repeat([]byte{7}, 2<<20)}
	for _, c := range []struct {
		name, member string
		data         []byte
		want         string // "" for a tar that passes
	}{
		{"graph", "m/saved_model.pb", modelcorpus.TFSavedModel(g), `runs op ReadFile`},
		{"pickle", "m/extra.pkl", modelcorpus.OsSystemPickle(), "pickle"},
		{"references", "m/config.json", []byte(`{"_name_or_path": "other/model", "hidden_size": 16}`), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := modelcorpus.Tar([]modelcorpus.TarEntry{big, {Name: c.member, Data: c.data}, {Name: "m/after.bin", Data: bytes.Repeat([]byte{9}, 1<<20)}}, nil)
			at := entryAt(t, data, c.member)
			rels, err := tarReleaseTrace(t, content.Options{}, data, 100)
			var f *content.Finding
			switch {
			case c.want == "" && err != nil, c.want != "" && (!errors.As(err, &f) || !strings.Contains(f.Reason, c.want)):
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if last := rels[len(rels)-1]; last > at || last < at-512 {
				t.Fatalf("released %d bytes; the member at %d is %s", last, at, map[bool]string{true: "refused", false: "not judged before Close"}[c.want != ""])
			}
		})
	}
}

// The first release waits until tarFirstRelease bytes were judged: a small
// archive is held whole, so a refusal is a clean 403.
func TestTarFirstReleaseWaits(t *testing.T) {
	data := modelcorpus.Tar(modelcorpus.SavedModelDir("m/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 3<<20), nil)
	rels, err := tarReleaseTrace(t, content.Options{}, data, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	if last := rels[len(rels)-1]; last != 0 {
		t.Fatalf("released %d bytes of a %d-byte archive before Close", last, len(data))
	}
}

// Through the dispatcher as a declared ModelPack tar layer: the tar's
// release passes through; as a NeMo probe (a tar in a weight layer) and a
// tar+gzip nothing is released before Close.
func TestTarReleaseThroughDispatcher(t *testing.T) {
	content.SetTarFirstRelease(t, 0)
	data := modelcorpus.Tar(modelcorpus.SavedModelDir("m/", modelcorpus.TFSavedModel(modelcorpus.BenignSavedModel()), 4<<20), nil)
	for _, c := range []struct {
		mediaType string
		data      []byte
		some      bool
	}{
		{"application/vnd.cncf.model.weight.v1.tar", data, true},
		{"application/vnd.cncf.model.weight.v1.raw", data, false},
		{"application/vnd.cncf.model.weight.v1.tar+gzip", modelcorpus.Gzip(data), false},
	} {
		in, err := content.NewInspector(content.Options{}, c.mediaType, "saved_model.tar", int64(len(c.data)))
		if err != nil {
			t.Fatal(err)
		}
		half := len(c.data) * 3 / 4
		if _, err := in.Write(c.data[:half]); err != nil {
			t.Fatalf("%s: %v", c.mediaType, err)
		}
		if r := content.ReleasableOf(in); c.some != (r > 0) || r > int64(half) {
			t.Fatalf("%s: released %d of the %d bytes written", c.mediaType, r, half)
		}
		in.Close()
	}
}

// A member whose validator is done with its header can still refuse at
// its Close: a zip end record ending a variables shard (a polyglot zip
// readers open from its end). The member's last 64 KiB wait for that
// Close, so no released prefix holds the end record.
func TestTarMemberEndHeldBack(t *testing.T) {
	content.SetTarFirstRelease(t, 0)
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	f, _ := zw.Create("archive/data.pkl")
	f.Write(modelcorpus.OsSystemPickle())
	zw.Close()
	shard := append(bytes.Repeat([]byte{7}, 2<<20), zb.Bytes()...)
	const name = "m/variables/variables.data-00001-of-00002"
	data := modelcorpus.Tar([]modelcorpus.TarEntry{
		{Name: "m/variables/variables.data-00000-of-00002", Data: bytes.Repeat([]byte{5}, 5<<20)},
		{Name: name, Data: shard},
	}, nil)
	end := entryAt(t, data, name) + 512 + int64(len(shard))
	rels, err := tarReleaseTrace(t, content.Options{}, data, 4096)
	if err == nil || !strings.Contains(err.Error(), "zip") {
		t.Fatalf("got %v, want the shard refused for the zip ending it", err)
	}
	if last := rels[len(rels)-1]; last > end-64<<10 {
		t.Fatalf("released %d bytes; the shard ends at %d, its zip end record at %d", last, end, end-22)
	}
	if last := rels[len(rels)-1]; last < end-64<<10-4096 {
		t.Fatalf("released %d bytes; the shard streams up to 64 KiB before its end (%d)", last, end-64<<10)
	}
}

// PAX keys other than plain metadata can rename or redirect a member for
// some reader (GNU tar and Python's tarfile extract a member under its
// GNU.sparse.name), so the name the gate judged would not be the one
// written: refused.
func TestTarPAXKeysThatRename(t *testing.T) {
	for _, rec := range []map[string]string{
		{"GNU.sparse.name": "../escaped.txt"},
		{"GNU.sparse.name": "model_config.yaml"},
		{"GNU.sparse.numblocks": "1"},
		{"hdrcharset": "BINARY"},
		{"SCHILY.xattr.security.capability": "x"},
	} {
		// archive/tar does not write these keys: the records by hand
		var recs []byte
		for k, v := range rec {
			line := " " + k + "=" + v + "\n"
			n := len(line) + 1
			for len(strconv.Itoa(n))+len(line) != n {
				n++
			}
			recs = append(recs, strconv.Itoa(n)+line...)
		}
		var b bytes.Buffer
		b.Write(rawTarHeader("PaxHeaders/notes.txt", 'x', len(recs)))
		b.Write(recs)
		b.Write(make([]byte, (512-len(recs)%512)%512))
		b.Write(rawTarHeader("notes.txt", '0', 5))
		b.Write(append([]byte("hello"), make([]byte, 507)...))
		b.Write(make([]byte, 1024))
		in := content.NewTarInspector(content.Options{}, int64(b.Len()))
		_, err := in.Write(b.Bytes())
		if err == nil {
			err = in.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "PAX record") {
			t.Errorf("%v: got %v, want the PAX record refused", rec, err)
		}
	}
	// the metadata Python's tarfile and GNU tar write pass
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	w.WriteHeader(&tar.Header{Name: strings.Repeat("d/", 60) + "notes.txt", Mode: 0o644, Size: 5, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"mtime": "1700000000.5", "uname": "ü", "comment": "x", "LIBARCHIVE.xattr.com.apple.provenance": "AQ"}})
	w.Write([]byte("hello"))
	w.Close()
	in := content.NewTarInspector(content.Options{}, int64(b.Len()))
	if _, err := in.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatalf("tar with PAX metadata refused: %v", err)
	}
}

// rawTarHeader is a ustar header block with its checksum.
func rawTarHeader(name string, typ byte, size int) []byte {
	h := make([]byte, 512)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[108:], "0000000\x00")
	copy(h[116:], "0000000\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	copy(h[148:], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}
