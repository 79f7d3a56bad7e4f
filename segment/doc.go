// Package segment stores a queue's messages in rotating, checksummed,
// append-only segments built on github.com/tidwall/wal.
//
// # Files
//
// A queue directory holds one directory per segment, named by the id of its
// first record as 20 zero-padded decimal digits:
//
//	<queue>/00000000000000000001/00000000000000000001   records (tidwall/wal file)
//	<queue>/00000000000000000001/meta                   summary, written when sealed
//	<queue>/00000000000000000001-0000004096.broken      bytes cut off a torn tail
//	<queue>/00000000000000000001.deleting               a segment being deleted
//	<queue>/00000000000000000001.creating               a segment being created
//
// Every segment directory is one tidwall/wal log whose SegmentSize is so large
// that tidwall never rotates inside it: this package rotates, by creating a new
// directory, so that records never cross segments and reclaiming space is the
// deletion of whole directories (tidwall's TruncateFront copies a file and is
// kept off every path). tidwall/wal opens and counts a segment whenever it is
// reopened for appending; batches are appended in tidwall's binary format by
// Writer itself, with one write(2) from a reused buffer, because tidwall's
// own writer holds the whole tail file in a growing slice (see Writer).
//
// # Record format
//
// Inside the file, tidwall/wal frames each entry as uvarint(len) followed by
// len bytes. Each entry is one record:
//
//	offset  size  field
//	0       4     CRC32C (Castagnoli) of bytes 4..end
//	4       1     format version (1) in the low 5 bits; bit 7 (0x80) set =
//	              "more": an atomic batch continues after this record;
//	              bit 6 (0x40) set = "key": an idempotency key follows
//	              the header (1 byte length k, 1..128, then k bytes),
//	              before the payload; bit 5 (0x20) set = "delay": the
//	              visible-at time (unix ms, int64 little endian, not 0)
//	              follows the header, before the key
//	5       8     id, uint64 little endian
//	13      8     enqueue time, unix milliseconds, int64 little endian
//	21      8     expiry, unix milliseconds, int64 little endian; 0 = never
//	29      n     payload
//
// The n-th entry of a segment (n from 1) holds id base+n-1; a record whose
// stored id disagrees is corrupt.
//
// The records of a batch POST are one atomic batch: all but the last have
// the "more" bit. A segment whose good records end with the bit set ends
// in the middle of a batch (a crash cut its write short): Scan reports the
// batch's first record as the start of the torn tail, and Repair cuts the
// whole partial batch. Records written before the bit existed have it
// clear; a binary older than the bit reads records with it as corrupt.
//
// The newest segment's file is zero-filled ahead of its records (Writer),
// so that an fdatasync does not have to update the inode. No entry has
// length 0, so a zero byte where an entry should start, followed by zeros
// only to the end of the file, is the end of the records: readers stop
// there and Repair cuts it without keeping a copy. Sealed segments, and
// the newest one after a clean close, end at their last record. tidwall/wal has no checksum of its own, so
// the CRC is the only thing standing between a flipped bit and a client.
//
// # Guarantees
//
//   - A record is served only if its frame, CRC and id are intact.
//   - Scan tells a torn tail (everything after the last intact record of the
//     newest segment: a half-written frame, 0xFF-filled pages, a final
//     record with a bad CRC, other bytes followed by zeros) from
//     zero-filled space (only zeros after the last intact record) and from
//     corruption in the middle (a bad
//     record followed by an intact one). Repair cuts a torn tail, keeps the
//     cut bytes (at most MaxKeptTail, streamed) in a .broken file, and
//     fsyncs the file and its directory. Scan and Repair use bounded memory
//     whatever the file holds: holes are skipped (SEEK_DATA), a zero run is
//     one bad frame, and the bad frames listed are capped.
//     Corruption in the middle is reported with segment and offset and the
//     bad record is skipped by readers, never served.
//   - A failed write or fsync leaves the Writer broken; Recover truncates the
//     file back to the last successful batch before anything else is written.
//
// # Example
//
//	w, err := segment.Create(queueDir, 1)
//	recs := []segment.Record{{ID: 1, EnqueuedAt: nowMs, Payload: []byte("hello")}}
//	err = w.Append(recs) // one write syscall for the whole batch
//	err = w.Sync()       // fsync, timed by the caller
//	r, err := segment.OpenReader(queueDir, 1)
//	rec, err := r.Next() // rec.ID == 1
package segment
