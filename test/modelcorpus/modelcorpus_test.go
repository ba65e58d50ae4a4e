package modelcorpus_test

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// The generator is checked with independent parsers (encoding/json,
// archive/tar) so that validator tests built on it are honest.

func TestSafetensorsLayout(t *testing.T) {
	ts := modelcorpus.SmallModel()
	b := modelcorpus.Safetensors(ts, map[string]string{"format": "pt"})
	n := binary.LittleEndian.Uint64(b)
	if n%8 != 0 {
		t.Fatalf("header length %d not padded to 8", n)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	if len(hdr) != len(ts)+1 {
		t.Fatalf("%d keys", len(hdr))
	}
	var total uint64
	for _, tt := range ts {
		var info struct {
			DType       string   `json:"dtype"`
			Shape       []uint64 `json:"shape"`
			DataOffsets []uint64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(hdr[tt.Name], &info); err != nil {
			t.Fatal(err)
		}
		if info.DataOffsets[0] != total || info.DataOffsets[1]-info.DataOffsets[0] != modelcorpus.STByteSize(tt) {
			t.Fatalf("%s offsets %v", tt.Name, info.DataOffsets)
		}
		total = info.DataOffsets[1]
	}
	if uint64(len(b)) != 8+n+total {
		t.Fatalf("file %d bytes, want %d", len(b), 8+n+total)
	}
}

func TestGGUFLayout(t *testing.T) {
	s := modelcorpus.ValidGGUFSpec()
	b := modelcorpus.GGUF(s)
	if string(b[:4]) != "GGUF" || binary.LittleEndian.Uint32(b[4:]) != 3 ||
		binary.LittleEndian.Uint64(b[8:]) != uint64(len(s.Tensors)) || binary.LittleEndian.Uint64(b[16:]) != uint64(len(s.KVs)) {
		t.Fatal("bad header")
	}
	if len(b)%32 != 0 {
		t.Fatalf("file of %d bytes not padded to the alignment", len(b))
	}
}

func TestTarReadable(t *testing.T) {
	tr := tar.NewReader(bytes.NewReader(modelcorpus.Tar(modelcorpus.ModelTar(), nil)))
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			t.Fatal(err)
		}
		_ = h
		n++
	}
	if n != len(modelcorpus.ModelTar()) {
		t.Fatalf("%d entries", n)
	}
}

func TestLegacyTorchMagic(t *testing.T) {
	b := modelcorpus.LegacyTorch(modelcorpus.SmallTorchModel(), nil)
	if !bytes.HasPrefix(b, modelcorpus.LegacyTorchMagic) {
		t.Fatal("legacy file does not start with the magic pickle")
	}
	// the magic is the little-endian long 0x1950a86a20f9469cfc6c
	m := modelcorpus.LegacyTorchMagic[4:14]
	var v [10]byte
	for i := range m {
		v[9-i] = m[i]
	}
	if want := []byte{0x19, 0x50, 0xa8, 0x6a, 0x20, 0xf9, 0x46, 0x9c, 0xfc, 0x6c}; !bytes.Equal(v[:], want) {
		t.Fatalf("magic %x", v)
	}
}
