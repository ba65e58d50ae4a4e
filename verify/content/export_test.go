package content

import "testing"

// SetONNXFirstRelease sets how far an ONNX walk gets before its first
// bytes are released, for the duration of the test (the release tests
// use small models).
func SetONNXFirstRelease(t testing.TB, n int64) {
	old := onnxFirstRelease
	onnxFirstRelease = n
	t.Cleanup(func() { onnxFirstRelease = old })
}

// SetTarFirstRelease sets how much of a tar is judged before its first
// bytes are released, for the duration of the test.
func SetTarFirstRelease(t testing.TB, n int64) {
	old := tarFirstRelease
	tarFirstRelease = n
	t.Cleanup(func() { tarFirstRelease = old })
}

// HeldConfigCaps are the caps of the held configurations (bytes, values,
// nodes), for the peak-memory test's worst cases.
func HeldConfigCaps() map[string]int {
	return map[string]int{"keras": kerasMaxConfig, "kerasValues": kerasMaxValues, "skops": skopsMaxSchema, "skopsValues": skopsMaxValues,
		"nemo": nemoMaxConfig, "nemoNodes": nemoMaxNodes, "kerasmeta": tfMaxKerasMeta, "json": int(Options{}.maxConfig())}
}
