package api_test

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsRouteLabels checks that HTTP metrics are labelled by route
// template, never by raw path, and that the per-queue and process metrics
// are served.
func TestMetricsRouteLabels(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/foo", "x")
	ts.do("GET", "/api/queue/barqueue", nil)
	ts.do("GET", "/no/such/xyzpath", nil)
	ts.do("PUT", "/api/queue/foo", nil)
	ts.do("BREW", "/api/queue/foo", nil)

	r := ts.do("GET", "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics = %d", r.status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want Prometheus text format", ct)
	}
	var httpLines []string
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "mqueue_http_") {
			httpLines = append(httpLines, line)
		}
	}
	all := strings.Join(httpLines, "\n")
	for _, want := range []string{
		`mqueue_http_requests_total{code="201",method="POST",route="/api/queue/:name"} 1`,
		`mqueue_http_requests_total{code="204",method="GET",route="/api/queue/:name"} 1`,
		`mqueue_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`mqueue_http_requests_total{code="405",method="PUT",route="unmatched"} 1`,
		`method="OTHER"`,
		`mqueue_http_request_duration_seconds_bucket{method="POST",route="/api/queue/:name",le=`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("metrics lack %s; HTTP lines:\n%s", want, all)
		}
	}
	for _, raw := range []string{"foo", "barqueue", "xyzpath", "BREW"} {
		if strings.Contains(all, raw) {
			t.Errorf("a raw path or method (%q) leaked into the HTTP metric labels:\n%s", raw, all)
		}
	}
	body := string(r.body)
	for _, want := range []string{
		`mqueue_queue_depth{queue="foo"} 1`,
		`mqueue_messages_enqueued_total{queue="foo"} 1`,
		`mqueue_oldest_message_age_seconds{queue="foo"}`,
		"mqueue_fsync_duration_seconds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
