package content_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// picklePolyglotSafetensors builds a file that is valid safetensors and a
// pickle running os.system: the header length's bytes are pickle opcodes
// that swallow the rest of the length and the header's opening `{"x` (or
// more), then the opcodes continue inside the first tensor name, spelled as
// valid UTF-8 (BINPUT 0xc2 followed by STACK_GLOBAL 0x93 is U+0093).
// hlen is the header length (its bytes are the leading opcodes), swallowed
// how many header bytes the leading opcodes consume after byte 8. The
// PROTO variant is mk.py of the review (pickle.load runs os.system).
func picklePolyglotSafetensors(t testing.TB, hlen uint64, swallowed int) []byte {
	mod := "multiprocessing.popen_spawn_posix"
	name := strings.Repeat("os.path.", 3) + "os.system"
	cmd := "echo pwned > /dev/null"
	cmd += strings.Repeat(" ", 33-len(cmd))
	pk := "U!" + mod + "U!" + name + "q\xc2\x93" + "(U!" + cmd + "tR."
	key := strings.Repeat("x", swallowed-2) + pk
	hdr := `{"` + key + `":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}`
	if uint64(len(hdr)) > hlen {
		t.Fatalf("header %d bytes does not fit length %d", len(hdr), hlen)
	}
	b := binary.LittleEndian.AppendUint64(nil, hlen)
	b = append(b, hdr...)
	b = append(b, bytes.Repeat([]byte(" "), int(hlen)-len(hdr))...)
	return append(b, make([]byte, 16)...)
}

// PolyglotPROTO: PROTO 4 (0x80 0x04), BINFLOAT (0x47) over bytes 3..10.
func polyglotPROTO(t testing.TB) []byte {
	return picklePolyglotSafetensors(t, 0x80+4<<8+0x47<<16, 3)
}

// PolyglotNoPROTO: a protocol-less pickle (pickle.load accepts one):
// SHORT_BINSTRING (0x55) of 10 bytes swallows bytes 2..11, then the same
// imports. Below protocol 4 Python resolves no dotted name, so this one
// stops at the attribute lookup, after importing the module (which runs
// the module's code): a file whose bytes 0..7 are not PROTO is walked too.
func polyglotNoPROTO(t testing.TB) []byte {
	return picklePolyglotSafetensors(t, 0x55+10<<8, 4)
}

func TestSafetensorsPicklePolyglotRefused(t *testing.T) {
	for name, b := range map[string][]byte{"PROTO 4, length 0x470480": polyglotPROTO(t), "no PROTO, length 0xa55": polyglotNoPROTO(t)} {
		if f := content.Sniff(b[:min(4096, len(b))], int64(len(b))); f != content.FormatSafetensors {
			t.Fatalf("%s: sniffed %q", name, f)
		}
		for _, opts := range []content.Options{{}, scanOpts} {
			for _, mt := range []string{"", "application/vnd.cncf.model.weight.v1.raw"} {
				rep, err := content.InspectReader(opts, bytes.NewReader(b), int64(len(b)), mt, "model.safetensors")
				if err != nil || len(rep.Findings) == 0 || !strings.Contains(rep.Findings[0].Reason, "polyglot") {
					t.Errorf("%s, media type %q, pickle %v: format %q, findings %v, err %v", name, mt, opts.Pickle.Mode, rep.Format, rep.Findings, err)
				}
			}
		}
	}
}

// Honest safetensors whose header length starts 0x80 0x0k with non-zero
// bytes 2..7 (headers of 64 KiB and more: models with thousands of
// tensors) are served: their pickle walk stops inside the header without
// importing anything.
func TestSafetensorsLongHeaderLengthsServed(t *testing.T) {
	h, n := modelcorpus.SafetensorsHeader(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	for _, hl := range []int{640, 1408, 0x10080, 0x10180, 0x20480, 0x470480, 0xF00580, 0x55 + 10<<8 + 8} {
		b := modelcorpus.SafetensorsHeaderLen(h, n, hl)
		rep, err := content.InspectReader(content.Options{}, bytes.NewReader(b), int64(len(b)), "", "model.safetensors")
		if err != nil || len(rep.Findings) > 0 || rep.Format != content.FormatSafetensors {
			t.Errorf("header length %#x: format %q, findings %v, err %v", hl, rep.Format, rep.Findings, err)
		}
	}
}

// picklePolyglotTFLite moves a TFLite model's flatbuffer (all offsets but
// the root's are relative) so that its root offset is 0x68c: bytes 0..7
// are SHORT_BINUNICODE of 6 bytes ("\0\0TFL3"), and a pickle calling
// os.system sits in the gap before the tables. pickle.load of the file
// runs it (checked with CPython 3.11); the TFLite validator reads a valid
// model.
func picklePolyglotTFLite() []byte {
	m := modelcorpus.TFLite(modelcorpus.BenignTFLite(1 << 10))
	root := binary.LittleEndian.Uint32(m)
	newRoot := uint32(0x8c + 6<<8)
	pk := "\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04true\x85R."
	b := binary.LittleEndian.AppendUint32(nil, newRoot)
	b = append(b, m[4:8]...)
	gap := make([]byte, newRoot-root)
	copy(gap, pk)
	return append(append(b, gap...), m[8:]...)
}

func TestTFLitePicklePolyglotRefused(t *testing.T) {
	b := picklePolyglotTFLite()
	for _, title := range []string{"model.tflite", "model.pt"} {
		rep, err := content.InspectReader(content.Options{}, bytes.NewReader(b), int64(len(b)), "", title)
		if err != nil || rep.Format != content.FormatTFLite || len(rep.Findings) == 0 || !strings.Contains(rep.Findings[0].Reason, "polyglot") {
			t.Errorf("%s: format %q, findings %v, err %v", title, rep.Format, rep.Findings, err)
		}
	}
	// The same move without the pickle is a valid model, served.
	m := modelcorpus.TFLite(modelcorpus.BenignTFLite(1 << 10))
	moved := binary.LittleEndian.AppendUint32(nil, 0x8c+6<<8)
	moved = append(append(append(moved, m[4:8]...), make([]byte, 0x8c+6<<8-binary.LittleEndian.Uint32(m))...), m[8:]...)
	if rep, err := content.InspectReader(content.Options{}, bytes.NewReader(moved), int64(len(moved)), "", "model.tflite"); err != nil || len(rep.Findings) > 0 {
		t.Errorf("moved benign TFLite: findings %v, err %v", rep.Findings, err)
	}
}
