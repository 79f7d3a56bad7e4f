package engine

import "github.com/mqueue/mqueue/segment"

// memTail keeps the newest committed records of the active segment in
// memory, so that consumers who keep up are served without touching the
// disk. It holds contiguous ids [first, first+len) and at most maxBytes,
// counting each record's payload and recordOverhead; older records are
// dropped from the front and read back from the segment file when needed.
// Its bytes are also taken from the engine's memory budget (memory.go,
// Options.MaxMemoryBytes): a push that would pass it drops the tail's own
// oldest records, every one if need be, until what is left fits. Consumers
// read what is not held from disk (queue.nextLocked).
// Guarded by the queue's tmu (taken after mu when both are held; the
// commit loop pushes under tmu alone, so producers queueing on mu do not
// wait for the copy): every operation is O(records pushed or dropped).
//
// It is a ring. The backing array grows (doubling) only while the number of
// records held still rises, which the byte bound stops; pushing and
// dropping never copy or allocate after that. A slice that was appended to
// and compacted instead reallocated its multi-megabyte, pointer-holding
// array again and again in the steady state, under the mutex, and paid the
// garbage collector's assist for it: commit turns of 10-60 ms and a p99 of
// 20-35 ms at wrk -c100 (docs/PERFORMANCE.md).
type memTail struct {
	ring     []segment.Record // len is a power of two, or 0
	head     int              // ring index of the oldest record held
	n        int              // records held
	bytes    int
	maxBytes int
	budget   *memBudget // shared by every queue; nil for none
	charged  int        // bytes taken from budget: bytes, plus consumed ones up to tailReleaseSlack
}

// recordOverhead is what a held record costs besides its payload: the
// Record itself and the payload's allocation header, roughly. Counting it
// bounds the tail's memory for tiny messages too.
const recordOverhead = 64

func (t *memTail) len() int { return t.n }

func (t *memTail) at(i int) *segment.Record { return &t.ring[(t.head+i)&(len(t.ring)-1)] }

// first returns the id of the oldest record held; valid when len() > 0.
func (t *memTail) first() uint64 { return t.ring[t.head].ID }

// get returns the record with the given id, if held.
func (t *memTail) get(id uint64) (*segment.Record, bool) {
	if t.n == 0 || id < t.first() {
		return nil, false
	}
	i := id - t.first()
	if i >= uint64(t.n) {
		return nil, false
	}
	return t.at(int(i)), true
}

// push appends committed records. They must continue the held ids; if they
// do not (a new segment after a gap), the tail starts over.
func (t *memTail) push(recs []segment.Record) {
	if len(recs) == 0 {
		return
	}
	if t.n > 0 && t.at(t.n-1).ID+1 != recs[0].ID {
		t.reset()
	}
	for i := range recs {
		if t.n == len(t.ring) {
			t.grow()
		}
		*t.at(t.n) = recs[i]
		t.n++
		t.bytes += len(recs[i].Payload) + recordOverhead
	}
	for t.bytes > t.maxBytes && t.n > 1 {
		t.popFront()
	}
	t.charge()
}

// charge makes the bytes taken from the budget what the tail holds,
// dropping the oldest records until the rest fits in the budget. One
// compare-and-swap per push when it fits.
func (t *memTail) charge() {
	for t.bytes > t.charged {
		if t.budget.take(int64(t.bytes - t.charged)) {
			t.charged = t.bytes
			return
		}
		room := t.budget.room()
		for t.n > 0 && int64(t.bytes-t.charged) > room {
			t.popFront()
		}
	}
	t.budget.release(int64(t.charged - t.bytes))
	t.charged = t.bytes
}

// grow doubles the ring, keeping the records in order from index 0.
func (t *memTail) grow() {
	ring := make([]segment.Record, max(64, 2*len(t.ring)))
	for i := range t.n {
		ring[i] = *t.at(i)
	}
	t.ring, t.head = ring, 0
}

// dropBefore forgets records with ids below id (consumed).
func (t *memTail) dropBefore(id uint64) {
	for t.n > 0 && t.first() < id {
		t.popFront()
	}
	if t.n == 0 || t.charged-t.bytes >= tailReleaseSlack {
		t.budget.release(int64(t.charged - t.bytes))
		t.charged = t.bytes
	}
}

func (t *memTail) popFront() {
	r := &t.ring[t.head]
	t.bytes -= len(r.Payload) + recordOverhead
	*r = segment.Record{} // release the payload
	t.head = (t.head + 1) & (len(t.ring) - 1)
	t.n--
}

// reset forgets every record and gives back their budget; the ring is kept
// for reuse.
func (t *memTail) reset() {
	for i := range t.n {
		*t.at(i) = segment.Record{}
	}
	t.head, t.n, t.bytes = 0, 0, 0
	t.budget.release(int64(t.charged))
	t.charged = 0
}
