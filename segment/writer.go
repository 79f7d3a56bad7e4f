package segment

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/tidwall/wal"
)

// Writer appends records to the newest segment of a queue. It is not safe
// for concurrent use: one goroutine (the engine's commit loop) owns it.
//
// Every Append is one tidwall WriteBatch, so one write syscall per batch. A
// Writer never fsyncs on its own; the caller calls Sync as its durability
// mode says. After a failed Append or Sync the Writer is broken (tidwall's
// in-memory state no longer matches the file) and refuses to write until
// Recover has cut the file back to the end of the last successful Append.
type Writer struct {
	queueDir string
	sum      Summary
	log      *wal.Log
	batch    wal.Batch
	scratch  []byte
	broken   error
}

func walOptions() *wal.Options {
	return &wal.Options{
		NoSync:           true,               // the engine decides when to fsync
		SegmentSize:      math.MaxInt64 >> 1, // this package rotates, never tidwall
		SegmentCacheSize: 1,
		LogFormat:        wal.Binary,
		NoCopy:           true,
		DirPerms:         0o750,
		FilePerms:        0o640,
	}
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
	if err := writeFileSync(filepath.Join(tmp, walFile), nil); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := SyncDir(tmp); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	if err := SyncDir(queueDir); err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	log, err := wal.Open(dir, walOptions())
	if err != nil {
		return nil, fmt.Errorf("create segment %020d: %w", base, err)
	}
	return &Writer{queueDir: queueDir, sum: Summary{Base: base}, log: log}, nil
}

// OpenWriter reopens an existing segment for appending. res is its scan, as
// returned by Repair: the file must end at its last good record.
func OpenWriter(queueDir string, res *ScanResult) (*Writer, error) {
	if res.Torn() {
		return nil, fmt.Errorf("open segment %020d for append: torn tail at %d not repaired", res.Base, res.ValidSize)
	}
	log, err := wal.Open(Dir(queueDir, res.Base), walOptions())
	if err != nil {
		return nil, fmt.Errorf("open segment %020d for append: %w", res.Base, err)
	}
	last, err := log.LastIndex()
	if err == nil && last != res.Records {
		err = fmt.Errorf("tidwall/wal counts %d entries, scan %d", last, res.Records)
	}
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("open segment %020d for append: %w", res.Base, err)
	}
	return &Writer{queueDir: queueDir, sum: res.Summary, log: log}, nil
}

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
	w.batch.Clear()
	w.scratch = w.scratch[:0]
	next := w.NextID()
	size := 0
	for i := range recs {
		if recs[i].ID != next+uint64(i) {
			return fmt.Errorf("append to segment %020d: record id %d, want %d", w.sum.Base, recs[i].ID, next+uint64(i))
		}
		start := len(w.scratch)
		w.scratch = AppendRecord(w.scratch, &recs[i])
		n := len(w.scratch) - start
		size += uvarintLen(uint64(n)) + n
	}
	off := 0
	for i := range recs {
		n := recs[i].EncodedSize()
		w.batch.Write(recs[i].ID-w.sum.Base+1, w.scratch[off:off+n])
		off += n
	}
	if err := w.log.WriteBatch(&w.batch); err != nil {
		w.broken = err
		return fmt.Errorf("append %d records to segment %020d at %d: %w", len(recs), w.sum.Base, w.sum.Bytes, err)
	}
	for i := range recs {
		w.sum.add(&recs[i])
	}
	w.sum.Records += uint64(len(recs))
	w.sum.Bytes += int64(size)
	if cap(w.scratch) > 8<<20 {
		w.scratch = nil // do not pin one huge batch's buffer forever
	}
	return nil
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// Sync fsyncs the segment file. On error the Writer is broken: after a
// failed fsync the kernel may have dropped the dirty pages, so what was
// written since the last good Sync cannot be trusted.
func (w *Writer) Sync() error {
	if w.broken != nil {
		return fmt.Errorf("fsync segment %020d: %w", w.sum.Base, ErrBroken)
	}
	if err := w.log.Sync(); err != nil {
		w.broken = err
		return fmt.Errorf("fsync segment %020d: %w", w.sum.Base, err)
	}
	return nil
}

// Recover mends a broken Writer: it cuts the file back to to, the summary
// as of the last batch the caller acknowledged (an earlier value of
// Summary), fsyncs it, and reopens the log. After a failed Append that is
// the current Summary; after a failed Sync in fsync-always mode it is the
// summary before the unsynced batch, which is then dropped. It is a no-op
// on a sound Writer. On error the Writer stays broken and Recover may be
// retried.
func (w *Writer) Recover(to Summary) error {
	if w.broken == nil {
		return nil
	}
	if to.Base != w.sum.Base || to.Bytes > w.sum.Bytes {
		return fmt.Errorf("recover segment %020d: summary of segment %020d at %d does not precede %d", w.sum.Base, to.Base, to.Bytes, w.sum.Bytes)
	}
	w.sum = to
	if w.log != nil {
		_ = w.log.Close() // its state is what we are discarding
		w.log = nil
	}
	path := DataPath(w.queueDir, w.sum.Base)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("recover segment %020d: %w", w.sum.Base, err)
	}
	err = f.Truncate(w.sum.Bytes)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recover segment %020d: truncate to %d: %w", w.sum.Base, w.sum.Bytes, err)
	}
	log, err := wal.Open(Dir(w.queueDir, w.sum.Base), walOptions())
	if err != nil {
		return fmt.Errorf("recover segment %020d: reopen: %w", w.sum.Base, err)
	}
	if last, err := log.LastIndex(); err != nil || last != w.sum.Records {
		log.Close()
		return fmt.Errorf("recover segment %020d: reopened with %d entries, want %d (%v)", w.sum.Base, last, w.sum.Records, err)
	}
	w.log, w.broken = log, nil
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
	if err := w.Sync(); err != nil {
		return w.sum, err
	}
	if err := w.log.Close(); err != nil {
		w.broken = err
		return w.sum, fmt.Errorf("seal segment %020d: %w", w.sum.Base, err)
	}
	w.log = nil
	w.broken = errSealed
	return w.sum, nil
}

var errSealed = errors.New("segment: sealed")

// Close fsyncs (unless broken) and closes the segment without sealing it.
func (w *Writer) Close() error {
	if w.log == nil {
		return nil
	}
	var err error
	if w.broken == nil {
		err = w.Sync()
	}
	if cerr := w.log.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close segment %020d: %w", w.sum.Base, cerr)
	}
	w.log = nil
	return err
}
