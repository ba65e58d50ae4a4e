package proxy

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pullgate/pullgate/cache/store"
	"github.com/pullgate/pullgate/proxy/audit"
	"github.com/pullgate/pullgate/proxy/route"
)

// Metrics are the HTTP side's Prometheus metrics (the engine has its own).
type Metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	decisions   *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	upstream    *prometheus.CounterVec
	auditErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_requests_total", Help: "Registry API requests by route and status."}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "pullgate_request_duration_seconds", Help: "Time to first byte... to last byte of registry API responses.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"route"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_decisions_total", Help: "Policy decisions by rule, kind and result."}, []string{"rule", "kind", "decision"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_blob_bytes_served_total", Help: "Blob bytes sent to clients, by source."}, []string{"source"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_upstream_requests_total", Help: "Requests to upstreams by upstream, kind and status (error for transport failures)."}, []string{"upstream", "kind", "status"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_audit_write_errors_total",
			Help: "Audit events that could not be written when decided (disk full, file not writable); they are kept and written once it can be written again."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.decisions, m.bytes, m.upstream, m.auditErrors} {
		_ = reg.Register(c)
	}
	return m
}

// storeIndex exports how far the index of the store is (built in the
// background after a start, see store.IndexStatus).
func (m *Metrics) storeIndex(reg prometheus.Registerer, st *store.Store) {
	gauge := func(name, help string, v func(store.IndexStatus) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(st.IndexStatus()) })
	}
	for _, c := range []prometheus.Collector{
		gauge("pullgate_store_index_complete", "1 once the index of the content found in the store at start is complete (until then it is built in the background while serving).",
			func(s store.IndexStatus) float64 {
				if s.Complete {
					return 1
				}
				return 0
			}),
		gauge("pullgate_store_index_walked_ratio", "Fraction of the store the index walk at start has covered (1 once complete).",
			func(s store.IndexStatus) float64 { return s.Fraction }),
		gauge("pullgate_store_indexed_blobs", "Blobs and manifests in the store index.",
			func(s store.IndexStatus) float64 { return float64(s.Blobs) }),
		gauge("pullgate_store_indexed_bytes", "Size of the content in the store index (evicted past storage.maxSize).",
			func(s store.IndexStatus) float64 { return float64(s.Bytes) }),
	} {
		_ = reg.Register(c)
	}
}

func (m *Metrics) decision(e audit.Event) {
	m.decisions.WithLabelValues(e.Rule, e.Kind, e.Decision).Inc()
}

func (m *Metrics) upstreamRequest(name string) func(method, kind string, status int, err error) {
	return func(method, kind string, status int, err error) {
		st := strconv.Itoa(status)
		if err != nil {
			st = "error"
		}
		m.upstream.WithLabelValues(name, kind, st).Inc()
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// SetStatus records the status of a response written on a hijacked connection.
func (w *statusWriter) SetStatus(code int) { w.status = code }

// ReadFrom keeps the server's sendfile path for files served from the store.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

// Flush passes flushes through to the connection.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func routeName(path string) string {
	rt, err := route.Parse(path, "")
	if err != nil {
		if rt, err = route.Parse(path, "x"); err != nil {
			return "other"
		}
	}
	switch rt.Kind {
	case route.Base:
		return "base"
	case route.Manifest:
		return "manifest"
	case route.Blob:
		return "blob"
	case route.Tags:
		return "tags"
	case route.Referrers:
		return "referrers"
	case route.Upload:
		return "upload"
	}
	return "other"
}

// methodLabel bounds the method label: clients choose the method token,
// before they are authenticated.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return method
	}
	return "other"
}

func (m *Metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		rn := routeName(r.URL.EscapedPath())
		defer func() {
			st := sw.status
			if st == 0 {
				st = 499
			}
			m.requests.WithLabelValues(rn, methodLabel(r.Method), strconv.Itoa(st)).Inc()
			m.duration.WithLabelValues(rn).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

type countingWriter struct {
	http.ResponseWriter
	c prometheus.Counter
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.c.Add(float64(n))
	return n, err
}

// ReadFrom keeps the server's sendfile path and counts the bytes.
func (w countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.c.Add(float64(n))
	return n, err
}

func (m *Metrics) countingWriter(w http.ResponseWriter, source string) http.ResponseWriter {
	return countingWriter{w, m.bytes.WithLabelValues(source)}
}
