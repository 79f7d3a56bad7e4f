package segment

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// The seed corpus runs with every `go test`; fuzz with
//
//	go test -run '^$' -fuzz FuzzScan -fuzztime 30s ./segment/
//
// New failing inputs land in testdata/fuzz/FuzzX/ and then run as seeds.

func fuzzSeedRecords() [][]byte {
	recs := []Record{
		{ID: 1, EnqueuedAt: 1, Payload: []byte("a")},
		{ID: 42, EnqueuedAt: 1795585742345, ExpiresAt: 1795585752345, Payload: []byte("hello, world")},
		{ID: 1<<64 - 1, EnqueuedAt: -1, ExpiresAt: -1, Payload: bytes.Repeat([]byte{0xff}, 300)},
	}
	var out [][]byte
	for i := range recs {
		out = append(out, AppendRecord(nil, &recs[i]))
	}
	return out
}

// FuzzDecodeRecord: DecodeRecord never panics, fails only with ErrCorrupt,
// and whatever it accepts encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	for _, b := range fuzzSeedRecords() {
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add(make([]byte, HeaderSize))
	f.Add(AppendRecord(nil, &Record{ID: 7, EnqueuedAt: 1, More: true, Payload: []byte("more")}))
	f.Add(AppendRecord(nil, &Record{ID: 8, EnqueuedAt: 1, Key: []byte("k-1"), Payload: []byte("keyed")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := DecodeRecord(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if out := AppendRecord(nil, &rec); !bytes.Equal(out, b) {
			t.Fatalf("accepted %x, which encodes back as %x", b, out)
		}
	})
}

// fuzzSegment returns the bytes of a real segment file of n records.
func fuzzSegment(f *testing.F, n int) []byte {
	dir := f.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		f.Fatal(err)
	}
	var recs []Record
	for i := 0; i < n; i++ {
		recs = append(recs, Record{ID: uint64(i + 1), EnqueuedAt: int64(i), Payload: bytes.Repeat([]byte{byte('a' + i)}, 10+i*40)})
	}
	if err := w.Append(recs); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(DataPath(dir, 1))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzScan feeds arbitrary bytes as a segment file to Scan, the Reader and
// Repair: no panic, no record served that fails its checks, Repair leaves a
// file without a torn tail that tidwall/wal opens for append with the same
// record count, and an append after the repair reads back.
func FuzzScan(f *testing.F) {
	seg := fuzzSegment(f, 5)
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add(append(append([]byte{}, seg...), make([]byte, 100)...))
	f.Add(append(append([]byte{}, seg...), bytes.Repeat([]byte{0xff}, 20)...))
	mid := append([]byte{}, seg...)
	mid[len(mid)/2] ^= 0x10
	f.Add(mid)
	f.Add([]byte{0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(Dir(dir, 1), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(DataPath(dir, 1), data, 0o640); err != nil {
			t.Fatal(err)
		}
		res, err := Scan(dir, 1)
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		if res.ValidSize > res.FileSize || res.FileSize != int64(len(data)) || res.Bytes != res.ValidSize {
			t.Fatalf("scan sizes: valid %d file %d bytes %d, data %d", res.ValidSize, res.FileSize, res.Bytes, len(data))
		}
		r, err := OpenReader(dir, 1)
		if err != nil {
			t.Fatal(err)
		}
		good := uint64(0)
		for i := 0; i <= len(data); i++ {
			rec, err := r.Next()
			if err != nil {
				var ce *CorruptionError
				if errors.As(err, &ce) && !ce.Framing() {
					continue
				}
				break
			}
			if rec.ID != 1+r.n-1 {
				t.Fatalf("record %d served with id %d", r.n, rec.ID)
			}
			if _, err := DecodeRecord(data[r.off-int64(rec.EncodedSize()) : r.off]); err != nil {
				t.Fatalf("served a record that does not decode: %v", err)
			}
			good++
		}
		r.Close()
		if good > res.Records {
			t.Fatalf("reader served %d records, scan counts %d frames", good, res.Records)
		}

		rep, cut, err := Repair(dir, 1)
		if err != nil {
			t.Fatalf("Repair: %v", err)
		}
		if cut != res.Torn() || rep.Torn() {
			t.Fatalf("repair: cut %v, torn before %v, torn after %v", cut, res.Torn(), rep.Torn())
		}
		again, err := Scan(dir, 1)
		if err != nil || again.Torn() || again.Records != rep.Records {
			t.Fatalf("scan after repair: %+v, %v (repair said %d records)", again, err, rep.Records)
		}
		w, err := OpenWriter(dir, rep)
		if err != nil {
			t.Fatalf("a repaired segment does not open for append: %v", err)
		}
		next := w.NextID()
		if err := w.Append([]Record{{ID: next, EnqueuedAt: 7, Payload: []byte("after")}}); err != nil {
			t.Fatalf("append after repair: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		final, err := Scan(dir, 1)
		if err != nil || final.Torn() || final.Records != rep.Records+1 {
			t.Fatalf("after append: %+v, %v", final, err)
		}
	})
}
