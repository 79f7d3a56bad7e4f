package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mqueue/mqueue/segment"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// Opening a queue directory: recovery of its segments, cursor, hwm, keys
// and lease log, as at start or when a dormant queue is used again.

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
		log:      e.opts.Logger.With("queue", name),
		pend:     &batch{done: make(chan struct{})},
		notify:   make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		quit:     make(chan struct{}),
		shedding: make(chan chan bool),
		held:     map[uint64]*heldMsg{},
		visible:  heldHeap{byID: true},
	}
	q.tail.maxBytes = int(min(e.opts.SegmentBytes/2, 8<<20))
	q.tail.budget = &e.mem
	if err := os.Mkdir(dir, 0o750); err == nil {
		if err := atomicfile.SyncDir(e.opts.Dir); err != nil {
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

// classify maps a storage error to the error the API answers with.
func classify(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return fmt.Errorf("%w: %w", ErrWrite, err)
}
