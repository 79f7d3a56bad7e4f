package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
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
		"sync=1", "sync=TRUE", "sync=yes", "ttl=1&ttl=2", "ttl=5&ttl=abc", "ttl=5&TTL=6", "x=1&x=1", "ttl&ttl", "ttl=", "a;b", "ttl=+5", "ttl=18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, problem := parseQuery(raw)
		if problem != "" {
			return // answered 400 INVALID_QUERY by queryParams
		}
		for k, vs := range q {
			if len(vs) != 1 {
				t.Fatalf("%q: parameter %q accepted with %d values", raw, k, len(vs))
			}
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
		{"POST", "/api/queue/q/batch", "sync=1", "Content-Type", "application/json", `{"messages":[{"body":"a"},{"body_base64":"/w==","ttl":5}]}`},
		{"GET", "/api/queue/q/batch", "max=10", "", "", ""},
		{"GET", "/api/queue/q", "lease=30", "", "", ""},
		{"POST", "/api/queue/q", "", "Idempotency-Key", "k1", "x"},
		{"POST", "/api/queue/q/ack", "", "X-Receipt", "r", ""},
		{"POST", "/api/queue/q", "ttl=5&ttl=abc", "", "", "x"},
		{"GET", "/api/stats", "a=1&a=2", "", "", ""},
		{"POST", "/api/queue/q/batch", "", "", "", `{"messages":[{"body":"a","body":"b"}]}`},
		{"POST", "/api/queue/q", "", "Content-Length", "1048576", "x"},
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

// FuzzBatch posts arbitrary batch bodies: never a panic or a 5xx,
// and a batch answered 201 comes back whole, in order and byte for byte
// from a batch GET.
func FuzzBatch(f *testing.F) {
	eng, err := engine.Open(engine.Options{Dir: f.TempDir(), Fsync: engine.FsyncNever,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { eng.Close() })
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxMessageBytes: 64}, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	for _, s := range []string{
		`{"messages":[{"body":"a"}]}`,
		`{"messages":[{"body":"\u00ff\ud800"},{"body_base64":"/w==","ttl":5,"delay":0}]}`,
		`{"messages":[{"body":"x","ttl":null}]}`,
		`{"messages":[{"body":""}]}`,
		`{"messages":[{"body":"x","delay":3}]}`,
		`{"messages":[{"body":"x"}],"messages":[{"body":"y"}]}`,
		`{"Messages":[{"BODY":"x"}]}`,
		`[]`, `null`, `{"messages":null}`, `{"messages":[{"body":"x"}]}}`,
		`{"messages":[{"body":"x","body":"y"}]}`, `{"messages":[{"body":"x","TTL":5}]}`,
		`{"messages":[{"body":"\ud800"}]}`, `{"messages":[{"body":"\udc00x"}]}`,
		`{"messages":[{"body":"\ud83d\ude00"}]}`, "{\"messages\":[{\"body\":\"\xff\"}]}",
		`{"messages":[{"body":"\u0041\n\/"}]}`, `{"messages":[{"body_base64":"\/w=="}]}`,
		`{"messages":[{"body":"x","ttl":{"a":1,"a":2}}]}`, `{"messages":[{"body":"x","ttl":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]}`,
		`{"messages":[{"body":null,"body_base64":"eA=="}]}`, ` {"messages" : [ {"body" : "x" , "ttl" : 0 } ] } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Start from an empty queue, so that a failure replays alone.
		const path = "/api/queue/fz/batch"
		if _, err := eng.DequeueBatch(context.Background(), "fz", MaxBatchMessages, 1<<30, 0); err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		req := httptest.NewRequest("POST", path, strings.NewReader(string(body)))
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("POST batch %q = %d %s", body, w.Code, w.Body.String())
		}
		if w.Code != http.StatusCreated {
			return
		}
		var sent struct {
			Messages []struct {
				Body       *string `json:"body"`
				BodyBase64 *string `json:"body_base64"`
				Delay      *uint64 `json:"delay"`
			} `json:"messages"`
		}
		var got struct {
			IDs []uint64 `json:"ids"`
		}
		if err := json.Unmarshal(body, &sent); err != nil || json.Unmarshal(w.Body.Bytes(), &got) != nil || len(got.IDs) != len(sent.Messages) {
			t.Fatalf("201 for %q: %s (%v)", body, w.Body.String(), err)
		}
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path+"?max=1000", nil))
		var back struct {
			Messages []struct {
				ID         uint64  `json:"id"`
				Body       *string `json:"body"`
				BodyBase64 *string `json:"body_base64"`
			} `json:"messages"`
		}
		// Delayed messages stay hidden; the others come back in order.
		var visible []int
		for i, m := range sent.Messages {
			if m.Delay == nil || *m.Delay == 0 {
				visible = append(visible, i)
			}
		}
		if len(visible) == 0 {
			return
		}
		if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &back) != nil || len(back.Messages) != len(visible) {
			t.Fatalf("GET batch after %q = %d %s", body, w.Code, w.Body.String())
		}
		for j, m := range back.Messages {
			i := visible[j]
			want := fuzzBatchBody(t, sent.Messages[i].Body, sent.Messages[i].BodyBase64)
			if m.ID != got.IDs[i] || !bytes.Equal(fuzzBatchBody(t, m.Body, m.BodyBase64), want) {
				t.Fatalf("message %d of %q came back as id %d %v/%v", i, body, m.ID, m.Body, m.BodyBase64)
			}
		}
	})
}

func fuzzBatchBody(t *testing.T, text, b64 *string) []byte {
	if text != nil {
		return []byte(*text)
	}
	b, err := base64.StdEncoding.DecodeString(*b64)
	if err != nil {
		t.Fatalf("bad base64 %q", *b64)
	}
	return b
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
