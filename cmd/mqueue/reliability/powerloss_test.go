package reliability

// Power loss: the data directory lives on ext4 on a loop device; mid-load
// `xfs_io -x -c shutdown MNT` (no -f: the journal is not flushed) makes the
// file system drop everything not yet on the device, as a power cut would,
// and fail every later write and fsync. Then the server is killed, the file
// system unmounted and mounted again (journal replay), and the server
// restarted on what survived. --fsync=always must lose nothing acked; the
// --fsync=never control run must lose something, or the harness could not
// see a loss; --fsync=interval is measured against its promise (all but the
// last --fsync-interval).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// relLoopFS is an ext4 file system in an image file, on a loop device.
type relLoopFS struct {
	img, dev, mnt string
	mounted       bool
}

// relMountExt4 makes and mounts a fresh ext4 of sizeMiB; t.Cleanup unmounts
// it and detaches the loop device, even when the test fails.
func relMountExt4(t *testing.T, sizeMiB int) *relLoopFS {
	t.Helper()
	proctest.NeedRoot(t, "mounts an ext4 loop device")
	for _, tool := range []struct{ name, pkg string }{
		{"losetup", "mount"}, {"mkfs.ext4", "e2fsprogs"}, {"mount", "mount"}, {"umount", "mount"}, {"xfs_io", "xfsprogs"},
	} {
		proctest.NeedTool(t, tool.name, tool.pkg)
	}
	dir := t.TempDir()
	fs := &relLoopFS{img: filepath.Join(dir, "ext4.img"), mnt: filepath.Join(dir, "mnt")}
	if err := os.Mkdir(fs.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(fs.img)
	if err == nil {
		err = f.Truncate(int64(sizeMiB) << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	// No lazy init: nothing writes in the background while a round runs.
	if _, err := proctest.Run(time.Minute, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", fs.img); err != nil {
		proctest.Unavailable(t, "cannot make ext4: %v", err)
	}
	out, err := proctest.Run(30*time.Second, "losetup", "--find", "--show", fs.img)
	if err != nil {
		proctest.Unavailable(t, "no loop device: %v", err)
	}
	fs.dev = strings.TrimSpace(out)
	t.Cleanup(func() {
		if fs.mounted {
			if _, err := proctest.Run(30*time.Second, "umount", fs.mnt); err != nil {
				t.Logf("cleanup: %v; unmounting lazily", err)
				_, _ = proctest.Run(30*time.Second, "umount", "-l", fs.mnt)
			}
		}
		if _, err := proctest.Run(30*time.Second, "losetup", "-d", fs.dev); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	fs.mount(t)
	return fs
}

func (fs *relLoopFS) mount(t *testing.T) {
	t.Helper()
	if _, err := proctest.Run(30*time.Second, "mount", "-t", "ext4", fs.dev, fs.mnt); err != nil {
		proctest.Unavailable(t, "cannot mount ext4 on %s: %v", fs.dev, err)
	}
	fs.mounted = true
}

// powerCut shuts the file system down without flushing its journal.
func (fs *relLoopFS) powerCut(t *testing.T) {
	t.Helper()
	if _, err := proctest.Run(30*time.Second, "xfs_io", "-x", "-c", "shutdown", fs.mnt); err != nil {
		t.Fatalf("power cut: %v", err)
	}
}

// remount unmounts (the server must be dead) and mounts again, which
// replays the journal as a boot after a power cut would.
func (fs *relLoopFS) remount(t *testing.T) {
	t.Helper()
	if _, err := proctest.Run(30*time.Second, "umount", fs.mnt); err != nil {
		t.Fatalf("umount after the power cut: %v", err)
	}
	fs.mounted = false
	fs.mount(t)
}

func TestReliabilityPowerLoss(t *testing.T) {
	proctest.Long(t)
	proctest.NeedRoot(t, "mounts an ext4 loop device")
	bin := proctest.Build(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	cases := []struct {
		mode   string
		rounds int
		flags  []string
	}{
		// Small segments that age fast: rotation and compaction happen
		// while the power goes.
		{"always", 10, []string{"--segment-bytes", "65536", "--segment-age", "2s"}},
		// Big segments: nothing but the OS would flush the active one.
		{"never", 2, nil},
		{"interval", 3, nil},
	}
	for _, c := range cases {
		loadSeed := rng.Uint64()
		t.Run("fsync="+c.mode, func(t *testing.T) {
			relPowerRun(t, bin, c.mode, c.rounds, c.flags, rand.New(rand.NewPCG(loadSeed, 7)))
		})
	}
}

func relPowerRun(t *testing.T, bin, mode string, rounds int, extra []string, rng *rand.Rand) {
	fs := relMountExt4(t, 256)
	dir := proctest.TempDir(t)
	data := filepath.Join(fs.mnt, "data")
	const interval = 10 * time.Millisecond
	flags := append([]string{"--fsync", mode, "--fsync-interval", interval.String(), "--drain-grace", "100ms"}, extra...)
	ledger := newRelLedger()
	client := proctest.Client(t)
	var maxReady time.Duration
	for life := 0; life < rounds; life++ {
		s, ready := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: fmt.Sprintf("server-%02d", life)})
		maxReady = max(maxReady, ready)
		w := &relWorkers{life: life, base: s.Base, queue: relQueue, client: client, ledger: ledger, maxBacklog: 500, batchProducers: 2}
		stop := w.run(t, 6, 1)
		load := 400*time.Millisecond + time.Duration(rng.Int64N(int64(800*time.Millisecond)))
		time.Sleep(load)
		w.cut.Store(true)
		ledger.cut(life)
		fs.powerCut(t)
		time.Sleep(50 * time.Millisecond) // let in-flight requests meet the dead file system
		s.Kill()
		stop()
		client.CloseIdleConnections()
		fs.remount(t)
		t.Logf("round %d: ready in %v, load %v, power cut; acked so far %d", life, ready.Round(time.Millisecond), load.Round(time.Millisecond), ledger.acked())
	}
	s, ready := proctest.StartReady(t, proctest.Config{Bin: bin, Data: data, Flags: flags, LogDir: dir, Name: "server-final"})
	maxReady = max(maxReady, ready)
	w := &relWorkers{life: rounds, base: s.Base, queue: relQueue, client: client, ledger: ledger}
	drained := relDrain(t, w, 4)
	if _, err := s.Term(proctest.ExitLimit); err != nil {
		t.Errorf("final SIGTERM: %v", err)
	}
	client.CloseIdleConnections()
	for _, l := range proctest.LogPanics(allLogs(t, dir)) {
		t.Errorf("server log: %s", l)
	}
	o := relCheckOpts{reportViolations: true, allowRefusedStored: true}
	switch mode {
	case "never":
		o.allowLoss, o.allowDoublePop = true, true
	case "interval":
		o.allowLoss, o.allowDoublePop = true, true
	}
	f := ledger.check(t, o)
	t.Logf("answers: %s", ledger.statusSummary())
	window := ""
	if len(f.lostAge) > 0 {
		slices.Sort(f.lostAge)
		window = fmt.Sprintf(" lost-acked-age: newest %v oldest %v before the cut (promised window: --fsync-interval %v)",
			f.lostAge[0].Round(time.Millisecond), f.lostAge[len(f.lostAge)-1].Round(time.Millisecond), interval)
	}
	t.Logf("figures: fsync=%s power-cuts=%d acked=%d popped=%d drained-at-end=%d acked-lost=%d popped-twice=%d recovered-unacked=%d stored-despite-5xx=%d max-time-to-ready=%v batches=%d unanswered=%d back-whole=%d partial-batch-repairs=%d%s",
		mode, rounds, f.acked, f.popped, drained, f.lost, f.poppedTwice, f.recoveredUnacked, f.refusedPopped, maxReady.Round(time.Millisecond),
		f.batches, f.batchesUnknown, f.batchesRecovered, crashLogCount(dir, "atomic batch cut short"), window)
	switch mode {
	case "never":
		if f.lost == 0 {
			t.Errorf("control run: --fsync=never lost nothing over %d power cuts, so this harness cannot show a loss", rounds)
		}
	case "interval":
		// The promise is the last interval; allow the fsync itself and
		// scheduling on a loaded 2-core machine, but not seconds.
		if n := len(f.lostAge); n > 0 && f.lostAge[n-1] > interval+250*time.Millisecond {
			t.Errorf("--fsync=interval lost a message acked %v before the power cut; promised: at most the last %v",
				f.lostAge[n-1].Round(time.Millisecond), interval)
		}
	}
	if f.acked == 0 {
		t.Error("no message was acknowledged: the load never ran")
	}
}
