package content

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// h5Run streams data through NewHDF5Inspector in 4093-byte writes with
// the given declared size.
func h5Run(data []byte, size int64) error {
	h := NewHDF5Inspector(Options{}, size)
	for b := data; len(b) > 0; {
		n := min(len(b), 4093)
		if _, err := h.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return h.Close()
}

// v1Continuation returns the offset of the data of the first continuation
// message in the root object header's first chunk of a version 0
// superblock, version 1 object header file.
func v1Continuation(t *testing.T, f []byte) (root, msg int) {
	t.Helper()
	root = int(binary.LittleEndian.Uint64(f[64:]))
	size := int(binary.LittleEndian.Uint32(f[root+8:]))
	for off := root + 16; off < root+16+size; {
		typ, sz := binary.LittleEndian.Uint16(f[off:]), int(binary.LittleEndian.Uint16(f[off+2:]))
		if typ == 0x10 {
			return root, off + 8
		}
		off += 8 + sz
	}
	t.Fatal("no continuation message in the root header's first chunk")
	return 0, 0
}

func TestHDF5Attacks(t *testing.T) {
	files := modelcorpus.H5Py(t, modelcorpus.WeightsH5Script+modelcorpus.KerasH5Script)
	keras := files["keras_fixed_earliest.h5"]
	root, cont := v1Continuation(t, keras)
	patch := func(f []byte, off int, v uint64) []byte {
		g := bytes.Clone(f)
		binary.LittleEndian.PutUint64(g[off:], v)
		return g
	}
	latest := files["keras_vlen_latest.h5"]
	flip := bytes.Clone(latest)
	ohdr := int(binary.LittleEndian.Uint64(flip[36:]))
	flip[ohdr+7] ^= 1 // a timestamp: only the checksum tells
	// the variable-length model_config's heap ID pointing at the superblock
	vlen := bytes.Clone(files["keras_vlen_earliest.h5"])
	i := bytes.Index(vlen, []byte("model_config\x00"))
	gcol := bytes.Index(vlen, []byte("GCOL"))
	var gb [8]byte
	binary.LittleEndian.PutUint64(gb[:], uint64(gcol))
	j := i + bytes.Index(vlen[i:], gb[:])
	binary.LittleEndian.PutUint64(vlen[j:], 8)
	// a zip end record in the file's last bytes (inside the end-of-file address)
	zipTail := bytes.Clone(files["weights_earliest.h5"])
	copy(zipTail[len(zipTail)-22:], append([]byte("PK\x05\x06"), make([]byte, 18)...))

	for _, c := range []struct {
		name string
		data []byte
		size int64
		want string
	}{
		{"continuation backwards", patch(keras, cont, 16), -1, "lies before offset"},
		{"continuation loop to its own header", patch(keras, cont, uint64(root)), -1, "lies before offset"},
		{"continuation out of the file", patch(keras, cont, uint64(len(keras)-8)), -1, "outside the file"},
		{"continuation oversized", patch(keras, cont+8, 1<<40), -1, "exceeds the 4194304-byte limit"},
		{"header chunk oversized", func() []byte {
			g := bytes.Clone(keras)
			binary.LittleEndian.PutUint32(g[root+8:], 1<<31)
			return g
		}(), -1, "exceeds the 4194304-byte limit"},
		{"truncated", keras[:len(keras)-1000], int64(len(keras) - 1000), "truncated: the HDF5 end-of-file address"},
		{"truncated stream", keras[:len(keras)-1000], int64(len(keras)), "truncated"},
		{"truncated, size unknown", keras[:len(keras)-1000], -1, "truncated HDF5 file"},
		{"trailing data", append(bytes.Clone(keras), "PK\x05\x06"...), -1, "trailing data after the HDF5 end-of-file address"},
		{"checksum", flip, -1, "checksum mismatch"},
		{"heap reference to no collection", vlen, -1, "no global heap collection at address 8"},
		{"zip polyglot", zipTail, -1, "a zip archive ends this HDF5 file"},
		{"eof address lies", patch(keras, 40, 1<<62), -1, "truncated HDF5 file"},
		{"eof address lies, size known", patch(keras, 40, 1<<40), int64(len(keras)), "truncated: the HDF5 end-of-file address is 1099511627776"},
	} {
		err := h5Run(c.data, c.size)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
