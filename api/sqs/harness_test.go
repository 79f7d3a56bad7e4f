package sqs_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.uber.org/goleak"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/api/sqs"
	"github.com/mqueue/mqueue/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Test credentials: a server started with them verifies signatures.
const (
	testKeyID  = "AKIDMQUEUETEST"
	testSecret = "mqueue-test-secret"
)

// testServer is a real api.Server with the SQS API on 127.0.0.1:0 over a
// real engine in a temporary directory.
type testServer struct {
	t    testing.TB
	url  string
	dir  string
	eng  *engine.Engine
	stop func()
}

// serverOpts adjust a test server.
type serverOpts struct {
	sqs       sqs.Config
	authToken string
	dir       string // reuse a data directory (a restart)
	fsync     engine.FsyncMode
}

type lockedWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p))
	}
	return len(p), nil
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	lw := &lockedWriter{t: t}
	t.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	log := slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir := o.dir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "data")
	}
	eng, err := engine.Open(engine.Options{Dir: dir, Logger: log, Fsync: o.fsync})
	if err != nil {
		t.Fatalf("engine.Open: %v", err)
	}
	sc := o.sqs
	srv, err := api.New(api.Config{Logger: log, SQS: &sc, AuthToken: o.authToken, ShutdownTimeout: 5 * time.Second}, eng, nil, nil)
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
	ts := &testServer{t: t, url: "http://" + ln.Addr().String(), dir: dir, eng: eng}
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if err := eng.Close(); err != nil {
				t.Errorf("engine.Close: %v", err)
			}
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

// client is an AWS SDK SQS client of ts, signing with the given secret,
// with retries off (so errors are seen as the server answered them) and
// the SDK's MD5 checksum validation left on.
func (ts *testServer) client(keyID, secret string) *awssqs.Client {
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 60 * time.Second}
	ts.t.Cleanup(hc.CloseIdleConnections)
	return awssqs.New(awssqs.Options{
		BaseEndpoint:     aws.String(ts.url),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider(keyID, secret, ""),
		RetryMaxAttempts: 1,
		HTTPClient:       hc,
	})
}

// sdk is a client with the test credentials.
func (ts *testServer) sdk() *awssqs.Client { return ts.client(testKeyID, testSecret) }

// ctx is a context for one SDK call.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// requireAll makes a missing prerequisite a failure rather than a skip.
var requireAll = os.Getenv("MQUEUE_TEST_REQUIRE_ALL") == "1"

// unavailable skips t with reason, or fails it when MQUEUE_TEST_REQUIRE_ALL=1.
func unavailable(t *testing.T, reason string) {
	t.Helper()
	if requireAll {
		t.Fatalf("%s (MQUEUE_TEST_REQUIRE_ALL=1, so this fails instead of skipping)", reason)
	}
	t.Skipf("skipping: %s (set MQUEUE_TEST_REQUIRE_ALL=1 to make this fail)", reason)
}
