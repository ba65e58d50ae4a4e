package main

import (
	"math"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
	"github.com/pullgate/pullgate/test/tools"
	"github.com/pullgate/pullgate/verify/content"
)

// Every kind's sample passes the validator its policy runs (as the layer
// it is pushed as), so the benchmark measures inspection that serves the
// blob; the offset at which bytes are first released is logged.
func TestInspectionSamplesPass(t *testing.T) {
	for _, m := range inspectionKinds {
		t.Run(m.kind, func(t *testing.T) {
			blob, err := m.blob(64 << 20)
			if err != nil && m.kind == "Keras HDF5" && modelcorpus.KerasPythonReady() != nil && !tools.Required() {
				t.Skip(err) // h5py missing; under PULLGATE_REQUIRE_TOOLS=1 it fails
			}
			if err != nil {
				t.Fatal(err)
			}
			opts := content.Options{}
			if m.policy == torchInspectPolicy {
				opts.Pickle.Mode = content.PickleScan
				opts.DenyCodeLayers = true
			}
			in, err := content.NewInspector(opts, m.mediaType, m.title, int64(len(blob)))
			if err != nil {
				t.Fatal(err)
			}
			first := int64(-1)
			for off := 0; off < len(blob); off += 1 << 20 {
				if _, err := in.Write(blob[off:min(off+1<<20, len(blob))]); err != nil {
					t.Fatal(err)
				}
				if r := content.ReleasableOf(in); first < 0 && r > 0 {
					first = int64(off + 1<<20)
					if r != math.MaxInt64 {
						t.Logf("first release of %d bytes after %d", r, first)
					}
				}
			}
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes; first bytes released after %d (-1: only at Close)", len(blob), first)
		})
	}
}
