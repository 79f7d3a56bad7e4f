package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mqueue/mqueue/metrics"
	"github.com/mqueue/mqueue/segment"
)

// Errors returned by the engine. Compare with errors.Is: I/O errors are
// wrapped with what and where, and wrap one of these when the API layer has
// to map them to a status code.
var (
	// ErrInvalidQueueName: the name does not match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$.
	ErrInvalidQueueName = errors.New("engine: invalid queue name")
	// ErrEmptyMessage: a message must have at least one byte.
	ErrEmptyMessage = errors.New("engine: empty message")
	// ErrQueueFull: the queue holds --max-queue-depth messages.
	ErrQueueFull = errors.New("engine: queue full")
	// ErrDiskFull: --max-disk-bytes is reached, or the file system said ENOSPC.
	ErrDiskFull = errors.New("engine: disk full")
	// ErrClosed: the engine is closing or closed.
	ErrClosed = errors.New("engine: closed")
	// ErrWrite: a write or fsync of the batch failed; the batch was not stored.
	ErrWrite = errors.New("engine: write failed")
	// ErrUnavailable: the queue could not be recovered at start (see the log).
	ErrUnavailable = errors.New("engine: queue unavailable")
	// ErrDuplicate: the idempotency key was used within DedupWindow; the
	// id returned with it is the original message's, and nothing was
	// stored.
	ErrDuplicate = errors.New("engine: duplicate idempotency key")
	// ErrReservedKey: an idempotency key starting with the byte 0x00 is
	// reserved for the engine's own moves (dead letters, redrives).
	ErrReservedKey = errors.New("engine: reserved idempotency key")
	// ErrInvalidKey: an idempotency key longer than MaxKeyLen bytes.
	ErrInvalidKey = errors.New("engine: idempotency key too long")
	// ErrLocked: another process holds the data directory.
	ErrLocked = errors.New("engine: data directory locked")
	// ErrLeaseExpired: the receipt names no running lease here (acked,
	// expired, nacked, from another node or from before a restart).
	ErrLeaseExpired = errors.New("engine: lease expired or unknown")
	// ErrTooManyInFlight: the queue holds MaxInFlight messages leased,
	// delayed or visible again; plain dequeues still work.
	ErrTooManyInFlight = errors.New("engine: too many messages in flight")
	// ErrTooManyQueues: creating the queue would pass Options.MaxQueues;
	// the queues that exist keep working.
	ErrTooManyQueues = errors.New("engine: too many queues")
	// ErrQueueNotFound: an administrative call (DeleteQueue, Purge, Peek,
	// Redrive) named a queue that does not exist.
	ErrQueueNotFound = errors.New("engine: queue not found")
	// ErrNotDLQ: Redrive was given a queue whose name does not end in .dlq.
	ErrNotDLQ = errors.New("engine: not a dead-letter queue")
)

// MaxKeyLen is the longest idempotency key, in bytes: what a segment
// record holds (segment.MaxKeyLen).
const MaxKeyLen = segment.MaxKeyLen

// FsyncMode says when the engine fsyncs segment and cursor files.
type FsyncMode int

const (
	// FsyncAlways fsyncs every group commit before acknowledging it.
	FsyncAlways FsyncMode = iota
	// FsyncInterval writes every batch before acknowledging it and fsyncs in
	// the background every Options.FsyncInterval.
	FsyncInterval
	// FsyncNever writes every batch before acknowledging it and leaves
	// flushing to the operating system.
	FsyncNever
)

// String returns the flag spelling of m.
func (m FsyncMode) String() string {
	switch m {
	case FsyncAlways:
		return "always"
	case FsyncInterval:
		return "interval"
	case FsyncNever:
		return "never"
	}
	return fmt.Sprintf("FsyncMode(%d)", int(m))
}

// ParseFsyncMode parses "always", "interval" or "never".
func ParseFsyncMode(s string) (FsyncMode, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "interval":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("fsync mode %q: want always, interval or never", s)
}

// Options configures an Engine. The zero value of every field but Dir means
// its documented default.
type Options struct {
	// Dir is the data directory; one subdirectory per queue.
	Dir string
	// Fsync is the durability mode (default FsyncAlways).
	Fsync FsyncMode
	// FsyncInterval is the background fsync period in FsyncInterval mode
	// (default 10ms).
	FsyncInterval time.Duration
	// SegmentBytes rotates the active segment once it holds this many bytes
	// (default 16 MiB). Records never cross segments, so a segment exceeds
	// it only when a single commit batch is larger.
	SegmentBytes int64
	// SegmentAge rotates a non-empty active segment once it is this old, so
	// that its records can be reclaimed (default 10m).
	SegmentAge time.Duration
	// MaxDiskBytes caps the bytes of all segments (0 = no cap).
	MaxDiskBytes int64
	// MaxQueueDepth caps the unconsumed messages of each queue (0 = no cap).
	MaxQueueDepth int64
	// MaxQueues caps the number of queues, open or dormant (0 = no cap):
	// creating one more fails with ErrTooManyQueues.
	MaxQueues int
	// IdleClose closes a queue's files and commit loop once it has been
	// idle this long with nothing held (lifecycle.go); its next use reopens
	// it (default 30s; negative: never).
	IdleClose time.Duration
	// MaxOpenQueues caps the queues open at once (their files and commit
	// loops): opening one more first closes the least recently busy of a
	// sample of idle ones, as IdleClose would (default 1024; negative: no
	// cap; none either with a negative IdleClose). Queues with something
	// in flight are never closed for it.
	MaxOpenQueues int
	// MaxMemoryBytes caps the bytes that all queues' memory tails and held
	// bodies keep in memory together (default DefaultMaxMemoryBytes). Past
	// it new tail records push out the queue's oldest ones and held bodies
	// are not kept: reads go to the segment files. Per queue the tail stays
	// within SegmentBytes/2 (at most 8 MiB) and held bodies within 32 MiB.
	MaxMemoryBytes int64
	// DedupWindow is how long an idempotency key is remembered (default 5m).
	DedupWindow time.Duration
	// CompactInterval is the period of the compactor (default 1s).
	CompactInterval time.Duration
	// MaxDeliveries moves a leased message that was delivered this many
	// times without an ack to the queue {name}.dlq (0 = no limit).
	MaxDeliveries int64
	// Node is unused: receipts no longer carry a node name, they are
	// signed with a key of this run, which another node (or a later run)
	// does not have. Kept so that callers setting it still compile.
	Node string
	// Logger receives the engine's logs (default slog.Default()).
	Logger *slog.Logger
	// Metrics receives the engine's metrics; nil records nothing.
	Metrics *metrics.Engine
	// Now is the clock (default time.Now); tests move it to expire messages.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.FsyncInterval <= 0 {
		o.FsyncInterval = 10 * time.Millisecond
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 16 << 20
	}
	if o.SegmentAge <= 0 {
		o.SegmentAge = 10 * time.Minute
	}
	if o.MaxMemoryBytes <= 0 {
		o.MaxMemoryBytes = DefaultMaxMemoryBytes
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = 5 * time.Minute
	}
	if o.CompactInterval <= 0 {
		o.CompactInterval = time.Second
	}
	if o.IdleClose == 0 {
		o.IdleClose = 30 * time.Second
	}
	if o.MaxOpenQueues == 0 {
		o.MaxOpenQueues = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// EnqueueOptions are the per-message options of Enqueue.
type EnqueueOptions struct {
	// TTL makes the message expire this long after it is enqueued; 0 never.
	TTL time.Duration
	// Sync acknowledges only after fsync, whatever the engine's mode.
	Sync bool
	// Key is an idempotency key (1..MaxKeyLen bytes; "" for none): a repeat
	// within DedupWindow returns the original id with ErrDuplicate.
	Key string
	// Delay hides the message until this long after it is enqueued; 0 for
	// none. Among visible messages the order stays by id.
	Delay time.Duration
}

// BatchMessage is one message of EnqueueBatch.
type BatchMessage struct {
	Body []byte
	// TTL makes the message expire this long after it is enqueued; 0 never.
	TTL time.Duration
	// Delay hides the message until this long after it is enqueued.
	Delay time.Duration
}

// BatchOptions are the options of EnqueueBatch.
type BatchOptions struct {
	// Sync acknowledges only after fsync, whatever the engine's mode.
	Sync bool
	// Key is an idempotency key for the whole batch ("" for none), stored
	// in its last record.
	Key string
}

// Message is one dequeued message.
type Message struct {
	ID         uint64
	Body       []byte
	EnqueuedAt time.Time
	// ExpiresAt is the zero time when the message never expires.
	ExpiresAt time.Time
	// DeliveryCount is 1 on the first delivery, more after leases ran out.
	DeliveryCount int
	// Receipt names the lease of a leased message ("" otherwise); it acks,
	// nacks and extends it.
	Receipt string
	// LeaseExpiresAt is when the lease ends (zero without a lease).
	LeaseExpiresAt time.Time
}

// QueueStats is one queue's figures, as served by GET /api/stats.
type QueueStats struct {
	Queue         string `json:"queue"`
	Depth         int64  `json:"depth"`
	NextID        uint64 `json:"next_id"`
	ReadID        uint64 `json:"read_id"`
	EnqueuedTotal uint64 `json:"enqueued_total"`
	DequeuedTotal uint64 `json:"dequeued_total"`
	ExpiredTotal  uint64 `json:"expired_total"`
	Segments      int    `json:"segments"`
	DiskBytes     int64  `json:"disk_bytes"`
	// OldestEnqueuedAt is the unix ms enqueue time of the oldest unconsumed
	// message, 0 when the queue is empty.
	OldestEnqueuedAt int64 `json:"oldest_enqueued_at"`
	// InFlight counts leased messages, Delayed those a nack hid for a
	// while; Depth counts messages visible again after a lease.
	InFlight          int64  `json:"in_flight"`
	Delayed           int64  `json:"delayed"`
	DeadLetteredTotal uint64 `json:"dead_lettered_total"`
	// RedeliveredTotal counts deliveries after the first (a metric only).
	RedeliveredTotal uint64 `json:"-"`
	// PurgedTotal counts messages removed by Purge, RedrivenTotal those
	// Redrive moved out of this queue (a .dlq) back to its source.
	PurgedTotal   uint64 `json:"purged_total"`
	RedrivenTotal uint64 `json:"redriven_total"`
}

// ValidQueueName reports whether name matches
// ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$. Only valid names reach the file system.
func ValidQueueName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}
