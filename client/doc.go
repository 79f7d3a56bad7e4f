// Package client is a Go client for mqueue's native HTTP API.
//
// A program imports only this package: it depends on the standard library
// alone, not on the server's packages.
//
//	c := client.New("http://localhost:8088", client.WithToken(os.Getenv("MQUEUE_AUTH_TOKEN")))
//	id, err := c.Enqueue(ctx, "orders", []byte("hello"), client.EnqueueOptions{})
//	msg, ok, err := c.Lease(ctx, "orders", 30*time.Second, 10*time.Second)
//	if ok { err = c.Ack(ctx, "orders", msg.Receipt) }
//
// Errors the server answers are *Error values carrying the status, the
// stable code and Retry-After; errors.Is matches them against the sentinel
// values (ErrQueueFull, ErrLeaseExpired, ErrQueueNotFound, ...).
//
// Retries (WithRetries): a POST that stores (Enqueue, EnqueueBatch) is
// retried on a network error, on 503 and 429 (waiting Retry-After when
// given, else the backoff) and on 502/504, always with an Idempotency-Key:
// when the caller gave none the client draws a random one before the first
// attempt, so a retry whose first attempt was in fact stored answers 200
// with the original id and stores nothing. 500 (WRITE_FAILED, INTERNAL) is
// not retried: the README says a failed fsync can still leave the message on
// disk. Other requests are retried only when they change nothing or are
// safe to repeat (Stats, Queues, Peek, Ack, Extend) and only on a network
// error or 503/429 answered before the request took effect. A GET that pops
// (Dequeue, DequeueBatch) or leases (Lease, LeaseBatch) is never retried
// once the request was sent: a lost response would lose a message (a popped
// one for good; a leased one until its lease ends). Purge, Delete, Redrive
// and Nack are retried only on 429/503 answers, which did nothing. An Ack
// retried after a lost answer can return ErrLeaseExpired although its first
// attempt acked the message.
//
// Producer batches Send calls into batch POSTs (by count, bytes and a
// linger time); Consumer runs a handler over leased messages with a given
// concurrency, acking on success and nacking on error.
package client
