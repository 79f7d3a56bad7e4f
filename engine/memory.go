package engine

import "sync/atomic"

// DefaultMaxMemoryBytes is the default of Options.MaxMemoryBytes (and of
// --max-memory-bytes): 256 MiB for the memory tails and held bodies of all
// queues together.
const DefaultMaxMemoryBytes = 256 << 20

// tailReleaseSlack is how many bytes of consumed records a memory tail may
// still count against the budget before it gives them back: consumers drop
// records one at a time, and one shared atomic write per dequeue across
// every queue and core is what this saves. An emptied tail, a push, a reset
// and a close give back everything at once.
const tailReleaseSlack = 64 << 10

// memBudget is the process-wide memory budget (Options.MaxMemoryBytes)
// that every queue's memory tail (tail.go) and held bodies (held.go) take
// from, on top of their own per-queue caps. What does not fit is not kept
// in memory and is read from its segment instead. Safe for concurrent use:
// bytes are taken with compare-and-swap, so used never passes max, not even
// for a moment, and no lock is shared between queues. A nil *memBudget has
// no limit and counts nothing.
type memBudget struct {
	max  int64
	used atomic.Int64 // tails and held bodies together
	held atomic.Int64 // the held bodies' part of used
}

// take reserves n > 0 bytes if used stays within max, and reports whether
// it did.
func (b *memBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		used := b.used.Load()
		if used+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// room returns the bytes that can be taken now (a hint: others take too).
func (b *memBudget) room() int64 {
	if b == nil {
		return 1<<63 - 1
	}
	return b.max - b.used.Load()
}

// release gives back n bytes taken before.
func (b *memBudget) release(n int64) {
	if b != nil && n != 0 {
		b.used.Add(-n)
	}
}

// takeHeld is take for a held body, also counted in held.
func (b *memBudget) takeHeld(n int64) bool {
	if !b.take(n) {
		return false
	}
	b.held.Add(n)
	return true
}

// releaseHeld gives back n bytes of held bodies.
func (b *memBudget) releaseHeld(n int64) {
	if n != 0 {
		b.held.Add(-n)
		b.release(n)
	}
}

// MemoryBytes returns what the memory budget (Options.MaxMemoryBytes)
// counts now: the records of every queue's memory tail (payloads plus 64
// bytes each) and the held bodies kept in memory. Safe for concurrent use.
func (e *Engine) MemoryBytes() (tail, held int64) {
	held = e.mem.held.Load()
	// Two loads: a gauge may see one side of a concurrent change.
	return max(0, e.mem.used.Load()-held), held
}

// releaseMemory gives the queue's tail and held bodies back to the budget
// when it closes. Held messages keep their headers and read their bodies
// back from their segments if anything still asks (a DLQ move racing the
// close).
func (q *queue) releaseMemory() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.held {
		if !m.onDisk {
			m.rec.Payload, m.onDisk = nil, true
		}
	}
	q.e.mem.releaseHeld(q.heldBytes)
	q.heldBytes = 0
	q.tmu.Lock()
	q.tail.reset()
	q.tmu.Unlock()
}
