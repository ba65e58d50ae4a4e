package engine

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	cache           *prometheus.CounterVec
	inflight        prometheus.Gauge
	coalesced       prometheus.Counter
	mismatches      prometheus.Counter
	storeVerify     *prometheus.CounterVec
	offlineServes   prometheus.Counter
	verifyDuration  prometheus.Histogram
	inspectDuration prometheus.Histogram
	Reloads         *prometheus.CounterVec
	storageErrors   *prometheus.CounterVec
	references      *prometheus.CounterVec
	waived          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_cache_requests_total", Help: "Content store lookups by kind and result."}, []string{"kind", "result"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pullgate_inflight_fetches", Help: "Blob downloads from upstreams under way."}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_coalesced_fetches_total", Help: "Blob requests that joined a download already under way."}),
		mismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_upstream_digest_mismatches_total", Help: "Blobs refused because the upstream's bytes did not match the digest or size."}),
		storeVerify: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_store_blob_verifications_total",
			Help: "Stored blobs re-hashed before or while serving them (no record that this process verified that copy), by result: ok, corrupt (the copy is removed and refetched), error (reading the store failed), replaced (on S3, the copy this process verified was replaced by another writer: the new one is hashed)."}, []string{"result"}),
		offlineServes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pullgate_offline_tag_resolutions_total", Help: "Tags answered from the last resolution because the upstream was unreachable."}),
		verifyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pullgate_verification_duration_seconds", Help: "Evidence gathering and verification per decision.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 12)}),
		inspectDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pullgate_inspection_duration_seconds", Help: "Content inspection per blob (inline with streaming).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_policy_reloads_total", Help: "Policy reloads by result."}, []string{"result"}),
		storageErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_storage_write_errors_total",
			Help: "Failed writes to the spool or the content store, by operation (spool, commit, manifest) and reason (no_space: the disk or quota is full; other)."}, []string{"op", "reason"}),
		references: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pullgate_load_time_references_total",
			Help: "Load-time references (names a config tells a loader to fetch other weights or code by: base_model_name_or_path, _name_or_path, auto_map) found in layers that passed inspection, by kind (hub, local, url)."}, []string{"kind"}),
	}
	m.waived = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pullgate_waived_decisions_total",
		Help: "Manifest denials waived by a policy exception (evaluated, not served from the verdict cache), by rule and exception."}, []string{"rule", "exception"})
	for _, c := range []prometheus.Collector{m.cache, m.inflight, m.coalesced, m.mismatches, m.storeVerify, m.offlineServes, m.verifyDuration, m.inspectDuration, m.Reloads, m.storageErrors, m.references, m.waived} {
		_ = reg.Register(c)
	}
	return m
}

// CacheLookup counts a content store lookup of kind (manifest, blob) by
// result (hit, miss).
func (m *Metrics) CacheLookup(kind, result string) { m.cache.WithLabelValues(kind, result).Inc() }

// StoreVerification counts a stored blob re-hashed while served, by result.
func (m *Metrics) StoreVerification(result string) { m.storeVerify.WithLabelValues(result).Inc() }
