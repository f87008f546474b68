package trace

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes a Tracer's histograms as Prometheus metrics, read at each
// scrape: vattn_map_latency_seconds (a histogram per source, operation and
// GPU), vattn_map_errors_total and vattn_trace_dropped_records_total.
type Collector struct {
	t       *Tracer
	gpus    []string
	latency *prometheus.Desc
	errs    *prometheus.Desc
	dropped *prometheus.Desc
}

// NewCollector returns a collector for t; gpus (as GPUs returns them) turns
// UUIDs into the gpu index label.
func NewCollector(t *Tracer, gpus []string) *Collector {
	labels := []string{"source", "op", "gpu", "UUID"}
	return &Collector{
		t:    t,
		gpus: gpus,
		latency: prometheus.NewDesc("vattn_map_latency_seconds",
			"Latency of KV-cache memory mapping operations (CUDA VMM calls, UVM ioctls, vattn driver events); buckets are the tracer's log2 slots.",
			labels, nil),
		errs: prometheus.NewDesc("vattn_map_errors_total",
			"Mapping operations that failed (non-zero CUresult, negative errno or NV_STATUS).",
			labels, nil),
		dropped: prometheus.NewDesc("vattn_trace_dropped_records_total",
			"Driver tracepoint records lost because the ring buffer was full.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.latency
	ch <- c.errs
	ch <- c.dropped
}

// promMaxSeconds bounds the exposed buckets: slots above it fall in +Inf.
const promMaxSeconds = 60

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.t.Snapshot()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.latency, err)
		return
	}
	for _, h := range snap.Hists {
		labels := []string{string(h.Source), h.Op, GPUIndex(h.GPU, c.gpus), h.GPU}
		buckets := promBuckets(h, snap.Unit)
		ch <- prometheus.MustNewConstHistogram(c.latency, h.Count, float64(h.SumNs)/1e9, buckets, labels...)
		ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(h.Errors), labels...)
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(snap.Dropped))
}

// promBuckets turns log2 slots into cumulative "le" buckets in seconds: slot
// k holds latencies below 2^(k+1) units. The set of bounds depends only on
// the unit, so series stay comparable between scrapes.
func promBuckets(h Hist, unit time.Duration) map[float64]uint64 {
	out := map[float64]uint64{}
	var cum uint64
	for k := 0; k < Slots; k++ {
		cum += h.Slots[k]
		le := math.Ldexp(unit.Seconds(), k+1)
		out[le] = cum
		if le >= promMaxSeconds {
			break
		}
	}
	return out
}
