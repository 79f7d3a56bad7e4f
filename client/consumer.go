package client

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// ConsumerOptions configure a Consumer.
type ConsumerOptions struct {
	Concurrency int           // handlers at once, default 1
	Lease       time.Duration // per message, default 30s; extended while the handler runs
	Wait        time.Duration // long poll, default 10s (at most 30s)
	NackDelay   time.Duration // delay of the nack after a handler error (0: at once)
	Logger      *slog.Logger  // default slog.Default()
}

// Consumer runs a handler over leased messages of one queue.
type Consumer struct {
	c     *Client
	queue string
	o     ConsumerOptions
}

// NewConsumer returns a consumer of queue.
func NewConsumer(c *Client, queue string, o ConsumerOptions) *Consumer {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Second
	}
	o.Wait = min(o.Wait, 30*time.Second)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Consumer{c: c, queue: queue, o: o}
}

// Run leases messages (a batch GET of up to the free handler slots) and
// calls handler for each, at most Concurrency at once: a nil return acks
// the message, an error nacks it (after NackDelay). A handler running past
// half its lease has its lease extended. Run returns when ctx is cancelled,
// after the handlers in flight have finished and been acked or nacked (with
// a context of their own: the acks are sent after ctx's end). The long
// poll is not cut by ctx (a lease answer lost to a cancelled request would
// leave its messages hidden until their leases end), so Run returns up to
// Wait after ctx's end; what that last poll leased is handled too.
func (cs *Consumer) Run(ctx context.Context, handler func(context.Context, Message) error) error {
	slots := make(chan struct{}, cs.o.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		free := 1
	more:
		for free < cs.o.Concurrency {
			select {
			case slots <- struct{}{}:
				free++
			default:
				break more
			}
		}
		msgs, err := cs.c.LeaseBatch(context.WithoutCancel(ctx), cs.queue, free, cs.o.Lease, cs.o.Wait)
		if err != nil {
			for range free {
				<-slots
			}
			if ctx.Err() != nil {
				return nil
			}
			cs.o.Logger.Warn("mqueue consumer: lease failed", "queue", cs.queue, "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		for range free - len(msgs) {
			<-slots
		}
		for _, m := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				cs.handle(ctx, m, handler)
			}()
		}
	}
	return nil
}

// handle runs one handler, extending the lease meanwhile, then acks or nacks.
func (cs *Consumer) handle(ctx context.Context, m Message, handler func(context.Context, Message) error) {
	stop := make(chan struct{})
	extended := make(chan struct{})
	go func() {
		defer close(extended)
		t := time.NewTicker(cs.o.Lease / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := cs.c.Extend(context.WithoutCancel(ctx), cs.queue, m.Receipt, cs.o.Lease); err != nil {
					cs.o.Logger.Warn("mqueue consumer: extend failed", "queue", cs.queue, "id", m.ID, "err", err)
				}
			}
		}
	}()
	err := handler(ctx, m)
	close(stop)
	<-extended
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err == nil {
		if aerr := cs.c.Ack(actx, cs.queue, m.Receipt); aerr != nil {
			cs.o.Logger.Warn("mqueue consumer: ack failed", "queue", cs.queue, "id", m.ID, "err", aerr)
		}
		return
	}
	if nerr := cs.c.Nack(actx, cs.queue, m.Receipt, cs.o.NackDelay); nerr != nil {
		cs.o.Logger.Warn("mqueue consumer: nack failed", "queue", cs.queue, "id", m.ID, "err", nerr)
	}
}
