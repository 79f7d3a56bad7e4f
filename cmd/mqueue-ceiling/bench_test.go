package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// BenchmarkCeilingEnqueue is api's BenchmarkHandlerEnqueue against the
// ceiling: the same request through the handler, without the network, so
// the difference in allocs/op is what mqueue's middleware and engine add.
func BenchmarkCeilingEnqueue(b *testing.B) {
	h := newRouter(false, nil)
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

// BenchmarkCeilingDequeue is api's BenchmarkHandlerDequeue against the ceiling.
func BenchmarkCeilingDequeue(b *testing.B) {
	h := newRouter(false, nil)
	b.SetBytes(int64(len(getBody)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/api/queue/bench", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET = %d %s", rec.Code, rec.Body)
		}
	}
}

func TestCeilingShapes(t *testing.T) {
	h := newRouter(false, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/queue/orders", bytes.NewReader([]byte("x"))))
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"queue":"orders","id":1}` || rec.Header().Get("X-Message-Id") != "1" {
		t.Errorf("POST = %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/queue", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() != 100 || rec.Header().Get("X-Message-Id") != "2" ||
		rec.Header().Get("X-Enqueued-At") == "" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("GET = %d %d bytes %v", rec.Code, rec.Body.Len(), rec.Header())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/queue/-bad", bytes.NewReader([]byte("x"))))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("bad name = %d", rec.Code)
	}
}

// TestHandoffBatchesAndAnswersEveryRequest checks the --handoff shape: 64
// concurrent POSTs each get a distinct id 1..64, answered through batches.
func TestHandoffBatchesAndAnswersEveryRequest(t *testing.T) {
	postConcurrently(t, newRouter(true, nil), 64)
}

// TestHandoffFsyncWritesEveryBatch checks --handoff-fsync: every answered
// POST put recordBytes into the preallocated file, which did not grow.
func TestHandoffFsyncWritesEveryBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "batches")
	disk, err := openBatchFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.f.Close()
	const n = 64
	postConcurrently(t, newRouter(true, disk), n)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != batchFileBytes {
		t.Fatalf("file is %d bytes, want the preallocated %d", len(data), batchFileBytes)
	}
	written := bytes.Count(data, []byte{'m'})
	if written != n*recordBytes || bytes.IndexByte(data, 0) != written {
		t.Fatalf("file holds %d written bytes (first zero at %d), want %d from the start", written, bytes.IndexByte(data, 0), n*recordBytes)
	}
}

// postConcurrently sends n concurrent POSTs and checks that each got a
// distinct id 1..n.
func postConcurrently(t *testing.T, h http.Handler, n int) {
	t.Helper()
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/queue/q", bytes.NewReader([]byte("x"))))
			if rec.Code != http.StatusCreated {
				t.Errorf("POST = %d %s", rec.Code, rec.Body)
			}
			ids <- rec.Header().Get("X-Message-Id")
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %s answered twice", id)
		}
		seen[id] = true
	}
	for i := 1; i <= n; i++ {
		if !seen[strconv.Itoa(i)] {
			t.Fatalf("id %d never answered; got %v", i, seen)
		}
	}
}
