package engine

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// Queue administration: list, delete, purge, peek and redrive.
//
// Delete stops the queue's commit loop (its final commit and fsyncs run as
// at Close), renames its directory to a tombstone and fsyncs the data
// directory, and only then removes the files: a crash leaves the whole
// queue or, once the rename is durable, a tombstone that the next Open
// removes. Purge moves the read cursor past everything committed and
// records every held message done in the lease log, in one cursor write.
// Peek reads through its own segment readers, never the queue's. Redrive
// leases messages of a .dlq, enqueues them to the source queue under
// server-internal idempotency keys, then acks them: a crash between the two
// leaves the leases to end at restart, and the next redrive's enqueue is
// deduplicated by the key (within DedupWindow).

// tombstonePrefix starts the name a deleted queue's directory takes until
// its files are gone. It starts with a dot, so no valid queue name has it
// (Open skips it and removes it), and it is not lockName.
const tombstonePrefix = ".deleted-"

// isTombstone reports whether a data directory entry is a deleted queue's.
func isTombstone(name string) bool {
	return strings.HasPrefix(name, tombstonePrefix) && name != lockName
}

// removeTombstones removes what deletions that a crash interrupted left in
// the data directory. A failure is logged, not fatal: the tombstone is
// never read as a queue and the next Open tries again.
func removeTombstones(dir string, ents []os.DirEntry, log *slog.Logger) {
	removed := false
	for _, ent := range ents {
		if !ent.IsDir() || !isTombstone(ent.Name()) {
			continue
		}
		path := filepath.Join(dir, ent.Name())
		if err := os.RemoveAll(path); err != nil {
			log.Error("could not remove a deleted queue's files; trying again at the next start", "path", path, "err", err)
			continue
		}
		removed = true
		log.Info("removed the files of a queue deleted before a crash", "path", path)
	}
	if removed {
		if err := atomicfile.SyncDir(dir); err != nil {
			log.Warn("fsync data dir after removing deleted queues", "err", err)
		}
	}
}

// QueueInfo is one queue as ListQueues lists it. Its counts are those of
// QueueStats.
type QueueInfo struct {
	Name     string `json:"name"`
	Depth    int64  `json:"depth"`
	InFlight int64  `json:"in_flight"`
	Delayed  int64  `json:"delayed"`
	// Unavailable is set for a queue whose files could not be recovered
	// at start (its counts are 0); DeleteQueue removes it.
	Unavailable bool `json:"unavailable,omitempty"`
}

// ListQueues returns up to limit queues (at least 1) whose names sort after
// after ("" for the first page), in name order, and whether more follow.
// Safe for concurrent use.
func (e *Engine) ListQueues(after string, limit int) (page []QueueInfo, more bool) {
	limit = max(limit, 1)
	e.mu.RLock()
	names := make([]string, 0, len(e.queues)+len(e.dormant)+len(e.failed))
	add := func(name string) {
		if name > after {
			names = append(names, name)
		}
	}
	for name := range e.queues {
		add(name)
	}
	for name := range e.dormant {
		add(name)
	}
	for name, oc := range e.opening {
		if oc.prev != nil { // a dormant queue being reopened
			add(name)
		}
	}
	for name := range e.failed {
		add(name)
	}
	slices.Sort(names)
	if len(names) > limit {
		names, more = names[:limit], true
	}
	qs := make([]*queue, len(names))
	page = make([]QueueInfo, len(names))
	for i, name := range names {
		page[i].Name = name
		qs[i] = e.queues[name]
		switch st := e.dormantStatsLocked(name); {
		case qs[i] != nil:
		case st != nil:
			page[i].Depth, page[i].InFlight, page[i].Delayed = st.Depth, st.InFlight, st.Delayed
		default:
			page[i].Unavailable = true
		}
	}
	e.mu.RUnlock()
	for i, q := range qs {
		if q != nil {
			st := q.stats()
			page[i].Depth, page[i].InFlight, page[i].Delayed = st.Depth, st.InFlight, st.Delayed
		}
	}
	return page, more
}

// DeleteQueue deletes a queue and its files. The queue stops first:
// requests already accepted are answered (an enqueue that got its id is
// stored, then deleted with the rest), later ones wait for the deletion and
// then see an unknown queue (an enqueue creates a fresh one, whose ids
// start at 1), and long polls return empty. It returns once the deletion
// is durable. A dormant queue, and one that could not be recovered at
// start, is deleted too. ErrQueueNotFound for an unknown queue; ErrClosed
// when the engine closes first (the queue then stays whole). Safe for
// concurrent use.
func (e *Engine) DeleteQueue(name string) error {
	if !ValidQueueName(name) {
		return fmt.Errorf("%w: %q", ErrInvalidQueueName, name)
	}
	defer e.metas.drop(name) // once the deletion is done (meta.go)
	// A placeholder in e.opening holds the name for the whole deletion, as
	// an opening does (lifecycle.go): nothing reopens or creates the
	// directory meanwhile; callers wait on it and then look again.
	var q *queue
	var d *dormantQueue
	var ferr error
	oc := &openCall{done: make(chan struct{})}
	for {
		e.mu.Lock()
		select {
		case <-e.closing:
			e.mu.Unlock()
			return ErrClosed
		default:
		}
		if other := e.opening[name]; other != nil {
			e.mu.Unlock()
			<-other.done
			continue
		}
		q, d, ferr = e.queues[name], e.dormant[name], e.failed[name]
		if q == nil && d == nil && ferr == nil {
			e.mu.Unlock()
			return fmt.Errorf("%w: %s", ErrQueueNotFound, name)
		}
		e.opening[name] = oc
		delete(e.dormant, name)
		e.mu.Unlock()
		break
	}
	if d != nil {
		e.diskBytes.Add(-d.stats.DiskBytes)
		close(d.woke) // its long polls look again, wait on oc, then end
	}
	if q != nil {
		q.deleted.Store(true)
		if !e.retire(q, false) {
			// Already closing: an idle retirement (it leaves a dormant
			// queue, taken below) or the engine's Close.
			<-q.stopped
		}
	}
	e.mu.Lock()
	if d := e.dormant[name]; d != nil { // an idle retirement that raced us
		delete(e.dormant, name)
		e.diskBytes.Add(-d.stats.DiskBytes)
		close(d.woke)
	}
	e.mu.Unlock()
	tomb, err := e.tombstone(name)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			e.dropPlaceholder(name, oc, ErrClosed)
			return err // stopped and closed whole: the queue stays
		}
		if ferr == nil {
			// Not renamed: the queue is whole; open it again (open drops
			// the placeholder and wakes those waiting on it).
			if _, oerr := e.open(name, oc); oerr != nil {
				e.opts.Logger.Error("queue not deleted and not reopened; it is served again after a restart", "queue", name, "err", oerr)
			}
		} else {
			e.dropPlaceholder(name, oc, nil)
		}
		return classify(fmt.Errorf("delete queue %s: %w", name, err))
	}
	e.mu.Lock()
	delete(e.failed, name)
	e.mu.Unlock()
	e.dropPlaceholder(name, oc, nil)
	if err := os.RemoveAll(tomb); err != nil {
		// Durably deleted already; the next Open finishes the removal.
		e.opts.Logger.Error("deleted queue's files not all removed; the next start removes them", "queue", name, "path", tomb, "err", err)
	}
	e.opts.Logger.Info("queue deleted", "queue", name)
	return nil
}

// dropPlaceholder ends DeleteQueue's hold on a name and wakes those that
// wait on it with err.
func (e *Engine) dropPlaceholder(name string, oc *openCall, err error) {
	e.mu.Lock()
	if e.opening[name] == oc {
		delete(e.opening, name)
	}
	e.mu.Unlock()
	oc.err = err
	close(oc.done)
}

// tombstone renames the queue's directory to a tombstone and fsyncs the
// data directory: from then on the deletion survives a crash.
func (e *Engine) tombstone(name string) (string, error) {
	dir := filepath.Join(e.opts.Dir, name)
	tomb := filepath.Join(e.opts.Dir, tombstonePrefix+name+"-"+strconv.FormatInt(time.Now().UnixNano(), 10))
	// Under e.mu, so that Close (which takes it to begin) cannot release
	// the directory lock before the rename and let a new process open the
	// queue that this one then renames away.
	e.mu.RLock()
	select {
	case <-e.closing:
		e.mu.RUnlock()
		return "", ErrClosed
	default:
	}
	err := os.Rename(dir, tomb)
	e.mu.RUnlock()
	if err != nil {
		return "", fmt.Errorf("rename %s to a tombstone: %w", dir, err)
	}
	if err := atomicfile.SyncDir(e.opts.Dir); err != nil {
		// The rename may or may not reach the disk; either way the queue
		// is whole or gone. Go on: the files are the tombstone's now.
		e.opts.Logger.Warn("fsync data dir after renaming a deleted queue", "err", err)
	}
	return tomb, nil
}

// Purge removes every current message of a queue for good: the unconsumed
// ones (delayed too) and the held ones (leased, delayed by a nack, visible
// again). It returns how many, once the cursor move and the lease log's
// done records are written (and fsynced as the mode says). Messages
// committed after it are delivered normally; ids are never reused;
// compaction then deletes the segments. The count includes expired
// messages that no read had skipped yet. ErrQueueNotFound for an unknown
// queue. Safe for concurrent use.
func (e *Engine) Purge(name string) (int64, error) {
	for {
		q, err := e.adminQueue(name)
		if err != nil {
			return 0, err
		}
		n, err := q.purge()
		if err != errRetired {
			return n, err
		}
		<-q.stopped // retired meanwhile: look again, which reopens it
	}
}

// adminQueue returns an existing queue, or ErrQueueNotFound.
func (e *Engine) adminQueue(name string) (*queue, error) {
	q, err := e.queue(name, false)
	if err != nil {
		return nil, err
	}
	if q == nil {
		return nil, fmt.Errorf("%w: %s", ErrQueueNotFound, name)
	}
	return q, nil
}

func (q *queue) purge() (int64, error) {
	q.mu.Lock()
	if q.closing {
		err := q.closedErr()
		q.mu.Unlock()
		return 0, err
	}
	n := q.depth
	q.readID, q.depth = q.committed+1, 0
	q.tmu.Lock()
	q.tail.dropBefore(q.readID)
	q.tmu.Unlock()
	cb := q.joinLocked()
	for _, m := range q.held {
		if m.moving {
			continue // deadLetter acks it once it is in the DLQ
		}
		hidden, seq := m.in == &q.hidden, m.seq
		q.unheapLocked(m)
		q.delHeldLocked(m)
		cb.log = format.AppendLeaseRecord(cb.log, format.LeaseDone, m.rec.ID, 0)
		cb.undo = append(cb.undo, func() {
			q.putHeldLocked(m)
			if !hidden {
				heap.Push(&q.visible, m)
				return
			}
			if m.seq = seq; seq != 0 {
				q.leased++
			}
			heap.Push(&q.hidden, m)
			q.dueLocked()
		})
		n++
	}
	q.dueLocked()
	// On failure the commit loop rewinds the cursor to the persisted
	// position and runs the undos: nothing is purged.
	if err := q.persistReadLocked(); err != nil {
		return 0, err
	}
	q.purged.Add(uint64(n))
	q.log.Info("queue purged", "messages", n)
	return n, nil
}

// wasDeleted reports whether DeleteQueue took q (waitFor ends its long polls).
func (q *queue) wasDeleted() bool { return q.deleted.Load() }
