package engine

import (
	"errors"
	"testing"
	"time"
)

// A receipt of another node (or of an earlier run: TestLeasesSurviveRestart)
// names the same id and lease sequence but fails the mac: ErrLeaseExpired.
func TestReceiptOfAnotherNodeIsRefused(t *testing.T) {
	a := openT(t, Options{Dir: t.TempDir()})
	b := openT(t, Options{Dir: t.TempDir()})
	for _, e := range []*Engine{a, b} {
		enq(t, e, "q", "x", EnqueueOptions{})
	}
	ma, _ := lease(t, a, "q", time.Minute)
	mb, _ := lease(t, b, "q", time.Minute)
	if ma.ID != mb.ID {
		t.Fatalf("ids %d and %d", ma.ID, mb.ID)
	}
	if err := b.Ack("q", ma.Receipt); !errors.Is(err, ErrLeaseExpired) {
		t.Fatalf("Ack of another node's receipt = %v, want ErrLeaseExpired", err)
	}
	if err := b.Ack("q", mb.Receipt); err != nil {
		t.Fatalf("Ack of its own receipt: %v", err)
	}
}

func TestDecodeReceiptCanonicalOnly(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	r := e.receipt(42, 7)
	if len(r) != receiptLen {
		t.Fatalf("receipt %q has %d characters, want %d", r, len(r), receiptLen)
	}
	if id, seq, err := e.parseReceipt(r); err != nil || id != 42 || seq != 7 {
		t.Fatalf("parseReceipt = %d %d %v", id, seq, err)
	}
	last := r[len(r)-1]
	bad := []string{"", r[:len(r)-1], r + "A", r[:10] + "+" + r[11:], r[:10] + "=" + r[11:]}
	// The last character carries 2 bits and 4 zero bits: another one with
	// the same 2 bits is not canonical.
	if v := receiptIndex[last]; v&0x0f == 0 {
		bad = append(bad, r[:len(r)-1]+string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[v|1]))
	}
	for _, s := range bad {
		if _, _, err := e.parseReceipt(s); !errors.Is(err, ErrLeaseExpired) {
			t.Errorf("parseReceipt(%q) = %v, want ErrLeaseExpired", s, err)
		}
	}
}
