package segment

import (
	"bytes"
	"os"
	"runtime"
	"testing"
)

// TestRepairHugeSparseTail: the newest segment extended far past its
// records (truncate(2) to 4 GiB: a hole, which costs no disk) with some
// garbage in it must be repaired with bounded memory and keep at most
// MaxKeptTail bytes, never read whole into memory.
func TestRepairHugeSparseTail(t *testing.T) {
	const size = 4 << 30
	cases := map[string]func(t *testing.T, f *os.File, valid int64){
		"garbage_at_end": func(t *testing.T, f *os.File, _ int64) {
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xAB}, 100), size-100); err != nil {
				t.Fatal(err)
			}
		},
		"garbage_at_start_and_end": func(t *testing.T, f *os.File, valid int64) {
			if _, err := f.WriteAt([]byte{0xFF, 0x01, 0x7E}, valid); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("tail"), size-4); err != nil {
				t.Fatal(err)
			}
		},
		"garbage_in_the_middle": func(t *testing.T, f *os.File, valid int64) {
			if _, err := f.WriteAt(bytes.Repeat([]byte{0x05}, 5000), size/2); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			_, valid := writeSegment(t, dir, 1, 10, false)
			path := DataPath(dir, 1)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(size); err != nil {
				t.Skipf("cannot make a 4 GiB sparse file here: %v", err)
			}
			damage(t, f, valid)
			f.Close()

			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			res, repaired, err := Repair(dir, 1)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("Repair allocated %d KiB in all (heap in use %d -> %d KiB)", alloc>>10, before.HeapInuse>>10, after.HeapInuse>>10)
			if alloc > 8<<20 {
				t.Fatalf("Repair allocated %d bytes for a 4 GiB sparse tail", alloc)
			}
			if !repaired || res.ValidSize != valid || res.Records != 10 || res.Cut != size-valid || res.Kept != MaxKeptTail {
				t.Fatalf("repaired %v valid %d (want %d) records %d cut %d kept %d", repaired, res.ValidSize, valid, res.Records, res.Cut, res.Kept)
			}
			if len(res.Corrupt) != 0 {
				t.Fatalf("corruption reported before the last good record: %v", res.Corrupt)
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != valid {
				t.Fatalf("segment not cut: %v %v", fi, err)
			}
			fi, err := os.Stat(BrokenPath(dir, 1, valid))
			if err != nil || fi.Size() != MaxKeptTail {
				t.Fatalf(".broken file: %v, %v (want %d bytes)", fi, err, MaxKeptTail)
			}
			good, bad := readAll(t, dir, 1)
			if len(good) != 10 || len(bad) != 0 {
				t.Fatalf("after repair: %d good, bad %v", len(good), bad)
			}
		})
	}
}

// TestScanZeroRunThenGarbage: a long run of zero bytes followed by other
// bytes is one torn tail, found in one pass (it was one pass over the rest
// of the file per zero byte), and Scan lists a bounded number of bad
// records however many garbage frames follow.
func TestScanZeroRunThenGarbage(t *testing.T) {
	dir := t.TempDir()
	_, valid := writeSegment(t, dir, 1, 10, false)
	f, err := os.OpenFile(DataPath(dir, 1), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 1 MiB of zeros, then 200k one-byte frames (0x01 0x00: length 1).
	f.Write(make([]byte, 1<<20))
	f.Write(bytes.Repeat([]byte{0x01, 0x00}, 200000))
	f.Close()
	res, err := Scan(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.ValidSize != valid || res.Records != 10 || res.Tail == nil || res.Tail.Offset != valid || !res.Torn() {
		t.Fatalf("valid %d (want %d) records %d tail %v", res.ValidSize, valid, res.Records, res.Tail)
	}
}
