package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
)

// batchResponse is the body of a batch GET.
type batchResponse struct {
	Messages []struct {
		ID            uint64  `json:"id"`
		Body          *string `json:"body"`
		BodyBase64    *string `json:"body_base64"`
		EnqueuedAt    int64   `json:"enqueued_at"`
		ExpiresAt     *int64  `json:"expires_at"`
		DeliveryCount int     `json:"delivery_count"`
		Receipt       *string `json:"receipt"`
	} `json:"messages"`
}

func (ts *testServer) postBatch(path, body string) []uint64 {
	ts.t.Helper()
	r := ts.do(http.MethodPost, path, strings.NewReader(body))
	if r.status != http.StatusCreated {
		ts.t.Fatalf("POST %s = %d %s, want 201", path, r.status, r.body)
	}
	var out struct {
		IDs []uint64 `json:"ids"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		ts.t.Fatalf("POST %s body %q: %v", path, r.body, err)
	}
	return out.IDs
}

func (ts *testServer) getBatch(path string) (int, batchResponse, response) {
	ts.t.Helper()
	r := ts.do(http.MethodGet, path, nil)
	var out batchResponse
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &out); err != nil {
			ts.t.Fatalf("GET %s body %q: %v", path, r.body, err)
		}
	}
	return r.status, out, r
}

func TestBatchRoundTrip(t *testing.T) {
	ts := start(t)
	binary := []byte{0xff, 0x00, 'a', 0xfe}
	body := fmt.Sprintf(`{"messages":[{"body":"hello"},{"body_base64":%q,"ttl":60},{"body":"<ünï & cödé>\n"}]}`,
		base64.StdEncoding.EncodeToString(binary))
	before := time.Now().UnixMilli()
	ids := ts.postBatch("/api/queue/b/batch", body)
	if len(ids) != 3 || ids[1] != ids[0]+1 || ids[2] != ids[0]+2 {
		t.Fatalf("ids %v, want three consecutive", ids)
	}
	single := ts.post("/api/queue/b", "after")
	if single != ids[2]+1 {
		t.Fatalf("single POST after the batch got id %d, want %d", single, ids[2]+1)
	}

	status, got, r := ts.getBatch("/api/queue/b/batch?max=10")
	if status != http.StatusOK {
		t.Fatalf("GET batch = %d %s", status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if len(got.Messages) != 4 {
		t.Fatalf("got %d messages, want 4: %s", len(got.Messages), r.body)
	}
	want := [][]byte{[]byte("hello"), binary, []byte("<ünï & cödé>\n"), []byte("after")}
	for i, m := range got.Messages {
		if m.ID != ids[0]+uint64(i) {
			t.Errorf("message %d id %d, want %d", i, m.ID, ids[0]+uint64(i))
		}
		var b []byte
		switch {
		case m.Body != nil && m.BodyBase64 == nil:
			b = []byte(*m.Body)
		case m.BodyBase64 != nil && m.Body == nil:
			var err error
			if b, err = base64.StdEncoding.DecodeString(*m.BodyBase64); err != nil {
				t.Fatal(err)
			}
			if i != 1 {
				t.Errorf("message %d (valid UTF-8) came as body_base64", i)
			}
		default:
			t.Fatalf("message %d has body %v and body_base64 %v", i, m.Body, m.BodyBase64)
		}
		if !bytes.Equal(b, want[i]) {
			t.Errorf("message %d body %q, want %q", i, b, want[i])
		}
		if m.EnqueuedAt < before || m.EnqueuedAt > time.Now().UnixMilli() {
			t.Errorf("message %d enqueued_at %d, not in this test's time", i, m.EnqueuedAt)
		}
		if (m.ExpiresAt != nil) != (i == 1) {
			t.Errorf("message %d expires_at %v; only message 1 has a ttl", i, m.ExpiresAt)
		} else if i == 1 && *m.ExpiresAt != m.EnqueuedAt+60000 {
			t.Errorf("expires_at %d, want enqueued_at + 60 s = %d", *m.ExpiresAt, m.EnqueuedAt+60000)
		}
		if m.DeliveryCount != 1 || m.Receipt != nil {
			t.Errorf("message %d delivery_count %d receipt %v, want 1 and none (no lease)", i, m.DeliveryCount, m.Receipt)
		}
	}
	if status, _, r := ts.getBatch("/api/queue/b/batch?max=10"); status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("GET batch on an empty queue = %d %q, want 204 and no body", status, r.body)
	}
	if st, _ := ts.eng.Stats("b"); st.Depth != 0 || st.DequeuedTotal != 4 {
		t.Fatalf("stats after the batch GET: %+v", st)
	}
}

func TestBatchGetMaxDefaultsToOneAndKeepsOrder(t *testing.T) {
	ts := start(t)
	for i := range 5 {
		ts.post("/api/queue/m", fmt.Sprint(i))
	}
	_, got, _ := ts.getBatch("/api/queue/m/batch")
	if len(got.Messages) != 1 || *got.Messages[0].Body != "0" {
		t.Fatalf("GET batch without max: %+v, want message 0 alone", got.Messages)
	}
	_, got, _ = ts.getBatch("/api/queue/m/batch?max=3")
	if len(got.Messages) != 3 || *got.Messages[0].Body != "1" || *got.Messages[2].Body != "3" {
		t.Fatalf("max=3 gave %d messages", len(got.Messages))
	}
	r := ts.do("GET", "/api/queue/m", nil)
	if string(r.body) != "4" {
		t.Fatalf("single GET after the batches = %q, want 4", r.body)
	}
}

func TestBatchLongPoll(t *testing.T) {
	ts := start(t)
	type result struct {
		status int
		n      int
	}
	done := make(chan result, 1)
	go func() {
		r, err := ts.try("GET", "/api/queue/lp/batch?max=100&wait=5", nil)
		if err != nil {
			t.Error(err)
			done <- result{}
			return
		}
		var out batchResponse
		_ = json.Unmarshal(r.body, &out)
		done <- result{r.status, len(out.Messages)}
	}()
	time.Sleep(100 * time.Millisecond)
	ts.postBatch("/api/queue/lp/batch", `{"messages":[{"body":"a"},{"body":"b"}]}`)
	select {
	case res := <-done:
		if res.status != 200 || res.n != 2 {
			t.Fatalf("long poll = %d with %d messages, want 200 with the whole batch of 2", res.status, res.n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not return")
	}
}

func TestBatchErrors(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.MaxMessageBytes = 16 })
	many := `{"messages":[` + strings.Repeat(`{"body":"x"},`, api.MaxBatchMessages) + `{"body":"x"}]}`
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{"not json", "POST", "/api/queue/q/batch", "hello", 400, api.CodeInvalidBatch},
		{"json array", "POST", "/api/queue/q/batch", `[{"body":"x"}]`, 400, api.CodeInvalidBatch},
		{"truncated", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x"}`, 400, api.CodeInvalidBatch},
		{"trailing brace", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x"}]}}`, 400, api.CodeInvalidBatch},
		{"two values", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x"}]} {}`, 400, api.CodeInvalidBatch},
		{"unknown field", "POST", "/api/queue/q/batch", `{"messages":[{"bdy":"x"}]}`, 400, api.CodeInvalidBatch},
		{"no messages", "POST", "/api/queue/q/batch", `{"messages":[]}`, 400, api.CodeInvalidBatch},
		{"messages missing", "POST", "/api/queue/q/batch", `{}`, 400, api.CodeInvalidBatch},
		{"both bodies", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","body_base64":"eA=="}]}`, 400, api.CodeInvalidBatch},
		{"no body", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x"},{"ttl":5}]}`, 400, api.CodeInvalidBatch},
		{"bad base64", "POST", "/api/queue/q/batch", `{"messages":[{"body_base64":"!!"}]}`, 400, api.CodeInvalidBatch},
		{"body not a string", "POST", "/api/queue/q/batch", `{"messages":[{"body":5}]}`, 400, api.CodeInvalidBatch},
		{"empty body", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x"},{"body":""}]}`, 400, api.CodeEmptyMessage},
		{"message too large", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x"},{"body":"` + strings.Repeat("y", 17) + `"}]}`, 413, api.CodeTooLarge},
		{"too many", "POST", "/api/queue/q/batch", many, 413, api.CodeBatchTooLarge},
		{"ttl negative", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","ttl":-1}]}`, 400, api.CodeInvalidTTL},
		{"ttl fraction", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","ttl":1.5}]}`, 400, api.CodeInvalidTTL},
		{"ttl too big", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","ttl":315360001}]}`, 400, api.CodeInvalidTTL},
		{"ttl string", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","ttl":"5"}]}`, 400, api.CodeInvalidTTL},
		{"ttl exponent", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","ttl":1e3}]}`, 400, api.CodeInvalidTTL},
		{"delay too big", "POST", "/api/queue/q/batch", `{"messages":[{"body":"x","delay":604801}]}`, 400, api.CodeInvalidDelay},
		{"ttl in query", "POST", "/api/queue/q/batch?ttl=5", `{"messages":[{"body":"x"}]}`, 400, api.CodeInvalidQuery},
		{"bad sync", "POST", "/api/queue/q/batch?sync=2", `{"messages":[{"body":"x"}]}`, 400, api.CodeInvalidSync},
		{"bad name", "POST", "/api/queue/-q/batch", `{"messages":[{"body":"x"}]}`, 400, api.CodeInvalidQueueName},
		{"max 0", "GET", "/api/queue/q/batch?max=0", "", 400, api.CodeInvalidMax},
		{"max 1001", "GET", "/api/queue/q/batch?max=1001", "", 400, api.CodeInvalidMax},
		{"max text", "GET", "/api/queue/q/batch?max=ten", "", 400, api.CodeInvalidMax},
		{"batch wait 31", "GET", "/api/queue/q/batch?wait=31", "", 400, api.CodeInvalidWait},
		{"batch wrong method", "PUT", "/api/queue/q/batch", "", 405, api.CodeMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			if tt.method == "GET" {
				r = ts.do(tt.method, tt.path, nil)
			} else {
				r = ts.do(tt.method, tt.path, strings.NewReader(tt.body))
			}
			if r.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, r.status, r.body, tt.status)
			}
			if e := r.errBody(t); e.Error != tt.code {
				t.Errorf("error = %q (%s), want %q", e.Error, e.Message, tt.code)
			}
		})
	}
	t.Run("declared too large", func(t *testing.T) {
		r := ts.raw(fmt.Sprintf("POST /api/queue/q/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", api.MaxBatchBytes+1))
		if r.status != 413 {
			t.Fatalf("Content-Length over the batch limit = %d %s, want 413 before the body is sent", r.status, r.body)
		}
		if e := r.errBody(t); e.Error != api.CodeBatchTooLarge {
			t.Errorf("error = %q, want %q", e.Error, api.CodeBatchTooLarge)
		}
	})
	t.Run("nothing stored", func(t *testing.T) {
		if _, ok := ts.eng.Stats("q"); ok {
			t.Errorf("queue q exists after only failed batches")
		}
	})
	t.Run("limits accepted", func(t *testing.T) {
		exact := `{"messages":[` + strings.Repeat(`{"body":"x"},`, api.MaxBatchMessages-1) + `{"body":"` + strings.Repeat("y", 16) + `","ttl":315360000,"delay":0}]}`
		if ids := ts.postBatch("/api/queue/q/batch?sync=1", exact); len(ids) != api.MaxBatchMessages {
			t.Fatalf("%d ids for %d messages", len(ids), api.MaxBatchMessages)
		}
		if _, got, _ := ts.getBatch("/api/queue/q/batch?max=1000"); len(got.Messages) != api.MaxBatchMessages {
			t.Fatalf("max=1000 gave %d messages", len(got.Messages))
		}
	})
}

// A batch that would pass --max-queue-depth is refused whole.
func TestBatchAllOrNothingAtDepthCap(t *testing.T) {
	ts := start(t, func(s *setup) { s.eng.MaxQueueDepth = 4 })
	ts.post("/api/queue/full", "a")
	ts.post("/api/queue/full", "b")
	r := ts.do("POST", "/api/queue/full/batch", strings.NewReader(`{"messages":[{"body":"c"},{"body":"d"},{"body":"e"}]}`))
	if r.status != http.StatusTooManyRequests || r.errBody(t).Error != api.CodeQueueFull {
		t.Fatalf("batch past the depth cap = %d %s, want 429 QUEUE_FULL", r.status, r.body)
	}
	if st, _ := ts.eng.Stats("full"); st.Depth != 2 {
		t.Fatalf("depth %d after the refused batch, want 2 (nothing of it stored)", st.Depth)
	}
	ts.postBatch("/api/queue/full/batch", `{"messages":[{"body":"c"},{"body":"d"}]}`)
}

// An Idempotency-Key makes a retried POST answer 200 with the original id
// and store nothing; a bad key is a 400 that stores nothing either.
func TestIdempotencyKeyOverHTTP(t *testing.T) {
	ts := start(t)
	post := func(body string, hdr ...string) response {
		return ts.do("POST", "/api/queue/idem", strings.NewReader(body), hdr...)
	}
	r := post("charge 10 EUR", "Idempotency-Key", "order-7")
	if r.status != http.StatusCreated {
		t.Fatalf("first POST = %d %s", r.status, r.body)
	}
	id := r.header.Get("X-Message-Id")
	again := post("charge 10 EUR (retry)", "Idempotency-Key", "order-7")
	if again.status != http.StatusOK || again.header.Get("X-Message-Id") != id || string(again.body) != string(r.body) {
		t.Fatalf("retry = %d id %s %s, want 200 with id %s and the same body %s", again.status, again.header.Get("X-Message-Id"), again.body, id, r.body)
	}
	if other := post("another", "Idempotency-Key", "order-8"); other.status != http.StatusCreated || other.header.Get("X-Message-Id") == id {
		t.Fatalf("another key = %d id %s", other.status, other.header.Get("X-Message-Id"))
	}
	for _, bad := range [][]string{
		{"Idempotency-Key", strings.Repeat("k", 129)},
		{"Idempotency-Key", "tab\there"},
		{"Idempotency-Key", "ünï"},
	} {
		if r := post("x", bad...); r.status != 400 || r.errBody(t).Error != api.CodeInvalidKey {
			t.Errorf("key %q = %d %s, want 400 %s", bad[1], r.status, r.body, api.CodeInvalidKey)
		}
	}
	// An empty header value and a repeated header are refused too.
	if r := ts.raw("POST /api/queue/idem HTTP/1.1\r\nHost: x\r\nIdempotency-Key:\r\nContent-Length: 1\r\n\r\nx"); r.status != 400 {
		t.Errorf("empty key = %d %s, want 400", r.status, r.body)
	}
	if r := ts.raw("POST /api/queue/idem HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: 1\r\n\r\nx"); r.status != 400 {
		t.Errorf("two keys = %d %s, want 400", r.status, r.body)
	}
	if st, _ := ts.eng.Stats("idem"); st.Depth != 2 {
		t.Fatalf("depth %d, want 2 (order-7 once, order-8)", st.Depth)
	}
	if r := ts.do("GET", "/api/queue/idem", nil); string(r.body) != "charge 10 EUR" {
		t.Fatalf("GET = %q, want the first body", r.body)
	}

	// On a batch POST the key stands for the whole batch.
	b1 := ts.do("POST", "/api/queue/idem/batch", strings.NewReader(`{"messages":[{"body":"a"},{"body":"b"}]}`), "Idempotency-Key", "batch-9")
	b2 := ts.do("POST", "/api/queue/idem/batch", strings.NewReader(`{"messages":[{"body":"c"}]}`), "Idempotency-Key", "batch-9")
	if b1.status != http.StatusCreated || b2.status != http.StatusOK || string(b2.body) != string(b1.body) {
		t.Fatalf("batch then repeat = %d %s, %d %s; want 201 then 200 with the same ids", b1.status, b1.body, b2.status, b2.body)
	}
	if st, _ := ts.eng.Stats("idem"); st.Depth != 3 {
		t.Fatalf("depth %d after the keyed batches, want 3", st.Depth)
	}
}
