package content_test

import (
	"bytes"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/verify/content"
)

// A safetensors file whose header length is 128 + 256k bytes (k <= 5)
// starts 0x80 0x0k, a pickle's PROTO opcode. Writers pad the header to a
// multiple of 8, so 640, 896, 1152 and 1408 occur in real files: they are
// safetensors (bytes 2..7 of the length are zero, an invalid opcode for
// every unpickler), served under pickle: deny, not refused as pickles.
func TestSafetensorsWhoseLengthStartsLikeAPickle(t *testing.T) {
	h, n := modelcorpus.SafetensorsHeader(modelcorpus.SmallModel(), map[string]string{"format": "pt"})
	for _, hl := range []int{640, 896, 1152, 1408} {
		b := modelcorpus.SafetensorsHeaderLen(h, n, hl)
		if b[0] != 0x80 || b[1] > 5 {
			t.Fatalf("fixture of header length %d starts %x", hl, b[:2])
		}
		for _, mt := range []string{"", "application/vnd.cncf.model.weight.v1.raw"} {
			rep, err := content.InspectReader(content.Options{}, bytes.NewReader(b), int64(len(b)), mt, "model.safetensors")
			if err != nil || len(rep.Findings) > 0 || rep.Format != content.FormatSafetensors {
				t.Errorf("header length %d, media type %q: format %q, findings %v, err %v", hl, mt, rep.Format, rep.Findings, err)
			}
		}
	}
	// A real pickle is still a pickle (PROTO 2, then opcodes: its first 8
	// bytes are no safetensors length that fits).
	p := modelcorpus.OsSystemPickle()
	if f := content.Sniff(p, int64(len(p))); f != content.FormatPickle {
		t.Fatalf("pickle sniffed as %q", f)
	}
}
