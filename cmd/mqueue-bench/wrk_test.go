package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const wrkOutput = `Running 5s test @ http://127.0.0.1:40123/api/queue/bench
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    1.02ms  31.90ms   88.12%
    Req/Sec    19.42k     1.31k   22.07k    70.00%
  Latency Distribution
     50%  812.00us
     75%    2.89ms
     90%    3.60ms
     99%    1.02s
  193296 requests in 5.01s, 30.23MB read
  Non-2xx or 3xx responses: 17
  Socket errors: connect 0, read 2, write 0, timeout 5
Requests/sec:  38581.07
Transfer/sec:      6.03MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk([]byte(wrkOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{
		Requests: 193296, Seconds: 5.01, ReqPerSec: 38581.07,
		P50: 812 * time.Microsecond, P99: 1020 * time.Millisecond,
		Non2xx: 17, SockErrs: 7, Timeouts: 5,
	}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
}

func TestParseWrkWithoutLatency(t *testing.T) {
	out := strings.Replace(wrkOutput, "     99%    1.02s\n", "", 1)
	if _, err := parseWrk([]byte(out)); err == nil {
		t.Error("parseWrk accepted output without the 99% line")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"812.00us": 812 * time.Microsecond,
		"1.50ms":   1500 * time.Microsecond,
		"2.00s":    2 * time.Second,
		"1.50m":    90 * time.Second,
	} {
		if got, err := parseWrkDuration(in); err != nil || got != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseWrkDuration("3 parsecs"); err == nil {
		t.Error("parseWrkDuration accepted a bad unit")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/mqueue/mqueue/segment
BenchmarkAppend/batch=16-2         	    1000	   1000000 ns/op	   1.60 MB/s	     16000 records/s	     120 B/op	       2 allocs/op
BenchmarkRawWriteFsync/batch=16-2  	    1000	    500000 ns/op	   3.20 MB/s	     32000 records/s	       0 B/op	       0 allocs/op
pkg: github.com/mqueue/mqueue/engine
BenchmarkEnqueueParallel/always/goroutines=256-2   	  500000	      2000 ns/op	  50.00 MB/s	       150.8 msgs/commit	    500000 msgs/s	       456.4 µs/fsync	  300 B/op	   3 allocs/op
PASS
`
	bs, err := parseGoBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 3 {
		t.Fatalf("got %d benchmarks, want 3: %+v", len(bs), bs)
	}
	if bs[0].Pkg != "segment" || bs[0].Name != "Append/batch=16" || bs[0].perOp() != 16 {
		t.Errorf("first = %+v", bs[0])
	}
	rows := goBenchRows(bs)
	if got := rows[0].ratio; got != 0.5 {
		t.Errorf("Append/RawWriteFsync ratio = %v, want 0.5", got)
	}
	if got := rows[0].allocs; got != 2.0/16 {
		t.Errorf("allocs per message = %v, want %v", got, 2.0/16)
	}
	if got := rows[2].rate; got != 500000 {
		t.Errorf("engine rate = %v, want 500000", got)
	}
	if got := rows[2].batch; got != 150.8 {
		t.Errorf("engine msgs/commit = %v, want 150.8", got)
	}
	if !strings.Contains(strings.Join(rows[2].notes, "; "), "mean fsync 456µs") {
		t.Errorf("engine notes = %q, want the mean fsync", rows[2].notes)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
}

func TestParseFlagsQuick(t *testing.T) {
	cfg, err := parseFlags([]string{"-quick", "-modes", "always"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.runs != 1 || len(cfg.conns) != 1 || cfg.conns[0] != 100 || len(cfg.modes) != 1 {
		t.Errorf("quick config = %+v", cfg)
	}
	if _, err := parseFlags([]string{"-modes", "sometimes"}); err == nil {
		t.Error("bad mode accepted")
	}
}

func TestTargetsNameReferenceServers(t *testing.T) {
	cfg, err := parseFlags([]string{"-modes", "handoff-fsync,always,handoff"})
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{cfg: cfg}
	var got []string
	for _, tg := range b.targets() {
		got = append(got, fmt.Sprintf("%s/%v", tg.name, tg.isMqueue()))
	}
	want := "ceiling (bare Gin)/false,ceiling + hand-off + fdatasync/false,mqueue always/true,ceiling + hand-off (no disk)/false"
	if strings.Join(got, ",") != want {
		t.Errorf("targets = %s, want %s", strings.Join(got, ","), want)
	}
	if _, err := parseFlags([]string{"-modes", "always,"}); err == nil {
		t.Error("an empty -modes entry was accepted")
	}
}
