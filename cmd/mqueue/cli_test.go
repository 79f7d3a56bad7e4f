package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/client"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// cliServer serves a real engine in t.TempDir() on loopback; token "" means
// no auth.
func cliServer(t *testing.T, token string) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	eng, err := engine.Open(engine.Options{Dir: filepath.Join(t.TempDir(), "data"), Logger: log, Metrics: metrics.NewEngine(reg)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Logger: log, AuthToken: token, ShutdownTimeout: 5 * time.Second}, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		cancel()
		<-served
		_ = eng.Close()
	})
	return "http://" + ln.Addr().String()
}

// cli runs one client subcommand through run's dispatch path.
func cli(t *testing.T, base, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := cliEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return map[string]string{"MQUEUE_URL": base}[k] }}
	code := runCLI(args[0], args[1:], env)
	return code, out.String(), errOut.String()
}

func TestCLIRoundTrip(t *testing.T) {
	base := cliServer(t, "")
	check := func(wantCode int, wantOut string, stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := cli(t, base, stdin, args...)
		if code != wantCode || !strings.Contains(out, wantOut) {
			t.Fatalf("%v: code %d out %q err %q; want %d and %q", args, code, out, errOut, wantCode, wantOut)
		}
		return out
	}
	check(0, "1\n", "", "put", "jobs", "hello")
	check(0, "2\n", "from stdin", "put", "jobs", "-", "--ttl", "60s")
	check(0, "3\n", "", "put", "--key", "k1", "jobs", "third")
	check(0, "3\n", "", "put", "--key", "k1", "jobs", "again") // deduplicated
	out := check(0, "ID", "", "peek", "jobs", "--max", "10")
	if !strings.Contains(out, "hello") || !strings.Contains(out, "from stdin") || strings.Contains(out, "again") {
		t.Fatalf("peek table:\n%s", out)
	}
	check(0, "hello", "", "get", "jobs")
	out = check(0, `"receipt"`, "", "get", "jobs", "--lease", "30s", "--json")
	var got struct {
		Messages []struct {
			ID      uint64
			Body    string
			Receipt string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Messages) != 1 || got.Messages[0].Body != "from stdin" {
		t.Fatalf("get --json = %q, %v", out, err)
	}
	check(0, "", "", "nack", "jobs", got.Messages[0].Receipt)
	out = check(0, `"receipt"`, "", "get", "jobs", "--lease", "30s", "--max", "5", "--json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Messages) != 2 {
		t.Fatalf("get --max 5 = %q, %v", out, err)
	}
	check(0, "", "", "ack", "jobs", got.Messages[0].Receipt)
	check(1, "", "", "ack", "jobs", got.Messages[0].Receipt) // 410 LEASE_EXPIRED
	check(0, "", "", "ack", "jobs", got.Messages[1].Receipt)
	check(3, "", "", "get", "jobs") // empty
	check(0, "jobs", "", "stats", "jobs")
	out = check(0, `"enqueued_total":3`, "", "stats", "jobs", "--json")
	check(3, "", "", "stats", "nope")
	check(0, "jobs", "", "queues")
	check(0, "", "", "put", "jobs", "x")
	check(2, "", "", "purge", "jobs") // no --yes
	check(0, "1\n", "", "purge", "jobs", "--yes")
	check(0, "", "", "put", "jobs.dlq", "dead")
	check(0, "1\n", "", "redrive", "jobs.dlq")
	check(1, "", "", "redrive", "jobs")
	check(0, "", "", "delete", "jobs", "--yes")
	check(3, "", "", "delete", "jobs", "--yes")
	check(2, "", "", "put")
	check(2, "", "", "get", "--bogus", "jobs")
	_ = out
}

func TestCLIAuthAndDispatch(t *testing.T) {
	base := cliServer(t, "s3cret")
	if code, _, errOut := cli(t, base, "", "queues"); code != 1 || !strings.Contains(errOut, "UNAUTHORIZED") {
		t.Fatalf("no token: %d %q", code, errOut)
	}
	if code, _, _ := cli(t, base, "", "put", "--token", "s3cret", "q", "x"); code != 0 {
		t.Fatalf("with token: %d", code)
	}
	var out bytes.Buffer
	if code := run([]string{"help"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "Exit codes: 0 ok") {
		t.Fatalf("help: %d %q", code, out.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestCLITail(t *testing.T) {
	base := cliServer(t, "")
	if code, _, _ := cli(t, base, "", "put", "q", "old"); code != 0 {
		t.Fatal("put")
	}
	var out syncBuffer
	env := cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: io.Discard,
		getenv: func(k string) string { return map[string]string{"MQUEUE_URL": base}[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- tailForTest(ctx, env, base) }()
	// Wait until tail has read the stats (it starts after the newest).
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		cli(t, base, "", "put", "q", "new")
		if strings.Contains(out.String(), "\tnew") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail exit %d", code)
	}
	s := out.String()
	if strings.Contains(s, "old") || !strings.Contains(s, "\tnew") {
		t.Fatalf("tail printed %q", s)
	}
	// Ids strictly increase: each message printed once.
	var last uint64
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		var id uint64
		var body string
		if _, err := fmtSscan(line, &id, &body); err != nil || id <= last {
			t.Fatalf("tail line %q after id %d", line, last)
		}
		last = id
	}
	// tail took nothing.
	if code, out, _ := cli(t, base, "", "get", "q"); code != 0 || out != "old" {
		t.Fatalf("get after tail = %d %q", code, out)
	}
}

func fmtSscan(line string, id *uint64, body *string) (int, error) {
	return fmt.Sscan(line, id, body)
}

// tailForTest runs tail with a short interval until ctx ends.
func tailForTest(ctx context.Context, env cliEnv, base string) int {
	return tail(ctx, client.New(base), "q", 20*time.Millisecond, false, env)
}
