package api_test

import (
	"bufio"
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
	"go.uber.org/goleak"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// setup is what a test may change before its server starts.
type setup struct {
	cfg      api.Config
	eng      engine.Options
	noEngine bool // start with a nil engine, as during recovery
}

// testServer is a real Server on 127.0.0.1:0 over a real engine in a
// t.TempDir(), with a client of its own.
type testServer struct {
	t       *testing.T
	base    string // http://127.0.0.1:port
	addr    string
	root    string // t.TempDir(); the data directory is root/data
	dataDir string
	srv     *api.Server
	reg     *prometheus.Registry
	eng     *engine.Engine
	client  *http.Client
	cancel  context.CancelFunc
	served  chan error

	stopOnce  sync.Once
	serveErr  error
	closeOnce sync.Once
}

// lockedWriter forwards to t.Output() until the test ends, so that a late
// log line cannot fail the test run.
type lockedWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func testLogger(t *testing.T) *slog.Logger {
	w := &lockedWriter{w: t.Output()}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start opens an engine and serves it; mods adjust the setup first.
func start(t *testing.T, mods ...func(*setup)) *testServer {
	t.Helper()
	log := testLogger(t)
	root := t.TempDir()
	st := setup{
		cfg: api.Config{Logger: log, DrainGrace: 0, ShutdownTimeout: 5 * time.Second},
		eng: engine.Options{Dir: filepath.Join(root, "data"), Logger: log},
	}
	for _, m := range mods {
		m(&st)
	}
	ts := &testServer{t: t, root: root, dataDir: st.eng.Dir, reg: prometheus.NewRegistry(), served: make(chan error, 1)}
	st.eng.Metrics = metrics.NewEngine(ts.reg)
	if !st.noEngine {
		eng, err := engine.Open(st.eng)
		if err != nil {
			t.Fatalf("engine.Open: %v", err)
		}
		ts.eng = eng
		metrics.RegisterQueues(ts.reg, api.QueueSampler(eng))
	}
	srv, err := api.New(st.cfg, ts.eng, ts.reg, metrics.NewHTTP(ts.reg))
	if err != nil {
		ts.closeEngine()
		t.Fatalf("api.New: %v", err)
	}
	ts.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.closeEngine()
		t.Fatalf("listen: %v", err)
	}
	ts.addr = ln.Addr().String()
	scheme := "http"
	if st.cfg.TLSCert != "" {
		scheme = "https"
	}
	ts.base = scheme + "://" + ts.addr
	ts.client = &http.Client{Transport: &http.Transport{}, Timeout: 40 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		if err := ts.stop(15 * time.Second); err != nil {
			t.Errorf("Serve: %v", err)
		}
		ts.closeEngine()
	})
	return ts
}

// stop cancels Serve's context and waits for the drain to finish.
func (ts *testServer) stop(limit time.Duration) error {
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case ts.serveErr = <-ts.served:
		case <-time.After(limit):
			ts.serveErr = fmt.Errorf("Serve did not return within %v", limit)
		}
		ts.client.CloseIdleConnections()
	})
	return ts.serveErr
}

func (ts *testServer) closeEngine() {
	ts.closeOnce.Do(func() {
		if ts.eng != nil {
			if err := ts.eng.Close(); err != nil {
				ts.t.Errorf("engine.Close: %v", err)
			}
		}
	})
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errBody decodes an error body, failing the test if it is not one.
func (r response) errBody(t *testing.T) api.ErrorBody {
	t.Helper()
	var e api.ErrorBody
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if e.Error == "" || e.Message == "" {
		t.Errorf("error body %q lacks error or message", r.body)
	}
	return e
}

// do sends one request; hdr is pairs of header name and value.
func (ts *testServer) do(method, path string, body io.Reader, hdr ...string) response {
	ts.t.Helper()
	r, err := ts.try(method, path, body, hdr...)
	if err != nil {
		ts.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (ts *testServer) try(method, path string, body io.Reader, hdr ...string) (response, error) {
	req, err := http.NewRequest(method, ts.base+path, body)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// post enqueues body and returns the id, failing unless the answer is 201.
func (ts *testServer) post(path, body string) uint64 {
	ts.t.Helper()
	r := ts.do(http.MethodPost, path, strings.NewReader(body))
	if r.status != http.StatusCreated {
		ts.t.Fatalf("POST %s = %d %s, want 201", path, r.status, r.body)
	}
	var out struct {
		Queue string `json:"queue"`
		ID    uint64 `json:"id"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		ts.t.Fatalf("POST %s body %q: %v", path, r.body, err)
	}
	return out.ID
}

// raw writes a request as bytes on a new connection and reads one response,
// so that paths reach the server exactly as written.
func (ts *testServer) raw(req string) response {
	ts.t.Helper()
	conn, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		ts.t.Fatalf("write request: %v", err)
	}
	return readResponse(ts.t, bufio.NewReader(conn))
}

func readResponse(t *testing.T, br *bufio.Reader) response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}
