package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// The seed corpus runs with every `go test`; fuzz with
//
//	go test -run '^$' -fuzz FuzzQueryParams -fuzztime 30s ./api/
//
// New failing inputs land in testdata/fuzz/FuzzX/ and then run as seeds.

// FuzzQueryParams: the parsers of ?ttl, ?wait and ?sync accept exactly what
// the README says and never panic.
func FuzzQueryParams(f *testing.F) {
	for _, s := range []string{"ttl=60", "ttl=-1", "ttl=1e3", "ttl=%zz", "ttl=315360001", "wait=30", "wait=31",
		"sync=1", "sync=TRUE", "sync=yes", "ttl=1&ttl=2", "ttl=", "a;b", "ttl=+5", "ttl=18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // answered 400 INVALID_QUERY by queryParams
		}
		for _, p := range []struct {
			key string
			max uint64
		}{{"ttl", MaxTTLSeconds}, {"wait", MaxWaitSeconds}} {
			n, ok := uintParam(q, p.key, p.max)
			vs, present := q[p.key]
			switch {
			case !present && (!ok || n != 0):
				t.Fatalf("%s absent: %d %v", p.key, n, ok)
			case present && ok:
				m, err := strconv.ParseUint(vs[0], 10, 64)
				if err != nil || m != n || n > p.max {
					t.Fatalf("%s=%q accepted as %d", p.key, vs[0], n)
				}
			}
		}
		v, ok := boolParam(q, "sync")
		if vs, present := q["sync"]; present && ok {
			s := strings.ToLower(vs[0])
			if !(s == "0" || s == "1" || s == "true" || s == "false") || v != (s == "1" || s == "true") {
				t.Fatalf("sync=%q accepted as %v", vs[0], v)
			}
		}
	})
}

// FuzzHandler sends arbitrary methods, paths, queries, one header and a
// body through the whole router over a real engine: never a panic, never a
// 5xx.
func FuzzHandler(f *testing.F) {
	dir := f.TempDir()
	eng, err := engine.Open(engine.Options{Dir: dir, Fsync: engine.FsyncNever,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { eng.Close() })
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	for _, s := range []struct{ method, path, query, hk, hv, body string }{
		{"POST", "/api/queue/q", "ttl=5", "Content-Type", "text/plain", "hello"},
		{"GET", "/api/queue/q", "wait=1", "Authorization", "Bearer x", ""},
		{"POST", "/api/queue", "sync=1", "Content-Length", "5", "12345"},
		{"GET", "/api/stats/q", "", "X-Forwarded-For", "1.2.3.4", ""},
		{"GET", "/api/stats", "", "Accept", "*/*", ""},
		{"POST", "/api/queue/..", "", "", "", "x"},
		{"POST", "/api/queue/a%2Fb", "", "", "", "x"},
		{"DELETE", "/api/queue/q", "", "", "", ""},
		{"GET", "/metrics", "", "", "", ""},
		{"POST", "/api/queue/" + strings.Repeat("a", 65), "", "", "", "x"},
		{"POST", "/api/queue/q", "ttl=%zz", "", "", "x"},
		{"GET", "/healthz", "", "Connection", "close", ""},
	} {
		f.Add(s.method, s.path, s.query, s.hk, s.hv, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, path, query, hk, hv string, body []byte) {
		if method == "" || !fuzzToken(method) || !strings.HasPrefix(path, "/") {
			return // net/http refuses these before any handler runs
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond) // bounds ?wait=
		defer cancel()
		req := (&http.Request{
			Method:     method,
			URL:        &url.URL{Path: path, RawQuery: query},
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
			Header:     http.Header{},
			Host:       "example",
			Body:       io.NopCloser(strings.NewReader(string(body))),
			RequestURI: path,
		}).WithContext(ctx)
		req.ContentLength = int64(len(body))
		if hk != "" && fuzzToken(hk) && fuzzHeaderValue(hv) && !strings.EqualFold(hk, "Content-Length") {
			req.Header.Set(hk, hv)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s (%s: %q, %d bytes) = %d %s", method, path, query, hk, hv, len(body), w.Code, w.Body.String())
		}
	})
}

// fuzzToken reports whether s is an RFC 9110 token (a method or header name).
func fuzzToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// fuzzHeaderValue reports whether s can be sent as a header value.
func fuzzHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
