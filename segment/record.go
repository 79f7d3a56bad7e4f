package segment

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Errors of this package; compare with errors.Is.
var (
	// ErrCorrupt marks a record whose frame, CRC, version or id is wrong.
	ErrCorrupt = errors.New("segment: corrupt record")
	// ErrBroken is returned by a Writer whose last write or fsync failed and
	// that has not been recovered since.
	ErrBroken = errors.New("segment: writer broken by an earlier write error")
	// ErrKeyTooLong is returned by Writer.Append for a record whose key is
	// over MaxKeyLen; nothing is written and the Writer stays usable.
	ErrKeyTooLong = errors.New("segment: idempotency key too long")
	// ErrNotFound: no segment with that base in the queue directory.
	ErrNotFound = errors.New("segment: not found")
)

// CorruptionKind says what is wrong where a CorruptionError points.
type CorruptionKind int

// The kinds of corruption a Reader or Scan reports.
const (
	// CorruptRecord: a frame that reads, holding a record whose CRC,
	// version or layout is wrong. Reading goes on after it.
	CorruptRecord CorruptionKind = iota + 1
	// CorruptID: a good record that holds another id than its place says.
	CorruptID
	// CorruptFraming: the frame itself is unreadable (its length prefix,
	// or a length past the end of the file): nothing after it in the
	// segment can be read.
	CorruptFraming
	// CorruptZeroFill: a run of zero bytes (empty frames) before other
	// bytes, reported once for the run.
	CorruptZeroFill
	// CorruptCutBatch: an atomic batch whose last record is missing.
	CorruptCutBatch
	// CorruptMore stands for the further bad records Scan does not list.
	CorruptMore
)

// String names the kind as dump prints it.
func (k CorruptionKind) String() string {
	switch k {
	case CorruptRecord:
		return "record"
	case CorruptID:
		return "id"
	case CorruptFraming:
		return "framing"
	case CorruptZeroFill:
		return "zero-fill"
	case CorruptCutBatch:
		return "cut-batch"
	case CorruptMore:
		return "more"
	}
	return fmt.Sprintf("CorruptionKind(%d)", int(k))
}

// CorruptionError says what is wrong and where. It wraps ErrCorrupt and
// Err.
type CorruptionError struct {
	Kind    CorruptionKind
	Dir     string // the queue directory
	Segment uint64 // base id of the segment
	Offset  int64  // byte offset of the frame in the segment file
	ID      uint64 // id the record should have had
	Err     error  // what is wrong, for a human
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("segment %020d offset %d (id %d): %v", e.Segment, e.Offset, e.ID, e.Err)
}

// Unwrap returns ErrCorrupt and Err.
func (e *CorruptionError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// Framing reports whether the frame itself is unreadable, so that nothing
// after Offset in this segment can be read.
func (e *CorruptionError) Framing() bool { return e.Kind == CorruptFraming }

const (
	// HeaderSize is the fixed part of a record before the payload.
	HeaderSize = 29
	version    = 1
	// moreFlag in the version byte marks a record that its atomic batch
	// continues after (Record.More).
	moreFlag = 0x80
	// keyFlag in the version byte marks a record with an idempotency key:
	// one length byte and the key follow the header, before the payload.
	keyFlag = 0x40
	// delayFlag in the version byte marks a delayed record: its VisibleAt,
	// 8 bytes, follows the header, before the key.
	delayFlag = 0x20
	// MaxKeyLen is the longest idempotency key a record holds.
	MaxKeyLen = 128
	// NeverExpires is the MaxExpiry of a segment holding a record without TTL.
	NeverExpires = math.MaxInt64
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one message as stored. Payload aliases the buffer it was decoded
// from; copy it to keep it.
type Record struct {
	ID         uint64
	EnqueuedAt int64 // unix ms
	ExpiresAt  int64 // unix ms; 0 = never
	// More marks a record of an atomic batch (a batch POST) that is not the
	// batch's last: the batch counts only once its last record, without
	// More, is there too. Scan treats a segment that ends in the middle of
	// such a batch as torn there, so that a crash during the write never
	// leaves part of a batch behind.
	More bool
	// Key is the message's idempotency key (Idempotency-Key), 0 to
	// MaxKeyLen bytes; empty for none. It aliases the decoded buffer too.
	Key []byte
	// VisibleAt is when a delayed message (POST ?delay=N) may first be
	// delivered, unix ms; 0 for at once.
	VisibleAt int64
	Payload   []byte
}

// EncodedSize is the size of r's entry, without tidwall's length prefix.
func (r *Record) EncodedSize() int { return RecordSize(len(r.Payload), len(r.Key), r.VisibleAt != 0) }

// RecordSize is the size of the entry of a record with a payload and a key
// of these lengths, delayed or not, without tidwall's length prefix: the
// one place that knows the layout's size.
func RecordSize(payload, key int, delayed bool) int {
	n := HeaderSize + payload
	if key > 0 {
		n += 1 + key
	}
	if delayed {
		n += 8
	}
	return n
}

// FrameSize is RecordSize with tidwall's length prefix: the bytes the
// record takes in a segment file.
func FrameSize(payload, key int, delayed bool) int {
	n := RecordSize(payload, key, delayed)
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n)) + n
}

// AppendRecord appends the encoding of r to dst and returns the result.
func AppendRecord(dst []byte, r *Record) []byte {
	start := len(dst)
	v := byte(version)
	if r.More {
		v |= moreFlag
	}
	if len(r.Key) > 0 {
		v |= keyFlag
	}
	if r.VisibleAt != 0 {
		v |= delayFlag
	}
	dst = append(dst, 0, 0, 0, 0, v)
	dst = binary.LittleEndian.AppendUint64(dst, r.ID)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.EnqueuedAt))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.ExpiresAt))
	if r.VisibleAt != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.VisibleAt))
	}
	if len(r.Key) > 0 {
		dst = append(dst, byte(len(r.Key)))
		dst = append(dst, r.Key...)
	}
	dst = append(dst, r.Payload...)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// DecodeRecord decodes one entry and checks its CRC and version. The returned
// payload aliases b. The error says why a record is bad and wraps ErrCorrupt.
func DecodeRecord(b []byte) (Record, error) {
	if len(b) < HeaderSize {
		return Record{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(b), HeaderSize)
	}
	if got, want := crc32.Checksum(b[4:], castagnoli), binary.LittleEndian.Uint32(b); got != want {
		return Record{}, fmt.Errorf("%w: crc32c %08x, stored %08x", ErrCorrupt, got, want)
	}
	if b[4]&^(moreFlag|keyFlag|delayFlag) != version {
		return Record{}, fmt.Errorf("%w: unknown version %d", ErrCorrupt, b[4]&^(moreFlag|keyFlag|delayFlag))
	}
	rec := Record{
		ID:         binary.LittleEndian.Uint64(b[5:]),
		EnqueuedAt: int64(binary.LittleEndian.Uint64(b[13:])),
		ExpiresAt:  int64(binary.LittleEndian.Uint64(b[21:])),
		More:       b[4]&moreFlag != 0,
		Payload:    b[HeaderSize:],
	}
	if b[4]&delayFlag != 0 {
		if len(rec.Payload) < 8 {
			return Record{}, fmt.Errorf("%w: delayed record too short", ErrCorrupt)
		}
		rec.VisibleAt = int64(binary.LittleEndian.Uint64(rec.Payload))
		rec.Payload = rec.Payload[8:]
		if rec.VisibleAt == 0 {
			return Record{}, fmt.Errorf("%w: delayed record with no time", ErrCorrupt)
		}
	}
	if b[4]&keyFlag != 0 {
		p := rec.Payload
		if len(p) == 0 || p[0] == 0 || int(p[0]) > MaxKeyLen || len(p) < 1+int(p[0]) {
			return Record{}, fmt.Errorf("%w: bad idempotency key length", ErrCorrupt)
		}
		rec.Key, rec.Payload = p[1:1+int(p[0])], p[1+int(p[0]):]
	}
	return rec, nil
}

// Expired reports whether r has expired at nowMs.
func (r *Record) Expired(nowMs int64) bool { return r.ExpiresAt != 0 && r.ExpiresAt <= nowMs }

// frame parses tidwall's uvarint length prefix at the start of b. It returns
// the prefix size and the entry size, or n <= 0 when b holds no whole prefix.
func frame(b []byte) (n int, size uint64) {
	size, n = binary.Uvarint(b)
	return n, size
}

// maxRecordSize bounds a frame's length so a corrupt prefix cannot make a
// reader allocate gigabytes.
const maxRecordSize = 1 << 30
