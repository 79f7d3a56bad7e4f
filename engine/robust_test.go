package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

// logBuf collects an engine's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
func (l *logBuf) logger() *slog.Logger        { return slog.New(slog.NewTextHandler(l, nil)) }

// A keys file line with an impossible count (or id) is skipped and
// logged: a repeated batch POST with its key must not answer a billion
// ids (the API makes a slice of them), nor is its key a duplicate.
func TestKeysFileBadCountSkipped(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir}
	e := openT(t, opts)
	enq(t, e, "q", "first", EnqueueOptions{})
	e.Close()
	now := time.Now().UnixMilli()
	var lines strings.Builder
	for _, l := range []struct {
		key string
		id  uint64
		n   int64
	}{
		{"huge", 1, 1 << 40}, {"negative", 1, -3}, {"over", 1, maxKeyedBatch + 1},
		{"zero-id", 0, 2}, {"wraps", 1<<64 - 2, 5}, {"ok", 1, 3}, {"ok-single", 1, 0},
	} {
		fmt.Fprintf(&lines, `{"key":%q,"id":%d,"n":%d,"at":%d}`+"\n", l.key, l.id, l.n, now)
	}
	if err := os.WriteFile(filepath.Join(dir, "q", format.KeysFile), []byte(lines.String()), 0o640); err != nil {
		t.Fatal(err)
	}
	var logs logBuf
	opts.Logger = logs.logger()
	e = openT(t, opts)
	for _, key := range []string{"huge", "negative", "over", "zero-id", "wraps"} {
		first, n, err := e.EnqueueBatch(context.Background(), "q", batchOf("a", "b"), BatchOptions{Key: key})
		if err != nil || n != 2 || first < 2 {
			t.Errorf("batch with the key %q of a bad line = first %d n %d %v; want a new batch of 2", key, first, n, err)
		}
	}
	if first, n, err := e.EnqueueBatch(context.Background(), "q", batchOf("a"), BatchOptions{Key: "ok"}); !errors.Is(err, ErrDuplicate) || first != 1 || n != 3 {
		t.Errorf("batch with a good line's key = %d %d %v, want 1 3 ErrDuplicate", first, n, err)
	}
	if id, err := e.Enqueue(context.Background(), "q", []byte("a"), EnqueueOptions{Key: "ok-single"}); !errors.Is(err, ErrDuplicate) || id != 1 {
		t.Errorf("enqueue with a good line's key = %d %v, want 1 ErrDuplicate", id, err)
	}
	if !strings.Contains(logs.String(), "impossible ids or counts") || !strings.Contains(logs.String(), "lines=5") {
		t.Errorf("the bad lines were not logged:\n%s", logs.String())
	}
}

// writeCursorAt writes a valid cursor file holding readID.
func writeCursorAt(t *testing.T, qdir string, readID uint64) {
	t.Helper()
	var raw [format.CursorFileSize]byte
	format.EncodeCursor(raw[:], 1, readID)
	format.EncodeCursor(raw[format.CursorSlotSize:], 0, readID)
	if err := os.WriteFile(filepath.Join(qdir, format.CursorFile), raw[:], 0o640); err != nil {
		t.Fatal(err)
	}
}

// A cursor, hwm or segment id near 2^64 would make ids wrap around to
// old ones: the queue is refused at open (ErrUnavailable, logged), its
// files untouched, and the other queues are served.
func TestIDRangeFilesMakeTheQueueUnavailable(t *testing.T) {
	cases := map[string]func(t *testing.T, qdir string){
		"cursor_near_2^64": func(t *testing.T, qdir string) { writeCursorAt(t, qdir, 1<<64-3) },
		"cursor_at_2^63":   func(t *testing.T, qdir string) { writeCursorAt(t, qdir, MaxID) },
		"hwm_near_2^64": func(t *testing.T, qdir string) {
			if err := writeHWM(qdir, 1<<64-10); err != nil {
				t.Fatal(err)
			}
		},
		"hwm_at_2^63": func(t *testing.T, qdir string) {
			if err := writeHWM(qdir, MaxID); err != nil {
				t.Fatal(err)
			}
		},
		"segment_near_2^64": func(t *testing.T, qdir string) {
			w, err := segment.Create(qdir, 1<<64-2)
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir}
			e := openT(t, opts)
			enq(t, e, "bad", "kept", EnqueueOptions{})
			enq(t, e, "good", "fine", EnqueueOptions{})
			e.Close()
			qdir := filepath.Join(dir, "bad")
			damage(t, qdir)
			before := treeOf(t, qdir)
			var logs logBuf
			opts.Logger = logs.logger()
			e = openT(t, opts)
			if _, err := e.Enqueue(context.Background(), "bad", []byte("x"), EnqueueOptions{}); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Enqueue to the queue = %v, want ErrUnavailable", err)
			}
			if _, _, err := e.Dequeue(context.Background(), "bad", 0); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Dequeue = %v, want ErrUnavailable", err)
			}
			if m, ok := deq(t, e, "good"); !ok || string(m.Body) != "fine" {
				t.Fatalf("the other queue: %q %v", m.Body, ok)
			}
			if !strings.Contains(logs.String(), "id range") {
				t.Errorf("not logged:\n%s", logs.String())
			}
			e.Close()
			if after := treeOf(t, qdir); after != before {
				t.Errorf("files of the refused queue changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

// treeOf lists the files under dir with their sizes and modes.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		data := []byte(nil)
		if fi.Mode().IsRegular() {
			data, _ = os.ReadFile(p)
		}
		fmt.Fprintf(&b, "%s %v %d %x\n", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size(), data)
		return nil
	})
	return b.String()
}

// A queue path that is a symlink (or a file) is refused, never followed,
// both when it is there at start and when it appears before the queue's
// first use: ErrUnavailable, logged once, the target untouched.
func TestSymlinkedQueueDirRefused(t *testing.T) {
	for _, when := range []string{"at_start", "at_first_use"} {
		t.Run(when, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			var logs logBuf
			opts := Options{Dir: dir, Logger: logs.logger()}
			// A real queue elsewhere, its directory linked into the data dir.
			o := openT(t, Options{Dir: outside})
			enq(t, o, "target", "outside", EnqueueOptions{})
			o.Close()
			target := filepath.Join(outside, "target")
			before := treeOf(t, target)
			var e *Engine
			link := func() {
				if err := os.Symlink(target, filepath.Join(dir, "linked")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "afile"), []byte("x"), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			if when == "at_start" {
				link()
				e = openT(t, opts)
			} else {
				e = openT(t, opts)
				link()
			}
			for range 2 {
				for _, q := range []string{"linked", "afile"} {
					if _, err := e.Enqueue(context.Background(), q, []byte("x"), EnqueueOptions{}); !errors.Is(err, ErrUnavailable) {
						t.Fatalf("Enqueue to %s = %v, want ErrUnavailable", q, err)
					}
					if _, _, err := e.Dequeue(context.Background(), q, 0); !errors.Is(err, ErrUnavailable) {
						t.Fatalf("Dequeue from %s = %v, want ErrUnavailable", q, err)
					}
				}
			}
			enq(t, e, "other", "fine", EnqueueOptions{})
			e.Close()
			for _, q := range []string{"linked", "afile"} {
				if n := strings.Count(logs.String(), "queue="+q); n != 1 {
					t.Errorf("queue %s logged %d times, want once:\n%s", q, n, logs.String())
				}
			}
			if after := treeOf(t, target); after != before {
				t.Errorf("the symlink's target changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

// The newest segment extended to 4 GiB past its records (a sparse file:
// truncate(2)) with garbage at its end: the engine opens with bounded
// memory, serves the records, keeps at most segment.MaxKeptTail bytes.
func TestOpenWithHugeSparseTornTail(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir}
	e := openT(t, opts)
	for i := range 5 {
		enq(t, e, "q", fmt.Sprint("m", i), EnqueueOptions{})
	}
	e.Close()
	qdir := filepath.Join(dir, "q")
	bases, err := segment.List(qdir)
	if err != nil || len(bases) == 0 {
		t.Fatal(bases, err)
	}
	path := segment.DataPath(qdir, bases[len(bases)-1])
	fi, _ := os.Stat(path)
	valid := fi.Size()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 << 30
	if err := f.Truncate(size); err != nil {
		t.Skipf("cannot make a 4 GiB sparse file here: %v", err)
	}
	f.WriteAt(bytes.Repeat([]byte{0xEE}, 4096), size-4096)
	f.Close()

	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	var logs logBuf
	opts.Logger = logs.logger()
	e = openT(t, opts)
	runtime.ReadMemStats(&m1)
	t.Logf("Open allocated %d KiB; heap obtained from the OS %d -> %d MiB", (m1.TotalAlloc-m0.TotalAlloc)>>10, m0.HeapSys>>20, m1.HeapSys>>20)
	if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 64<<20 {
		t.Fatalf("Open allocated %d bytes", alloc)
	}
	for i := range 5 {
		if m, ok := deq(t, e, "q"); !ok || string(m.Body) != fmt.Sprint("m", i) {
			t.Fatalf("message %d: %q %v", i, m.Body, ok)
		}
	}
	enq(t, e, "q", "after", EnqueueOptions{})
	bfi, err := os.Stat(segment.BrokenPath(qdir, bases[len(bases)-1], valid))
	if err != nil || bfi.Size() != segment.MaxKeptTail {
		t.Fatalf(".broken file: %v %v, want %d bytes", bfi, err, segment.MaxKeptTail)
	}
	if l := logs.String(); !strings.Contains(l, fmt.Sprintf("cut_bytes=%d kept_bytes=%d", size-valid, segment.MaxKeptTail)) {
		t.Errorf("the log does not say what was cut and kept:\n%s", l)
	}
}
