package engine

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// The read path: a dequeue or lease takes the next message from what was
// visible again after a lease (lease.go), the memory tail (tail.go) or the
// segment files, in id order, and waits for the cursor write that moves
// past it (the commit loop, commit.go).

// errNone means no message is ready; notify is the channel to wait on.
var errNone = errors.New("no message")

// dequeue pops the next unexpired message (one visible again after a
// lease first), for good or, with lease > 0, under a lease, and waits
// until the cursor move and lease records are written (and fsynced as the
// mode says). When there is none it returns errNone and the channel that
// is closed when messages are committed or become visible again.
func (q *queue) dequeue(lease time.Duration) (Message, <-chan struct{}, error) {
	q.mu.Lock()
	now, err := q.startPopLocked(lease)
	if err != nil {
		q.mu.Unlock()
		return Message{}, nil, err
	}
	rec, m, err := q.popLocked(now)
	if err != nil {
		ch := q.notify
		q.mu.Unlock()
		return Message{}, ch, err
	}
	msg := q.deliverLocked(rec, m, lease, now, q.joinLocked())
	if err := q.persistReadLocked(); err != nil {
		return Message{}, nil, err
	}
	return msg, nil, nil
}

// startPopLocked checks that a dequeue may go on and makes due leases
// visible first. It returns the time the dequeue works at.
func (q *queue) startPopLocked(lease time.Duration) (int64, error) {
	if q.closing {
		return 0, q.closedErr()
	}
	now := q.nowMs()
	if dead, _ := q.promoteLocked(now); len(dead) > 0 {
		go q.deadLetter(dead)
	}
	if q.heldFullLocked(lease) {
		return 0, fmt.Errorf("%w: %d held", ErrTooManyInFlight, len(q.held))
	}
	return now, nil
}

// heldFullLocked reports whether a lease must wait: the queue holds
// MaxInFlight messages and none of them is visible again (leasing one of
// those adds nothing).
func (q *queue) heldFullLocked(lease time.Duration) bool {
	return lease > 0 && q.visible.Len() == 0 && len(q.held) >= MaxInFlight
}

// dequeueBatch pops up to max unexpired messages, stopping early once their
// bodies reach maxBytes (it always takes one), and waits for one cursor
// write for all of them. With none ready it returns errNone and the channel
// closed when messages are committed, like dequeue.
func (q *queue) dequeueBatch(max int, maxBytes int64, lease time.Duration) ([]Message, <-chan struct{}, error) {
	q.mu.Lock()
	now, err := q.startPopLocked(lease)
	if err != nil {
		q.mu.Unlock()
		return nil, nil, err
	}
	var msgs []Message
	var bytes int64
	for len(msgs) < max && bytes < maxBytes {
		if q.heldFullLocked(lease) {
			break
		}
		rec, m, err := q.popLocked(now)
		if errors.Is(err, errNone) {
			break
		}
		if err != nil {
			if len(msgs) > 0 {
				break // deliver what was popped; the error comes back next time
			}
			q.mu.Unlock()
			return nil, nil, err
		}
		msgs = append(msgs, q.deliverLocked(rec, m, lease, now, q.joinLocked()))
		bytes += int64(len(rec.Payload))
	}
	if len(msgs) == 0 {
		ch := q.notify
		q.mu.Unlock()
		return nil, ch, errNone
	}
	if err := q.persistReadLocked(); err != nil {
		return nil, nil, err
	}
	return msgs, nil, nil
}

// toMessage converts a popped record.
func toMessage(rec *segment.Record) Message {
	msg := Message{ID: rec.ID, Body: rec.Payload, EnqueuedAt: time.UnixMilli(rec.EnqueuedAt)}
	if rec.ExpiresAt != 0 {
		msg.ExpiresAt = time.UnixMilli(rec.ExpiresAt)
	}
	return msg
}

// persistReadLocked joins the next cursor write, unlocks q.mu and waits
// until the read position is written (and fsynced as the mode says).
func (q *queue) persistReadLocked() error {
	cb := q.joinLocked()
	q.mu.Unlock()
	q.kick()
	<-cb.done
	return cb.err
}

// nextLocked moves readID past the next deliverable record and returns it,
// skipping (and counting) expired and corrupt ones. The payload it returns
// is the caller's to keep.
func (q *queue) nextLocked() (segment.Record, error) {
	now := q.nowMs()
	for q.readID <= q.committed {
		// One tmu section per record read from the tail: take it and
		// forget it (and anything older) there.
		var rec segment.Record
		q.tmu.Lock()
		r, ok := q.tail.get(q.readID)
		if ok {
			rec = *r
			q.tail.dropBefore(rec.ID + 1)
		}
		q.tmu.Unlock()
		if !ok {
			r, err := q.readDiskLocked()
			if err != nil {
				if errors.Is(err, errNone) {
					continue // readID moved past a gap or a bad stretch
				}
				return segment.Record{}, err
			}
			rec = r
			q.tmu.Lock()
			q.tail.dropBefore(rec.ID + 1)
			q.tmu.Unlock()
		}
		q.readID = rec.ID + 1
		q.depth--
		if rec.Expired(now) {
			q.expired.Add(1)
			continue
		}
		q.dequeued.Add(1)
		return rec, nil
	}
	return segment.Record{}, errNone
}

// readDiskLocked reads the record at readID from its segment file. It
// returns errNone after moving readID past ids that are not there (a gap, a
// corrupt record, an unreadable rest of a segment).
func (q *queue) readDiskLocked() (segment.Record, error) {
	// LastID is monotonic over the sorted segments (an empty one's is
	// Base-1), so search on it alone, then step over empty segments.
	i := sort.Search(len(q.segs), func(i int) bool { return q.segs[i].LastID() >= q.readID })
	for i < len(q.segs) && q.segs[i].Records == 0 {
		i++
	}
	if i == len(q.segs) {
		// Nothing on disk at or after readID: ids up to committed are gone.
		q.readID = q.committed + 1
		return segment.Record{}, errNone
	}
	s := &q.segs[i]
	if q.readID < s.Base {
		q.readID = s.Base // a gap: lost ids or a deleted expired segment
		return segment.Record{}, errNone
	}
	fresh := q.reader == nil || q.reader.Base() != s.Base || q.reader.NextID() != q.readID
	if fresh {
		if q.reader != nil {
			q.reader.Close()
			q.reader = nil
		}
		r, err := segment.OpenReader(q.dir, s.Base)
		if err != nil {
			return segment.Record{}, err
		}
		q.reader = r
	}
	// Only committed bytes: past them the active segment holds zero-filled
	// space or a batch being written, which must not stay in the buffer.
	q.reader.SetLimit(s.Bytes)
	if fresh {
		bad, err := q.reader.SkipTo(q.readID)
		q.countCorrupt(len(bad))
		if err != nil {
			return segment.Record{}, q.badStretchLocked(s, err)
		}
	}
	rec, err := q.reader.Next()
	if err == nil {
		rec.Payload = append([]byte(nil), rec.Payload...)
		return rec, nil
	}
	var ce *segment.CorruptionError
	if errors.As(err, &ce) && !ce.Framing() {
		q.countCorrupt(1)
		q.log.Error("skipping corrupt record", "segment", segment.Name(ce.Segment), "offset", ce.Offset, "id", ce.ID, "kind", ce.Kind.String(), "reason", ce.Err)
		q.readID++
		q.depth--
		return segment.Record{}, errNone
	}
	return segment.Record{}, q.badStretchLocked(s, err)
}

// badStretchLocked handles a segment that cannot be read past some point:
// the ids from readID to its end are reported and skipped, never served.
func (q *queue) badStretchLocked(s *segment.Summary, err error) error {
	var ce *segment.CorruptionError
	if !errors.As(err, &ce) && !errors.Is(err, io.EOF) && !errors.Is(err, segment.ErrNotFound) {
		return fmt.Errorf("queue %s: read segment %s: %w", q.name, segment.Name(s.Base), err)
	}
	lost := s.LastID() - q.readID + 1
	q.countCorrupt(int(lost))
	q.log.Error("segment unreadable past this point; skipping the rest of it", "segment", segment.Name(s.Base),
		"from_id", q.readID, "to_id", s.LastID(), "err", err)
	q.depth -= int64(lost)
	q.readID = s.LastID() + 1
	if q.reader != nil {
		q.reader.Close()
		q.reader = nil
	}
	return errNone
}

func (q *queue) countCorrupt(n int) {
	if n > 0 {
		q.e.opts.Metrics.AddCorrupt(n)
	}
}
