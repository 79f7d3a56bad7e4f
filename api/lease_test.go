package api_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
)

// A leased GET answers the SPEC's headers; ack, nack and extend work on
// its receipt and refuse a dead one with 410.
func TestLeaseOverHTTP(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/jobs", "first")
	ts.post("/api/queue/jobs", "second")
	before := time.Now().UnixMilli()
	r := ts.do("GET", "/api/queue/jobs?lease=30", nil)
	if r.status != http.StatusOK || string(r.body) != "first" {
		t.Fatalf("GET ?lease=30 = %d %q", r.status, r.body)
	}
	receipt := r.header.Get("X-Receipt")
	until, err := strconv.ParseInt(r.header.Get("X-Lease-Expires-At"), 10, 64)
	if receipt == "" || err != nil || until < before+30000 || until > time.Now().UnixMilli()+30000 {
		t.Fatalf("lease headers: X-Receipt %q X-Lease-Expires-At %q", receipt, r.header.Get("X-Lease-Expires-At"))
	}
	if got := r.header.Get("X-Delivery-Count"); got != "1" {
		t.Fatalf("X-Delivery-Count = %q, want 1", got)
	}

	e := ts.do("POST", "/api/queue/jobs/extend?lease=60", nil, "X-Receipt", receipt)
	var ext struct {
		LeaseExpiresAt int64 `json:"lease_expires_at"`
	}
	if e.status != http.StatusOK || json.Unmarshal(e.body, &ext) != nil || ext.LeaseExpiresAt < until+29000 ||
		e.header.Get("X-Lease-Expires-At") != strconv.FormatInt(ext.LeaseExpiresAt, 10) {
		t.Fatalf("extend = %d %s %q", e.status, e.body, e.header.Get("X-Lease-Expires-At"))
	}
	if st, _ := ts.eng.Stats("jobs"); st.InFlight != 1 || st.Depth != 1 {
		t.Fatalf("stats: in_flight %d depth %d", st.InFlight, st.Depth)
	}
	if a := ts.do("POST", "/api/queue/jobs/ack", nil, "X-Receipt", receipt); a.status != http.StatusNoContent {
		t.Fatalf("ack = %d %s", a.status, a.body)
	}
	for _, path := range []string{"/api/queue/jobs/ack", "/api/queue/jobs/nack", "/api/queue/jobs/extend?lease=5"} {
		a := ts.do("POST", path, nil, "X-Receipt", receipt)
		if a.status != http.StatusGone || a.errBody(t).Error != api.CodeLeaseExpired {
			t.Fatalf("%s after ack = %d %s, want 410 LEASE_EXPIRED", path, a.status, a.body)
		}
	}

	// nack: visible again at once, delivered again with count 2, ahead
	// of newer messages.
	ts.post("/api/queue/jobs", "third")
	r = ts.do("GET", "/api/queue/jobs?lease=30", nil)
	if string(r.body) != "second" {
		t.Fatalf("GET = %q, want second", r.body)
	}
	if n := ts.do("POST", "/api/queue/jobs/nack", nil, "X-Receipt", r.header.Get("X-Receipt")); n.status != http.StatusNoContent {
		t.Fatalf("nack = %d %s", n.status, n.body)
	}
	r = ts.do("GET", "/api/queue/jobs", nil)
	if string(r.body) != "second" || r.header.Get("X-Delivery-Count") != "2" || r.header.Get("X-Receipt") != "" {
		t.Fatalf("after nack: %q count %q receipt %q", r.body, r.header.Get("X-Delivery-Count"), r.header.Get("X-Receipt"))
	}
	var stats struct {
		InFlight     *int64  `json:"in_flight"`
		Delayed      *int64  `json:"delayed"`
		DeadLettered *uint64 `json:"dead_lettered_total"`
	}
	s := ts.do("GET", "/api/stats/jobs", nil)
	if err := json.Unmarshal(s.body, &stats); err != nil || stats.InFlight == nil || stats.Delayed == nil || stats.DeadLettered == nil {
		t.Fatalf("stats lack the lease fields: %s", s.body)
	}
}

// Bad lease parameters and receipts are 400s that change nothing.
func TestLeaseBadInput(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/q", "keep")
	for _, path := range []string{"/api/queue/q?lease=0", "/api/queue/q?lease=43201", "/api/queue/q?lease=-1", "/api/queue/q?lease=", "/api/queue/q/batch?lease=x"} {
		if r := ts.do("GET", path, nil); r.status != 400 || r.errBody(t).Error != api.CodeInvalidLease {
			t.Errorf("GET %s = %d %s, want 400 INVALID_LEASE", path, r.status, r.body)
		}
	}
	good := ts.do("GET", "/api/queue/q?lease=30", nil).header.Get("X-Receipt")
	tests := []struct {
		path, code string
		hdr        []string
	}{
		{"/api/queue/q/ack", api.CodeInvalidReceipt, nil},
		{"/api/queue/q/nack?delay=x", api.CodeInvalidDelay, []string{"X-Receipt", good}},
		{"/api/queue/q/nack?delay=604801", api.CodeInvalidDelay, []string{"X-Receipt", good}},
		{"/api/queue/q/extend", api.CodeInvalidLease, []string{"X-Receipt", good}},
		{"/api/queue/q/extend?lease=0", api.CodeInvalidLease, []string{"X-Receipt", good}},
		{"/api/queue/bad%20name/ack", api.CodeInvalidQueueName, []string{"X-Receipt", good}},
	}
	for _, tt := range tests {
		if r := ts.do("POST", tt.path, nil, tt.hdr...); r.status != 400 || r.errBody(t).Error != tt.code {
			t.Errorf("POST %s %v = %d %s, want 400 %s", tt.path, tt.hdr, r.status, r.body, tt.code)
		}
	}
	for _, r := range []string{"not-a-receipt", good + "x", "AAAA." + good} {
		if a := ts.do("POST", "/api/queue/q/ack", nil, "X-Receipt", r); a.status != http.StatusGone || a.errBody(t).Error != api.CodeLeaseExpired {
			t.Errorf("ack with receipt %q = %d %s, want 410 LEASE_EXPIRED (SPEC: unknown receipt)", r, a.status, a.body)
		}
	}
	if r := ts.do("POST", "/api/queue/q/ack", nil, "X-Receipt", good); r.status != http.StatusNoContent {
		t.Fatalf("the good receipt after the bad requests: ack = %d %s", r.status, r.body)
	}
}

// The batch GET leases every message it returns, each with its receipt.
func TestLeaseBatchOverHTTP(t *testing.T) {
	ts := start(t)
	for _, b := range []string{"a", "b", "c"} {
		ts.post("/api/queue/q", b)
	}
	r := ts.do("GET", "/api/queue/q/batch?max=10&lease=30", nil)
	var out struct {
		Messages []struct {
			Body           string `json:"body"`
			Receipt        string `json:"receipt"`
			DeliveryCount  int    `json:"delivery_count"`
			LeaseExpiresAt int64  `json:"lease_expires_at"`
		} `json:"messages"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &out) != nil || len(out.Messages) != 3 {
		t.Fatalf("batch lease = %d %s", r.status, r.body)
	}
	for _, m := range out.Messages {
		if m.Receipt == "" || m.DeliveryCount != 1 || m.LeaseExpiresAt == 0 {
			t.Fatalf("batch message without lease fields: %s", r.body)
		}
		if a := ts.do("POST", "/api/queue/q/ack", nil, "X-Receipt", m.Receipt); a.status != http.StatusNoContent {
			t.Fatalf("ack %s = %d %s", m.Body, a.status, a.body)
		}
	}
	if r := ts.do("GET", "/api/queue/q/batch?max=10", nil); r.status != http.StatusNoContent {
		t.Fatalf("after acking all: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(ts.do("GET", "/metrics", nil).body), `mqueue_messages_in_flight{queue="q"} 0`) {
		t.Error("metrics lack mqueue_messages_in_flight")
	}
}

// POST ?delay=N hides a message for N seconds; a long poll gets it when
// its time comes; the batch POST takes "delay" per message.
func TestDelayOverHTTP(t *testing.T) {
	ts := start(t)
	start := time.Now()
	ts.post("/api/queue/d?delay=1", "later")
	ts.post("/api/queue/d", "now")
	r := ts.do("POST", "/api/queue/d/batch", strings.NewReader(`{"messages":[{"body":"b-now"},{"body":"b-later","delay":1}]}`))
	if r.status != http.StatusCreated {
		t.Fatalf("batch POST with a delay = %d %s", r.status, r.body)
	}
	if r := ts.do("GET", "/api/queue/d/batch?max=10", nil); !strings.Contains(string(r.body), `"now"`) || !strings.Contains(string(r.body), `"b-now"`) || strings.Contains(string(r.body), "later") {
		t.Fatalf("first GET = %d %s, want now and b-now only", r.status, r.body)
	}
	var stats struct {
		Delayed int64 `json:"delayed"`
	}
	if json.Unmarshal(ts.do("GET", "/api/stats/d", nil).body, &stats); stats.Delayed != 2 {
		t.Fatalf("delayed = %d, want 2", stats.Delayed)
	}
	r = ts.do("GET", "/api/queue/d?wait=5", nil)
	if r.status != http.StatusOK || string(r.body) != "later" {
		t.Fatalf("long poll = %d %q, want later", r.status, r.body)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("the delayed message came after %v, before its second", waited)
	}
	if r := ts.do("GET", "/api/queue/d?wait=5", nil); string(r.body) != "b-later" {
		t.Fatalf("second long poll = %d %q, want b-later", r.status, r.body)
	}
}
