package engine

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mqueue/mqueue/engine/format"
)

// Dead letters: moving a message delivered MaxDeliveries times to the
// queue {name}.dlq under a server-internal idempotency key, then acking it
// here.

// deadLetter moves messages that reached MaxDeliveries to the queue
// {name}.dlq: each is enqueued there (with an internal idempotency key,
// which no client can send, so that a crash between that and the ack here
// cannot store it twice within the dedup window), then acked here. One
// that cannot be moved stays held and is tried again a second later.
func (q *queue) deadLetter(ms []*heldMsg) {
	dlq := q.name + ".dlq"
	for _, m := range ms {
		moved, err := q.moveToDLQ(dlq, m)
		if err == nil {
			if moved {
				q.deadLettered.Add(1)
			} else {
				q.expired.Add(1)
			}
			continue
		}
		q.log.ErrorContext(RepeatingLog, "could not move a message to the dead-letter queue; trying again in a second", "id", m.rec.ID, "dlq", dlq, "err", err)
		q.mu.Lock()
		m.moving = false
		m.until = q.nowMs() + 1000
		heap.Push(&q.hidden, m)
		q.dueLocked()
		q.mu.Unlock()
	}
}

// moveToDLQ enqueues m to dlq (unless it expired: moved is false) and
// acks it here.
func (q *queue) moveToDLQ(dlq string, m *heldMsg) (moved bool, err error) {
	now := q.nowMs()
	if !m.rec.Expired(now) {
		if !ValidQueueName(dlq) {
			return false, fmt.Errorf("%w: %q (the queue's name is too long for a dead-letter queue)", ErrInvalidQueueName, dlq)
		}
		var ttl time.Duration
		if m.rec.ExpiresAt != 0 {
			ttl = time.Duration(m.rec.ExpiresAt-now) * time.Millisecond
		}
		// The enqueue time too: a queue deleted and created again within
		// the window starts its ids at 1, and its message 1 is not the
		// one an earlier move took.
		key := internalKey("dlq", q.name, strconv.FormatUint(m.rec.ID, 10), strconv.FormatInt(m.rec.EnqueuedAt, 10))
		q.mu.Lock()
		body, err := q.payloadLocked(m)
		q.mu.Unlock()
		if err != nil {
			return false, err
		}
		_, err = q.e.enqueueInternal(context.Background(), dlq, body, EnqueueOptions{TTL: ttl, Key: key})
		if err != nil && !errors.Is(err, ErrDuplicate) {
			return false, err
		}
		moved = true
	}
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return moved, ErrClosed // the DLQ's copy, if made, is deduplicated next time
	}
	q.delHeldLocked(m)
	cb := q.joinLocked()
	cb.log = format.AppendLeaseRecord(cb.log, format.LeaseDone, m.rec.ID, 0)
	cb.undo = append(cb.undo, func() { q.putHeldLocked(m) })
	q.mu.Unlock()
	q.kick()
	<-cb.done
	return moved, cb.err
}
