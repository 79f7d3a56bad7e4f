package engine

import (
	"runtime"
	"time"
)

// run is the queue's commit loop: the one goroutine that writes its segment
// and cursor files. Each turn takes everything pending — the records of the
// batch and the cursor position — writes the records with one write, fsyncs
// as the mode says, writes the cursor, and wakes every waiter of the batch
// by closing one channel. Producers keep appending to the next batch while
// this one is on disk: that is the group commit.
func (q *queue) run() {
	defer close(q.stopped)
	opts := &q.e.opts
	// In interval mode a timer is armed when something is written and not
	// yet synced, so an idle queue costs no wake-ups.
	syncTimer := time.NewTimer(time.Hour)
	syncTimer.Stop()
	defer syncTimer.Stop()
	var syncDue <-chan time.Time
	armSync := func() {
		if opts.Fsync == FsyncInterval && q.dirty && syncDue == nil {
			syncTimer.Reset(opts.FsyncInterval)
			syncDue = syncTimer.C
		}
	}
	compact := time.NewTicker(opts.CompactInterval)
	defer compact.Stop()
	// The lease timer fires when the earliest lease or nack delay ends
	// (q.due, published under mu); idle without leases.
	leaseTimer := time.NewTimer(time.Hour)
	leaseTimer.Stop()
	defer leaseTimer.Stop()
	var leaseDue <-chan time.Time
	var armed int64
	armLease := func() {
		due := q.due.Load()
		if due == armed {
			return
		}
		armed = due
		if due == 0 {
			leaseTimer.Stop()
			leaseDue = nil
			return
		}
		// One ms late rather than early: due is in whole ms, and a timer
		// that fires before it finds nothing due and is armed again.
		leaseTimer.Reset(time.Duration(due-q.nowMs()+1) * time.Millisecond)
		leaseDue = leaseTimer.C
	}
	// When the loop last had work: idle for opts.IdleClose, the queue
	// retires (lifecycle.go).
	busy := time.Now()
	q.busyAt.Store(busy.UnixNano())
	idleClose := opts.IdleClose
	for {
		select {
		case <-q.wake:
			// Let producers that are already runnable join the batch
			// before it is taken: without this yield a loop that is
			// faster than its producers (interval and never modes)
			// commits one or two messages per write (1.3-1.5 per commit
			// at wrk -c100; 13-15 with it, see docs/PERFORMANCE.md).
			runtime.Gosched()
			q.commitPending()
			if idleClose > 0 {
				busy = time.Now()
				q.busyAt.Store(busy.UnixNano())
			}
		case <-leaseDue:
			leaseDue, armed = nil, 0
			q.expireLeases()
			busy = time.Now()
			q.busyAt.Store(busy.UnixNano())
		case <-syncDue:
			syncDue = nil
			q.backgroundSync() // leaves dirty set on failure: retried next period
		case <-compact.C:
			q.compact()
			q.commitPending() // persist a cursor the compactor moved
			if idleClose > 0 && time.Since(busy) >= idleClose && q.retireIdle() {
				q.finish()
				return
			}
		case reply := <-q.shedding:
			// Engine.shed asks: retireIdle reads commitState, so the loop
			// answers it itself.
			ok := q.retireIdle()
			reply <- ok
			if ok {
				q.finish()
				return
			}
		case <-q.quit:
			q.finish() // Engine.retire
			return
		case <-q.e.closing:
			q.mu.Lock()
			q.closing = true
			q.mu.Unlock()
			if q.retired.Load() {
				q.finish() // Engine.retire and Close at once
				return
			}
			q.commitPending() // what was accepted before closing is answered
			q.closeErr = q.shutdown()
			q.releaseMemory() // the tail and held bodies go back to the engine's budget
			return
		}
		armSync()
		armLease()
	}
}

// commitPending commits the pending batch and the cursor, if either has
// anything to do.
func (q *queue) commitPending() {
	// Allocated before the lock, which producers are queueing on.
	if q.next == nil {
		q.next = &batch{done: make(chan struct{}), recs: q.spare, after: q.spareAfter}
		q.spare, q.spareAfter = nil, nil
	}
	q.mu.Lock()
	var b *batch
	if len(q.pend.recs) > 0 {
		b = q.pend
		q.pend, q.next = q.next, nil
	}
	cb := q.curWait
	q.curWait = nil
	if cb != nil && (q.leaseRewrite || len(cb.log) > 0 && q.leaseRecs > 2*len(q.held)+4096) {
		// Replace the lease log with the live records, as of this turn's
		// changes (all made under mu, before this point).
		cb.log, cb.rewrite = q.leaseSnapshotLocked(), true
	}
	target := q.readID
	q.mu.Unlock()

	if b != nil {
		q.commitBatch(b)
		// Producers read only first and err once done is closed, so the
		// record slice can carry the next batch.
		clear(b.recs)
		q.spare, q.spareAfter = b.recs[:0], b.after[:0]
		b.recs, b.after = nil, nil
	}
	if cb != nil || target != q.persisted || q.cursorRetry {
		q.commitCursor(target, cb)
	}
}

// commitBatch writes one batch and answers its producers.
func (q *queue) commitBatch(b *batch) {
	opts := &q.e.opts
	if err := q.prepareWrite(b.bytes); err != nil {
		q.failBatch(b, err)
		return
	}
	b.first = q.nextID
	now := q.nowMs() // one enqueue time for the whole batch
	for i := range b.recs {
		r := &b.recs[i]
		r.ID = b.first + uint64(i)
		r.EnqueuedAt = now
		if a := b.after[i]; a.ttl != 0 {
			r.ExpiresAt = now + a.ttl
		}
		if a := b.after[i]; a.delay != 0 {
			r.VisibleAt = now + a.delay
		}
	}
	last := b.first + uint64(len(b.recs)) - 1
	if last >= q.hwm {
		// The reservation is used up: take the one being written, if any,
		// else write one here.
		q.awaitHWM()
	}
	if last >= q.hwm {
		if err := writeHWM(q.dir, last+hwmStep); err != nil {
			q.failBatch(b, err)
			return
		}
		q.hwm = last + hwmStep
	}
	q.reserveAhead(last)
	if quota := opts.MaxDiskBytes; quota > 0 {
		// The zero-filled space ahead of the records counts in the quota,
		// and stops at 3/4 of it: the last quarter is for records.
		q.writer.SetAllocLimit(q.writer.FileSize() + max(quota-quota/4-q.e.diskBytes.Load(), 0))
	}
	if err := q.writer.Append(b.recs); err != nil {
		q.failBatch(b, err)
		return
	}
	if opts.Fsync == FsyncAlways || b.sync {
		if err := q.syncWriter(); err != nil {
			q.failBatch(b, err)
			return
		}
	} else {
		q.dirty = true
	}
	opts.Metrics.ObserveBatch(len(b.recs))
	sum := q.writer.Summary()
	size := q.writer.FileSize() // the records and the zero-filled space ahead of them
	grown := size - q.activeFile
	q.activeFile = size
	q.committedSum = sum
	q.e.diskBytes.Add(grown)

	// Into the memory tail before the ids become readable (committed,
	// below): a consumer finds them there, not on disk.
	q.tmu.Lock()
	q.tail.push(b.recs)
	q.tmu.Unlock()
	notify := make(chan struct{})
	q.mu.Lock()
	q.nextID = last + 1 // under mu: stats reads it
	q.segs[len(q.segs)-1] = sum
	q.segBytes += grown
	q.committed = last
	q.depth += int64(len(b.recs))
	if b.keyed {
		q.commitKeysLocked(b)
	}
	q.broadcastLocked(notify) // wake long polls: one close for the whole batch
	q.mu.Unlock()
	q.enqueued.Add(uint64(len(b.recs)))
	close(b.done)
}

// failBatch answers a batch with err: nothing of it was stored. The writer
// is repaired before the next write (prepareWrite).
func (q *queue) failBatch(b *batch, err error) {
	q.e.opts.Metrics.IncWriteError()
	q.log.ErrorContext(RepeatingLog, "group commit failed; batch not acknowledged", "messages", len(b.recs), "err", err)
	b.err = classify(err)
	q.countFile() // a failed Append may have zero-filled ahead first
	if b.keyed {
		q.dropPendingKeys(b)
	}
	close(b.done)
}

// commitCursor writes the read position and answers the dequeues waiting
// for it. On failure those dequeues get an error and the position goes
// back to the last one written, so their messages are delivered again.
func (q *queue) commitCursor(target uint64, cb *cursorBatch) {
	var err error
	leases := cb != nil && (len(cb.log) > 0 || cb.rewrite)
	if leases {
		// Before the cursor: a lease is on disk no later than the move
		// past its message.
		err = q.writeLeaseLog(cb)
	}
	if err == nil && (!leases || target != q.persisted || q.cursorRetry) {
		err = q.cursor.write(target)
		if err == nil && q.e.opts.Fsync == FsyncAlways {
			start := time.Now()
			err = q.cursor.sync()
			q.observeFsync(start)
		} else if err == nil {
			q.dirty = true
		}
	}
	if err == nil {
		q.persisted = target
		q.cursorRetry = false
		if cb != nil {
			close(cb.done)
		}
		return
	}
	q.e.opts.Metrics.IncWriteError()
	q.log.ErrorContext(RepeatingLog, "cursor or lease log write failed; dequeues and acks not acknowledged", "err", err)
	// The failed position may sit in the page cache and reach the disk
	// later; the next turn (at the latest the compactor's, within a second,
	// or the final one at close) writes the rewound one over it, in a newer
	// slot. No kick: a disk that keeps failing must not spin the loop.
	q.cursorRetry = true
	err = classify(err)
	q.mu.Lock()
	// Roll back every move since the last persisted position, including
	// moves made while this write was under way (the next cursor batch).
	if next := q.curWait; next != nil {
		q.curWait = nil
		next.err = err
		undo(next)
		close(next.done)
	}
	if cb != nil {
		undo(cb)
	}
	q.rewindLocked(q.persisted)
	q.mu.Unlock()
	if cb != nil {
		cb.err = err
		close(cb.done)
	}
}

// undo takes back in memory what a failed turn's lease records recorded.
func undo(cb *cursorBatch) {
	for i := len(cb.undo) - 1; i >= 0; i-- {
		cb.undo[i]()
	}
	cb.undo = nil
}

// rewindLocked moves readID back to id, recounting depth. Counters of
// dequeued and expired messages are not taken back: they count events.
func (q *queue) rewindLocked(id uint64) {
	if id >= q.readID {
		return
	}
	q.readID = id
	q.depth = 0
	for _, s := range q.segs {
		if s.Records > 0 && s.LastID() >= id {
			q.depth += int64(s.LastID() - max(id, s.Base) + 1)
		}
	}
	if q.reader != nil {
		q.reader.Close()
		q.reader = nil
	}
}
