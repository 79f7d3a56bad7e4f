package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeSegment creates a segment at base with n records and returns the
// file offsets at which each record's frame starts, plus the file size.
func writeSegment(t testing.TB, dir string, base uint64, n int, seal bool) (offs []int64, size int64) {
	t.Helper()
	w, err := Create(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		offs = append(offs, w.Summary().Bytes)
		r := Record{ID: base + uint64(i), EnqueuedAt: 1700000000000 + int64(i), Payload: []byte(fmt.Sprintf("record-%d-%s", i, bytes.Repeat([]byte{'x'}, i)))}
		if i%3 == 1 {
			r.ExpiresAt = 1800000000000 + int64(i)
		}
		if err := w.Append([]Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	if seal {
		sum, err := w.Seal()
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteMeta(dir, &sum); err != nil {
			t.Fatal(err)
		}
	} else if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	size, err = Size(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	return offs, size
}

// readAll returns the good records and the corruption errors of a segment.
func readAll(t testing.TB, dir string, base uint64) (good []Record, bad []*CorruptionError) {
	t.Helper()
	r, err := OpenReader(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		var ce *CorruptionError
		switch {
		case err == nil:
			rec.Payload = append([]byte(nil), rec.Payload...)
			good = append(good, rec)
			continue
		case errors.As(err, &ce):
			bad = append(bad, ce)
			if !ce.Framing() {
				continue
			}
		case !errors.Is(err, io.EOF):
			t.Fatal(err)
		}
		return good, bad
	}
}

func checkRecords(t testing.TB, recs []Record, base uint64) {
	t.Helper()
	for i, r := range recs {
		want := fmt.Sprintf("record-%d-", r.ID-base)
		if !bytes.HasPrefix(r.Payload, []byte(want)) || r.ID != base+uint64(i) {
			t.Fatalf("record %d: id %d payload %q", i, r.ID, r.Payload)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := Record{ID: 42, EnqueuedAt: 1, ExpiresAt: 2, Payload: []byte("hello")}
	b := AppendRecord(nil, &in)
	out, err := DecodeRecord(b)
	if err != nil || out.ID != 42 || out.EnqueuedAt != 1 || out.ExpiresAt != 2 || string(out.Payload) != "hello" || out.More {
		t.Fatalf("%+v %v", out, err)
	}
	in.More = true
	if out, err := DecodeRecord(AppendRecord(nil, &in)); err != nil || !out.More || out.ID != 42 {
		t.Fatalf("More lost in a round trip: %+v %v", out, err)
	}
	in.Key = []byte("order-17")
	kb := AppendRecord(nil, &in)
	if len(kb) != in.EncodedSize() {
		t.Fatalf("keyed record: %d bytes, EncodedSize %d", len(kb), in.EncodedSize())
	}
	if out, err := DecodeRecord(kb); err != nil || string(out.Key) != "order-17" || string(out.Payload) != "hello" || !out.More {
		t.Fatalf("keyed record round trip: %+v %v", out, err)
	}
	for _, bad := range []byte{0, MaxKeyLen + 1, 200} {
		c := bytes.Clone(kb)
		c[HeaderSize] = bad
		binary.LittleEndian.PutUint32(c, crc32.Checksum(c[4:], castagnoli))
		if _, err := DecodeRecord(c); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("key length %d accepted", bad)
		}
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 1
		if _, err := DecodeRecord(c); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flip at byte %d not detected", i)
		}
	}
	in.VisibleAt = 1_700_000_000_123
	db := AppendRecord(nil, &in)
	if len(db) != in.EncodedSize() {
		t.Fatalf("delayed record: %d bytes, EncodedSize %d", len(db), in.EncodedSize())
	}
	if out, err := DecodeRecord(db); err != nil || out.VisibleAt != in.VisibleAt || string(out.Key) != "order-17" || string(out.Payload) != "hello" || !out.More {
		t.Fatalf("delayed record round trip: %+v %v", out, err)
	}
	for _, c := range [][]byte{db[:HeaderSize+4], func() []byte {
		c := bytes.Clone(db)
		clear(c[HeaderSize : HeaderSize+8]) // a delay flag with no time
		return c
	}()} {
		c = bytes.Clone(c)
		binary.LittleEndian.PutUint32(c, crc32.Checksum(c[4:], castagnoli))
		if _, err := DecodeRecord(c); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bad delayed record %x accepted", c)
		}
	}
}

// corruption is one way to damage the newest segment, with what Repair must
// keep afterwards.
type corruption struct {
	name   string
	damage func(t *testing.T, path string, offs []int64, size int64)
	keep   int // records that must survive (of 10)
	// zeros: the damage leaves only zero bytes after the kept records,
	// which Repair cuts as preallocated space, without a .broken copy.
	zeros bool
}

func appendBytes(b byte, n int) func(t *testing.T, path string, offs []int64, size int64) {
	return func(t *testing.T, path string, _ []int64, _ int64) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(bytes.Repeat([]byte{b}, n)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRepairTornTails(t *testing.T) {
	const n = 10
	var cases []corruption
	// The last record cut at every byte offset inside it.
	dir0 := t.TempDir()
	offs0, size0 := writeSegment(t, dir0, 1, n, false)
	for cut := offs0[n-1] + 1; cut < size0; cut++ {
		cases = append(cases, corruption{
			name: fmt.Sprintf("torn_tail_at_%d", cut),
			damage: func(t *testing.T, path string, _ []int64, _ int64) {
				if err := os.Truncate(path, cut); err != nil {
					t.Fatal(err)
				}
			},
			keep: n - 1,
		})
	}
	for _, z := range []int{1, 2, 7, 512, 4096} {
		cases = append(cases, corruption{name: fmt.Sprintf("zero_tail_%d", z), damage: appendBytes(0, z), keep: n, zeros: true})
		cases = append(cases, corruption{name: fmt.Sprintf("ff_tail_%d", z), damage: appendBytes(0xFF, z), keep: n})
	}
	cases = append(cases,
		corruption{name: "bad_crc_last_record", damage: func(t *testing.T, path string, _ []int64, size int64) {
			flipByte(t, path, size-1)
		}, keep: n - 1},
		corruption{name: "zeroed_last_page", damage: func(t *testing.T, path string, offs []int64, size int64) {
			f, _ := os.OpenFile(path, os.O_WRONLY, 0)
			defer f.Close()
			f.WriteAt(make([]byte, size-offs[n-3]), offs[n-3])
		}, keep: n - 3, zeros: true},
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			offs, size := writeSegment(t, dir, 1, n, false)
			path := DataPath(dir, 1)
			tc.damage(t, path, offs, size)
			res, repaired, err := Repair(dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			if tc.zeros {
				if repaired || res.Cut == 0 || res.Torn() {
					t.Fatalf("zero tail: repaired %v, cut %d, torn %v", repaired, res.Cut, res.Torn())
				}
				if _, err := os.Stat(BrokenPath(dir, 1, res.ValidSize)); err == nil {
					t.Fatal("zero bytes kept in a .broken file")
				}
				if fi, err := os.Stat(path); err != nil || fi.Size() != res.ValidSize {
					t.Fatalf("zero tail not cut: %v %v", fi.Size(), err)
				}
			} else if !repaired && tc.keep < n {
				t.Fatal("not repaired")
			}
			if res.Records != uint64(tc.keep) || len(res.Corrupt) != 0 {
				t.Fatalf("kept %d records, want %d; corrupt %v", res.Records, tc.keep, res.Corrupt)
			}
			good, bad := readAll(t, dir, 1)
			if len(good) != tc.keep || len(bad) != 0 {
				t.Fatalf("after repair: %d good, bad %v", len(good), bad)
			}
			checkRecords(t, good, 1)
			if repaired {
				if _, err := os.Stat(BrokenPath(dir, 1, res.ValidSize)); err != nil {
					t.Fatalf("cut bytes not kept: %v", err)
				}
			}
			// Appending goes on with the next id; tidwall/wal agrees.
			w, err := OpenWriter(dir, res)
			if err != nil {
				t.Fatal(err)
			}
			next := w.NextID()
			if next != uint64(tc.keep)+1 {
				t.Fatalf("next id %d", next)
			}
			if err := w.Append([]Record{{ID: next, Payload: []byte(fmt.Sprintf("record-%d-", next-1))}}); err != nil {
				t.Fatal(err)
			}
			w.Close()
			good, bad = readAll(t, dir, 1)
			if len(good) != tc.keep+1 || len(bad) != 0 {
				t.Fatalf("after append: %d good, bad %v", len(good), bad)
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0x20
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestMidSegmentCorruptionIsReportedNotServed(t *testing.T) {
	tests := []struct {
		name        string
		record      int   // which record to damage
		within      int64 // byte offset within the record's frame
		wantGood    int
		wantFraming bool
		wantKind    CorruptionKind
	}{
		{"bit_flip_payload", 4, 40, 9, false, CorruptRecord},
		{"bit_flip_header_id", 4, 8, 9, false, CorruptRecord},
		{"bit_flip_length", 4, 0, 4, true, CorruptFraming}, // framing lost: the rest is unreadable
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			offs, _ := writeSegment(t, dir, 1, 10, true)
			path := DataPath(dir, 1)
			data, _ := os.ReadFile(path)
			if tc.within == 0 {
				data[offs[tc.record]] = 0xFF // a length that runs past the end
				data[offs[tc.record]+1] = 0xFF
			} else {
				data[offs[tc.record]+tc.within] ^= 0x01
			}
			os.WriteFile(path, data, 0o640)
			good, bad := readAll(t, dir, 1)
			if len(good) != tc.wantGood || len(bad) != 1 {
				t.Fatalf("%d good, %d bad", len(good), len(bad))
			}
			if bad[0].Offset != offs[tc.record] || bad[0].Segment != 1 || bad[0].Framing() != tc.wantFraming || bad[0].ID != uint64(tc.record+1) {
				t.Fatalf("corruption reported as %+v, want offset %d", bad[0], offs[tc.record])
			}
			for _, g := range good {
				if g.ID == uint64(tc.record+1) {
					t.Fatal("corrupt record served")
				}
			}
			if !errors.Is(bad[0], ErrCorrupt) {
				t.Fatal("CorruptionError does not wrap ErrCorrupt")
			}
			if bad[0].Kind != tc.wantKind || bad[0].Dir != dir || bad[0].Err == nil {
				t.Fatalf("kind %v dir %q err %v, want %v in %s", bad[0].Kind, bad[0].Dir, bad[0].Err, tc.wantKind, dir)
			}
			if tc.wantKind == CorruptRecord && !strings.Contains(bad[0].Error(), "crc32c") {
				t.Fatalf("a CRC failure says %q", bad[0].Error())
			}
			// Scan on the sealed segment: a payload flip is mid-log corruption.
			res, err := Scan(dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantFraming && (len(res.Corrupt) != 1 || res.Torn()) {
				t.Fatalf("scan: corrupt %v torn %v", res.Corrupt, res.Torn())
			}
		})
	}
}

func TestRotationListAndRemove(t *testing.T) {
	dir := t.TempDir()
	writeSegment(t, dir, 1, 5, true)
	writeSegment(t, dir, 6, 5, true)
	writeSegment(t, dir, 11, 2, false)
	bases, err := List(dir)
	if err != nil || len(bases) != 3 || bases[0] != 1 || bases[2] != 11 {
		t.Fatalf("%v %v", bases, err)
	}
	sum, ok := ReadMeta(dir, 6)
	if !ok || sum.Records != 5 || sum.LastID() != 10 || sum.MaxExpiry != NeverExpires {
		t.Fatalf("meta %+v %v", sum, ok)
	}
	if err := Remove(dir, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Dir(dir, 1)); !os.IsNotExist(err) {
		t.Fatalf("segment dir still there: %v", err)
	}
	// A deletion interrupted by a crash is finished by List.
	if err := os.Rename(Dir(dir, 6), Dir(dir, 6)+deletingSuffix); err != nil {
		t.Fatal(err)
	}
	bases, err = List(dir)
	if err != nil || len(bases) != 1 || bases[0] != 11 {
		t.Fatalf("%v %v", bases, err)
	}
	if _, err := os.Stat(Dir(dir, 6) + deletingSuffix); !os.IsNotExist(err) {
		t.Fatal("half-deleted segment left")
	}
}

func TestMetaMismatchFallsBackToScan(t *testing.T) {
	dir := t.TempDir()
	writeSegment(t, dir, 1, 3, true)
	appendBytes(0, 10)(t, DataPath(dir, 1), nil, 0)
	if _, ok := ReadMeta(dir, 1); ok {
		t.Fatal("meta trusted although the file size changed")
	}
	os.WriteFile(filepath.Join(Dir(dir, 1), metaFile), []byte("{garbage"), 0o640)
	if _, ok := ReadMeta(dir, 1); ok {
		t.Fatal("garbage meta trusted")
	}
}

// faultyLog makes the Writer's file fail by closing it underneath; a
// Recover must cut the file back and later appends must work.
func TestWriterRecoverAfterFailedWrite(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ok1 := []Record{{ID: 1, Payload: []byte("record-0-")}}
	if err := w.Append(ok1); err != nil {
		t.Fatal(err)
	}
	committed := w.Summary()
	if err := w.Append([]Record{{ID: 2, Payload: []byte("record-1-x")}}); err != nil {
		t.Fatal(err)
	}
	// Pretend the fsync of the second batch failed: the caller rolls back
	// to what it acknowledged.
	w.broken = errors.New("injected fsync failure")
	if err := w.Append([]Record{{ID: 3, Payload: []byte("x")}}); !errors.Is(err, ErrBroken) {
		t.Fatalf("broken writer accepted a write: %v", err)
	}
	if err := w.Recover(committed); err != nil {
		t.Fatal(err)
	}
	if w.NextID() != 2 {
		t.Fatalf("next id %d after rollback", w.NextID())
	}
	if err := w.Append([]Record{{ID: 2, Payload: []byte("record-1-y")}}); err != nil {
		t.Fatal(err)
	}
	good, bad := readAll(t, dir, 1)
	if len(good) != 2 || len(bad) != 0 || string(good[1].Payload) != "record-1-y" {
		t.Fatalf("%d good %v", len(good), bad)
	}
}

func BenchmarkAppend(b *testing.B) {
	payload := bytes.Repeat([]byte("m"), 100)
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			dir := b.TempDir()
			w, err := Create(dir, 1)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			recs := make([]Record, size)
			b.SetBytes(int64(size * len(payload)))
			b.ReportAllocs()
			b.ResetTimer()
			next := uint64(1)
			for i := 0; i < b.N; i++ {
				for j := range recs {
					recs[j] = Record{ID: next, Payload: payload}
					next++
				}
				if err := w.Append(recs); err != nil {
					b.Fatal(err)
				}
				if err := w.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkRawWriteFsync is the floor under BenchmarkAppend: one write and
// one fsync of the same bytes on a plain os.File.
func BenchmarkRawWriteFsync(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := bytes.Repeat([]byte("m"), size*(100+HeaderSize+1))
			b.SetBytes(int64(size * 100))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

func TestCreateLeavesNoHalfSegment(t *testing.T) {
	dir := t.TempDir()
	// A crash during Create leaves only a .creating directory, which List
	// removes: never a segment directory without its records file.
	if err := os.Mkdir(Dir(dir, 7)+creatingSuffix, 0o750); err != nil {
		t.Fatal(err)
	}
	bases, err := List(dir)
	if err != nil || len(bases) != 0 {
		t.Fatalf("%v %v", bases, err)
	}
	w, err := Create(dir, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := os.Stat(DataPath(dir, 7)); err != nil {
		t.Fatal(err)
	}
}

// TestWriterPreallocation: the writer zero-fills ahead of its records; a
// reader stops at the zeros; a crash (the file closed without Close) leaves
// them, and Repair cuts them without a .broken copy; OpenWriter then goes on,
// and Seal leaves a file that ends at its last record.
func TestWriterPreallocation(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for i := range 5 {
		recs = append(recs, Record{ID: uint64(i + 1), EnqueuedAt: 1700000000000, Payload: []byte(fmt.Sprintf("record-%d-", i))})
	}
	if err := w.Append(recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	data := w.Summary().Bytes
	fi, err := os.Stat(DataPath(dir, 1))
	if err != nil || fi.Size() < data+64<<10 {
		t.Fatalf("file size %d (%v), want at least 64 KiB zero-filled after %d", fi.Size(), err, data)
	}
	size := fi.Size()
	good, bad := readAll(t, dir, 1)
	if len(good) != 5 || len(bad) != 0 {
		t.Fatalf("reader over the zero-filled file: %d good, bad %v", len(good), bad)
	}
	// A reader that follows the active segment up to its committed size
	// sees records written later where its buffer once held zeros.
	r, err := OpenReader(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetLimit(data)
	for i := 0; i < 5; i++ {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("past the limit: %v", err)
	}
	if err := w.Append([]Record{{ID: 6, Payload: []byte("record-5-")}}); err != nil {
		t.Fatal(err)
	}
	r.SetLimit(w.Summary().Bytes)
	if rec, err := r.Next(); err != nil || rec.ID != 6 || string(rec.Payload) != "record-5-" {
		t.Fatalf("record written after the reader stopped: %+v %v", rec, err)
	}
	data = w.Summary().Bytes
	w.f.Close() // a crash: no Close, no trim

	res, repaired, err := Repair(dir, 1)
	if err != nil || repaired || res.Records != 6 || res.ValidSize != data || res.ZeroTail != size-data || res.Cut != size-data {
		t.Fatalf("repair: %+v repaired=%v err=%v", res, repaired, err)
	}
	if _, err := os.Stat(BrokenPath(dir, 1, data)); err == nil {
		t.Fatal("zeros kept in a .broken file")
	}
	w, err = OpenWriter(dir, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append([]Record{{ID: 7, Payload: []byte("record-6-")}}); err != nil {
		t.Fatal(err)
	}
	sum, err := w.Seal()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(DataPath(dir, 1)); err != nil || fi.Size() != sum.Bytes {
		t.Fatalf("sealed file size %d, summary %d (%v)", fi.Size(), sum.Bytes, err)
	}
	good, bad = readAll(t, dir, 1)
	if len(good) != 7 || len(bad) != 0 {
		t.Fatalf("after seal: %d good, bad %v", len(good), bad)
	}
	checkRecords(t, good, 1)
}

// A segment that ends inside an atomic batch (records with More, without
// the batch's last) is torn at the batch's first record: Repair cuts the
// whole partial batch, wherever the write stopped, and keeps it in a
// .broken file. A whole batch is kept.
func TestRepairCutsPartialAtomicBatch(t *testing.T) {
	const singles, batch = 4, 5
	write := func(t *testing.T, dir string) (batchStart int64, ends []int64) {
		w, err := Create(dir, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i := range singles {
			if err := w.Append([]Record{{ID: uint64(i + 1), EnqueuedAt: 1, Payload: []byte(fmt.Sprintf("record-%d-", i))}}); err != nil {
				t.Fatal(err)
			}
		}
		batchStart = w.Summary().Bytes
		var recs []Record
		for i := range batch {
			recs = append(recs, Record{ID: uint64(singles + i + 1), EnqueuedAt: 2, More: i < batch-1,
				Payload: []byte(fmt.Sprintf("record-%d-batch", singles+i))})
		}
		if err := w.Append(recs); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// The end offset of each batch record, from a scan of the whole file.
		r, err := OpenReader(dir, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			if rec.ID > singles {
				if rec.More != (rec.ID < singles+batch) {
					t.Fatalf("record %d More=%v after a round trip", rec.ID, rec.More)
				}
				ends = append(ends, r.Offset())
			}
		}
		return batchStart, ends
	}

	dir := t.TempDir()
	batchStart, ends := write(t, dir)
	if len(ends) != batch {
		t.Fatalf("%d batch records read back, want %d", len(ends), batch)
	}
	// Every cut inside the batch: at a record boundary or inside a record.
	for cut := batchStart + 1; cut < ends[batch-1]; cut++ {
		dir := t.TempDir()
		write(t, dir)
		if err := os.Truncate(DataPath(dir, 1), cut); err != nil {
			t.Fatal(err)
		}
		res, repaired, err := Repair(dir, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !repaired || res.ValidSize != batchStart || res.Records != singles {
			t.Fatalf("cut at %d: repaired %v, valid size %d (batch starts at %d), %d records; want the partial batch gone",
				cut, repaired, res.ValidSize, batchStart, res.Records)
		}
		if res.Tail == nil || res.Tail.Offset != batchStart {
			t.Fatalf("cut at %d: tail %v, want the batch's first record at %d", cut, res.Tail, batchStart)
		}
		if _, err := os.Stat(BrokenPath(dir, 1, batchStart)); err != nil {
			t.Fatalf("cut at %d: partial batch not kept: %v", cut, err)
		}
		good, bad := readAll(t, dir, 1)
		if len(good) != singles || len(bad) != 0 {
			t.Fatalf("cut at %d: %d good records, bad %v after repair", cut, len(good), bad)
		}
	}
	// The whole batch stays, with zero-filled space after it.
	res, repaired, err := Repair(dir, 1)
	if err != nil || repaired || res.Records != singles+batch || res.Tail != nil {
		t.Fatalf("whole batch: repaired %v, %d records, tail %v, %v", repaired, res.Records, res.Tail, err)
	}
}

// Append refuses a key the format cannot hold, writes nothing of that
// batch, and keeps working.
func TestAppendRefusesKeyOverMaxKeyLen(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	long := bytes.Repeat([]byte("k"), MaxKeyLen+1)
	if err := w.Append([]Record{{ID: 1, Payload: []byte("a")}, {ID: 2, Key: long, Payload: []byte("b")}}); !errors.Is(err, ErrKeyTooLong) {
		t.Fatalf("Append with a %d-byte key: %v, want ErrKeyTooLong", len(long), err)
	}
	if w.NextID() != 1 || w.Broken() != nil {
		t.Fatalf("after the refusal: next id %d, broken %v", w.NextID(), w.Broken())
	}
	max := bytes.Repeat([]byte("m"), MaxKeyLen)
	if err := w.Append([]Record{{ID: 1, Key: max, Payload: []byte("c")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	good, bad := readAll(t, dir, 1)
	if len(good) != 1 || len(bad) != 0 || !bytes.Equal(good[0].Key, max) || string(good[0].Payload) != "c" {
		t.Fatalf("read back %d good %v", len(good), bad)
	}
}

// FrameSize is the bytes Append writes for a record.
func TestFrameSizeIsWhatAppendWrites(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	id := uint64(1)
	for _, payload := range []int{1, 90, 100, 200, 20000} {
		for _, key := range []int{0, 1, MaxKeyLen} {
			for _, delayed := range []bool{false, true} {
				r := Record{ID: id, Payload: make([]byte, payload), Key: bytes.Repeat([]byte("k"), key)}
				if delayed {
					r.VisibleAt = 5
				}
				before := w.Summary().Bytes
				if err := w.Append([]Record{r}); err != nil {
					t.Fatal(err)
				}
				if got, want := w.Summary().Bytes-before, int64(FrameSize(payload, key, delayed)); got != want {
					t.Fatalf("payload %d key %d delayed %v: wrote %d bytes, FrameSize %d", payload, key, delayed, got, want)
				}
				id++
			}
		}
	}
}

// Frames yields every frame in order, each ending where the next starts,
// good and bad alike, and stops after a framing error.
func TestFramesWalk(t *testing.T) {
	dir := t.TempDir()
	offs, _ := writeSegment(t, dir, 1, 6, true)
	path := DataPath(dir, 1)
	data, _ := os.ReadFile(path)
	data[offs[2]+40] ^= 1 // record 3: a bad CRC, reading goes on
	data[offs[5]] = 0xFF  // record 6: a length past the end, reading stops
	data[offs[5]+1] = 0xFF
	os.WriteFile(path, data, 0o640)
	r, err := OpenReader(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var kinds []string
	next := int64(0)
	for f, err := range r.Frames() {
		if err != nil {
			t.Fatal(err)
		}
		if f.Offset != next {
			t.Fatalf("frame at %d, the previous one ended at %d", f.Offset, next)
		}
		next = f.End
		if f.Err != nil {
			kinds = append(kinds, f.Err.Kind.String())
			continue
		}
		kinds = append(kinds, fmt.Sprintf("good %d", f.Record.ID))
	}
	want := []string{"good 1", "good 2", "record", "good 4", "good 5", "framing"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("frames %v, want %v", kinds, want)
	}
}

// TailTracker: the readable part ends after the last record that ends its
// batch; bad frames or a batch cut short after it are a torn tail.
func TestTailTracker(t *testing.T) {
	good := func(off, end int64, more bool) Frame {
		return Frame{Offset: off, End: end, Record: Record{More: more}}
	}
	bad := func(off, end int64) Frame {
		return Frame{Offset: off, End: end, Err: &CorruptionError{Kind: CorruptRecord}}
	}
	for _, tc := range []struct {
		name     string
		frames   []Frame
		valid    int64
		torn     bool
		cutBatch bool
	}{
		{"clean", []Frame{good(0, 10, false), good(10, 20, false)}, 20, false, false},
		{"bad in the middle", []Frame{good(0, 10, false), bad(10, 15), good(15, 20, false)}, 20, false, false},
		{"bad at the end", []Frame{good(0, 10, false), bad(10, 15)}, 10, true, false},
		{"batch cut short", []Frame{good(0, 10, false), good(10, 20, true), good(20, 30, true)}, 10, true, true},
		{"bad then a batch cut short", []Frame{good(0, 10, false), bad(10, 15), good(15, 20, true)}, 10, true, true},
		{"batch ended", []Frame{good(0, 10, true), good(10, 20, false)}, 20, false, false},
	} {
		tr := NewTailTracker(0)
		for _, f := range tc.frames {
			tr.Add(f)
		}
		torn, cut := tr.Torn()
		if tr.ValidEnd() != tc.valid || torn != tc.torn || cut != tc.cutBatch {
			t.Errorf("%s: valid %d torn %v cut %v, want %d %v %v", tc.name, tr.ValidEnd(), torn, cut, tc.valid, tc.torn, tc.cutBatch)
		}
	}
}
