package engine

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The memory budget's figures: 40 queues of 2 MiB each (4 KiB bodies)
// against a budget of 8 MiB, where the per-queue caps alone (8 MiB of tail,
// 32 MiB of held bodies) let each queue keep all of its 2 MiB: 80 MiB.
const (
	memQueues   = 40
	memPerQueue = 512
	memBodySize = 4096
	memBudgetB  = 8 << 20
	// memHeapSlack is what the heap may hold beyond the budget, measured
	// with a heap profile at 2.4 MiB for the tails and 9.6 MiB for the
	// leases: per queue a reader's and a writer's buffer (64 KiB and 48
	// KiB) and a tail ring; with leases the held messages' headers (~150
	// bytes each, 20,480 here: not bodies, so not in the budget), the held
	// maps, and the test's receipts.
	memHeapSlack = 12 << 20
)

func memQueueName(q int) string { return fmt.Sprintf("mem%02d", q) }

// memBody is message i of queue q: its names, then a pattern of both.
func memBody(q, i int) []byte {
	b := make([]byte, memBodySize)
	for j := range b {
		b[j] = byte(q*7 + i*13 + j)
	}
	copy(b, fmt.Sprintf("%s-%05d", memQueueName(q), i))
	return b
}

// heapNow returns the live heap after a full collection.
func heapNow() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// checkMemAccounting asserts, while nothing moves, that the budget counts
// exactly what the queues say they took, within the budget.
func checkMemAccounting(t *testing.T, e *Engine) (tail, held int64) {
	t.Helper()
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, q := range e.queues {
		q.mu.Lock()
		q.tmu.Lock()
		if q.tail.charged < q.tail.bytes || q.tail.charged-q.tail.bytes >= tailReleaseSlack {
			t.Errorf("queue %s: tail charged %d for %d bytes held", q.name, q.tail.charged, q.tail.bytes)
		}
		tail += int64(q.tail.charged)
		held += q.heldBytes
		q.tmu.Unlock()
		q.mu.Unlock()
	}
	gotTail, gotHeld := e.MemoryBytes()
	if gotTail != tail || gotHeld != held {
		t.Fatalf("budget counts tail %d held %d; the queues hold tail %d held %d", gotTail, gotHeld, tail, held)
	}
	if tail+held > e.opts.MaxMemoryBytes {
		t.Fatalf("tail %d + held %d bytes in memory, past the budget %d", tail, held, e.opts.MaxMemoryBytes)
	}
	return tail, held
}

// fillMemQueues enqueues memPerQueue messages to each of memQueues queues,
// all queues at once, while a sampler checks that the budget's counter
// never passes its bound. It returns the highest count seen.
func fillMemQueues(t *testing.T, e *Engine) int64 {
	t.Helper()
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), e.mem.used.Load()))
			select {
			case <-stop:
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, memQueues)
	for q := range memQueues {
		wg.Go(func() {
			for i := 0; i < memPerQueue; i += 8 {
				msgs := make([]BatchMessage, 8)
				for j := range msgs {
					msgs[j].Body = memBody(q, i+j)
				}
				if _, _, err := e.EnqueueBatch(context.Background(), memQueueName(q), msgs, BatchOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return peak.Load()
}

// Past --max-memory-bytes the memory tails of many queues keep fewer
// records, and consumers get the rest from disk: the heap stays within the
// budget (it held all 80 MiB before), and every message comes back byte
// for byte, in order.
func TestMemoryBudgetBoundsTails(t *testing.T) {
	base := heapNow()
	e := openT(t, Options{Dir: t.TempDir(), Fsync: FsyncNever, MaxMemoryBytes: memBudgetB})
	peak := fillMemQueues(t, e)
	if peak > memBudgetB {
		t.Fatalf("the budget counted %d bytes at a moment, past its %d", peak, memBudgetB)
	}
	tail, held := checkMemAccounting(t, e)
	if tail < memBudgetB/2 || held != 0 {
		// The tails still serve what fits: the budget is used, not shunned.
		t.Fatalf("tails hold %d bytes (held %d) of a %d budget after %d MiB enqueued", tail, held, memBudgetB, memQueues*memPerQueue*memBodySize>>20)
	}
	heap := heapNow() - base
	t.Logf("heap %.1f MiB after %d MiB enqueued to %d queues; tails count %.1f MiB", float64(heap)/(1<<20), memQueues*memPerQueue*memBodySize>>20, memQueues, float64(tail)/(1<<20))
	if heap > memBudgetB+memHeapSlack {
		t.Fatalf("heap grew by %d bytes, past the budget %d + %d", heap, memBudgetB, memHeapSlack)
	}

	for q := range memQueues {
		next := 0
		for next < memPerQueue {
			msgs, err := e.DequeueBatch(context.Background(), memQueueName(q), 100, 1<<30, 0)
			if err != nil || len(msgs) == 0 {
				t.Fatalf("queue %d: dequeue after %d: %d messages, %v", q, next, len(msgs), err)
			}
			for _, m := range msgs {
				if !bytes.Equal(m.Body, memBody(q, next)) {
					t.Fatalf("queue %d message %d (id %d): body %.16q is not the one enqueued", q, next, m.ID, m.Body)
				}
				next++
			}
		}
		if _, ok := deq(t, e, memQueueName(q)); ok {
			t.Fatalf("queue %d: a message past the %d enqueued", q, memPerQueue)
		}
	}
	if tail, held := checkMemAccounting(t, e); tail != 0 || held != 0 {
		t.Fatalf("after draining every queue the budget counts tail %d held %d, want 0", tail, held)
	}
}

// Held bodies (leases over many queues) stay within the same budget; past
// it they are read back from their segments, so redeliveries carry the
// right bodies; acks give every byte back.
func TestMemoryBudgetBoundsHeldBodies(t *testing.T) {
	clk := newClock()
	base := heapNow()
	e := openT(t, Options{Dir: t.TempDir(), Fsync: FsyncNever, MaxMemoryBytes: memBudgetB, Now: clk.Now})
	fillMemQueues(t, e)

	receipts := make([][]string, memQueues)
	for q := range memQueues {
		for len(receipts[q]) < memPerQueue {
			msgs, err := e.LeaseBatch(context.Background(), memQueueName(q), 100, 1<<30, 0, time.Minute)
			if err != nil || len(msgs) == 0 {
				t.Fatalf("queue %d: lease after %d: %d messages, %v", q, len(receipts[q]), len(msgs), err)
			}
			for _, m := range msgs {
				if i := len(receipts[q]); !bytes.Equal(m.Body, memBody(q, i)) || m.DeliveryCount != 1 {
					t.Fatalf("queue %d message %d: body %.16q delivery %d", q, i, m.Body, m.DeliveryCount)
				}
				receipts[q] = append(receipts[q], m.Receipt)
			}
		}
	}
	tail, held := checkMemAccounting(t, e)
	if held < memBudgetB/2 || tail != 0 {
		t.Fatalf("held bodies count %d bytes (tail %d) of a %d budget with %d MiB leased", held, tail, memBudgetB, memQueues*memPerQueue*memBodySize>>20)
	}
	heap := heapNow() - base
	t.Logf("heap %.1f MiB with %d MiB leased over %d queues; held bodies count %.1f MiB", float64(heap)/(1<<20), memQueues*memPerQueue*memBodySize>>20, memQueues, float64(held)/(1<<20))
	if heap > memBudgetB+memHeapSlack {
		t.Fatalf("heap grew by %d bytes, past the budget %d + %d", heap, memBudgetB, memHeapSlack)
	}

	// Ack the even ones; the odd ones' leases run out and they come again,
	// kept bodies and read-back ones alike.
	for q := range memQueues {
		for i := 0; i < memPerQueue; i += 2 {
			if err := e.Ack(memQueueName(q), receipts[q][i]); err != nil {
				t.Fatalf("queue %d: ack %d: %v", q, i, err)
			}
		}
	}
	checkMemAccounting(t, e)
	clk.Advance(2 * time.Minute)
	for q := range memQueues {
		next := 1
		for next < memPerQueue {
			msgs, err := e.LeaseBatch(context.Background(), memQueueName(q), 100, 1<<30, 0, time.Minute)
			if err != nil || len(msgs) == 0 {
				t.Fatalf("queue %d: redelivery after %d: %d messages, %v", q, next, len(msgs), err)
			}
			for _, m := range msgs {
				if !bytes.Equal(m.Body, memBody(q, next)) || m.DeliveryCount != 2 {
					t.Fatalf("queue %d message %d redelivered: body %.16q delivery %d", q, next, m.Body, m.DeliveryCount)
				}
				if err := e.Ack(memQueueName(q), m.Receipt); err != nil {
					t.Fatalf("queue %d: ack %d: %v", q, next, err)
				}
				next += 2
			}
		}
		if st, _ := e.Stats(memQueueName(q)); st.InFlight != 0 || st.Depth != 0 {
			t.Fatalf("queue %d at the end: %+v", q, st)
		}
	}
	if tail, held := checkMemAccounting(t, e); tail != 0 || held != 0 {
		t.Fatalf("after every ack the budget counts tail %d held %d, want 0", tail, held)
	}
}

// A closing queue gives its tail and held bodies back to the budget.
func TestMemoryBudgetReturnedAtClose(t *testing.T) {
	e, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncNever, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for q := range 3 {
		for i := range 4 {
			enq(t, e, memQueueName(q), fmt.Sprintf("m%d", i), EnqueueOptions{})
		}
		lease(t, e, memQueueName(q), time.Minute)
	}
	tail, held := checkMemAccounting(t, e)
	// The leased record still counts in its tail (under tailReleaseSlack
	// of consumed records), and its body in held.
	if tail != 3*4*(2+recordOverhead) || held != 3*2 {
		t.Fatalf("budget counts tail %d held %d, want %d and %d", tail, held, 3*4*(2+recordOverhead), 3*2)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if tail, held := e.MemoryBytes(); tail != 0 || held != 0 {
		t.Fatalf("after Close the budget counts tail %d held %d, want 0", tail, held)
	}
}
