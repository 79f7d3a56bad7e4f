package engine

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

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

// LeaseRecordSize is the size of a lease log record (the file "leases"
// in a queue's directory): [crc32c u32][kind u8][id u64][count u32], the
// CRC over the 13 bytes after it; kind 1 leases the id (count: its
// deliveries so far), kind 2 ends it.
const LeaseRecordSize = leaseRecSize

const (
	leasesName    = "leases"
	leaseRecSize  = 17
	leaseKindHold = 1 // the message is leased; count is its deliveries so far
	leaseKindDone = 2 // acked, popped for good, or moved to the DLQ
)

func appendLeaseRec(dst []byte, kind byte, id uint64, count uint32) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kind)
	dst = binary.LittleEndian.AppendUint64(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, count)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], crcTable))
	return dst
}

// DecodeLeaseLog parses a lease log: for each id the delivery count of its
// last lease record and whether a done record followed. bad counts records
// whose CRC or kind is wrong (skipped); torn is the length of an incomplete
// record at the end.
func DecodeLeaseLog(b []byte) (count map[uint64]uint32, done map[uint64]bool, bad, torn int) {
	count, done = map[uint64]uint32{}, map[uint64]bool{}
	for len(b) >= leaseRecSize {
		r := b[:leaseRecSize]
		b = b[leaseRecSize:]
		if crc32.Checksum(r[4:], crcTable) != binary.LittleEndian.Uint32(r) {
			bad++
			continue
		}
		id := binary.LittleEndian.Uint64(r[5:])
		switch r[4] {
		case leaseKindHold:
			count[id] = binary.LittleEndian.Uint32(r[13:])
			delete(done, id)
		case leaseKindDone:
			done[id] = true
		default:
			bad++
		}
	}
	return count, done, bad, len(b)
}

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
		close(q.notify)
		q.notify = make(chan struct{})
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
	cb.log = appendLeaseRec(cb.log, leaseKindHold, rec.ID, 0)
	cb.undo = append(cb.undo, func() { q.forgetLocked(m) })
	q.kick() // the cursor moved: the loop writes it even if nothing is delivered now
	return true
}

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
		cb.log = appendLeaseRec(cb.log, leaseKindDone, rec.ID, 0)
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
		cb.log = appendLeaseRec(cb.log, leaseKindHold, rec.ID, m.count)
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
	cb.log = appendLeaseRec(cb.log, leaseKindDone, m.rec.ID, 0)
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
		close(q.notify)
		q.notify = make(chan struct{})
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
	cb.log = appendLeaseRec(cb.log, leaseKindDone, m.rec.ID, 0)
	cb.undo = append(cb.undo, func() { q.putHeldLocked(m) })
	q.mu.Unlock()
	q.kick()
	<-cb.done
	return moved, cb.err
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

// leaseSnapshotLocked encodes the live state of the lease log: one lease
// record per held message.
func (q *queue) leaseSnapshotLocked() []byte {
	buf := make([]byte, 0, len(q.held)*leaseRecSize)
	for id, m := range q.held {
		buf = appendLeaseRec(buf, leaseKindHold, id, m.count)
	}
	return buf
}

// writeLeaseLog writes a commit turn's lease records: appended to the log,
// or the whole log replaced (cb.rewrite). Runs on the commit loop, which
// owns the file. A failed append leaves the file to be rewritten from
// memory at the next turn.
func (q *queue) writeLeaseLog(cb *cursorBatch) error {
	if cb.rewrite {
		if q.leaseFile != nil {
			q.leaseFile.Close()
			q.leaseFile = nil
		}
		if err := writeFileAtomic(q.dir, leasesName, cb.log); err != nil {
			return err
		}
		q.leaseRecs = len(cb.log) / leaseRecSize
		q.leaseRewrite = false
		return nil
	}
	path := filepath.Join(q.dir, leasesName)
	if q.leaseFile == nil {
		f, err := openLog(q.dir, leasesName)
		if err != nil {
			q.leaseRewrite = true
			return err
		}
		q.leaseFile = f
	}
	_, err := q.leaseFile.Write(cb.log)
	if err == nil && q.e.opts.Fsync == FsyncAlways {
		start := time.Now()
		err = syscall.Fdatasync(int(q.leaseFile.Fd()))
		q.observeFsync(start)
	} else if err == nil {
		q.dirty = true
	}
	if err != nil {
		q.leaseRewrite = true
		q.leaseFile.Close()
		q.leaseFile = nil
		return fmt.Errorf("append to lease log %s: %w", path, err)
	}
	q.leaseRecs += len(cb.log) / leaseRecSize
	return nil
}

// syncLeaseLog fsyncs the lease log, if it was written (interval mode).
func (q *queue) syncLeaseLog() error {
	if q.leaseFile == nil {
		return nil
	}
	if err := syscall.Fdatasync(int(q.leaseFile.Fd())); err != nil {
		return fmt.Errorf("fsync lease log in %s: %w", q.dir, err)
	}
	return nil
}

// loadLeases rebuilds the held messages at start from the lease log: every
// id below the cursor that was leased and not done is visible again, with
// its delivery count, its body read from its segment. The log is then
// rewritten with those alone.
func (q *queue) loadLeases() error {
	raw, err := os.ReadFile(filepath.Join(q.dir, leasesName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lease log in %s: %w", q.dir, err)
	}
	if len(raw) == 0 {
		return nil // nothing held (a retired queue's, lifecycle.go): nothing to rewrite
	}
	count, done, bad, torn := DecodeLeaseLog(raw)
	if bad > 0 {
		q.log.Error("lease log has corrupt records; they were skipped (a skipped ack delivers its message again)", "records", bad)
	}
	if torn > 0 {
		q.log.Warn("lease log ends in a torn record; cut", "bytes", torn)
	}
	var ids []uint64
	for id := range count {
		if !done[id] && id < q.readID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	now := q.nowMs()
	q.readIDs(ids, func(rec segment.Record) {
		if rec.Expired(now) {
			return
		}
		m := &heldMsg{rec: rec, count: count[rec.ID]}
		q.putHeldLocked(m)
		if rec.VisibleAt > now {
			// Delayed and not yet due: held until then, as before.
			m.until = rec.VisibleAt
			heap.Push(&q.hidden, m)
			return
		}
		heap.Push(&q.visible, m)
	})
	if n := len(ids) - len(q.held); n > 0 {
		q.log.Warn("leased messages not found or expired at start; not delivered again", "messages", n)
	}
	if n := q.visible.Len(); n > 0 {
		q.log.Info("leased messages visible again after a restart", "messages", n)
	}
	q.dueLocked()
	snap := q.leaseSnapshotLocked()
	if err := writeFileAtomic(q.dir, leasesName, snap); err != nil {
		q.releaseMemory() // the queue does not open: its held bodies go back
		return err
	}
	q.leaseRecs = len(snap) / leaseRecSize
	return nil
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
