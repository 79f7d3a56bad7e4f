package segment

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mqueue/mqueue/segment/atomicfile"
)

// Summary describes the records of one segment. It is what the engine keeps
// per segment as its TTL index: with LastID and MaxExpiry it can tell when a
// whole segment is consumed or expired and delete it.
type Summary struct {
	Base uint64 `json:"base"`
	// Records is the number of frames the segment holds, good or corrupt;
	// ids Base .. Base+Records-1.
	Records uint64 `json:"records"`
	// Bytes is the size of the records file.
	Bytes int64 `json:"bytes"`
	// MaxExpiry is the largest expiry (unix ms) of its records, NeverExpires
	// when any record has no TTL, 0 when it is empty.
	MaxExpiry int64 `json:"max_expiry"`
	// FirstEnqueued and LastEnqueued are the enqueue times (unix ms) of its
	// first and last good records, 0 when it has none.
	FirstEnqueued int64 `json:"first_enqueued"`
	LastEnqueued  int64 `json:"last_enqueued"`
	// LastKeyed is the enqueue time (unix ms) of its last good record with
	// an idempotency key, 0 when it has none: the engine keeps the segment
	// (and finds its keys again at start) until the dedup window after it.
	LastKeyed int64 `json:"last_keyed,omitempty"`
}

// LastID returns the id of the last record, Base-1 when the segment is empty.
func (s *Summary) LastID() uint64 { return s.Base + s.Records - 1 }

// Add folds a good record into the summary (Scan and Writer do; so does
// mqueue dump, to check a meta file against what it read).
func (s *Summary) Add(r *Record) {
	exp := r.ExpiresAt
	if exp == 0 {
		exp = NeverExpires
	}
	s.MaxExpiry = max(s.MaxExpiry, exp)
	if s.FirstEnqueued == 0 {
		s.FirstEnqueued = r.EnqueuedAt
	}
	s.LastEnqueued = r.EnqueuedAt
	if len(r.Key) > 0 {
		s.LastKeyed = r.EnqueuedAt
	}
}

// ScanResult is what Scan found in one segment.
type ScanResult struct {
	// Summary covers the frames up to the end of the last good record
	// (ValidSize): what the segment holds once its torn tail is cut.
	Summary
	// FileSize is the size of the records file as found.
	FileSize int64
	// ValidSize is the offset just past the last good record.
	ValidSize int64
	// Corrupt lists the bad records before ValidSize: corruption in the
	// middle, which readers skip and report.
	Corrupt []*CorruptionError
	// Cut is the number of bytes Repair cut off (0 after Scan).
	Cut int64
	// Kept is how many of the cut bytes Repair kept in the .broken file:
	// all of them, or the first MaxKeptTail.
	Kept int64
	// KeepErr says why Repair could not keep the cut bytes in a .broken
	// file (nil when it did, or cut nothing).
	KeepErr error
	// Tail is the first problem after ValidSize (nil when the file ends
	// cleanly there): a torn tail, if this is the newest segment.
	Tail *CorruptionError
	// ZeroTail is the number of zero bytes from ValidSize to the end of the
	// file: the writer's preallocated space, which Repair cuts without
	// keeping a copy. Only set when nothing else follows the last record.
	ZeroTail int64
}

// Torn reports whether the file has bytes after its last good record other
// than zero-filled space.
func (s *ScanResult) Torn() bool { return s.FileSize > s.ValidSize+s.ZeroTail }

// Scan reads every record of a segment and checks it. It changes nothing.
func Scan(queueDir string, base uint64) (*ScanResult, error) {
	r, err := OpenReader(queueDir, base)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	r.collapseZeros = true
	fi, err := r.f.Stat()
	if err != nil {
		return nil, fmt.Errorf("scan segment %020d: %w", base, err)
	}
	res := &ScanResult{Summary: Summary{Base: base}, FileSize: fi.Size()}
	var pending []*CorruptionError // bad records after the last good one so far
	var pendingSummary = res.Summary
	tail := NewTailTracker(0)
	var openID uint64 // the id of the first record of the batch cut short
	for f, err := range r.Frames() {
		if err != nil {
			return nil, fmt.Errorf("scan segment %020d: %w", base, err)
		}
		ended := tail.Add(f)
		if ce := f.Err; ce != nil {
			switch {
			case len(pending) < maxPending:
				pending = append(pending, ce)
			case len(pending) == maxPending:
				// Garbage makes a bad frame every few bytes: list the
				// first ones and count the rest, so memory stays bounded.
				pending = append(pending, r.corrupt(CorruptMore, ce.Offset, ce.ID, errors.New("more bad records follow, not listed one by one")))
			}
			continue
		}
		rec := &f.Record
		pendingSummary.Add(rec)
		pendingSummary.Records = r.n
		if !ended {
			if tail.OpenAt() == f.Offset {
				openID = rec.ID
			}
			continue // good, but it counts only once its batch ends
		}
		res.Corrupt = append(res.Corrupt, pending...)
		pending = pending[:0]
		res.Summary = pendingSummary
		res.ValidSize = tail.ValidEnd()
	}
	switch torn, cut := tail.Torn(); {
	case cut:
		res.Tail = r.corrupt(CorruptCutBatch, tail.OpenAt(), openID, errors.New("atomic batch cut short: its last record is missing"))
	case torn:
		res.Tail = pending[0]
	default:
		res.ZeroTail = r.ZeroTail()
	}
	res.Bytes = res.ValidSize
	return res, nil
}

// maxPending bounds the bad records Scan lists after the last good one.
const maxPending = 1024

// MaxKeptTail is the most bytes of a torn tail Repair keeps in a .broken
// file; a larger tail (a file extended far past its records) keeps its
// first MaxKeptTail bytes, where a torn write starts.
const MaxKeptTail = 64 << 20

// BrokenPath returns where Repair keeps the bytes it cut off a segment.
func BrokenPath(queueDir string, base uint64, offset int64) string {
	return filepath.Join(queueDir, fmt.Sprintf("%020d-%010d.broken", base, offset))
}

// Repair cuts a segment's torn tail: it copies the bytes after the last good
// record (the first MaxKeptTail of them, streamed: a tail may be a file
// extended by gigabytes) to a .broken file beside the segment (fsynced; if that fails, for
// instance on a full disk, it says so in res.KeepErr and cuts anyway), truncates the
// records file there, and fsyncs the file and the queue directory. It is for
// the newest segment, whose tail may have been half written when the process
// or the machine died; it returns the scan of the repaired segment and
// whether anything was cut.
func Repair(queueDir string, base uint64) (*ScanResult, bool, error) {
	res, err := Scan(queueDir, base)
	if err != nil {
		return nil, false, err
	}
	if !res.Torn() {
		if res.ZeroTail > 0 {
			// Preallocated space: cut it (it holds nothing to keep) so that
			// the file ends at its last record, as tidwall/wal expects.
			if err := cutZeroTail(queueDir, res); err != nil {
				return nil, false, err
			}
		}
		return res, false, nil
	}
	path := DataPath(queueDir, base)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("repair segment %020d: %w", base, err)
	}
	defer f.Close()
	cut := res.FileSize - res.ValidSize
	broken := BrokenPath(queueDir, base, res.ValidSize)
	kept, err := keepTail(broken, f, res.ValidSize, min(cut, MaxKeptTail))
	if err != nil {
		// Most likely a full disk, which is also when torn tails happen
		// (a batch that failed half written). The bytes are no record
		// anyone can read; keeping the queue down for them would be worse,
		// so say what they were and cut them anyway.
		os.Remove(broken)
		var first [64]byte
		n, _ := f.ReadAt(first[:min(cut, int64(len(first)))], res.ValidSize)
		res.KeepErr = fmt.Errorf("keep %d torn bytes in %s: %w (first bytes %x)", cut, broken, err, first[:n])
		kept = 0
	}
	res.Kept = kept
	if err := f.Truncate(res.ValidSize); err != nil {
		return nil, false, fmt.Errorf("repair segment %020d: truncate at %d: %w", base, res.ValidSize, err)
	}
	if err := f.Sync(); err != nil {
		return nil, false, fmt.Errorf("repair segment %020d: fsync: %w", base, err)
	}
	if err := atomicfile.SyncDir(queueDir); err != nil {
		return nil, false, err
	}
	res.Cut = res.FileSize - res.ValidSize
	res.FileSize = res.ValidSize
	return res, true, nil
}

// cutZeroTail truncates the records file at res.ValidSize and fsyncs it.
// res then describes the file as it is.
func cutZeroTail(queueDir string, res *ScanResult) error {
	if err := atomicfile.Truncate(DataPath(queueDir, res.Base), res.ValidSize); err != nil {
		return fmt.Errorf("segment %020d: cut zero-filled tail at %d: %w", res.Base, res.ValidSize, err)
	}
	res.Cut = res.FileSize - res.ValidSize
	res.FileSize = res.ValidSize
	return nil
}

// keepTail copies n bytes of f from off into a new file name, fsynced,
// streaming them through a small buffer (a tail may be gigabytes).
func keepTail(name string, f *os.File, off, n int64) (int64, error) {
	dst, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, err
	}
	copied, err := io.Copy(dst, io.NewSectionReader(f, off, n)) // a 32 KiB buffer

	if err == nil && copied < n {
		err = fmt.Errorf("read %d of %d bytes at %d: %w", copied, n, off, io.ErrUnexpectedEOF)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return copied, err
}
