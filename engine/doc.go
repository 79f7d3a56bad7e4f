// Package engine is mqueue's storage engine: named FIFO queues, each a
// directory of segments (package segment), with group commit, a persisted
// read cursor, leases, TTL expiry and compaction. It knows nothing of HTTP.
//
// Each queue has one commit loop (commit.go) that owns its files.
// Producers append to an in-memory batch and wait; the loop writes the
// whole batch with one write, fsyncs it as the mode says, and wakes every
// producer of the batch by closing one channel. Consumers move the read
// cursor in memory and wait for the loop to write it the same way, so a
// dequeue is answered only once its cursor move is as durable as the mode
// promises.
//
// # A queue directory
//
//	file     format, and the package that owns its codec     written by
//	NNNN/    segments: records, meta, .broken (segment)       the commit loop; the compactor deletes
//	cursor   two slots [seq][readID][crc] (format)            the commit loop, per cursor batch
//	hwm      [hwm][crc] (format)                              the commit loop, ahead of its ids
//	leases   records [crc][kind][id][count] (format)          the commit loop, before a cursor move
//	keys     JSON Lines of carried keys (format)              the compactor, before a keyed segment goes
//	meta     an opaque blob of the API (the SQS attributes)   SetQueueMeta (meta.go)
//
// The data directory holds one such directory per queue, .lock (flock,
// engine.go) and .deleted-* tombstones of queues being deleted (admin.go).
//
// # Files of this package
//
//	engine.go     Engine: Open, the public enqueue/dequeue/lease calls, Stats, Close
//	types.go      errors, Options, the public types
//	queue.go      queue: its fields by owner, the pending batch, enqueue, admission
//	commit.go     the commit loop: batches, cursor writes, rollback on failure
//	segfiles.go   segment files as the loop writes them: room, rotation, fsync, close
//	deliver.go    the read path: visible-again, memory tail, then disk
//	tail.go       the memory tail of recent records
//	lease.go      lease state transitions: pop, deliver, ack, nack, extend, expiry
//	held.go       held messages and their heaps; bodies read back from disk
//	leaselog.go   the lease log: format, writes, snapshot, load at open
//	dlq.go        the dead-letter mover
//	receipt.go    receipts, signed with a key of this run
//	dedup.go      idempotency keys: the index, the keys file
//	internalkey.go server-internal keys for the engine's own moves
//	cursor.go     the cursor file; writeFileAtomic
//	hwm.go        the hwm file and its reservation ahead of the ids
//	open.go       recovery of a queue directory
//	lifecycle.go  opening on use, retiring idle queues to dormant, shedding
//	start.go      opening every queue at Open; waking dormant queues
//	wait.go       long polls; the path of an ack to its queue
//	compactor.go  deleting consumed and expired segments, the keys file
//	memory.go     the memory budget shared by tails and held bodies
//	admin.go      ListQueues, DeleteQueue, Purge
//	peek.go       Peek
//	redrive.go    Redrive
//	meta.go       CreateQueue, QueueMeta, SetQueueMeta
//
// # Owners and lock order
//
// Engine.mu guards the maps of queues (open, dormant, opening, failed); it
// is never held across I/O. A queue's commitState is the commit loop's
// alone, without a lock (openQueue fills it before the loop starts). Its
// mu guards the rest: the pending batch, the cursor position in memory,
// the segment list, the held messages and the key index; tmu guards the
// memory tail. Lock order: Engine.mu, then queue.mu, then queue.tmu; the
// metaCache lock and the memory budget's atomics are taken alone.
package engine
