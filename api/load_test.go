package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqueue/mqueue/engine"
)

// TestConcurrentLoadOverHTTP drives a real Server over loopback from many
// goroutines at once, so that `go test -race` (make test) sees the HTTP
// handlers, the group-commit loop, size and age rotation, compaction, long
// polls, stats and /metrics all running together. Every acknowledged
// message must be delivered exactly once, with the body it was sent with,
// and each consumer must see increasing ids per queue. Some producers POST
// batches and one consumer GETs batches, beside the single-message ones.
func TestConcurrentLoadOverHTTP(t *testing.T) {
	ts := start(t, func(s *setup) {
		s.eng.SegmentBytes = 4 << 10 // ~30 records per segment: many rotations
		s.eng.SegmentAge = 30 * time.Millisecond
		s.eng.CompactInterval = 10 * time.Millisecond
		s.eng.Fsync = engine.FsyncInterval
		s.eng.FsyncInterval = 2 * time.Millisecond
	})
	queues := []string{"load-a", "load-b"}
	const producers, perProducer, consumers = 8, 120, 4

	type sent struct{ queue, body string }
	var (
		mu     sync.Mutex
		acked  = map[string]sent{}   // "queue/id" -> what was acked
		got    = map[string]int{}    // "queue/id" -> deliveries
		bodies = map[string]string{} // "queue/id" -> body delivered
	)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p%4 == 3 {
				loadBatchProducer(t, ts, p, perProducer, queues, func(q string, id uint64, body string) {
					mu.Lock()
					acked[q+"/"+strconv.FormatUint(id, 10)] = sent{q, body}
					mu.Unlock()
				})
				return
			}
			for i := range perProducer {
				q := queues[(p+i)%len(queues)]
				body := fmt.Sprintf("producer-%d-message-%d-%s", p, i, strings.Repeat("x", i%50))
				path := "/api/queue/" + q
				if i%10 == 0 {
					path += "?sync=1"
				}
				r, err := ts.try(http.MethodPost, path, strings.NewReader(body))
				if err != nil || r.status != http.StatusCreated {
					t.Errorf("POST %s = %d %s %v", path, r.status, r.body, err)
					return
				}
				mu.Lock()
				acked[q+"/"+r.header.Get("X-Message-Id")] = sent{q, body}
				mu.Unlock()
			}
		}()
	}

	// Readers of stats and metrics run beside the load until it ends.
	stop := make(chan struct{})
	var side sync.WaitGroup
	for _, path := range []string{"/api/stats", "/api/stats/load-a", "/metrics"} {
		side.Add(1)
		go func() {
			defer side.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := ts.try(http.MethodGet, path, nil)
				if err != nil || (r.status != http.StatusOK && r.status != http.StatusNotFound) {
					t.Errorf("GET %s = %d %v", path, r.status, err)
					return
				}
			}
		}()
	}

	total := producers * perProducer
	var consumed sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for c := range consumers {
		consumed.Add(1)
		go func() {
			defer consumed.Done()
			last := map[string]uint64{}
			for i := 0; time.Now().Before(deadline); i++ {
				mu.Lock()
				done := len(got) >= total
				mu.Unlock()
				if done {
					return
				}
				q := queues[(c+i)%len(queues)]
				if c == consumers-1 {
					msgs, ok := loadBatchGet(t, ts, q)
					if !ok {
						return
					}
					for _, m := range msgs {
						if m.id <= last[q] {
							t.Errorf("batch consumer: %s id %d after %d", q, m.id, last[q])
						}
						last[q] = m.id
						key := q + "/" + strconv.FormatUint(m.id, 10)
						mu.Lock()
						got[key]++
						n := got[key]
						bodies[key] = m.body
						mu.Unlock()
						if n > 1 {
							t.Errorf("%s delivered %d times", key, n)
						}
					}
					continue
				}
				r, err := ts.try(http.MethodGet, "/api/queue/"+q+"?wait=1", nil)
				if err != nil {
					t.Errorf("GET %s: %v", q, err)
					return
				}
				if r.status == http.StatusNoContent {
					continue
				}
				if r.status != http.StatusOK {
					t.Errorf("GET %s = %d %s", q, r.status, r.body)
					return
				}
				id, err := strconv.ParseUint(r.header.Get("X-Message-Id"), 10, 64)
				if err != nil {
					t.Errorf("GET %s: X-Message-Id %q", q, r.header.Get("X-Message-Id"))
					return
				}
				if id <= last[q] {
					t.Errorf("consumer %d: %s id %d after %d", c, q, id, last[q])
				}
				last[q] = id
				key := q + "/" + strconv.FormatUint(id, 10)
				mu.Lock()
				got[key]++
				n := got[key]
				bodies[key] = string(r.body)
				mu.Unlock()
				if n > 1 {
					t.Errorf("%s delivered %d times", key, n)
				}
			}
		}()
	}
	wg.Wait()
	consumed.Wait()
	close(stop)
	side.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) != total {
		t.Fatalf("%d messages acked, want %d", len(acked), total)
	}
	for key, s := range acked {
		if got[key] != 1 {
			t.Errorf("acked %s (%q) delivered %d times", key, s.body, got[key])
		} else if bodies[key] != s.body {
			t.Errorf("%s delivered %q, acked %q", key, bodies[key], s.body)
		}
	}
	if len(got) != total {
		t.Errorf("%d distinct messages delivered, %d acked", len(got), total)
	}
	// The queues still work after the load, and are empty but for this.
	for _, q := range queues {
		id := ts.post("/api/queue/"+q, "last-"+q)
		r := ts.do(http.MethodGet, "/api/queue/"+q, nil)
		if r.status != http.StatusOK || string(r.body) != "last-"+q || r.header.Get("X-Message-Id") != strconv.FormatUint(id, 10) {
			t.Errorf("after the load, %s: GET = %d %q id %s, want 200 %q id %d", q, r.status, r.body, r.header.Get("X-Message-Id"), "last-"+q, id)
		}
	}
}

// loadBatchProducer POSTs n messages in batches of 5, alternating queues,
// every other batch with ?sync=1, and reports each acked id and body.
func loadBatchProducer(t *testing.T, ts *testServer, p, n int, queues []string, ack func(q string, id uint64, body string)) {
	for i := 0; i < n; i += 5 {
		q := queues[(p+i/5)%len(queues)]
		var bodies []string
		var req strings.Builder
		req.WriteString(`{"messages":[`)
		for j := range 5 {
			body := fmt.Sprintf("batch-producer-%d-message-%d", p, i+j)
			bodies = append(bodies, body)
			if j > 0 {
				req.WriteByte(',')
			}
			fmt.Fprintf(&req, `{"body":%q}`, body)
		}
		req.WriteString("]}")
		path := "/api/queue/" + q + "/batch"
		if (i/5)%2 == 0 {
			path += "?sync=1"
		}
		r, err := ts.try(http.MethodPost, path, strings.NewReader(req.String()))
		var out struct {
			IDs []uint64 `json:"ids"`
		}
		if err != nil || r.status != http.StatusCreated || json.Unmarshal(r.body, &out) != nil || len(out.IDs) != 5 {
			t.Errorf("POST %s = %d %s %v", path, r.status, r.body, err)
			return
		}
		for j, id := range out.IDs {
			if id != out.IDs[0]+uint64(j) {
				t.Errorf("batch ids %v not consecutive", out.IDs)
			}
			ack(q, id, bodies[j])
		}
	}
}

type loadMsg struct {
	id   uint64
	body string
}

// loadBatchGet GETs up to 7 messages of q with a batch long poll.
func loadBatchGet(t *testing.T, ts *testServer, q string) ([]loadMsg, bool) {
	r, err := ts.try(http.MethodGet, "/api/queue/"+q+"/batch?max=7&wait=1", nil)
	if err != nil {
		t.Errorf("GET %s batch: %v", q, err)
		return nil, false
	}
	switch r.status {
	case http.StatusNoContent:
		return nil, true
	case http.StatusOK:
	default:
		t.Errorf("GET %s batch = %d %s", q, r.status, r.body)
		return nil, false
	}
	var out struct {
		Messages []struct {
			ID   uint64 `json:"id"`
			Body string `json:"body"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.Messages) == 0 || len(out.Messages) > 7 {
		t.Errorf("GET %s batch body %q: %v", q, r.body, err)
		return nil, false
	}
	msgs := make([]loadMsg, len(out.Messages))
	for i, m := range out.Messages {
		msgs[i] = loadMsg{m.ID, m.Body}
	}
	return msgs, true
}
