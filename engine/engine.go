// Package engine is mqueue's storage engine: named FIFO queues, each a
// directory of segments (package segment), with group commit, a persisted
// read cursor, TTL expiry and compaction. It knows nothing of HTTP.
//
// Each queue has one commit loop (scheduler.go) that owns its files.
// Producers append to an in-memory batch and wait; the loop writes the
// whole batch with one write, fsyncs it as the mode says, and wakes every
// producer of the batch by closing one channel. Consumers move the read
// cursor in memory and wait for the loop to write it the same way, so a
// dequeue is answered only once its cursor move is as durable as the mode
// promises.
package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	queues  map[string]*queue
	failed  map[string]error // queues whose recovery failed; served as unavailable
	created chan struct{}    // closed and replaced when a queue is created

	closing   chan struct{}
	closeOnce sync.Once
	diskBytes atomic.Int64

	boot     uint32        // random per Open: receipts of an earlier run are refused
	leaseSeq atomic.Uint64 // the last lease's receipt sequence, across queues
}

// lockName starts with a dot so that no valid queue name can collide with it.
const lockName = ".lock"

// Open locks opts.Dir, recovers every queue in it and starts their commit
// loops. A queue that cannot be recovered (an I/O error; corruption is
// repaired or skipped, not fatal) is logged and answers ErrUnavailable,
// while the other queues are served.
func Open(opts Options) (*Engine, error) {
	opts.setDefaults()
	boot := rand.Uint32()
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
		failed:  make(map[string]error),
		created: make(chan struct{}),
		closing: make(chan struct{}),
		boot:    boot,
	}
	ents, err := os.ReadDir(opts.Dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("list data dir %s: %w", opts.Dir, err)
	}
	removeTombstones(opts.Dir, ents, opts.Logger)
	for _, ent := range ents {
		if !ent.IsDir() || !ValidQueueName(ent.Name()) {
			continue
		}
		q, err := openQueue(e, ent.Name())
		if err != nil {
			// One bad queue must not keep the others down, nor make the
			// process exit and restart in a loop: it stays unavailable,
			// with its files untouched, until an operator looks.
			opts.Logger.Error("queue could not be recovered; it is unavailable until fixed", "queue", ent.Name(), "err", err)
			e.failed[ent.Name()] = err
			continue
		}
		e.queues[q.name] = q
		e.diskBytes.Add(q.segBytes)
		go q.run()
	}
	opts.Logger.Info("engine open", "dir", opts.Dir, "queues", len(e.queues), "fsync", opts.Fsync.String(), "disk_bytes", e.diskBytes.Load())
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

// queue returns the named queue, creating it when create is set. It returns
// nil for an unknown queue when create is not set.
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
	if q != nil || !create {
		return q, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if q = e.queues[name]; q != nil {
		return q, nil
	}
	select {
	case <-e.closing:
		return nil, ErrClosed
	default:
	}
	q, err := openQueue(e, name)
	if err != nil {
		return nil, classify(fmt.Errorf("create queue %s: %w", name, err))
	}
	e.queues[name] = q
	e.diskBytes.Add(q.segBytes)
	go q.run()
	close(e.created)
	e.created = make(chan struct{})
	return q, nil
}

// Enqueue stores body in queue and returns its id once the batch holding it
// is written (and fsynced when the mode or opts.Sync says so). The engine
// keeps body; the caller must not change it afterwards.
func (e *Engine) Enqueue(ctx context.Context, queue string, body []byte, opts EnqueueOptions) (uint64, error) {
	if len(body) == 0 {
		return 0, ErrEmptyMessage
	}
	q, err := e.queue(queue, true)
	if err != nil {
		return 0, err
	}
	return q.enqueue(body, opts)
}

// EnqueueBatch stores msgs in queue all together or not at all: they take
// consecutive ids, one write (and at most one fsync) stores them, and a
// failure or a cap (depth, disk) refuses every one of them. It returns the
// first id and the count once the batch is written (and fsynced when the
// mode or opts.Sync says so). With opts.Key used within DedupWindow it
// stores nothing and returns the original batch's first id and count with
// ErrDuplicate. The engine keeps the bodies; the caller must not change
// them.
func (e *Engine) EnqueueBatch(ctx context.Context, queue string, msgs []BatchMessage, opts BatchOptions) (first uint64, n int, err error) {
	if len(msgs) == 0 {
		return 0, 0, errors.New("engine: empty batch")
	}
	for i := range msgs {
		if len(msgs[i].Body) == 0 {
			return 0, 0, fmt.Errorf("%w (batch message %d)", ErrEmptyMessage, i)
		}
	}
	q, err := e.queue(queue, true)
	if err != nil {
		return 0, 0, err
	}
	return q.enqueueBatch(msgs, opts)
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
	return q.ack(receipt)
}

// Nack ends a lease early: the message is visible again after delay (at
// once for 0) with its delivery count kept. Errors as Ack's.
func (e *Engine) Nack(queue, receipt string, delay time.Duration) error {
	q, err := e.leaseQueue(queue, receipt)
	if err != nil {
		return err
	}
	return q.nack(receipt, delay)
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

// leaseQueue returns the queue a receipt is brought to.
func (e *Engine) leaseQueue(name, receipt string) (*queue, error) {
	if _, _, err := e.parseReceipt(receipt); err != nil {
		return nil, err
	}
	q, err := e.queue(name, false)
	if err != nil {
		return nil, err
	}
	if q == nil {
		return nil, ErrLeaseExpired
	}
	return q, nil
}

// waitFor calls pop on queue until it takes something (ok), fails, or wait
// runs out. pop returns errNone and a channel closed when there may be
// something new when there is nothing to take.
func (e *Engine) waitFor(ctx context.Context, queue string, wait time.Duration, pop func(*queue) (<-chan struct{}, error)) (ok bool, err error) {
	select {
	case <-e.closing:
		return false, ErrClosed
	default:
	}
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	var waited any // the *queue whose notify the last turn waited on (any: the parameter shadows the type)
	for {
		var ready <-chan struct{}
		q, err := e.queue(queue, false)
		if err != nil {
			return false, err
		}
		if waited != nil && q != waited {
			return false, nil // deleted while we waited (DeleteQueue, admin.go)
		}
		if q == nil {
			e.mu.RLock()
			ready = e.created
			q = e.queues[queue]
			e.mu.RUnlock()
		}
		if q != nil {
			ch, err := pop(q)
			switch {
			case err == nil:
				return true, nil
			case errors.Is(err, ErrClosed):
				return false, nil
			case !errors.Is(err, errNone):
				return false, err
			}
			ready, waited = ch, q
		}
		if timer == nil {
			return false, nil
		}
		select {
		case <-ready:
		case <-timer:
			return false, nil
		case <-ctx.Done():
			return false, nil
		case <-e.closing:
			return false, nil
		}
	}
}

// Stats returns the figures of one queue; ok is false for an unknown queue.
func (e *Engine) Stats(queue string) (QueueStats, bool) {
	e.mu.RLock()
	q := e.queues[queue]
	e.mu.RUnlock()
	if q == nil {
		return QueueStats{}, false
	}
	return q.stats(), true
}

// AllStats returns the figures of every queue, sorted by name.
func (e *Engine) AllStats() []QueueStats {
	e.mu.RLock()
	qs := make([]*queue, 0, len(e.queues))
	for _, q := range e.queues {
		qs = append(qs, q)
	}
	e.mu.RUnlock()
	sort.Slice(qs, func(i, j int) bool { return qs[i].name < qs[j].name })
	out := make([]QueueStats, len(qs))
	for i, q := range qs {
		out[i] = q.stats()
	}
	return out
}

// DiskBytes returns the bytes of all segment files.
func (e *Engine) DiskBytes() int64 { return e.diskBytes.Load() }

// Close commits what is pending, fsyncs and closes every queue, and releases
// the data directory lock. Pending long polls return with no message; later
// calls fail with ErrClosed. Close is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		close(e.closing)
		e.mu.Unlock()
		e.closeQueues()
		e.lock.Close()
		e.opts.Logger.Info("engine closed", "dir", e.opts.Dir)
	})
	return nil
}

// closeQueues waits for every commit loop to finish its final commit.
func (e *Engine) closeQueues() {
	select {
	case <-e.closing:
	default:
		close(e.closing)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, q := range e.queues {
		<-q.stopped
	}
}
