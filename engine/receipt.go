package engine

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"sync"
)

// Lease receipts. A receipt is base64url (no padding) of 32 bytes:
// [id u64][seq u64][mac 16 bytes], the mac being HMAC-SHA256 of the first
// 16 bytes under a key drawn from crypto/rand when the engine opens,
// truncated to 16 bytes. The key never leaves the process, so a receipt
// cannot be forged (another id, another lease), and one of another node or
// of an earlier run of this one fails the check: it names no lease here,
// ErrLeaseExpired. The receipt says nothing about the host.

const (
	receiptMACSize = 16
	receiptRawSize = 16 + receiptMACSize
	receiptLen     = (receiptRawSize*8 + 5) / 6 // base64 without padding: 43
)

// receiptCodec signs and checks receipts. Safe for concurrent use.
type receiptCodec struct {
	macs sync.Pool // *receiptMAC under this run's key
}

// receiptMAC is a reusable HMAC state and its buffers, so that signing
// allocates nothing (what goes through hash.Hash's interface would escape).
type receiptMAC struct {
	h   hash.Hash
	in  []byte
	sum []byte
}

// of returns the mac of b[:16], valid until m is used again.
func (m *receiptMAC) of(b *[receiptRawSize]byte) []byte {
	m.in = append(m.in[:0], b[:16]...)
	m.h.Reset()
	m.h.Write(m.in)
	m.sum = m.h.Sum(m.sum[:0])
	return m.sum[:receiptMACSize]
}

// newReceiptCodec draws this run's key.
func newReceiptCodec() *receiptCodec {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand, Go 1.24+)
	c := &receiptCodec{}
	c.macs.New = func() any {
		return &receiptMAC{h: hmac.New(sha256.New, key), in: make([]byte, 0, 16), sum: make([]byte, 0, sha256.Size)}
	}
	return c
}

// sign puts the mac of b[:16] into b[16:].
func (c *receiptCodec) sign(b *[receiptRawSize]byte) {
	m := c.macs.Get().(*receiptMAC)
	copy(b[16:], m.of(b))
	c.macs.Put(m)
}

// valid reports, in constant time, whether b[16:] is the mac of b[:16].
func (c *receiptCodec) valid(b *[receiptRawSize]byte) bool {
	m := c.macs.Get().(*receiptMAC)
	ok := hmac.Equal(m.of(b), b[16:])
	c.macs.Put(m)
	return ok
}

// receipt encodes a lease's receipt: opaque to clients, it names the
// message and the lease, and only this run of this node can make or check
// it.
func (e *Engine) receipt(id, seq uint64) string {
	var b [receiptRawSize]byte
	binary.LittleEndian.PutUint64(b[0:], id)
	binary.LittleEndian.PutUint64(b[8:], seq)
	e.receipts.sign(&b)
	var out [receiptLen]byte
	base64.RawURLEncoding.Encode(out[:], b[:])
	return string(out[:])
}

// parseReceipt returns the id and lease sequence a receipt names. One that
// is not a receipt, or whose mac fails (forged, another node's, of an
// earlier run) is ErrLeaseExpired: its lease is not known here.
func (e *Engine) parseReceipt(r string) (id, seq uint64, err error) {
	var b [receiptRawSize]byte
	if !decodeReceipt(&b, r) {
		// SPEC: an unknown receipt is 410 like an expired one.
		return 0, 0, fmt.Errorf("%w: not a receipt of this server", ErrLeaseExpired)
	}
	if !e.receipts.valid(&b) {
		return 0, 0, fmt.Errorf("%w: the receipt is not of this node's current run (another node's, from before a restart, or forged)", ErrLeaseExpired)
	}
	return binary.LittleEndian.Uint64(b[0:]), binary.LittleEndian.Uint64(b[8:]), nil
}

// receiptIndex maps a base64url character to its value, 0xff for others.
var receiptIndex = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = 0xff
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// decodeReceipt decodes the base64url text of a receipt into b, without
// the copy to []byte that encoding/base64 would need. It accepts only the
// canonical text (exactly receiptLen characters, zero padding bits).
func decodeReceipt(b *[receiptRawSize]byte, s string) bool {
	if len(s) != receiptLen {
		return false
	}
	var acc uint32
	var bits uint
	j := 0
	for i := 0; i < len(s); i++ {
		v := receiptIndex[s[i]]
		if v == 0xff {
			return false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			b[j] = byte(acc >> bits)
			j++
		}
	}
	return j == receiptRawSize && acc&(1<<bits-1) == 0
}
