package engine

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Starting: opening every queue of the data directory at Open, a few at a
// time, and waking dormant queues whose records expire.

// startWorkers is how many queues Open opens at a time.
const startWorkers = 4

// startOpen is how many idle queues a start leaves open (retiring once
// idle like any other), so that a node with few queues serves their first
// requests after a restart without reopening them.
const startOpen = 64

// openAll recovers the queues of the data directory at start, startWorkers
// at a time. Each is opened; past the first startOpen, one that holds
// nothing in memory (no held message) is closed again at once and stays
// dormant, so that the files open at a time stay few whatever the number
// of queues.
func (e *Engine) openAll(names []string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(startWorkers, len(names)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(names) {
					return
				}
				e.openAtStart(names[i])
			}
		}()
	}
	wg.Wait()
}

// openAtStart recovers one queue at start.
func (e *Engine) openAtStart(name string) {
	q, err := openQueue(e, name)
	if err != nil {
		// One bad queue must not keep the others down, nor make the
		// process exit and restart in a loop: it stays unavailable,
		// with its files untouched, until an operator looks.
		e.opts.Logger.Error("queue could not be recovered; it is unavailable until fixed", "queue", name, "err", err)
		e.mu.Lock()
		e.failed[name] = err
		e.mu.Unlock()
		return
	}
	e.mu.Lock()
	keepOpen := len(e.queues) < startOpen
	e.mu.Unlock()
	if e.opts.IdleClose > 0 && len(q.held) == 0 && !keepOpen {
		d := q.dormant()
		q.closeFiles()
		d.stats.DiskBytes = q.segBytes // as closed
		e.mu.Lock()
		e.dormant[name] = d
		e.diskBytes.Add(q.segBytes)
		e.mu.Unlock()
		return
	}
	e.mu.Lock()
	e.queues[name] = q
	e.diskBytes.Add(q.segBytes)
	e.mu.Unlock()
	go q.run()
}

// wakeDormant reopens, every CompactInterval, the dormant queues whose
// compaction has work (dormantQueue.wakeAt), a few at a time; each retires
// again once idle.
func (e *Engine) wakeDormant() {
	defer e.janitor.Done()
	t := time.NewTicker(e.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-e.closing:
			return
		case <-t.C:
		}
		now := e.opts.Now().UnixMilli()
		var due []string
		e.mu.RLock()
		for name, d := range e.dormant {
			if d.wakeAt != 0 && d.wakeAt <= now {
				due = append(due, name)
				if len(due) == 64 {
					break
				}
			}
		}
		e.mu.RUnlock()
		for _, name := range due {
			if _, err := e.load(name, false); err != nil && !errors.Is(err, ErrClosed) {
				e.opts.Logger.ErrorContext(RepeatingLog, "could not reopen a dormant queue for compaction", "queue", name, "err", err)
			}
		}
	}
}
