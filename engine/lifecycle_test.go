package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// fdsUnder counts this process's open file descriptors on files under dir.
func fdsUnder(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, ent := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", ent.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(os.PathSeparator)) {
			n++
		}
	}
	return n
}

func isDormant(e *Engine, name string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.dormant[name]
	return ok
}

func isOpen(e *Engine, name string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.queues[name]
	return ok
}

// waitDormant waits until the named queues are all dormant, failing after
// a generous limit (the idle close in these tests is milliseconds).
func waitDormant(t testing.TB, e *Engine, names ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		all := true
		for _, n := range names {
			all = all && isDormant(e, n)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queues %v did not become dormant", names)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fastIdle are options under which an idle queue retires within
// milliseconds.
func fastIdle(dir string) Options {
	return Options{Dir: dir, IdleClose: 20 * time.Millisecond, CompactInterval: 5 * time.Millisecond}
}

func TestMaxQueues(t *testing.T) {
	dir := t.TempDir()
	opts := fastIdle(dir)
	opts.MaxQueues = 3
	e := openT(t, opts)
	for _, n := range []string{"a", "b", "c"} {
		enq(t, e, n, "x", EnqueueOptions{})
	}
	_, err := e.Enqueue(context.Background(), "d", []byte("x"), EnqueueOptions{})
	if !errors.Is(err, ErrTooManyQueues) {
		t.Fatalf("4th queue: err %v, want ErrTooManyQueues", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); !os.IsNotExist(err) {
		t.Fatalf("refused queue has a directory: %v", err)
	}
	// Dormant queues count too, and keep working.
	waitDormant(t, e, "a", "b", "c")
	if _, err := e.Enqueue(context.Background(), "d", []byte("x"), EnqueueOptions{}); !errors.Is(err, ErrTooManyQueues) {
		t.Fatalf("4th queue beside dormant ones: err %v, want ErrTooManyQueues", err)
	}
	if id := enq(t, e, "a", "y", EnqueueOptions{}); id != 2 {
		t.Fatalf("existing queue: id %d, want 2", id)
	}
	if m, ok := deq(t, e, "b"); !ok || string(m.Body) != "x" {
		t.Fatalf("existing queue: got %q %v", m.Body, ok)
	}
	e.Close()

	// Concurrent creations: exactly the cap succeeds.
	e = openT(t, Options{Dir: t.TempDir(), MaxQueues: 5})
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.Enqueue(context.Background(), fmt.Sprintf("q%d", i), []byte("x"), EnqueueOptions{})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrTooManyQueues):
				refused.Add(1)
			default:
				t.Errorf("q%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 5 || refused.Load() != 15 {
		t.Fatalf("created %d, refused %d; want 5 and 15", ok.Load(), refused.Load())
	}
}

// segmentFilesSize sums the sizes of every segment records file under dir.
func segmentFilesSize(t testing.TB, dir string) int64 {
	t.Helper()
	var sum int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "00000000000000000001" {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			sum += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestDiskCapCountsPreallocatedSpace(t *testing.T) {
	const quota = 1 << 20
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, MaxDiskBytes: quota, IdleClose: -1})
	stored := 0
	for i := 0; i < 300; i++ {
		_, err := e.Enqueue(context.Background(), fmt.Sprintf("q%03d", i), []byte("hello"), EnqueueOptions{})
		if errors.Is(err, ErrDiskFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stored++
	}
	real := segmentFilesSize(t, dir)
	t.Logf("%d queues stored; segment files take %d bytes, counted %d, quota %d", stored, real, e.DiskBytes(), quota)
	if real > quota {
		t.Errorf("segment files take %d bytes, over --max-disk-bytes %d", real, quota)
	}
	if e.DiskBytes() != real {
		t.Errorf("DiskBytes %d, segment files take %d", e.DiskBytes(), real)
	}
	if stored != 300 {
		t.Errorf("%d tiny messages stored under a 1 MiB quota, want 300: zero-filled space crowds records out", stored)
	}
	var statSum int64
	for _, st := range e.AllStats() {
		statSum += st.DiskBytes
	}
	if statSum != real {
		t.Errorf("stats disk_bytes add up to %d, segment files take %d", statSum, real)
	}
	// Closing cuts the zero-filled space: the count follows.
	e.Close()
	e = openT(t, Options{Dir: dir, MaxDiskBytes: quota})
	if real := segmentFilesSize(t, dir); e.DiskBytes() != real {
		t.Errorf("after reopen: DiskBytes %d, segment files take %d", e.DiskBytes(), real)
	}
}

func TestDormantQueueKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, fastIdle(dir))
	for i := 1; i <= 10; i++ {
		if id := enq(t, e, "q", fmt.Sprintf("m%d", i), EnqueueOptions{Key: fmt.Sprintf("k%d", i)}); id != uint64(i) {
			t.Fatalf("id %d, want %d", id, i)
		}
	}
	for i := 1; i <= 3; i++ {
		if m, ok := deq(t, e, "q"); !ok || m.ID != uint64(i) {
			t.Fatalf("dequeue %d: got %d %v", i, m.ID, ok)
		}
	}
	before, _ := e.Stats("q")
	waitDormant(t, e, "q")
	if n := fdsUnder(t, filepath.Join(dir, "q")); n != 0 {
		t.Fatalf("dormant queue holds %d open files", n)
	}
	// Closing cut the zero-filled space ahead of the records off.
	before.DiskBytes = segmentFilesSize(t, filepath.Join(dir, "q"))
	st, ok := e.Stats("q")
	if !ok || st != before {
		t.Fatalf("dormant stats %+v, want %+v", st, before)
	}
	if all := e.AllStats(); len(all) != 1 || all[0] != before || !isDormant(e, "q") {
		t.Fatalf("AllStats %+v (dormant %v), want the figures it closed with, without reopening", all, isDormant(e, "q"))
	}

	// A key taken before is still a duplicate, with its id.
	id, err := e.Enqueue(context.Background(), "q", []byte("again"), EnqueueOptions{Key: "k5"})
	if !errors.Is(err, ErrDuplicate) || id != 5 {
		t.Fatalf("repeat of k5: id %d err %v, want 5 and ErrDuplicate", id, err)
	}
	waitDormant(t, e, "q")
	// The cursor is where it was: 4..10 come once, in order; ids go on.
	for i := 4; i <= 10; i++ {
		m, ok := deq(t, e, "q")
		if !ok || m.ID != uint64(i) || string(m.Body) != fmt.Sprintf("m%d", i) {
			t.Fatalf("after reopen: got %d %q %v, want %d", m.ID, m.Body, ok, i)
		}
		if i == 6 {
			waitDormant(t, e, "q")
		}
	}
	if _, ok := deq(t, e, "q"); ok {
		t.Fatal("a message came twice")
	}
	if id := enq(t, e, "q", "m11", EnqueueOptions{}); id != 11 {
		t.Fatalf("next id %d, want 11", id)
	}
	st, _ = e.Stats("q")
	if st.EnqueuedTotal != 11 || st.DequeuedTotal != 10 || st.Depth != 1 || st.NextID != 12 {
		t.Fatalf("stats after cycles %+v", st)
	}
	// And across a restart.
	waitDormant(t, e, "q")
	e.Close()
	e = openT(t, fastIdle(dir))
	if m, ok := deq(t, e, "q"); !ok || m.ID != 11 {
		t.Fatalf("after restart: got %d %v, want 11", m.ID, ok)
	}
}

func TestDormantNotWhileHeldOrWaitedOn(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, fastIdle(dir))
	enq(t, e, "leased", "x", EnqueueOptions{})
	m, ok, err := e.Lease(context.Background(), "leased", 0, time.Hour)
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	enq(t, e, "delayed", "x", EnqueueOptions{Delay: time.Hour})
	if _, ok := deq(t, e, "delayed"); ok {
		t.Fatal("a delayed message came at once")
	}
	enq(t, e, "idle", "x", EnqueueOptions{})
	enq(t, e, "polled", "x", EnqueueOptions{})
	deq(t, e, "polled")
	got := make(chan Message, 1)
	go func() {
		m, _, err := e.Dequeue(context.Background(), "polled", 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		e.mu.RLock()
		q := e.queues["polled"]
		e.mu.RUnlock()
		if q != nil && q.waiters.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the long poll did not start")
		}
		time.Sleep(time.Millisecond)
	}
	// The idle queue retiring shows that idle queues were looked at.
	waitDormant(t, e, "idle")
	time.Sleep(100 * time.Millisecond) // many idle periods more
	for _, n := range []string{"leased", "delayed", "polled"} {
		if !isOpen(e, n) {
			t.Errorf("queue %s retired while something was held or waited on it", n)
		}
	}
	if err := e.Ack("leased", m.Receipt); err != nil {
		t.Fatalf("ack after the idle period: %v", err)
	}
	enq(t, e, "polled", "late", EnqueueOptions{})
	if m := <-got; string(m.Body) != "late" {
		t.Fatalf("long poll got %q", m.Body)
	}
	// With nothing held any more it retires; a receipt then is refused.
	waitDormant(t, e, "leased")
	if err := e.Ack("leased", m.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("ack on a dormant queue: %v, want ErrLeaseExpired", err)
	}
	if !isDormant(e, "leased") {
		t.Fatal("an ack reopened a dormant queue")
	}
}

func TestLongPollOnDormantQueue(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, fastIdle(dir))
	enq(t, e, "p", "x", EnqueueOptions{})
	deq(t, e, "p")
	waitDormant(t, e, "p")
	// An empty dormant queue answers at once without reopening.
	if _, ok := deq(t, e, "p"); ok || !isDormant(e, "p") {
		t.Fatalf("dequeue of an empty dormant queue: ok %v, dormant %v", ok, isDormant(e, "p"))
	}
	got := make(chan Message, 1)
	go func() {
		m, _, err := e.Dequeue(context.Background(), "p", 30*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	time.Sleep(20 * time.Millisecond)
	enq(t, e, "p", "y", EnqueueOptions{})
	if m := <-got; string(m.Body) != "y" || m.ID != 2 {
		t.Fatalf("long poll got %d %q", m.ID, m.Body)
	}
}

// Queues retire and reopen all the time while producers and consumers use
// them: every message comes exactly once, in order per queue.
func TestDormantRace(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, IdleClose: time.Millisecond, CompactInterval: time.Millisecond, SegmentBytes: 4096})
	const queues, perQueue = 4, 300
	var retirements atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
			e.mu.RLock()
			retirements.Add(int64(len(e.dormant)))
			e.mu.RUnlock()
		}
	}()
	var wg sync.WaitGroup
	for qi := 0; qi < queues; qi++ {
		name := fmt.Sprintf("r%d", qi)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < perQueue; i++ {
				key := ""
				if i%3 == 0 {
					key = fmt.Sprintf("k%d", i)
				}
				if _, err := e.Enqueue(context.Background(), name, []byte(fmt.Sprint(i)), EnqueueOptions{Key: key}); err != nil {
					t.Errorf("%s enqueue %d: %v", name, i, err)
					return
				}
				if rand.IntN(20) == 0 {
					time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				}
			}
		}()
		go func() {
			defer wg.Done()
			var last uint64
			for n := 0; n < perQueue; {
				var m Message
				var ok bool
				var err error
				if rand.IntN(2) == 0 {
					m, ok, err = e.Dequeue(context.Background(), name, 50*time.Millisecond)
				} else {
					m, ok, err = e.Lease(context.Background(), name, 0, time.Minute)
					if ok && err == nil {
						err = e.Ack(name, m.Receipt)
					}
				}
				if err != nil {
					t.Errorf("%s dequeue: %v", name, err)
					return
				}
				if !ok {
					continue
				}
				if m.ID != last+1 || string(m.Body) != fmt.Sprint(m.ID-1) {
					t.Errorf("%s: got id %d %q after %d", name, m.ID, m.Body, last)
					return
				}
				last = m.ID
				n++
				if rand.IntN(20) == 0 {
					time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if retirements.Load() == 0 {
		t.Fatal("no queue retired during the run: the test tested nothing")
	}
	for qi := 0; qi < queues; qi++ {
		if m, ok := deq(t, e, fmt.Sprintf("r%d", qi)); ok {
			t.Fatalf("r%d: extra message %d", qi, m.ID)
		}
		st, _ := e.Stats(fmt.Sprintf("r%d", qi))
		if st.EnqueuedTotal != perQueue || st.DequeuedTotal != perQueue || st.Depth != 0 {
			t.Fatalf("r%d stats %+v", qi, st)
		}
	}
	t.Logf("dormant samples: %d", retirements.Load())
}

func TestStartDoesNotOpenEveryQueue(t *testing.T) {
	const n = startOpen + 200
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, IdleClose: -1})
	for i := 0; i < n; i++ {
		enq(t, e, fmt.Sprintf("q%03d", i), fmt.Sprintf("m%d", i), EnqueueOptions{})
	}
	enq(t, e, "leased", "x", EnqueueOptions{})
	if _, _, err := e.Lease(context.Background(), "leased", 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	e.Close()

	e = openT(t, Options{Dir: dir})
	// The lock file, the first startOpen queues (the one holding a lease,
	// visible again now, among them).
	if fds := fdsUnder(t, dir); fds > 1+2*(startOpen+1) {
		t.Fatalf("%d files open under the data directory after start with %d queues", fds, n+1)
	}
	all := e.AllStats()
	if len(all) != n+1 {
		t.Fatalf("AllStats has %d queues, want %d", len(all), n+1)
	}
	for _, st := range all {
		if st.Depth != 1 || st.Segments != 1 || st.DiskBytes == 0 {
			t.Fatalf("stats %+v", st)
		}
	}
	if fds := fdsUnder(t, dir); fds > 1+2*(startOpen+1) {
		t.Fatalf("AllStats opened queues: %d files open", fds)
	}
	for i := 0; i < n; i++ {
		m, ok := deq(t, e, fmt.Sprintf("q%03d", i))
		if !ok || string(m.Body) != fmt.Sprintf("m%d", i) {
			t.Fatalf("q%03d: got %q %v", i, m.Body, ok)
		}
	}
	if m, ok := deq(t, e, "leased"); !ok || m.DeliveryCount != 2 {
		t.Fatalf("leased: got %+v %v", m, ok)
	}
}

func TestCreateDoesNotHoldTheEngineLock(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	enq(t, e, "fast", "x", EnqueueOptions{})
	entered := make(chan struct{})
	release := make(chan struct{})
	testHookOpen = func(name string) {
		if name == "slow" {
			close(entered)
			<-release
		}
	}
	t.Cleanup(func() { testHookOpen = nil })
	slow := make(chan uint64, 2)
	for i := 0; i < 2; i++ {
		go func() {
			id, err := e.Enqueue(context.Background(), "slow", []byte("s"), EnqueueOptions{})
			if err != nil {
				t.Error(err)
			}
			slow <- id
		}()
	}
	<-entered
	others := make(chan error, 1)
	go func() {
		if _, err := e.Enqueue(context.Background(), "fast", []byte("y"), EnqueueOptions{}); err != nil {
			others <- err
			return
		}
		if _, _, err := e.Dequeue(context.Background(), "fast", 0); err != nil {
			others <- err
			return
		}
		_, err := e.Enqueue(context.Background(), "other", []byte("z"), EnqueueOptions{})
		others <- err
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("other queues waited for a queue being created")
	}
	if st, ok := e.Stats("slow"); ok {
		t.Fatalf("a queue being created has stats %+v", st)
	}
	close(release)
	a, b := <-slow, <-slow
	if a+b != 3 {
		t.Fatalf("the two enqueues to the new queue got ids %d and %d, want 1 and 2", a, b)
	}
}

func TestDormantQueueExpiresOnTime(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	opts := fastIdle(dir)
	opts.Now = clk.Now
	opts.SegmentAge = time.Minute
	e := openT(t, opts)
	enq(t, e, "t", "gone soon", EnqueueOptions{TTL: 30 * time.Second})
	waitDormant(t, e, "t")
	clk.Advance(2 * time.Minute)
	// wakeDormant reopens it; its compactor seals the aged segment and
	// deletes it, expired.
	for deadline := time.Now().Add(20 * time.Second); ; {
		st, _ := e.Stats("t")
		// Not segment.List, which would clean up after the engine.
		ents, err := os.ReadDir(filepath.Join(dir, "t"))
		if err != nil {
			t.Fatal(err)
		}
		var bases []string
		for _, ent := range ents {
			if ent.IsDir() {
				bases = append(bases, ent.Name())
			}
		}
		if st.ExpiredTotal == 1 && st.Depth == 0 && len(bases) == 1 && bases[0] == segment.Name(2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired message not reclaimed from a dormant queue: stats %+v, segments %v", st, bases)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMaxOpenQueues(t *testing.T) {
	const maxOpen, n = 8, 50
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, MaxOpenQueues: maxOpen})
	enq(t, e, "held", "x", EnqueueOptions{})
	m, _, err := e.Lease(context.Background(), "held", 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	peak := 0
	for i := 0; i < n; i++ {
		enq(t, e, fmt.Sprintf("q%02d", i), fmt.Sprintf("m%d", i), EnqueueOptions{})
		e.mu.RLock()
		peak = max(peak, len(e.queues))
		e.mu.RUnlock()
	}
	if peak > maxOpen {
		t.Fatalf("%d queues open at once, MaxOpenQueues %d", peak, maxOpen)
	}
	if fds := fdsUnder(t, dir); fds > 1+3*maxOpen {
		t.Fatalf("%d files open with MaxOpenQueues %d", fds, maxOpen)
	}
	if !isOpen(e, "held") {
		t.Fatal("a queue holding a lease was closed to make room")
	}
	if err := e.Ack("held", m.Receipt); err != nil {
		t.Fatalf("ack: %v", err)
	}
	for i := 0; i < n; i++ {
		got, ok := deq(t, e, fmt.Sprintf("q%02d", i))
		if !ok || string(got.Body) != fmt.Sprintf("m%d", i) {
			t.Fatalf("q%02d: got %q %v", i, got.Body, ok)
		}
	}
	if len(e.AllStats()) != n+1 {
		t.Fatalf("AllStats: %d queues, want %d", len(e.AllStats()), n+1)
	}
}

// failingSync fails fsync(2), as a disk that lost the data would.
type failingSync struct{ segment.File }

func (failingSync) Sync() error { return errors.New("injected fsync failure") }

// Close reports the final fsyncs that failed while something acknowledged
// was unsynced (here --fsync never), joined, and says so again when called
// twice; what was committed before is still there after it.
func TestCloseReturnsFinalSyncErrors(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, Fsync: FsyncNever})
	enq(t, e, "q", "kept", EnqueueOptions{})
	enq(t, e, "r", "fine", EnqueueOptions{})
	// The commit loop of q is idle; Close's channel orders this before
	// its final turn.
	e.mu.RLock()
	q := e.queues["q"]
	e.mu.RUnlock()
	q.writer.WrapFile(func(f segment.File) segment.File { return failingSync{f} })
	err := e.Close()
	if err == nil || !strings.Contains(err.Error(), "queue q: final segment fsync") || !strings.Contains(err.Error(), "injected fsync failure") || strings.Contains(err.Error(), "queue r") {
		t.Fatalf("Close = %v, want the final segment fsync of q", err)
	}
	if again := e.Close(); again == nil || again.Error() != err.Error() {
		t.Fatalf("second Close = %v, want %v", again, err)
	}
	e2 := openT(t, Options{Dir: dir})
	if m, ok := deq(t, e2, "q"); !ok || string(m.Body) != "kept" {
		t.Fatalf("after a failed close: %q %v", m.Body, ok)
	}
	if err := e2.Close(); err != nil {
		t.Fatalf("clean Close = %v", err)
	}
}

// With --fsync always every acknowledgement was fsynced before it was
// given: a failing final fsync loses nothing and is no close error (a
// SIGTERM then exits 0; TestReliabilityInjectedIOErrors).
func TestCloseFinalSyncFailureAfterAlwaysIsLoggedOnly(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	enq(t, e, "q", "kept", EnqueueOptions{})
	e.mu.RLock()
	q := e.queues["q"]
	e.mu.RUnlock()
	q.writer.WrapFile(func(f segment.File) segment.File { return failingSync{f} })
	if err := e.Close(); err != nil {
		t.Fatalf("Close = %v, want nil: nothing acknowledged was unsynced", err)
	}
	e2 := openT(t, Options{Dir: dir})
	if m, ok := deq(t, e2, "q"); !ok || string(m.Body) != "kept" {
		t.Fatalf("after the close: %q %v", m.Body, ok)
	}
}

// A ?sync=1 batch in interval mode fsyncs the segment only: the cursor
// write before it stays due for the background fsync (syncWriter once
// cleared dirty, so that fsync was skipped, and a failed background cursor
// fsync was not retried).
func TestSyncBatchLeavesTheCursorFsyncDue(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir(), Fsync: FsyncInterval, FsyncInterval: time.Hour, CompactInterval: time.Hour})
	enq(t, e, "q", "a", EnqueueOptions{})
	if _, ok := deq(t, e, "q"); !ok {
		t.Fatal("no message")
	}
	enq(t, e, "q", "b", EnqueueOptions{Sync: true})
	e.mu.RLock()
	q := e.queues["q"]
	e.mu.RUnlock()
	// The commit loop is idle; Enqueue's return (its batch's done channel)
	// orders the loop's writes before this read.
	if !q.dirty {
		t.Fatal("the cursor written in interval mode is no longer due for an fsync after a sync batch")
	}
}

// A final hwm write that fails (a full disk) is no close error: the bound
// reserved ahead stays and ids go on from it.
func TestCloseWithFailedFinalHWMWrite(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	id := enq(t, e, "q", "kept", EnqueueOptions{})
	// The final hwm write goes through q/hwm.tmp: a directory there
	// makes it fail.
	if err := os.Mkdir(filepath.Join(dir, "q", "hwm.tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "q", "hwm.tmp")); err != nil {
		t.Fatal(err)
	}
	e2 := openT(t, Options{Dir: dir})
	if next := enq(t, e2, "q", "next", EnqueueOptions{}); next <= id {
		t.Fatalf("id %d after %d", next, id)
	}
}
