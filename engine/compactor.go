package engine

import (
	"math"

	"github.com/mqueue/mqueue/segment"
)

// compact reclaims disk space by deleting whole sealed segments, chosen by
// the per-segment TTL index (segment.Summary: last id and max expiry):
//   - consumed: every id in it is below the persisted read cursor;
//   - expired: its largest expiry has passed, so every record in it has.
//
// The active segment is never deleted; once it is older than SegmentAge and
// holds records it is sealed, so expired data leaves the disk within
// SegmentAge plus one compaction pass. Runs on the commit loop, which owns
// the files.
func (q *queue) compact() {
	opts := &q.e.opts
	if q.writer != nil && q.writer.Broken() == nil {
		if sum := q.writer.Summary(); sum.Records > 0 && opts.Now().Sub(q.activeAt) >= opts.SegmentAge {
			if err := q.rotate(); err != nil {
				q.log.Error("rotate aged segment", "err", err)
			}
		}
	}
	nowMs := q.nowMs()
	var doomed []segment.Summary
	q.mu.Lock()
	keep := q.segs[:0]
	last := len(q.segs) - 1
	if q.writer == nil {
		last = len(q.segs) // no active segment: every one is sealed
	}
	// Idempotency keys of segments about to go are carried to the keys
	// file first (dedup.go); if that fails, such segments stay.
	var carry []segment.Summary
	// Consumed: below the persisted cursor and below every held message
	// (leased, delayed, visible again), whose body a restart reads back.
	floor := min(q.persisted, q.minHeldLocked())
	for i, s := range q.segs {
		consumed := s.Records == 0 || s.LastID() < floor
		expired := s.MaxExpiry != 0 && s.MaxExpiry <= nowMs
		if i != last && (consumed || expired) && s.LastKeyed != 0 {
			carry = append(carry, s)
		}
	}
	lines, rewrite, covered := q.carryKeysLocked(carry)
	if covered != nil {
		// Written without q.mu (a write and an fsync), before any of the
		// covered segments goes.
		q.mu.Unlock()
		err := q.writeKeys(lines, rewrite)
		q.mu.Lock()
		if err != nil {
			// The keys were marked carried: the next carry rewrites the
			// file with every one of them.
			q.keyLines = math.MaxInt / 2
			q.log.ErrorContext(RepeatingLog, "could not keep the idempotency keys of consumed segments; keeping the segments", "err", err)
			covered = nil
		}
	}
	floor = min(q.persisted, q.minHeldLocked())
	for i, s := range q.segs {
		consumed := s.Records == 0 || s.LastID() < floor
		expired := s.MaxExpiry != 0 && s.MaxExpiry <= nowMs
		liveKeys := s.LastKeyed != 0 && s.LastKeyed+q.window() > nowMs
		if i == last || (!consumed && !expired) || (liveKeys && !covered[s.Base]) {
			keep = append(keep, s)
			continue
		}
		if !consumed && s.LastID() >= q.readID {
			n := s.LastID() - max(q.readID, s.Base) + 1
			q.expired.Add(n)
			q.depth -= int64(n)
			if q.readID >= s.Base {
				q.readID = s.LastID() + 1
			}
		}
		if q.reader != nil && q.reader.Base() == s.Base {
			q.reader.Close()
			q.reader = nil
		}
		q.segBytes -= s.Bytes
		doomed = append(doomed, s)
	}
	clear(q.segs[len(keep):])
	q.segs = keep
	q.mu.Unlock()

	for _, s := range doomed {
		// A crash before the cursor reaches disk is harmless: readers skip
		// ids that no segment holds.
		if err := segment.Remove(q.dir, s.Base); err != nil {
			q.log.Error("delete segment", "segment", segment.Name(s.Base), "err", err)
			continue
		}
		q.e.diskBytes.Add(-s.Bytes)
		q.log.Debug("deleted segment", "segment", segment.Name(s.Base), "records", s.Records, "bytes", s.Bytes)
	}
}
