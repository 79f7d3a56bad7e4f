package engine

import (
	"context"
	"testing"
	"time"
)

// BenchmarkLeaseAck leases and acks one message at a time (fsync never, so
// the receipt codec is not hidden behind fsync).
func BenchmarkLeaseAck(b *testing.B) {
	e := openT(b, Options{Dir: b.TempDir(), Fsync: FsyncNever})
	for i := 0; i < b.N; i++ {
		if _, err := e.Enqueue(context.Background(), "q", benchBody, EnqueueOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(benchBody)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, ok, err := e.Lease(context.Background(), "q", 0, time.Minute)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if err := e.Ack("q", m.Receipt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeaseReceipt is the receipt codec alone: one encode and the two
// parses an ack makes (leaseQueue and leaseLocked).
func BenchmarkLeaseReceipt(b *testing.B) {
	e := openT(b, Options{Dir: b.TempDir()})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r := e.receipt(uint64(i), uint64(i)+7)
		for range 2 {
			if id, seq, err := e.parseReceipt(r); err != nil || id != uint64(i) || seq != uint64(i)+7 {
				b.Fatal(id, seq, err)
			}
		}
	}
}
