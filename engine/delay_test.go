package engine

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A delayed message is invisible until its time; messages behind it are
// not held back; among visible messages the order is by id.
func TestDelayedMessages(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	enq(t, e, "q", "a", EnqueueOptions{Delay: 10 * time.Second})
	enq(t, e, "q", "b", EnqueueOptions{})
	enq(t, e, "q", "c", EnqueueOptions{Delay: 5 * time.Second})
	enq(t, e, "q", "d", EnqueueOptions{Delay: 5 * time.Second})
	m, ok := deq(t, e, "q")
	mustBody(t, m, ok, "b", 1)
	if m, ok := deq(t, e, "q"); ok {
		t.Fatalf("a delayed message came early: %q", m.Body)
	}
	if st, _ := e.Stats("q"); st.Delayed != 3 || st.Depth != 0 || st.InFlight != 0 || st.DequeuedTotal != 1 {
		t.Fatalf("stats with three delayed: %+v", st)
	}
	clk.Advance(10 * time.Second)
	if got := strings.Join(drainBodies(t, e, "q"), ","); got != "a,c,d" {
		t.Fatalf("after the delays: %q, want a,c,d (by id)", got)
	}
	if st, _ := e.Stats("q"); st.Delayed != 0 || st.DequeuedTotal != 4 || st.RedeliveredTotal != 0 {
		t.Fatalf("stats after: %+v", st)
	}
}

// A delay survives a restart, whether or not the read position passed the
// message before it.
func TestDelaySurvivesRestart(t *testing.T) {
	dir, clk := t.TempDir(), newClock()
	e := openT(t, Options{Dir: dir, Now: clk.Now})
	enq(t, e, "q", "passed", EnqueueOptions{Delay: 10 * time.Second})
	if _, ok := deq(t, e, "q"); ok {
		t.Fatal("delivered early")
	}
	enq(t, e, "q", "behind", EnqueueOptions{Delay: 20 * time.Second})
	first, _, err := e.EnqueueBatch(context.Background(), "q", []BatchMessage{
		{Body: []byte("batch-now")}, {Body: []byte("batch-later"), Delay: 15 * time.Second},
	}, BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	e = openT(t, Options{Dir: dir, Now: clk.Now})
	if got := strings.Join(drainBodies(t, e, "q"), ","); got != "batch-now" {
		t.Fatalf("right after the restart: %q, want batch-now alone", got)
	}
	e.Close()
	e = openT(t, Options{Dir: dir, Now: clk.Now})
	clk.Advance(10 * time.Second)
	if got := strings.Join(drainBodies(t, e, "q"), ","); got != "passed" {
		t.Fatalf("at +10 s: %q, want passed", got)
	}
	clk.Advance(10 * time.Second)
	msgs, err := e.DequeueBatch(context.Background(), "q", 10, 1<<20, 0)
	if err != nil || bodiesOf(msgs) != "behind batch-later" || msgs[1].ID != first+1 {
		t.Fatalf("at +20 s: %s, %v", bodiesOf(msgs), err)
	}
}

// A delayed message can be leased like any other once it is visible; its
// first delivery counts 1.
func TestDelayedThenLeased(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now})
	enq(t, e, "q", "x", EnqueueOptions{Delay: time.Second})
	if _, ok := lease(t, e, "q", time.Minute); ok {
		t.Fatal("leased early")
	}
	clk.Advance(time.Second)
	m, ok := lease(t, e, "q", time.Minute)
	mustBody(t, m, ok, "x", 1)
	clk.Advance(time.Minute)
	m, ok = lease(t, e, "q", time.Minute)
	mustBody(t, m, ok, "x", 2)
	if err := e.Ack("q", m.Receipt); err != nil {
		t.Fatal(err)
	}
}
