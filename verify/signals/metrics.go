package signals

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	hits     *prometheus.CounterVec
	inflight *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_signal_requests_total",
			Help: "Calls to signal providers by provider and outcome (done, pending, or the error kind: timeout, network, status, malformed, subject, exec, invalid). Cache hits are not calls."},
			[]string{"provider", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pullgate_signal_duration_seconds",
			Help:    "Time of a call to a signal provider, retries and the wait for a free slot included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 10)}, []string{"provider"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_signal_cache_hits_total",
			Help: "Asks answered from the signal cache, by provider."}, []string{"provider"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pullgate_signal_inflight",
			Help: "Calls to a signal provider in flight (waiting for a slot included)."}, []string{"provider"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.hits = register(reg, m.hits)
		m.inflight = register(reg, m.inflight)
	}
	return m
}

// register registers c, or returns the collector already registered
// under its name (a second Service on one registry, after a reload).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if old, ok := are.ExistingCollector.(T); ok {
				return old
			}
		}
	}
	return c
}
