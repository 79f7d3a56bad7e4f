package engine

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// The lease log (the file "leases" of a queue directory): its record
// format, written by the commit loop before the cursor move it belongs to,
// snapshot rewrites, and its reading at open.

// leaseSnapshotLocked encodes the live state of the lease log: one lease
// record per held message.
func (q *queue) leaseSnapshotLocked() []byte {
	buf := make([]byte, 0, len(q.held)*format.LeaseRecordSize)
	for id, m := range q.held {
		buf = format.AppendLeaseRecord(buf, format.LeaseHold, id, m.count)
	}
	return buf
}

// writeLeaseLog writes a commit turn's lease records: appended to the log,
// or the whole log replaced (cb.rewrite). Runs on the commit loop, which
// owns the file. A failed append leaves the file to be rewritten from
// memory at the next turn.
func (q *queue) writeLeaseLog(cb *cursorBatch) error {
	if cb.rewrite {
		if q.leaseFile != nil {
			q.leaseFile.Close()
			q.leaseFile = nil
		}
		if err := atomicfile.Replace(q.dir, format.LeasesFile, cb.log); err != nil {
			return err
		}
		q.leaseRecs = len(cb.log) / format.LeaseRecordSize
		q.leaseRewrite = false
		return nil
	}
	path := filepath.Join(q.dir, format.LeasesFile)
	if q.leaseFile == nil {
		f, err := atomicfile.OpenAppend(q.dir, format.LeasesFile)
		if err != nil {
			q.leaseRewrite = true
			return err
		}
		q.leaseFile = f
	}
	_, err := q.leaseFile.Write(cb.log)
	if err == nil && q.e.opts.Fsync == FsyncAlways {
		start := time.Now()
		err = syscall.Fdatasync(int(q.leaseFile.Fd()))
		q.observeFsync(start)
	} else if err == nil {
		q.dirty = true
	}
	if err != nil {
		q.leaseRewrite = true
		q.leaseFile.Close()
		q.leaseFile = nil
		return fmt.Errorf("append to lease log %s: %w", path, err)
	}
	q.leaseRecs += len(cb.log) / format.LeaseRecordSize
	return nil
}

// syncLeaseLog fsyncs the lease log, if it was written (interval mode).
func (q *queue) syncLeaseLog() error {
	if q.leaseFile == nil {
		return nil
	}
	if err := syscall.Fdatasync(int(q.leaseFile.Fd())); err != nil {
		return fmt.Errorf("fsync lease log in %s: %w", q.dir, err)
	}
	return nil
}

// loadLeases rebuilds the held messages at start from the lease log: every
// id below the cursor that was leased and not done is visible again, with
// its delivery count, its body read from its segment. The log is then
// rewritten with those alone.
func (q *queue) loadLeases() error {
	raw, err := os.ReadFile(filepath.Join(q.dir, format.LeasesFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lease log in %s: %w", q.dir, err)
	}
	if len(raw) == 0 {
		return nil // nothing held (a retired queue's, lifecycle.go): nothing to rewrite
	}
	count, done, bad, torn := format.DecodeLeaseLog(raw)
	if bad > 0 {
		q.log.Error("lease log has corrupt records; they were skipped (a skipped ack delivers its message again)", "records", bad)
	}
	if torn > 0 {
		q.log.Warn("lease log ends in a torn record; cut", "bytes", torn)
	}
	var ids []uint64
	for id := range count {
		if !done[id] && id < q.readID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	now := q.nowMs()
	q.readIDs(ids, func(rec segment.Record) {
		if rec.Expired(now) {
			return
		}
		m := &heldMsg{rec: rec, count: count[rec.ID]}
		q.putHeldLocked(m)
		if rec.VisibleAt > now {
			// Delayed and not yet due: held until then, as before.
			m.until = rec.VisibleAt
			heap.Push(&q.hidden, m)
			return
		}
		heap.Push(&q.visible, m)
	})
	if n := len(ids) - len(q.held); n > 0 {
		q.log.Warn("leased messages not found or expired at start; not delivered again", "messages", n)
	}
	if n := q.visible.Len(); n > 0 {
		q.log.Info("leased messages visible again after a restart", "messages", n)
	}
	q.dueLocked()
	snap := q.leaseSnapshotLocked()
	if err := atomicfile.Replace(q.dir, format.LeasesFile, snap); err != nil {
		q.releaseMemory() // the queue does not open: its held bodies go back
		return err
	}
	q.leaseRecs = len(snap) / format.LeaseRecordSize
	return nil
}
