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
// Idempotency-Key, so its retries never store a batch twice. One batch is
// in flight at a time, in Send order, so the ids follow the Send order (a
// failed batch fails all its messages; the later ones are sent still);
// while it commits the next one gathers, and is sent as soon as the first
// is answered, without waiting for Linger.
type Producer struct {
	c     *Client
	queue string
	o     ProducerOptions

	mu      sync.Mutex
	cur     batch   // gathering
	ready   []batch // sealed (full), waiting for the sender
	sending bool    // the sender goroutine runs
	timer   *time.Timer
	closed  bool
	flights sync.WaitGroup
}

// batch is messages and their results, sent together.
type batch struct {
	msgs    []BatchMessage
	results []*Result
	bytes   int
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
	if len(p.cur.msgs) > 0 && p.cur.bytes+len(body) > p.o.MaxBytes {
		p.sealLocked()
	}
	p.cur.msgs = append(p.cur.msgs, BatchMessage{Body: body, TTL: o.TTL, Delay: o.Delay})
	p.cur.results = append(p.cur.results, r)
	p.cur.bytes += len(body)
	if len(p.cur.msgs) >= p.o.MaxMessages || p.cur.bytes >= p.o.MaxBytes {
		p.sealLocked()
		p.startLocked()
	} else if !p.sending && p.timer == nil {
		p.timer = time.AfterFunc(p.o.Linger, func() {
			p.mu.Lock()
			p.timer = nil
			p.startLocked()
			p.mu.Unlock()
		})
	}
	return r
}

// sealLocked moves the current batch to the ready ones.
func (p *Producer) sealLocked() {
	if len(p.cur.msgs) > 0 {
		p.ready = append(p.ready, p.cur)
		p.cur = batch{}
	}
}

// startLocked starts the sender unless it runs or nothing waits.
func (p *Producer) startLocked() {
	if p.sending || (len(p.ready) == 0 && len(p.cur.msgs) == 0) {
		return
	}
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.sending = true
	p.flights.Add(1)
	go p.sendLoop()
}

// sendLoop sends batches one at a time until none waits.
func (p *Producer) sendLoop() {
	defer p.flights.Done()
	for {
		p.mu.Lock()
		var b batch
		switch {
		case len(p.ready) > 0:
			b = p.ready[0]
			p.ready = p.ready[1:]
		case len(p.cur.msgs) > 0:
			b, p.cur = p.cur, batch{}
		default:
			p.sending = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		p.send(b)
	}
}

// send posts one batch and completes its results.
func (p *Producer) send(b batch) {
	ids, err := p.c.EnqueueBatch(context.Background(), p.queue, b.msgs, BatchOptions{Sync: p.o.Sync})
	if err == nil && len(ids) != len(b.msgs) {
		err = fmt.Errorf("mqueue: batch to %s: %d ids for %d messages", p.queue, len(ids), len(b.msgs))
	}
	for i, r := range b.results {
		if err != nil {
			r.err = err
		} else {
			r.id = ids[i]
		}
		close(r.done)
	}
}

// Flush sends what was given so far and waits until it was answered.
func (p *Producer) Flush() {
	p.mu.Lock()
	p.startLocked()
	p.mu.Unlock()
	p.flights.Wait()
}

// Close flushes and refuses later Sends.
func (p *Producer) Close() {
	p.mu.Lock()
	p.closed = true
	p.startLocked()
	p.mu.Unlock()
	p.flights.Wait()
}
