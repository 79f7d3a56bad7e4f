package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Engine owns every queue of one data directory. Safe for concurrent use.
type Engine struct {
	opts Options
	lock *os.File

	mu      sync.RWMutex
	queues  map[string]*queue        // open queues, each with its commit loop
	dormant map[string]*dormantQueue // closed while idle; reopened on use (lifecycle.go)
	opening map[string]*openCall     // being created or reopened, without mu
	failed  map[string]error         // queues whose recovery failed; served as unavailable
	created chan struct{}            // closed and replaced when a queue is created
	janitor sync.WaitGroup           // wakeDormant

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error // Close's result, for its later calls
	diskBytes atomic.Int64
	mem       memBudget // memory tails and held bodies against MaxMemoryBytes (memory.go)

	receipts *receiptCodec // signs receipts with a key of this run (receipt.go)
	leaseSeq atomic.Uint64 // the last lease's receipt sequence, across queues
	metas    metaCache     // the queues' meta blobs (meta.go)
}

// lockName starts with a dot so that no valid queue name can collide with it.
const lockName = ".lock"

// Open locks opts.Dir, recovers every queue in it and starts their commit
// loops. A queue that cannot be recovered (an I/O error; corruption is
// repaired or skipped, not fatal) is logged and answers ErrUnavailable,
// while the other queues are served.
func Open(opts Options) (*Engine, error) {
	opts.setDefaults()
	if opts.Dir == "" {
		return nil, errors.New("engine: no data directory")
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		opts:    opts,
		lock:    lock,
		queues:  make(map[string]*queue),
		dormant: make(map[string]*dormantQueue),
		opening: make(map[string]*openCall),
		failed:  make(map[string]error),
		created: make(chan struct{}),
		closing: make(chan struct{}),
		mem:     memBudget{max: opts.MaxMemoryBytes},
	}
	e.receipts = newReceiptCodec()
	ents, err := os.ReadDir(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("list data dir %s: %w", opts.Dir, err)
	}
	var names []string
	removeTombstones(opts.Dir, ents, opts.Logger)
	for _, ent := range ents {
		// Not only directories: a symlink or a file under a queue's name
		// is refused by openQueue (the queue is unavailable), as at first use.
		if ValidQueueName(ent.Name()) {
			names = append(names, ent.Name())
		}
	}
	e.openAll(names)
	e.janitor.Add(1)
	go e.wakeDormant()
	opts.Logger.Info("engine open", "dir", opts.Dir, "queues", len(e.queues)+len(e.dormant), "open", len(e.queues),
		"fsync", opts.Fsync.String(), "disk_bytes", e.diskBytes.Load())
	return e, nil
}

// lockDir takes an exclusive flock on dir/.lock so that two processes never
// share a data directory, and writes the holder's pid into it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is in use by another mqueue process (pid %s)", ErrLocked, dir, string(pid))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())), 0)
	}
	return f, nil
}

// queue returns the named open queue, reopening a dormant one and creating
// it when create is set. It returns nil for an unknown queue when create is
// not set. The queue may be retired (lifecycle.go) right after: its methods
// then answer errRetired, and the caller waits for q.stopped and asks again.
func (e *Engine) queue(name string, create bool) (*queue, error) {
	if !ValidQueueName(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidQueueName, name)
	}
	e.mu.RLock()
	q, ferr := e.queues[name], e.failed[name]
	e.mu.RUnlock()
	if ferr != nil {
		return nil, fmt.Errorf("%w: queue %s: %v", ErrUnavailable, name, ferr)
	}
	if q != nil {
		return q, nil
	}
	return e.load(name, create)
}

// Enqueue stores body in queue and returns its id once the batch holding it
// is written (and fsynced when the mode or opts.Sync says so). The engine
// keeps body; the caller must not change it afterwards. A key starting with
// 0x00 is reserved for the engine: ErrReservedKey. ctx is checked before
// the message joins a batch (its error is returned, nothing stored); once
// it has, Enqueue waits for the commit, so that its outcome is known.
func (e *Engine) Enqueue(ctx context.Context, queue string, body []byte, opts EnqueueOptions) (uint64, error) {
	if len(body) == 0 {
		return 0, ErrEmptyMessage
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkKey(ctx, opts.Key); err != nil {
		return 0, err
	}
	for {
		q, err := e.queue(queue, true)
		if err != nil {
			return 0, err
		}
		id, err := q.enqueue(body, opts)
		if err == errRetired {
			<-q.stopped
			continue
		}
		return id, err
	}
}

// EnqueueBatch stores msgs in queue all together or not at all: they take
// consecutive ids, one write (and at most one fsync) stores them, and a
// failure or a cap (depth, disk) refuses every one of them. It returns the
// first id and the count once the batch is written (and fsynced when the
// mode or opts.Sync says so). With opts.Key used within DedupWindow it
// stores nothing and returns the original batch's first id and count with
// ErrDuplicate. A key starting with 0x00 is reserved for the engine:
// ErrReservedKey. The engine keeps the bodies; the caller must not change
// them. ctx is checked as by Enqueue.
func (e *Engine) EnqueueBatch(ctx context.Context, queue string, msgs []BatchMessage, opts BatchOptions) (first uint64, n int, err error) {
	if len(msgs) == 0 {
		return 0, 0, errors.New("engine: empty batch")
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if err := checkKey(ctx, opts.Key); err != nil {
		return 0, 0, err
	}
	for i := range msgs {
		if len(msgs[i].Body) == 0 {
			return 0, 0, fmt.Errorf("%w (batch message %d)", ErrEmptyMessage, i)
		}
	}
	for {
		q, err := e.queue(queue, true)
		if err != nil {
			return 0, 0, err
		}
		first, n, err = q.enqueueBatch(msgs, opts)
		if err == errRetired {
			<-q.stopped
			continue
		}
		return first, n, err
	}
}

// DequeueBatch pops up to max unexpired messages of queue, in id order,
// waiting up to wait for the first one; it stops early once the bodies
// reach maxBytes (one message is always taken). One cursor write, persisted
// before it returns, covers them all. It returns no messages and no error
// when none came; the errors are Dequeue's. The bodies must not be modified.
func (e *Engine) DequeueBatch(ctx context.Context, name string, max int, maxBytes int64, wait time.Duration) ([]Message, error) {
	return e.LeaseBatch(ctx, name, max, maxBytes, wait, 0)
}

// LeaseBatch is DequeueBatch under a lease of the given length (0 pops for
// good): each message carries a receipt, and comes back to a later
// dequeue unless it is acked before its lease ends. The leases are written
// before it returns. It fails with ErrTooManyInFlight when the queue holds
// MaxInFlight messages and none is visible again.
func (e *Engine) LeaseBatch(ctx context.Context, name string, max int, maxBytes int64, wait, lease time.Duration) ([]Message, error) {
	var msgs []Message
	_, err := e.waitFor(ctx, name, wait, func(q *queue) (<-chan struct{}, error) {
		var ch <-chan struct{}
		var err error
		msgs, ch, err = q.dequeueBatch(max, maxBytes, lease)
		return ch, err
	})
	return msgs, err
}

// Dequeue pops the next unexpired message of queue, waiting up to wait for
// one to arrive. ok is false when none came, ctx was cancelled or the engine
// began closing during the wait; a call made after Close fails with
// ErrClosed. The cursor move is persisted before Dequeue returns. The
// returned Body must not be modified. A message visible again after a
// lease comes before newer ones.
func (e *Engine) Dequeue(ctx context.Context, name string, wait time.Duration) (msg Message, ok bool, err error) {
	return e.Lease(ctx, name, wait, 0)
}

// Lease is Dequeue under a lease of the given length (0 pops for good):
// the message carries a receipt (Ack, Nack, Extend) and is delivered again
// after the lease ends unless it is acked, or moved to the queue
// {queue}.dlq once delivered Options.MaxDeliveries times. The lease is
// written before Lease returns; after a crash every unacked leased
// message is visible again.
func (e *Engine) Lease(ctx context.Context, name string, wait, lease time.Duration) (msg Message, ok bool, err error) {
	ok, err = e.waitFor(ctx, name, wait, func(q *queue) (<-chan struct{}, error) {
		var ch <-chan struct{}
		var err error
		msg, ch, err = q.dequeue(lease)
		return ch, err
	})
	return msg, ok, err
}

// Ack ends the lease a receipt names for good: the message is never
// delivered again. It returns once the ack is written (and fsynced as the
// mode says); ErrLeaseExpired when the lease already ended, or the
// receipt is another node's, from before a restart, or no receipt at all.
func (e *Engine) Ack(queue, receipt string) error {
	q, err := e.leaseQueue(queue, receipt)
	if err != nil {
		return err
	}
	return leaseErr(q, q.ack(receipt))
}

// Nack ends a lease early: the message is visible again after delay (at
// once for 0) with its delivery count kept. Errors as Ack's.
func (e *Engine) Nack(queue, receipt string, delay time.Duration) error {
	q, err := e.leaseQueue(queue, receipt)
	if err != nil {
		return err
	}
	return leaseErr(q, q.nack(receipt, delay))
}

// Extend makes a running lease end lease from now, and returns the new end.
// Errors as Ack's.
func (e *Engine) Extend(queue, receipt string, lease time.Duration) (time.Time, error) {
	q, err := e.leaseQueue(queue, receipt)
	if err != nil {
		return time.Time{}, err
	}
	return q.extend(receipt, lease)
}

// Stats returns the figures of one queue; ok is false for an unknown queue.
// A dormant queue answers the figures it closed with, without reopening.
func (e *Engine) Stats(queue string) (QueueStats, bool) {
	e.mu.RLock()
	q, d := e.queues[queue], e.dormantStatsLocked(queue)
	e.mu.RUnlock()
	if q != nil {
		return q.stats(), true
	}
	if d != nil {
		return *d, true
	}
	return QueueStats{}, false
}

// AllStats returns the figures of every queue, sorted by name; dormant ones
// as they closed (none is reopened for it).
func (e *Engine) AllStats() []QueueStats {
	e.mu.RLock()
	qs := make([]*queue, 0, len(e.queues))
	for _, q := range e.queues {
		qs = append(qs, q)
	}
	out := make([]QueueStats, 0, len(e.queues)+len(e.dormant)+len(e.opening))
	for _, d := range e.dormant {
		out = append(out, d.stats)
	}
	for _, oc := range e.opening {
		if oc.prev != nil {
			out = append(out, oc.prev.stats)
		}
	}
	e.mu.RUnlock()
	for _, q := range qs {
		out = append(out, q.stats())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queue < out[j].Queue })
	return out
}

// DiskBytes returns the bytes of all segment files.
func (e *Engine) DiskBytes() int64 { return e.diskBytes.Load() }

// Close commits what is pending, fsyncs and closes every queue, and releases
// the data directory lock. Pending long polls return with no message; later
// calls fail with ErrClosed. It returns the joined errors of the final
// writes and fsyncs that failed (each queue's are logged too); a queue
// whose close failed may have lost what was written since its last good
// fsync only under --fsync interval or never. Close is idempotent: later
// calls return the first one's result.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		close(e.closing)
		e.mu.Unlock()
		err := e.closeQueues()
		e.janitor.Wait()
		if lerr := e.lock.Close(); lerr != nil {
			err = errors.Join(err, fmt.Errorf("release the lock of %s: %w", e.opts.Dir, lerr))
		}
		e.closeErr = err
		if err != nil {
			e.opts.Logger.Error("engine closed with errors", "dir", e.opts.Dir, "err", err)
			return
		}
		e.opts.Logger.Info("engine closed", "dir", e.opts.Dir)
	})
	return e.closeErr
}

// closeQueues waits for every queue being opened, then for every commit
// loop to finish its final commit, and returns their joined close errors.
// e.closing must be closed.
func (e *Engine) closeQueues() error {
	e.mu.RLock()
	var opening []chan struct{}
	for _, oc := range e.opening {
		opening = append(opening, oc.done)
	}
	e.mu.RUnlock()
	for _, done := range opening {
		<-done // one that finishes now sees closing and closes itself
	}
	// Not under mu: a loop that retires meanwhile takes it to leave the map.
	e.mu.RLock()
	qs := make([]*queue, 0, len(e.queues))
	for _, q := range e.queues {
		qs = append(qs, q)
	}
	e.mu.RUnlock()
	var errs []error
	for _, q := range qs {
		<-q.stopped
		if q.closeErr != nil {
			errs = append(errs, q.closeErr)
		}
	}
	return errors.Join(errs...)
}
