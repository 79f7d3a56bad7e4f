package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ProducerOptions bound a Producer's batches.
type ProducerOptions struct {
	MaxMessages int           // per batch, default 1000 (the server's limit)
	MaxBytes    int           // of bodies per batch, default 8 MiB
	Linger      time.Duration // how long a batch waits for more, default 5ms
	Sync        bool          // ?sync=1 on every batch
}

// SendOptions are one message's options.
type SendOptions struct {
	TTL   time.Duration
	Delay time.Duration
}

// Result is the outcome of one Send: Wait blocks until the batch holding
// the message was answered.
type Result struct {
	done chan struct{}
	id   uint64
	err  error
}

// Wait returns the message's id once its batch was answered 201 (or 200
// for a retried batch), or the batch's error.
func (r *Result) Wait(ctx context.Context) (uint64, error) {
	select {
	case <-r.done:
		return r.id, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Producer batches Send calls into batch POSTs, each with its own
// Idempotency-Key, so its retries never store a batch twice. Batches are
// sent one at a time in Send order, so the ids follow the Send order (a
// failed batch fails all its messages; the later ones are sent still).
type Producer struct {
	c     *Client
	queue string
	o     ProducerOptions

	mu      sync.Mutex
	msgs    []BatchMessage
	results []*Result
	bytes   int
	timer   *time.Timer
	closed  bool
	flights sync.WaitGroup
	prev    chan struct{} // closed when the last batch sent was answered
}

// ErrProducerClosed is returned by Send after Close.
var ErrProducerClosed = errors.New("mqueue: producer closed")

// NewProducer returns a producer to queue.
func NewProducer(c *Client, queue string, o ProducerOptions) *Producer {
	if o.MaxMessages <= 0 || o.MaxMessages > 1000 {
		o.MaxMessages = 1000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 8 << 20
	}
	if o.Linger <= 0 {
		o.Linger = 5 * time.Millisecond
	}
	return &Producer{c: c, queue: queue, o: o}
}

// Send adds body to the current batch and returns its Result at once.
func (p *Producer) Send(ctx context.Context, body []byte, o SendOptions) *Result {
	r := &Result{done: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		r.err = ErrProducerClosed
		close(r.done)
		return r
	}
	if len(p.msgs) > 0 && p.bytes+len(body) > p.o.MaxBytes {
		p.flushLocked()
	}
	p.msgs = append(p.msgs, BatchMessage{Body: body, TTL: o.TTL, Delay: o.Delay})
	p.results = append(p.results, r)
	p.bytes += len(body)
	if len(p.msgs) >= p.o.MaxMessages || p.bytes >= p.o.MaxBytes {
		p.flushLocked()
	} else if p.timer == nil {
		p.timer = time.AfterFunc(p.o.Linger, func() {
			p.mu.Lock()
			p.timer = nil
			p.flushLocked()
			p.mu.Unlock()
		})
	}
	return r
}

// flushLocked sends the current batch in its own goroutine.
func (p *Producer) flushLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if len(p.msgs) == 0 {
		return
	}
	msgs, results := p.msgs, p.results
	p.msgs, p.results, p.bytes = nil, nil, 0
	prev, mine := p.prev, make(chan struct{})
	p.prev = mine
	p.flights.Add(1)
	go func() {
		defer p.flights.Done()
		defer close(mine)
		// One batch at a time, in Send order, so ids follow Send order;
		// the next batch gathers while this one commits.
		if prev != nil {
			<-prev
		}
		ids, err := p.c.EnqueueBatch(context.Background(), p.queue, msgs, BatchOptions{Sync: p.o.Sync})
		if err == nil && len(ids) != len(msgs) {
			err = fmt.Errorf("mqueue: batch to %s: %d ids for %d messages", p.queue, len(ids), len(msgs))
		}
		for i, r := range results {
			if err != nil {
				r.err = err
			} else {
				r.id = ids[i]
			}
			close(r.done)
		}
	}()
}

// Flush sends the current batch and waits until every batch sent so far
// was answered.
func (p *Producer) Flush() {
	p.mu.Lock()
	p.flushLocked()
	p.mu.Unlock()
	p.flights.Wait()
}

// Close flushes and refuses later Sends.
func (p *Producer) Close() {
	p.mu.Lock()
	p.closed = true
	p.flushLocked()
	p.mu.Unlock()
	p.flights.Wait()
}
