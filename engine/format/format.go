// Package format owns the on-disk formats of a queue directory's own files
// (besides the segments, which package segment owns): the cursor, the hwm,
// the lease log and the keys file, their names and sizes. The engine writes
// and reads them through it, and mqueue dump decodes them with the same
// code. It does no I/O.
package format

import (
	"encoding/binary"
	"hash/crc32"
)

// The files of a queue directory that this package describes, and the
// engine's meta blob.
const (
	CursorFile = "cursor"
	HWMFile    = "hwm"
	LeasesFile = "leases"
	KeysFile   = "keys"
	MetaFile   = "meta"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// The cursor file holds the read position of a queue: the id of the next
// message to deliver. It has two slots of CursorSlotSize bytes, written in
// turn with pwrite, each [seq u64][readID u64][crc32c u32] where the CRC
// covers seq and readID. A torn write can only spoil the slot being
// written, whose fsync had not returned, so no dequeue depending on it was
// answered; the other slot still holds the previous position. The valid
// slot with the higher seq wins.
const (
	CursorSlotSize   = 512
	CursorRecordSize = 20
	CursorFileSize   = 2 * CursorSlotSize
)

// EncodeCursor writes one cursor slot record into b (at least
// CursorRecordSize bytes).
func EncodeCursor(b []byte, seq, readID uint64) {
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint64(b[8:], readID)
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], crcTable))
}

// DecodeCursor reads the position out of the bytes of a cursor file (up to
// CursorFileSize of them): the valid slot with the higher seq wins. ok is
// false when no slot is valid.
func DecodeCursor(raw []byte) (readID, seq uint64, slot int, ok bool) {
	for i := 0; i < 2; i++ {
		start := i * CursorSlotSize
		if len(raw) < start+CursorRecordSize {
			continue
		}
		b := raw[start : start+CursorRecordSize]
		if crc32.Checksum(b[:16], crcTable) != binary.LittleEndian.Uint32(b[16:]) {
			continue
		}
		if s := binary.LittleEndian.Uint64(b); !ok || s > seq {
			readID, seq, slot, ok = binary.LittleEndian.Uint64(b[8:]), s, i, true
		}
	}
	return readID, seq, slot, ok
}

// HWMFileSize is the size of the hwm file: [hwm u64][crc32c u32 of it].
const HWMFileSize = 12

// EncodeHWM is the content of an hwm file holding hwm.
func EncodeHWM(hwm uint64) [HWMFileSize]byte {
	var b [HWMFileSize]byte
	binary.LittleEndian.PutUint64(b[:], hwm)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], crcTable))
	return b
}

// DecodeHWM reads the bound out of the bytes of an hwm file; ok is false
// when they are not exactly one valid record.
func DecodeHWM(b []byte) (hwm uint64, ok bool) {
	if len(b) != HWMFileSize || crc32.Checksum(b[:8], crcTable) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b), true
}

// A lease log record: [crc32c u32][kind u8][id u64][count u32], the CRC
// over the 13 bytes after it. LeaseHold leases the id (count: its
// deliveries so far), LeaseDone ends it (acked, popped for good, or moved
// to the DLQ).
const (
	LeaseRecordSize      = 17
	LeaseHold       byte = 1
	LeaseDone       byte = 2
)

// AppendLeaseRecord appends one lease log record to dst.
func AppendLeaseRecord(dst []byte, kind byte, id uint64, count uint32) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kind)
	dst = binary.LittleEndian.AppendUint64(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, count)
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], crcTable))
	return dst
}

// DecodeLeaseLog parses a lease log: for each id the delivery count of its
// last hold record and whether a done record followed. bad counts records
// whose CRC or kind is wrong (skipped); torn is the length of an incomplete
// record at the end.
func DecodeLeaseLog(b []byte) (count map[uint64]uint32, done map[uint64]bool, bad, torn int) {
	count, done = map[uint64]uint32{}, map[uint64]bool{}
	for len(b) >= LeaseRecordSize {
		r := b[:LeaseRecordSize]
		b = b[LeaseRecordSize:]
		if crc32.Checksum(r[4:], crcTable) != binary.LittleEndian.Uint32(r) {
			bad++
			continue
		}
		id := binary.LittleEndian.Uint64(r[5:])
		switch r[4] {
		case LeaseHold:
			count[id] = binary.LittleEndian.Uint32(r[13:])
			delete(done, id)
		case LeaseDone:
			done[id] = true
		default:
			bad++
		}
	}
	return count, done, bad, len(b)
}

// KeyRecord is one line of the keys file (JSON Lines): an idempotency key
// carried past the deletion of its segment, with the first id and count of
// what it stored and its enqueue time (unix ms).
type KeyRecord struct {
	Key string `json:"key"`
	ID  uint64 `json:"id"`
	N   int    `json:"n,omitempty"` // messages of a batch POST; absent for 1
	At  int64  `json:"at"`
}
