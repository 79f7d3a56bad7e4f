package engine

import "github.com/mqueue/mqueue/segment"

// memTail keeps the newest committed records of the active segment in
// memory, so that consumers who keep up are served without touching the
// disk. It holds contiguous ids [first, first+len) and at most maxBytes of
// payload; older records are dropped from the front and read back from the
// segment file when needed. Guarded by the queue's mutex.
type memTail struct {
	recs     []segment.Record
	head     int // recs[head:] are live
	bytes    int
	maxBytes int
}

func (t *memTail) len() int { return len(t.recs) - t.head }

// first returns the id of the oldest record held; valid when len() > 0.
func (t *memTail) first() uint64 { return t.recs[t.head].ID }

// get returns the record with the given id, if held.
func (t *memTail) get(id uint64) (*segment.Record, bool) {
	if t.len() == 0 || id < t.first() {
		return nil, false
	}
	i := t.head + int(id-t.first())
	if i >= len(t.recs) {
		return nil, false
	}
	return &t.recs[i], true
}

// push appends committed records. They must continue the held ids; if they
// do not (a new segment after a gap), the tail starts over.
func (t *memTail) push(recs []segment.Record) {
	if len(recs) == 0 {
		return
	}
	if t.len() > 0 && t.recs[len(t.recs)-1].ID+1 != recs[0].ID {
		t.reset()
	}
	for i := range recs {
		t.bytes += len(recs[i].Payload)
	}
	t.recs = append(t.recs, recs...)
	for t.bytes > t.maxBytes && t.len() > 1 {
		t.popFront()
	}
}

// dropBefore forgets records with ids below id (consumed).
func (t *memTail) dropBefore(id uint64) {
	for t.len() > 0 && t.first() < id {
		t.popFront()
	}
}

func (t *memTail) popFront() {
	t.bytes -= len(t.recs[t.head].Payload)
	t.recs[t.head] = segment.Record{} // release the payload
	t.head++
	if t.head == len(t.recs) {
		t.recs, t.head = t.recs[:0], 0
	} else if t.head > 1024 && t.head > len(t.recs)/2 {
		n := copy(t.recs, t.recs[t.head:])
		clear(t.recs[n:])
		t.recs, t.head = t.recs[:n], 0
	}
}

func (t *memTail) reset() {
	clear(t.recs)
	t.recs, t.head, t.bytes = t.recs[:0], 0, 0
}
