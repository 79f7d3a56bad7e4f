package engine

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

// Redrive: moving a dead-letter queue's messages back to their source
// queue, each under a server-internal idempotency key so that a crash or a
// retry never stores one twice.

// Redrive rounds: leases of at most redriveChunk messages and
// redriveChunkBytes of bodies, held at most redriveLease (a crash makes
// them visible again at restart anyway).
const (
	redriveChunk      = 1000
	redriveChunkBytes = 16 << 20
	redriveLease      = 5 * time.Minute
)

// Redrive moves up to max messages (0: all) of the dead-letter queue dlq
// ({name}.dlq) back to the queue {name}, in id order, keeping their TTLs
// (the time they had left). Only messages visible in dlq when it starts
// move: leased and delayed ones stay. Each message is leased in dlq,
// enqueued to {name} under a server-internal idempotency key derived from
// dlq, its id and its enqueue time, and then acked in dlq; so a crash
// between the two stores it once within DedupWindow (the lease ends at the
// restart and the next Redrive's enqueue is deduplicated). It returns how
// many moved; on an error, those moved so far stay moved. ErrNotDLQ for a
// name without the .dlq suffix, ErrQueueNotFound for an unknown dlq. Safe
// for concurrent use.
func (e *Engine) Redrive(ctx context.Context, dlq string, max int) (int, error) {
	if !ValidQueueName(dlq) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidQueueName, dlq)
	}
	src, ok := strings.CutSuffix(dlq, ".dlq")
	if !ok || !ValidQueueName(src) {
		return 0, fmt.Errorf("%w: %q", ErrNotDLQ, dlq)
	}
	dq, err := e.adminQueue(dlq)
	if err != nil {
		return 0, err
	}
	dq.mu.Lock()
	last := dq.committed // messages enqueued during the redrive stay
	dq.mu.Unlock()
	total := 0
	for max <= 0 || total < max {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := redriveChunk
		if max > 0 {
			n = min(n, max-total)
		}
		msgs, _, err := dq.dequeueBatch(n, redriveChunkBytes, redriveLease)
		if errors.Is(err, errNone) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		// A round may stop short of n at redriveChunkBytes: only an empty
		// one, or one reaching past last, ends the redrive.
		done := false
		if i := slices.IndexFunc(msgs, func(m Message) bool { return m.ID > last }); i >= 0 {
			dq.release(msgs[i:])
			msgs, done = msgs[:i], true
		}
		moved, err := e.redriveChunk(dq, src, msgs)
		total += moved
		if err != nil || done {
			return total, err
		}
	}
	return total, nil
}

// redriveChunk enqueues leased messages of dq to src and acks them in dq.
// It returns how many moved (expired ones are acked and not counted).
func (e *Engine) redriveChunk(dq *queue, src string, msgs []Message) (int, error) {
	recs := redriveRecords(dq.name, msgs, e.opts.Now())
	if len(recs) > 0 {
		if err := e.enqueueKeyed(src, recs); err != nil {
			dq.release(msgs)
			return 0, err
		}
	}
	if err := dq.ackAll(msgs); err != nil {
		// Stored in src; the leases end and a later redrive's enqueue is
		// deduplicated by the keys.
		return 0, err
	}
	dq.redriven.Add(uint64(len(recs)))
	dq.expired.Add(uint64(len(msgs) - len(recs)))
	return len(recs), nil
}

// redriveRecords are the records that redrive enqueues for msgs of dlq,
// each with the TTL it had left at now (expired ones are left out) and its
// key. The key names the DLQ message by queue, id and enqueue time, not id
// alone, so that the ids of a DLQ deleted and created again (which start
// at 1) are not taken for those already moved.
func redriveRecords(dlq string, msgs []Message, now time.Time) []keyedRecord {
	recs := make([]keyedRecord, 0, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		var ttl time.Duration
		if !m.ExpiresAt.IsZero() {
			if ttl = m.ExpiresAt.Sub(now); ttl <= 0 {
				continue
			}
		}
		key := []byte(internalKey("redrive", dlq, strconv.FormatUint(m.ID, 10), strconv.FormatInt(m.EnqueuedAt.UnixMilli(), 10)))
		recs = append(recs, keyedRecord{rec: segment.Record{Key: key, Payload: m.Body}, ttl: ttlMs(ttl)})
	}
	return recs
}

// enqueueKeyed stores recs in the named queue, in order, each under its
// own server-internal idempotency key (rec.Key, starting with 0x00: the API
// refuses such keys from clients, so none can collide with it or forge
// it). A record whose key the queue already holds within DedupWindow is
// not stored again. The records share one group commit but are not a
// batch: a crash may keep some of them, each whole.
func (e *Engine) enqueueKeyed(name string, recs []keyedRecord) error {
	for {
		q, err := e.queue(name, true)
		if err != nil {
			return err
		}
		if err := q.enqueueKeyed(recs); err != errRetired {
			return err
		}
		<-q.stopped
	}
}

// keyedRecord is a record of enqueueKeyed, with its TTL in ms from its
// commit (ttlMs).
type keyedRecord struct {
	rec segment.Record
	ttl int64
}

func (q *queue) enqueueKeyed(recs []keyedRecord) error {
	var size int64
	for i := range recs {
		size += frameSize(len(recs[i].rec.Payload), len(recs[i].rec.Key), false)
	}
	q.mu.Lock()
	if q.closing {
		// Before recs is compacted below: a retired queue's caller tries
		// again with the same records.
		err := q.closedErr()
		q.mu.Unlock()
		return err
	}
	var dups []keyEntry
	var b *batch
	fresh := 0
	for i := range recs {
		if k, ok := q.keyedLocked(string(recs[i].rec.Key)); ok {
			dups = append(dups, k)
			continue
		}
		recs[fresh] = recs[i]
		fresh++
	}
	if fresh > 0 {
		if err := q.admitLocked(fresh, size); err != nil {
			q.mu.Unlock()
			return err
		}
		b = q.pend
		for i := range recs[:fresh] {
			q.keys[string(recs[i].rec.Key)] = keyEntry{b: b, i: len(b.recs), n: 1}
			b.recs = append(b.recs, recs[i].rec)
			b.after = append(b.after, relTimes{ttl: recs[i].ttl})
		}
		b.keyed = true
		b.bytes += size
	}
	q.mu.Unlock()
	if b != nil {
		q.kick()
		<-b.done
		if b.err != nil {
			return b.err
		}
	}
	for _, k := range dups {
		if _, _, err := k.wait(); err != nil && !errors.Is(err, ErrDuplicate) {
			return err
		}
	}
	return nil
}

// ackAll acks leased messages together: one lease log write for all. A
// message whose lease ended meanwhile is left alone (delivered again).
func (q *queue) ackAll(msgs []Message) error {
	now := q.nowMs()
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return ErrClosed
	}
	cb := q.joinLocked()
	for i := range msgs {
		m, err := q.leaseLocked(msgs[i].Receipt, now)
		if err != nil {
			continue
		}
		heap.Remove(&q.hidden, m.idx)
		q.delHeldLocked(m)
		q.leased--
		cb.log = format.AppendLeaseRecord(cb.log, format.LeaseDone, m.rec.ID, 0)
		cb.undo = append(cb.undo, func() {
			q.putHeldLocked(m)
			heap.Push(&q.hidden, m)
			q.leased++
			q.dueLocked()
		})
	}
	q.dueLocked()
	q.mu.Unlock()
	q.kick()
	<-cb.done
	return cb.err
}

// release ends redrive's leases of msgs without counting a delivery: they
// are visible again at once, in id order, with their delivery count as
// before (unlike a nack, which counts toward MaxDeliveries). Nothing is
// written: a restart makes them visible anyway (their lease record's count
// is one higher then).
func (q *queue) release(msgs []Message) {
	now := q.nowMs()
	q.mu.Lock()
	defer q.mu.Unlock()
	woke := false
	for i := range msgs {
		m, err := q.leaseLocked(msgs[i].Receipt, now)
		if err != nil {
			continue
		}
		q.unheapLocked(m)
		m.count--
		m.until = 0
		heap.Push(&q.visible, m)
		woke = true
	}
	q.dueLocked()
	if woke {
		q.broadcastLocked(make(chan struct{}))
	}
}
