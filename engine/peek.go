package engine

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// Peek: reading a queue's messages without taking them.

// PeekedMessage is one message as Peek shows it. DeliveryCount is 0 for a
// message never delivered; Receipt is never set.
type PeekedMessage struct {
	Message
	State string
	// VisibleAt is when a delayed message becomes visible (zero otherwise).
	VisibleAt time.Time
}

// Peek returns up to max unexpired messages of a queue with ids from from
// on, in id order, without changing anything: no cursor move, no lease, no
// counter. from 0 starts at the oldest message not done. The records are
// read through Peek's own segment readers, with the queue's mutex held only
// to copy its state. ErrQueueNotFound for an unknown queue. Safe for
// concurrent use.
func (e *Engine) Peek(name string, from uint64, max int) ([]PeekedMessage, error) {
	for {
		q, err := e.adminQueue(name)
		if err != nil {
			return nil, err
		}
		ms, err := q.peek(from, max)
		if err != errRetired {
			return ms, err
		}
		<-q.stopped // retired meanwhile: look again, which reopens it
	}
}

func (q *queue) peek(from uint64, n int) ([]PeekedMessage, error) {
	n = max(n, 1)
	now := q.nowMs()
	type heldCopy struct {
		rec           segment.Record
		count         uint32
		until         int64
		leased, shown bool
		onDisk        bool
	}
	q.mu.Lock()
	if q.closing {
		err := q.closedErr()
		q.mu.Unlock()
		return nil, err
	}
	// Every held id is below the cursor, so held messages come first: the
	// n lowest ids from from on (ids only are sorted, then n copied).
	var ids []uint64
	for id, m := range q.held {
		if id >= from && !m.moving && !m.rec.Expired(now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	held := make([]heldCopy, min(len(ids), n))
	for i := range held {
		m := q.held[ids[i]]
		held[i] = heldCopy{rec: m.rec, count: m.count, until: m.until, leased: m.seq != 0,
			shown: m.in == &q.visible || m.until <= now, onDisk: m.onDisk}
	}
	start, end := max(from, q.readID), q.committed
	segs := slices.Clone(q.segs)
	q.mu.Unlock()

	out := make([]PeekedMessage, 0, n)
	for _, h := range held {
		if len(out) == n {
			return out, nil
		}
		if h.onDisk {
			rec, err := q.peekOne(segs, h.rec.ID)
			if err != nil {
				return nil, err
			}
			if rec == nil {
				continue // gone: the dequeue that reaches it reports it
			}
			h.rec.Payload = rec.Payload
		}
		pm := PeekedMessage{Message: toMessage(&h.rec), State: StateVisible}
		pm.DeliveryCount = int(h.count)
		switch {
		case h.shown:
		case h.leased:
			pm.State, pm.LeaseExpiresAt = StateInFlight, time.UnixMilli(h.until)
		default:
			pm.State, pm.VisibleAt = StateDelayed, time.UnixMilli(h.until)
		}
		out = append(out, pm)
	}
	if start > end {
		return out, nil
	}
	err := q.peekRange(segs, start, end, func(rec *segment.Record) bool {
		if rec.Expired(now) {
			return true
		}
		pm := PeekedMessage{Message: toMessage(rec), State: StateVisible}
		if rec.VisibleAt > now {
			pm.State, pm.VisibleAt = StateDelayed, time.UnixMilli(rec.VisibleAt)
		}
		out = append(out, pm)
		return len(out) < n
	})
	return out, err
}

// peekOne reads the record with the given id, or nil when no segment holds
// it any more.
func (q *queue) peekOne(segs []segment.Summary, id uint64) (*segment.Record, error) {
	var got *segment.Record
	err := q.peekRange(segs, id, id, func(rec *segment.Record) bool {
		got = rec
		return false
	})
	return got, err
}

// peekRange reads the records with ids in [from, to] in order through
// readers of its own (never q.reader: a Reader is not safe for concurrent
// use) and hands each to fn, its payload a copy, until fn returns false.
// Corrupt records and segments deleted meanwhile (compacted: consumed or
// expired) are skipped; the dequeue that reaches a corrupt record counts
// and logs it.
func (q *queue) peekRange(segs []segment.Summary, from, to uint64, fn func(*segment.Record) bool) error {
	for _, s := range segs {
		if s.Records == 0 || s.LastID() < from {
			continue
		}
		if s.Base > to {
			return nil
		}
		r, err := segment.OpenReader(q.dir, s.Base)
		if errors.Is(err, segment.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("queue %s: peek: %w", q.name, err)
		}
		more, err := peekSegment(r, s, from, to, fn)
		r.Close()
		if err != nil {
			return fmt.Errorf("queue %s: peek: %w", q.name, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// peekSegment is peekRange within one segment. It reports whether fn wants
// more.
func peekSegment(r *segment.Reader, s segment.Summary, from, to uint64, fn func(*segment.Record) bool) (bool, error) {
	// Only committed bytes: past them is preallocated space or a batch
	// being written.
	r.SetLimit(s.Bytes)
	var ce *segment.CorruptionError
	if _, err := r.SkipTo(max(from, s.Base)); err != nil {
		if errors.As(err, &ce) || errors.Is(err, io.EOF) {
			return true, nil // unreadable past here: nothing to show
		}
		return false, err
	}
	for r.NextID() <= min(to, s.LastID()) {
		rec, err := r.Next()
		switch {
		case err == nil:
		case errors.As(err, &ce) && !ce.Framing():
			continue
		case errors.As(err, &ce), errors.Is(err, io.EOF):
			return true, nil
		default:
			return false, err
		}
		rec.Payload = append([]byte(nil), rec.Payload...)
		rec.Key = nil
		if !fn(&rec) {
			return false, nil
		}
	}
	return true, nil
}

// Message states of Peek.
const (
	StateVisible  = "visible"   // the next dequeues may take it
	StateInFlight = "in_flight" // under a running lease
	StateDelayed  = "delayed"   // hidden until VisibleAt (a POST's delay or a nack's)
)
