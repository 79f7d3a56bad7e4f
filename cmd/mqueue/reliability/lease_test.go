package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// TestLeaseKill9 leases messages from a real server under load, acks about
// half of them, and SIGKILLs it while leases and acks are in flight. After
// the restart a drain with plain GETs must return every message that was
// not acked (those leased and left unacked with their delivery count
// raised) exactly once, and none whose ack was answered 204. Acks in
// flight at the kill may go either way. One message in each batch is
// delayed by 2 s: it must come once, never before its time, before or
// after the kill.
func TestLeaseKill9(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	for round := range 3 {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			leaseKill9Round(t, bin, int64(round))
		})
	}
}

func leaseKill9Round(t *testing.T, bin string, round int64) {
	dir := proctest.TempDir(t)
	cfg := proctest.Config{Bin: bin, Data: dir, LogDir: dir, Name: "server"}
	s, _ := proctest.StartReady(t, cfg)
	client := proctest.Client(t)
	const n = 3000
	const delay = 2 * time.Second
	// Fill with batch POSTs: bodies "m-<i>", and in each batch one
	// delayed by 2 s, "d-<i>", which must not come before its time.
	var all []string
	notBefore := map[string]time.Time{}
	for i := 0; i < n; i += 100 {
		var b strings.Builder
		b.WriteString(`{"messages":[`)
		for j := i; j < i+100; j++ {
			fmt.Fprintf(&b, `{"body":"m-%d"},`, j)
			all = append(all, fmt.Sprintf("m-%d", j))
		}
		d := fmt.Sprintf("d-%d", i)
		fmt.Fprintf(&b, `{"body":%q,"delay":%d}]}`, d, int(delay.Seconds()))
		all = append(all, d)
		notBefore[d] = time.Now().Add(delay)
		resp, err := client.Post(s.Base+"/api/queue/lq/batch", "application/json", strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("batch POST = %d", resp.StatusCode)
		}
	}

	var mu sync.Mutex
	acked := map[string]bool{}  // 204
	unsure := map[string]bool{} // ack sent, no answer
	leased := map[string]int{}  // answered lease, not acked: delivery count
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", s.Base+"/api/queue/lq?lease=600", nil)
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr != nil || resp.StatusCode != http.StatusOK {
					if resp.StatusCode == http.StatusNoContent {
						return
					}
					continue
				}
				m := string(body)
				if nb, ok := notBefore[m]; ok && time.Now().Before(nb) {
					t.Errorf("%s delivered %v before its delay ended", m, time.Until(nb))
				}
				count, _ := strconv.Atoi(resp.Header.Get("X-Delivery-Count"))
				receipt := resp.Header.Get("X-Receipt")
				if rng.IntN(2) == 0 {
					mu.Lock()
					leased[m] = count
					mu.Unlock()
					continue
				}
				mu.Lock()
				unsure[m] = true
				mu.Unlock()
				req, _ = http.NewRequestWithContext(ctx, "POST", s.Base+"/api/queue/lq/ack", nil)
				req.Header.Set("X-Receipt", receipt)
				resp, err = client.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case http.StatusNoContent:
					delete(unsure, m)
					acked[m] = true
				default:
					t.Errorf("ack of %s = %d", m, resp.StatusCode)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Duration(300+100*round) * time.Millisecond)
	s.Kill()
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 || len(leased) == 0 {
		t.Fatalf("the load did too little before the kill: %d acked, %d leased", len(acked), len(leased))
	}

	s, _ = proctest.StartReady(t, cfg)
	seen := map[string]int{}
	// Drain until every delay has ended (and a little more).
	var lastDue time.Time
	for _, nb := range notBefore {
		if nb.After(lastDue) {
			lastDue = nb
		}
	}
	for {
		resp, err := client.Get(s.Base + "/api/queue/lq/batch?max=1000")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			if time.Now().Before(lastDue.Add(300 * time.Millisecond)) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("drain = %d %s", resp.StatusCode, body)
		}
		var out struct {
			Messages []struct {
				Body          string `json:"body"`
				DeliveryCount int    `json:"delivery_count"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("drain body: %v", err)
		}
		for _, msg := range out.Messages {
			seen[msg.Body]++
			if nb, ok := notBefore[msg.Body]; ok && time.Now().Before(nb) {
				t.Errorf("%s delivered %v before its delay ended (after the restart)", msg.Body, time.Until(nb))
			}
			if want, ok := leased[msg.Body]; ok && msg.DeliveryCount <= want {
				t.Errorf("%s was leased (delivery %d) and not acked; delivered again with count %d, want more", msg.Body, want, msg.DeliveryCount)
			}
		}
	}
	lost, back, twice := 0, 0, 0
	for _, m := range all {
		switch {
		case seen[m] > 1:
			twice++
		case acked[m] && seen[m] > 0:
			back++
			t.Errorf("%s was acked (204) and came back after the kill", m)
		case !acked[m] && !unsure[m] && seen[m] == 0:
			lost++
			t.Errorf("%s was never acked and is gone after the kill", m)
		}
	}
	if twice > 0 {
		t.Errorf("%d messages delivered twice by the drain", twice)
	}
	delayedSeen := 0
	for d := range notBefore {
		delayedSeen += seen[d]
	}
	t.Logf("before the kill: %d acked, %d acks unanswered, %d leased and left; after: %d delivered (%d of the %d delayed), lost %d, acked-back %d, twice %d",
		len(acked), len(unsure), len(leased), len(seen), delayedSeen, len(notBefore), lost, back, twice)
}
