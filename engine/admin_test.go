package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// dirNames lists the entries of a data directory.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Queues are listed by name with their counts, a page at a time.
func TestListQueues(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	for i, name := range []string{"d", "b", "a", "c", "e"} {
		for range i + 1 {
			enq(t, e, name, "x", EnqueueOptions{})
		}
	}
	lease(t, e, "a", time.Minute)             // a: 3 stored, 1 in flight
	enq(t, e, "b", "later", EnqueueOptions{}) // b: 3
	page, more := e.ListQueues("", 2)
	if !more || len(page) != 2 || page[0].Name != "a" || page[1].Name != "b" {
		t.Fatalf("first page = %+v more=%v", page, more)
	}
	if page[0].Depth != 2 || page[0].InFlight != 1 || page[1].Depth != 3 {
		t.Fatalf("counts = %+v", page)
	}
	page, more = e.ListQueues("b", 2)
	if !more || len(page) != 2 || page[0].Name != "c" || page[1].Name != "d" || page[1].Depth != 1 {
		t.Fatalf("second page = %+v more=%v", page, more)
	}
	page, more = e.ListQueues("d", 2)
	if more || len(page) != 1 || page[0].Name != "e" || page[0].Depth != 5 {
		t.Fatalf("last page = %+v more=%v", page, more)
	}
	if page, more = e.ListQueues("e", 2); more || len(page) != 0 {
		t.Fatalf("past the end = %+v more=%v", page, more)
	}
}

// A deleted queue is gone at once and after a restart, its name starts a
// fresh queue at id 1, and the other queues are untouched.
func TestDeleteQueue(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 300}
	e := openT(t, opts)
	for i := range 20 {
		enq(t, e, "doomed", fmt.Sprintf("m%d", i), EnqueueOptions{})
		enq(t, e, "kept", fmt.Sprintf("k%d", i), EnqueueOptions{})
	}
	lease(t, e, "doomed", time.Minute)
	if err := e.DeleteQueue("doomed"); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	if _, ok := e.Stats("doomed"); ok {
		t.Fatal("stats of a deleted queue")
	}
	if err := e.DeleteQueue("doomed"); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("second DeleteQueue = %v, want ErrQueueNotFound", err)
	}
	if err := e.DeleteQueue("never"); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("DeleteQueue(never) = %v, want ErrQueueNotFound", err)
	}
	if _, ok := deq(t, e, "doomed"); ok {
		t.Fatal("a deleted queue delivered a message")
	}
	for _, name := range dirNames(t, dir) {
		if name == "doomed" || strings.HasPrefix(name, tombstonePrefix) {
			t.Fatalf("data dir after delete: %v", dirNames(t, dir))
		}
	}
	e.Close()

	e = openT(t, opts)
	if _, ok := e.Stats("doomed"); ok {
		t.Fatal("the deleted queue is back after a restart")
	}
	if got := drainBodies(t, e, "kept"); len(got) != 20 || got[0] != "k0" {
		t.Fatalf("other queue after delete and restart: %v", got)
	}
	if id := enq(t, e, "doomed", "fresh", EnqueueOptions{}); id != 1 {
		t.Fatalf("first id of the queue created again = %d, want 1", id)
	}
	if got := drainBodies(t, e, "doomed"); len(got) != 1 || got[0] != "fresh" {
		t.Fatalf("queue created again holds %v, want only fresh", got)
	}
}

// A long poll waiting on a queue returns empty, promptly, when the queue
// is deleted (it does not go on waiting for a queue of that name).
func TestDeleteQueueWakesLongPolls(t *testing.T) {
	var armed atomic.Bool
	polling := make(chan struct{}, 1)
	now := func() time.Time {
		if armed.CompareAndSwap(true, false) {
			polling <- struct{}{} // the poll is in its pop, under the queue's mutex
		}
		return time.Now()
	}
	e := openT(t, Options{Dir: t.TempDir(), Now: now, CompactInterval: time.Hour})
	enq(t, e, "q", "a", EnqueueOptions{})
	deq(t, e, "q")
	type res struct {
		ok  bool
		err error
	}
	polled := make(chan res, 1)
	armed.Store(true)
	go func() {
		_, ok, err := e.Dequeue(context.Background(), "q", 30*time.Second)
		polled <- res{ok, err}
	}()
	<-polling
	if err := e.DeleteQueue("q"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-polled:
		if r.ok || r.err != nil {
			t.Fatalf("long poll after delete: ok=%v err=%v", r.ok, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll still waiting 10 s after its queue was deleted")
	}
}

// A long poll that wakes to find its queue gone from the engine (deleted,
// whatever the timing of the wake-up against the removal) returns empty
// rather than wait on for a new queue of that name.
func TestLongPollEndsWhenItsQueueGoes(t *testing.T) {
	var armed atomic.Bool
	polling := make(chan struct{}, 1)
	now := func() time.Time {
		if armed.CompareAndSwap(true, false) {
			polling <- struct{}{}
		}
		return time.Now()
	}
	e := openT(t, Options{Dir: t.TempDir(), Now: now, CompactInterval: time.Hour})
	enq(t, e, "q", "a", EnqueueOptions{})
	deq(t, e, "q")
	polled := make(chan bool, 1)
	armed.Store(true)
	go func() {
		_, ok, _ := e.Dequeue(context.Background(), "q", 30*time.Second)
		polled <- ok
	}()
	<-polling
	// DeleteQueue's first steps: marked deleted, then retired for good
	// (the loop wakes the poll as it shuts down and leaves e.queues).
	e.mu.RLock()
	q := e.queues["q"]
	e.mu.RUnlock()
	q.deleted.Store(true)
	e.retire(q, false)
	select {
	case ok := <-polled:
		if ok {
			t.Fatal("a message came")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll still waiting 10 s after its queue went")
	}
}

// A crash after the rename (simulated: the tombstone made by hand) leaves
// nothing of the queue: Open skips the tombstone and removes it, and the
// lock file stays.
func TestDeleteCrashAfterRename(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	for range 5 {
		enq(t, e, "gone", "x", EnqueueOptions{})
	}
	enq(t, e, "kept", "y", EnqueueOptions{})
	e.Close()
	tomb := filepath.Join(dir, tombstonePrefix+"gone-123")
	if err := os.Rename(filepath.Join(dir, "gone"), tomb); err != nil {
		t.Fatal(err)
	}
	e = openT(t, Options{Dir: dir})
	if _, ok := e.Stats("gone"); ok {
		t.Fatal("a tombstoned queue was opened")
	}
	if _, err := os.Stat(tomb); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tombstone left after Open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, lockName)); err != nil {
		t.Fatalf("lock file: %v", err)
	}
	if got := drainBodies(t, e, "kept"); len(got) != 1 {
		t.Fatalf("other queue: %v", got)
	}
	if page, _ := e.ListQueues("", 10); len(page) != 1 || page[0].Name != "kept" {
		t.Fatalf("queues: %+v", page)
	}
}

// A queue that could not be recovered at start is listed as unavailable
// and can be deleted.
func TestDeleteUnavailableQueue(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	enq(t, e, "bad", "x", EnqueueOptions{})
	e.Close()
	// A cursor path that is a directory: openCursor fails, the queue is
	// unavailable.
	cur := filepath.Join(dir, "bad", "cursor")
	if err := os.Remove(cur); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cur, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cur, "x"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	e = openT(t, Options{Dir: dir})
	if _, err := e.Enqueue(context.Background(), "bad", []byte("y"), EnqueueOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Skipf("could not make the queue unavailable (Enqueue = %v)", err)
	}
	if page, _ := e.ListQueues("", 10); len(page) != 1 || !page[0].Unavailable {
		t.Fatalf("queues: %+v", page)
	}
	if err := e.DeleteQueue("bad"); err != nil {
		t.Fatalf("DeleteQueue: %v", err)
	}
	if id := enq(t, e, "bad", "fresh", EnqueueOptions{}); id != 1 {
		t.Fatalf("id %d", id)
	}
}

// Purge removes every current message — unread, delayed, leased, nacked
// with a delay, visible again — for good, across a restart too; later
// messages are delivered, with new ids; compaction deletes the segments.
func TestPurge(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	// No compaction in the first part: held messages' segments stay, so a
	// restart would find them if their done records were missing.
	opts := Options{Dir: dir, Now: clk.Now, SegmentBytes: 300, CompactInterval: time.Hour}
	e := openT(t, opts)
	for i := range 30 {
		enq(t, e, "q", fmt.Sprintf("m%d", i), EnqueueOptions{})
	}
	enq(t, e, "q", "delayed", EnqueueOptions{Delay: time.Hour})
	leased, _ := lease(t, e, "q", time.Hour) // m0: in flight
	nacked, _ := lease(t, e, "q", time.Hour) // m1: nacked for an hour
	if err := e.Nack("q", nacked.Receipt, time.Hour); err != nil {
		t.Fatal(err)
	}
	lease(t, e, "q", time.Second) // m2: visible again
	clk.Advance(2 * time.Second)
	n, err := e.Purge("q")
	if err != nil || n != 31 {
		t.Fatalf("Purge = %d, %v; want 31", n, err)
	}
	st, _ := e.Stats("q")
	if st.Depth != 0 || st.InFlight != 0 || st.Delayed != 0 || st.PurgedTotal != 31 {
		t.Fatalf("stats after purge: %+v", st)
	}
	if err := e.Ack("q", leased.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Ack of a purged lease = %v, want ErrLeaseExpired", err)
	}
	if _, ok := deq(t, e, "q"); ok {
		t.Fatal("a purged message was delivered")
	}
	if _, err := e.Purge("none"); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Purge(none) = %v", err)
	}
	e.Close()

	clk.Advance(2 * time.Hour) // the delay and the nack's are over too
	e = openT(t, opts)
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("after purge and restart %d %q was delivered", m.ID, m.Body)
	}
	e.Close()

	// Compaction deletes the purged segments (past SegmentAge it seals
	// the active one too); later messages come, with new ids.
	opts.CompactInterval = 5 * time.Millisecond
	e = openT(t, opts)
	clk.Advance(11 * time.Minute)
	waitSegmentsPast(t, filepath.Join(dir, "q"), 31)
	id := enq(t, e, "q", "after", EnqueueOptions{})
	if id <= 31 {
		t.Fatalf("id after purge %d reuses a purged one", id)
	}
	if got := drainBodies(t, e, "q"); len(got) != 1 || got[0] != "after" {
		t.Fatalf("after purge: %v, want [after]", got)
	}
}

// Peek changes nothing: the same first message is dequeued afterwards,
// counters stay, and it shows states, delivery counts and times.
func TestPeek(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	for i := range 5 {
		enq(t, e, "q", fmt.Sprintf("m%d", i), EnqueueOptions{TTL: time.Hour})
	}
	enq(t, e, "q", "short", EnqueueOptions{TTL: time.Second})
	enq(t, e, "q", "late", EnqueueOptions{Delay: time.Minute})
	l, _ := lease(t, e, "q", time.Minute) // m0 in flight
	n, _ := lease(t, e, "q", time.Minute) // m1 nacked with a delay
	if err := e.Nack("q", n.Receipt, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	r, _ := lease(t, e, "q", time.Second) // m2 visible again
	clk.Advance(2 * time.Second)          // "short" expires
	before, _ := e.Stats("q")

	got, err := e.Peek("q", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var desc []string
	for _, m := range got {
		desc = append(desc, fmt.Sprintf("%d:%s:%s:%d", m.ID, m.Body, m.State, m.DeliveryCount))
	}
	want := "1:m0:in_flight:1 2:m1:delayed:1 3:m2:visible:1 4:m3:visible:0 5:m4:visible:0 7:late:delayed:0"
	if strings.Join(desc, " ") != want {
		t.Fatalf("peek = %s\nwant   %s", strings.Join(desc, " "), want)
	}
	if !got[0].LeaseExpiresAt.Equal(l.LeaseExpiresAt) || got[0].Receipt != "" {
		t.Errorf("in-flight lease end %v, want %v (receipt %q)", got[0].LeaseExpiresAt, l.LeaseExpiresAt, got[0].Receipt)
	}
	if want := clk.Now().Add(-2 * time.Second).Add(30 * time.Second).Truncate(time.Millisecond); !got[1].VisibleAt.Equal(want) {
		t.Errorf("nacked visible at %v, want %v", got[1].VisibleAt, want)
	}
	if got[3].ExpiresAt.IsZero() || got[5].VisibleAt.IsZero() {
		t.Errorf("expiry or visible time missing: %+v %+v", got[3], got[5])
	}
	if page, _ := e.Peek("q", 4, 1); len(page) != 1 || page[0].ID != 4 {
		t.Fatalf("peek from 4 max 1 = %+v", page)
	}
	if page, _ := e.Peek("q", 100, 10); len(page) != 0 {
		t.Fatalf("peek past the end = %+v", page)
	}
	after, _ := e.Stats("q")
	if before != after {
		t.Fatalf("peek changed the stats:\n%+v\n%+v", before, after)
	}
	m, ok := deq(t, e, "q")
	mustBody(t, m, ok, "m2", 2) // visible again first, as before the peek
	m, ok = deq(t, e, "q")
	mustBody(t, m, ok, "m3", 1)
	if _, err := e.Peek("none", 0, 10); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Peek(none) = %v", err)
	}
	_ = r
}

// Peek reads the backlog on disk, across segments, bodies of held messages
// that are not kept in memory too.
func TestPeekFromDisk(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 400}
	e := openT(t, opts)
	for i := range 40 {
		enq(t, e, "q", fmt.Sprintf("m%02d", i), EnqueueOptions{})
	}
	e.Close()
	old := maxHeldBytes
	maxHeldBytes = 0 // every held body is read back from its segment
	t.Cleanup(func() { maxHeldBytes = old })
	e = openT(t, opts)
	lease(t, e, "q", time.Minute)
	got, err := e.Peek("q", 0, 1000)
	if err != nil || len(got) != 40 {
		t.Fatalf("peek = %d messages, %v", len(got), err)
	}
	for i, m := range got {
		if string(m.Body) != fmt.Sprintf("m%02d", i) || m.ID != uint64(i+1) {
			t.Fatalf("message %d = %d %q", i, m.ID, m.Body)
		}
	}
	if got[0].State != StateInFlight {
		t.Fatalf("first state %s", got[0].State)
	}
	if bases, _ := segment.List(filepath.Join(dir, "q")); len(bases) < 3 {
		t.Fatalf("want several segments, have %v", bases)
	}
}

// Redrive moves a DLQ's messages back to the source in id order, once,
// with their TTLs (time left) kept, and only with a .dlq name.
func TestRedrive(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	var expires []time.Time
	for i := range 5 {
		enq(t, e, "jobs.dlq", fmt.Sprintf("d%d", i), EnqueueOptions{TTL: time.Duration(i+1) * time.Hour})
	}
	enq(t, e, "jobs.dlq", "plain", EnqueueOptions{})
	enq(t, e, "jobs", "j0", EnqueueOptions{})
	peeked, _ := e.Peek("jobs.dlq", 0, 10)
	for _, m := range peeked {
		expires = append(expires, m.ExpiresAt)
	}
	clk.Advance(10 * time.Minute)
	if _, err := e.Redrive(context.Background(), "jobs", 0); !errors.Is(err, ErrNotDLQ) {
		t.Fatalf("Redrive(jobs) = %v, want ErrNotDLQ", err)
	}
	if _, err := e.Redrive(context.Background(), "none.dlq", 0); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("Redrive(none.dlq) = %v, want ErrQueueNotFound", err)
	}
	n, err := e.Redrive(context.Background(), "jobs.dlq", 2)
	if err != nil || n != 2 {
		t.Fatalf("Redrive max 2 = %d, %v", n, err)
	}
	n, err = e.Redrive(context.Background(), "jobs.dlq", 0)
	if err != nil || n != 4 {
		t.Fatalf("Redrive all = %d, %v; want 4", n, err)
	}
	if st, _ := e.Stats("jobs.dlq"); st.Depth != 0 || st.InFlight != 0 || st.RedrivenTotal != 6 {
		t.Fatalf("DLQ stats after redrive: %+v", st)
	}
	got, _ := e.Peek("jobs", 0, 100)
	var bodies []string
	for i, m := range got {
		bodies = append(bodies, string(m.Body))
		if i == 0 {
			continue
		}
		if !m.ExpiresAt.Equal(expires[i-1]) {
			t.Errorf("%s expires %v, want %v as in the DLQ", m.Body, m.ExpiresAt, expires[i-1])
		}
	}
	if strings.Join(bodies, " ") != "j0 d0 d1 d2 d3 d4 plain" {
		t.Fatalf("source after redrive: %v", bodies)
	}
	if n, err := e.Redrive(context.Background(), "jobs.dlq", 0); n != 0 || err != nil {
		t.Fatalf("redrive of an empty DLQ = %d, %v", n, err)
	}
}

// A crash between the enqueue to the source and the ack in the DLQ
// (simulated: the first half of a redrive, then a restart) does not store
// a message twice: the next redrive is deduplicated by the keys.
func TestRedriveOnceAcrossRestart(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	opts := Options{Dir: dir, Now: clk.Now}
	e := openT(t, opts)
	for i := range 3 {
		enq(t, e, "jobs.dlq", fmt.Sprintf("d%d", i), EnqueueOptions{TTL: time.Hour})
	}
	msgs, err := e.LeaseBatch(context.Background(), "jobs.dlq", 2, 1<<20, 0, time.Minute)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("LeaseBatch = %d, %v", len(msgs), err)
	}
	if err := e.enqueueKeyed("jobs", redriveRecords("jobs.dlq", msgs, clk.Now())); err != nil {
		t.Fatal(err)
	}
	e.Close() // no ack: the "crash"

	clk.Advance(time.Minute)
	e = openT(t, opts)
	n, err := e.Redrive(context.Background(), "jobs.dlq", 0)
	if err != nil || n != 3 {
		t.Fatalf("Redrive after restart = %d, %v", n, err)
	}
	if got := drainBodies(t, e, "jobs"); strings.Join(got, " ") != "d0 d1 d2" {
		t.Fatalf("source holds %v, want each once", got)
	}
	e.Close()
	e = openT(t, opts)
	if st, _ := e.Stats("jobs.dlq"); st.Depth != 0 {
		t.Fatalf("DLQ after redrive and restart: %+v", st)
	}
	if _, ok := deq(t, e, "jobs"); ok {
		t.Fatal("source delivered more after a restart")
	}
}

// Keys of redrive cannot be given by a client of the engine's public
// enqueue paths either way: they start with 0x00.
func TestRedriveKeysAreInternal(t *testing.T) {
	recs := redriveRecords("a.dlq", []Message{{ID: 7, Body: []byte("x"), EnqueuedAt: time.UnixMilli(5)}}, time.Now())
	if len(recs) != 1 || recs[0].rec.Key[0] != 0 || len(recs[0].rec.Key) > segment.MaxKeyLen {
		t.Fatalf("key %q", recs[0].rec.Key)
	}
}

// Messages that reached --max-deliveries go to the DLQ and come back by
// redrive with their delivery count reset.
func TestRedriveAfterDeadLetter(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now, MaxDeliveries: 1})
	enq(t, e, "jobs", "a", EnqueueOptions{})
	enq(t, e, "jobs", "b", EnqueueOptions{})
	lease(t, e, "jobs", time.Second)
	lease(t, e, "jobs", time.Second)
	clk.Advance(2 * time.Second)
	deq(t, e, "jobs") // promotes both: they move to jobs.dlq
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, ok := e.Stats("jobs.dlq"); ok && st.Depth == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("messages did not reach the DLQ")
		}
		time.Sleep(5 * time.Millisecond)
	}
	n, err := e.Redrive(context.Background(), "jobs.dlq", 0)
	if err != nil || n != 2 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	m, ok := lease(t, e, "jobs", time.Minute)
	mustBody(t, m, ok, "a", 1)
}
