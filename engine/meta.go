package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// MaxQueueMetaBytes is the largest blob SetQueueMeta stores.
const MaxQueueMetaBytes = 64 << 10

// ErrMetaTooLarge is returned by SetQueueMeta for a blob over
// MaxQueueMetaBytes.
var ErrMetaTooLarge = errors.New("engine: queue meta too large")

// CreateQueue creates the queue name, empty, unless it exists; created
// says which. It fails with ErrInvalidQueueName or ErrTooManyQueues.
func (e *Engine) CreateQueue(name string) (created bool, err error) {
	if !ValidQueueName(name) {
		return false, fmt.Errorf("%w: %q", ErrInvalidQueueName, name)
	}
	q, err := e.queue(name, false)
	if err != nil {
		return false, err
	}
	if q != nil {
		return false, nil
	}
	if _, err := e.queue(name, true); err != nil {
		return false, err
	}
	return true, nil
}

// QueueMeta returns the blob SetQueueMeta last stored for queue name, nil
// when none was, or ErrQueueNotFound. The engine does not interpret it.
func (e *Engine) QueueMeta(name string) ([]byte, error) {
	if _, err := e.adminQueue(name); err != nil {
		return nil, err
	}
	// Every SQS send reads its queue's blob: a hit takes the read lock
	// only, so sends to different queues do not queue on one mutex.
	e.metas.mu.RLock()
	b, ok := e.metas.m[name]
	e.metas.mu.RUnlock()
	if ok {
		return b, nil
	}
	e.metas.mu.Lock()
	defer e.metas.mu.Unlock()
	if b, ok := e.metas.m[name]; ok {
		return b, nil
	}
	b, err := os.ReadFile(filepath.Join(e.opts.Dir, name, format.MetaFile))
	if errors.Is(err, os.ErrNotExist) {
		b, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read meta of queue %s: %w", name, err)
	}
	e.metas.putLocked(name, b)
	return b, nil
}

// metaCache keeps the meta blobs read or written, so that a hot path (an
// SQS send reads its queue's attributes) does not read the file each time.
// The returned slices are shared and must not be modified. DeleteQueue
// drops a queue's entry once the deletion is done.
type metaCache struct {
	mu sync.RWMutex // written (and held across a file read and its insertion, so a drop cannot come between) under Lock
	m  map[string][]byte
}

func (c *metaCache) putLocked(name string, b []byte) {
	if c.m == nil {
		c.m = map[string][]byte{}
	}
	c.m[name] = b
}

// drop forgets the blob of queue name.
func (c *metaCache) drop(name string) {
	c.mu.Lock()
	delete(c.m, name)
	c.mu.Unlock()
}

// SetQueueMeta stores meta (at most MaxQueueMetaBytes) with queue name,
// durably (written to a temporary file, fsynced and renamed), replacing the
// previous blob. It lives in the queue's directory and goes with the queue
// when it is deleted. ErrQueueNotFound when there is no such queue.
func (e *Engine) SetQueueMeta(name string, meta []byte) error {
	if len(meta) > MaxQueueMetaBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMetaTooLarge, len(meta), MaxQueueMetaBytes)
	}
	if _, err := e.adminQueue(name); err != nil {
		return err
	}
	e.metas.mu.Lock()
	defer e.metas.mu.Unlock()
	if err := atomicfile.Replace(filepath.Join(e.opts.Dir, name), format.MetaFile, meta); err != nil {
		delete(e.metas.m, name) // the file may or may not have been replaced
		return err
	}
	e.metas.putLocked(name, append([]byte(nil), meta...))
	return nil
}
