package engine

import (
	"context"
	"errors"
	"time"
)

// Engine owns every queue of one data directory. Safe for concurrent use.
type Engine struct {
	opts Options
}

// Open locks opts.Dir, recovers every queue in it and starts the commit and
// compaction goroutines.
func Open(opts Options) (*Engine, error) {
	opts.setDefaults()
	return nil, errors.New("engine: not implemented yet")
}

// Enqueue stores body in queue and returns its id once the batch holding it
// is written (and fsynced when the mode or opts.Sync says so).
func (e *Engine) Enqueue(ctx context.Context, queue string, body []byte, opts EnqueueOptions) (uint64, error) {
	return 0, errors.New("engine: not implemented yet")
}

// Dequeue pops the next unexpired message of queue, waiting up to wait for
// one to arrive. ok is false when none came. The cursor move is persisted
// before Dequeue returns.
func (e *Engine) Dequeue(ctx context.Context, queue string, wait time.Duration) (msg Message, ok bool, err error) {
	return Message{}, false, errors.New("engine: not implemented yet")
}

// Stats returns the figures of one queue; ok is false for an unknown queue.
func (e *Engine) Stats(queue string) (QueueStats, bool) { return QueueStats{}, false }

// AllStats returns the figures of every queue, sorted by name.
func (e *Engine) AllStats() []QueueStats { return nil }

// Close commits what is pending, fsyncs and closes every queue, and releases
// the data directory lock. Pending long polls return with no message.
func (e *Engine) Close() error { return nil }
