package reliability

// End-to-end crash test: the real binary, kill -9 under load, restart on the
// same data directory, and a ledger of what every client was told.
//
// What the contract promises (SPEC "Durability and delivery") and what is
// checked here:
//   - a 201 means written to the segment file, in every fsync mode, so an
//     acknowledged message survives kill -9: after the last drain every acked
//     body has been popped, unless a GET whose answer the kill cut off took
//     it (see below);
//   - a 200 is answered only once the cursor move is persisted, so a popped
//     message never comes back: no body is popped twice, and every id popped
//     after a restart is above every id popped before it;
//   - ids are strictly increasing in enqueue order and never reused, so each
//     consumer sees increasing ids, each producer gets increasing ids, an id
//     names one body only, and the ids acked after a restart are above the
//     ones acked before it;
//   - bodies come back byte for byte;
//   - a body whose POST got no answer (the kill cut it) may or may not be
//     there after the restart ("recovered-unacked"); one whose POST got a
//     definite refusal must never be popped;
//   - every start after a kill is ready within 20 s, and the last one stops
//     cleanly (exit 0) on SIGTERM.
//
// A GET is a pop (at most once): a GET in flight when the process dies may
// have moved and persisted the cursor without its 200 reaching the client.
// Such a message is gone without anyone having seen it, and that is the
// contract, not a loss. The test therefore accounts for every acked body
// that was never popped by matching it to a distinct GET with an unknown
// outcome that could have taken it: same or later process lifetime, an id
// above every id popped in that lifetime before the GET was sent, and below
// every id popped in any later lifetime (the GET took the head of the queue,
// so everything left behind is above it). Whatever cannot be matched is an
// acked loss and fails the test.
//
// Knobs: MQUEUE_CRASH_ROUNDS (default 20, as the reliability issue asks) kill/restart rounds with
// --fsync=always, MQUEUE_CRASH_SEED to replay the random load durations,
// MQUEUE_CRASH_RACE=1 builds the server with -race, MQUEUE_CRASH_KEEP=DIR
// keeps the data directory (with a snapshot taken after each kill) and the
// server logs of a failed run.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

const (
	crashQueue     = "crash"
	crashProducers = 16
	// crashBatchProducers of the producers POST batches of 2..64 messages
	// (all or nothing, also across a kill).
	crashBatchProducers = 2
	// crashKeyedProducers of the producers send an Idempotency-Key; a POST
	// of theirs that the kill left unanswered is sent again with the same
	// key after the restart, and must not be stored twice.
	crashKeyedProducers = 2
	crashConsumers      = 4
	crashDrainers       = 8
	crashDefaultRound   = 20
	crashDrainLimit     = 30 * time.Second // one drain
	crashDrainGrace     = 100 * time.Millisecond
	crashMinLoad        = 300 * time.Millisecond
	crashMaxLoad        = 1500 * time.Millisecond
	crashSpread         = 512 // body size spread: 64..575 bytes
)

// The server is built, started and stopped with cmd/mqueue/proctest, and
// its clients' answers are recorded and checked with the ledger
// (ledger_test.go; check_test.go holds the cut-GET matching described
// above); the ready limit is proctest.ReadyLimit (20 s), one
// request proctest.ClientLimit, SIGTERM to exit proctest.ExitLimit (drain-grace + 10 s
// + slack).

// TestCrashKill9NoAckedLossNoDoublePop kills the server with SIGKILL under
// load, restarts it on the same data directory and checks that no
// acknowledged message is lost and no popped one comes back: N rounds with
// --fsync=always, then one round each with interval and never.
func TestCrashKill9NoAckedLossNoDoublePop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	rounds := crashDefaultRound
	if v := os.Getenv("MQUEUE_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			t.Fatalf("MQUEUE_CRASH_ROUNDS=%q: want an integer in 1..10000", v)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MQUEUE_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MQUEUE_CRASH_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("seed %d (MQUEUE_CRASH_SEED to replay the load durations), %d rounds with fsync=always", seed, rounds)

	// The default 5 rounds plus the two single rounds stay around a minute;
	// more rounds get proportionally more time, within the test deadline.
	budget := max(45*time.Second, time.Duration(rounds)*9*time.Second)
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 45*time.Second; left < budget {
			budget = max(left, 10*time.Second)
		}
	}

	bin := proctest.BuildRace(t, os.Getenv("MQUEUE_CRASH_RACE") == "1")
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	modes := []struct {
		mode   string
		rounds int
		budget time.Duration
	}{
		{"always", rounds, budget},
		{"interval", 1, 15 * time.Second},
		{"never", 1, 15 * time.Second},
	}
	for _, m := range modes {
		loadSeed := rng.Uint64()
		t.Run("fsync="+m.mode, func(t *testing.T) {
			crashRun(t, bin, m.mode, m.rounds, m.budget, rand.New(rand.NewPCG(loadSeed, loadSeed>>1|1)))
		})
	}
}

// crashLoad runs producers and consumers (the last one long-polling) on w
// for d, then SIGKILLs the server while their requests are in flight, and
// waits for every worker to stop. The workers keep sending until the
// signal is out (w.firing makes their transport errors expected from just
// before it), so that requests are in flight when it lands.
func crashLoad(t *testing.T, w *relWorkers, s *proctest.Server, d time.Duration) {
	w.longPollLast = true
	stop := w.run(t, crashProducers, crashConsumers)
	time.Sleep(d)
	w.firing.Store(true)
	if err := s.Cmd.Process.Kill(); err != nil {
		t.Errorf("life %d: SIGKILL: %v", w.life, err)
	}
	stop()   // at most relClientLimit + 5 s
	s.Kill() // reap (and the process group)
}

// crashDrain pops with several consumers until each has seen a 204
// (nothing produces meanwhile, so the queue is empty), within
// crashDrainLimit. It reports whether the queue was drained in time;
// unlike relDrain, a late drain is an error, not fatal, so that the
// ledger is still checked for what it can tell.
func crashDrain(t *testing.T, w *relWorkers) bool {
	deadline := time.Now().Add(crashDrainLimit)
	var late atomic.Bool
	var wg sync.WaitGroup
	for c := 0; c < crashDrainers; c++ {
		wg.Go(func() {
			w.consumeUntil(fmt.Sprintf("drain%d", c), 0, func(empty int) bool {
				if time.Now().After(deadline) {
					late.Store(true)
					return true
				}
				return empty > 0
			})
		})
	}
	wg.Wait()
	if late.Load() {
		t.Errorf("life %d: the queue was not drained within %v", w.life, crashDrainLimit)
		return false
	}
	// One long poll more: still empty.
	w.consumeUntil("drain-check", 1, func(empty int) bool { return empty > 0 })
	return true
}

// crashRun runs rounds kill/restart rounds on one data directory with the
// given fsync mode, then a final drain, and checks the ledger.
func crashRun(t *testing.T, bin, mode string, rounds int, budget time.Duration, rng *rand.Rand) {
	began := time.Now()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ledger := newRelLedger()
	var maxReady time.Duration
	restartsOK, done, keyedRetries := 0, 0, 0
	drained := true

	for life := 0; ; life++ {
		s, ready := proctest.StartReady(t, proctest.Config{
			Bin:  bin,
			Data: data,
			Flags: []string{
				"--fsync", mode,
				"--segment-bytes", "65536",
				"--segment-age", "2s",
				"--drain-grace", crashDrainGrace.String(),
			},
			LogDir: dir,
			Name:   fmt.Sprintf("server-%02d", life),
		})
		if life > 0 {
			restartsOK++
			maxReady = max(maxReady, ready)
		}
		client := proctest.Client(t)
		w := &relWorkers{life: life, base: s.Base, queue: crashQueue, client: client, ledger: ledger, spread: crashSpread,
			batchProducers: crashBatchProducers, keyedProducers: crashKeyedProducers}
		if life > 0 {
			keyedRetries += w.retryKeyed()
		}
		if life > 0 && !crashDrain(t, w) {
			// The ledger is still checked for what it can tell.
			drained = false
			client.CloseIdleConnections()
			s.Kill()
			break
		}
		final := life == rounds || (life > 0 && time.Since(began) > budget)
		if final {
			if life < rounds {
				t.Logf("time budget %v spent after %d of %d rounds", budget, life, rounds)
			}
			client.CloseIdleConnections()
			if _, err := s.Term(proctest.ExitLimit); err != nil {
				t.Errorf("server exit after SIGTERM: %v; log:\n%s", err, s.LogTail())
			}
			break
		}
		d := crashMinLoad + time.Duration(rng.Int64N(int64(crashMaxLoad-crashMinLoad)))
		crashLoad(t, w, s, d)
		client.CloseIdleConnections()
		if os.Getenv("MQUEUE_CRASH_KEEP") != "" {
			// What the next start recovers from, for a post-mortem.
			if err := os.CopyFS(filepath.Join(dir, fmt.Sprintf("after-kill-%02d", life)), os.DirFS(data)); err != nil {
				t.Logf("snapshot of the data directory after kill %d: %v", life, err)
			}
		}
		done++
		acked, unknown, pops, cut := ledger.lifeCounts(life)
		t.Logf("round %d: start %d ready in %v, load %v then SIGKILL: this life %d acked, %d POSTs cut, %d popped, %d GETs cut",
			done, life, ready.Round(time.Millisecond), d.Round(time.Millisecond), acked, unknown, pops, cut)
	}

	c := ledger.check(t, relCheckOpts{undrained: !drained})
	if races := crashLogCount(dir, "WARNING: DATA RACE"); races > 0 {
		t.Errorf("the server (built with -race) reported %d data race(s); see the logs", races)
	}
	if t.Failed() {
		t.Logf("warnings and errors the server logged (all lives):\n%s", crashLogDigest(dir))
		crashKeep(t, dir)
	}
	t.Logf("fsync=%s: rounds=%d acked=%d popped=%d acked-lost=%d popped-twice=%d recovered-unacked=%d restarts-ok=%d/%d max-time-to-ready=%v (unknown-outcome POSTs=%d, GETs cut by the kill=%d, acked bodies they took=%d; batches=%d, unanswered=%d, of those back whole=%d, partial repairs logged=%d; keyed retries=%d, answered 200 with the earlier id=%d) in %v",
		mode, done, c.acked, c.popped, c.lost, c.poppedTwice, c.recoveredUnacked, restartsOK, done, maxReady.Round(time.Millisecond),
		c.unknownPosts, c.cutGets, c.cutTaken, c.batches, c.batchesUnknown, c.batchesRecovered,
		crashLogCount(dir, "atomic batch cut short"), keyedRetries, c.duplicates, time.Since(began).Round(time.Millisecond))
	if done == 0 {
		t.Errorf("no round ran")
	}
}

// crashKeep copies the data directory, its snapshots taken after each kill
// and the server logs to $MQUEUE_CRASH_KEEP/<test name> for a post-mortem.
func crashKeep(t *testing.T, dir string) {
	keep := os.Getenv("MQUEUE_CRASH_KEEP")
	if keep == "" {
		t.Logf("set MQUEUE_CRASH_KEEP=DIR to keep the data directory and server logs of a failed run")
		return
	}
	dst := filepath.Join(keep, strings.NewReplacer("/", "_", "=", "-").Replace(t.Name())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Logf("keep %s: %v", dst, err)
		return
	}
	t.Logf("data directory and server logs kept in %s", dst)
}

// crashLogDigest returns the WARN and ERROR lines of every server log in dir,
// each prefixed with its file name.
func crashLogDigest(dir string) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "server-*.log"))
	var out []string
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") ||
				strings.Contains(line, "panic") || strings.Contains(line, "DATA RACE") {
				out = append(out, filepath.Base(path)+": "+line)
			}
		}
	}
	if len(out) > 60 {
		out = append(out[:60], fmt.Sprintf("... %d lines in all", len(out)))
	}
	if len(out) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(out, "\n  ")
}

// crashLogCount counts the lines holding what in the server logs in dir.
func crashLogCount(dir, what string) int {
	logs, _ := filepath.Glob(filepath.Join(dir, "server-*.log"))
	n := 0
	for _, path := range logs {
		if b, err := os.ReadFile(path); err == nil {
			n += bytes.Count(b, []byte(what))
		}
	}
	return n
}
