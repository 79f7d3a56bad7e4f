package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// TestPprofHidesAuthToken: with --auth-token on the command line, the
// --pprof listener must not show it (/debug/pprof/cmdline printed os.Args),
// and a token without --metrics-auth logs a warning that /metrics is open,
// without the token (SECURITY finding 7).
func TestPprofHidesAuthToken(t *testing.T) {
	const token = "s3cret-token-4f9a1c"
	bin := proctest.Build(t)
	dir := t.TempDir()
	pprofAddr := proctest.FreeAddr(t)
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: filepath.Join(dir, "data"), LogDir: dir, Name: "pprof",
		Flags: []string{"--auth-token", token, "--pprof", pprofAddr}})
	client := proctest.Client(t)
	for _, path := range []string{"/debug/pprof/cmdline", "/debug/pprof/", "/debug/pprof/cmdline?debug=1"} {
		resp, err := client.Get("http://" + pprofAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), token) {
			t.Errorf("pprof %s (%d) shows the auth token: %q", path, resp.StatusCode, b)
		}
	}
	// pprof itself still works.
	if resp, err := client.Get("http://" + pprofAddr + "/debug/pprof/goroutine?debug=1"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("pprof goroutine profile: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	log := s.LogText()
	if !strings.Contains(log, "--metrics-auth") || !strings.Contains(log, "level=WARN") {
		t.Errorf("no warning that /metrics is open with --auth-token; log:\n%s", s.LogTail())
	}
	if strings.Contains(log, token) {
		t.Errorf("the log shows the auth token:\n%s", s.LogTail())
	}
}

// TestMetricsAuthNoWarning: with --metrics-auth there is nothing to warn of.
func TestMetricsAuthNoWarning(t *testing.T) {
	cfg, err := parseServeFlags([]string{"--auth-token", "t", "--metrics-auth"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.warnings) != 0 {
		t.Errorf("warnings %q with --metrics-auth", cfg.warnings)
	}
	cfg, err = parseServeFlags([]string{"--auth-token", "t"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.warnings) != 1 || !strings.Contains(cfg.warnings[0], "/metrics") {
		t.Errorf("warnings %q without --metrics-auth, want one about /metrics", cfg.warnings)
	}
}

func TestHTTPLimitFlags(t *testing.T) {
	cfg, err := parseServeFlags(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.maxConnections != 4096 || cfg.maxInflightBytes != 256<<20 {
		t.Errorf("defaults: --max-connections %d --max-inflight-bytes %d", cfg.maxConnections, cfg.maxInflightBytes)
	}
	cfg, err = parseServeFlags(nil, env(map[string]string{"MQUEUE_MAX_CONNECTIONS": "0", "MQUEUE_MAX_INFLIGHT_BYTES": "0"}))
	if err != nil || cfg.maxConnections != 0 || cfg.maxInflightBytes != 0 || noLimit(cfg.maxConnections) >= 0 {
		t.Errorf("0 = no cap: %+v %v", cfg, err)
	}
	for _, args := range [][]string{
		{"--max-connections", "-1"},
		{"--max-inflight-bytes", "-5"},
		{"--max-inflight-bytes", "1048576"}, // below a 10 MiB batch
		{"--max-inflight-bytes", "20971520", "--max-message-bytes", "33554432"},
	} {
		if _, err := parseServeFlags(args, env(nil)); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// TestMaxConnectionsFlag: the real binary with --max-connections 2 serves a
// third connection only once one of the first two closes.
func TestMaxConnectionsFlag(t *testing.T) {
	bin := proctest.Build(t)
	dir := t.TempDir()
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: filepath.Join(dir, "data"), LogDir: dir, Name: "maxconn",
		Flags: []string{"--max-connections", "2"}})
	var open []net.Conn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReader(c)
	}
	status := func(c net.Conn, br *bufio.Reader) int {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The readiness poller's connections may still be closing: wait for
	// two served keep-alive connections.
	for range 2 {
		if c, br := dial(); status(c, br) != http.StatusOK {
			t.Fatal("healthz not 200")
		}
	}
	third, br := dial()
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was served while two were open")
	}
	_ = open[0].Close()
	if code := status(third, br); code != http.StatusOK {
		t.Fatalf("third connection after one closed = %d", code)
	}
}
