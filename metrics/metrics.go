// Package metrics defines mqueue's Prometheus metrics. Every metric is built
// from a prometheus.Registerer passed in by the caller; nothing registers in
// init(), so tests can use a fresh registry each.
//
// Per-queue figures are not updated on the hot path: a collector asks the
// engine for a snapshot at scrape time (see RegisterQueues).
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "mqueue"

// Engine holds the storage engine's metrics. A nil *Engine is valid and
// records nothing, so packages can be used without metrics. Safe for
// concurrent use.
type Engine struct {
	fsyncDuration    prometheus.Histogram
	commitBatch      prometheus.Histogram
	corruptRecords   prometheus.Counter
	repairedSegments prometheus.Counter
	writeErrors      prometheus.Counter
}

// NewEngine builds the engine metrics and registers them with reg.
func NewEngine(reg prometheus.Registerer) *Engine {
	m := &Engine{
		fsyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "fsync_duration_seconds",
			Help:      "Time taken by each fsync of a segment or cursor file.",
			Buckets:   prometheus.ExponentialBuckets(0.00005, 2, 16), // 50µs .. ~1.6s
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "commit_batch_messages",
			Help:      "Messages written by each group commit (one write, at most one fsync).",
			Buckets:   prometheus.ExponentialBuckets(1, 2, 12), // 1 .. 2048
		}),
		corruptRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "corrupt_records_total",
			Help:      "Records found corrupt (bad CRC or framing) in the middle of a segment; never served.",
		}),
		repairedSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "repaired_segments_total",
			Help:      "Segments whose torn tail was cut off at open or after a failed write.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "write_errors_total",
			Help:      "Failed segment or cursor writes and fsyncs; each failed the whole batch.",
		}),
	}
	reg.MustRegister(m.fsyncDuration, m.commitBatch, m.corruptRecords, m.repairedSegments, m.writeErrors)
	return m
}

// ObserveFsync records the duration of one fsync.
func (m *Engine) ObserveFsync(d time.Duration) {
	if m != nil {
		m.fsyncDuration.Observe(d.Seconds())
	}
}

// ObserveBatch records the number of messages in one group commit.
func (m *Engine) ObserveBatch(n int) {
	if m != nil {
		m.commitBatch.Observe(float64(n))
	}
}

// AddCorrupt counts n corrupt records.
func (m *Engine) AddCorrupt(n int) {
	if m != nil && n > 0 {
		m.corruptRecords.Add(float64(n))
	}
}

// IncRepaired counts one repaired segment.
func (m *Engine) IncRepaired() {
	if m != nil {
		m.repairedSegments.Inc()
	}
}

// IncWriteError counts one failed write or fsync.
func (m *Engine) IncWriteError() {
	if m != nil {
		m.writeErrors.Inc()
	}
}

// RegisterMemory registers the gauges of the engine's memory budget:
// mqueue_memory_max_bytes (limit), and what snapshot returns at every
// scrape, mqueue_memory_tail_bytes and mqueue_memory_held_bytes. snapshot
// must be safe for concurrent use.
func RegisterMemory(reg prometheus.Registerer, limit int64, snapshot func() (tail, held int64)) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "memory_max_bytes",
			Help:      "The memory budget of all queues' memory tails and held bodies (--max-memory-bytes).",
		}, func() float64 { return float64(limit) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "memory_tail_bytes",
			Help:      "Bytes of recent messages kept in the queues' memory tails (bodies plus 64 bytes each), within the memory budget.",
		}, func() float64 { tail, _ := snapshot(); return float64(tail) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "memory_held_bytes",
			Help:      "Bytes of leased and delayed messages' bodies kept in memory, within the memory budget; the others are read back from disk.",
		}, func() float64 { _, held := snapshot(); return float64(held) }),
	)
}

// QueueSample is one queue's figures at scrape time.
type QueueSample struct {
	Queue            string
	Enqueued         uint64
	Dequeued         uint64
	Expired          uint64
	Depth            int64
	Segments         int
	DiskBytes        int64
	OldestAgeSeconds float64
	InFlight         int64  // leased
	Delayed          int64  // hidden by a nack's delay
	Redelivered      uint64 // deliveries after the first
	DeadLettered     uint64 // moved to {queue}.dlq
	Purged           uint64 // removed by a purge
	Redriven         uint64 // moved out of this .dlq back to its source by a redrive
}

// RegisterQueues registers a collector that calls snapshot at every scrape
// and exports the per-queue metrics of SPEC.md from it. snapshot must be safe
// for concurrent use.
func RegisterQueues(reg prometheus.Registerer, snapshot func() []QueueSample) {
	reg.MustRegister(&queueCollector{snapshot: snapshot})
}

var (
	labels       = []string{"queue"}
	descEnqueued = prometheus.NewDesc(namespace+"_messages_enqueued_total", "Messages acknowledged to producers since the process started.", labels, nil)
	descDequeued = prometheus.NewDesc(namespace+"_messages_dequeued_total", "Messages delivered to consumers since the process started.", labels, nil)
	descExpired  = prometheus.NewDesc(namespace+"_messages_expired_total", "Messages that expired (skipped by a read or deleted by compaction) since the process started.", labels, nil)
	descDepth    = prometheus.NewDesc(namespace+"_queue_depth", "Messages stored and not yet consumed (expired ones count until skipped or deleted).", labels, nil)
	descSegments = prometheus.NewDesc(namespace+"_segments", "Segment files on disk.", labels, nil)
	descDisk     = prometheus.NewDesc(namespace+"_disk_bytes", "Bytes of segment files on disk.", labels, nil)
	descOldest   = prometheus.NewDesc(namespace+"_oldest_message_age_seconds", "Age of the oldest unconsumed message; 0 when the queue is empty.", labels, nil)
	descInFlight = prometheus.NewDesc(namespace+"_messages_in_flight", "Messages under a running lease.", labels, nil)
	descDelayed  = prometheus.NewDesc(namespace+"_messages_delayed", "Messages hidden until a nack's delay ends.", labels, nil)
	descRedeliv  = prometheus.NewDesc(namespace+"_messages_redelivered_total", "Deliveries of a message after its first (its lease ran out or was nacked) since the process started.", labels, nil)
	descDead     = prometheus.NewDesc(namespace+"_messages_dead_lettered_total", "Messages moved to the queue's .dlq after --max-deliveries since the process started.", labels, nil)
	descPurged   = prometheus.NewDesc(namespace+"_messages_purged_total", "Messages removed by POST /api/queue/{name}/purge since the process started.", labels, nil)
	descRedriven = prometheus.NewDesc(namespace+"_messages_redriven_total", "Messages moved out of this .dlq back to its source queue by a redrive since the process started.", labels, nil)
)

type queueCollector struct {
	snapshot func() []QueueSample
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEnqueued, descDequeued, descExpired, descDepth, descSegments, descDisk, descOldest, descInFlight, descDelayed, descRedeliv, descDead, descPurged, descRedriven} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.snapshot() {
		ch <- prometheus.MustNewConstMetric(descEnqueued, prometheus.CounterValue, float64(s.Enqueued), s.Queue)
		ch <- prometheus.MustNewConstMetric(descDequeued, prometheus.CounterValue, float64(s.Dequeued), s.Queue)
		ch <- prometheus.MustNewConstMetric(descExpired, prometheus.CounterValue, float64(s.Expired), s.Queue)
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(s.Depth), s.Queue)
		ch <- prometheus.MustNewConstMetric(descSegments, prometheus.GaugeValue, float64(s.Segments), s.Queue)
		ch <- prometheus.MustNewConstMetric(descDisk, prometheus.GaugeValue, float64(s.DiskBytes), s.Queue)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, s.OldestAgeSeconds, s.Queue)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.InFlight), s.Queue)
		ch <- prometheus.MustNewConstMetric(descDelayed, prometheus.GaugeValue, float64(s.Delayed), s.Queue)
		ch <- prometheus.MustNewConstMetric(descRedeliv, prometheus.CounterValue, float64(s.Redelivered), s.Queue)
		ch <- prometheus.MustNewConstMetric(descDead, prometheus.CounterValue, float64(s.DeadLettered), s.Queue)
		ch <- prometheus.MustNewConstMetric(descPurged, prometheus.CounterValue, float64(s.Purged), s.Queue)
		ch <- prometheus.MustNewConstMetric(descRedriven, prometheus.CounterValue, float64(s.Redriven), s.Queue)
	}
}

// HTTP holds the HTTP server's metrics. Safe for concurrent use.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTP builds the HTTP metrics and registers them with reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	m := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "http_requests_total",
			Help:      "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace,
			Name:      "http_request_duration_seconds",
			Help:      "HTTP request latency by route template and method.",
			Buckets:   []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Observe records one finished request. route must be a route template (never
// a raw path) so that label cardinality stays bounded.
func (m *HTTP) Observe(route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, method, codeLabel(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
}

// codeLabel avoids strconv allocation for the common status codes.
func codeLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	}
	return strconv.Itoa(code)
}
