package reliability

// fsync and write errors on a running server, injected by strace on one
// file (-P): the failed batch gets no 2xx, the segment is repaired (log line
// and mqueue_repaired_segments_total) before the next batch succeeds, and
// after a restart every acked message is there, in order, and no refused
// one.

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

func TestReliabilityInjectedIOErrors(t *testing.T) {
	proctest.Long(t)
	strace := proctest.NeedTool(t, "strace", "strace")
	bin := proctest.Build(t)
	seg1 := filepath.Join(relQueue, "00000000000000000001", "00000000000000000001")
	cases := []struct {
		name    string
		file    string // under the data directory
		inject  string // strace -e inject= value
		syscall string
		status  int    // the refusal expected
		code    string // its error code
		gets    bool   // the fault hits dequeues (cursor), not enqueues
	}{
		{"segment_fsync_EIO", seg1, "fdatasync:error=EIO:when=3+7", "fdatasync", 500, "WRITE_FAILED", false},
		{"segment_write_ENOSPC", seg1, "pwrite64:error=ENOSPC:when=3+7", "pwrite64", 507, "DISK_FULL", false},
		{"segment_write_EIO", seg1, "pwrite64:error=EIO:when=4+9", "pwrite64", 500, "WRITE_FAILED", false},
		{"cursor_fdatasync_EIO", filepath.Join(relQueue, "cursor"), "fdatasync:error=EIO:when=4+6", "fdatasync", 500, "WRITE_FAILED", true},
		{"cursor_write_EIO", filepath.Join(relQueue, "cursor"), "pwrite64:error=EIO:when=3+6", "pwrite64", 500, "WRITE_FAILED", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			flags := []string{"--drain-grace", "100ms"}
			wrap := []string{strace, "-f", "-q", "-o", filepath.Join(dir, "strace.out"), "-e", "signal=none",
				"-e", "trace=" + c.syscall, "-e", "inject=" + c.inject, "-P", filepath.Join(data, c.file), "--"}
			s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, Wrap: wrap, LogDir: dir, Name: "server-0"})
			client := proctest.Client(t)
			ledger := newRelLedger()
			w := &relWorkers{life: 0, base: s.Base, queue: relQueue, client: client, ledger: ledger,
				tolerate: map[int]bool{c.status: true}}
			const n = 40
			failures, okAfter, premature, repairedBefore := 0, 0, 0, 0
			mustRepair := -1 // repair lines in the log at the first failure since the last success
			for i := 0; i < n; i++ {
				var st int
				if c.gets {
					if w.produceOne("p") != 201 {
						t.Fatalf("POST %d failed with a fault on the cursor only", i)
					}
					st = w.consumeOne("c", 0)
					if st == 200 || st == 204 {
						st = 201 // success, for the bookkeeping below
					}
				} else {
					st = w.produceOne("p")
				}
				switch {
				case st == 201 && failures > 0:
					okAfter++
					// The first batch to succeed after a failure may do so
					// only once the segment was repaired, which the log
					// says first (a failed repair is itself a failure).
					if mustRepair >= 0 && !c.gets && strings.Count(s.LogText(), "segment repaired after write error") <= mustRepair {
						premature++
					}
					mustRepair = -1
				case st == c.status:
					failures++
					repairedBefore = failures - 1 // a success or a failure follows only after a repair
					if mustRepair < 0 {
						mustRepair = strings.Count(s.LogText(), "segment repaired after write error")
					}
				case st != 201:
					t.Errorf("request %d: status %d, want 201 or %d", i, st, c.status)
				}
			}
			repaired := proctest.Metric(t, client, s.Base, "mqueue_repaired_segments_total")
			werrs := proctest.Metric(t, client, s.Base, "mqueue_write_errors_total")
			if !c.gets {
				// Messages still queued are drained after the restart.
				if failures == 0 {
					t.Errorf("the fault was never injected (statuses: %s)", ledger.statusSummary())
				}
				if premature > 0 {
					t.Errorf("%d batches succeeded after a failure before the log said the segment was repaired", premature)
				}
				// The segment is repaired before the next write, so the last
				// failure may not be repaired yet.
				if repaired < 1 || (repaired < float64(repairedBefore) && !strings.Contains(s.LogText(), "segment still broken")) {
					t.Errorf("mqueue_repaired_segments_total = %v after %d failed batches followed by another", repaired, repairedBefore)
				}
			} else if failures == 0 {
				t.Errorf("the fault was never injected (statuses: %s)", ledger.statusSummary())
			}
			if werrs < float64(failures) {
				t.Errorf("mqueue_write_errors_total = %v after %d failures", werrs, failures)
			}
			for _, l := range proctest.LogPanics(s.LogText()) {
				t.Errorf("server log: %s", l)
			}
			client.CloseIdleConnections()
			if _, err := s.Term(proctest.ExitLimit); err != nil {
				t.Errorf("SIGTERM: %v", err)
			}
			s2, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-1"})
			w2 := &relWorkers{life: 1, base: s2.Base, queue: relQueue, client: client, ledger: ledger}
			relDrain(t, w2, 1)
			client.CloseIdleConnections()
			f := ledger.check(t, relCheckOpts{})
			t.Logf("answers: %s", ledger.statusSummary())
			t.Logf("figures: %s: requests=%d refused=%d (%d %s) 2xx-for-failed=0-by-check refused-but-stored=%d succeeded-after-failure=%d before-repair=%d repaired_segments_total=%v write_errors_total=%v acked=%d acked-lost=%d popped-twice=%d",
				c.name, n, failures, c.status, c.code, f.refusedPopped, okAfter, premature, repaired, werrs, f.acked, f.lost, f.poppedTwice)
		})
	}
}
