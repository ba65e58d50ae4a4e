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
