package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/client"
)

func TestProducerBatchesAndReturnsIDsAfterCommit(t *testing.T) {
	base := startServer(t, nil)
	ctx := context.Background()
	c := client.New(base)
	p := client.NewProducer(c, "p", client.ProducerOptions{MaxMessages: 10, Linger: time.Hour})
	results := make([]*client.Result, 25)
	for i := range results {
		results[i] = p.Send(ctx, []byte(fmt.Sprintf("m%d", i)), client.SendOptions{})
	}
	// Two full batches went at once; the last 5 go once the sender is free
	// (or at Close), not after the (long) linger.
	for i := range 20 {
		id, err := results[i].Wait(ctx)
		if err != nil || id != uint64(i+1) {
			t.Fatalf("result %d = %d, %v", i, id, err)
		}
	}
	st, err := c.Stats(ctx, "p")
	if err != nil || st.EnqueuedTotal < 20 {
		t.Fatalf("stats after 20 results = %+v, %v; want at least 20 stored", st, err)
	}
	p.Close()
	for i := 20; i < 25; i++ {
		if id, err := results[i].Wait(ctx); err != nil || id != uint64(i+1) {
			t.Fatalf("result %d = %d, %v", i, id, err)
		}
	}
	if _, err := p.Send(ctx, []byte("late"), client.SendOptions{}).Wait(ctx); !errors.Is(err, client.ErrProducerClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
	// Every id's body is the one sent with it.
	ms, err := c.DequeueBatch(ctx, "p", 100, 0)
	if err != nil || len(ms) != 25 {
		t.Fatalf("DequeueBatch = %d, %v", len(ms), err)
	}
	for i, m := range ms {
		if m.ID != uint64(i+1) || string(m.Body) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d = %d %q", i, m.ID, m.Body)
		}
	}
}

func TestProducerLingerAndError(t *testing.T) {
	base := startServer(t, nil)
	ctx := context.Background()
	c := client.New(base, client.WithRetries(0, 0))
	p := client.NewProducer(c, "p", client.ProducerOptions{Linger: 10 * time.Millisecond})
	defer p.Close()
	if id, err := p.Send(ctx, []byte("x"), client.SendOptions{}).Wait(ctx); err != nil || id != 1 {
		t.Fatalf("lingered send = %d, %v", id, err)
	}
	bad := client.NewProducer(c, "bad/name", client.ProducerOptions{Linger: time.Millisecond})
	defer bad.Close()
	if _, err := bad.Send(ctx, []byte("x"), client.SendOptions{}).Wait(ctx); err == nil {
		t.Fatal("send to a bad queue name succeeded")
	}
}

func TestConsumerExactlyOnceNackAndStop(t *testing.T) {
	base := startServer(t, nil)
	c := client.New(base)
	ctx := context.Background()
	const n = 200
	msgs := make([]client.BatchMessage, n)
	for i := range msgs {
		msgs[i].Body = []byte(fmt.Sprint(i))
	}
	if _, err := c.EnqueueBatch(ctx, "jobs", msgs, client.BatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	failed := map[uint64]bool{}
	var running, peak atomic.Int32
	var done atomic.Int32
	runCtx, cancel := context.WithCancel(ctx)
	cs := client.NewConsumer(c, "jobs", client.ConsumerOptions{Concurrency: 8, Lease: 30 * time.Second, Wait: time.Second})
	ran := make(chan error, 1)
	go func() {
		ran <- cs.Run(runCtx, func(_ context.Context, m client.Message) error {
			r := running.Add(1)
			defer running.Add(-1)
			for {
				p := peak.Load()
				if r <= p || peak.CompareAndSwap(p, r) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			// Every 10th message fails once: it must come back, delivered twice.
			if m.ID%10 == 0 && !failed[m.ID] {
				failed[m.ID] = true
				if m.DeliveryCount != 1 {
					t.Errorf("message %d first seen with delivery count %d", m.ID, m.DeliveryCount)
				}
				return errors.New("try again")
			}
			seen[m.ID]++
			if failed[m.ID] && m.DeliveryCount != 2 {
				t.Errorf("redelivered message %d has delivery count %d", m.ID, m.DeliveryCount)
			}
			if done.Add(1) == n {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not stop")
	}
	if len(seen) != n {
		t.Fatalf("handled %d distinct messages, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("message %d handled %d times", id, k)
		}
	}
	if peak.Load() < 2 {
		t.Errorf("peak concurrency %d, want >1", peak.Load())
	}
	st, err := c.Stats(ctx, "jobs")
	if err != nil || st.Depth != 0 || st.InFlight != 0 {
		t.Fatalf("after Run: %+v, %v; want nothing left or in flight", st, err)
	}
}

// TestConsumerGracefulStop: handlers running at the cancel finish and are
// acked; nothing stays leased.
func TestConsumerGracefulStop(t *testing.T) {
	base := startServer(t, nil)
	c := client.New(base)
	ctx := context.Background()
	for i := range 4 {
		if _, err := c.Enqueue(ctx, "jobs", []byte(fmt.Sprint(i)), client.EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	started := make(chan struct{}, 4)
	var finished atomic.Int32
	cs := client.NewConsumer(c, "jobs", client.ConsumerOptions{Concurrency: 2, Lease: 30 * time.Second, Wait: time.Second})
	ran := make(chan error, 1)
	go func() {
		ran <- cs.Run(runCtx, func(hctx context.Context, m client.Message) error {
			started <- struct{}{}
			<-hctx.Done() // runs until the stop
			finished.Add(1)
			return nil
		})
	}()
	<-started
	<-started
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if finished.Load() != 2 {
		t.Fatalf("%d handlers finished, want 2", finished.Load())
	}
	st, err := c.Stats(ctx, "jobs")
	if err != nil || st.InFlight != 0 || st.Depth != 2 {
		t.Fatalf("after stop: %+v, %v; want 2 acked, 2 left, none in flight", st, err)
	}
}

// TestConsumerExtendsLongHandlers: a handler running past its lease keeps
// the message (the lease is extended) and its ack succeeds.
func TestConsumerExtendsLongHandlers(t *testing.T) {
	base := startServer(t, nil)
	c := client.New(base)
	ctx := context.Background()
	if _, err := c.Enqueue(ctx, "slow", []byte("x"), client.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var calls atomic.Int32
	cs := client.NewConsumer(c, "slow", client.ConsumerOptions{Concurrency: 2, Lease: 2 * time.Second, Wait: time.Second})
	ran := make(chan error, 1)
	go func() {
		ran <- cs.Run(runCtx, func(_ context.Context, m client.Message) error {
			if calls.Add(1) == 1 {
				time.Sleep(3500 * time.Millisecond) // past the 2 s lease
				cancel()
			}
			return nil
		})
	}()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times, want 1 (the lease was not extended)", n)
	}
	st, err := c.Stats(ctx, "slow")
	if err != nil || st.Depth != 0 || st.InFlight != 0 {
		t.Fatalf("stats = %+v, %v; want the message acked", st, err)
	}
}
