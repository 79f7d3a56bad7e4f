package api_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mqueue/mqueue/api"
)

// heapInuse is the live heap after a GC.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// waitInFlight waits until srv handles at least n requests.
func waitInFlight(t *testing.T, srv *api.Server, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for api.InFlightRequests(srv) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in flight after 30s, want %d", api.InFlightRequests(srv), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// holdConns opens n connections that each declare a body of declared bytes
// and send only its first byte, then leaves them open.
func holdConns(t *testing.T, addr, path string, n, declared int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nx", path, declared)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	return conns
}

// TestSlowBodiesHoldLittleMemory: 500 connections that each declare a 1 MiB
// message and send one byte must not make the server hold 500 MiB; its heap
// follows the bytes that arrived (SECURITY finding 3).
func TestSlowBodiesHoldLittleMemory(t *testing.T) {
	ts := start(t)
	const n, declared = 500, 1 << 20
	before := heapInuse()
	conns := holdConns(t, ts.addr, "/api/queue/slow", n, declared)
	waitInFlight(t, ts.srv, n)
	time.Sleep(200 * time.Millisecond) // let every handler reach its read
	grew := int64(heapInuse()) - int64(before)
	t.Logf("heap in use grew by %.1f MiB holding %d requests that declared %d bytes and sent 1", float64(grew)/(1<<20), n, declared)
	if limit := int64(64 << 20); grew > limit {
		t.Errorf("heap grew by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}

	// The held requests still complete once their bytes come: finish two
	// (one big, one in a single write) and read their messages back.
	for i, c := range conns[:2] {
		rest := strings.Repeat(string(rune('a'+i)), declared-1)
		if _, err := io.WriteString(c, rest); err != nil {
			t.Fatalf("write the rest: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if r := readResponse(t, bufio.NewReader(c)); r.status != http.StatusCreated {
			t.Fatalf("finished request = %d %s", r.status, r.body)
		}
	}
	for i := range 2 {
		r := ts.do(http.MethodGet, "/api/queue/slow", nil)
		want := "x" + strings.Repeat(string(rune('a'+i)), declared-1)
		if r.status != http.StatusOK || string(r.body) != want {
			t.Fatalf("GET = %d, %d bytes; want the %d bytes sent", r.status, len(r.body), len(want))
		}
	}
}

// TestSlowBodiesHTTP2: over HTTP/2 one connection carries many requests, so
// the stream cap and the chunked reads must bound it: 250 streams on one
// connection that each declare 1 MiB and send 1 byte get at most
// MaxConcurrentStreams handlers and little memory. The client is a bare
// framer, so that the heap measured is the server's.
func TestSlowBodiesHTTP2(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	ts := start(t, func(s *setup) { s.cfg.TLSCert, s.cfg.TLSKey = certFile, keyFile })
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	// Read (and ack) what the server sends until the connection closes.
	readDone := make(chan struct{})
	var wmu sync.Mutex
	go func() {
		defer close(readDone)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				wmu.Lock()
				_ = fr.WriteSettingsAck()
				wmu.Unlock()
			}
		}
	}()
	defer func() { _ = conn.Close(); <-readDone }()

	const n, declared = 250, 1 << 20
	before := heapInuse()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	wmu.Lock()
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := uint32(2*i + 1)
		hbuf.Reset()
		for _, hf := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", ts.addr},
			{":path", "/api/queue/h2"}, {"content-length", strconv.Itoa(declared)}} {
			_ = enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteData(id, false, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	wmu.Unlock()
	waitInFlight(t, ts.srv, api.MaxConcurrentStreams)
	time.Sleep(300 * time.Millisecond) // more streams would be in by now
	if got := api.InFlightRequests(ts.srv); got != api.MaxConcurrentStreams {
		t.Errorf("%d requests in flight on one HTTP/2 connection, want the stream cap %d", got, api.MaxConcurrentStreams)
	}
	grew := int64(heapInuse()) - int64(before)
	t.Logf("heap in use grew by %.1f MiB with %d HTTP/2 streams (%d in flight) that declared %d bytes and sent 1",
		float64(grew)/(1<<20), n, api.InFlightRequests(ts.srv), declared)
	if limit := int64(64 << 20); grew > limit {
		t.Errorf("heap grew by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}
}

// TestInflightBytesBudget: once the bodies being received hold
// MaxInflightBytes, a request is answered 503 OVERLOADED with Retry-After,
// and the budget comes back when the holder's request ends.
func TestInflightBytesBudget(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.MaxInflightBytes = 256 << 10 })
	// A holder declares 1 MiB and sends 200 KiB: 224 KiB of chunks.
	holder := holdConns(t, ts.addr, "/api/queue/b", 1, 1<<20)[0]
	if _, err := io.WriteString(holder, strings.Repeat("h", 200<<10-1)); err != nil {
		t.Fatal(err)
	}
	waitInFlight(t, ts.srv, 1)
	big := strings.Repeat("m", 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	var r response
	for {
		// Until the holder's bytes are read in, the POST may still fit.
		r = ts.do(http.MethodPost, "/api/queue/b", strings.NewReader(big))
		if r.status != http.StatusCreated || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeOverloaded || r.header.Get("Retry-After") != "1" {
		t.Fatalf("POST past the budget = %d %q Retry-After %q, want 503 OVERLOADED with Retry-After: 1", r.status, r.body, r.header.Get("Retry-After"))
	}
	for _, path := range []string{"/api/queue/b/batch"} {
		body := `{"messages":[{"body":"` + big + `"}]}`
		if r := ts.do(http.MethodPost, path, strings.NewReader(body)); r.status != http.StatusServiceUnavailable || r.errBody(t).Error != api.CodeOverloaded {
			t.Errorf("POST %s past the budget = %d %s, want 503 OVERLOADED", path, r.status, r.body)
		}
	}
	// A small message still fits beside the holder.
	ts.post("/api/queue/b", "small")
	_ = holder.Close()
	deadline = time.Now().Add(10 * time.Second)
	for {
		r = ts.do(http.MethodPost, "/api/queue/b", strings.NewReader(big))
		if r.status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST after the holder left = %d %s, want 201 once its bytes are released", r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Nothing of the refused requests was stored: "small" then big.
	if r := ts.do(http.MethodGet, "/api/queue/b", nil); string(r.body) != "small" {
		t.Errorf("first message = %q, want small", r.body)
	}
	if r := ts.do(http.MethodGet, "/api/queue/b", nil); len(r.body) != len(big) {
		t.Errorf("second message has %d bytes, want %d", len(r.body), len(big))
	}
	if r := ts.do(http.MethodGet, "/api/queue/b", nil); r.status != http.StatusNoContent {
		t.Errorf("third GET = %d, want 204", r.status)
	}
}

// TestMaxConnections: past MaxConnections a new connection is not served
// until one closes.
func TestMaxConnections(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.MaxConnections = 2 })
	req := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	var open []net.Conn
	defer func() {
		for _, c := range open {
			_ = c.Close()
		}
	}()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", ts.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		return c, bufio.NewReader(c)
	}
	for range 2 {
		c, br := dial()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if r := readResponse(t, br); r.status != http.StatusOK {
			t.Fatalf("healthz = %d", r.status)
		}
	}
	third, br := dial()
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was served while two were open")
	}
	_ = open[0].Close()
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r := readResponse(t, br); r.status != http.StatusOK {
		t.Fatalf("third connection after one closed = %d", r.status)
	}
}
