package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// Segment files as the commit loop writes them: room for the next batch,
// rotation, the active writer, fsyncs in every mode, and the close.

// prepareWrite mends a writer broken by an earlier error and rotates the
// active segment when this batch would overflow it or it is too old.
func (q *queue) prepareWrite(size int64) error {
	if q.writer == nil {
		// An earlier rotation sealed the old segment but could not create
		// the new one.
		w, err := segment.Create(q.dir, q.nextID)
		if err != nil {
			return err
		}
		q.installWriter(w)
	}
	if q.writer.Broken() != nil {
		if err := q.writer.Recover(q.committedSum); err != nil {
			q.log.ErrorContext(RepeatingLog, "segment still broken; refusing writes", "err", err)
			return err
		}
		q.log.Info("segment repaired after write error", "segment", segment.Name(q.committedSum.Base), "size", q.committedSum.Bytes)
		q.e.opts.Metrics.IncRepaired()
		q.countFile()
		// A reader's buffer may hold bytes of the failed batch that the
		// repair cut and the next batch will overwrite.
		q.mu.Lock()
		if q.reader != nil && q.reader.Base() == q.committedSum.Base {
			q.reader.Close()
			q.reader = nil
		}
		q.mu.Unlock()
	}
	sum := q.writer.Summary()
	if q.nextID != q.writer.NextID() {
		// Ids jump past the high-water mark (newest records were lost
		// before the last start): they continue in a new segment.
		return q.rotate()
	}
	if sum.Records > 0 && (sum.Bytes+size > q.e.opts.SegmentBytes || q.e.opts.Now().Sub(q.activeAt) >= q.e.opts.SegmentAge) {
		return q.rotate()
	}
	return nil
}

// rotate seals the active segment and starts a new one at nextID.
func (q *queue) rotate() error {
	sealed, err := q.writer.Seal()
	q.countFile() // Seal cut the zero-filled space off
	if err != nil {
		return err
	}
	if err := segment.WriteMeta(q.dir, &sealed); err != nil {
		q.log.Warn("sealed segment has no meta; the next open will scan it", "err", err)
	}
	q.writer = nil
	q.activeFile = 0 // sealed.Bytes, counted in segBytes, is its size now
	q.mu.Lock()
	q.segs[len(q.segs)-1] = sealed
	q.tmu.Lock()
	q.tail.reset()
	q.tmu.Unlock()
	q.mu.Unlock()
	w, err := segment.Create(q.dir, q.nextID)
	if err != nil {
		// The sealed segment is still the newest on disk and would reopen
		// as the active one; prepareWrite tries again before each batch.
		return err
	}
	q.installWriter(w)
	return nil
}

// installWriter makes a freshly created segment the active one.
func (q *queue) installWriter(w *segment.Writer) {
	q.writer = w
	q.activeFile = 0 // created empty
	q.countFile()
	q.committedSum = w.Summary()
	q.activeAt = q.e.opts.Now()
	q.mu.Lock()
	q.segs = append(q.segs, w.Summary())
	q.mu.Unlock()
}

// countFile counts a change in the active segment's file size (its
// records and the zero-filled space ahead of them) in segBytes and the
// engine's disk bytes, which --max-disk-bytes caps. Runs on the commit loop.
func (q *queue) countFile() {
	var size int64
	if q.writer != nil {
		size = q.writer.FileSize()
	}
	d := size - q.activeFile
	if d == 0 {
		return
	}
	q.activeFile = size
	q.mu.Lock()
	q.segBytes += d
	q.mu.Unlock()
	q.e.diskBytes.Add(d)
}

// syncWriter fsyncs the active segment, timing it. It leaves dirty alone:
// the cursor and the lease log may hold unsynced writes too, and only
// backgroundSync, having synced all three, clears it.
func (q *queue) syncWriter() error {
	start := time.Now()
	err := q.writer.Sync()
	q.observeFsync(start)
	return err
}

func (q *queue) observeFsync(start time.Time) {
	d := time.Since(start)
	q.e.opts.Metrics.ObserveFsync(d)
	if d > slowFsync {
		q.log.Warn("slow fsync", "duration", d)
	}
}

const slowFsync = 500 * time.Millisecond

// backgroundSync is the interval mode's periodic fsync.
func (q *queue) backgroundSync() {
	if !q.dirty {
		return
	}
	if q.writer != nil && q.writer.Broken() == nil {
		if err := q.syncWriter(); err != nil {
			q.e.opts.Metrics.IncWriteError()
			q.log.ErrorContext(RepeatingLog, "background fsync failed", "err", err)
			return
		}
	}
	start := time.Now()
	if err := q.cursor.sync(); err != nil {
		q.e.opts.Metrics.IncWriteError()
		q.log.ErrorContext(RepeatingLog, "background cursor fsync failed", "err", err)
		return
	}
	if err := q.syncLeaseLog(); err != nil {
		q.e.opts.Metrics.IncWriteError()
		q.log.ErrorContext(RepeatingLog, "background lease log fsync failed", "err", err)
		return
	}
	q.observeFsync(start)
	q.dirty = false
}

// shutdown writes the final cursor and exact hwm, fsyncs and closes files.
func (q *queue) shutdown() error {
	if q.readID != q.persisted || q.cursorRetry {
		q.commitCursor(q.readID, nil)
	}
	// A failure below is a close error when something acknowledged is not
	// fsynced yet (dirty: interval and never modes), which it may lose. With
	// nothing unsynced (fsync always fsynced every acknowledgement) it
	// costs nothing acknowledged and is logged only.
	unsynced := q.dirty
	var errs []error
	fail := func(what string, err error) {
		if !unsynced {
			q.log.Warn(what+" failed; everything acknowledged was fsynced already", "err", err)
			return
		}
		q.log.Error(what+" failed", "err", err)
		errs = append(errs, fmt.Errorf("queue %s: %s: %w", q.name, what, err))
	}
	if q.cursorRetry {
		fail("final cursor write", errors.New("the cursor could not be written; the next open redelivers from the last one stored"))
	}
	if err := q.cursor.sync(); err != nil {
		fail("final cursor fsync", err)
	}
	if err := q.cursor.close(); err != nil {
		fail("close cursor", err)
	}
	if q.leaseFile != nil {
		if err := q.syncLeaseLog(); err != nil {
			fail("final lease log fsync", err)
		}
		if err := q.leaseFile.Close(); err != nil {
			fail("close lease log", err)
		}
		q.leaseFile = nil
	}
	if q.retired.Load() && len(q.held) == 0 && q.leaseRecs > 0 {
		q.emptyLeaseLog()
	}
	if q.writer != nil && q.writer.Broken() != nil {
		// Cut what the failed batch left in the file, so that the next
		// open finds no torn tail (on a full disk it could not keep one).
		if err := q.writer.Recover(q.committedSum); err != nil {
			q.log.Error("could not repair segment at close; the next open will", "err", err)
		}
	}
	q.awaitHWM() // before the exact bound below, which it must not overwrite
	if q.writer == nil {
		q.log.Error("no active segment at close; hwm left as reserved")
	} else if err := q.writer.Close(); err != nil {
		fail("final segment fsync", err)
	} else if err := writeHWM(q.dir, q.nextID); err != nil {
		// Not a close error: the bound reserved ahead stays, and ids go
		// on from it (a gap, nothing lost). A full disk fails it.
		q.log.Warn("final hwm write failed; ids go on from the bound reserved ahead", "err", err)
	}
	q.countFile() // Close cut the zero-filled space off
	q.mu.Lock()
	if q.reader != nil {
		q.reader.Close()
		q.reader = nil
	}
	q.broadcastLocked(make(chan struct{}))
	q.mu.Unlock()
	return errors.Join(errs...)
}
