package engine

import (
	"bytes"
	"testing"

	"github.com/mqueue/mqueue/segment"
)

func tailRecs(first uint64, n, size int) []segment.Record {
	recs := make([]segment.Record, n)
	for i := range recs {
		recs[i] = segment.Record{ID: first + uint64(i), Payload: bytes.Repeat([]byte{byte(first) + byte(i)}, size)}
	}
	return recs
}

// checkTail asserts that t holds exactly ids [first, first+n), each with
// the payload tailRecs gave it.
func checkTail(t *testing.T, tl *memTail, first uint64, n int) {
	t.Helper()
	if tl.len() != n {
		t.Fatalf("len = %d, want %d", tl.len(), n)
	}
	if n > 0 && tl.first() != first {
		t.Fatalf("first = %d, want %d", tl.first(), first)
	}
	for id := first; id < first+uint64(n); id++ {
		r, ok := tl.get(id)
		if !ok || r.ID != id || r.Payload[0] != byte(id) {
			t.Fatalf("get(%d) = %+v, %v", id, r, ok)
		}
	}
	if _, ok := tl.get(first + uint64(n)); ok {
		t.Fatalf("get(%d) past the end found a record", first+uint64(n))
	}
	if _, ok := tl.get(first - 1); ok && first > 0 {
		t.Fatalf("get(%d) before the start found a record", first-1)
	}
}

func TestMemTailRingWrapsAndBoundsBytes(t *testing.T) {
	const size = 36 // 100 bytes per record with the overhead
	tl := memTail{maxBytes: 100 * 100}
	next := uint64(1)
	for range 50 { // 50 batches of 7: the ring wraps many times
		tl.push(tailRecs(next, 7, size))
		next += 7
	}
	checkTail(t, &tl, next-100, 100)
	if tl.bytes != 100*(size+recordOverhead) {
		t.Fatalf("bytes = %d", tl.bytes)
	}
	ringLen := len(tl.ring)

	// A consumer that keeps up: push and drop, many times around the ring.
	read := next - 100
	for range 1000 {
		tl.push(tailRecs(next, 5, size))
		next += 5
		read += 5
		tl.dropBefore(read)
	}
	checkTail(t, &tl, read, int(next-read))
	if len(tl.ring) != ringLen {
		t.Fatalf("the ring grew from %d to %d in the steady state", ringLen, len(tl.ring))
	}
	// Dropped slots release their payloads.
	for i := tl.n; i < len(tl.ring); i++ {
		if r := tl.at(i); r.Payload != nil {
			t.Fatalf("free slot %d still holds a payload", i)
		}
	}

	tl.dropBefore(next)
	checkTail(t, &tl, 0, 0)
	if tl.bytes != 0 {
		t.Fatalf("bytes = %d after dropping everything", tl.bytes)
	}
}

func TestMemTailGapAndReset(t *testing.T) {
	tl := memTail{maxBytes: 1 << 20}
	tl.push(tailRecs(10, 5, 8))
	tl.push(tailRecs(20, 3, 8)) // not 15: a new segment after a gap
	checkTail(t, &tl, 20, 3)
	tl.reset()
	checkTail(t, &tl, 0, 0)
	for i := range tl.ring {
		if tl.ring[i].Payload != nil {
			t.Fatalf("slot %d holds a payload after reset", i)
		}
	}
	tl.push(tailRecs(30, 2, 8))
	checkTail(t, &tl, 30, 2)
}

func TestMemTailKeepsOneRecordOverTheBound(t *testing.T) {
	tl := memTail{maxBytes: 10}
	tl.push(tailRecs(1, 3, 1000))
	checkTail(t, &tl, 3, 1) // the newest stays, whatever its size
}

// BenchmarkMemTailSteady is the commit loop's push and a consumer's drop
// in the steady state: no allocation once the ring has its size.
func BenchmarkMemTailSteady(b *testing.B) {
	tl := memTail{maxBytes: 8 << 20}
	batch := tailRecs(1, 28, 100)
	next := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i].ID = next + uint64(i)
		}
		tl.push(batch)
		next += uint64(len(batch))
		tl.dropBefore(next - 40000)
	}
}

// Tails sharing a budget: a push past it drops the pushing tail's own
// oldest records, all of them if need be, and the budget always counts
// exactly what the tails took; dropping, emptying and resetting give it
// back.
func TestMemTailSharedBudget(t *testing.T) {
	const rec = 36 + recordOverhead // 100 bytes a record
	b := &memBudget{max: 10 * rec}
	a, c := memTail{maxBytes: 1 << 20, budget: b}, memTail{maxBytes: 1 << 20, budget: b}
	check := func(what string, wantA, wantC int) {
		t.Helper()
		if a.len() != wantA || c.len() != wantC {
			t.Fatalf("%s: tails hold %d and %d records, want %d and %d", what, a.len(), c.len(), wantA, wantC)
		}
		if used := b.used.Load(); used != int64(a.charged+c.charged) || used > b.max || a.charged < a.bytes || c.charged < c.bytes {
			t.Fatalf("%s: budget counts %d of %d; tails charged %d (hold %d) and %d (hold %d)", what, used, b.max, a.charged, a.bytes, c.charged, c.bytes)
		}
	}
	a.push(tailRecs(1, 7, 36))
	check("a takes 7", 7, 0)
	c.push(tailRecs(1, 5, 36)) // 3 fit: c keeps its newest 3
	check("c past the budget", 7, 3)
	checkTail(t, &c, 3, 3)
	c.push(tailRecs(6, 2, 36)) // none free: c drops its own oldest 2
	check("c full", 7, 3)
	checkTail(t, &c, 5, 3)

	a.dropBefore(3) // 200 bytes consumed: kept charged (under the slack)
	check("a consumed 2", 5, 3)
	if a.charged != 7*rec {
		t.Fatalf("a charged %d after consuming 2 of 7, want %d until the slack or empty", a.charged, 7*rec)
	}
	c.push(tailRecs(8, 1, 36)) // still nothing free: c keeps its newest 3
	checkTail(t, &c, 6, 3)
	a.dropBefore(8) // a empties: everything back
	check("a empty", 0, 3)
	c.push(tailRecs(9, 4, 36)) // now there is room
	check("c after a emptied", 0, 7)
	checkTail(t, &c, 6, 7)

	big := memTail{maxBytes: 1 << 20, budget: b}
	big.push(tailRecs(1, 1, 1000)) // a record larger than what is free: not kept
	check("too big", 0, 7)
	if big.len() != 0 || big.charged != 0 {
		t.Fatalf("a record past the budget was kept: %d records, %d charged", big.len(), big.charged)
	}
	c.reset()
	check("reset", 0, 0)
	if used := b.used.Load(); used != 0 {
		t.Fatalf("budget counts %d after every tail emptied", used)
	}
}
