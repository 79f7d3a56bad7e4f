package reliability

// Bad input at the binary level: hostile queue names, garbage headers and
// parameters, and slowloris connections. 0 panics, 0 5xx.

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// relRaw sends one raw request on a new connection and returns the status
// (0 when the server closed without a response).
func relRaw(addr, req string) int {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return -1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReliabilityHostileInput(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, LogDir: dir, Name: "server",
		Flags: []string{"--read-header-timeout", "2s", "--drain-grace", "100ms"}})
	host := s.Addr
	fivexx := map[string]int{}
	requests := 0
	net501 := 0
	note := func(what string, st int) {
		requests++
		if st == 501 && strings.Contains(what, "Transfer-Encoding") {
			net501++ // net/http itself, before any handler: RFC 9112 6.1
			return
		}
		if st >= 500 {
			fivexx[fmt.Sprintf("%s -> %d", what, st)]++
		}
	}

	// Hostile queue names: every valid name is a directory under the data
	// directory, so names the data directory already uses are the danger.
	// "LOCK" has its own test (TestReliabilityQueueNamedLOCK).
	names := []string{"lost+found", "..", ".", "a..", "a.", "-a", "_a", "A", strings.Repeat("z", 64),
		strings.Repeat("z", 65), "a%2Fb", "a%00b", "%2e%2e", "a/../b", "con", "nul", "cursor", "hwm",
		"00000000000000000001", "a b", "é", "a\\b", "data"}
	for _, n := range names {
		for _, m := range []string{"POST", "GET"} {
			req := fmt.Sprintf("%s /api/queue/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", m, n)
			note(m+" /api/queue/"+n, relRaw(host, req))
		}
		note("GET /api/stats/"+n, relRaw(host, fmt.Sprintf("GET /api/stats/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", n)))
	}

	// Garbage in every header and parameter, from a fixed seed.
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := func() string {
		pool := []string{"", "-1", "1e3", "%zz", ";", "18446744073709551616", "0x10", " 1", "1 ", "true", "\x7f",
			strings.Repeat("9", 300), "%00", "../../etc/passwd", "\xff\xfe", "NaN", "+5", "1,2", "=", "&&"}
		if rng.IntN(4) == 0 {
			b := make([]byte, rng.IntN(40))
			for i := range b {
				b[i] = byte(0x21 + rng.IntN(0x5e))
			}
			return string(b)
		}
		return pool[rng.IntN(len(pool))]
	}
	headers := []string{"Content-Length", "Transfer-Encoding", "Authorization", "Content-Type", "Host", "Expect",
		"Connection", "X-Forwarded-For", "Accept-Encoding", "Range", "If-None-Match", "Cookie"}
	paths := []string{"/api/queue/g", "/api/queue", "/api/stats", "/api/stats/g", "/metrics", "/healthz", "/readyz", "/nope"}
	for i := 0; i < 600; i++ {
		m := []string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"}[rng.IntN(8)]
		p := paths[rng.IntN(len(paths))]
		q := fmt.Sprintf("ttl=%s&wait=%s&sync=%s&%s=%s", garbage(), garbage(), garbage(), garbage(), garbage())
		q = strings.NewReplacer(" ", "%20", "\x7f", "%7f", "\xff", "%ff", "\xfe", "%fe").Replace(q)
		if rng.IntN(3) == 0 {
			q = strings.ReplaceAll(q, "wait=", "w=") // keep most requests short
		}
		h := headers[rng.IntN(len(headers))]
		v := strings.NewReplacer("\r", "", "\n", "").Replace(garbage())
		body := "x"
		req := fmt.Sprintf("%s %s?%s HTTP/1.1\r\nHost: x\r\n%s: %s\r\nContent-Length: 1\r\nConnection: close\r\n\r\n%s", m, p, q, h, v, body)
		if h == "Content-Length" || h == "Transfer-Encoding" || h == "Host" {
			req = fmt.Sprintf("%s %s?%s HTTP/1.1\r\nHost: x\r\n%s: %s\r\nConnection: close\r\n\r\n%s", m, p, q, h, v, body)
		}
		note(m+" "+p+" "+h, relRaw(host, req))
	}
	// A header block far over the limit.
	note("huge header", relRaw(host, "GET /healthz HTTP/1.1\r\nHost: x\r\nX: "+strings.Repeat("a", 200<<10)+"\r\n\r\n"))

	// Slowloris: 100 connections send half a header and stop; meanwhile
	// other requests are served; the server drops the slow ones within the
	// header timeout (2 s) plus slack.
	const slow = 100
	var conns []net.Conn
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_, _ = io.WriteString(c, "POST /api/queue/slow HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	}
	slowStart := time.Now()
	client := proctest.Client(t)
	served, maxLat := 0, time.Duration(0)
	for i := 0; i < 50; i++ {
		st := time.Now()
		resp, err := client.Post(s.Base+"/api/queue/fast", "text/plain", strings.NewReader("m"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 201 {
				served++
			}
		}
		maxLat = max(maxLat, time.Since(st))
	}
	client.CloseIdleConnections()
	var wg sync.WaitGroup
	var mu sync.Mutex
	released, maxRelease := 0, time.Duration(0)
	for _, c := range conns {
		wg.Go(func() {
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(6 * time.Second))
			_, err := io.Copy(io.Discard, c) // returns when the server closes
			mu.Lock()
			defer mu.Unlock()
			if err == nil || !strings.Contains(err.Error(), "timeout") {
				released++
				maxRelease = max(maxRelease, time.Since(slowStart))
			}
		})
	}
	wg.Wait()

	if !s.Alive() {
		t.Fatalf("the server died; log:\n%s", s.LogTail())
	}
	for _, l := range proctest.LogPanics(s.LogText()) {
		t.Errorf("server log: %s", l)
	}
	n5 := 0
	for k, v := range fivexx {
		n5 += v
		t.Errorf("5xx: %s (%d times)", k, v)
	}
	if served != 50 {
		t.Errorf("only %d of 50 requests served while %d slowloris connections were open", served, slow)
	}
	if released != slow || maxRelease > 4*time.Second {
		t.Errorf("slowloris: %d of %d connections released, the last after %v (header timeout 2s)", released, slow, maxRelease)
	}
	if _, err := s.Term(proctest.ExitLimit); err != nil {
		t.Error(err)
	}
	t.Logf("figures: hostile-input requests=%d 5xx=%d (besides %d x 501 from net/http for an unknown Transfer-Encoding) panics=%d; slowloris: %d half-sent headers, %d released within %v (header timeout 2s), other requests served %d/50 (max latency %v)",
		requests, n5, net501, len(proctest.LogPanics(s.LogText())), slow, released, maxRelease.Round(time.Millisecond), served, maxLat.Round(time.Millisecond))
}

// TestReliabilityQueueNamedLOCK: "LOCK" is a valid queue name, and the data
// directory's lock file has that name. A POST to it must not be a 5xx.
func TestReliabilityQueueNamedLOCK(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	dir := t.TempDir()
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: filepath.Join(dir, "data"), LogDir: dir, Name: "server",
		Flags: []string{"--drain-grace", "100ms"}})
	post := relRaw(s.Addr, "POST /api/queue/LOCK HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx")
	get := relRaw(s.Addr, "GET /api/queue/LOCK HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	t.Logf("figures: queue named LOCK: POST %d, GET %d", post, get)
	if post >= 500 || get >= 500 {
		t.Errorf("queue LOCK: POST = %d, GET = %d; the queue directory would be the data directory's lock file; log:\n%s", post, get, s.LogTail())
	}
	if _, err := s.Term(proctest.ExitLimit); err != nil {
		t.Error(err)
	}
}
