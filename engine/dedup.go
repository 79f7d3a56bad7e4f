package engine

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// Idempotency keys (Idempotency-Key on a POST). A key is stored in its
// message's record (segment.Record.Key), so the key and the message reach
// the disk in the same write: a crash never keeps one without the other.
// Each queue keeps an index of the keys it took within DedupWindow; a
// repeat within the window answers the original id (ErrDuplicate) and
// stores nothing. At start the index is rebuilt from the records of the
// segments with keys younger than the window (Summary.LastKeyed), and from
// the keys file, to which the compactor appends the keys of a segment it
// deletes (consumed or expired) while they are still inside the window:
// the messages leave the disk on time, their keys stay for the window. The
// file is JSON Lines, appended and fsynced before the segment goes, and
// rewritten with the live lines once most of it is stale.

// dedup is a queue's idempotency key index, guarded by the queue's mu: the
// keys within DedupWindow (committed or pending), in id order for pruning,
// and the bookkeeping of the keys file.
type dedup struct {
	keys     map[string]keyEntry
	keyOrder []keyRef // the committed keys by id, for pruning
	// keyLines and carriedLive count the keys file's lines and the live
	// keys it holds; the compactor rewrites it when most lines are stale.
	keyLines, carriedLive int
}

// keyRef is one committed key in keyOrder.
type keyRef struct {
	key string
	id  uint64
	at  int64
}

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

// maxKeyedBatch is the most messages one key stands for: the SPEC's batch
// limit (api.MaxBatchMessages).
const maxKeyedBatch = 1000

// validKey reports whether a keys file line can be one the engine wrote: ids
// 1..MaxID-1 for 1..maxKeyedBatch messages (N 0 means 1). A bad count
// would make a repeated batch POST answer that many ids.
func validKey(k *format.KeyRecord) bool {
	return k.N >= 0 && k.N <= maxKeyedBatch && k.ID >= 1 && k.ID < MaxID-uint64(max(k.N, 1))
}

func (q *queue) window() int64 { return q.e.opts.DedupWindow.Milliseconds() }

// loadKeys rebuilds the index at open: the keys file, then every keyed
// record of the segments whose last key is inside the window. A file that
// cannot be read costs its keys' de-duplication, not the queue.
func (q *queue) loadKeys() {
	q.keys = map[string]keyEntry{}
	q.keyOrder = nil
	defer func() {
		for k, e := range q.keys {
			q.keyOrder = append(q.keyOrder, keyRef{key: k, id: e.id, at: e.at})
		}
		slices.SortFunc(q.keyOrder, func(a, b keyRef) int { return cmp.Compare(a.id, b.id) })
	}()
	now := q.nowMs()
	q.keyLines, q.carriedLive = 0, 0
	if data, err := os.ReadFile(filepath.Join(q.dir, format.KeysFile)); err == nil {
		bad, invalid := 0, 0
		for line := range bytes.Lines(data) {
			q.keyLines++
			var k format.KeyRecord
			if err := json.Unmarshal(line, &k); err != nil || k.Key == "" {
				bad++ // a line a crash cut short: its key is forgotten
				continue
			}
			if !validKey(&k) {
				invalid++ // not written by us: never trusted, forgotten
				continue
			}
			if k.At+q.window() > now {
				if _, dup := q.keys[k.Key]; !dup {
					q.carriedLive++
				}
				q.keys[k.Key] = keyEntry{id: k.ID, n: max(k.N, 1), at: k.At, carried: true}
			}
		}
		if bad > 0 {
			q.log.Warn("keys file has unreadable lines (a crash while appending); their keys are forgotten", "lines", bad)
		}
		if invalid > 0 {
			q.log.Error("keys file has lines with impossible ids or counts; skipped, their keys are forgotten", "lines", invalid,
				"max_n", maxKeyedBatch, "max_id", MaxID-1)
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			// A line cut short: the next carry rewrites the file rather
			// than append after it.
			q.keyLines = math.MaxInt / 2
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
				if q.keys[string(rec.Key)].carried {
					q.carriedLive-- // the segment's copy replaces the file's
				}
				q.keys[string(rec.Key)] = keyEntry{id: first, n: int(rec.ID - first + 1), at: rec.EnqueuedAt}
			}
			continue
		case errors.As(err, &ce) && !ce.Framing():
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
				id := b.first + uint64(e.i)
				q.keys[string(r.Key)] = keyEntry{id: id, n: e.n, at: r.EnqueuedAt}
				q.keyOrder = append(q.keyOrder, keyRef{key: string(r.Key), id: id, at: r.EnqueuedAt})
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

// carryKeysLocked is called by the compactor before it deletes segments:
// stale keys leave the index, and when some of doomed hold keys still
// inside the window it returns the lines to add to the keys file — those
// segments' keys, or the whole file's live lines when the file is mostly
// stale (rewrite) — and the bases they cover. The caller holds q.mu and
// writes the lines (writeKeys) without it; only then may the covered
// segments go.
func (q *queue) carryKeysLocked(doomed []segment.Summary) (lines []byte, rewrite bool, covered map[uint64]bool) {
	now := q.nowMs()
	// Committed keys are in keyOrder by id, which is commit order, so the
	// stale ones are at its front: pruning costs what it removes, not a
	// pass over every key under q.mu.
	drop := 0
	for _, r := range q.keyOrder {
		if r.at+q.window() > now {
			break
		}
		if e, ok := q.keys[r.key]; ok && e.b == nil && e.id == r.id {
			if e.carried {
				q.carriedLive--
			}
			delete(q.keys, r.key)
		}
		drop++
	}
	q.keyOrder = q.keyOrder[drop:]
	var last uint64 // the last id of the covered segments
	for _, s := range doomed {
		if s.LastKeyed != 0 && s.LastKeyed+q.window() > now {
			if covered == nil {
				covered = map[uint64]bool{}
			}
			covered[s.Base] = true
			last = max(last, s.LastID())
		}
	}
	if covered == nil {
		return nil, false, nil
	}
	rewrite = q.keyLines > 2*q.carriedLive+1024
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, r := range q.keyOrder {
		if r.id > last && !rewrite {
			break // keys of segments that stay
		}
		e, ok := q.keys[r.key]
		if !ok || e.b != nil || e.id != r.id {
			continue // forgotten, or taken again since
		}
		in := e.carried && rewrite
		for _, s := range doomed {
			if covered[s.Base] && e.id >= s.Base && e.id <= s.LastID() {
				in = true
			}
		}
		if !in || (e.carried && !rewrite) {
			continue
		}
		n := e.n
		if n == 1 {
			n = 0 // omitted
		}
		_ = enc.Encode(format.KeyRecord{Key: r.key, ID: e.id, N: n, At: e.at}) // strings and integers only
		if !e.carried {
			e.carried = true
			q.carriedLive++
			q.keys[r.key] = e
		}
	}
	if rewrite {
		q.keyLines = q.carriedLive
	} else {
		q.keyLines += bytes.Count(buf.Bytes(), []byte{'\n'})
	}
	return buf.Bytes(), rewrite, covered
}

// writeKeys appends lines to the keys file and fsyncs it, or replaces the
// file with them (rewrite).
func (q *queue) writeKeys(lines []byte, rewrite bool) error {
	if rewrite {
		return atomicfile.Replace(q.dir, format.KeysFile, lines)
	}
	path := filepath.Join(q.dir, format.KeysFile)
	f, err := atomicfile.OpenAppend(q.dir, format.KeysFile)
	if err != nil {
		return err
	}
	_, err = f.Write(lines)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return nil
}
