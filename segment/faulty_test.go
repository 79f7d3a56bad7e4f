package segment

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// faultyFile wraps a Writer's File and fails the calls its hooks say to,
// as Prometheus' wlog tests do with faultySegmentFile.
type faultyFile struct {
	File
	// write is asked before each WriteAt: a non-nil error fails it after
	// writing short bytes of p (0 for none).
	write func(p []byte, off int64) (short int, err error)
	sync  error // Sync and Datasync fail with it
	trunc error // Truncate fails with it
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if f.write != nil {
		if short, err := f.write(p, off); err != nil {
			n, _ := f.File.WriteAt(p[:short], off)
			return n, err
		}
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Sync() error {
	if f.sync != nil {
		return f.sync
	}
	return f.File.Sync()
}

func (f *faultyFile) Datasync() error {
	if f.sync != nil {
		return f.sync
	}
	return f.File.Datasync()
}

func (f *faultyFile) Truncate(size int64) error {
	if f.trunc != nil {
		return f.trunc
	}
	return f.File.Truncate(size)
}

// fault wraps w's file.
func fault(w *Writer) *faultyFile {
	f := &faultyFile{File: w.f}
	w.f = f
	return f
}

var errInjected = errors.New("injected I/O error")

// records writes ids from..to as one batch.
func records(from, to uint64) []Record {
	var rs []Record
	for id := from; id <= to; id++ {
		rs = append(rs, Record{ID: id, Payload: []byte(fmt.Sprintf("payload-%d", id))})
	}
	return rs
}

// notZeros reports whether p holds a non-zero byte: a batch's frames, not
// the zero-fill ahead of them.
func notZeros(p []byte) bool { return bytes.IndexFunc(p, func(r rune) bool { return r != 0 }) >= 0 }

func TestFaultyWriteBreaksAndRecovers(t *testing.T) {
	for _, short := range []int{0, 7} { // nothing written, or a torn batch
		t.Run(fmt.Sprintf("short=%d", short), func(t *testing.T) {
			dir := t.TempDir()
			w, err := Create(dir, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if err := w.Append(records(1, 3)); err != nil {
				t.Fatal(err)
			}
			acked := w.Summary()
			f := fault(w)
			f.write = func(p []byte, _ int64) (int, error) {
				if notZeros(p) {
					return short, errInjected
				}
				return 0, nil
			}
			if err := w.Append(records(4, 6)); !errors.Is(err, errInjected) {
				t.Fatalf("Append over a failing write: %v", err)
			}
			if err := w.Append(records(4, 6)); !errors.Is(err, ErrBroken) {
				t.Fatalf("Append on a broken Writer: %v", err)
			}
			if err := w.Sync(); !errors.Is(err, ErrBroken) {
				t.Fatalf("Sync on a broken Writer: %v", err)
			}
			if err := w.Recover(acked); err != nil { // reopens: the fault goes with the old file
				t.Fatal(err)
			}
			if err := w.Append(records(4, 5)); err != nil {
				t.Fatal(err)
			}
			if err := w.Sync(); err != nil {
				t.Fatal(err)
			}
			good, bad := readAll(t, dir, 1)
			if len(good) != 5 || len(bad) != 0 || string(good[4].Payload) != "payload-5" {
				t.Fatalf("after recovery: %d good, bad %v", len(good), bad)
			}
		})
	}
}

func TestFaultySyncDropsTheUnsyncedBatch(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Append(records(1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	synced := w.Summary()
	f := fault(w)
	if err := w.Append(records(3, 4)); err != nil {
		t.Fatal(err)
	}
	f.sync = errInjected
	if err := w.Sync(); !errors.Is(err, errInjected) {
		t.Fatalf("Sync: %v", err)
	}
	if w.Broken() == nil {
		t.Fatal("a failed fdatasync left the Writer sound: the kernel may have dropped the pages")
	}
	// The caller never acknowledged 3 and 4: it rolls back to what was
	// synced, and the ids are given again.
	if err := w.Recover(synced); err != nil {
		t.Fatal(err)
	}
	if w.NextID() != 3 {
		t.Fatalf("next id %d after the rollback", w.NextID())
	}
	if err := w.Append([]Record{{ID: 3, Payload: []byte("again")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	good, bad := readAll(t, dir, 1)
	if len(good) != 3 || len(bad) != 0 || string(good[2].Payload) != "again" {
		t.Fatalf("%d good, bad %v", len(good), bad)
	}
}

func TestFaultyPreallocationIsNotTheBatchs(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	f := fault(w)
	f.write = func(p []byte, _ int64) (int, error) {
		if !notZeros(p) {
			return 0, errInjected // zero-filling ahead fails, as on a full disk
		}
		return 0, nil
	}
	if err := w.Append(records(1, 3)); err != nil {
		t.Fatalf("Append with a failing zero-fill: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if w.FileSize() != w.Summary().Bytes {
		t.Fatalf("file size %d, records end at %d: with zero-fill failing the file holds records only", w.FileSize(), w.Summary().Bytes)
	}
	good, bad := readAll(t, dir, 1)
	if len(good) != 3 || len(bad) != 0 {
		t.Fatalf("%d good, bad %v", len(good), bad)
	}
}

func TestFaultySealAndClose(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Append(records(1, 2)); err != nil {
		t.Fatal(err)
	}
	f := fault(w)
	f.sync = errInjected
	if _, err := w.Seal(); !errors.Is(err, errInjected) {
		t.Fatalf("Seal with a failing fsync: %v", err)
	}
	if w.Broken() == nil {
		t.Fatal("a failed Seal left the Writer sound")
	}
	f.sync = nil
	f.trunc = errInjected
	if err := w.Recover(w.Summary()); err != nil { // Recover truncates through its own handle
		t.Fatal(err)
	}
	fault(w).sync = errInjected
	if err := w.Close(); !errors.Is(err, errInjected) {
		t.Fatalf("Close with a failing fsync: %v", err)
	}
	good, _ := readAll(t, dir, 1)
	if len(good) != 2 {
		t.Fatalf("%d good records after the failed close", len(good))
	}
}

// faultyReadFile fails reads at or past an offset, as a disk with a bad
// sector would.
type faultyReadFile struct {
	ReadFile
	from int64
}

func (f *faultyReadFile) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.from {
		n := 0
		if off < f.from {
			n, _ = f.ReadFile.ReadAt(p[:f.from-off], off)
		}
		return n, syscall.EIO
	}
	return f.ReadFile.ReadAt(p, off)
}

// A read error is an I/O error, never taken for corruption: the walk ends
// with it (and Scan, on the walk, fails with it, so Repair does not cut
// records that are merely unreadable now).
func TestFaultyReadIsAnIOErrorNotCorruption(t *testing.T) {
	dir := t.TempDir()
	offs, _ := writeSegment(t, dir, 1, 5, true)
	r, err := OpenReader(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.f = &faultyReadFile{ReadFile: r.f, from: offs[3] + 5}
	var good int
	var walkErr error
	for f, err := range r.Frames() {
		if err != nil {
			walkErr = err
			break
		}
		if f.Err != nil {
			t.Fatalf("a read error reported as corruption: %v", f.Err)
		}
		good++
	}
	// The Reader reads ahead in chunks, so records before the bad spot
	// may not be served either: what matters is that nothing is called
	// corrupt.
	if !errors.Is(walkErr, syscall.EIO) || good > 3 {
		t.Fatalf("walk: %d good, error %v; want at most 3 and EIO", good, walkErr)
	}
}
