package reliability

// Disk full on a real tmpfs and SIGTERM under load, at the binary level.

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// TestReliabilityDiskFull fills a 1 MiB tmpfs through HTTP: the first
// refusal is 507 DISK_FULL, the server stays up and keeps serving GETs, and
// after a restart (clean, or after kill -9 on the full disk) every acked
// message is there, in order.
func TestReliabilityDiskFull(t *testing.T) {
	proctest.Long(t)
	proctest.NeedRoot(t, "mounts a small tmpfs")
	proctest.NeedTool(t, "mount", "mount")
	bin := proctest.Build(t)
	for _, stop := range []string{"sigterm", "kill9"} {
		t.Run(stop, func(t *testing.T) {
			mnt := t.TempDir()
			if _, err := proctest.Run(30*time.Second, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt); err != nil {
				proctest.Unavailable(t, "cannot mount tmpfs: %v", err)
			}
			t.Cleanup(func() {
				if _, err := proctest.Run(30*time.Second, "umount", mnt); err != nil {
					_, _ = proctest.Run(30*time.Second, "umount", "-l", mnt)
				}
			})
			dir := t.TempDir()
			data := filepath.Join(mnt, "data")
			flags := []string{"--segment-bytes", "65536", "--drain-grace", "100ms"}
			s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-0"})
			client := proctest.Client(t)
			ledger := newRelLedger()
			w := &relWorkers{life: 0, base: s.Base, queue: relQueue, client: client, ledger: ledger,
				tolerate: map[int]bool{507: true}}
			first, n507 := 0, 0
			for i := 0; i < 5000 && n507 < 5; i++ {
				st := w.produceOne("p")
				if st != 201 && first == 0 {
					first = st
				}
				if st == 507 {
					n507++
				}
			}
			acked := ledger.acked()
			if first != 507 {
				t.Errorf("first refusal = %d, want 507 DISK_FULL (answers: %s)", first, ledger.statusSummary())
			}
			// Still up, and a GET works on the full disk.
			if resp, err := client.Get(s.Base + "/healthz"); err != nil || resp.StatusCode != 200 {
				t.Fatalf("healthz on a full disk: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
			if st := w.consumeOne("c", 0); st != http.StatusOK {
				t.Errorf("GET on a full disk = %d, want 200", st)
			}
			if st := w.produceOne("p"); st != 507 {
				t.Errorf("POST on a still full disk = %d, want 507", st)
			}
			client.CloseIdleConnections()
			if stop == "kill9" {
				s.Kill()
			} else if _, err := s.Term(proctest.ExitLimit); err != nil {
				t.Errorf("SIGTERM on a full disk: %v; log:\n%s", err, s.LogTail())
			}
			s2 := proctest.Launch(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-1"})
			if _, err := s2.WaitReady(proctest.ReadyLimit); err != nil {
				t.Fatalf("restart on the full disk: %v; log:\n%s", err, s2.LogTail())
			}
			w2 := &relWorkers{life: 1, base: s2.Base, queue: relQueue, client: client, ledger: ledger}
			var lastID uint64
			inOrder := true
			for {
				st := w2.consumeOne("drain", 0)
				if st != http.StatusOK {
					if st != http.StatusNoContent {
						t.Errorf("after the restart on a full disk, GET = %d; log:\n%s", st, s2.LogTail())
					}
					break
				}
				ledger.mu.Lock()
				id := ledger.maxPopped[1]
				ledger.mu.Unlock()
				if id <= lastID {
					inOrder = false
				}
				lastID = id
			}
			client.CloseIdleConnections()
			f := ledger.check(t, relCheckOpts{})
			t.Logf("figures: diskfull/%s: tmpfs 1 MiB, acked %d before the first refusal, first refusal %d, 507s %d, server up, GET on full disk ok, after restart acked-lost=%d popped-twice=%d in-order=%v refused-but-stored=%d",
				stop, acked, first, n507+1, f.lost, f.poppedTwice, inOrder, f.refusedPopped)
			if !inOrder {
				t.Error("messages after the restart not in id order")
			}
			for _, l := range proctest.LogPanics(s.LogText() + s2.LogText()) {
				t.Errorf("server log: %s", l)
			}
		})
	}
}

// TestReliabilitySIGTERMUnderLoad sends SIGTERM while producers and
// consumers run: every request gets an answer (2xx, or 503 once the drain
// closes the gate), the process exits 0 within 10 s, and after a restart
// nothing acked is lost and nothing popped comes back.
func TestReliabilitySIGTERMUnderLoad(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	flags := []string{"--segment-bytes", "65536", "--segment-age", "1s", "--drain-grace", "1s"}
	ledger := newRelLedger()
	client := proctest.Client(t)
	const rounds = 3
	var maxExit time.Duration
	for life := 0; life < rounds; life++ {
		s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: fmt.Sprintf("server-%d", life)})
		w := &relWorkers{life: life, base: s.Base, queue: relQueue, client: client, ledger: ledger, maxBacklog: 1000,
			tolerate: map[int]bool{503: true}, dead: s.Exited}
		stop := w.run(t, 8, 2)
		time.Sleep(700 * time.Millisecond)
		d, err := s.Term(proctest.ExitLimit)
		maxExit = max(maxExit, d)
		if err != nil {
			t.Errorf("life %d: exit after SIGTERM: %v after %v; log:\n%s", life, err, d, s.LogTail())
		}
		if d > 10*time.Second {
			t.Errorf("life %d: exit took %v, want < 10s", life, d)
		}
		w.cut.Store(true)
		stop()
		client.CloseIdleConnections()
	}
	s, _ := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-final"})
	w := &relWorkers{life: rounds, base: s.Base, queue: relQueue, client: client, ledger: ledger}
	drained := relDrain(t, w, 4)
	if _, err := s.Term(proctest.ExitLimit); err != nil {
		t.Error(err)
	}
	client.CloseIdleConnections()
	f := ledger.check(t, relCheckOpts{})
	t.Logf("answers: %s; first unanswered: %q", ledger.statusSummary(), ledger.samples)
	t.Logf("figures: sigterm-rounds=%d acked=%d popped=%d drained-at-end=%d acked-lost=%d popped-twice=%d unanswered-POSTs=%d unanswered-GETs=%d max-exit=%v (drain-grace 1s)",
		rounds, f.acked, f.popped, drained, f.lost, f.poppedTwice, f.unknownPosts, f.cutGets, maxExit.Round(time.Millisecond))
	if f.acked == 0 {
		t.Error("nothing acked")
	}
}
