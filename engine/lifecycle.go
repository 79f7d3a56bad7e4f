package engine

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// A queue's lifecycle: open (in e.queues, with its files and commit loop),
// dormant (in e.dormant: files closed, no goroutine, only its figures in
// memory), or being opened (in e.opening, a placeholder that callers wait
// on, so that the engine-wide lock is never held across the mkdir, file
// creations and fsyncs of openQueue).
//
// An open queue retires to dormant once it has been idle for
// Options.IdleClose with nothing in flight: no pending batch or cursor
// write, no held message (lease, delay, visible again), no long poll
// waiting. It shuts down as at Close — final cursor and exact hwm, fsync,
// files closed — so its next use reopens it through openQueue, the
// recovery path a restart takes, which rebuilds everything a dormant queue
// dropped from memory (idempotency keys, segment summaries) from disk.
// Counters "since the process started" are carried over. Stats of a
// dormant queue are the figures it closed with, which nothing can change
// until it reopens. A dormant queue whose records carry a TTL is reopened
// when compaction would have work (wakeDormant), so that expired data still
// leaves the disk on time.
//
// At start every queue directory is opened and, past the first startOpen
// and unless it holds something, closed again at once, a few at a time
// (openAll), so that a data directory with many queues never has all
// their files open.
//
// Operations racing with a retirement find the queue closing: they get
// errRetired, wait for q.stopped (closed once the engine's maps say
// dormant) and look the queue up again, which reopens it.

// errRetired: the queue retired between its lookup and its use; look it
// up again once q.stopped is closed. Never returned to callers of Engine.
var errRetired = errors.New("engine: queue retired")

// testHookOpen, when set (tests only), is called as openQueue starts.
var testHookOpen func(name string)

// dormantQueue is a queue whose files and commit loop are closed.
type dormantQueue struct {
	stats QueueStats // as it closed
	// The newest segment when it closed and since when it was active, so
	// that reopening keeps its age (SegmentAge rotation).
	activeBase uint64
	activeAt   time.Time
	wakeAt     int64         // unix ms when compaction has work (a TTL ends); 0 never
	woke       chan struct{} // closed when it is reopened
}

// openCall is a queue being opened without e.mu; done is closed when err
// is set or the queue is in e.queues.
type openCall struct {
	done chan struct{}
	err  error
	prev *dormantQueue // the dormant queue being reopened; nil when created
}

// closedErr is the error of an operation on a closing queue. Under q.mu.
func (q *queue) closedErr() error {
	if q.retired.Load() {
		return errRetired
	}
	return ErrClosed
}

// load is the slow path of Engine.queue: it reopens a dormant queue, waits
// for one being opened, or creates it (create set, within MaxQueues). The
// files are opened without e.mu; concurrent callers for the same name wait
// for the one that opens it.
func (e *Engine) load(name string, create bool) (*queue, error) {
	for {
		e.mu.Lock()
		if q := e.queues[name]; q != nil {
			e.mu.Unlock()
			return q, nil
		}
		if ferr := e.failed[name]; ferr != nil {
			e.mu.Unlock()
			return nil, fmt.Errorf("%w: queue %s: %v", ErrUnavailable, name, ferr)
		}
		if oc := e.opening[name]; oc != nil {
			e.mu.Unlock()
			<-oc.done
			if oc.err != nil {
				return nil, oc.err
			}
			continue // open now, or retired again already
		}
		d := e.dormant[name]
		if d == nil && !create {
			e.mu.Unlock()
			return nil, nil
		}
		select {
		case <-e.closing:
			e.mu.Unlock()
			return nil, ErrClosed
		default:
		}
		if max := e.opts.MaxQueues; d == nil && max > 0 && len(e.queues)+len(e.dormant)+len(e.opening) >= max {
			e.mu.Unlock()
			return nil, fmt.Errorf("%w: queue %s: --max-queues %d reached", ErrTooManyQueues, name, max)
		}
		full := e.opts.IdleClose > 0 && e.opts.MaxOpenQueues > 0 && len(e.queues)+len(e.opening) >= e.opts.MaxOpenQueues
		oc := &openCall{done: make(chan struct{}), prev: d}
		e.opening[name] = oc
		delete(e.dormant, name)
		e.mu.Unlock()
		if full {
			e.shed()
		}
		return e.open(name, oc)
	}
}

// open opens the queue of a placeholder and makes it live, or puts the
// dormant one back when that fails.
func (e *Engine) open(name string, oc *openCall) (*queue, error) {
	defer close(oc.done)
	q, err := openQueue(e, name)
	if err == nil && oc.prev != nil {
		q.adopt(oc.prev)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.opening, name)
	select {
	case <-e.closing:
		err = ErrClosed
		if q != nil {
			q.closeFiles()
		}
	default:
	}
	if errors.Is(err, ErrUnavailable) {
		// As at start (a symlink, ids out of range): logged once, then
		// answered from e.failed without touching the files again.
		e.opts.Logger.Error("queue cannot be opened; it is unavailable until fixed", "queue", name, "err", err)
		e.failed[name] = err
		oc.err = fmt.Errorf("queue %s: %w", name, err)
		return nil, oc.err
	}
	if err != nil {
		if oc.prev != nil {
			e.dormant[name] = oc.prev
		}
		if !errors.Is(err, ErrClosed) {
			verb := "create"
			if oc.prev != nil {
				verb = "reopen"
			}
			err = classify(fmt.Errorf("%s queue %s: %w", verb, name, err))
		}
		oc.err = err
		return nil, err
	}
	if oc.prev != nil {
		e.diskBytes.Add(q.segBytes - oc.prev.stats.DiskBytes)
		close(oc.prev.woke)
	} else {
		e.diskBytes.Add(q.segBytes)
		e.created = broadcast(e.created)
	}
	e.queues[name] = q
	go q.run()
	return q, nil
}

// retire stops q's commit loop as Close does — what was accepted is
// committed and answered, the final cursor and exact hwm are written, the
// files fsynced and closed — and takes q out of the open queues. With keep
// it stays as a dormant queue (its figures kept; its next use reopens it
// from disk, as a restart would: leases still running then become visible
// again); without keep its name is forgotten and its bytes leave
// DiskBytes, for a caller that deletes its directory next (DeleteQueue).
// Operations racing with it look the queue up again (errRetired). It
// returns once the loop has stopped, false if q was already closing.
// Safe for concurrent use, but not from q's own commit loop.
func (e *Engine) retire(q *queue, keep bool) bool {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return false
	}
	q.closing, q.keep = true, keep
	q.retired.Store(true)
	q.mu.Unlock()
	close(q.quit)
	<-q.stopped
	return true
}

// shed makes room under MaxOpenQueues: of a sample of open queues, it
// retires the least recently busy one with nothing in flight, and waits
// for it to close. Without e.mu.
func (e *Engine) shed() {
	const sample = 16
	qs := make([]*queue, 0, sample)
	e.mu.RLock()
	for _, q := range e.queues { // map order: a random sample
		if qs = append(qs, q); len(qs) == sample {
			break
		}
	}
	e.mu.RUnlock()
	slices.SortFunc(qs, func(a, b *queue) int { return cmp.Compare(a.busyAt.Load(), b.busyAt.Load()) })
	for _, q := range qs {
		reply := make(chan bool, 1)
		select {
		case q.shedding <- reply:
			if <-reply {
				<-q.stopped
				return
			}
		case <-q.stopped:
		}
	}
}

// retireIdle marks q retired, to stay dormant, when nothing is in flight.
// Only the commit loop calls it (it reads commitState): once q has been
// idle for IdleClose, or when Engine.shed asks through q.shedding; then
// the loop finishes.
func (q *queue) retireIdle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing || len(q.pend.recs) > 0 || q.curWait != nil || len(q.held) > 0 || q.waiters.Load() > 0 ||
		q.readID != q.persisted || q.cursorRetry || q.leaseRewrite || q.writer == nil || q.writer.Broken() != nil {
		return false
	}
	q.closing, q.keep = true, true
	q.retired.Store(true)
	return true
}

// finish ends a retired queue's commit loop: it answers what was accepted,
// shuts the files down and hands the queue over to e's maps (dormant, or
// forgotten).
func (q *queue) finish() {
	q.commitPending()
	q.closeErr = q.shutdown()
	var d *dormantQueue
	if q.keep {
		d = q.dormant() // before the tail goes: its oldest record is exact
	}
	q.releaseMemory() // the tail and held bodies go back to the engine's budget
	e := q.e
	e.mu.Lock()
	if e.queues[q.name] == q {
		delete(e.queues, q.name)
	}
	if d != nil {
		e.dormant[q.name] = d
	} else {
		e.diskBytes.Add(-q.segBytes)
	}
	e.mu.Unlock()
}

// dormant returns the figures that stand for q, closed.
func (q *queue) dormant() *dormantQueue {
	d := &dormantQueue{stats: q.stats(), activeAt: q.activeAt, woke: make(chan struct{})}
	q.mu.Lock()
	defer q.mu.Unlock()
	last := len(q.segs) - 1
	if q.writer != nil {
		d.activeBase = q.segs[last].Base
	}
	for i, s := range q.segs {
		if s.Records == 0 || s.MaxExpiry == 0 {
			continue
		}
		at := s.MaxExpiry
		if i == last && q.writer != nil {
			// The active segment is deleted only once sealed.
			at = max(at, q.activeAt.Add(q.e.opts.SegmentAge).UnixMilli())
		}
		if d.wakeAt == 0 || at < d.wakeAt {
			d.wakeAt = at
		}
	}
	return d
}

// adopt carries a dormant queue's counters and segment age over to q, its
// reopening, before q is published.
func (q *queue) adopt(d *dormantQueue) {
	q.enqueued.Add(d.stats.EnqueuedTotal)
	q.dequeued.Add(d.stats.DequeuedTotal)
	q.expired.Add(d.stats.ExpiredTotal)
	q.redelivered.Add(d.stats.RedeliveredTotal)
	q.deadLettered.Add(d.stats.DeadLetteredTotal)
	if q.writer != nil && q.writer.Summary().Base == d.activeBase {
		q.activeAt = d.activeAt
	}
}

// closeFiles closes what openQueue opened, writing nothing: openQueue
// fsynced whatever it changed, so the next openQueue finds the same state.
// For a queue whose commit loop never ran.
func (q *queue) closeFiles() {
	if err := q.cursor.close(); err != nil {
		q.log.Warn("close cursor", "err", err)
	}
	if q.writer != nil {
		if err := q.writer.Close(); err != nil {
			q.log.Warn("close segment", "err", err)
		}
	}
	if q.reader != nil {
		q.reader.Close()
		q.reader = nil
	}
	if q.leaseFile != nil {
		q.leaseFile.Close()
		q.leaseFile = nil
	}
	q.releaseMemory() // held bodies loadLeases kept go back to the budget
	q.countFile()
}

// emptyLeaseLog cuts the lease log of a queue that holds nothing to zero
// bytes, so that reopening it reads and rewrites nothing. A cut lost in a
// crash leaves the old log, which holds nothing live either.
func (q *queue) emptyLeaseLog() {
	if err := atomicfile.Truncate(filepath.Join(q.dir, format.LeasesFile), 0); err != nil {
		q.log.Warn("could not empty the lease log; the next open rewrites it", "err", err)
		return
	}
	q.leaseRecs = 0
}

// lookupWait is waitFor's lookup: the open queue to pop from, reopening a
// dormant one that holds messages; or, with nothing to pop, a channel
// closed when there may be something: a dormant queue's reopening, or any
// queue's creation for an unknown one.
func (e *Engine) lookupWait(name string) (*queue, <-chan struct{}, error) {
	if !ValidQueueName(name) {
		return nil, nil, fmt.Errorf("%w: %q", ErrInvalidQueueName, name)
	}
	e.mu.RLock()
	q, ferr, d, created := e.queues[name], e.failed[name], e.dormant[name], e.created
	e.mu.RUnlock()
	switch {
	case ferr != nil:
		return nil, nil, fmt.Errorf("%w: queue %s: %v", ErrUnavailable, name, ferr)
	case q != nil:
		return q, nil, nil
	case d != nil && d.stats.Depth == 0:
		return nil, d.woke, nil
	}
	q, err := e.load(name, false)
	if err != nil || q != nil {
		return q, nil, err
	}
	return nil, created, nil
}

// dormantStatsLocked returns the figures of a dormant queue or of one
// being reopened, nil for any other. Under e.mu.
func (e *Engine) dormantStatsLocked(name string) *QueueStats {
	if d := e.dormant[name]; d != nil {
		return &d.stats
	}
	if oc := e.opening[name]; oc != nil && oc.prev != nil {
		return &oc.prev.stats
	}
	return nil
}
