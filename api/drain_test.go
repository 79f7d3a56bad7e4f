package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
)

// waitFor polls cond every 10ms until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDrain follows SPEC's SIGTERM sequence: /readyz 503 at once while
// requests are still served for the grace; then the listener closes,
// requests still arriving on open connections get 503 SHUTTING_DOWN with
// Retry-After, long polls answer 204, in-flight requests finish, and Serve
// returns nil.
func TestDrain(t *testing.T) {
	const grace = 1500 * time.Millisecond
	ts := start(t, func(s *setup) { s.cfg.DrainGrace = grace })
	if r := ts.do("GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("readyz before the drain = %d", r.status)
	}

	// A long poll in flight when the drain starts.
	type result struct {
		r   response
		err error
		at  time.Duration
	}
	poll := make(chan result, 1)
	began := time.Now()
	go func() {
		r, err := ts.try("GET", "/api/queue/lp?wait=30", nil)
		poll <- result{r, err, time.Since(began)}
	}()
	time.Sleep(100 * time.Millisecond)

	// A connection that will send its request only after the grace, while
	// it is still open: it must get 503 SHUTTING_DOWN. Sending the first
	// bytes now makes it active, so Shutdown waits for it instead of closing
	// it as idle.
	late, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	_ = late.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(late, "POST /api/queue/late HTTP/1.1\r\nHost: x\r\n")

	// A request in flight across the end of the grace: its body comes in
	// slowly. It must finish with 201.
	slow, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	_ = slow.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(slow, "POST /api/queue/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nsl")

	drainStart := time.Now()
	served := make(chan error, 1)
	go func() { served <- ts.stop(15 * time.Second) }()

	waitFor(t, 500*time.Millisecond, "readyz 503", func() bool {
		return ts.do("GET", "/readyz", nil).status == 503
	})
	if r := ts.do("GET", "/healthz", nil); r.status != 200 {
		t.Errorf("healthz during the grace = %d, want 200", r.status)
	}
	r := ts.do("POST", "/api/queue/grace", strings.NewReader("still served"))
	if r.status != 201 {
		t.Errorf("POST during the grace = %d %s, want 201", r.status, r.body)
	}
	if el := time.Since(drainStart); el >= grace {
		t.Fatalf("grace checks took %v, longer than the grace; the test proves nothing", el)
	}

	// After the grace the listener closes: new connections are refused.
	waitFor(t, grace+2*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, 200*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if el := time.Since(drainStart); el < grace {
		t.Errorf("listener closed after %v, before the grace of %v", el, grace)
	}

	// The long poll was woken with 204, well before its 30 s.
	res := <-poll
	if res.err != nil || res.r.status != 204 {
		t.Errorf("long poll during the drain = %d, %v; want 204", res.r.status, res.err)
	}
	if res.at > grace+3*time.Second {
		t.Errorf("long poll answered after %v", res.at)
	}

	// The late request on the open connection.
	fmt.Fprintf(late, "Content-Length: 4\r\n\r\nlate")
	lr := readResponse(t, bufio.NewReader(late))
	if lr.status != 503 || lr.errBody(t).Error != api.CodeShuttingDown || lr.header.Get("Retry-After") == "" {
		t.Errorf("request after the grace = %d %s Retry-After %q, want 503 SHUTTING_DOWN with Retry-After",
			lr.status, lr.body, lr.header.Get("Retry-After"))
	}
	if _, err := io.ReadAll(late); err != nil {
		t.Errorf("connection after 503: %v, want it closed by the server", err)
	}

	// The in-flight request finishes normally.
	fmt.Fprintf(slow, "ow")
	sr := readResponse(t, bufio.NewReader(slow))
	if sr.status != 201 {
		t.Errorf("in-flight request = %d %s, want 201", sr.status, sr.body)
	}

	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, ok := ts.eng.Stats("late"); ok {
		t.Errorf("the request answered 503 was stored")
	}
	for _, q := range []string{"grace", "slow"} {
		if st, ok := ts.eng.Stats(q); !ok || st.Depth != 1 {
			t.Errorf("the request to %s answered 201 is not stored: %+v", q, st)
		}
	}
}

// TestNotReady: until SetEngine, /readyz is 503 and /api/* 503 NOT_READY
// while /healthz serves; a drain then needs no grace.
func TestNotReady(t *testing.T) {
	ts := start(t, func(s *setup) {
		s.noEngine = true
		s.cfg.DrainGrace = 10 * time.Second
	})
	if r := ts.do("GET", "/readyz", nil); r.status != 503 {
		t.Errorf("readyz without engine = %d, want 503", r.status)
	}
	if r := ts.do("GET", "/healthz", nil); r.status != 200 {
		t.Errorf("healthz without engine = %d, want 200", r.status)
	}
	for _, m := range []string{"GET", "POST"} {
		var body io.Reader
		if m == "POST" {
			body = strings.NewReader("x")
		}
		r := ts.do(m, "/api/queue/q", body)
		if r.status != 503 || r.errBody(t).Error != api.CodeNotReady || r.header.Get("Retry-After") == "" {
			t.Errorf("%s /api/queue/q without engine = %d %s, want 503 NOT_READY with Retry-After", m, r.status, r.body)
		}
	}
	if ts.srv.Ready() {
		t.Errorf("Ready() = true without engine")
	}
	begin := time.Now()
	if err := ts.stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(begin); el > 2*time.Second {
		t.Errorf("drain of a never-ready server took %v, want no grace", el)
	}
}

// TestSetEngine: the server turns ready when handed the engine.
func TestSetEngine(t *testing.T) {
	ts := start(t)
	srv, err := api.New(api.Config{Logger: testLogger(t)}, nil, ts.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Ready() {
		t.Fatal("Ready() before SetEngine")
	}
	srv.SetEngine(ts.eng)
	if !srv.Ready() {
		t.Fatal("not Ready() after SetEngine")
	}
}
