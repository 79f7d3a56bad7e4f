package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
	"github.com/mqueue/mqueue/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env returns a lookupEnv over a fixed map.
func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseServeFlagsDefaults(t *testing.T) {
	cfg, err := parseServeFlags(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := serveConfig{
		addr: ":8088", data: "./data", fsync: engine.FsyncAlways, fsyncInterval: 10 * time.Millisecond,
		segmentBytes: 16777216, segmentAge: 10 * time.Minute, maxMessageBytes: 1048576,
		drainGrace: 3 * time.Second, readHeaderTimeout: 5 * time.Second, logLevel: slog.LevelInfo,
		logFormat: "text", dedupWindow: 5 * time.Minute,
	}
	if cfg.addr != want.addr || cfg.data != want.data || cfg.fsync != want.fsync ||
		cfg.fsyncInterval != want.fsyncInterval || cfg.segmentBytes != want.segmentBytes ||
		cfg.segmentAge != want.segmentAge || cfg.maxMessageBytes != want.maxMessageBytes ||
		cfg.maxDiskBytes != 0 || cfg.maxQueueDepth != 0 || cfg.authToken != "" || cfg.metricsAuth ||
		cfg.tlsCert != "" || cfg.tlsKey != "" || cfg.drainGrace != want.drainGrace ||
		cfg.readHeaderTimeout != want.readHeaderTimeout || cfg.logLevel != want.logLevel ||
		cfg.logFormat != want.logFormat || cfg.pprof != "" || cfg.maxDeliveries != 0 ||
		cfg.dedupWindow != want.dedupWindow || cfg.maxMemoryBytes != 256<<20 {
		t.Errorf("defaults = %+v\nwant %+v", *cfg, want)
	}
}

func TestParseServeFlagsEnv(t *testing.T) {
	e := env(map[string]string{
		"MQUEUE_ADDR":                "127.0.0.1:9000",
		"MQUEUE_DATA":                "/var/lib/mq",
		"MQUEUE_FSYNC":               "interval",
		"MQUEUE_FSYNC_INTERVAL":      "50ms",
		"MQUEUE_SEGMENT_BYTES":       "1024",
		"MQUEUE_MAX_MESSAGE_BYTES":   "512",
		"MQUEUE_AUTH_TOKEN":          "tok",
		"MQUEUE_METRICS_AUTH":        "true",
		"MQUEUE_LOG_LEVEL":           "debug",
		"MQUEUE_READ_HEADER_TIMEOUT": "30s", // clamped to 10s
	})
	cfg, err := parseServeFlags([]string{"--addr", ":7000", "-fsync=never"}, e)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != ":7000" || cfg.fsync != engine.FsyncNever {
		t.Errorf("command line did not beat env: addr %q fsync %v", cfg.addr, cfg.fsync)
	}
	if cfg.data != "/var/lib/mq" || cfg.fsyncInterval != 50*time.Millisecond || cfg.segmentBytes != 1024 ||
		cfg.maxMessageBytes != 512 || cfg.authToken != "tok" || !cfg.metricsAuth || cfg.logLevel != slog.LevelDebug {
		t.Errorf("env not applied: %+v", *cfg)
	}
	if cfg.readHeaderTimeout != 10*time.Second || len(cfg.warnings) != 1 {
		t.Errorf("read-header-timeout = %v (warnings %q), want clamped to 10s with a warning", cfg.readHeaderTimeout, cfg.warnings)
	}
}

func TestParseServeFlagsInvalid(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // in the error
	}{
		{"unknown flag", []string{"--nope"}, nil, "nope"},
		{"fsync", []string{"--fsync=sometimes"}, nil, "fsync"},
		{"fsync from env", nil, map[string]string{"MQUEUE_FSYNC": "x"}, "fsync"},
		{"duration", []string{"--segment-age=10"}, nil, "segment-age"},
		{"duration from env", nil, map[string]string{"MQUEUE_DRAIN_GRACE": "soon"}, "MQUEUE_DRAIN_GRACE"},
		{"size text", []string{"--segment-bytes=16MiB"}, nil, "segment-bytes"},
		{"zero segment", []string{"--segment-bytes=0"}, nil, "segment-bytes"},
		{"negative disk", []string{"--max-disk-bytes=-1"}, nil, "max-disk-bytes"},
		{"zero memory", []string{"--max-memory-bytes=0"}, nil, "max-memory-bytes"},
		{"zero message", []string{"--max-message-bytes=0"}, nil, "max-message-bytes"},
		{"negative grace", []string{"--drain-grace=-1s"}, nil, "drain-grace"},
		{"zero header timeout", []string{"--read-header-timeout=0s"}, nil, "read-header-timeout"},
		{"bool from env", nil, map[string]string{"MQUEUE_METRICS_AUTH": "maybe"}, "MQUEUE_METRICS_AUTH"},
		{"log level", []string{"--log-level=loud"}, nil, "log-level"},
		{"log format", []string{"--log-format=xml"}, nil, "log-format"},
		{"cert without key", []string{"--tls-cert=c.pem"}, nil, "tls"},
		{"metrics auth without token", []string{"--metrics-auth"}, nil, "auth-token"},
		{"positional", []string{"extra"}, nil, "extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServeFlags(tt.args, env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestServeUsageListsEveryFlag(t *testing.T) {
	var buf bytes.Buffer
	printServeUsage(&buf)
	usage := buf.String()
	var cfg serveConfig
	var raw rawFlags
	fs := newServeFlags(&cfg, &raw)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		for _, want := range []string{"--" + f.Name, envName(f.Name), f.DefValue} {
			if !strings.Contains(usage, want) {
				t.Errorf("usage lacks %q for --%s", want, f.Name)
			}
		}
	})
	for _, name := range []string{"addr", "data", "fsync", "fsync-interval", "segment-bytes", "segment-age",
		"max-message-bytes", "max-disk-bytes", "max-queue-depth", "auth-token", "metrics-auth", "tls-cert",
		"tls-key", "drain-grace", "read-header-timeout", "log-level", "log-format", "pprof",
		"max-deliveries", "dedup-window", "max-memory-bytes"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s is missing", name)
		}
	}
	if envName("fsync-interval") != "MQUEUE_FSYNC_INTERVAL" {
		t.Errorf("envName(fsync-interval) = %q", envName("fsync-interval"))
	}
}

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "mqueue dev (go", ""},
		{[]string{"--version"}, 0, "mqueue dev", ""},
		{[]string{"help"}, 0, "mqueue dump", ""},
		{[]string{"--help"}, 0, "MQUEUE_ADDR", ""},
		{[]string{"serve", "-h"}, 0, "MQUEUE_FSYNC_INTERVAL", ""},
		{[]string{"bogus"}, 2, "", "unknown command"},
		{[]string{"--fsync=bad"}, 2, "", "fsync"},
		{[]string{"serve", "--segment-age=x"}, 2, "", "segment-age"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q",
					tt.args, code, out.String(), errOut.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// TestServeWiring runs serve() end to end: the listener, the engine, the
// metrics registry with the Go and process collectors, pprof on its own
// listener, a second process on the same data directory, and the drain.
func TestServeWiring(t *testing.T) {
	cfg, err := parseServeFlags([]string{
		"--addr", proctest.FreeAddr(t), "--pprof", proctest.FreeAddr(t), "--data", filepath.Join(t.TempDir(), "data"),
		"--drain-grace", "100ms", "--max-memory-bytes", "1000000",
	}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log) }()

	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	base := "http://" + cfg.addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get(base + "/readyz"); code == 200 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	resp, err := client.Post(base+"/api/queue/w", "application/octet-stream", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("POST = %d", resp.StatusCode)
	}
	code, body := get(base + "/metrics")
	// "hello" waits in the memory tail: 5 bytes and 64 of bookkeeping.
	for _, want := range []string{"go_goroutines", "process_", "mqueue_queue_depth{queue=\"w\"} 1", "mqueue_http_requests_total",
		"\nmqueue_memory_max_bytes 1e+06\n", "\nmqueue_memory_tail_bytes 69\n", "\nmqueue_memory_held_bytes 0\n"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}
	if code, _ := get("http://" + cfg.pprof + "/debug/pprof/"); code != 200 {
		t.Errorf("pprof listener = %d, want 200", code)
	}
	if code, _ := get(base + "/debug/pprof/"); code != 404 {
		t.Errorf("pprof on the public listener = %d, want 404", code)
	}

	// A second process on the same data directory fails at start and the
	// first one goes on serving.
	cfg2 := *cfg
	cfg2.addr, cfg2.pprof = proctest.FreeAddr(t), ""
	err = serve(ctx, &cfg2, log)
	if err == nil || !errors.Is(err, engine.ErrLocked) {
		t.Errorf("second serve on the same data directory = %v, want ErrLocked", err)
	}
	if code, _ := get(base + "/readyz"); code != 200 {
		t.Errorf("first process readyz after the second failed = %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after drain = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after the drain")
	}
}
