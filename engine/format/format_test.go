package format

import (
	"bytes"
	"testing"
)

func TestCursorRoundTripAndTornSlot(t *testing.T) {
	var raw [CursorFileSize]byte
	EncodeCursor(raw[:], 7, 100)
	EncodeCursor(raw[CursorSlotSize:], 8, 120)
	if id, seq, slot, ok := DecodeCursor(raw[:]); !ok || id != 120 || seq != 8 || slot != 1 {
		t.Fatalf("got %d %d %d %v", id, seq, slot, ok)
	}
	raw[CursorSlotSize+3] ^= 1 // the newer slot torn: the older one wins
	if id, seq, slot, ok := DecodeCursor(raw[:]); !ok || id != 100 || seq != 7 || slot != 0 {
		t.Fatalf("torn: got %d %d %d %v", id, seq, slot, ok)
	}
	if _, _, _, ok := DecodeCursor(raw[:10]); ok {
		t.Fatal("a short file decoded")
	}
}

func TestHWMRoundTrip(t *testing.T) {
	b := EncodeHWM(1 << 40)
	if v, ok := DecodeHWM(b[:]); !ok || v != 1<<40 {
		t.Fatalf("%d %v", v, ok)
	}
	b[0] ^= 1
	if _, ok := DecodeHWM(b[:]); ok {
		t.Fatal("a damaged hwm decoded")
	}
	if _, ok := DecodeHWM(append(b[:], 0)); ok {
		t.Fatal("a long hwm decoded")
	}
}

func TestLeaseLog(t *testing.T) {
	var log []byte
	log = AppendLeaseRecord(log, LeaseHold, 5, 1)
	log = AppendLeaseRecord(log, LeaseHold, 6, 2)
	log = AppendLeaseRecord(log, LeaseDone, 5, 0)
	bad := AppendLeaseRecord(nil, LeaseHold, 9, 1)
	bad[6] ^= 1
	log = append(log, bad...)
	log = append(log, AppendLeaseRecord(nil, 7, 10, 0)...) // unknown kind
	log = append(log, bytes.Repeat([]byte{1}, 5)...)       // torn
	count, done, nbad, torn := DecodeLeaseLog(log)
	if count[6] != 2 || !done[5] || count[9] != 0 || nbad != 2 || torn != 5 {
		t.Fatalf("count %v done %v bad %d torn %d", count, done, nbad, torn)
	}
}
