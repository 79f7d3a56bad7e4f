package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/metrics"
	"github.com/mqueue/mqueue/segment"
)

func batchOf(bodies ...string) []BatchMessage {
	out := make([]BatchMessage, len(bodies))
	for i, b := range bodies {
		out[i] = BatchMessage{Body: []byte(b)}
	}
	return out
}

// A batch alone is one group commit of all its messages.
func TestEnqueueBatchIsOneCommit(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := openT(t, Options{Dir: t.TempDir(), Metrics: metrics.NewEngine(reg)})
	first, _, err := e.EnqueueBatch(context.Background(), "q", batchOf("a", "b", "c", "d"), BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if first != 1 {
		t.Fatalf("first id %d, want 1", first)
	}
	h := family(t, reg, "mqueue_commit_batch_messages").GetHistogram()
	if count, sum := h.GetSampleCount(), h.GetSampleSum(); count != 1 || sum != 4 {
		t.Fatalf("commits: %d holding %v messages, want 1 holding 4", h.GetSampleCount(), h.GetSampleSum())
	}
}

// A batch takes consecutive ids even while single producers race it, and
// comes back whole and in order after a reopen.
func TestEnqueueBatchConsecutiveIDsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				enq(t, e, "q", fmt.Sprintf("single-%d-%d", g, i), EnqueueOptions{})
			}
		})
	}
	const n = 300
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("batch-%03d", i)
	}
	time.Sleep(time.Millisecond) // let the singles start
	first, _, err := e.EnqueueBatch(context.Background(), "q", batchOf(bodies...), BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	e.Close()

	e = openT(t, Options{Dir: dir})
	seen := 0
	for {
		m, ok := deq(t, e, "q")
		if !ok {
			break
		}
		if m.ID >= first && m.ID < first+n {
			if want := bodies[m.ID-first]; string(m.Body) != want {
				t.Fatalf("id %d = %q, want %q: the batch's ids are not consecutive", m.ID, m.Body, want)
			}
			seen++
		}
	}
	if seen != n {
		t.Fatalf("found %d of the batch's %d messages after reopen", seen, n)
	}
}

// A batch that would pass a cap is refused whole: nothing of it is stored.
func TestEnqueueBatchAllOrNothingAtCaps(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir(), MaxQueueDepth: 5})
	for i := range 3 {
		enq(t, e, "q", fmt.Sprint(i), EnqueueOptions{})
	}
	if _, _, err := e.EnqueueBatch(context.Background(), "q", batchOf("a", "b", "c"), BatchOptions{}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("batch of 3 onto depth 3 of 5: %v, want ErrQueueFull", err)
	}
	if st, _ := e.Stats("q"); st.Depth != 3 {
		t.Fatalf("depth %d after a refused batch, want 3", st.Depth)
	}
	if _, _, err := e.EnqueueBatch(context.Background(), "q", batchOf("a", "b"), BatchOptions{}); err != nil {
		t.Fatalf("batch of 2 onto depth 3 of 5: %v", err)
	}

	e2 := openT(t, Options{Dir: t.TempDir(), MaxDiskBytes: 1 << 20})
	big := make([]byte, 400<<10)
	msgs := []BatchMessage{{Body: big}, {Body: big}, {Body: big}}
	if _, _, err := e2.EnqueueBatch(context.Background(), "q", msgs, BatchOptions{}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("1.2 MB batch under a 1 MiB cap: %v, want ErrDiskFull", err)
	}
	if st, ok := e2.Stats("q"); ok && st.Depth != 0 {
		t.Fatalf("depth %d after a refused batch, want 0", st.Depth)
	}

	if _, _, err := e2.EnqueueBatch(context.Background(), "q", batchOf("a", ""), BatchOptions{}); !errors.Is(err, ErrEmptyMessage) {
		t.Fatalf("batch with an empty message: %v, want ErrEmptyMessage", err)
	}
	if _, _, err := e2.EnqueueBatch(context.Background(), "q", nil, BatchOptions{}); err == nil {
		t.Fatal("empty batch accepted")
	}
}

// DequeueBatch pops in id order, skips expired messages, honours max and
// maxBytes, and persists the cursor: nothing popped comes back after reopen.
func TestDequeueBatch(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	e := openT(t, Options{Dir: dir, Now: clk.Now})
	for i := range 10 {
		o := EnqueueOptions{}
		if i == 2 {
			o.TTL = time.Second
		}
		enq(t, e, "q", fmt.Sprintf("m%d", i), o)
	}
	clk.Advance(2 * time.Second)
	ctx := context.Background()
	msgs, err := e.DequeueBatch(ctx, "q", 4, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := bodiesOf(msgs); got != "m0 m1 m3 m4" {
		t.Fatalf("first batch %q, want m0 m1 m3 m4 (m2 expired)", got)
	}
	// maxBytes 3: m5 (2 bytes) then m6 reaches 4 ≥ 3, so two.
	if msgs, _ = e.DequeueBatch(ctx, "q", 100, 3, 0); bodiesOf(msgs) != "m5 m6" {
		t.Fatalf("byte-capped batch %q, want m5 m6", bodiesOf(msgs))
	}
	// A cap below one message still takes one.
	if msgs, _ = e.DequeueBatch(ctx, "q", 100, 1, 0); bodiesOf(msgs) != "m7" {
		t.Fatalf("batch under a 1-byte cap %q, want m7", bodiesOf(msgs))
	}
	e.Close()

	e = openT(t, Options{Dir: dir, Now: clk.Now})
	msgs, err = e.DequeueBatch(ctx, "q", 100, 1<<20, 0)
	if err != nil || bodiesOf(msgs) != "m8 m9" {
		t.Fatalf("after reopen %q, %v; want m8 m9", bodiesOf(msgs), err)
	}
	if msgs, err = e.DequeueBatch(ctx, "q", 100, 1<<20, 0); err != nil || len(msgs) != 0 {
		t.Fatalf("empty queue gave %q, %v", bodiesOf(msgs), err)
	}
	if st, _ := e.Stats("q"); st.Depth != 0 || st.DequeuedTotal != 2 {
		t.Fatalf("stats after draining: %+v", st)
	}
}

// A waiting DequeueBatch wakes when a batch is committed and takes all of it.
func TestDequeueBatchLongPoll(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	got := make(chan []Message, 1)
	go func() {
		msgs, err := e.DequeueBatch(context.Background(), "fresh", 10, 1<<20, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- msgs
	}()
	time.Sleep(50 * time.Millisecond)
	if _, _, err := e.EnqueueBatch(context.Background(), "fresh", batchOf("x", "y", "z"), BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case msgs := <-got:
		if bodiesOf(msgs) != "x y z" {
			t.Fatalf("long poll got %q, want x y z", bodiesOf(msgs))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not wake")
	}
}

func bodiesOf(msgs []Message) string {
	s := ""
	for i, m := range msgs {
		if i > 0 {
			s += " "
		}
		s += string(m.Body)
	}
	return s
}

// A batch whose write a crash cut short is cut off whole at the next open:
// no part of an unacknowledged batch is ever served, and its ids are not
// handed out again.
func TestPartialBatchCutAtOpen(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	for i := range 3 {
		enq(t, e, "q", fmt.Sprintf("single-%d", i), EnqueueOptions{})
	}
	first, _, err := e.EnqueueBatch(context.Background(), "q", batchOf("b0", "b1", "b2", "b3"), BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()

	// What a kill during the batch's write(2) leaves: its first records
	// whole, the last one cut inside.
	qdir := filepath.Join(dir, "q")
	bases, err := segment.List(qdir)
	if err != nil || len(bases) != 1 {
		t.Fatalf("segments %v, %v", bases, err)
	}
	path := segment.DataPath(qdir, bases[0])
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-1); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	e = openT(t, Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	got := drainBodies(t, e, "q")
	if strings.Join(got, " ") != "single-0 single-1 single-2" {
		t.Fatalf("after the torn batch: %q, want the three singles and nothing of the batch", got)
	}
	if !strings.Contains(logs.String(), "atomic batch cut short") {
		t.Errorf("the repair does not say why it cut:\n%s", logs.String())
	}
	if id := enq(t, e, "q", "next", EnqueueOptions{}); id < first+4 {
		t.Fatalf("next id %d reuses an id of the cut batch (%d..%d)", id, first, first+3)
	}
}
