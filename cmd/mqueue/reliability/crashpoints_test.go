package reliability

// Deterministic crash points: the server runs under strace, which delivers
// SIGKILL on entering the N-th call of one system call (fsync, mkdirat,
// renameat, unlinkat, write, pwrite64, ftruncate), so the process dies
// exactly before that call, mid group commit, mid rotation (mkdir, meta
// rename), mid compaction (rename to .deleting, unlink), or mid recovery.
// The rounds run one after the other on one data directory; each restart
// recovers what the previous kill left (and may itself be killed), and a
// final normal start drains the queue and checks the ledger.
//
// strace counts calls per thread ("accounting ... per syscall and per
// tracee"), and Go moves goroutines between threads, so "fsync #5" is the
// 5th fsync of whichever thread gets there first: the kind of point is
// exact, its index is not. Each round prints the call it killed, with the
// file (strace -y), so the points covered are visible in the log.
//
// The random kill -9 rounds are TestCrashKill9NoAckedLossNoDoublePop
// (crash_test.go); this test does not repeat them.

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// relPoint is one crash point: SIGKILL on entering the when-th call of
// syscall (per thread).
type relPoint struct {
	syscall string
	when    int
}

func (p relPoint) String() string { return fmt.Sprintf("%s#%d", p.syscall, p.when) }

// relStraceKill returns the strace wrapper for p, writing its trace to out.
// paths, if any, restrict tracing and injection to calls on those files.
func relStraceKill(strace, out string, p relPoint, paths ...string) []string {
	w := []string{strace, "-f", "-q", "-y", "-o", out, "-e", "signal=none",
		"-e", "trace=" + p.syscall,
		"-e", fmt.Sprintf("inject=%s:signal=SIGKILL:when=%d", p.syscall, p.when)}
	for _, path := range paths {
		w = append(w, "-P", path)
	}
	return append(w, "--")
}

// relKilledCall returns the traced call that never returned (the one the
// injected SIGKILL stopped), with data's path shortened, or "".
func relKilledCall(tracePath, data string) string {
	f, err := os.Open(tracePath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var hit string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasSuffix(l, "= ?") || strings.Contains(l, "<unfinished ...>") {
			if _, rest, ok := strings.Cut(l, " "); ok {
				l = rest // drop the thread id
			}
			hit = strings.TrimSuffix(strings.TrimSuffix(l, " = ?"), " <unfinished ...>")
			hit = strings.Join(strings.Fields(hit), " ")
			break
		}
	}
	return strings.ReplaceAll(hit, data+"/", "")
}

func TestReliabilityCrashPoints(t *testing.T) {
	proctest.Long(t)
	strace := proctest.NeedTool(t, "strace", "strace")
	bin := proctest.Build(t)
	dir := proctest.TempDir(t)
	data := filepath.Join(dir, "data")
	// Small segments that age fast: rotation (mkdir, fsync dir, meta
	// rename) every few batches, compaction (rename to .deleting, unlink)
	// every second as the consumer keeps up.
	flags := []string{"--fsync", "always", "--segment-bytes", "8192", "--segment-age", "300ms", "--drain-grace", "100ms"}
	points := []relPoint{
		{"fsync", 1}, {"fsync", 2}, {"fsync", 3}, {"fsync", 4}, {"fsync", 6}, {"fsync", 9},
		{"fsync", 14}, {"fsync", 30}, {"fsync", 80}, {"fsync", 200},
		{"mkdirat", 1}, {"mkdirat", 2}, {"mkdirat", 3}, {"mkdirat", 5},
		{"renameat", 1}, {"renameat", 2}, {"renameat", 3}, {"renameat", 6},
		{"unlinkat", 1}, {"unlinkat", 2}, {"unlinkat", 3}, {"unlinkat", 7},
		{"write", 5}, {"write", 25}, {"write", 90},
		{"pwrite64", 1}, {"pwrite64", 3}, {"pwrite64", 20}, {"pwrite64", 60},
		{"fdatasync", 1}, {"fdatasync", 4}, {"fdatasync", 40},
		{"ftruncate", 1}, {"ftruncate", 2},
	}
	if v := os.Getenv("MQUEUE_REL_POINTS"); v != "" { // e.g. fsync#3,unlinkat#2
		points = nil
		for _, f := range strings.Split(v, ",") {
			var p relPoint
			name, n, ok := strings.Cut(f, "#")
			if _, err := fmt.Sscan(n, &p.when); !ok || err != nil || p.when < 1 {
				t.Fatalf("MQUEUE_REL_POINTS=%q: want syscall#N,...", v)
			}
			p.syscall = name
			points = append(points, p)
		}
	}
	const loadLimit = 4 * time.Second // per round, before we kill it ourselves

	ledger := newRelLedger()
	client := proctest.Client(t)
	var (
		maxReady            time.Duration
		starts, readyStarts int
		killedAtStart       int
		reached             int
		hits                []string
	)
	for life, p := range points {
		trace := filepath.Join(dir, fmt.Sprintf("strace-%02d.out", life))
		s := proctest.Launch(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir,
			Wrap: relStraceKill(strace, trace, p), Name: fmt.Sprintf("server-%02d-%s", life, p)})
		starts++
		ready, err := s.WaitReady(proctest.ReadyLimit)
		switch {
		case err == nil:
			readyStarts++
			maxReady = max(maxReady, ready)
			w := &relWorkers{life: life, base: s.Base, queue: relQueue, client: client, ledger: ledger, dead: s.Exited, maxBacklog: 300, batchProducers: 1}
			stop := w.run(t, 6, 1)
			select {
			case <-s.Exited:
			case <-time.After(loadLimit):
			}
			w.cut.Store(true)
			ledger.cut(life)
			injected := !s.Alive()
			s.Kill()
			stop()
			client.CloseIdleConnections()
			call := relKilledCall(trace, data)
			if injected && s.KilledBySignal(syscall.SIGKILL) {
				reached++
				hits = append(hits, fmt.Sprintf("%s: %s", p, call))
				t.Logf("round %2d %-12s ready in %v, killed under load at %s (acked so far %d)", life, p, ready.Round(time.Millisecond), call, ledger.acked())
			} else {
				t.Logf("round %2d %-12s ready in %v, point not reached in %v: SIGKILL by the test", life, p, ready.Round(time.Millisecond), loadLimit)
			}
		case errors.Is(err, proctest.ErrExited) && s.KilledBySignal(syscall.SIGKILL):
			// Killed during recovery: the next start recovers from that.
			killedAtStart++
			reached++
			call := relKilledCall(trace, data)
			hits = append(hits, fmt.Sprintf("%s (at start): %s", p, call))
			t.Logf("round %2d %-12s killed during start/recovery at %s", life, p, call)
		default:
			t.Fatalf("round %d (%s): start failed: %v; log %s:\n%s", life, p, err, s.LogPath, s.LogTail())
		}
	}

	// The final, normal start: everything acked and not popped is there.
	life := len(points)
	s, ready := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-final"})
	starts++
	readyStarts++
	maxReady = max(maxReady, ready)
	w := &relWorkers{life: life, base: s.Base, queue: relQueue, client: client, ledger: ledger}
	drained := relDrain(t, w, 4)
	if d, err := s.Term(proctest.ExitLimit); err != nil {
		t.Errorf("final SIGTERM: %v after %v; log:\n%s", err, d, s.LogTail())
	}
	client.CloseIdleConnections()
	for _, l := range proctest.LogPanics(allLogs(t, dir)) {
		t.Errorf("server log: %s", l)
	}
	f := ledger.check(t, relCheckOpts{})
	t.Logf("crash points hit:\n  %s", strings.Join(hits, "\n  "))
	t.Logf("answers: %s", ledger.statusSummary())
	t.Logf("figures: crash-points=%d reached=%d (during start/recovery %d) acked=%d popped=%d drained-at-end=%d acked-lost=%d popped-twice=%d recovered-unacked=%d refused-but-stored=%d restarts-ok=%d/%d max-time-to-ready=%v (under strace; GETs cut by kills %d, acked bodies they may have taken %d)",
		len(points), reached, killedAtStart, f.acked, f.popped, drained, f.lost, f.poppedTwice, f.recoveredUnacked, f.refusedPopped,
		readyStarts+killedAtStart, starts, maxReady.Round(time.Millisecond), f.cutGets, f.cutTaken)
	if f.acked == 0 {
		t.Error("no message was acknowledged: the load never ran")
	}
}

// allLogs returns every *.log in dir, concatenated.
func allLogs(t testing.TB, dir string) string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var b strings.Builder
	for _, p := range logs {
		data, err := os.ReadFile(p)
		if err == nil {
			b.Write(data)
		}
	}
	return b.String()
}

// TestReliabilityCrashAfterSegmentMkdir kills the server right after a new
// segment directory appeared under its final name and before the writer
// opened its records file (SIGKILL on the first openat of that file, which
// segment.Create makes under the .creating name and opens after the
// rename): first for the queue's first segment, then for the segment a
// rotation creates. After a restart the queue must serve: every
// acked message there, new messages accepted.
func TestReliabilityCrashAfterSegmentMkdir(t *testing.T) {
	proctest.Long(t)
	strace := proctest.NeedTool(t, "strace", "strace")
	bin := proctest.Build(t)
	// Sequential POSTs of 100-byte bodies are 130-byte records; with
	// 4096-byte segments the 32nd POST rotates to a segment whose base is 32
	// (rotation when bytes + 134 > 4096, after 31 records = 4030 bytes).
	const body100 = "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
	for _, tc := range []struct {
		name   string
		before int    // POSTs acked before the one that dies
		seg    uint64 // base of the segment whose creation is cut
	}{
		{"first_segment", 0, 1},
		{"rotation", 31, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			segDir := filepath.Join(data, relQueue, fmt.Sprintf("%020d", tc.seg))
			flags := []string{"--segment-bytes", "4096", "--drain-grace", "100ms"}
			trace := filepath.Join(dir, "strace.out")
			s := proctest.Launch(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-0",
				Wrap: relStraceKill(strace, trace, relPoint{"openat", 1}, filepath.Join(segDir, fmt.Sprintf("%020d", 1)))})
			if _, err := s.WaitReady(proctest.ReadyLimit); err != nil {
				t.Fatalf("start under strace: %v\n%s", err, s.LogTail())
			}
			client := proctest.Client(t)
			url := s.Base + "/api/queue/" + relQueue
			var acked []uint64
			for i := 0; i <= tc.before; i++ {
				resp, err := client.Post(url, "application/octet-stream", strings.NewReader(body100))
				if err != nil {
					if i != tc.before {
						t.Fatalf("POST %d: %v (killed too early?)", i, err)
					}
					break
				}
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Fatalf("POST %d = %d", i, resp.StatusCode)
				}
				var id uint64
				fmt.Sscan(resp.Header.Get("X-Message-Id"), &id)
				acked = append(acked, id)
			}
			select {
			case <-s.Exited:
			case <-time.After(5 * time.Second):
				t.Fatalf("the injected kill did not happen; trace:\n%s", relKilledCall(trace, data))
			}
			client.CloseIdleConnections()
			fi, err := os.Stat(segDir)
			t.Logf("killed at %q; segment dir exists: %v; acked before: %d", relKilledCall(trace, data), err == nil && fi.IsDir(), len(acked))

			s2, ready := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-1"})
			url = s2.Base + "/api/queue/" + relQueue
			var got []uint64
			var bad []string
			for i := 0; i < len(acked)+1; i++ {
				resp, err := client.Get(url)
				if err != nil {
					t.Fatal(err)
				}
				b := new(strings.Builder)
				_, _ = fmt.Fprint(b, resp.Status)
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					break
				}
				if resp.StatusCode != 200 {
					bad = append(bad, "GET "+b.String())
					break
				}
				var id uint64
				fmt.Sscan(resp.Header.Get("X-Message-Id"), &id)
				got = append(got, id)
			}
			resp, err := client.Post(url, "application/octet-stream", strings.NewReader(body100))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 201 {
				bad = append(bad, "POST after restart "+resp.Status)
			}
			client.CloseIdleConnections()
			t.Logf("figures: %s: restart ready in %v, acked %d, delivered after restart %d, errors %v",
				tc.name, ready.Round(time.Millisecond), len(acked), len(got), bad)
			if len(bad) > 0 || len(got) != len(acked) {
				t.Errorf("after a kill between mkdir of segment %d and the creation of its records file, the queue does not serve: %v (delivered %d of %d acked); log:\n%s",
					tc.seg, bad, len(got), len(acked), s2.LogTail())
			}
		})
	}
}
