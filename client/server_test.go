package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// quietWriter forwards to the test's output until the test ends.
type quietWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *quietWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

// startServer serves a real engine in t.TempDir() on 127.0.0.1:0 and
// returns its base URL; mod adjusts the configuration first.
func startServer(t testing.TB, mod func(*api.Config, *engine.Options)) string {
	t.Helper()
	w := &quietWriter{w: t.Output()}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := api.Config{Logger: log, ShutdownTimeout: 5 * time.Second}
	opts := engine.Options{Dir: filepath.Join(t.TempDir(), "data"), Logger: log}
	if mod != nil {
		mod(&cfg, &opts)
	}
	reg := prometheus.NewRegistry()
	opts.Metrics = metrics.NewEngine(reg)
	eng, err := engine.Open(opts)
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	srv, err := api.New(cfg, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil && err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
		if err := eng.Close(); err != nil {
			t.Errorf("engine.Close: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// exampleBase is the server of the Example, started by TestMain.
var exampleBase string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqueue-client-example")
	if err != nil {
		panic(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	eng, err := engine.Open(engine.Options{Dir: dir, Logger: log, Metrics: metrics.NewEngine(reg)})
	if err != nil {
		panic(err)
	}
	srv, err := api.New(api.Config{Logger: log, ShutdownTimeout: 5 * time.Second}, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	exampleBase = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	code := m.Run()
	cancel()
	<-served
	_ = eng.Close()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
