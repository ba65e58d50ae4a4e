package content

import (
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// FuzzFlexStrings feeds hostile flexbuffers to the reader of Flex ops'
// custom options: it must never panic, and what it returns lies inside
// the input.
func FuzzFlexStrings(f *testing.F) {
	f.Add(modelcorpus.FlexOptions("AddV2", modelcorpus.TFNodeDef(modelcorpus.TFNode{Name: "a", Op: "AddV2", Inputs: []string{"x"}})))
	f.Add(modelcorpus.FlexOptions("", nil))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0x2a, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := flexStrings(b, 2)
		// (both strings may be the same bytes)
		if ok && (len(s) != 2 || len(s[0]) > len(b) || len(s[1]) > len(b)) {
			t.Fatalf("flexStrings = %q for %d bytes", s, len(b))
		}
	})
}

func TestFlexStrings(t *testing.T) {
	b := modelcorpus.FlexOptions("AddV2", []byte("node"))
	if s, ok := flexStrings(b, 2); !ok || s[0] != "AddV2" || s[1] != "node" {
		t.Fatalf("flexStrings = %q, %v", s, ok)
	}
	for i := range b {
		if s, ok := flexStrings(b[i+1:], 2); ok && (len(s[0]) > len(b)-i-1 || len(s[1]) > len(b)-i-1) {
			t.Fatalf("suffix %d: %q", i, s)
		}
	}
}
