package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/engine"
)

func TestEnqueueDequeueRoundTrip(t *testing.T) {
	ts := start(t)
	body := make([]byte, 256)
	for i := range body {
		body[i] = byte(i)
	}
	before := time.Now().UnixMilli()
	r := ts.do(http.MethodPost, "/api/queue/bin", bytes.NewReader(body))
	after := time.Now().UnixMilli()
	if r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s, want 201", r.status, r.body)
	}
	var created struct {
		Queue string `json:"queue"`
		ID    uint64 `json:"id"`
	}
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatalf("POST body %q: %v", r.body, err)
	}
	if created.Queue != "bin" {
		t.Errorf("queue = %q, want bin", created.Queue)
	}
	if got := r.header.Get("X-Message-Id"); got != strconv.FormatUint(created.ID, 10) {
		t.Errorf("X-Message-Id = %q, body id %d", got, created.ID)
	}

	r = ts.do(http.MethodGet, "/api/queue/bin", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET = %d %s, want 200", r.status, r.body)
	}
	if !bytes.Equal(r.body, body) {
		t.Errorf("GET body differs from what was posted")
	}
	if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := r.header.Get("X-Message-Id"); got != strconv.FormatUint(created.ID, 10) {
		t.Errorf("GET X-Message-Id = %q, want %d", got, created.ID)
	}
	at, err := strconv.ParseInt(r.header.Get("X-Enqueued-At"), 10, 64)
	if err != nil || at < before-1000 || at > after+1000 {
		t.Errorf("X-Enqueued-At = %q, want unix ms within [%d, %d]", r.header.Get("X-Enqueued-At"), before, after)
	}
	if v, ok := r.header["X-Expires-At"]; ok {
		t.Errorf("X-Expires-At = %q on a message without TTL", v)
	}

	r = ts.do(http.MethodGet, "/api/queue/bin", nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Errorf("GET of an empty queue = %d %q, want 204 and no body", r.status, r.body)
	}
}

func TestDefaultQueue(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue", "to default")
	r := ts.do(http.MethodGet, "/api/queue/default", nil)
	if r.status != http.StatusOK || string(r.body) != "to default" {
		t.Fatalf("GET /api/queue/default = %d %q", r.status, r.body)
	}
	ts.post("/api/queue/default", "named default")
	r = ts.do(http.MethodGet, "/api/queue", nil)
	if r.status != http.StatusOK || string(r.body) != "named default" {
		t.Fatalf("GET /api/queue = %d %q", r.status, r.body)
	}
}

func TestFIFOAndIncreasingIDs(t *testing.T) {
	ts := start(t)
	var ids []uint64
	for i := range 5 {
		ids = append(ids, ts.post("/api/queue/fifo", fmt.Sprint("m", i)))
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("ids %v are not strictly increasing", ids)
	}
	for i := range 5 {
		r := ts.do(http.MethodGet, "/api/queue/fifo", nil)
		if r.status != http.StatusOK || string(r.body) != fmt.Sprint("m", i) ||
			r.header.Get("X-Message-Id") != strconv.FormatUint(ids[i], 10) {
			t.Fatalf("GET %d = %d %q id %s, want m%d id %d", i, r.status, r.body, r.header.Get("X-Message-Id"), i, ids[i])
		}
	}
}

func TestTTLHeaders(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/ttl?ttl=60", "x")
	r := ts.do(http.MethodGet, "/api/queue/ttl", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET = %d", r.status)
	}
	enq, err1 := strconv.ParseInt(r.header.Get("X-Enqueued-At"), 10, 64)
	exp, err2 := strconv.ParseInt(r.header.Get("X-Expires-At"), 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("X-Enqueued-At %q, X-Expires-At %q", r.header.Get("X-Enqueued-At"), r.header.Get("X-Expires-At"))
	}
	if d := exp - enq; d < 59_000 || d > 61_000 {
		t.Errorf("X-Expires-At - X-Enqueued-At = %d ms, want 60000", d)
	}
}

func TestSyncParam(t *testing.T) {
	ts := start(t)
	for _, v := range []string{"1", "0", "true", "false", "TRUE"} {
		ts.post("/api/queue/s?sync="+v, "x")
	}
}

// TestErrors checks every 4xx the API decides itself, and that the queue
// name is judged before anything else.
func TestErrors(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.MaxMessageBytes = 16 })
	long := strings.Repeat("a", 65)
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"ttl negative", "POST", "/api/queue/q?ttl=-1", "x", 400, api.CodeInvalidTTL},
		{"ttl text", "POST", "/api/queue/q?ttl=abc", "x", 400, api.CodeInvalidTTL},
		{"ttl fraction", "POST", "/api/queue/q?ttl=1.5", "x", 400, api.CodeInvalidTTL},
		{"ttl too big", "POST", "/api/queue/q?ttl=315360001", "x", 400, api.CodeInvalidTTL},
		{"ttl empty", "POST", "/api/queue/q?ttl=", "x", 400, api.CodeInvalidTTL},
		{"ttl plus", "POST", "/api/queue/q?ttl=%2B5", "x", 400, api.CodeInvalidTTL},
		{"bad escape", "POST", "/api/queue/q?ttl=%zz", "x", 400, api.CodeInvalidQuery},
		{"semicolon", "POST", "/api/queue/q?ttl=5;sync=1", "x", 400, api.CodeInvalidQuery},
		{"bad escape on GET", "GET", "/api/queue/q?wait=%zz", "", 400, api.CodeInvalidQuery},
		{"sync 2", "POST", "/api/queue/q?sync=2", "x", 400, api.CodeInvalidSync},
		{"sync yes", "POST", "/api/queue/q?sync=yes", "x", 400, api.CodeInvalidSync},
		{"sync empty", "POST", "/api/queue/q?sync=", "x", 400, api.CodeInvalidSync},
		{"wait 31", "GET", "/api/queue/q?wait=31", "", 400, api.CodeInvalidWait},
		{"wait negative", "GET", "/api/queue/q?wait=-1", "", 400, api.CodeInvalidWait},
		{"wait text", "GET", "/api/queue/q?wait=x", "", 400, api.CodeInvalidWait},
		{"wait fraction", "GET", "/api/queue/q?wait=0.5", "", 400, api.CodeInvalidWait},
		{"name starts with dash", "POST", "/api/queue/-q", "x", 400, api.CodeInvalidQueueName},
		{"name starts with underscore", "GET", "/api/queue/_q", "", 400, api.CodeInvalidQueueName},
		{"name too long", "POST", "/api/queue/" + long, "x", 400, api.CodeInvalidQueueName},
		{"name with space", "POST", "/api/queue/a%20b", "x", 400, api.CodeInvalidQueueName},
		{"name before ttl", "POST", "/api/queue/-q?ttl=x", "x", 400, api.CodeInvalidQueueName},
		{"stats bad name", "GET", "/api/stats/-q", "", 400, api.CodeInvalidQueueName},
		{"stats unknown queue", "GET", "/api/stats/nosuch", "", 404, api.CodeQueueNotFound},
		{"empty body", "POST", "/api/queue/q", "", 400, api.CodeEmptyMessage},
		{"too large", "POST", "/api/queue/q", strings.Repeat("x", 17), 413, api.CodeTooLarge},
		{"unknown route", "GET", "/nope", "", 404, api.CodeNotFound},
		{"unknown api route", "GET", "/api/nope", "", 404, api.CodeNotFound},
		{"extra segment", "GET", "/api/queue/a/b", "", 404, api.CodeNotFound},
		{"trailing slash", "POST", "/api/queue/", "x", 404, api.CodeNotFound},
		{"wrong method queue", "PUT", "/api/queue/q", "", 405, api.CodeMethodNotAllowed},
		{"wrong method stats", "POST", "/api/stats", "x", 405, api.CodeMethodNotAllowed},
		{"wrong method healthz", "PUT", "/healthz", "", 405, api.CodeMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.body != "" || tt.method == "POST" {
				body = strings.NewReader(tt.body)
			}
			var r response
			if body == nil {
				r = ts.do(tt.method, tt.path, nil)
			} else {
				r = ts.do(tt.method, tt.path, body)
			}
			if r.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, r.status, r.body, tt.status)
			}
			if e := r.errBody(t); e.Error != tt.code {
				t.Errorf("error = %q, want %q", e.Error, tt.code)
			}
			if tt.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}

	t.Run("nothing stored", func(t *testing.T) {
		if _, ok := ts.eng.Stats("q"); ok {
			t.Errorf("queue q exists after only failed requests")
		}
	})
	t.Run("limits accepted", func(t *testing.T) {
		ts.post("/api/queue/"+long[:64], "x")
		ts.post("/api/queue/q?ttl=315360000", "x")
		ts.post("/api/queue/q?ttl=0", strings.Repeat("y", 16))
		if r := ts.do("GET", "/api/queue/empty?wait=0", nil); r.status != 204 {
			t.Errorf("wait=0 = %d, want 204", r.status)
		}
	})
}

func TestStats(t *testing.T) {
	ts := start(t)
	r := ts.do("GET", "/api/stats", nil)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`"queues":[]`)) {
		t.Errorf("stats of no queue = %d %s, want 200 with \"queues\":[]", r.status, r.body)
	}
	ts.post("/api/queue/s1", "a")
	ts.post("/api/queue/s1", "b")
	ts.post("/api/queue/s2", "c")

	r = ts.do("GET", "/api/stats/s1", nil)
	if r.status != 200 {
		t.Fatalf("GET /api/stats/s1 = %d %s", r.status, r.body)
	}
	var fields map[string]any
	if err := json.Unmarshal(r.body, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"queue", "depth", "next_id", "read_id", "enqueued_total", "dequeued_total",
		"expired_total", "segments", "disk_bytes", "oldest_enqueued_at"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("stats lack %q: %s", k, r.body)
		}
	}
	var st engine.QueueStats
	_ = json.Unmarshal(r.body, &st)
	if st.Queue != "s1" || st.Depth != 2 || st.OldestEnqueuedAt == 0 {
		t.Errorf("stats = %+v, want queue s1, depth 2, oldest set", st)
	}

	r = ts.do("GET", "/api/stats", nil)
	var all struct {
		Queues []engine.QueueStats `json:"queues"`
	}
	if err := json.Unmarshal(r.body, &all); err != nil || r.status != 200 {
		t.Fatalf("GET /api/stats = %d %s (%v)", r.status, r.body, err)
	}
	var names []string
	for _, q := range all.Queues {
		names = append(names, q.Queue)
	}
	if !slices.Contains(names, "s1") || !slices.Contains(names, "s2") {
		t.Errorf("stats queues = %v, want s1 and s2", names)
	}
}

func TestLongPoll(t *testing.T) {
	ts := start(t)
	type result struct {
		r       response
		elapsed time.Duration
	}
	done := make(chan result, 1)
	begin := time.Now()
	go func() {
		r, err := ts.try("GET", "/api/queue/lp?wait=2", nil)
		if err != nil {
			t.Errorf("long poll: %v", err)
		}
		done <- result{r, time.Since(begin)}
	}()
	time.Sleep(300 * time.Millisecond)
	ts.post("/api/queue/lp", "wake up")
	res := <-done
	if res.r.status != 200 || string(res.r.body) != "wake up" {
		t.Fatalf("long poll = %d %q, want 200 \"wake up\"", res.r.status, res.r.body)
	}
	if res.elapsed > 1500*time.Millisecond {
		t.Errorf("long poll answered after %v, want soon after the POST at 300ms", res.elapsed)
	}

	begin = time.Now()
	r := ts.do("GET", "/api/queue/lp?wait=1", nil)
	if el := time.Since(begin); r.status != 204 || el < 900*time.Millisecond || el > 3*time.Second {
		t.Errorf("empty long poll = %d after %v, want 204 after about 1s", r.status, el)
	}
}

func TestQueueFull(t *testing.T) {
	ts := start(t, func(s *setup) { s.eng.MaxQueueDepth = 1 })
	ts.post("/api/queue/full", "1")
	r := ts.do("POST", "/api/queue/full", strings.NewReader("2"))
	if r.status != http.StatusTooManyRequests || r.errBody(t).Error != api.CodeQueueFull {
		t.Fatalf("POST to a full queue = %d %s, want 429 QUEUE_FULL", r.status, r.body)
	}
}

func TestDiskFull(t *testing.T) {
	ts := start(t, func(s *setup) { s.eng.MaxDiskBytes = 8 << 10 })
	msg := strings.Repeat("d", 1024)
	var r response
	stored := 0
	for range 64 {
		r = ts.do("POST", "/api/queue/disk", strings.NewReader(msg))
		if r.status != http.StatusCreated {
			break
		}
		stored++
	}
	if r.status != 507 || r.errBody(t).Error != api.CodeDiskFull {
		t.Fatalf("POST past the disk cap = %d %s, want 507 DISK_FULL", r.status, r.body)
	}
	if stored == 0 {
		t.Fatalf("nothing was stored before DISK_FULL")
	}
	// Dequeue keeps working on a full disk.
	if r := ts.do("GET", "/api/queue/disk", nil); r.status != 200 || string(r.body) != msg {
		t.Errorf("GET on a full disk = %d, want 200", r.status)
	}
}

func TestEngineClosedIsShuttingDown(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/c", "x")
	ts.closeEngine()
	r := ts.do("POST", "/api/queue/c", strings.NewReader("y"))
	if r.status != 503 || r.errBody(t).Error != api.CodeShuttingDown || r.header.Get("Retry-After") == "" {
		t.Errorf("POST on a closed engine = %d %s Retry-After %q, want 503 SHUTTING_DOWN with Retry-After",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := ts.do("GET", "/api/queue/c", nil); r.status != 503 || r.errBody(t).Error != api.CodeShuttingDown || r.header.Get("Retry-After") == "" {
		t.Errorf("GET on a closed engine = %d %s, want 503 SHUTTING_DOWN with Retry-After", r.status, r.body)
	}
}

func TestHealthAndReady(t *testing.T) {
	ts := start(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := ts.do("GET", p, nil); r.status != 200 || string(r.body) != "ok" {
			t.Errorf("GET %s = %d %q, want 200 ok", p, r.status, r.body)
		}
		if r := ts.do("HEAD", p, nil); r.status != 200 {
			t.Errorf("HEAD %s = %d, want 200", p, r.status)
		}
	}
}
