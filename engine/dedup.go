package engine

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"

	"github.com/mqueue/mqueue/segment"
)

// Idempotency keys (Idempotency-Key on a POST). A key is stored in its
// message's record (segment.Record.Key), so the key and the message reach
// the disk in the same write: a crash never keeps one without the other.
// Each queue keeps an index of the keys it took within DedupWindow; a
// repeat within the window answers the original id (ErrDuplicate) and
// stores nothing. At start the index is rebuilt from the records of the
// segments with keys younger than the window (Summary.LastKeyed), and from
// the keys file, which holds the keys whose segments were deleted (consumed
// or expired) while still inside the window: the messages leave the disk
// on time, their keys stay for the window.

// keysName is the keys file of a queue: a JSON snapshot of carried keys.
const keysName = "keys"

// keyEntry is one key of the index: committed (b nil) with its id and
// enqueue time, or pending in batch b at index i.
type keyEntry struct {
	id      uint64 // the first id of what the key stored
	n       int    // how many messages: 1, or a batch POST's count
	at      int64  // unix ms
	b       *batch
	i       int  // the index of the first message in b
	carried bool // its segment was deleted; it lives in the keys file
}

// wait returns what the key's POST stored (first id and count) with
// ErrDuplicate, waiting for it if it is still being committed; its error if
// that commit failed.
func (e keyEntry) wait() (uint64, int, error) {
	if e.b == nil {
		return e.id, max(e.n, 1), ErrDuplicate
	}
	<-e.b.done
	if e.b.err != nil {
		return 0, 0, e.b.err
	}
	return e.b.first + uint64(e.i), e.n, ErrDuplicate
}

type keysFile struct {
	Keys []keyRecord `json:"keys"`
}

type keyRecord struct {
	Key string `json:"key"`
	ID  uint64 `json:"id"`
	N   int    `json:"n,omitempty"` // messages of a batch POST; absent for 1
	At  int64  `json:"at"`
}

func (q *queue) window() int64 { return q.e.opts.DedupWindow.Milliseconds() }

// loadKeys rebuilds the index at open: the keys file, then every keyed
// record of the segments whose last key is inside the window. A file that
// cannot be read costs its keys' de-duplication, not the queue.
func (q *queue) loadKeys() {
	q.keys = map[string]keyEntry{}
	now := q.nowMs()
	if data, err := os.ReadFile(filepath.Join(q.dir, keysName)); err == nil {
		var f keysFile
		if err := json.Unmarshal(data, &f); err != nil {
			q.log.Error("keys file unreadable; the idempotency keys of deleted segments are forgotten", "err", err)
		}
		for _, k := range f.Keys {
			if k.At+q.window() > now {
				q.keys[k.Key] = keyEntry{id: k.ID, n: max(k.N, 1), at: k.At, carried: true}
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		q.log.Error("keys file unreadable; the idempotency keys of deleted segments are forgotten", "err", err)
	}
	for _, s := range q.segs {
		if s.LastKeyed == 0 || s.LastKeyed+q.window() <= now || s.Records == 0 {
			continue
		}
		if err := q.scanKeys(s, now); err != nil {
			q.log.Error("reading idempotency keys of a segment failed; its keys are forgotten",
				"segment", segment.Name(s.Base), "err", err)
		}
	}
}

// scanKeys adds the keyed records of one segment (up to its committed
// bytes) that are inside the window.
func (q *queue) scanKeys(s segment.Summary, now int64) error {
	r, err := segment.OpenReader(q.dir, s.Base)
	if err != nil {
		return err
	}
	defer r.Close()
	r.SetLimit(s.Bytes)
	var runStart uint64 // first id of the batch being read, 0 outside one
	for {
		rec, err := r.Next()
		var ce *segment.CorruptionError
		switch {
		case err == nil:
			first := rec.ID
			if runStart != 0 {
				first = runStart
			}
			if rec.More {
				runStart = first
				continue
			}
			runStart = 0
			// A batch POST's key is on its last record.
			if len(rec.Key) > 0 && rec.EnqueuedAt+q.window() > now {
				q.keys[string(rec.Key)] = keyEntry{id: first, n: int(rec.ID - first + 1), at: rec.EnqueuedAt}
			}
			continue
		case errors.As(err, &ce) && !ce.Framing:
			continue // reported by the scan at open and by readers
		case errors.As(err, &ce), errors.Is(err, io.EOF):
			return nil
		}
		return err
	}
}

// keyedLocked looks key up: the id of a committed key inside the window, or
// the batch and index of a pending one. The caller holds q.mu.
func (q *queue) keyedLocked(key string) (e keyEntry, ok bool) {
	e, ok = q.keys[key]
	if ok && e.b == nil && e.at+q.window() <= q.nowMs() {
		return keyEntry{}, false
	}
	return e, ok
}

// commitKeysLocked marks the keys of a committed batch; the caller holds
// q.mu.
func (q *queue) commitKeysLocked(b *batch) {
	for i := range b.recs {
		if r := &b.recs[i]; len(r.Key) > 0 {
			if e := q.keys[string(r.Key)]; e.b == b {
				q.keys[string(r.Key)] = keyEntry{id: b.first + uint64(e.i), n: e.n, at: r.EnqueuedAt}
			}
		}
	}
}

// dropPendingKeys forgets the keys of a failed batch, so that a retry is
// stored.
func (q *queue) dropPendingKeys(b *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range b.recs {
		if r := &b.recs[i]; len(r.Key) > 0 {
			if e := q.keys[string(r.Key)]; e.b == b {
				delete(q.keys, string(r.Key))
			}
		}
	}
}

// keysSnapshotLocked is called by the compactor before it deletes
// segments: stale keys leave the index, and when some of doomed hold keys
// still inside the window it returns the new keys file — every carried key
// that is still live plus those segments' keys — and the bases it covers.
// The caller holds q.mu and writes data (writeFileAtomic) without it; only
// then may the covered segments go.
func (q *queue) keysSnapshotLocked(doomed []segment.Summary) (data []byte, covered map[uint64]bool) {
	now := q.nowMs()
	for k, e := range q.keys {
		if e.b == nil && e.at+q.window() <= now {
			delete(q.keys, k)
		}
	}
	for _, s := range doomed {
		if s.LastKeyed != 0 && s.LastKeyed+q.window() > now {
			if covered == nil {
				covered = map[uint64]bool{}
			}
			covered[s.Base] = true
		}
	}
	if covered == nil {
		return nil, nil
	}
	var f keysFile
	for k, e := range q.keys {
		if e.b != nil {
			continue
		}
		inDoomed := false
		for _, s := range doomed {
			if e.id >= s.Base && e.id <= s.LastID() {
				inDoomed = true
				break
			}
		}
		if e.carried || inDoomed {
			n := e.n
			if n == 1 {
				n = 0 // omitted
			}
			f.Keys = append(f.Keys, keyRecord{Key: k, ID: e.id, N: n, At: e.at})
			e.carried = true
			q.keys[k] = e
		}
	}
	data, err := json.Marshal(&f)
	if err != nil {
		panic(err) // strings and integers only
	}
	return data, covered
}
