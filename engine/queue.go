package engine

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// batch is one group commit: the records that one write (and at most one
// fsync) stores, and the channel that wakes all their producers at once.
type batch struct {
	recs []segment.Record
	// after holds each record's TTL and delay relative to its commit,
	// which stamps the enqueue time and turns them into the records'
	// ExpiresAt and VisibleAt (commitBatch).
	after []relTimes
	bytes int64
	sync  bool // some producer asked for ?sync=1
	keyed bool // some record has an idempotency key
	done  chan struct{}
	err   error // set before done is closed
	first uint64
}

// cursorBatch is the set of dequeues waiting for one cursor write.
type cursorBatch struct {
	done chan struct{}
	err  error
	// Lease log records to write before the cursor (leaselog.go), or the
	// whole log when rewrite is set, and how to take back in memory what
	// they record if the write fails (run in reverse, under mu).
	log     []byte
	rewrite bool
	undo    []func()
}

// commitState is what only the commit loop (commit.go) touches, without a
// lock: openQueue fills it before the loop starts, and the loop's last
// turn closes it. Nothing else reads it while the loop runs, so nothing
// here needs mu; what the loop shares with producers and consumers lives in
// queue under mu.
type commitState struct {
	writer       *segment.Writer
	committedSum segment.Summary // writer summary as of the last acknowledged batch
	activeFile   int64           // the active segment's file size as counted in segBytes
	cursor       *cursorFile
	persisted    uint64           // readID as last written to the cursor file
	cursorRetry  bool             // a cursor write failed: write the position again
	hwm          uint64           // durable bound on the ids handed out (hwm.go)
	hwmDone      chan error       // a background hwm write's result (reserveAhead)
	hwmTarget    uint64           // the bound that write stores
	dirty        bool             // written since the last fsync (interval mode)
	spare        []segment.Record // a committed batch's slice, reused by the next
	spareAfter   []relTimes       // its after slice, likewise
	next         *batch           // the next pending batch, made before it is needed
	// The lease log (leaselog.go).
	leaseFile    *os.File
	leaseRecs    int  // records in it
	leaseRewrite bool // rewrite it whole from memory at the next turn
}

// queue is one named FIFO. Its commit loop (commit.go) owns commitState;
// the memory tail is guarded by tmu, the rest by mu (lock order: mu, then
// tmu), except the atomics.
type queue struct {
	e    *Engine
	name string
	dir  string
	log  *slog.Logger

	mu      sync.Mutex
	closing bool        // closing or retired: no new work is taken
	retired atomic.Bool // set with closing by retire (lifecycle.go)
	keep    bool        // retired to stay dormant, not forgotten
	quit    chan struct{}
	// shedding carries Engine.shed's requests to retire, answered by the
	// commit loop (lifecycle.go).
	shedding chan chan bool
	waiters  atomic.Int32 // long polls waiting on notify (Engine.waitFor)
	busyAt   atomic.Int64 // unix ns of the commit loop's last work, for Engine.shed
	pend     *batch       // records waiting for the next commit
	curWait  *cursorBatch // dequeues waiting for the next cursor write
	notify   chan struct{}

	segs     []segment.Summary // sealed segments then the active one, by base
	segBytes int64             // bytes of all segment files, the active one's zero-filled space included
	// tail is guarded by tmu, taken after mu when both are held: the
	// commit loop pushes a batch under tmu alone, so producers queueing
	// on mu do not wait for the copy.
	tmu       sync.Mutex
	tail      memTail
	committed uint64 // last id readable by consumers
	nextID    uint64 // next id the commit loop will assign; written under mu by it
	readID    uint64 // next id to deliver
	depth     int64
	reader    *segment.Reader // positioned on disk for backlog reads
	activeAt  time.Time       // when the active segment was created or opened

	commitState // owned by the commit loop, no lock
	wake        chan struct{}
	stopped     chan struct{}
	closeErr    error // what the final close failed at; set before stopped is closed

	dedup // idempotency keys (dedup.go), under mu

	// Leases (lease.go, held.go), under mu.
	held      map[uint64]*heldMsg // leased, delayed, visible again or moving to the DLQ
	hidden    heldHeap            // leased and delayed, by end
	visible   heldHeap            // visible again, by id (byID)
	leased    int64               // held messages under a running lease
	heldBytes int64               // bodies of held messages kept in memory (maxHeldBytes)
	due       atomic.Int64        // the earliest end in hidden (0 none), for the commit loop's timer

	enqueued, dequeued, expired, redelivered, deadLettered atomic.Uint64
	purged, redriven                                       atomic.Uint64 // admin.go

	deleted atomic.Bool // DeleteQueue (admin.go) took it: its long polls end
}

func (q *queue) nowMs() int64 { return q.e.opts.Now().UnixMilli() }

// enqueue adds one message to the pending batch and waits for its commit.
func (q *queue) enqueue(body []byte, opts EnqueueOptions) (uint64, error) {
	// The commit loop stamps the enqueue time, once per batch, and the
	// expiry and visibility from it (see commitBatch).
	rec := segment.Record{Payload: body}
	after := relTimes{ttl: ttlMs(opts.TTL), delay: ttlMs(opts.Delay)}
	size := frameSize(len(body), len(opts.Key), after.delay != 0)
	if opts.Key != "" {
		rec.Key = []byte(opts.Key)
	}
	q.mu.Lock()
	if opts.Key != "" {
		// A key taken within the window, committed or still pending,
		// answers its id with ErrDuplicate and stores nothing.
		if e, ok := q.keyedLocked(opts.Key); ok {
			q.mu.Unlock()
			id, _, err := e.wait()
			return id, err
		}
	}
	if err := q.admitLocked(1, size); err != nil {
		q.mu.Unlock()
		return 0, err
	}
	b := q.pend
	i := len(b.recs)
	b.recs = append(b.recs, rec)
	b.after = append(b.after, after)
	b.bytes += size
	b.sync = b.sync || opts.Sync
	if opts.Key != "" {
		b.keyed = true
		q.keys[opts.Key] = keyEntry{b: b, i: i, n: 1}
	}
	q.mu.Unlock()
	if i == 0 {
		q.kick()
	}
	<-b.done
	if b.err != nil {
		return 0, b.err
	}
	return b.first + uint64(i), nil
}

// frameSize is the bytes a record takes in a segment (segment.FrameSize).
func frameSize(body, key int, delayed bool) int64 {
	return int64(segment.FrameSize(body, key, delayed))
}

// relTimes are a pending record's TTL and delay in milliseconds from its
// commit (ttlMs; 0 for none).
type relTimes struct{ ttl, delay int64 }

// ttlMs is a TTL or delay as relTimes holds it: milliseconds, at least 1,
// or 0 for none.
func ttlMs(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return max(ttl.Milliseconds(), 1)
}

// admitLocked refuses n more messages of size bytes in all when the queue
// is closing or they would pass --max-queue-depth or --max-disk-bytes.
func (q *queue) admitLocked(n int, size int64) error {
	if q.closing {
		return q.closedErr()
	}
	if max := q.e.opts.MaxQueueDepth; max > 0 && q.depth+int64(len(q.pend.recs)+n) > max {
		return ErrQueueFull
	}
	if max := q.e.opts.MaxDiskBytes; max > 0 && q.e.diskBytes.Load()+q.pend.bytes+size > max {
		return fmt.Errorf("%w: --max-disk-bytes %d reached", ErrDiskFull, max)
	}
	return nil
}

// enqueueBatch adds msgs to the pending batch together, so they take
// consecutive ids and one write stores all of them or none, and waits for
// the commit. It returns the first id.
func (q *queue) enqueueBatch(msgs []BatchMessage, opts BatchOptions) (uint64, int, error) {
	var size int64
	for i := range msgs {
		key := 0
		if i == len(msgs)-1 {
			key = len(opts.Key) // the batch's key is on its last record
		}
		size += frameSize(len(msgs[i].Body), key, ttlMs(msgs[i].Delay) != 0)
	}
	q.mu.Lock()
	if opts.Key != "" {
		if e, ok := q.keyedLocked(opts.Key); ok {
			q.mu.Unlock()
			return e.wait()
		}
	}
	if err := q.admitLocked(len(msgs), size); err != nil {
		q.mu.Unlock()
		return 0, 0, err
	}
	b := q.pend
	i := len(b.recs)
	for j, m := range msgs {
		// More on all but the last: a crash that cuts the write short
		// leaves a partial batch that the next open cuts off whole.
		b.recs = append(b.recs, segment.Record{More: j < len(msgs)-1, Payload: m.Body})
		b.after = append(b.after, relTimes{ttl: ttlMs(m.TTL), delay: ttlMs(m.Delay)})
	}
	if opts.Key != "" {
		// On the last record: its batch is there whole whenever it is.
		b.recs[len(b.recs)-1].Key = []byte(opts.Key)
		b.keyed = true
		q.keys[opts.Key] = keyEntry{b: b, i: i, n: len(msgs)}
	}
	b.bytes += size
	b.sync = b.sync || opts.Sync
	q.mu.Unlock()
	if i == 0 {
		q.kick()
	}
	<-b.done
	if b.err != nil {
		return 0, 0, b.err
	}
	return b.first + uint64(i), len(msgs), nil
}

// kick wakes the commit loop; it never blocks.
func (q *queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// stats returns the queue's figures.
func (q *queue) stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := QueueStats{
		Queue:         q.name,
		Depth:         q.depth + int64(q.visible.Len()),
		NextID:        q.nextID,
		ReadID:        q.readID,
		EnqueuedTotal: q.enqueued.Load(),
		DequeuedTotal: q.dequeued.Load(),
		ExpiredTotal:  q.expired.Load(),
		Segments:      len(q.segs),
		DiskBytes:     q.segBytes,

		InFlight:          q.leased,
		Delayed:           int64(q.hidden.Len()) - q.leased,
		DeadLetteredTotal: q.deadLettered.Load(),
		RedeliveredTotal:  q.redelivered.Load(),
		PurgedTotal:       q.purged.Load(),
		RedrivenTotal:     q.redriven.Load(),
	}
	if q.depth > 0 {
		q.tmu.Lock()
		r, ok := q.tail.get(q.readID)
		if ok {
			st.OldestEnqueuedAt = r.EnqueuedAt
		}
		q.tmu.Unlock()
		if !ok {
			// The head is on disk: the enqueue time of the first record of
			// its segment is a lower bound, exact at segment starts.
			for _, s := range q.segs {
				if s.Records > 0 && s.LastID() >= q.readID {
					st.OldestEnqueuedAt = s.FirstEnqueued
					break
				}
			}
		}
	}
	if q.visible.Len() > 0 {
		// Visible again after a lease: older than anything at the cursor.
		st.OldestEnqueuedAt = q.visible.first().rec.EnqueuedAt
	}
	return st
}
