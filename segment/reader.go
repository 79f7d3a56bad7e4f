package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"syscall"
)

// Reader reads the records of one segment in order, through its own file
// handle with positioned reads, so it never touches tidwall/wal's state (whose
// reads of old segments are not safe for concurrent use, upstream issue #34)
// and can follow a segment that is still being appended to, up to the last
// committed record. A Reader is not safe for concurrent use.
type Reader struct {
	f    ReadFile
	dir  string // the queue directory, for errors
	base uint64
	buf  []byte // window of the file starting at bufAt
	at   int64  // file offset of buf[0]
	off  int64  // offset of the next frame
	n    uint64 // frames consumed; the next frame holds id base+n
	stop error  // sticky framing error: nothing after it can be framed
	// zeroTail is the number of zero bytes from off to the end of the
	// file, once Next has stopped there.
	zeroTail int64
	// limit, when > 0, is where the readable records end (SetLimit).
	limit int64
	// dataAt is the offset of a non-zero byte that zerosToEnd found after
	// a zero byte (0 when none is known): zero bytes before it are not
	// the end, and need no new look at the rest of the file.
	dataAt int64
	// collapseZeros (Scan) makes a run of zero bytes before dataAt one
	// CorruptionError instead of one per byte (each is an empty frame),
	// so that a large zero-filled stretch costs one error, not millions.
	collapseZeros bool
}

// SetLimit makes the Reader treat offset n as the end of the file: it
// neither reads nor buffers anything past it. A reader of the active
// segment must set it to the committed size before each read: past it the
// file holds zero-filled space or a batch being written, which a buffer
// must not keep once records are written there. n never decreases.
func (r *Reader) SetLimit(n int64) { r.limit = max(r.limit, n) }

// ZeroTail returns how many zero bytes follow the last record, once Next
// has returned io.EOF there: the writer's preallocated space (see Writer),
// 0 when the file ends right after a record.
func (r *Reader) ZeroTail() int64 { return r.zeroTail }

// zerosToEnd returns the size of the rest of the file from r.off when it is
// all zero bytes, else 0 (and then r.dataAt is where a non-zero byte is).
// Holes of a sparse file are skipped with SEEK_DATA, so a huge
// preallocated or truncate(2)-extended tail costs no reading.
func (r *Reader) zerosToEnd() (int64, error) {
	if r.dataAt > r.off {
		return 0, nil
	}
	fi, err := r.f.Stat()
	if err != nil {
		return 0, fmt.Errorf("read segment %020d at %d: %w", r.base, r.off, err)
	}
	end := fi.Size()
	buf := make([]byte, readChunk)
	for off := r.off; off < end; {
		// Positioned reads only elsewhere, so moving the file offset here
		// disturbs nothing. Without SEEK_DATA support, read on.
		if d, err := r.f.Seek(off, seekData); err == nil {
			if d >= end {
				break
			}
			off = d
		} else if errors.Is(err, syscall.ENXIO) {
			break // a hole from off to the end
		}
		n, err := r.f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
		for i, b := range buf[:n] {
			if b != 0 {
				r.dataAt = off + int64(i)
				return 0, nil
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read segment %020d at %d: %w", r.base, off, err)
		}
		if n == 0 {
			break
		}
		off += int64(n)
	}
	return max(end-r.off, 0), nil
}

// seekData is lseek(2)'s SEEK_DATA (Linux, and most Unix file systems).
const seekData = 3

const readChunk = 64 << 10

// OpenReader opens the segment with the given base id in queueDir.
func OpenReader(queueDir string, base uint64) (*Reader, error) {
	f, err := os.Open(DataPath(queueDir, base))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open segment %020d: %w", base, ErrNotFound)
		}
		return nil, fmt.Errorf("open segment %020d: %w", base, err)
	}
	return &Reader{f: f, dir: queueDir, base: base}, nil
}

// corrupt is the CorruptionError of kind at offset at, for record id.
func (r *Reader) corrupt(kind CorruptionKind, at int64, id uint64, err error) *CorruptionError {
	return &CorruptionError{Kind: kind, Dir: r.dir, Segment: r.base, Offset: at, ID: id, Err: err}
}

// Base returns the id of the segment's first record.
func (r *Reader) Base() uint64 { return r.base }

// NextID returns the id the next record should have.
func (r *Reader) NextID() uint64 { return r.base + r.n }

// Offset returns the file offset of the next frame.
func (r *Reader) Offset() int64 { return r.off }

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// peek returns up to need bytes at r.off, reading the file as needed. It
// returns fewer only at the end of the file.
func (r *Reader) peek(need int) ([]byte, error) {
	if r.off >= r.at && r.off+int64(need) <= r.at+int64(len(r.buf)) {
		s := r.off - r.at
		return r.buf[s : s+int64(need)], nil
	}
	size := max(need, readChunk)
	if r.limit > 0 {
		size = int(min(int64(size), max(r.limit-r.off, 0)))
	}
	if cap(r.buf) < size {
		r.buf = make([]byte, size)
	}
	r.buf = r.buf[:size]
	n, err := r.f.ReadAt(r.buf, r.off)
	r.buf, r.at = r.buf[:n], r.off
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read segment %020d at %d: %w", r.base, r.off, err)
	}
	return r.buf[:min(n, need)], nil
}

// Frame is one frame of a segment, as Frames walks it: a good record, or a
// bad frame (Err set; Err.Kind says what is wrong).
type Frame struct {
	Offset int64 // where the frame starts in the file
	End    int64 // where the next frame starts (for a framing error, where reading stopped)
	// Record is the good record (Err nil). Its payload is valid until
	// the walk goes on.
	Record Record
	Err    *CorruptionError
}

// Frames walks the segment from the Reader's position, frame by frame:
// good records and bad frames alike, the rules of Next deciding which is
// which. The walk ends at the clean end of the file (ZeroTail then says how
// many zero bytes follow), after a framing error (the last frame yielded),
// or with an I/O error, yielded with a zero Frame. Scan is built on it, and
// mqueue dump prints it.
func (r *Reader) Frames() iter.Seq2[Frame, error] {
	return func(yield func(Frame, error) bool) {
		for {
			at := r.off
			rec, err := r.Next()
			var ce *CorruptionError
			switch {
			case err == nil:
				if !yield(Frame{Offset: at, End: r.off, Record: rec}, nil) {
					return
				}
			case errors.As(err, &ce):
				if !yield(Frame{Offset: ce.Offset, End: r.off, Err: ce}, nil) || ce.Framing() {
					return
				}
			case errors.Is(err, io.EOF):
				return
			default:
				yield(Frame{Offset: at, End: at}, err)
				return
			}
		}
	}
}

// StoredHeader is the fixed header of a frame as the file holds it, read
// without checking its CRC: what an operator needs to judge a bad record.
type StoredHeader struct {
	ID         uint64
	EnqueuedAt int64 // unix ms
	ExpiresAt  int64 // unix ms; 0 = never
	// Rest is what follows the fixed header in the entry: the delay, key
	// and payload, as far as frame holds them.
	Rest []byte
	// RestLen is the length of Rest that the frame's length prefix says.
	RestLen int
}

// ReadStoredHeader decodes the frame (its uvarint length prefix and entry)
// at the start of b without trusting it. ok is false when the prefix
// does not say frameBytes in all, or the entry is shorter than a header.
func ReadStoredHeader(b []byte, frameBytes int64) (h StoredHeader, ok bool) {
	k, size := frame(b)
	if k <= 0 || size < HeaderSize || int64(k)+int64(size) != frameBytes {
		return StoredHeader{}, false
	}
	entry := b[k:]
	if len(entry) < HeaderSize {
		return StoredHeader{}, false
	}
	return StoredHeader{
		ID:         binary.LittleEndian.Uint64(entry[5:]),
		EnqueuedAt: int64(binary.LittleEndian.Uint64(entry[13:])),
		ExpiresAt:  int64(binary.LittleEndian.Uint64(entry[21:])),
		Rest:       entry[HeaderSize:],
		RestLen:    int(size) - HeaderSize,
	}, true
}

// Next returns the next record. At the clean end of the file it returns
// io.EOF. A bad record is returned as a *CorruptionError: when only the
// record is bad (CRC, version, id) the Reader has moved past it and Next
// goes on with the following one; when the framing is bad (a length that
// runs past the end of the file, or no length at all) the Reader cannot go
// on and every later call returns the same error. The payload of the
// returned record is valid until the next call.
func (r *Reader) Next() (Record, error) {
	if r.stop != nil {
		return Record{}, r.stop
	}
	head, err := r.peek(binary.MaxVarintLen64)
	if err != nil {
		return Record{}, err
	}
	if len(head) == 0 {
		return Record{}, io.EOF
	}
	if head[0] == 0 {
		// No record has length 0. Zeros from here to the end of the file
		// are space the writer filled ahead of its records (or pages a
		// crash left unwritten, which hold no record either): the end.
		zero, err := r.zerosToEnd()
		if err != nil {
			return Record{}, err
		}
		if zero > 0 {
			r.zeroTail = zero
			return Record{}, io.EOF
		}
		if run := r.dataAt - r.off; r.collapseZeros && run > 1 {
			if r.limit > 0 {
				run = min(run, max(r.limit-r.off, 1))
			}
			ce := r.corrupt(CorruptZeroFill, r.off, r.base+r.n, fmt.Errorf("%d zero bytes (empty frames) before other bytes", run))
			r.off += run
			r.n += uint64(run)
			return Record{}, ce
		}
	}
	k, size := frame(head)
	id := r.base + r.n
	if k <= 0 || size > maxRecordSize {
		r.stop = r.corrupt(CorruptFraming, r.off, id, errors.New("unreadable frame length"))
		return Record{}, r.stop
	}
	if k+int(size) > readChunk {
		// Check a large frame against the file before allocating for it,
		// so a corrupt length cannot cost up to maxRecordSize of memory.
		fi, err := r.f.Stat()
		if err != nil {
			return Record{}, fmt.Errorf("read segment %020d at %d: %w", r.base, r.off, err)
		}
		if r.off+int64(k)+int64(size) > fi.Size() {
			r.stop = r.corrupt(CorruptFraming, r.off, id, fmt.Errorf("frame of %d bytes runs past the end of the file", size))
			return Record{}, r.stop
		}
	}
	entry, err := r.peek(k + int(size))
	if err != nil {
		return Record{}, err
	}
	if len(entry) < k+int(size) {
		r.stop = r.corrupt(CorruptFraming, r.off, id, fmt.Errorf("frame of %d bytes runs past the end of the file", size))
		return Record{}, r.stop
	}
	at := r.off
	r.off += int64(k) + int64(size)
	r.n++
	rec, err := DecodeRecord(entry[k:])
	if err != nil {
		return Record{}, r.corrupt(CorruptRecord, at, id, err)
	}
	if rec.ID != id {
		return Record{}, r.corrupt(CorruptID, at, id, fmt.Errorf("stored id %d", rec.ID))
	}
	return rec, nil
}

// SkipTo moves the Reader forward so that the next frame holds id, reading
// (and checking) the frames before it. Corrupt records on the way are
// returned in bad; a framing error stops it.
func (r *Reader) SkipTo(id uint64) (bad []*CorruptionError, err error) {
	for r.base+r.n < id {
		_, err := r.Next()
		var ce *CorruptionError
		switch {
		case err == nil:
		case errors.As(err, &ce) && !ce.Framing():
			bad = append(bad, ce)
		default:
			return bad, err
		}
	}
	return bad, nil
}

// TailTracker follows a walk of a segment's frames (Frames) and applies the
// rule of a torn tail, for Scan and for tools that print a walk (mqueue
// dump): the readable part of a segment ends after its last good record
// that ends an atomic batch; what follows is a torn tail when it holds a
// bad frame or a batch cut short (a good record whose batch goes on past
// the end), and Repair cuts it there.
type TailTracker struct {
	validEnd int64 // end of the last good record that ends its batch
	openAt   int64 // first record of a batch not yet ended, -1 for none
	badAt    int64 // first bad frame since validEnd, -1 for none
}

// NewTailTracker starts a tracker for a walk from offset start.
func NewTailTracker(start int64) *TailTracker {
	return &TailTracker{validEnd: start, openAt: -1, badAt: -1}
}

// Add takes the next frame of the walk. It reports whether the frame is a
// good record that ends its batch: what came before it counts.
func (t *TailTracker) Add(f Frame) (ended bool) {
	switch {
	case f.Err != nil:
		if t.badAt < 0 {
			t.badAt = f.Offset
		}
	case f.Record.More:
		if t.openAt < 0 {
			t.openAt = f.Offset
		}
	default:
		t.validEnd, t.openAt, t.badAt = f.End, -1, -1
		return true
	}
	return false
}

// ValidEnd is the offset just past the last good record that ends its
// batch: where the readable part ends.
func (t *TailTracker) ValidEnd() int64 { return t.validEnd }

// Torn reports whether what the walk saw after ValidEnd is a torn tail,
// and whether it is a batch cut short (rather than bad frames).
func (t *TailTracker) Torn() (torn, cutBatch bool) {
	return t.openAt >= 0 || t.badAt >= 0, t.openAt >= 0
}

// OpenAt is the offset of the first record of the batch cut short (-1 for
// none).
func (t *TailTracker) OpenAt() int64 { return t.openAt }
