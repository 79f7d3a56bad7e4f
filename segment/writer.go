package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/mqueue/mqueue/segment/atomicfile"
	"github.com/tidwall/wal"
)

// Writer appends records to the newest segment of a queue. It is not safe
// for concurrent use: one goroutine (the engine's commit loop) owns it.
//
// The file is a tidwall/wal log (see the package doc): tidwall/wal creates
// nothing the Writer could not, but it opens and counts every segment the
// Writer reopens (OpenWriter, Recover), as a second parser of the framing.
// The append itself does not go through tidwall's Log: that keeps the whole
// tail file in one growing []byte and copies every batch into it; its
// regrowth was 12 % of the server's CPU under load (docs/PERFORMANCE.md, E3). Append
// encodes a batch's frames, in tidwall's binary format, into one reused
// buffer and writes it with one pwrite(2).
//
// The file is zero-filled up to preallocChunk bytes ahead of the records, so that a batch overwrites blocks that already exist and Sync is
// an fdatasync that writes the data and flushes, with no inode update for a
// new file size (on ext4 without a journal that is one I/O in place of two,
// and ~40 % less CPU per sync: docs/PERFORMANCE.md). Readers stop at the
// zero-filled space (Reader.Next); Seal and Close cut it off, and after a
// crash Repair does.
//
// A Writer never fsyncs on its own; the caller calls Sync as its durability
// mode says. After a failed Append or Sync the Writer is broken (what reached
// the file is unknown) and refuses to write until Recover has cut the file
// back to the end of the last acknowledged Append.
type Writer struct {
	queueDir   string
	sum        Summary
	f          File   // the records file, O_RDWR (file.go); nil once sealed or closed
	alloc      int64  // size of the file: the records, then zeros
	noPrealloc bool   // zero-filling failed once (a full disk): append only
	allocLimit int64  // zero-fill no further than this file size (negative: no limit)
	buf        []byte // the frames of the batch being written, reused
	broken     error
}

// preallocChunk is how far at a time the records file is zero-filled
// ahead of its records.
const preallocChunk = 1 << 20

var zeroChunk = make([]byte, preallocChunk)

// walOptions are the options segments are opened with by tidwall/wal.
func walOptions() *wal.Options {
	return &wal.Options{
		NoSync:           true,               // never written through tidwall
		SegmentSize:      math.MaxInt64 >> 1, // this package rotates, never tidwall
		SegmentCacheSize: 1,
		LogFormat:        wal.Binary,
		NoCopy:           true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
}

// countEntries opens the segment with tidwall/wal and checks that it holds
// exactly want entries. It reads the whole file; it runs when a segment is
// reopened for appending, never per batch.
func countEntries(queueDir string, base, want uint64) error {
	log, err := wal.Open(Dir(queueDir, base), walOptions())
	if err != nil {
		return fmt.Errorf("tidwall/wal open: %w", err)
	}
	last, err := log.LastIndex()
	if cerr := log.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("tidwall/wal: %w", err)
	}
	if last != want {
		return fmt.Errorf("tidwall/wal counts %d entries, scan %d", last, want)
	}
	return nil
}

// openAppend opens the records file for writing at its end, which must be
// at size (the file holds only records).
func openAppend(queueDir string, base uint64, size int64) (*Writer, error) {
	f, err := openFile(DataPath(queueDir, base))
	if err != nil {
		return nil, err
	}
	return &Writer{queueDir: queueDir, f: f, alloc: size, allocLimit: -1}, nil
}

// extend zero-fills the file past end: as far again as end (at least
// 64 KiB, so small segments stay small), at most preallocChunk. A failure
// (a full disk, say) is not the batch's: the zeros written are cut off
// again, and this segment is written without preallocation from then on.
func (w *Writer) extend(end int64) {
	if w.noPrealloc {
		return
	}
	target := end + min(max(end, 64<<10), preallocChunk)
	target = (target + 4095) &^ 4095
	if w.allocLimit >= 0 {
		target = min(target, w.allocLimit)
	}
	from := w.alloc
	for w.alloc < target {
		n := min(target-w.alloc, int64(len(zeroChunk)))
		if _, err := w.f.WriteAt(zeroChunk[:n], w.alloc); err != nil {
			w.noPrealloc = true
			w.alloc = from
			if terr := w.f.Truncate(from); terr != nil {
				// The zeros stay; Reader and Repair know them as the end.
				w.alloc = target
			}
			return
		}
		w.alloc += n
	}
}

// trim cuts the zero-filled space off the file and fsyncs it, so that it
// ends at its last record.
func (w *Writer) trim() error {
	if w.alloc > w.sum.Bytes {
		if err := w.f.Truncate(w.sum.Bytes); err != nil {
			return fmt.Errorf("segment %020d: cut the preallocated space at %d: %w", w.sum.Base, w.sum.Bytes, err)
		}
		w.alloc = w.sum.Bytes
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("fsync segment %020d: %w", w.sum.Base, err)
	}
	return nil
}

// Create makes a new, empty segment whose first record will have id base.
// The directory and its empty records file are made under a temporary name,
// fsynced, and renamed into place (then the queue directory is fsynced), so
// a crash never leaves a segment directory without its file.
func Create(queueDir string, base uint64) (*Writer, error) {
	dir := Dir(queueDir, base)
	tmp := dir + creatingSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := os.Mkdir(tmp, 0o750); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := atomicfile.WriteSync(filepath.Join(tmp, walFile), nil); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := atomicfile.SyncDir(queueDir); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	w, err := openAppend(queueDir, base, 0)
	if err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	w.sum = Summary{Base: base}
	return w, nil
}

// OpenWriter reopens an existing segment for appending. res is its scan, as
// returned by Repair: the file must end at its last good record, and
// tidwall/wal must count as many entries as the scan did.
func OpenWriter(queueDir string, res *ScanResult) (*Writer, error) {
	if res.Torn() {
		return nil, fmt.Errorf("open segment %020d for append: torn tail at %d not repaired", res.Base, res.ValidSize)
	}
	if err := countEntries(queueDir, res.Base, res.Records); err != nil {
		return nil, fmt.Errorf("open segment %020d for append: %w", res.Base, err)
	}
	w, err := openAppend(queueDir, res.Base, res.ValidSize)
	if err != nil {
		return nil, fmt.Errorf("open segment %020d for append: %w", res.Base, err)
	}
	w.sum = res.Summary
	return w, nil
}

// FileSize returns the size of the records file: the records, then the
// zero-filled space ahead of them. It is what the segment takes on disk
// (the caller's disk quota counts it), and no more than Summary().Bytes
// once the file is sealed or closed.
func (w *Writer) FileSize() int64 { return w.alloc }

// SetAllocLimit makes later Appends zero-fill the file no further than
// limit bytes (negative: no limit, the default), so that the space taken
// ahead of the records stays within the caller's disk quota. Records are
// written whatever the limit: a batch that passes it grows the file to its
// end.
func (w *Writer) SetAllocLimit(limit int64) { w.allocLimit = limit }

// Summary returns the summary of what has been appended successfully.
func (w *Writer) Summary() Summary { return w.sum }

// NextID returns the id the next appended record must have.
func (w *Writer) NextID() uint64 { return w.sum.Base + w.sum.Records }

// Broken returns the error that broke the Writer, nil if it is sound.
func (w *Writer) Broken() error { return w.broken }

// Append writes recs, whose ids must run on from NextID, with one write.
// On error nothing of recs counts as written and the Writer is broken.
func (w *Writer) Append(recs []Record) error {
	if w.broken != nil {
		return fmt.Errorf("append to segment %020d: %w", w.sum.Base, ErrBroken)
	}
	if len(recs) == 0 {
		return nil
	}
	buf := w.buf[:0]
	next := w.NextID()
	for i := range recs {
		if recs[i].ID != next+uint64(i) {
			return fmt.Errorf("append to segment %020d: record id %d, want %d", w.sum.Base, recs[i].ID, next+uint64(i))
		}
		if len(recs[i].Key) > MaxKeyLen {
			// The format stores the key's length in one byte and reads
			// back at most MaxKeyLen: a longer one would be stored as a
			// record that reads back corrupt, losing the message.
			return fmt.Errorf("append to segment %020d: record id %d: %w: %d bytes, at most %d", w.sum.Base, recs[i].ID, ErrKeyTooLong, len(recs[i].Key), MaxKeyLen)
		}
		buf = binary.AppendUvarint(buf, uint64(recs[i].EncodedSize()))
		buf = AppendRecord(buf, &recs[i])
	}
	end := w.sum.Bytes + int64(len(buf))
	if end > w.alloc {
		w.extend(end)
	}
	if _, err := w.f.WriteAt(buf, w.sum.Bytes); err != nil {
		w.broken = err
		return fmt.Errorf("append %d records to segment %020d at %d: %w", len(recs), w.sum.Base, w.sum.Bytes, err)
	}
	for i := range recs {
		w.sum.Add(&recs[i])
	}
	w.sum.Records += uint64(len(recs))
	w.sum.Bytes = end
	w.alloc = max(w.alloc, end)
	if cap(buf) > 8<<20 {
		buf = nil // do not pin one huge batch's buffer forever
	}
	w.buf = buf
	return nil
}

// Sync makes what was appended durable with fdatasync (the blocks are
// preallocated, so no inode update is needed for it; a batch that grew the
// file is covered too, since fdatasync writes a changed size). On error the
// Writer is broken: after a failed sync the kernel may have dropped the
// dirty pages, so what was written since the last good Sync cannot be
// trusted.
func (w *Writer) Sync() error {
	if w.broken != nil {
		return fmt.Errorf("fsync segment %020d: %w", w.sum.Base, ErrBroken)
	}
	if err := w.f.Datasync(); err != nil {
		w.broken = err
		return fmt.Errorf("fdatasync segment %020d: %w", w.sum.Base, err)
	}
	return nil
}

// Recover mends a broken Writer: it cuts the file back to to, the summary
// as of the last batch the caller acknowledged (an earlier value of
// Summary), fsyncs it, checks it with tidwall/wal, and reopens it. After a
// failed Append that is the current Summary; after a failed Sync in
// fsync-always mode it is the summary before the unsynced batch, which is
// then dropped. It is a no-op on a sound Writer. On error the Writer stays
// broken and Recover may be retried.
func (w *Writer) Recover(to Summary) error {
	if w.broken == nil {
		return nil
	}
	if to.Base != w.sum.Base || to.Bytes > w.sum.Bytes {
		return fmt.Errorf("recover segment %020d: summary of segment %020d at %d does not precede %d", w.sum.Base, to.Base, to.Bytes, w.sum.Bytes)
	}
	w.sum = to
	if w.f != nil {
		_ = w.f.Close() // its pending state is what we are discarding
		w.f = nil
	}
	if err := atomicfile.Truncate(DataPath(w.queueDir, w.sum.Base), w.sum.Bytes); err != nil {
		return fmt.Errorf("recover segment %020d: truncate to %d: %w", w.sum.Base, w.sum.Bytes, err)
	}
	if err := countEntries(w.queueDir, w.sum.Base, w.sum.Records); err != nil {
		return fmt.Errorf("recover segment %020d: %w", w.sum.Base, err)
	}
	nw, err := openAppend(w.queueDir, w.sum.Base, w.sum.Bytes)
	if err != nil {
		return fmt.Errorf("recover segment %020d: reopen: %w", w.sum.Base, err)
	}
	w.f, w.alloc, w.broken = nw.f, nw.alloc, nil
	return nil
}

// Seal fsyncs and closes the segment, which is never appended to again.
// The caller should then store its summary with WriteMeta so that it reopens
// without a scan; that needs disk space, and a segment without meta is only
// slower to open.
func (w *Writer) Seal() (Summary, error) {
	if w.broken != nil {
		return w.sum, fmt.Errorf("seal segment %020d: %w", w.sum.Base, ErrBroken)
	}
	if err := w.trim(); err != nil {
		w.broken = err
		return w.sum, fmt.Errorf("seal: %w", err)
	}
	if err := w.f.Close(); err != nil {
		w.broken = err
		return w.sum, fmt.Errorf("seal segment %020d: %w", w.sum.Base, err)
	}
	w.f = nil
	w.broken = errSealed
	return w.sum, nil
}

var errSealed = errors.New("segment: sealed")

// Close cuts the zero-filled space off, fsyncs (unless broken) and closes
// the segment without sealing it.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	var err error
	if w.broken == nil {
		err = w.trim()
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close segment %020d: %w", w.sum.Base, cerr)
	}
	w.f = nil
	return err
}
