package api_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// benchServer serves a real engine (fsync=never, so that the numbers are
// the HTTP layer's and the write path's, not the disk's) through Handler.
func benchServer(b *testing.B) *api.Server {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	eng, err := engine.Open(engine.Options{Dir: filepath.Join(b.TempDir(), "data"), Fsync: engine.FsyncNever, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close() })
	srv, err := api.New(api.Config{Logger: log}, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		b.Fatal(err)
	}
	return srv
}

// BenchmarkHandlerEnqueue measures POST /api/queue/{name} in the handler,
// without the network, with a 256-byte message and a Content-Length.
func BenchmarkHandlerEnqueue(b *testing.B) {
	h := benchServer(b).Handler()
	body := bytes.Repeat([]byte("m"), 256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/queue/bench", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("POST = %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkHandlerDequeue measures GET /api/queue/{name} of a 256-byte
// message in the handler, without the network.
func BenchmarkHandlerDequeue(b *testing.B) {
	h := benchServer(b).Handler()
	body := bytes.Repeat([]byte("m"), 256)
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/api/queue/bench", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("POST = %d %s", rec.Code, rec.Body)
		}
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodGet, "/api/queue/bench", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET = %d %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkHandlerBatchEnqueue measures POST /api/queue/{name}/batch of 100
// text messages of 256 bytes each (with a ttl on every other one) in the
// handler, without the network: the JSON checks and decoding dominate.
func BenchmarkHandlerBatchEnqueue(b *testing.B) {
	h := benchServer(b).Handler()
	var body bytes.Buffer
	body.WriteString(`{"messages":[`)
	for i := range 100 {
		if i > 0 {
			body.WriteByte(',')
		}
		body.WriteString(`{"body":"`)
		body.Write(bytes.Repeat([]byte("m"), 256))
		body.WriteByte('"')
		if i%2 == 0 {
			body.WriteString(`,"ttl":60`)
		}
		body.WriteByte('}')
	}
	body.WriteString(`]}`)
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/queue/bench/batch", bytes.NewReader(body.Bytes()))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("POST batch = %d %s", rec.Code, rec.Body)
		}
	}
}
