package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
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
	// Lease log records to write before the cursor (lease.go), or the
	// whole log when rewrite is set, and how to take back in memory what
	// they record if the write fails (run in reverse, under mu).
	log     []byte
	rewrite bool
	undo    []func()
}

// queue is one named FIFO. Its commit loop (scheduler.go) owns the segment
// writer, the cursor file and the hwm; everything else is guarded by mu.
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
	waiters atomic.Int32 // long polls waiting on notify (Engine.waitFor)
	busyAt  atomic.Int64 // unix ns of the commit loop's last work, for Engine.shed
	pend    *batch       // records waiting for the next commit
	curWait *cursorBatch // dequeues waiting for the next cursor write
	notify  chan struct{}

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
	persisted uint64 // readID as last written to the cursor file
	depth     int64
	reader    *segment.Reader // positioned on disk for backlog reads
	activeAt  time.Time       // when the active segment was created or opened

	// Owned by the commit loop.
	writer       *segment.Writer
	committedSum segment.Summary // writer summary as of the last acknowledged batch
	activeFile   int64           // the active segment's file size as counted in segBytes
	cursor       *cursorFile
	hwm          uint64           // durable bound on the ids handed out
	hwmDone      chan error       // a background hwm write's result (reserveAhead)
	hwmTarget    uint64           // the bound that write stores
	dirty        bool             // written since the last fsync (interval mode)
	cursorRetry  bool             // a cursor write failed: write the position again
	spare        []segment.Record // a committed batch's slice, reused by the next
	spareAfter   []relTimes       // its after slice, likewise
	next         *batch           // the next pending batch, made before it is needed
	wake         chan struct{}
	stopped      chan struct{}
	closeErr     error // what the final close failed at; set before stopped is closed

	keys     map[string]keyEntry // idempotency keys (dedup.go), under mu
	keyOrder []keyRef            // the committed keys by id, for pruning
	// keyLines and carriedLive count the keys file's lines and the live
	// keys it holds; the compactor rewrites it when most lines are stale.
	keyLines, carriedLive int

	// Leases (lease.go), under mu.
	held      map[uint64]*heldMsg // leased, delayed, visible again or moving to the DLQ
	hidden    heldHeap            // leased and delayed, by end
	visible   heldHeap            // visible again, by id (byID)
	leased    int64               // held messages under a running lease
	heldBytes int64               // bodies of held messages kept in memory (maxHeldBytes)
	due       atomic.Int64        // the earliest end in hidden (0 none), for the commit loop's timer
	// The lease log, owned by the commit loop.
	leaseFile    *os.File
	leaseRecs    int  // records in it
	leaseRewrite bool // rewrite it whole from memory at the next turn

	enqueued, dequeued, expired, redelivered, deadLettered atomic.Uint64
	purged, redriven                                       atomic.Uint64 // admin.go

	deleted atomic.Bool // DeleteQueue (admin.go) took it: its long polls end
}

func (q *queue) nowMs() int64 { return q.e.opts.Now().UnixMilli() }

// openQueue recovers (or creates) a queue directory. It repairs the newest
// segment's torn tail, reads the summaries of the sealed ones, and places
// the read cursor.
func openQueue(e *Engine, name string) (*queue, error) {
	if testHookOpen != nil {
		testHookOpen(name)
	}
	dir := filepath.Join(e.opts.Dir, name)
	q := &queue{
		e: e, name: name, dir: dir,
		log:     e.opts.Logger.With("queue", name),
		pend:    &batch{done: make(chan struct{})},
		notify:  make(chan struct{}),
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		quit:    make(chan struct{}),
		held:    map[uint64]*heldMsg{},
		visible: heldHeap{byID: true},
	}
	q.tail.maxBytes = int(min(e.opts.SegmentBytes/2, 8<<20))
	q.tail.budget = &e.mem
	if err := os.Mkdir(dir, 0o750); err == nil {
		if err := segment.SyncDir(e.opts.Dir); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create queue dir %s: %w", dir, err)
	} else if err := checkQueueDir(dir); err != nil {
		return nil, err
	}
	bases, err := segment.List(dir)
	if err != nil {
		return nil, err
	}
	if n := len(bases); n > 0 && bases[n-1] >= MaxID {
		return nil, fmt.Errorf("%w: segment %s: %w", ErrUnavailable, segment.Name(bases[n-1]), errIDRange)
	}
	hwm, err := readHWM(dir)
	if errors.Is(err, errIDRange) {
		return nil, err
	}
	if err != nil {
		// Only ids after a lost tail depend on it; the log still bounds them.
		q.log.Error("hwm file unreadable; ids continue from the newest segment", "err", err)
	}
	q.hwm = hwm
	cur, readID, corrupt, err := openCursor(dir)
	if err != nil {
		return nil, err
	}
	q.cursor = cur
	if corrupt {
		q.log.Error("cursor file corrupt: delivering again from the oldest message on disk (at-least-once rather than loss)", "path", cur.path)
	}

	for i, base := range bases {
		if i == len(bases)-1 {
			break
		}
		sum, ok := segment.ReadMeta(dir, base)
		if !ok {
			res, err := segment.Scan(dir, base)
			if errors.Is(err, segment.ErrNotFound) {
				// Not a torn write (files exist before their first
				// record): someone removed it. Its ids are skipped as a
				// gap, loudly, rather than keeping the queue down.
				q.log.Error("sealed segment has no records file; its records are lost", "segment", segment.Name(base))
				continue
			}
			if err != nil {
				return nil, err
			}
			q.reportScan(res)
			sum = res.Summary
			sum.Bytes = res.FileSize
			if err := segment.WriteMeta(dir, &sum); err != nil {
				q.log.Warn("could not write segment meta", "err", err)
			}
		}
		q.segs = append(q.segs, sum)
		q.segBytes += sum.Bytes
	}

	// The newest segment: repair its torn tail and open it for appending.
	var res *segment.ScanResult
	if len(bases) > 0 {
		base := bases[len(bases)-1]
		var repaired bool
		res, repaired, err = segment.Repair(dir, base)
		if err != nil {
			return nil, err
		}
		q.reportScan(res)
		if !repaired && res.Cut > 0 {
			q.log.Info("cut the zero-filled space after the last record of the newest segment (preallocated, left by a crash)",
				"segment", segment.Name(base), "offset", res.ValidSize, "cut_bytes", res.Cut)
		}
		if repaired {
			e.opts.Metrics.IncRepaired()
			q.log.Warn("repaired torn tail of newest segment", "segment", segment.Name(base),
				"offset", res.ValidSize, "cut_bytes", res.Cut, "kept_bytes", res.Kept,
				"kind", res.Tail.Kind.String(), "reason", res.Tail.Err, "kept_in", segment.BrokenPath(dir, base, res.ValidSize))
			if res.KeepErr != nil {
				q.log.Error("torn tail cut without a copy", "err", res.KeepErr)
			}
		}
	}
	if res != nil {
		w, err := segment.OpenWriter(dir, res)
		if err != nil {
			return nil, err
		}
		q.writer = w
	} else {
		w, err := segment.Create(dir, max(hwm, readID, 1))
		if err != nil {
			return nil, err
		}
		q.writer = w
	}
	active := q.writer.Summary()
	q.segs = append(q.segs, active)
	q.activeFile = q.writer.FileSize()
	q.segBytes += q.activeFile
	q.committedSum = active
	q.activeAt = e.opts.Now()
	// Ids go on past everything ever acknowledged; if that is beyond the
	// newest segment (its tail or the segment itself was lost), the first
	// write starts a new segment there (prepareWrite), so that opening
	// needs no disk space.
	q.nextID = max(q.writer.NextID(), hwm, readID, 1)
	if q.nextID >= MaxID {
		q.writer.Close()
		q.cursor.close()
		return nil, fmt.Errorf("%w: the newest segment %s ends at id %d: %w", ErrUnavailable, segment.Name(active.Base), q.nextID-1, errIDRange)
	}
	q.committed = q.nextID - 1
	if q.nextID != q.writer.NextID() {
		q.log.Info("ids continue from the reserved high-water mark (the last stop was not clean)",
			"last_id_on_disk", q.writer.NextID()-1, "next_id", q.nextID)
	}
	if q.hwm < q.nextID {
		q.hwm = q.nextID
	}

	q.loadKeys()
	if readID == 0 {
		readID = q.segs[0].Base
	}
	q.readID, q.persisted = readID, readID
	for _, s := range q.segs {
		if s.Records > 0 && s.LastID() >= readID {
			q.depth += int64(s.LastID() - max(readID, s.Base) + 1)
		}
	}
	if err := q.loadLeases(); err != nil {
		return nil, err
	}
	return q, nil
}

// reportScan logs corruption found in the middle of a segment. The records
// are counted in corrupt_records_total when a read skips them.
func (q *queue) reportScan(res *segment.ScanResult) {
	for _, c := range res.Corrupt {
		q.log.Error("corrupt record in segment; it will be skipped, never served", "segment", segment.Name(c.Segment), "offset", c.Offset, "id", c.ID, "kind", c.Kind.String(), "reason", c.Err)
	}
}

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

// errNone means no message is ready; notify is the channel to wait on.
var errNone = errors.New("no message")

// dequeue pops the next unexpired message (one visible again after a
// lease first), for good or, with lease > 0, under a lease, and waits
// until the cursor move and lease records are written (and fsynced as the
// mode says). When there is none it returns errNone and the channel that
// is closed when messages are committed or become visible again.
func (q *queue) dequeue(lease time.Duration) (Message, <-chan struct{}, error) {
	q.mu.Lock()
	now, err := q.startPopLocked(lease)
	if err != nil {
		q.mu.Unlock()
		return Message{}, nil, err
	}
	rec, m, err := q.popLocked(now)
	if err != nil {
		ch := q.notify
		q.mu.Unlock()
		return Message{}, ch, err
	}
	msg := q.deliverLocked(rec, m, lease, now, q.joinLocked())
	if err := q.persistReadLocked(); err != nil {
		return Message{}, nil, err
	}
	return msg, nil, nil
}

// startPopLocked checks that a dequeue may go on and makes due leases
// visible first. It returns the time the dequeue works at.
func (q *queue) startPopLocked(lease time.Duration) (int64, error) {
	if q.closing {
		return 0, q.closedErr()
	}
	now := q.nowMs()
	if dead, _ := q.promoteLocked(now); len(dead) > 0 {
		go q.deadLetter(dead)
	}
	if q.heldFullLocked(lease) {
		return 0, fmt.Errorf("%w: %d held", ErrTooManyInFlight, len(q.held))
	}
	return now, nil
}

// heldFullLocked reports whether a lease must wait: the queue holds
// MaxInFlight messages and none of them is visible again (leasing one of
// those adds nothing).
func (q *queue) heldFullLocked(lease time.Duration) bool {
	return lease > 0 && q.visible.Len() == 0 && len(q.held) >= MaxInFlight
}

// dequeueBatch pops up to max unexpired messages, stopping early once their
// bodies reach maxBytes (it always takes one), and waits for one cursor
// write for all of them. With none ready it returns errNone and the channel
// closed when messages are committed, like dequeue.
func (q *queue) dequeueBatch(max int, maxBytes int64, lease time.Duration) ([]Message, <-chan struct{}, error) {
	q.mu.Lock()
	now, err := q.startPopLocked(lease)
	if err != nil {
		q.mu.Unlock()
		return nil, nil, err
	}
	var msgs []Message
	var bytes int64
	for len(msgs) < max && bytes < maxBytes {
		if q.heldFullLocked(lease) {
			break
		}
		rec, m, err := q.popLocked(now)
		if errors.Is(err, errNone) {
			break
		}
		if err != nil {
			if len(msgs) > 0 {
				break // deliver what was popped; the error comes back next time
			}
			q.mu.Unlock()
			return nil, nil, err
		}
		msgs = append(msgs, q.deliverLocked(rec, m, lease, now, q.joinLocked()))
		bytes += int64(len(rec.Payload))
	}
	if len(msgs) == 0 {
		ch := q.notify
		q.mu.Unlock()
		return nil, ch, errNone
	}
	if err := q.persistReadLocked(); err != nil {
		return nil, nil, err
	}
	return msgs, nil, nil
}

// toMessage converts a popped record.
func toMessage(rec *segment.Record) Message {
	msg := Message{ID: rec.ID, Body: rec.Payload, EnqueuedAt: time.UnixMilli(rec.EnqueuedAt)}
	if rec.ExpiresAt != 0 {
		msg.ExpiresAt = time.UnixMilli(rec.ExpiresAt)
	}
	return msg
}

// persistReadLocked joins the next cursor write, unlocks q.mu and waits
// until the read position is written (and fsynced as the mode says).
func (q *queue) persistReadLocked() error {
	cb := q.joinLocked()
	q.mu.Unlock()
	q.kick()
	<-cb.done
	return cb.err
}

// nextLocked moves readID past the next deliverable record and returns it,
// skipping (and counting) expired and corrupt ones. The payload it returns
// is the caller's to keep.
func (q *queue) nextLocked() (segment.Record, error) {
	now := q.nowMs()
	for q.readID <= q.committed {
		// One tmu section per record read from the tail: take it and
		// forget it (and anything older) there.
		var rec segment.Record
		q.tmu.Lock()
		r, ok := q.tail.get(q.readID)
		if ok {
			rec = *r
			q.tail.dropBefore(rec.ID + 1)
		}
		q.tmu.Unlock()
		if !ok {
			r, err := q.readDiskLocked()
			if err != nil {
				if errors.Is(err, errNone) {
					continue // readID moved past a gap or a bad stretch
				}
				return segment.Record{}, err
			}
			rec = r
			q.tmu.Lock()
			q.tail.dropBefore(rec.ID + 1)
			q.tmu.Unlock()
		}
		q.readID = rec.ID + 1
		q.depth--
		if rec.Expired(now) {
			q.expired.Add(1)
			continue
		}
		q.dequeued.Add(1)
		return rec, nil
	}
	return segment.Record{}, errNone
}

// readDiskLocked reads the record at readID from its segment file. It
// returns errNone after moving readID past ids that are not there (a gap, a
// corrupt record, an unreadable rest of a segment).
func (q *queue) readDiskLocked() (segment.Record, error) {
	// LastID is monotonic over the sorted segments (an empty one's is
	// Base-1), so search on it alone, then step over empty segments.
	i := sort.Search(len(q.segs), func(i int) bool { return q.segs[i].LastID() >= q.readID })
	for i < len(q.segs) && q.segs[i].Records == 0 {
		i++
	}
	if i == len(q.segs) {
		// Nothing on disk at or after readID: ids up to committed are gone.
		q.readID = q.committed + 1
		return segment.Record{}, errNone
	}
	s := &q.segs[i]
	if q.readID < s.Base {
		q.readID = s.Base // a gap: lost ids or a deleted expired segment
		return segment.Record{}, errNone
	}
	fresh := q.reader == nil || q.reader.Base() != s.Base || q.reader.NextID() != q.readID
	if fresh {
		if q.reader != nil {
			q.reader.Close()
			q.reader = nil
		}
		r, err := segment.OpenReader(q.dir, s.Base)
		if err != nil {
			return segment.Record{}, err
		}
		q.reader = r
	}
	// Only committed bytes: past them the active segment holds zero-filled
	// space or a batch being written, which must not stay in the buffer.
	q.reader.SetLimit(s.Bytes)
	if fresh {
		bad, err := q.reader.SkipTo(q.readID)
		q.countCorrupt(len(bad))
		if err != nil {
			return segment.Record{}, q.badStretchLocked(s, err)
		}
	}
	rec, err := q.reader.Next()
	if err == nil {
		rec.Payload = append([]byte(nil), rec.Payload...)
		return rec, nil
	}
	var ce *segment.CorruptionError
	if errors.As(err, &ce) && !ce.Framing() {
		q.countCorrupt(1)
		q.log.Error("skipping corrupt record", "segment", segment.Name(ce.Segment), "offset", ce.Offset, "id", ce.ID, "kind", ce.Kind.String(), "reason", ce.Err)
		q.readID++
		q.depth--
		return segment.Record{}, errNone
	}
	return segment.Record{}, q.badStretchLocked(s, err)
}

// badStretchLocked handles a segment that cannot be read past some point:
// the ids from readID to its end are reported and skipped, never served.
func (q *queue) badStretchLocked(s *segment.Summary, err error) error {
	var ce *segment.CorruptionError
	if !errors.As(err, &ce) && !errors.Is(err, io.EOF) && !errors.Is(err, segment.ErrNotFound) {
		return fmt.Errorf("queue %s: read segment %s: %w", q.name, segment.Name(s.Base), err)
	}
	lost := s.LastID() - q.readID + 1
	q.countCorrupt(int(lost))
	q.log.Error("segment unreadable past this point; skipping the rest of it", "segment", segment.Name(s.Base),
		"from_id", q.readID, "to_id", s.LastID(), "err", err)
	q.depth -= int64(lost)
	q.readID = s.LastID() + 1
	if q.reader != nil {
		q.reader.Close()
		q.reader = nil
	}
	return errNone
}

func (q *queue) countCorrupt(n int) {
	if n > 0 {
		q.e.opts.Metrics.AddCorrupt(n)
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

// classify maps a storage error to the error the API answers with.
func classify(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return fmt.Errorf("%w: %w", ErrWrite, err)
}
