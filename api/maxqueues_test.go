package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mqueue/mqueue/api"
)

func TestTooManyQueues(t *testing.T) {
	ts := start(t, func(s *setup) { s.eng.MaxQueues = 2 })
	ts.post("/api/queue/a", "1")
	ts.post("/api/queue/b", "2")
	r := ts.do(http.MethodPost, "/api/queue/c", strings.NewReader("3"))
	if r.status != http.StatusTooManyRequests || r.errBody(t).Error != api.CodeTooManyQueues {
		t.Fatalf("POST to a new queue past --max-queues = %d %s, want 429 TOO_MANY_QUEUES", r.status, r.body)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("429 TOO_MANY_QUEUES without Retry-After")
	}
	r = ts.do(http.MethodPost, "/api/queue/c/batch", strings.NewReader(`{"messages":[{"body":"x"}]}`))
	if r.status != http.StatusTooManyRequests || r.errBody(t).Error != api.CodeTooManyQueues {
		t.Fatalf("batch POST to a new queue past --max-queues = %d %s, want 429 TOO_MANY_QUEUES", r.status, r.body)
	}
	// Existing queues keep working; an unknown one still reads as empty.
	if id := ts.post("/api/queue/a", "4"); id != 2 {
		t.Fatalf("POST to an existing queue: id %d, want 2", id)
	}
	if r := ts.do(http.MethodGet, "/api/queue/b", nil); r.status != http.StatusOK || string(r.body) != "2" {
		t.Fatalf("GET b = %d %q", r.status, r.body)
	}
	if r := ts.do(http.MethodGet, "/api/queue/c", nil); r.status != http.StatusNoContent {
		t.Fatalf("GET of the refused queue = %d %s, want 204", r.status, r.body)
	}
	if r := ts.do(http.MethodGet, "/api/stats/c", nil); r.status != http.StatusNotFound {
		t.Fatalf("stats of the refused queue = %d, want 404", r.status)
	}
}
