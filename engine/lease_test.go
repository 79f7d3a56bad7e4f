package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

func lease(t *testing.T, e *Engine, q string, d time.Duration) (Message, bool) {
	t.Helper()
	m, ok, err := e.Lease(context.Background(), q, 0, d)
	if err != nil {
		t.Fatalf("Lease(%s, %v): %v", q, d, err)
	}
	if ok && (m.Receipt == "" || m.LeaseExpiresAt.IsZero()) {
		t.Fatalf("leased message %d has no receipt or end: %+v", m.ID, m)
	}
	return m, ok
}

func mustBody(t *testing.T, m Message, ok bool, want string, count int) {
	t.Helper()
	if !ok || string(m.Body) != want || m.DeliveryCount != count {
		t.Fatalf("got ok=%v %q delivery %d, want %q delivery %d", ok, m.Body, m.DeliveryCount, want, count)
	}
}

// A leased message is hidden, not gone; an ack ends it for good, across
// a restart too, and a second ack of the same receipt is refused.
func TestLeaseAckNeverComesBack(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	e := openT(t, Options{Dir: dir, Now: clk.Now})
	for _, b := range []string{"a", "b", "c"} {
		enq(t, e, "q", b, EnqueueOptions{})
	}
	a, ok := lease(t, e, "q", 30*time.Second)
	mustBody(t, a, ok, "a", 1)
	if got, want := a.LeaseExpiresAt, clk.Now().Add(30*time.Second).Truncate(time.Millisecond); !got.Equal(want) {
		t.Errorf("lease ends %v, want %v", got, want)
	}
	b, ok := deq(t, e, "q")
	mustBody(t, b, ok, "b", 1)
	if st, _ := e.Stats("q"); st.InFlight != 1 || st.Depth != 1 {
		t.Fatalf("stats with one lease: in_flight %d depth %d, want 1 and 1", st.InFlight, st.Depth)
	}
	if err := e.Ack("q", a.Receipt); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if err := e.Ack("q", a.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("second Ack = %v, want ErrLeaseExpired", err)
	}
	clk.Advance(time.Minute)
	c, ok := deq(t, e, "q")
	mustBody(t, c, ok, "c", 1)
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("an acked message came back: %q", m.Body)
	}
	e.Close()
	e = openT(t, Options{Dir: dir, Now: clk.Now})
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("after a restart an acked message came back: %q", m.Body)
	}
	if st, _ := e.Stats("q"); st.InFlight != 0 || st.Depth != 0 {
		t.Fatalf("stats after restart: %+v", st)
	}
}

// A lease that runs out makes its message visible again ahead of newer
// ones, with the delivery count raised; the old receipt is dead.
func TestLeaseExpiryRedeliversFirst(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	enq(t, e, "q", "a", EnqueueOptions{})
	enq(t, e, "q", "b", EnqueueOptions{})
	first, ok := lease(t, e, "q", 10*time.Second)
	mustBody(t, first, ok, "a", 1)
	clk.Advance(10 * time.Second)
	if err := e.Ack("q", first.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Ack at the lease's end = %v, want ErrLeaseExpired", err)
	}
	again, ok := lease(t, e, "q", 10*time.Second)
	mustBody(t, again, ok, "a", 2)
	if again.Receipt == first.Receipt {
		t.Fatal("a new lease kept the old receipt")
	}
	if err := e.Ack("q", first.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Ack with the first receipt = %v, want ErrLeaseExpired", err)
	}
	if err := e.Ack("q", again.Receipt); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	b, ok := deq(t, e, "q")
	mustBody(t, b, ok, "b", 1)
	if st, _ := e.Stats("q"); st.RedeliveredTotal != 1 || st.DequeuedTotal != 2 {
		t.Fatalf("redelivered %d dequeued %d, want 1 and 2", st.RedeliveredTotal, st.DequeuedTotal)
	}
}

// After a restart every leased, unacked message is visible again (with
// its count) and its receipt is refused; segments holding it are kept by
// the compactor meanwhile, though everything around it is consumed.
func TestLeasesSurviveRestart(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	opts := Options{Dir: dir, Now: clk.Now, SegmentBytes: 256, CompactInterval: 5 * time.Millisecond}
	e := openT(t, opts)
	var bodies []string
	for i := range 40 {
		b := strings.Repeat(string(rune('a'+i%26)), 20)
		bodies = append(bodies, b)
		enq(t, e, "q", b, EnqueueOptions{})
	}
	first, _ := lease(t, e, "q", time.Hour)  // bodies[0]: left unacked
	second, _ := lease(t, e, "q", time.Hour) // bodies[1]: acked
	if err := e.Ack("q", second.Receipt); err != nil {
		t.Fatal(err)
	}
	third, _ := lease(t, e, "q", time.Hour) // bodies[2]: unacked, delivered twice
	if err := e.Nack("q", third.Receipt, 0); err != nil {
		t.Fatal(err)
	}
	third, _ = lease(t, e, "q", time.Hour)
	mustBody(t, third, true, bodies[2], 2)
	rest := drainBodies(t, e, "q")
	if len(rest) != 37 {
		t.Fatalf("drained %d, want 37", len(rest))
	}
	// Segments after the first are consumed and go; the first stays.
	time.Sleep(100 * time.Millisecond)
	bases, _ := segment.List(filepath.Join(dir, "q"))
	if len(bases) == 0 || bases[0] != first.ID {
		t.Fatalf("segments %v: the one holding leased id %d must stay", bases, first.ID)
	}
	e.Close()

	e = openT(t, opts)
	if st, _ := e.Stats("q"); st.Depth != 2 || st.InFlight != 0 {
		t.Fatalf("after restart depth %d in_flight %d, want 2 visible again", st.Depth, st.InFlight)
	}
	if err := e.Ack("q", first.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Ack with a receipt from before the restart = %v, want ErrLeaseExpired", err)
	}
	m, ok := lease(t, e, "q", time.Hour)
	mustBody(t, m, ok, bodies[0], 2)
	if err := e.Ack("q", m.Receipt); err != nil {
		t.Fatal(err)
	}
	m, ok = deq(t, e, "q")
	mustBody(t, m, ok, bodies[2], 3)
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("unexpected message %d %q", m.ID, m.Body)
	}
	// Nothing is held now: the first segment goes too.
	waitSegmentsPast(t, filepath.Join(dir, "q"), third.ID)
	e.Close()
	e = openT(t, opts)
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("after a second restart: %d %q", m.ID, m.Body)
	}
}

// nack makes a message visible again at once or after a delay; extend
// moves a lease's end.
func TestNackAndExtend(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	enq(t, e, "q", "a", EnqueueOptions{})
	enq(t, e, "q", "b", EnqueueOptions{})
	a, _ := lease(t, e, "q", 10*time.Second)
	if err := e.Nack("q", a.Receipt, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := e.Ack("q", a.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Ack after nack = %v, want ErrLeaseExpired", err)
	}
	if st, _ := e.Stats("q"); st.Delayed != 1 || st.InFlight != 0 {
		t.Fatalf("after a delayed nack: delayed %d in_flight %d", st.Delayed, st.InFlight)
	}
	b, ok := lease(t, e, "q", 10*time.Second)
	mustBody(t, b, ok, "b", 1)
	if _, ok := deq(t, e, "q"); ok {
		t.Fatal("a delayed message was delivered before its delay ended")
	}
	clk.Advance(5 * time.Second)
	a, ok = lease(t, e, "q", 10*time.Second)
	mustBody(t, a, ok, "a", 2)

	// b's lease ends at +10 s from its start; extend it at +9 s to +39 s.
	clk.Advance(4 * time.Second)
	until, err := e.Extend("q", b.Receipt, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(30 * time.Second).Truncate(time.Millisecond); !until.Equal(want) {
		t.Fatalf("extended to %v, want %v", until, want)
	}
	clk.Advance(20 * time.Second)
	if err := e.Ack("q", b.Receipt); err != nil {
		t.Fatalf("Ack within the extended lease: %v", err)
	}
	if _, err := e.Extend("q", a.Receipt, time.Second); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Extend of a lease that ran out = %v", err)
	}
	for _, r := range []string{"", "x", "AAAA.node", a.Receipt + "x"} {
		if err := e.Ack("q", r); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("Ack(%q) = %v, want ErrLeaseExpired", r, err)
		}
	}
	enc, _, _ := strings.Cut(a.Receipt, ".")
	if err := e.Ack("q", enc+".othernode"); !errors.Is(err, ErrLeaseExpired) {
		t.Errorf("Ack of another node's receipt = %v, want ErrLeaseExpired", err)
	}
	if err := e.Ack("nosuchqueue", a.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Errorf("Ack on an unknown queue = %v, want ErrLeaseExpired", err)
	}
}

// A message delivered MaxDeliveries times without an ack moves to
// {name}.dlq instead of a further delivery, once.
func TestMaxDeliveriesMovesToDLQ(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	opts := Options{Dir: dir, Now: clk.Now, MaxDeliveries: 2}
	e := openT(t, opts)
	enq(t, e, "jobs", "poison", EnqueueOptions{TTL: time.Hour})
	enq(t, e, "jobs", "fine", EnqueueOptions{})
	m, _ := lease(t, e, "jobs", time.Second)
	mustBody(t, m, true, "poison", 1)
	clk.Advance(time.Second)
	m, _ = lease(t, e, "jobs", time.Second)
	mustBody(t, m, true, "poison", 2)
	clk.Advance(time.Second)
	m, ok := deq(t, e, "jobs")
	mustBody(t, m, ok, "fine", 1)
	// The move runs beside the dequeue that found it due.
	var dl Message
	deadline := time.Now().Add(5 * time.Second)
	for {
		if dl, ok = deq(t, e, "jobs.dlq"); ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mustBody(t, dl, ok, "poison", 1)
	if dl.ExpiresAt.IsZero() || dl.ExpiresAt.After(clk.Now().Add(time.Hour)) {
		t.Errorf("the DLQ copy expires at %v: want the original's expiry kept", dl.ExpiresAt)
	}
	for time.Now().Before(deadline) {
		if st, _ := e.Stats("jobs"); st.DeadLetteredTotal == 1 && st.Depth == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st, _ := e.Stats("jobs"); st.DeadLetteredTotal != 1 || st.Depth != 0 || st.InFlight != 0 {
		t.Fatalf("stats after the move: %+v", st)
	}
	e.Close()
	e = openT(t, opts)
	if m, ok := deq(t, e, "jobs"); ok {
		t.Fatalf("after restart the dead-lettered message came back: %q", m.Body)
	}
	if m, ok := deq(t, e, "jobs.dlq"); ok {
		t.Fatalf("after restart the DLQ holds a second copy: %q", m.Body)
	}
}

// A long poll is woken when a lease ends.
func TestLongPollWakesWhenLeaseEnds(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	enq(t, e, "q", "a", EnqueueOptions{})
	if _, ok := lease(t, e, "q", time.Second); !ok {
		t.Fatal("no message")
	}
	start := time.Now()
	m, ok, err := e.Dequeue(context.Background(), "q", 5*time.Second)
	if err != nil || !ok || string(m.Body) != "a" || m.DeliveryCount != 2 {
		t.Fatalf("long poll = %q %v %v count %d", m.Body, ok, err, m.DeliveryCount)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("woken after %v; the lease ended after 1 s", d)
	}
}

// A lease log with a torn tail and a corrupt record still opens: the
// records around them count.
func TestLeaseLogDamage(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	e := openT(t, Options{Dir: dir, Now: clk.Now})
	for _, b := range []string{"a", "b", "c"} {
		enq(t, e, "q", b, EnqueueOptions{})
		lease(t, e, "q", time.Hour)
	}
	e.Close()
	path := filepath.Join(dir, "q", format.LeasesFile)
	raw, err := os.ReadFile(path)
	if err != nil || len(raw) != 3*format.LeaseRecordSize {
		t.Fatalf("lease log: %d bytes, %v; want 3 records", len(raw), err)
	}
	raw[format.LeaseRecordSize+7] ^= 0xff                // the second record: its CRC fails
	raw = append(raw, raw[:format.LeaseRecordSize-3]...) // a torn record at the end
	if err := os.WriteFile(path, raw, 0o640); err != nil {
		t.Fatal(err)
	}
	count, done, bad, torn := format.DecodeLeaseLog(raw)
	if len(count) != 2 || len(done) != 0 || bad != 1 || torn != format.LeaseRecordSize-3 {
		t.Fatalf("DecodeLeaseLog: %d leases, %d done, %d bad, %d torn", len(count), len(done), bad, torn)
	}
	e = openT(t, Options{Dir: dir, Now: clk.Now})
	// The second lease record is lost: its message was popped for good as
	// far as the disk knows; the other two are visible again.
	if got := strings.Join(drainBodies(t, e, "q"), ","); got != "a,c" {
		t.Fatalf("after damage: %q, want a,c", got)
	}
}

// A failed lease-log write answers the dequeue with an error and takes it
// back: the message is delivered again, and the log is rewritten whole at
// the next turn.
func TestLeaseLogWriteFailureTakesBack(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	e := openT(t, Options{Dir: dir, Now: clk.Now})
	for _, b := range []string{"a", "b", "c"} {
		enq(t, e, "q", b, EnqueueOptions{})
	}
	a, _ := lease(t, e, "q", time.Hour)
	q, _ := e.queue("q", false)
	// The loop is idle (the lease was answered); break its file.
	q.leaseFile.Close()
	if _, _, err := e.Lease(context.Background(), "q", 0, time.Hour); !errors.Is(err, ErrWrite) {
		t.Fatalf("Lease with a broken log = %v, want ErrWrite", err)
	}
	if err := e.Ack("q", a.Receipt); err != nil {
		t.Fatalf("Ack after the log was rewritten: %v", err)
	}
	b, ok := lease(t, e, "q", time.Hour)
	mustBody(t, b, ok, "b", 1)
	if st, _ := e.Stats("q"); st.InFlight != 1 || st.Depth != 1 {
		t.Fatalf("stats: %+v", st)
	}
	e.Close()
	e = openT(t, Options{Dir: dir, Now: clk.Now})
	if got := strings.Join(drainBodies(t, e, "q"), ","); got != "b,c" {
		t.Fatalf("after restart: %q, want b (leased, unacked) then c", got)
	}
}

// LeaseBatch leases several messages with one write, each its own receipt.
func TestLeaseBatch(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	for _, b := range []string{"a", "b", "c"} {
		enq(t, e, "q", b, EnqueueOptions{})
	}
	msgs, err := e.LeaseBatch(context.Background(), "q", 10, 1<<20, 0, time.Minute)
	if err != nil || len(msgs) != 3 {
		t.Fatalf("LeaseBatch = %d, %v", len(msgs), err)
	}
	if err := e.Ack("q", msgs[1].Receipt); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	msgs, err = e.LeaseBatch(context.Background(), "q", 10, 1<<20, 0, time.Minute)
	if err != nil || bodiesOf(msgs) != "a c" || msgs[0].DeliveryCount != 2 || msgs[0].Receipt == msgs[1].Receipt {
		t.Fatalf("after the leases ran out: %s, %v", bodiesOf(msgs), err)
	}
}

// Producers and leasing consumers at once, with short real leases: some
// messages are acked at once, some nacked, some left to run out (and
// delivered again), some popped for good after a redelivery. In the end
// every message is done exactly once and none is lost.
func TestLeaseConcurrentStress(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir(), SegmentBytes: 4096, CompactInterval: 5 * time.Millisecond})
	const producers, perProducer, consumers = 4, 150, 4
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				opts := EnqueueOptions{}
				if i%10 == 0 {
					opts.Delay = 20 * time.Millisecond
				}
				if _, err := e.Enqueue(context.Background(), "s", []byte(fmt.Sprintf("%d-%d", p, i)), opts); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	done := map[string]int{}
	total := producers * perProducer
	finished := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(done) == total
	}
	deadline := time.Now().Add(30 * time.Second)
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !finished() && time.Now().Before(deadline); n++ {
				m, ok, err := e.Lease(context.Background(), "s", 20*time.Millisecond, 30*time.Millisecond)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					continue
				}
				switch (n + c) % 4 {
				case 0: // left to run out
					continue
				case 1:
					if err := e.Nack("s", m.Receipt, 0); err != nil && !errors.Is(err, ErrLeaseExpired) {
						t.Error(err)
					}
					continue
				case 2:
					err = e.Ack("s", m.Receipt)
				case 3:
					// Pop for good once it was delivered again, else ack.
					if m.DeliveryCount == 1 {
						err = e.Ack("s", m.Receipt)
					} else {
						err = e.Nack("s", m.Receipt, 0)
						if err == nil {
							var mm Message
							mm, ok, err = e.Dequeue(context.Background(), "s", 0)
							if err == nil && ok {
								mu.Lock()
								done[string(mm.Body)]++
								mu.Unlock()
							}
							continue
						}
					}
				}
				if errors.Is(err, ErrLeaseExpired) {
					continue // ran out first (a slow -race run): delivered again
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				done[string(m.Body)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for k, n := range done {
		if n != 1 {
			t.Errorf("message %s done %d times", k, n)
		}
	}
	if len(done) != total {
		t.Fatalf("%d of %d messages done", len(done), total)
	}
	if st, _ := e.Stats("s"); st.InFlight != 0 || st.Depth != 0 || st.Delayed != 0 {
		t.Fatalf("stats at the end: %+v", st)
	}
}

// Past maxHeldBytes a held message keeps only its header; its body is
// read back from its segment when it is delivered again or dead-lettered.
func TestHeldBodiesReadBackPastTheMemoryBound(t *testing.T) {
	old := maxHeldBytes
	maxHeldBytes = 10
	t.Cleanup(func() { maxHeldBytes = old })
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now, SegmentBytes: 200, MaxDeliveries: 2})
	for i := range 6 {
		enq(t, e, "q", fmt.Sprintf("body-%03d", i), EnqueueOptions{})
	}
	for range 6 {
		lease(t, e, "q", time.Second)
	}
	q, _ := e.queue("q", false)
	q.mu.Lock()
	kept, onDisk := q.heldBytes, 0
	for _, m := range q.held {
		if m.onDisk {
			onDisk++
		}
	}
	q.mu.Unlock()
	if kept != 8 || onDisk != 5 {
		t.Fatalf("held bytes %d, %d bodies on disk; want 8 and 5", kept, onDisk)
	}
	clk.Advance(time.Second)
	msgs, err := e.LeaseBatch(context.Background(), "q", 10, 1<<20, 0, time.Second)
	if err != nil || bodiesOf(msgs) != "body-000 body-001 body-002 body-003 body-004 body-005" || msgs[5].DeliveryCount != 2 {
		t.Fatalf("delivered again: %s, %v", bodiesOf(msgs), err)
	}
	clk.Advance(time.Second)
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("delivered a third time past MaxDeliveries 2: %q", m.Body)
	}
	var got []string
	for deadline := time.Now().Add(5 * time.Second); len(got) < 6 && time.Now().Before(deadline); {
		got = append(got, drainBodies(t, e, "q.dlq")...)
		time.Sleep(5 * time.Millisecond)
	}
	if strings.Join(got, " ") != "body-000 body-001 body-002 body-003 body-004 body-005" {
		t.Fatalf("dead-lettered: %q", got)
	}
}
