package modele2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pullgate/pullgate/test/modelcorpus"
)

// An HDF5 weights file written by h5py (no model_config) pushed with oras
// under ModelPack media types arrives intact through the gate; a legacy
// Keras .h5 whose model_config is a Lambda layer (marshalled bytecode
// Keras runs on load) is refused with DENIED and the reason.
func TestHDF5ThroughTheGate(t *testing.T) {
	files := modelcorpus.H5Py(t, modelcorpus.WeightsH5Script+modelcorpus.KerasH5Script)
	e := startStrict(t)
	good := file{"model.h5", mtWeightRaw, files["weights_earliest.h5"]}
	e.push(t, "models/h5:1", true, good)
	e.pullIntact(t, "models/h5:1", good)

	keras := file{"model.h5", mtWeightRaw, files["keras_vlen_latest.h5"]}
	e.push(t, "models/h5-keras:1", true, keras)
	e.pullIntact(t, "models/h5-keras:1", keras)

	evil := files["keras_lambdafixed_earliest.h5"]
	e.push(t, "models/h5-evil:1", true, file{"model.h5", mtWeightRaw, evil})
	const reason = "root attribute model_config: Lambda layer"
	e.assertRefused(t, "models/h5-evil:1", evil, reason)
	resp, err := http.Get(e.px.URL + "/v2/upstream.local/models/h5-evil/blobs/" + sha(evil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"DENIED"`) || !strings.Contains(string(body), reason) {
		t.Fatalf("Keras Lambda blob: %d %s", resp.StatusCode, body)
	}
}
