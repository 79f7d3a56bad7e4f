package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
)

type listBody struct {
	Queues []struct {
		Name     string `json:"name"`
		Depth    int64  `json:"depth"`
		InFlight int64  `json:"in_flight"`
		Delayed  int64  `json:"delayed"`
	} `json:"queues"`
	Next *string `json:"next"`
}

func (ts *testServer) list(path string) listBody {
	ts.t.Helper()
	r := ts.do("GET", path, nil)
	var out listBody
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		ts.t.Fatalf("GET %s = %d %s", path, r.status, r.body)
	}
	return out
}

func (lb listBody) names() string {
	var n []string
	for _, q := range lb.Queues {
		n = append(n, fmt.Sprintf("%s:%d:%d:%d", q.Name, q.Depth, q.InFlight, q.Delayed))
	}
	return strings.Join(n, " ")
}

// GET /api/queues lists queues by name with their counts, a page at a
// time, and refuses bad parameters with stable codes.
func TestListQueuesOverHTTP(t *testing.T) {
	ts := start(t)
	if got := ts.list("/api/queues"); len(got.Queues) != 0 || got.Next != nil {
		t.Fatalf("empty engine lists %+v", got)
	}
	for _, q := range []string{"c", "a", "b", "a", "a"} {
		ts.post("/api/queue/"+q, "x")
	}
	ts.do("GET", "/api/queue/a?lease=60", nil)
	ts.do("GET", "/api/queue/b", nil) // b is empty
	ts.do("POST", "/api/queue/b?delay=60", strings.NewReader("later"))
	ts.do("GET", "/api/queue/b", nil) // passes the delayed one: held

	if got := ts.list("/api/queues"); got.names() != "a:2:1:0 b:0:0:1 c:1:0:0" || got.Next != nil {
		t.Fatalf("list = %s next %v", got.names(), got.Next)
	}
	p1 := ts.list("/api/queues?limit=2")
	if p1.names() != "a:2:1:0 b:0:0:1" || p1.Next == nil || *p1.Next != "b" {
		t.Fatalf("page 1 = %s next %v", p1.names(), p1.Next)
	}
	p2 := ts.list("/api/queues?limit=2&after=" + *p1.Next)
	if p2.names() != "c:1:0:0" || p2.Next != nil {
		t.Fatalf("page 2 = %s next %v", p2.names(), p2.Next)
	}
	for _, tt := range []struct{ query, code string }{
		{"limit=0", api.CodeInvalidLimit},
		{"limit=1001", api.CodeInvalidLimit},
		{"limit=-1", api.CodeInvalidLimit},
		{"limit=x", api.CodeInvalidLimit},
		{"limit=", api.CodeInvalidLimit},
		{"after=-a", api.CodeInvalidAfter},
		{"after=", api.CodeInvalidAfter},
		{"after=%zz", api.CodeInvalidQuery},
	} {
		r := ts.do("GET", "/api/queues?"+tt.query, nil)
		if r.status != 400 || r.errBody(t).Error != tt.code {
			t.Errorf("GET /api/queues?%s = %d %s, want 400 %s", tt.query, r.status, r.body, tt.code)
		}
	}
}

// DELETE removes the queue, its files and its metric series; a long poll
// on it returns 204; the name then starts a fresh queue at id 1, also
// after a restart of the engine.
func TestDeleteQueueOverHTTP(t *testing.T) {
	var armed atomic.Bool
	polling := make(chan struct{}, 1)
	ts := start(t, func(s *setup) {
		s.eng.CompactInterval = time.Hour // no clock reads but the poll's
		s.eng.Now = func() time.Time {
			if armed.CompareAndSwap(true, false) {
				polling <- struct{}{} // the long poll is in the engine
			}
			return time.Now()
		}
	})
	for range 3 {
		ts.post("/api/queue/gone", "x")
	}
	ts.post("/api/queue/kept", "y")
	ts.post("/api/queue/idle", "z")
	ts.do("GET", "/api/queue/idle", nil)
	if m := ts.do("GET", "/metrics", nil); !strings.Contains(string(m.body), `mqueue_queue_depth{queue="gone"} 3`) {
		t.Fatalf("no depth series for the queue before the delete")
	}
	polled := make(chan response, 1)
	armed.Store(true)
	go func() {
		r, _ := ts.try("GET", "/api/queue/idle?wait=30", nil)
		polled <- r
	}()
	<-polling
	if r := ts.do("DELETE", "/api/queue/idle", nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE idle = %d %s", r.status, r.body)
	}
	select {
	case r := <-polled:
		if r.status != http.StatusNoContent {
			t.Fatalf("long poll on a deleted queue = %d %s, want 204", r.status, r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long poll not answered 20 s after its queue was deleted")
	}

	if r := ts.do("DELETE", "/api/queue/gone", nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE = %d %s, want 204", r.status, r.body)
	}
	if r := ts.do("DELETE", "/api/queue/gone", nil); r.status != 404 || r.errBody(t).Error != api.CodeQueueNotFound {
		t.Fatalf("second DELETE = %d %s, want 404 QUEUE_NOT_FOUND", r.status, r.body)
	}
	if r := ts.do("DELETE", "/api/queue/-bad", nil); r.status != 400 || r.errBody(t).Error != api.CodeInvalidQueueName {
		t.Fatalf("DELETE bad name = %d %s", r.status, r.body)
	}
	if r := ts.do("GET", "/api/stats/gone", nil); r.status != 404 {
		t.Fatalf("stats after delete = %d", r.status)
	}
	if _, err := os.Stat(filepath.Join(ts.dataDir, "gone")); !os.IsNotExist(err) {
		t.Fatalf("queue directory after delete: %v", err)
	}
	m := string(ts.do("GET", "/metrics", nil).body)
	if strings.Contains(m, `queue="gone"`) || !strings.Contains(m, `mqueue_queue_depth{queue="kept"} 1`) {
		t.Fatalf("metrics after delete:\n%s", grepLines(m, "queue="))
	}
	if !strings.Contains(m, `mqueue_http_requests_total{code="204",method="DELETE",route="/api/queue/:name"} 2`) {
		t.Errorf("no HTTP metric of the DELETE route:\n%s", grepLines(m, "DELETE"))
	}
	if id := ts.post("/api/queue/gone", "fresh"); id != 1 {
		t.Fatalf("first id after delete = %d, want 1", id)
	}
	if r := ts.do("GET", "/api/queue/gone", nil); string(r.body) != "fresh" {
		t.Fatalf("GET after re-create = %d %q", r.status, r.body)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// Purge answers how many messages it removed, held ones included; none
// comes back; later ones are delivered; the counter is exported.
func TestPurgeOverHTTP(t *testing.T) {
	ts := start(t)
	for range 4 {
		ts.post("/api/queue/p", "old")
	}
	lr := ts.do("GET", "/api/queue/p?lease=60", nil)
	r := ts.do("POST", "/api/queue/p/purge", nil)
	if r.status != 200 || string(r.body) != `{"purged":4}` {
		t.Fatalf("purge = %d %s", r.status, r.body)
	}
	if a := ts.do("POST", "/api/queue/p/ack", nil, "X-Receipt", lr.header.Get("X-Receipt")); a.status != http.StatusGone {
		t.Fatalf("ack of a purged lease = %d %s, want 410", a.status, a.body)
	}
	if g := ts.do("GET", "/api/queue/p", nil); g.status != http.StatusNoContent {
		t.Fatalf("GET after purge = %d %q", g.status, g.body)
	}
	id := ts.post("/api/queue/p", "new")
	if id != 5 {
		t.Fatalf("id after purge = %d, want 5", id)
	}
	if g := ts.do("GET", "/api/queue/p", nil); string(g.body) != "new" {
		t.Fatalf("GET = %q, want new", g.body)
	}
	if r := ts.do("POST", "/api/queue/none/purge", nil); r.status != 404 || r.errBody(t).Error != api.CodeQueueNotFound {
		t.Fatalf("purge unknown = %d %s", r.status, r.body)
	}
	var st struct {
		Purged uint64 `json:"purged_total"`
	}
	if json.Unmarshal(ts.do("GET", "/api/stats/p", nil).body, &st); st.Purged != 4 {
		t.Fatalf("purged_total = %d", st.Purged)
	}
	if m := ts.do("GET", "/metrics", nil); !strings.Contains(string(m.body), `mqueue_messages_purged_total{queue="p"} 4`) {
		t.Fatalf("metrics:\n%s", grepLines(string(m.body), "purged"))
	}
}

type peekBody struct {
	Messages []struct {
		ID             uint64  `json:"id"`
		Body           *string `json:"body"`
		BodyBase64     *string `json:"body_base64"`
		EnqueuedAt     int64   `json:"enqueued_at"`
		ExpiresAt      int64   `json:"expires_at"`
		DeliveryCount  int     `json:"delivery_count"`
		State          string  `json:"state"`
		VisibleAt      int64   `json:"visible_at"`
		LeaseExpiresAt int64   `json:"lease_expires_at"`
	} `json:"messages"`
	Next uint64 `json:"next"`
}

// Peek shows messages with their state without taking them: a GET
// afterwards gets the same first message, and the stats do not move.
func TestPeekOverHTTP(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/k?ttl=600", "one")
	ts.do("POST", "/api/queue/k", strings.NewReader("\xff\x00bin"))
	ts.do("POST", "/api/queue/k?delay=60", strings.NewReader("later"))
	ts.post("/api/queue/k", "four")
	lr := ts.do("GET", "/api/queue/k?lease=60", nil) // "one" in flight
	before := ts.do("GET", "/api/stats/k", nil).body

	r := ts.do("GET", "/api/queue/k/peek", nil)
	var pb peekBody
	if r.status != 200 || json.Unmarshal(r.body, &pb) != nil || len(pb.Messages) != 4 || pb.Next != 0 {
		t.Fatalf("peek = %d %s", r.status, r.body)
	}
	m := pb.Messages
	if m[0].State != "in_flight" || *m[0].Body != "one" || m[0].DeliveryCount != 1 || m[0].ExpiresAt == 0 ||
		fmt.Sprint(m[0].LeaseExpiresAt) != lr.header.Get("X-Lease-Expires-At") {
		t.Errorf("in-flight message: %+v", m[0])
	}
	if m[1].State != "visible" || m[1].Body != nil || m[1].BodyBase64 == nil || *m[1].BodyBase64 != "/wBiaW4=" || m[1].DeliveryCount != 0 {
		t.Errorf("binary message: %+v", m[1])
	}
	if m[2].State != "delayed" || m[2].VisibleAt < m[2].EnqueuedAt+60000 {
		t.Errorf("delayed message: %+v", m[2])
	}
	if m[3].State != "visible" || *m[3].Body != "four" || m[3].ID != 4 {
		t.Errorf("last message: %+v", m[3])
	}
	r = ts.do("GET", "/api/queue/k/peek?max=1&from=2", nil)
	if json.Unmarshal(r.body, &pb) != nil || len(pb.Messages) != 1 || pb.Messages[0].ID != 2 || pb.Next != 3 {
		t.Fatalf("peek max=1 from=2 = %s", r.body)
	}
	if after := ts.do("GET", "/api/stats/k", nil).body; string(before) != string(after) {
		t.Fatalf("peek changed the stats:\n%s\n%s", before, after)
	}
	if g := ts.do("GET", "/api/queue/k", nil); g.header.Get("X-Message-Id") != "2" {
		t.Fatalf("GET after peek took %s, want 2", g.header.Get("X-Message-Id"))
	}
	for _, tt := range []struct{ path, code string }{
		{"/api/queue/k/peek?max=0", api.CodeInvalidMax},
		{"/api/queue/k/peek?max=1001", api.CodeInvalidMax},
		{"/api/queue/k/peek?max=x", api.CodeInvalidMax},
		{"/api/queue/k/peek?from=0", api.CodeInvalidFrom},
		{"/api/queue/k/peek?from=-1", api.CodeInvalidFrom},
		{"/api/queue/k/peek?from=", api.CodeInvalidFrom},
		{"/api/queue/-k/peek", api.CodeInvalidQueueName},
	} {
		r := ts.do("GET", tt.path, nil)
		if r.status != 400 || r.errBody(t).Error != tt.code {
			t.Errorf("GET %s = %d %s, want 400 %s", tt.path, r.status, r.body, tt.code)
		}
	}
	if r := ts.do("GET", "/api/queue/none/peek", nil); r.status != 404 || r.errBody(t).Error != api.CodeQueueNotFound {
		t.Fatalf("peek unknown = %d %s", r.status, r.body)
	}
}

// Redrive moves a DLQ's messages back in order, keeps their expiry,
// refuses a name without .dlq, and counts them.
func TestRedriveOverHTTP(t *testing.T) {
	ts := start(t)
	ts.post("/api/queue/jobs.dlq?ttl=600", "d1")
	ts.post("/api/queue/jobs.dlq", "d2")
	ts.post("/api/queue/jobs.dlq", "d3")
	var pb peekBody
	json.Unmarshal(ts.do("GET", "/api/queue/jobs.dlq/peek", nil).body, &pb)
	expires := pb.Messages[0].ExpiresAt

	for _, tt := range []struct {
		path   string
		status int
		code   string
	}{
		{"/api/queue/jobs/redrive", 400, api.CodeNotDLQ},
		{"/api/queue/jobs.dlq/redrive?max=0", 400, api.CodeInvalidMax},
		{"/api/queue/jobs.dlq/redrive?max=100001", 400, api.CodeInvalidMax},
		{"/api/queue/jobs.dlq/redrive?max=x", 400, api.CodeInvalidMax},
		{"/api/queue/none.dlq/redrive", 404, api.CodeQueueNotFound},
	} {
		r := ts.do("POST", tt.path, nil)
		if r.status != tt.status || r.errBody(t).Error != tt.code {
			t.Errorf("POST %s = %d %s, want %d %s", tt.path, r.status, r.body, tt.status, tt.code)
		}
	}
	if r := ts.do("POST", "/api/queue/jobs.dlq/redrive?max=1", nil); r.status != 200 || string(r.body) != `{"redriven":1}` {
		t.Fatalf("redrive max=1 = %d %s", r.status, r.body)
	}
	if r := ts.do("POST", "/api/queue/jobs.dlq/redrive", nil); r.status != 200 || string(r.body) != `{"redriven":2}` {
		t.Fatalf("redrive = %d %s", r.status, r.body)
	}
	json.Unmarshal(ts.do("GET", "/api/queue/jobs/peek", nil).body, &pb)
	var got []string
	for _, m := range pb.Messages {
		got = append(got, *m.Body)
	}
	if strings.Join(got, " ") != "d1 d2 d3" || pb.Messages[0].ExpiresAt < expires-1000 || pb.Messages[0].ExpiresAt > expires+1000 || pb.Messages[1].ExpiresAt != 0 {
		t.Fatalf("source after redrive: %s (expiry was %d)", got, expires)
	}
	if g := ts.do("GET", "/api/queue/jobs.dlq", nil); g.status != http.StatusNoContent {
		t.Fatalf("DLQ after redrive = %d %q", g.status, g.body)
	}
	if m := ts.do("GET", "/metrics", nil); !strings.Contains(string(m.body), `mqueue_messages_redriven_total{queue="jobs.dlq"} 3`) {
		t.Fatalf("metrics:\n%s", grepLines(string(m.body), "redriven"))
	}
}

// Every administration route is behind the token.
func TestAdminRoutesNeedToken(t *testing.T) {
	const token = "s3cret-admin-token"
	ts := start(t, func(s *setup) { s.cfg.AuthToken = token })
	ts.do("POST", "/api/queue/a.dlq", strings.NewReader("x"), "Authorization", "Bearer "+token)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/api/queues"},
		{"DELETE", "/api/queue/a.dlq"},
		{"POST", "/api/queue/a.dlq/purge"},
		{"GET", "/api/queue/a.dlq/peek"},
		{"POST", "/api/queue/a.dlq/redrive"},
	} {
		if r := ts.do(rt.method, rt.path, nil); r.status != 401 || r.errBody(t).Error != api.CodeUnauthorized {
			t.Errorf("%s %s without token = %d %s, want 401", rt.method, rt.path, r.status, r.body)
		}
	}
	if st, ok := ts.eng.Stats("a.dlq"); !ok || st.Depth != 1 {
		t.Fatalf("a refused admin request changed the queue: %+v %v", st, ok)
	}
	if r := ts.do("GET", "/api/queues", nil, "Authorization", "Bearer "+token); r.status != 200 {
		t.Fatalf("with token = %d %s", r.status, r.body)
	}
}
