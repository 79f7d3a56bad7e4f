package main

// A flood of new queues against the real binary: the cap, the fds, the
// latency of a queue in use, and a clean restart.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// relFds counts the open file descriptors of a process.
func relFds(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("count fds of pid %d: %v", pid, err)
	}
	return len(ents)
}

// relRoundTrip POSTs one message to url and GETs one back, returning the
// time both took.
func relRoundTrip(t testing.TB, client *http.Client, url string) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := client.Post(url, "text/plain", strings.NewReader("ping"))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s = %d", url, resp.StatusCode)
	}
	resp, err = client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	return time.Since(start)
}

// relP50 is the median of n round trips.
func relP50(t testing.TB, client *http.Client, url string, n int) time.Duration {
	t.Helper()
	d := make([]time.Duration, n)
	for i := range d {
		d[i] = relRoundTrip(t, client, url)
	}
	slices.Sort(d)
	return d[n/2]
}

// TestQueueFlood creates queues up to --max-queues, one message each: past
// it a new queue is 429 TOO_MANY_QUEUES, a queue in use keeps being
// served, the process's fds stay bounded as idle queues close their files,
// and a restart finds every queue and every message, without opening them
// all at once, /healthz answering meanwhile.
func TestQueueFlood(t *testing.T) {
	proctest.Long(t)
	const maxQueues, maxOpen = 2000, 200
	bin := proctest.Build(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	flags := []string{"--max-queues", fmt.Sprint(maxQueues), "--max-open-queues", fmt.Sprint(maxOpen), "--idle-close", "200ms", "--drain-grace", "100ms"}
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-0"})
	pid := s.Cmd.Process.Pid
	client := proctest.Client(t)
	hot := s.Base + "/api/queue/hot"

	before := relP50(t, client, hot, 200)
	fdsBefore := relFds(t, pid)

	// The flood: 16 clients, each name once, past the cap.
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(relFds(t, pid)); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	const names = maxQueues + 200
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[string]int{}
	created := map[int]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= names {
					return
				}
				resp, err := client.Post(fmt.Sprintf("%s/api/queue/f%05d", s.Base, i), "text/plain", strings.NewReader(fmt.Sprint("m", i)))
				if err != nil {
					t.Errorf("POST f%05d: %v", i, err)
					return
				}
				var body struct {
					Error string `json:"error"`
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				_ = json.Unmarshal(b, &body)
				key := fmt.Sprint(resp.StatusCode, " ", body.Error)
				if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
					t.Errorf("429 without Retry-After")
				}
				mu.Lock()
				codes[key]++
				if resp.StatusCode == http.StatusCreated {
					created[i] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	atCap := relP50(t, client, hot, 200)
	// Idle queues close their files: the count comes back down.
	var settled int
	for deadline := time.Now().Add(30 * time.Second); ; {
		settled = relFds(t, pid)
		if settled < fdsBefore+50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stopSampling)
	<-sampled
	t.Logf("answers %v; fds: %d before, peak %d during the flood, %d settled", codes, fdsBefore, peak.Load(), settled)
	ratio := float64(atCap) / float64(before)
	t.Logf("p50 POST+GET of the queue in use: %v before, %v at the cap (%.2fx)", before, atCap, ratio)
	if want := maxQueues - 1; codes["201 "] != want || codes["429 TOO_MANY_QUEUES"] != names-want {
		t.Fatalf("answers %v, want %d × 201 then 429 TOO_MANY_QUEUES for the rest", codes, want)
	}
	if settled >= fdsBefore+50 {
		t.Errorf("fds: %d with %d idle queues, %d before the flood; idle queues keep their files open", settled, maxQueues, fdsBefore)
	}
	// 2-3 per open queue, the clients' connections, a margin.
	if limit := int64(fdsBefore + 3*maxOpen + 100); peak.Load() > limit {
		t.Errorf("fds peaked at %d during the flood, over %d (--max-open-queues %d)", peak.Load(), limit, maxOpen)
	}
	if ratio > 10 {
		t.Errorf("p50 at the cap is %.1fx the p50 before (%v, %v)", ratio, atCap, before)
	}
	if m := relMetricsSize(t, client, s.Base); m > 0 {
		t.Logf("/metrics: %d bytes with %d queues", m, maxQueues)
	}

	// A clean restart: /healthz answers while the queues are recovered, the
	// fds stay few, and every queue gives its message back.
	if _, err := s.Term(proctest.ExitLimit); err != nil {
		t.Fatalf("SIGTERM: %v; log:\n%s", err, s.LogTail())
	}
	client.CloseIdleConnections()
	s2 := proctest.Launch(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-1"})
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	healthy, notReady := 0, 0
	for deadline := time.Now().Add(proctest.ReadyLimit); ; {
		if resp, err := probe.Get(s2.Base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				healthy++
			}
		}
		resp, err := probe.Get(s2.Base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			notReady++
		}
		if !s2.Alive() || time.Now().After(deadline) {
			t.Fatalf("restart not ready within %v; log:\n%s", proctest.ReadyLimit, s2.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("restart: /healthz answered %d times while /readyz said 503 %d times; %s", healthy, notReady, time.Since(s2.Started).Round(time.Millisecond))
	if notReady > 0 && healthy < notReady {
		t.Errorf("/healthz answered %d of %d probes during start", healthy, notReady)
	}
	// A start leaves 64 queues open, 2 files each.
	if n := relFds(t, s2.Cmd.Process.Pid); n >= fdsBefore+2*64+50 {
		t.Errorf("%d fds after a start with %d queues", n, maxQueues)
	}
	if log := s2.LogText(); strings.Contains(log, "could not be recovered") {
		t.Fatalf("queues not recovered after the restart; log:\n%s", s2.LogTail())
	}
	resp, err := client.Get(s2.Base + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Queues []struct {
			Queue string `json:"queue"`
			Depth int64  `json:"depth"`
		} `json:"queues"`
	}
	err = json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	if err != nil || len(stats.Queues) != maxQueues {
		t.Fatalf("stats after restart: %d queues (%v), want %d", len(stats.Queues), err, maxQueues)
	}
	missing := 0
	for i := range names {
		resp, err := client.Get(fmt.Sprintf("%s/api/queue/f%05d", s2.Base, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want, wantCode := fmt.Sprint("m", i), http.StatusOK
		if !created[i] {
			want, wantCode = "", http.StatusNoContent
		}
		if resp.StatusCode != wantCode || string(b) != want {
			missing++
			if missing < 5 {
				t.Errorf("f%05d after restart = %d %q, want %d %q", i, resp.StatusCode, b, wantCode, want)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d queues did not give their message back after the restart", missing)
	}
	if n := relFds(t, s2.Cmd.Process.Pid); n > 4*maxQueues {
		t.Errorf("%d fds after reading every queue", n)
	}
	if _, err := s2.Term(proctest.ExitLimit); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}

// relMetricsSize returns the size of a /metrics scrape.
func relMetricsSize(t testing.TB, client *http.Client, base string) int {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return len(b)
}
