package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/mqueue/mqueue/metrics"
	"github.com/mqueue/mqueue/segment"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openT(t testing.TB, opts Options) *Engine {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	e, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func enq(t testing.TB, e *Engine, q, body string, o EnqueueOptions) uint64 {
	t.Helper()
	id, err := e.Enqueue(context.Background(), q, []byte(body), o)
	if err != nil {
		t.Fatalf("Enqueue(%s, %q): %v", q, body, err)
	}
	return id
}

func deq(t testing.TB, e *Engine, q string) (Message, bool) {
	t.Helper()
	m, ok, err := e.Dequeue(context.Background(), q, 0)
	if err != nil {
		t.Fatalf("Dequeue(%s): %v", q, err)
	}
	return m, ok
}

func TestFIFOAndIDsAcrossReopen(t *testing.T) {
	for _, mode := range []FsyncMode{FsyncAlways, FsyncInterval, FsyncNever} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, Fsync: mode, SegmentBytes: 300}
			e := openT(t, opts)
			var ids []uint64
			for i := 0; i < 20; i++ {
				ids = append(ids, enq(t, e, "q", fmt.Sprintf("m%02d", i), EnqueueOptions{}))
			}
			for i := 1; i < len(ids); i++ {
				if ids[i] <= ids[i-1] {
					t.Fatalf("ids not increasing: %v", ids)
				}
			}
			for i := 0; i < 5; i++ {
				m, ok := deq(t, e, "q")
				if !ok || string(m.Body) != fmt.Sprintf("m%02d", i) || m.ID != ids[i] {
					t.Fatalf("dequeue %d: got %v %q id %d", i, ok, m.Body, m.ID)
				}
			}
			if st, _ := e.Stats("q"); st.Segments < 2 {
				t.Fatalf("want rotation with 300-byte segments, got %d segments", st.Segments)
			}
			e.Close()

			e = openT(t, opts)
			st, ok := e.Stats("q")
			if !ok || st.Depth != 15 || st.ReadID != ids[5] {
				t.Fatalf("after reopen: %+v", st)
			}
			next := enq(t, e, "q", "after", EnqueueOptions{})
			if next <= ids[len(ids)-1] {
				t.Fatalf("id %d reused or lower than %d", next, ids[len(ids)-1])
			}
			for i := 5; i < 20; i++ {
				m, ok := deq(t, e, "q")
				if !ok || string(m.Body) != fmt.Sprintf("m%02d", i) {
					t.Fatalf("dequeue %d after reopen: %v %q", i, ok, m.Body)
				}
			}
			if m, ok := deq(t, e, "q"); !ok || string(m.Body) != "after" || m.ID != next {
				t.Fatalf("last: %v %q", ok, m.Body)
			}
			if _, ok := deq(t, e, "q"); ok {
				t.Fatal("queue should be empty")
			}
		})
	}
}

func TestUnknownQueueIsEmptyAndInvalidNames(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	if _, ok := deq(t, e, "nope"); ok {
		t.Fatal("unknown queue returned a message")
	}
	if _, ok := e.Stats("nope"); ok {
		t.Fatal("unknown queue has stats")
	}
	for _, name := range []string{"", "..", ".", "a/b", "-x", "_x", "a b", string(bytes.Repeat([]byte("a"), 65))} {
		if _, err := e.Enqueue(context.Background(), name, []byte("x"), EnqueueOptions{}); !errors.Is(err, ErrInvalidQueueName) {
			t.Errorf("Enqueue(%q): %v, want ErrInvalidQueueName", name, err)
		}
	}
	if _, err := e.Enqueue(context.Background(), "q", nil, EnqueueOptions{}); !errors.Is(err, ErrEmptyMessage) {
		t.Errorf("empty message: %v", err)
	}
}

func TestCursorPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	for i := 0; i < 10; i++ {
		enq(t, e, "q", fmt.Sprint(i), EnqueueOptions{})
	}
	for i := 0; i < 4; i++ {
		deq(t, e, "q")
	}
	e.Close()
	// The cursor file alone says where reading resumes.
	c, readID, corrupt, err := openCursor(filepath.Join(dir, "q"))
	if err != nil || corrupt || readID != 5 {
		t.Fatalf("cursor: %d corrupt=%v err=%v", readID, corrupt, err)
	}
	c.close()
	e = openT(t, Options{Dir: dir})
	m, ok := deq(t, e, "q")
	if !ok || string(m.Body) != "4" {
		t.Fatalf("after reopen got %q", m.Body)
	}
}

func TestTTLSkipAndReclaim(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	e := openT(t, Options{Dir: dir, Now: clk.Now, SegmentBytes: 200, SegmentAge: time.Hour, CompactInterval: 10 * time.Millisecond, Metrics: metrics.NewEngine(reg)})
	for i := 0; i < 10; i++ {
		enq(t, e, "q", fmt.Sprintf("short-lived-%d", i), EnqueueOptions{TTL: time.Minute})
	}
	keep := enq(t, e, "q", "forever", EnqueueOptions{})
	st, _ := e.Stats("q")
	if st.Segments < 3 {
		t.Fatalf("want several segments, got %d", st.Segments)
	}
	clk.Advance(2 * time.Minute)
	// The compactor deletes the expired sealed segments.
	deadline := time.Now().Add(5 * time.Second)
	var bases []uint64
	for {
		st, _ = e.Stats("q")
		var err error
		if bases, err = segment.List(filepath.Join(dir, "q")); err != nil {
			t.Fatal(err)
		}
		if (st.Segments == 1 && len(bases) == 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(bases) != 1 || st.Segments != 1 {
		t.Fatalf("expired segments not deleted: on disk %v, stats %+v", bases, st)
	}
	m, ok := deq(t, e, "q")
	if !ok || m.ID != keep || string(m.Body) != "forever" {
		t.Fatalf("got %v %q id %d, want forever id %d", ok, m.Body, m.ID, keep)
	}
	st, _ = e.Stats("q")
	if st.ExpiredTotal != 10 || st.Depth != 0 {
		t.Fatalf("stats after expiry: %+v", st)
	}
}

func TestTTLSkipOnRead(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	enq(t, e, "q", "a", EnqueueOptions{TTL: time.Second})
	b := enq(t, e, "q", "b", EnqueueOptions{})
	clk.Advance(time.Second)
	m, ok := deq(t, e, "q")
	if !ok || m.ID != b {
		t.Fatalf("expired message served: %q", m.Body)
	}
	if st, _ := e.Stats("q"); st.ExpiredTotal != 1 || st.DequeuedTotal != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestConsumedSegmentsDeleted(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, SegmentBytes: 200, CompactInterval: 10 * time.Millisecond})
	for i := 0; i < 30; i++ {
		enq(t, e, "q", fmt.Sprintf("message-%d", i), EnqueueOptions{})
	}
	for i := 0; i < 30; i++ {
		if _, ok := deq(t, e, "q"); !ok {
			t.Fatalf("dequeue %d: empty", i)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		bases, _ := segment.List(filepath.Join(dir, "q"))
		if len(bases) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumed segments left on disk: %v", bases)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLongPollWakesOnEnqueue(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	got := make(chan Message, 1)
	go func() {
		m, _, _ := e.Dequeue(context.Background(), "new", 5*time.Second)
		got <- m
	}()
	time.Sleep(50 * time.Millisecond)
	id := enq(t, e, "new", "hello", EnqueueOptions{})
	select {
	case m := <-got:
		if m.ID != id {
			t.Fatalf("long poll got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll not woken")
	}
}

func TestQueueFullAndDiskFull(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir(), MaxQueueDepth: 2})
	enq(t, e, "q", "1", EnqueueOptions{})
	enq(t, e, "q", "2", EnqueueOptions{})
	if _, err := e.Enqueue(context.Background(), "q", []byte("3"), EnqueueOptions{}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("want ErrQueueFull, got %v", err)
	}
	deq(t, e, "q")
	enq(t, e, "q", "3", EnqueueOptions{})

	e2 := openT(t, Options{Dir: t.TempDir(), MaxDiskBytes: 1000})
	var n int
	for {
		_, err := e2.Enqueue(context.Background(), "q", bytes.Repeat([]byte("x"), 100), EnqueueOptions{})
		if errors.Is(err, ErrDiskFull) {
			break
		}
		if err != nil || n > 20 {
			t.Fatalf("after %d: %v", n, err)
		}
		n++
	}
	if n == 0 || e2.DiskBytes() > 1000 {
		t.Fatalf("stored %d messages, disk %d", n, e2.DiskBytes())
	}
	// Dequeue keeps working on a full disk.
	for i := 0; i < n; i++ {
		if _, ok := deq(t, e2, "q"); !ok {
			t.Fatalf("dequeue %d on full disk failed", i)
		}
	}
}

func TestLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	openT(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir, Logger: quietLogger()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

// TestGroupCommitBatches checks that concurrent producers share fsyncs.
func TestGroupCommitBatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewEngine(reg)
	e := openT(t, Options{Dir: t.TempDir(), Metrics: m})
	const producers, each = 32, 50
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := e.Enqueue(context.Background(), "q", []byte("x"), EnqueueOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	batches := histogramCount(t, reg, "mqueue_commit_batch_messages")
	if batches == 0 || batches >= producers*each {
		t.Fatalf("%d batches for %d messages: group commit did not batch", batches, producers*each)
	}
	t.Logf("%d messages in %d batches (%.1f per batch)", producers*each, batches, float64(producers*each)/float64(batches))
}

// family returns the first metric of the named family in reg.
func family(t testing.TB, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func histogramCount(t testing.TB, reg *prometheus.Registry, name string) uint64 {
	return family(t, reg, name).GetHistogram().GetSampleCount()
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	return family(t, reg, name).GetCounter().GetValue()
}

// TestConcurrentProducersConsumers runs producers, consumers, rotation and
// compaction at once (meant for -race) and checks every message is
// delivered exactly once, in id order per consumer.
func TestConcurrentProducersConsumers(t *testing.T) {
	// Small, quickly aging segments: size and age rotation and compaction
	// all run while producers and consumers do.
	e := openT(t, Options{Dir: t.TempDir(), SegmentBytes: 4096, SegmentAge: 20 * time.Millisecond, CompactInterval: 5 * time.Millisecond})
	const producers, consumers, each = 8, 4, 300
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := e.Enqueue(context.Background(), "q", []byte(fmt.Sprintf("%d-%d", p, i)), EnqueueOptions{}); err != nil {
					t.Error(err)
					return
				}
			}
		}(p)
	}
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var total atomic.Int64
	var cwg sync.WaitGroup
	for c := 0; c < consumers; c++ {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			var last uint64
			for total.Load() < producers*each {
				m, ok, err := e.Dequeue(context.Background(), "q", 50*time.Millisecond)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					continue
				}
				if m.ID <= last {
					t.Errorf("consumer saw id %d after %d", m.ID, last)
				}
				last = m.ID
				mu.Lock()
				if seen[m.ID] {
					t.Errorf("id %d delivered twice", m.ID)
				}
				seen[m.ID] = true
				mu.Unlock()
				total.Add(1)
			}
		}()
	}
	wg.Wait()
	cwg.Wait()
	if len(seen) != producers*each {
		t.Fatalf("delivered %d of %d", len(seen), producers*each)
	}
	st, _ := e.Stats("q")
	t.Logf("race run: %d messages, %d producers, %d consumers, %d segments left, depth %d", len(seen), producers, consumers, st.Segments, st.Depth)
}

func TestCloseIsFinalAndFast(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	done := make(chan struct{})
	go func() {
		e.Dequeue(context.Background(), "q", 30*time.Second)
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	e.Close()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("long poll not released by Close")
	}
	if _, err := e.Enqueue(context.Background(), "q", []byte("x"), EnqueueOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Close: %v", err)
	}
	if _, _, err := e.Dequeue(context.Background(), "q", 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dequeue after Close: %v", err)
	}
}

func TestMetricsCorruptCounter(t *testing.T) {
	// A bit flip in a sealed segment is skipped, counted and never served.
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, SegmentBytes: 100})
	for i := 0; i < 6; i++ {
		enq(t, e, "q", fmt.Sprintf("payload-%d", i), EnqueueOptions{})
	}
	e.Close()
	bases, _ := segment.List(filepath.Join(dir, "q"))
	path := segment.DataPath(filepath.Join(dir, "q"), bases[0])
	data, _ := os.ReadFile(path)
	data[len(data)-2] ^= 0x40 // inside the payload of the segment's last record
	os.WriteFile(path, data, 0o640)
	reg := prometheus.NewRegistry()
	e = openT(t, Options{Dir: dir, SegmentBytes: 100, Metrics: metrics.NewEngine(reg)})
	var bodies []string
	for {
		m, ok := deq(t, e, "q")
		if !ok {
			break
		}
		bodies = append(bodies, string(m.Body))
	}
	for _, b := range bodies {
		if !bytes.HasPrefix([]byte(b), []byte("payload-")) {
			t.Fatalf("bad payload served: %q", b)
		}
	}
	if len(bodies) != 5 {
		t.Fatalf("got %v, want 5 of 6 (one corrupt)", bodies)
	}
	if got := counterValue(t, reg, "mqueue_corrupt_records_total"); got != 1 {
		t.Fatalf("corrupt_records_total = %v", got)
	}
}

// A cancelled context stops an enqueue before it joins a batch: nothing is
// stored.
func TestEnqueueHonoursCancelledContext(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Enqueue(ctx, "q", []byte("x"), EnqueueOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue: %v", err)
	}
	if _, _, err := e.EnqueueBatch(ctx, "q", []BatchMessage{{Body: []byte("x")}}, BatchOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("EnqueueBatch: %v", err)
	}
	if st, ok := e.Stats("q"); ok && st.Depth != 0 {
		t.Fatalf("stored: %+v", st)
	}
}
