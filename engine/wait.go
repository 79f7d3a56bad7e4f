package engine

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Waiting: long polls, and the path an ack, nack or extend takes to its
// queue.

// leaseErr maps the error of an ack, nack or extend: a queue that retired
// meanwhile held no lease (lifecycle.go).
func leaseErr(q *queue, err error) error {
	if err != nil && q.retired.Load() && errors.Is(err, ErrClosed) {
		return ErrLeaseExpired
	}
	return err
}

// leaseQueue returns the queue a receipt is brought to.
func (e *Engine) leaseQueue(name, receipt string) (*queue, error) {
	if _, _, err := e.parseReceipt(receipt); err != nil {
		return nil, err
	}
	if !ValidQueueName(name) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidQueueName, name)
	}
	// Not reopened: a dormant queue holds no lease.
	e.mu.RLock()
	q, ferr := e.queues[name], e.failed[name]
	e.mu.RUnlock()
	if ferr != nil {
		return nil, fmt.Errorf("%w: queue %s: %v", ErrUnavailable, name, ferr)
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
	var waited interface{ wasDeleted() bool } // the queue whose notify the last turn waited on (the parameter shadows the type's name)
	for {
		q, ready, err := e.lookupWait(queue)
		if err != nil {
			return false, err
		}
		if waited != nil && waited.wasDeleted() {
			return false, nil // deleted while we waited (DeleteQueue, admin.go)
		}
		if q != nil {
			ch, err := pop(q)
			switch {
			case err == nil:
				return true, nil
			case err == errRetired:
				<-q.stopped
				continue
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
		if q != nil {
			q.waiters.Add(1) // keeps it open (lifecycle.go) while it is waited on
		}
		woke := false
		select {
		case <-ready:
			woke = true
		case <-timer:
		case <-ctx.Done():
		case <-e.closing:
		}
		if q != nil {
			q.waiters.Add(-1)
		}
		if !woke {
			return false, nil
		}
	}
}

// broadcastLocked wakes every waiter on q.notify (long polls, under mu)
// and puts next in its place: one close wakes them all. next is made by the
// caller, so that the commit loop can allocate it before taking mu.
func (q *queue) broadcastLocked(next chan struct{}) {
	close(q.notify)
	q.notify = next
}

// broadcast closes ch, waking everyone waiting on it, and returns its
// replacement.
func broadcast(ch chan struct{}) chan struct{} {
	close(ch)
	return make(chan struct{})
}
