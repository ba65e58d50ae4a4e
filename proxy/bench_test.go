package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// warmModel is a model repository pulled once through a proxy under a
// content rule: every later request is a warm one.
type warmModel struct {
	h        http.Handler
	manifest string
	blobs    []string
}

const docRaw = "application/vnd.cncf.model.doc.v1.raw"

// newWarmModel pushes a model of n small text layers (each titled) and
// pulls it once through a proxy under modelPolicy.
func newWarmModel(b *testing.B, n int) *warmModel {
	b.Helper()
	e := startWith(b, nil, modelPolicy)
	h, repo := e.up.Host, "models/bench"
	cfg := ivPushBlob(b, h, repo, []byte(`{"a":1}`), "application/vnd.cncf.model.config.v1+json")
	m := ivManifest{SchemaVersion: 2, MediaType: string(types.OCIManifestSchema1), Config: ivDesc(cfg)}
	w := &warmModel{h: e.srv.Handler()}
	for i := 0; i < n; i++ {
		l := ivPushBlob(b, h, repo, []byte(fmt.Sprintf("# file %d\n\nSome documentation text.\n", i)), docRaw)
		d := ivDesc(l)
		d.Annotations = map[string]string{"org.opencontainers.image.title": fmt.Sprintf("doc%d.md", i)}
		m.Layers = append(m.Layers, d)
		w.blobs = append(w.blobs, "/v2/upstream.local/"+repo+"/blobs/"+l.Digest.String())
	}
	md := ivPushManifest(b, h, repo+":1", m)
	w.manifest = "/v2/upstream.local/" + repo + "/manifests/" + md.String()
	w.get(b, w.manifest)
	for _, p := range w.blobs {
		w.get(b, p)
	}
	return w
}

// cpuTime is the process's CPU time: on a loaded machine wall time
// includes waiting for a CPU, CPU time does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs f b.N times and reports the CPU time per operation too.
func loop(b *testing.B, f func()) {
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		f()
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func (w *warmModel) get(b *testing.B, path string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
}

// BenchmarkWarmBlobContentRule: GET of a stored, inspected blob under a
// content rule (grant, inspection records, store), in-process.
func BenchmarkWarmBlobContentRule(b *testing.B) {
	w := newWarmModel(b, 1)
	loop(b, func() { w.get(b, w.blobs[0]) })
}

// BenchmarkWarmManifestContentRule: GET by digest of an allowed model
// manifest of 64 layers under a content rule (verdict cache, grants of its
// blobs), in-process.
func BenchmarkWarmManifestContentRule(b *testing.B) {
	w := newWarmModel(b, 64)
	loop(b, func() { w.get(b, w.manifest) })
}
