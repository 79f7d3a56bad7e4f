package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/mqueue/mqueue/segment"
)

// Server-internal idempotency keys. The engine's own moves between queues
// (a dead letter into {name}.dlq, a redrive back out of it) enqueue with
// an idempotency key, so that a crash between the enqueue there and the
// ack here cannot store a message twice within the dedup window. Such a
// key must be one no client can send, or a client that first POSTs it
// would make the real move a "duplicate" and the message vanish. Internal
// keys start with the byte 0x00: the API accepts only printable ASCII
// keys, and the public Enqueue and EnqueueBatch refuse a key starting with
// it (ErrReservedKey); only enqueueInternal and enqueueBatchInternal pass
// one.

// internalKeyPrefix starts every server-internal idempotency key.
const internalKeyPrefix = "\x00"

// internalKey returns the reserved idempotency key of one internal move:
// 0x00, purpose, then the parts, separated by spaces, e.g.
// internalKey("dlq", "jobs", "42") for message 42 of jobs moving to
// jobs.dlq. Give each kind of move its own purpose. A key that would pass
// segment.MaxKeyLen has its parts replaced by their SHA-256, so it always
// fits a record.
func internalKey(purpose string, parts ...string) string {
	k := internalKeyPrefix + purpose + " " + strings.Join(parts, " ")
	if len(k) <= segment.MaxKeyLen {
		return k
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return internalKeyPrefix + purpose + " #" + hex.EncodeToString(sum[:])
}

// internalCtx marks an enqueue the engine makes itself: only it may use an
// internal key. The type is unexported, so no caller can make such a ctx.
type internalCtx struct{}

// checkKey refuses a caller's idempotency key that is reserved for the
// engine (it starts with 0x00), unless ctx is internal.
func checkKey(ctx context.Context, key string) error {
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	if !strings.HasPrefix(key, internalKeyPrefix) || ctx.Value(internalCtx{}) != nil {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrReservedKey, key)
}

// enqueueInternal is Enqueue for the engine's own moves, whose opts.Key may
// be an internalKey.
func (e *Engine) enqueueInternal(ctx context.Context, queue string, body []byte, opts EnqueueOptions) (uint64, error) {
	return e.Enqueue(context.WithValue(ctx, internalCtx{}, true), queue, body, opts)
}

// enqueueBatchInternal is EnqueueBatch for the engine's own moves, whose
// opts.Key may be an internalKey.
func (e *Engine) enqueueBatchInternal(ctx context.Context, queue string, msgs []BatchMessage, opts BatchOptions) (uint64, int, error) {
	return e.EnqueueBatch(context.WithValue(ctx, internalCtx{}, true), queue, msgs, opts)
}
