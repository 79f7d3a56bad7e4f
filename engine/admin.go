package engine

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// Queue administration: list, delete, purge, peek and redrive.
//
// Delete stops the queue's commit loop (its final commit and fsyncs run as
// at Close), renames its directory to a tombstone and fsyncs the data
// directory, and only then removes the files: a crash leaves the whole
// queue or, once the rename is durable, a tombstone that the next Open
// removes. Purge moves the read cursor past everything committed and
// records every held message done in the lease log, in one cursor write.
// Peek reads through its own segment readers, never the queue's. Redrive
// leases messages of a .dlq, enqueues them to the source queue under
// server-internal idempotency keys, then acks them: a crash between the two
// leaves the leases to end at restart, and the next redrive's enqueue is
// deduplicated by the key (within DedupWindow).

// tombstonePrefix starts the name a deleted queue's directory takes until
// its files are gone. It starts with a dot, so no valid queue name has it
// (Open skips it and removes it), and it is not lockName.
const tombstonePrefix = ".deleted-"

// isTombstone reports whether a data directory entry is a deleted queue's.
func isTombstone(name string) bool {
	return strings.HasPrefix(name, tombstonePrefix) && name != lockName
}

// removeTombstones removes what deletions that a crash interrupted left in
// the data directory. A failure is logged, not fatal: the tombstone is
// never read as a queue and the next Open tries again.
func removeTombstones(dir string, ents []os.DirEntry, log *slog.Logger) {
	removed := false
	for _, ent := range ents {
		if !ent.IsDir() || !isTombstone(ent.Name()) {
			continue
		}
		path := filepath.Join(dir, ent.Name())
		if err := os.RemoveAll(path); err != nil {
			log.Error("could not remove a deleted queue's files; trying again at the next start", "path", path, "err", err)
			continue
		}
		removed = true
		log.Info("removed the files of a queue deleted before a crash", "path", path)
	}
	if removed {
		if err := segment.SyncDir(dir); err != nil {
			log.Warn("fsync data dir after removing deleted queues", "err", err)
		}
	}
}

// QueueInfo is one queue as ListQueues lists it. Its counts are those of
// QueueStats.
type QueueInfo struct {
	Name     string `json:"name"`
	Depth    int64  `json:"depth"`
	InFlight int64  `json:"in_flight"`
	Delayed  int64  `json:"delayed"`
	// Unavailable is set for a queue whose files could not be recovered
	// at start (its counts are 0); DeleteQueue removes it.
	Unavailable bool `json:"unavailable,omitempty"`
}

// ListQueues returns up to limit queues (at least 1) whose names sort after
// after ("" for the first page), in name order, and whether more follow.
// Safe for concurrent use.
func (e *Engine) ListQueues(after string, limit int) (page []QueueInfo, more bool) {
	limit = max(limit, 1)
	e.mu.RLock()
	names := make([]string, 0, len(e.queues)+len(e.dormant)+len(e.failed))
	add := func(name string) {
		if name > after {
			names = append(names, name)
		}
	}
	for name := range e.queues {
		add(name)
	}
	for name := range e.dormant {
		add(name)
	}
	for name, oc := range e.opening {
		if oc.prev != nil { // a dormant queue being reopened
			add(name)
		}
	}
	for name := range e.failed {
		add(name)
	}
	slices.Sort(names)
	if len(names) > limit {
		names, more = names[:limit], true
	}
	qs := make([]*queue, len(names))
	page = make([]QueueInfo, len(names))
	for i, name := range names {
		page[i].Name = name
		qs[i] = e.queues[name]
		switch st := e.dormantStatsLocked(name); {
		case qs[i] != nil:
		case st != nil:
			page[i].Depth, page[i].InFlight, page[i].Delayed = st.Depth, st.InFlight, st.Delayed
		default:
			page[i].Unavailable = true
		}
	}
	e.mu.RUnlock()
	for i, q := range qs {
		if q != nil {
			st := q.stats()
			page[i].Depth, page[i].InFlight, page[i].Delayed = st.Depth, st.InFlight, st.Delayed
		}
	}
	return page, more
}

// DeleteQueue deletes a queue and its files. The queue stops first:
// requests already accepted are answered (an enqueue that got its id is
// stored, then deleted with the rest), later ones wait for the deletion and
// then see an unknown queue (an enqueue creates a fresh one, whose ids
// start at 1), and long polls return empty. It returns once the deletion
// is durable. A dormant queue, and one that could not be recovered at
// start, is deleted too. ErrQueueNotFound for an unknown queue; ErrClosed
// when the engine closes first (the queue then stays whole). Safe for
// concurrent use.
func (e *Engine) DeleteQueue(name string) error {
	if !ValidQueueName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidQueueName, name)
	}
	defer e.metas.drop(name) // once the deletion is done (meta.go)
	// A placeholder in e.opening holds the name for the whole deletion, as
	// an opening does (lifecycle.go): nothing reopens or creates the
	// directory meanwhile; callers wait on it and then look again.
	var q *queue
	var d *dormantQueue
	var ferr error
	oc := &openCall{done: make(chan struct{})}
	for {
		e.mu.Lock()
		select {
		case <-e.closing:
			e.mu.Unlock()
			return ErrClosed
		default:
		}
		if other := e.opening[name]; other != nil {
			e.mu.Unlock()
			<-other.done
			continue
		}
		q, d, ferr = e.queues[name], e.dormant[name], e.failed[name]
		if q == nil && d == nil && ferr == nil {
			e.mu.Unlock()
			return fmt.Errorf("%w: %s", ErrQueueNotFound, name)
		}
		e.opening[name] = oc
		delete(e.dormant, name)
		e.mu.Unlock()
		break
	}
	if d != nil {
		e.diskBytes.Add(-d.stats.DiskBytes)
		close(d.woke) // its long polls look again, wait on oc, then end
	}
	if q != nil {
		q.deleted.Store(true)
		if !e.retire(q, false) {
			// Already closing: an idle retirement (it leaves a dormant
			// queue, taken below) or the engine's Close.
			<-q.stopped
		}
	}
	e.mu.Lock()
	if d := e.dormant[name]; d != nil { // an idle retirement that raced us
		delete(e.dormant, name)
		e.diskBytes.Add(-d.stats.DiskBytes)
		close(d.woke)
	}
	e.mu.Unlock()
	tomb, err := e.tombstone(name)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			e.dropPlaceholder(name, oc, ErrClosed)
			return err // stopped and closed whole: the queue stays
		}
		if ferr == nil {
			// Not renamed: the queue is whole; open it again (open drops
			// the placeholder and wakes those waiting on it).
			if _, oerr := e.open(name, oc); oerr != nil {
				e.opts.Logger.Error("queue not deleted and not reopened; it is served again after a restart", "queue", name, "err", oerr)
			}
		} else {
			e.dropPlaceholder(name, oc, nil)
		}
		return classify(fmt.Errorf("delete queue %s: %w", name, err))
	}
	e.mu.Lock()
	delete(e.failed, name)
	e.mu.Unlock()
	e.dropPlaceholder(name, oc, nil)
	if err := os.RemoveAll(tomb); err != nil {
		// Durably deleted already; the next Open finishes the removal.
		e.opts.Logger.Error("deleted queue's files not all removed; the next start removes them", "queue", name, "path", tomb, "err", err)
	}
	e.opts.Logger.Info("queue deleted", "queue", name)
	return nil
}

// dropPlaceholder ends DeleteQueue's hold on a name and wakes those that
// wait on it with err.
func (e *Engine) dropPlaceholder(name string, oc *openCall, err error) {
	e.mu.Lock()
	if e.opening[name] == oc {
		delete(e.opening, name)
	}
	e.mu.Unlock()
	oc.err = err
	close(oc.done)
}

// tombstone renames the queue's directory to a tombstone and fsyncs the
// data directory: from then on the deletion survives a crash.
func (e *Engine) tombstone(name string) (string, error) {
	dir := filepath.Join(e.opts.Dir, name)
	tomb := filepath.Join(e.opts.Dir, tombstonePrefix+name+"-"+strconv.FormatInt(time.Now().UnixNano(), 10))
	// Under e.mu, so that Close (which takes it to begin) cannot release
	// the directory lock before the rename and let a new process open the
	// queue that this one then renames away.
	e.mu.RLock()
	select {
	case <-e.closing:
		e.mu.RUnlock()
		return "", ErrClosed
	default:
	}
	err := os.Rename(dir, tomb)
	e.mu.RUnlock()
	if err != nil {
		return "", fmt.Errorf("rename %s to a tombstone: %w", dir, err)
	}
	if err := segment.SyncDir(e.opts.Dir); err != nil {
		// The rename may or may not reach the disk; either way the queue
		// is whole or gone. Go on: the files are the tombstone's now.
		e.opts.Logger.Warn("fsync data dir after renaming a deleted queue", "err", err)
	}
	return tomb, nil
}

// Purge removes every current message of a queue for good: the unconsumed
// ones (delayed too) and the held ones (leased, delayed by a nack, visible
// again). It returns how many, once the cursor move and the lease log's
// done records are written (and fsynced as the mode says). Messages
// committed after it are delivered normally; ids are never reused;
// compaction then deletes the segments. The count includes expired
// messages that no read had skipped yet. ErrQueueNotFound for an unknown
// queue. Safe for concurrent use.
func (e *Engine) Purge(name string) (int64, error) {
	for {
		q, err := e.adminQueue(name)
		if err != nil {
			return 0, err
		}
		n, err := q.purge()
		if err != errRetired {
			return n, err
		}
		<-q.stopped // retired meanwhile: look again, which reopens it
	}
}

// adminQueue returns an existing queue, or ErrQueueNotFound.
func (e *Engine) adminQueue(name string) (*queue, error) {
	q, err := e.queue(name, false)
	if err != nil {
		return nil, err
	}
	if q == nil {
		return nil, fmt.Errorf("%w: %s", ErrQueueNotFound, name)
	}
	return q, nil
}

func (q *queue) purge() (int64, error) {
	q.mu.Lock()
	if q.closing {
		err := q.closedErr()
		q.mu.Unlock()
		return 0, err
	}
	n := q.depth
	q.readID, q.depth = q.committed+1, 0
	q.tmu.Lock()
	q.tail.dropBefore(q.readID)
	q.tmu.Unlock()
	cb := q.joinLocked()
	for _, m := range q.held {
		if m.moving {
			continue // deadLetter acks it once it is in the DLQ
		}
		hidden, seq := m.in == &q.hidden, m.seq
		q.unheapLocked(m)
		q.delHeldLocked(m)
		cb.log = appendLeaseRec(cb.log, leaseKindDone, m.rec.ID, 0)
		cb.undo = append(cb.undo, func() {
			q.putHeldLocked(m)
			if !hidden {
				heap.Push(&q.visible, m)
				return
			}
			if m.seq = seq; seq != 0 {
				q.leased++
			}
			heap.Push(&q.hidden, m)
			q.dueLocked()
		})
		n++
	}
	q.dueLocked()
	// On failure the commit loop rewinds the cursor to the persisted
	// position and runs the undos: nothing is purged.
	if err := q.persistReadLocked(); err != nil {
		return 0, err
	}
	q.purged.Add(uint64(n))
	q.log.Info("queue purged", "messages", n)
	return n, nil
}

// Message states of Peek.
const (
	StateVisible  = "visible"   // the next dequeues may take it
	StateInFlight = "in_flight" // under a running lease
	StateDelayed  = "delayed"   // hidden until VisibleAt (a POST's delay or a nack's)
)

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

// wasDeleted reports whether DeleteQueue took q (waitFor ends its long polls).
func (q *queue) wasDeleted() bool { return q.deleted.Load() }

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
		cb.log = appendLeaseRec(cb.log, leaseKindDone, m.rec.ID, 0)
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
		close(q.notify)
		q.notify = make(chan struct{})
	}
}
