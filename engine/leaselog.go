package engine

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/mqueue/mqueue/segment"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// The lease log (the file "leases" of a queue directory): its record
// format, written by the commit loop before the cursor move it belongs to,
// snapshot rewrites, and its reading at open.

// LeaseRecordSize is the size of a lease log record (the file "leases"
// in a queue's directory): [crc32c u32][kind u8][id u64][count u32], the
// CRC over the 13 bytes after it; kind 1 leases the id (count: its
// deliveries so far), kind 2 ends it.
const LeaseRecordSize = leaseRecSize

const (
	leasesName    = "leases"
	leaseRecSize  = 17
	leaseKindHold = 1 // the message is leased; count is its deliveries so far
	leaseKindDone = 2 // acked, popped for good, or moved to the DLQ
)

func appendLeaseRec(dst []byte, kind byte, id uint64, count uint32) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kind)
	dst = binary.LittleEndian.AppendUint64(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, count)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], crcTable))
	return dst
}

// DecodeLeaseLog parses a lease log: for each id the delivery count of its
// last lease record and whether a done record followed. bad counts records
// whose CRC or kind is wrong (skipped); torn is the length of an incomplete
// record at the end.
func DecodeLeaseLog(b []byte) (count map[uint64]uint32, done map[uint64]bool, bad, torn int) {
	count, done = map[uint64]uint32{}, map[uint64]bool{}
	for len(b) >= leaseRecSize {
		r := b[:leaseRecSize]
		b = b[leaseRecSize:]
		if crc32.Checksum(r[4:], crcTable) != binary.LittleEndian.Uint32(r) {
			bad++
			continue
		}
		id := binary.LittleEndian.Uint64(r[5:])
		switch r[4] {
		case leaseKindHold:
			count[id] = binary.LittleEndian.Uint32(r[13:])
			delete(done, id)
		case leaseKindDone:
			done[id] = true
		default:
			bad++
		}
	}
	return count, done, bad, len(b)
}

// leaseSnapshotLocked encodes the live state of the lease log: one lease
// record per held message.
func (q *queue) leaseSnapshotLocked() []byte {
	buf := make([]byte, 0, len(q.held)*leaseRecSize)
	for id, m := range q.held {
		buf = appendLeaseRec(buf, leaseKindHold, id, m.count)
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
		if err := atomicfile.Replace(q.dir, leasesName, cb.log); err != nil {
			return err
		}
		q.leaseRecs = len(cb.log) / leaseRecSize
		q.leaseRewrite = false
		return nil
	}
	path := filepath.Join(q.dir, leasesName)
	if q.leaseFile == nil {
		f, err := atomicfile.OpenAppend(q.dir, leasesName)
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
	q.leaseRecs += len(cb.log) / leaseRecSize
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
	raw, err := os.ReadFile(filepath.Join(q.dir, leasesName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lease log in %s: %w", q.dir, err)
	}
	if len(raw) == 0 {
		return nil // nothing held (a retired queue's, lifecycle.go): nothing to rewrite
	}
	count, done, bad, torn := DecodeLeaseLog(raw)
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
	if err := atomicfile.Replace(q.dir, leasesName, snap); err != nil {
		q.releaseMemory() // the queue does not open: its held bodies go back
		return err
	}
	q.leaseRecs = len(snap) / leaseRecSize
	return nil
}
