package api_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

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
	const conns, declared = 500, 1 << 20
	before := heapInuse()
	holdConns(t, ts.addr, "/api/queue/slow", conns, declared)
	waitInFlight(t, ts.srv, conns)
	time.Sleep(200 * time.Millisecond) // let every handler reach its read
	grew := int64(heapInuse()) - int64(before)
	t.Logf("heap in use grew by %.1f MiB holding %d requests that declared %d bytes and sent 1", float64(grew)/(1<<20), conns, declared)
	if limit := int64(64 << 20); grew > limit {
		t.Errorf("heap grew by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}
	_ = strings.TrimSpace
}
