package engine

import (
	"cmp"
	"container/heap"
	"slices"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

// Leases (GET ?lease=N), acks, nacks, extensions and dead letters.
//
// A leased message leaves the cursor's stream like a popped one: the
// cursor moves past it. The queue then holds it in memory (held) until it
// is acked, or until its lease runs out and it is visible again, ahead of
// newer messages (the visible heap, by id). What a crash must not lose
// goes to the queue's lease log before the cursor move it belongs to and
// before the reply: a lease record (id, delivery count) when a message is
// leased, an ack record when it is acked, popped for good after a
// redelivery, or moved to the dead-letter queue. At start every id below
// the cursor with a lease record and no ack is visible again with its
// count, its body read back from its segment, which the compactor keeps
// while any id in it is held. Lease ends, nack delays and extensions live
// in memory only: after a crash every held message is visible at once
// (SPEC: at-least-once; an acked one never comes back).

// joinLocked returns the cursor batch that the next commit turn persists.
func (q *queue) joinLocked() *cursorBatch {
	if q.curWait == nil {
		q.curWait = &cursorBatch{done: make(chan struct{})}
	}
	return q.curWait
}

// dueLocked publishes the earliest end in q.hidden to the commit loop's
// timer, and wakes the loop when it moved earlier.
func (q *queue) dueLocked() {
	var due int64
	if m := q.hidden.first(); m != nil {
		due = m.until
	}
	if old := q.due.Swap(due); due != 0 && (old == 0 || due < old) {
		q.kick()
	}
}

// promoteLocked makes held messages whose lease or delay ended visible
// again, or takes those that reached MaxDeliveries out for the DLQ (marked
// moving; the caller hands them to deadLetter after unlocking). It reports
// whether any became visible.
func (q *queue) promoteLocked(now int64) (dead []*heldMsg, woke bool) {
	if m := q.hidden.first(); m == nil || m.until > now {
		return nil, false
	}
	for m := q.hidden.first(); m != nil && m.until <= now; m = q.hidden.first() {
		heap.Pop(&q.hidden)
		if m.seq != 0 {
			m.seq = 0
			q.leased--
		}
		m.until = 0
		if max := q.e.opts.MaxDeliveries; max > 0 && int64(m.count) >= max {
			m.moving = true
			dead = append(dead, m)
			continue
		}
		heap.Push(&q.visible, m)
		woke = true
	}
	q.dueLocked()
	// Into the DLQ in id order, as they were enqueued.
	slices.SortFunc(dead, func(a, b *heldMsg) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	return dead, woke
}

// expireLeases runs on the commit loop when the earliest lease or delay
// ends: it wakes long polls for what became visible and starts moving
// what reached MaxDeliveries.
func (q *queue) expireLeases() {
	q.mu.Lock()
	dead, woke := q.promoteLocked(q.nowMs())
	if woke {
		q.broadcastLocked(make(chan struct{}))
	}
	q.mu.Unlock()
	if len(dead) > 0 {
		go q.deadLetter(dead)
	}
}

// popLocked takes the next message to deliver: the lowest id visible again,
// else the cursor's next. m is nil for a message from the cursor. A
// delayed message the cursor reaches before its time is held until then
// (holdDelayedLocked) and the cursor goes on.
func (q *queue) popLocked(now int64) (rec segment.Record, m *heldMsg, err error) {
	for q.visible.Len() > 0 {
		m = heap.Pop(&q.visible).(*heldMsg)
		if m.rec.Expired(now) {
			// Not logged: a restart finds it expired again.
			q.delHeldLocked(m)
			q.expired.Add(1)
			continue
		}
		rec = m.rec
		if rec.Payload, err = q.payloadLocked(m); err != nil {
			// Never served: counted and logged as corrupt, dropped.
			q.countCorrupt(1)
			q.log.Error("held message lost: its record cannot be read back", "id", m.rec.ID, "err", err)
			q.delHeldLocked(m)
			continue
		}
		return rec, m, nil
	}
	for {
		rec, err = q.nextLocked()
		if err != nil || rec.VisibleAt <= now {
			return rec, nil, err
		}
		if !q.holdDelayedLocked(rec) {
			return segment.Record{}, nil, errNone
		}
	}
}

// holdDelayedLocked takes a delayed record the cursor just passed into
// held until its VisibleAt, with a lease record of count 0 written with the
// cursor move (so a restart keeps it held, not lost). When the queue holds
// MaxInFlight messages it puts the record back instead: it stays at the
// read position, and the messages behind it wait, until some are done.
func (q *queue) holdDelayedLocked(rec segment.Record) bool {
	if len(q.held) >= MaxInFlight {
		q.readID, q.depth = rec.ID, q.depth+1
		q.dequeued.Add(^uint64(0))
		return false
	}
	q.dequeued.Add(^uint64(0)) // counted when it is delivered
	m := &heldMsg{rec: rec, until: rec.VisibleAt}
	q.putHeldLocked(m)
	heap.Push(&q.hidden, m)
	q.dueLocked()
	cb := q.joinLocked()
	cb.log = format.AppendLeaseRecord(cb.log, format.LeaseHold, rec.ID, 0)
	cb.undo = append(cb.undo, func() { q.forgetLocked(m) })
	q.kick() // the cursor moved: the loop writes it even if nothing is delivered now
	return true
}

// deliverLocked hands out rec (popped by popLocked) for good (lease 0) or
// under a lease, and records in cb what the commit turn must write and
// how to take it back if that fails. It returns the message as the caller
// answers it.
func (q *queue) deliverLocked(rec segment.Record, m *heldMsg, lease time.Duration, now int64, cb *cursorBatch) Message {
	msg := toMessage(&rec)
	msg.DeliveryCount = 1
	if m == nil && lease == 0 {
		return msg // a plain pop: the cursor move is the whole record of it
	}
	q.deliverHeldLocked(&msg, rec, m, lease, now, cb)
	return msg
}

// deliverHeldLocked is deliverLocked for a lease or a held message (apart,
// so that what its undo closures capture costs a plain pop nothing).
func (q *queue) deliverHeldLocked(msg *Message, rec segment.Record, m *heldMsg, lease time.Duration, now int64, cb *cursorBatch) {
	if m != nil {
		msg.DeliveryCount = int(m.count) + 1
		c := &q.redelivered
		if m.count == 0 {
			c = &q.dequeued // a delayed message's first delivery
		}
		c.Add(1)
		cb.undo = append(cb.undo, func() { c.Add(^uint64(0)) })
	}
	switch {
	case lease == 0:
		q.delHeldLocked(m)
		cb.log = format.AppendLeaseRecord(cb.log, format.LeaseDone, rec.ID, 0)
		cb.undo = append(cb.undo, func() {
			q.putHeldLocked(m)
			heap.Push(&q.visible, m)
		})
	default:
		fromCursor := m == nil
		if fromCursor {
			m = &heldMsg{rec: rec}
			q.putHeldLocked(m)
		}
		m.count++
		m.seq = q.e.leaseSeq.Add(1)
		m.until = now + lease.Milliseconds()
		q.leased++
		heap.Push(&q.hidden, m)
		q.dueLocked()
		cb.log = format.AppendLeaseRecord(cb.log, format.LeaseHold, rec.ID, m.count)
		cb.undo = append(cb.undo, func() {
			if fromCursor {
				q.forgetLocked(m)
				return
			}
			if m.moving {
				return // its lease ran out meanwhile and it is going to the DLQ
			}
			q.unheapLocked(m)
			m.count--
			m.until = 0
			heap.Push(&q.visible, m)
			q.dueLocked()
		})
		msg.Receipt = q.e.receipt(rec.ID, m.seq)
		msg.LeaseExpiresAt = time.UnixMilli(m.until)
	}
}

// leaseLocked finds the held message a receipt names while its lease runs.
func (q *queue) leaseLocked(receipt string, now int64) (*heldMsg, error) {
	id, seq, err := q.e.parseReceipt(receipt)
	if err != nil {
		return nil, err
	}
	m := q.held[id]
	if m == nil || m.seq != seq || m.until <= now {
		return nil, ErrLeaseExpired
	}
	return m, nil
}

// ack ends the lease a receipt names for good; it returns once the ack is
// written (and fsynced as the mode says).
func (q *queue) ack(receipt string) error {
	now := q.nowMs()
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	m, err := q.leaseLocked(receipt, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	heap.Remove(&q.hidden, m.idx)
	q.delHeldLocked(m)
	q.leased--
	q.dueLocked()
	cb := q.joinLocked()
	cb.log = format.AppendLeaseRecord(cb.log, format.LeaseDone, m.rec.ID, 0)
	cb.undo = append(cb.undo, func() {
		// Leased again as it was; if its lease ran out meanwhile, the next
		// promotion makes it visible.
		q.putHeldLocked(m)
		heap.Push(&q.hidden, m)
		q.leased++
		q.dueLocked()
	})
	q.mu.Unlock()
	q.kick()
	<-cb.done
	return cb.err
}

// nack ends a lease early: the message is visible again after delay (at
// once for 0), or goes to the DLQ if it reached MaxDeliveries. Nothing is
// written: after a crash it is visible at once either way.
func (q *queue) nack(receipt string, delay time.Duration) error {
	now := q.nowMs()
	q.mu.Lock()
	m, err := q.leaseLocked(receipt, now)
	if err != nil {
		q.mu.Unlock()
		return err
	}
	m.seq = 0
	q.leased--
	if delay > 0 {
		m.until = now + delay.Milliseconds()
		heap.Fix(&q.hidden, m.idx)
		q.dueLocked()
		q.mu.Unlock()
		return nil
	}
	m.until = now // due now: promoteLocked makes it visible or dead
	heap.Fix(&q.hidden, m.idx)
	dead, woke := q.promoteLocked(now)
	if woke {
		q.broadcastLocked(make(chan struct{}))
	}
	q.mu.Unlock()
	if len(dead) > 0 {
		go q.deadLetter(dead)
	}
	return nil
}

// extend makes a running lease end lease from now.
func (q *queue) extend(receipt string, lease time.Duration) (time.Time, error) {
	now := q.nowMs()
	q.mu.Lock()
	defer q.mu.Unlock()
	m, err := q.leaseLocked(receipt, now)
	if err != nil {
		return time.Time{}, err
	}
	m.until = now + lease.Milliseconds()
	heap.Fix(&q.hidden, m.idx)
	q.dueLocked()
	return time.UnixMilli(m.until), nil
}
