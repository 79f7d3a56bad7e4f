package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/client"
	"github.com/mqueue/mqueue/engine"
)

func TestEveryMethod(t *testing.T) {
	base := startServer(t, nil)
	c := client.New(base)
	ctx := context.Background()

	id1, err := c.Enqueue(ctx, "q", []byte("one"), client.EnqueueOptions{TTL: time.Minute, Sync: true})
	if err != nil || id1 != 1 {
		t.Fatalf("Enqueue = %d, %v; want 1", id1, err)
	}
	ids, err := c.EnqueueBatch(ctx, "q", []client.BatchMessage{{Body: []byte("two")}, {Body: []byte{0xff, 0}}, {Body: []byte("four")}, {Body: []byte("five")}}, client.BatchOptions{})
	if err != nil || len(ids) != 4 || ids[0] != 2 || ids[3] != 5 {
		t.Fatalf("EnqueueBatch = %v, %v", ids, err)
	}
	peeked, next, err := c.Peek(ctx, "q", client.PeekOptions{Max: 2})
	if err != nil || len(peeked) != 2 || next != 3 || string(peeked[1].Body) != "two" || peeked[0].State != "visible" || peeked[0].ExpiresAt.IsZero() {
		t.Fatalf("Peek = %+v, %d, %v", peeked, next, err)
	}
	m, ok, err := c.Dequeue(ctx, "q", 0)
	if err != nil || !ok || m.ID != 1 || string(m.Body) != "one" || m.ExpiresAt.IsZero() {
		t.Fatalf("Dequeue = %+v, %v, %v", m, ok, err)
	}
	ms, err := c.DequeueBatch(ctx, "q", 2, 0)
	if err != nil || len(ms) != 2 || ms[0].ID != 2 || !bytes.Equal(ms[1].Body, []byte{0xff, 0}) {
		t.Fatalf("DequeueBatch = %+v, %v", ms, err)
	}
	l, ok, err := c.Lease(ctx, "q", 30*time.Second, 0)
	if err != nil || !ok || l.ID != 4 || l.Receipt == "" || l.DeliveryCount != 1 || l.LeaseExpiresAt.IsZero() {
		t.Fatalf("Lease = %+v, %v, %v", l, ok, err)
	}
	until, err := c.Extend(ctx, "q", l.Receipt, time.Hour)
	if err != nil || time.Until(until) < 50*time.Minute {
		t.Fatalf("Extend = %v, %v", until, err)
	}
	if err := c.Nack(ctx, "q", l.Receipt, 0); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	lb, err := c.LeaseBatch(ctx, "q", 10, 30*time.Second, 0)
	if err != nil || len(lb) != 2 || lb[0].ID != 4 || lb[0].DeliveryCount != 2 || lb[1].Receipt == "" {
		t.Fatalf("LeaseBatch = %+v, %v", lb, err)
	}
	for _, m := range lb {
		if err := c.Ack(ctx, "q", m.Receipt); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
	if err := c.Ack(ctx, "q", lb[0].Receipt); !errors.Is(err, client.ErrLeaseExpired) {
		t.Fatalf("second Ack = %v, want ErrLeaseExpired", err)
	}
	if _, ok, err := c.Dequeue(ctx, "q", time.Second); ok || err != nil {
		t.Fatalf("Dequeue of an empty queue = %v, %v", ok, err)
	}
	st, err := c.Stats(ctx, "q")
	if err != nil || st.EnqueuedTotal != 5 || st.Depth != 0 || st.NextID != 6 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	if _, err := c.Enqueue(ctx, "r", []byte("x"), client.EnqueueOptions{Delay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	all, err := c.AllStats(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("AllStats = %+v, %v", all, err)
	}
	page, after, err := c.Queues(ctx, "", 1)
	if err != nil || len(page) != 1 || page[0].Name != "q" || after != "q" {
		t.Fatalf("Queues page 1 = %+v, %q, %v", page, after, err)
	}
	page, after, err = c.Queues(ctx, after, 1)
	if err != nil || len(page) != 1 || page[0].Name != "r" || after != "" {
		t.Fatalf("Queues page 2 = %+v, %q, %v", page, after, err)
	}
	if n, err := c.Purge(ctx, "r"); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	if err := c.Delete(ctx, "r"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := c.Stats(ctx, "r"); !errors.Is(err, client.ErrQueueNotFound) {
		t.Fatalf("Stats after Delete = %v", err)
	}
	// Redrive: a DLQ filled directly, moved back.
	if _, err := c.Enqueue(ctx, "q.dlq", []byte("dead"), client.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Redrive(ctx, "q.dlq", 0); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	if m, ok, err := c.Dequeue(ctx, "q", 0); err != nil || !ok || string(m.Body) != "dead" {
		t.Fatalf("Dequeue after Redrive = %+v, %v, %v", m, ok, err)
	}
	if _, err := c.Redrive(ctx, "q", 0); !errors.Is(err, client.ErrNotADLQ) {
		t.Fatalf("Redrive of a non-DLQ = %v", err)
	}
}

func TestTypedErrors(t *testing.T) {
	base := startServer(t, func(cfg *api.Config, o *engine.Options) {
		cfg.AuthToken = "s3cret"
		o.MaxQueueDepth = 1
	})
	ctx := context.Background()
	c := client.New(base, client.WithToken("s3cret"), client.WithRetries(0, 0))

	var e *client.Error
	_, err := c.Stats(ctx, "nope")
	if !errors.As(err, &e) || e.Status != 404 || e.Code != "QUEUE_NOT_FOUND" || e.Message == "" || !errors.Is(err, client.ErrQueueNotFound) || errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Stats(unknown) = %#v", err)
	}
	if _, err := c.Enqueue(ctx, "q", []byte("a"), client.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Enqueue(ctx, "q", []byte("b"), client.EnqueueOptions{})
	if !errors.As(err, &e) || e.Status != 429 || !errors.Is(err, client.ErrQueueFull) || e.RetryAfter <= 0 || !client.IsRetryable(err) {
		t.Fatalf("Enqueue to a full queue = %#v", err)
	}
	bad := client.New(base, client.WithToken("wrong"))
	_, err = bad.Stats(ctx, "q")
	if !errors.As(err, &e) || e.Status != 401 || !errors.Is(err, client.ErrUnauthorized) || client.IsRetryable(err) {
		t.Fatalf("wrong token = %#v", err)
	}
	if _, err := c.Enqueue(ctx, "bad/name", []byte("a"), client.EnqueueOptions{}); err == nil {
		t.Fatal("Enqueue to a bad name succeeded")
	}
}

// TestQueueFullRetryHonoursRetryAfter: a full queue is retried after the
// server's Retry-After, and succeeds once room was made.
func TestQueueFullRetryHonoursRetryAfter(t *testing.T) {
	base := startServer(t, func(_ *api.Config, o *engine.Options) { o.MaxQueueDepth = 1 })
	ctx := context.Background()
	c := client.New(base, client.WithRetries(3, 10*time.Millisecond))
	if _, err := c.Enqueue(ctx, "q", []byte("a"), client.EnqueueOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _, _ = c.Dequeue(ctx, "q", 0)
	}()
	id, err := c.Enqueue(ctx, "q", []byte("b"), client.EnqueueOptions{})
	if err != nil || id != 2 {
		t.Fatalf("Enqueue with retries = %d, %v", id, err)
	}
}

// dropFirst is a proxy to the server that forwards every request, but
// drops the connection instead of forwarding the first POST's answer: the
// server stored the message, the client saw a network error.
func dropFirst(t *testing.T, base string) (string, *atomic.Int32) {
	u, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(u)
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && posts.Add(1) == 1 {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			if rec.Code >= 300 {
				t.Errorf("first POST answered %d", rec.Code)
			}
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Fatal("no hijacker")
			}
			conn, _, _ := hj.Hijack()
			_ = conn.Close()
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &posts
}

func TestRetriedEnqueueDoesNotDuplicate(t *testing.T) {
	base := startServer(t, nil)
	ctx := context.Background()
	for _, batch := range []bool{false, true} {
		queue := map[bool]string{false: "single", true: "batch"}[batch]
		proxy, posts := dropFirst(t, base)
		c := client.New(proxy, client.WithRetries(2, 10*time.Millisecond))
		var err error
		if batch {
			var ids []uint64
			ids, err = c.EnqueueBatch(ctx, queue, []client.BatchMessage{{Body: []byte("a")}, {Body: []byte("b")}}, client.BatchOptions{})
			if err == nil && (len(ids) != 2 || ids[0] != 1) {
				t.Errorf("%s: ids = %v", queue, ids)
			}
		} else {
			var id uint64
			id, err = c.Enqueue(ctx, queue, []byte("a"), client.EnqueueOptions{})
			if err == nil && id != 1 {
				t.Errorf("%s: id = %d", queue, id)
			}
		}
		if err != nil {
			t.Fatalf("%s: %v", queue, err)
		}
		if posts.Load() != 2 {
			t.Errorf("%s: %d POSTs reached the proxy, want 2 (one retry)", queue, posts.Load())
		}
		st, err := client.New(base).Stats(ctx, queue)
		want := uint64(1)
		if batch {
			want = 2
		}
		if err != nil || st.EnqueuedTotal != want {
			t.Fatalf("%s: stats = %+v, %v; want %d stored", queue, st, err, want)
		}
	}
}

// TestDequeueIsNotRetriedAfterSending: a pop whose answer is lost is an
// error, not a second pop.
func TestDequeueIsNotRetriedAfterSending(t *testing.T) {
	base := startServer(t, nil)
	ctx := context.Background()
	u, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(u)
	var gets atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			rp.ServeHTTP(httptest.NewRecorder(), r)
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.Close()
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	c := client.New(proxy.URL, client.WithRetries(3, time.Millisecond))
	for _, b := range []string{"a", "b"} {
		if _, err := c.Enqueue(ctx, "q", []byte(b), client.EnqueueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := c.Dequeue(ctx, "q", 0); err == nil {
		t.Fatal("Dequeue through a dropping proxy succeeded")
	}
	if gets.Load() != 1 {
		t.Fatalf("%d GETs sent, want 1", gets.Load())
	}
	if st, _ := client.New(base).Stats(ctx, "q"); st.Depth != 1 {
		t.Fatalf("depth = %d, want 1 (only one popped)", st.Depth)
	}
}
