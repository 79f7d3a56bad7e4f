package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

func newTestServer(t *testing.T) (*Server, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, reg, metrics.NewHTTP(reg))
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func TestRecoverPanic(t *testing.T) {
	s, reg := newTestServer(t)
	s.router.GET("/panic", func(c *gin.Context) { panic("boom") })
	s.router.GET("/panic-after-write", func(c *gin.Context) {
		c.String(200, "partial")
		panic("late boom")
	})

	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/panic", nil))
	if rec.Code != 500 {
		t.Fatalf("status = %d, want 500", rec.Code)
	}
	var e ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != CodeInternal {
		t.Errorf("body %q (%v), want INTERNAL", rec.Body, err)
	}

	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/panic-after-write", nil))
	if rec.Code != 200 || rec.Body.String() != "partial" {
		t.Errorf("panic after write = %d %q, want the written 200 left alone", rec.Code, rec.Body)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "mqueue_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == "/panic" && labels["code"] == "500" {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("the panic was not counted as a 500 on route /panic")
	}
}

func TestRecoverAbortHandler(t *testing.T) {
	s, _ := newTestServer(t)
	s.router.GET("/abort", func(c *gin.Context) { panic(http.ErrAbortHandler) })
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler re-panicked", v)
		}
	}()
	s.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/abort", nil))
}

func TestEngineErrorMapping(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{fmt.Errorf("q: %w", engine.ErrInvalidQueueName), 400, CodeInvalidQueueName, false},
		{engine.ErrEmptyMessage, 400, CodeEmptyMessage, false},
		{fmt.Errorf("q: %w", engine.ErrQueueFull), 429, CodeQueueFull, true},
		{fmt.Errorf("q: %w", engine.ErrTooManyQueues), 429, CodeTooManyQueues, true},
		{fmt.Errorf("write /data/q/0001: %w", engine.ErrDiskFull), 507, CodeDiskFull, false},
		{engine.ErrClosed, 503, CodeShuttingDown, true},
		{fmt.Errorf("segment 3: %w", engine.ErrWrite), 500, CodeWriteFailed, false},
		{errors.New("something else"), 500, CodeInternal, false},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			s, _ := newTestServer(t)
			rec := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(rec)
			c.Request = httptest.NewRequest("POST", "/api/queue/q", nil)
			s.engineError(c, "enqueue", "q", tt.err)
			c.Writer.WriteHeaderNow()
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			var e ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error != tt.code {
				t.Errorf("body %q, want code %s", rec.Body, tt.code)
			}
			if strings.Contains(e.Message, "/data/") || strings.Contains(e.Message, "segment") {
				t.Errorf("message %q leaks internals", e.Message)
			}
			if got := rec.Header().Get("Retry-After") != ""; got != tt.retryAfter {
				t.Errorf("Retry-After present = %v, want %v", got, tt.retryAfter)
			}
		})
	}

	t.Run("client gone", func(t *testing.T) {
		s, _ := newTestServer(t)
		rec := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(rec)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c.Request = httptest.NewRequest("POST", "/api/queue/q", nil).WithContext(ctx)
		s.engineError(c, "enqueue", "q", fmt.Errorf("wait: %w", context.Canceled))
		c.Writer.WriteHeaderNow()
		if rec.Code != statusClientClosed {
			t.Errorf("status = %d, want %d", rec.Code, statusClientClosed)
		}
	})
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in   string
		tok  string
		good bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc", "abc", true},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"Basic abc", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		tok, ok := bearerToken(tt.in)
		if tok != tt.tok || ok != tt.good {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.in, tok, ok, tt.tok, tt.good)
		}
	}
}
