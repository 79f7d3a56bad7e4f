package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// TestReliabilityRepeatedFailureLogsStayBounded removes the data directory
// under a serving process, so that every POST fails (each one tries to
// create its queue's directory), and checks that every POST is refused with
// a 5xx, that the process keeps serving, and that the log holds at most
// logBurst lines per second of the repeated error, with the dropped ones
// counted in a later line.
func TestReliabilityRepeatedFailureLogsStayBounded(t *testing.T) {
	bin := proctest.Build(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, LogDir: dir, Name: "server"})
	client := proctest.Client(t)
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	post := func() int {
		resp, err := client.Post(s.Base+"/api/queue/gone", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const n = 300
	start := time.Now()
	statuses := map[int]int{}
	for range n {
		statuses[post()]++
	}
	elapsed := time.Since(start)
	time.Sleep(logWindow + 100*time.Millisecond)
	statuses[post()]++ // a new window: its line carries the count
	if statuses[http.StatusInternalServerError] != n+1 {
		t.Fatalf("statuses %v, want %d x 500", statuses, n+1)
	}
	resp, err := client.Get(s.Base + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the failures: %v %v", resp, err)
	}
	resp.Body.Close()

	log := s.LogText()
	lines := strings.Count(log, `msg="write failed"`)
	windows := int(elapsed/logWindow) + 2 // the burst's windows, and the last POST's
	suppressed := strings.Contains(log, "suppressed=")
	t.Logf("figures: %d failing POSTs in %v: %d log lines of the error (at most %d per %v), dropped ones counted: %v",
		n+1, elapsed.Round(time.Millisecond), lines, logBurst, logWindow, suppressed)
	if lines == 0 || lines > logBurst*windows {
		t.Errorf("%d lines of the repeated error for %d requests over %d windows; want 1..%d", lines, n+1, windows, logBurst*windows)
	}
	if !suppressed {
		t.Errorf("no line reports the dropped ones:\n%s", lastLines(log, 5))
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n") + fmt.Sprintf("\n(%d lines in all)", len(l))
}
