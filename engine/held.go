package engine

import (
	"container/heap"
	"fmt"

	"github.com/mqueue/mqueue/segment"
)

// Held messages: the leased, delayed, visible-again and moving messages
// below the cursor (see lease.go), their two heaps, their bodies in memory
// or read back from the segments, and the bound on how many there are.

// heldMsg is a message below the cursor that is not done: leased, waiting
// out a nack's delay, visible again, or being moved to the DLQ.
type heldMsg struct {
	rec    segment.Record
	count  uint32    // deliveries so far
	until  int64     // unix ms: the lease's end, or the nack delay's; 0 when visible
	seq    uint64    // the current lease's receipt sequence; 0 when not leased
	moving bool      // on its way to the DLQ (in neither heap)
	onDisk bool      // rec.Payload is not kept (maxHeldBytes, MaxMemoryBytes): read it back when delivering
	in     *heldHeap // the heap it is in (q.hidden or q.visible), nil for none
	idx    int       // its index there
}

// heldHeap is a heap of held messages: q.hidden (leased and delayed, by
// when they end) or q.visible (visible again, by id). A message is in one
// at most.
type heldHeap struct {
	ms   []*heldMsg
	byID bool
}

func (h *heldHeap) Len() int { return len(h.ms) }

func (h *heldHeap) Less(i, j int) bool {
	if h.byID {
		return h.ms[i].rec.ID < h.ms[j].rec.ID
	}
	return h.ms[i].until < h.ms[j].until
}

func (h *heldHeap) Swap(i, j int) {
	h.ms[i], h.ms[j] = h.ms[j], h.ms[i]
	h.ms[i].idx, h.ms[j].idx = i, j
}

func (h *heldHeap) Push(x any) {
	m := x.(*heldMsg)
	m.in, m.idx = h, len(h.ms)
	h.ms = append(h.ms, m)
}

func (h *heldHeap) Pop() any {
	m := h.ms[len(h.ms)-1]
	h.ms[len(h.ms)-1] = nil
	h.ms = h.ms[:len(h.ms)-1]
	m.in = nil
	return m
}

// first returns the heap's top message, or nil when it is empty.
func (h *heldHeap) first() *heldMsg {
	if len(h.ms) == 0 {
		return nil
	}
	return h.ms[0]
}

// maxHeldBytes bounds the bodies of held messages a queue keeps in
// memory; Options.MaxMemoryBytes bounds them (with the memory tails) for
// all queues together. Past either a held message keeps only its header,
// and its body is read back from its segment (which stays while it is
// held) when it is delivered again.
var maxHeldBytes int64 = 32 << 20

// putHeldLocked adds m to q.held, keeping its body in memory within
// maxHeldBytes and the engine's memory budget (memory.go).
func (q *queue) putHeldLocked(m *heldMsg) {
	q.held[m.rec.ID] = m
	if m.onDisk {
		return
	}
	n := int64(len(m.rec.Payload))
	if q.heldBytes+n > maxHeldBytes || !q.e.mem.takeHeld(n) {
		m.rec.Payload, m.onDisk = nil, true
		return
	}
	q.heldBytes += n
}

// delHeldLocked removes m from q.held (not from the heaps), giving its
// body's bytes back.
func (q *queue) delHeldLocked(m *heldMsg) {
	delete(q.held, m.rec.ID)
	if !m.onDisk {
		n := int64(len(m.rec.Payload))
		q.heldBytes -= n
		q.e.mem.releaseHeld(n)
	}
}

// payloadLocked returns m's body: kept, or read back from its segment.
func (q *queue) payloadLocked(m *heldMsg) ([]byte, error) {
	if !m.onDisk {
		return m.rec.Payload, nil
	}
	var body []byte
	q.readIDs([]uint64{m.rec.ID}, func(rec segment.Record) { body = rec.Payload })
	if body == nil {
		return nil, fmt.Errorf("queue %s: held message %d cannot be read back from its segment (see the log)", q.name, m.rec.ID)
	}
	return body, nil
}

// MaxInFlight is how many messages one queue holds leased, delayed by a
// nack or visible again at most (SQS's limit of in-flight messages). Their
// bodies are kept in memory; a lease beyond it is refused with
// ErrTooManyInFlight, plain dequeues go on.
const MaxInFlight = 120000

// unheapLocked takes m out of whichever heap holds it.
func (q *queue) unheapLocked(m *heldMsg) {
	if m.in != nil {
		heap.Remove(m.in, m.idx)
	}
	if m.seq != 0 {
		m.seq = 0
		q.leased--
	}
}

// forgetLocked drops a held message whose taking from the cursor is undone
// (the cursor moves back before it), unless it is on its way to the DLQ.
func (q *queue) forgetLocked(m *heldMsg) {
	if m.moving {
		return
	}
	q.unheapLocked(m)
	q.delHeldLocked(m)
	q.dueLocked()
}

// minHeldLocked returns the lowest held id, or ^0 when none: segments
// holding it or later ids must stay.
func (q *queue) minHeldLocked() uint64 {
	lo := ^uint64(0)
	for id := range q.held {
		lo = min(lo, id)
	}
	return lo
}

// readIDs reads the records with the given sorted ids from the segments
// and hands each to fn (its payload a copy), skipping ids it cannot find
// or read (logged).
func (q *queue) readIDs(ids []uint64, fn func(segment.Record)) {
	for _, s := range q.segs {
		if len(ids) == 0 {
			break
		}
		if s.Records == 0 {
			continue
		}
		for len(ids) > 0 && ids[0] < s.Base {
			ids = ids[1:] // in no segment
		}
		var in []uint64
		for len(ids) > 0 && ids[0] <= s.LastID() {
			in = append(in, ids[0])
			ids = ids[1:]
		}
		if len(in) == 0 {
			continue
		}
		r, err := segment.OpenReader(q.dir, s.Base)
		if err != nil {
			q.log.Error("cannot read leased messages back", "segment", segment.Name(s.Base), "err", err)
			continue
		}
		r.SetLimit(s.Bytes)
		for _, id := range in {
			if _, err := r.SkipTo(id); err != nil {
				q.log.Error("cannot read leased message back", "segment", segment.Name(s.Base), "id", id, "err", err)
				break
			}
			rec, err := r.Next()
			if err != nil {
				q.log.Error("cannot read leased message back", "segment", segment.Name(s.Base), "id", id, "err", err)
				continue
			}
			rec.Payload = append([]byte(nil), rec.Payload...)
			fn(rec)
		}
		r.Close()
	}
}
