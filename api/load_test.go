package api_test

import (
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
// and each consumer must see increasing ids per queue.
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
