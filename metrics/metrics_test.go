package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHTTPObserve checks that every route, method and code lands in its own
// series of both metrics, however often each is seen.
func TestHTTPObserve(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewHTTP(reg)
	for range 3 {
		m.Observe("/api/queue/:name", "POST", 201, time.Millisecond)
	}
	m.Observe("/api/queue/:name", "GET", 204, time.Millisecond)
	m.Observe("/api/queue/:name", "POST", 507, time.Millisecond)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	requests := map[string]float64{}
	durations := map[string]uint64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			switch f.GetName() {
			case "mqueue_http_requests_total":
				requests[key] = m.GetCounter().GetValue()
			case "mqueue_http_request_duration_seconds":
				durations[key] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	wantRequests := map[string]float64{
		"code=201 method=POST route=/api/queue/:name ": 3,
		"code=204 method=GET route=/api/queue/:name ":  1,
		"code=507 method=POST route=/api/queue/:name ": 1,
	}
	wantDurations := map[string]uint64{
		"method=POST route=/api/queue/:name ": 4,
		"method=GET route=/api/queue/:name ":  1,
	}
	if len(requests) != len(wantRequests) || len(durations) != len(wantDurations) {
		t.Fatalf("requests %v, durations %v", requests, durations)
	}
	for k, v := range wantRequests {
		if requests[k] != v {
			t.Errorf("requests{%s} = %v, want %v", k, requests[k], v)
		}
	}
	for k, v := range wantDurations {
		if durations[k] != v {
			t.Errorf("durations{%s} = %v, want %v", k, durations[k], v)
		}
	}
	var nilHTTP *HTTP
	nilHTTP.Observe("/x", "GET", 200, 0) // a nil *HTTP records nothing and does not panic
}

// BenchmarkHTTPObserve is the per-request cost of the HTTP metrics.
func BenchmarkHTTPObserve(b *testing.B) {
	m := NewHTTP(prometheus.NewRegistry())
	b.ReportAllocs()
	for b.Loop() {
		m.Observe("/api/queue/:name", "POST", 201, 300*time.Microsecond)
	}
}
