package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

// fill enqueues n messages "m0".."m{n-1}" with small segments, consumes
// `read` of them, closes the engine or leaves it to a simulated crash, and
// returns the ids.
func fill(t *testing.T, dir string, n, read int) []uint64 {
	t.Helper()
	e := openT(t, Options{Dir: dir, SegmentBytes: 256})
	var ids []uint64
	for i := 0; i < n; i++ {
		ids = append(ids, enq(t, e, "q", fmt.Sprintf("m%d", i), EnqueueOptions{}))
	}
	for i := 0; i < read; i++ {
		deq(t, e, "q")
	}
	e.Close()
	return ids
}

// crashHWM makes the hwm look like a crash left it: the reserved bound, not
// the exact next id a clean close writes.
func crashHWM(t *testing.T, dir string, ids []uint64) {
	t.Helper()
	if err := writeHWM(filepath.Join(dir, "q"), ids[len(ids)-1]+hwmStep); err != nil {
		t.Fatal(err)
	}
}

func drain(t *testing.T, e *Engine) []Message {
	t.Helper()
	var out []Message
	for {
		m, ok := deq(t, e, "q")
		if !ok {
			return out
		}
		out = append(out, m)
	}
}

// TestRecoveryTable damages a closed queue in the ways STYLE.md lists and
// checks it reopens, serves no bad record and reuses no id.
func TestRecoveryTable(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(t *testing.T, qdir string, ids []uint64)
		minServe int // messages still served (of 20, 5 consumed)
		maxServe int
	}{
		{"torn_tail", func(t *testing.T, qdir string, ids []uint64) {
			bases, _ := segment.List(qdir)
			p := segment.DataPath(qdir, bases[len(bases)-1])
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-3)
		}, 14, 14},
		{"zero_tail", func(t *testing.T, qdir string, ids []uint64) {
			bases, _ := segment.List(qdir)
			f, _ := os.OpenFile(segment.DataPath(qdir, bases[len(bases)-1]), os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 4096))
			f.Close()
		}, 15, 15},
		{"missing_newest_segment", func(t *testing.T, qdir string, ids []uint64) {
			bases, _ := segment.List(qdir)
			os.RemoveAll(segment.Dir(qdir, bases[len(bases)-1]))
		}, 1, 14},
		{"bit_flip_sealed", func(t *testing.T, qdir string, ids []uint64) {
			bases, _ := segment.List(qdir)
			p := segment.DataPath(qdir, bases[len(bases)-2])
			data, _ := os.ReadFile(p)
			data[len(data)-1] ^= 1
			os.WriteFile(p, data, 0o640)
		}, 14, 14},
		{"cursor_cut_short", func(t *testing.T, qdir string, ids []uint64) {
			os.Truncate(filepath.Join(qdir, format.CursorFile), 7)
		}, 15, 20}, // delivered again from the oldest segment still on disk
		{"hwm_garbage", func(t *testing.T, qdir string, ids []uint64) {
			os.WriteFile(filepath.Join(qdir, format.HWMFile), []byte("garbage"), 0o640)
		}, 15, 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ids := fill(t, dir, 20, 5)
			crashHWM(t, dir, ids)
			tc.damage(t, filepath.Join(dir, "q"), ids)
			e := openT(t, Options{Dir: dir, SegmentBytes: 256})
			got := drain(t, e)
			if len(got) < tc.minServe || len(got) > tc.maxServe {
				t.Fatalf("served %d messages, want %d..%d", len(got), tc.minServe, tc.maxServe)
			}
			for _, m := range got {
				var i int
				if _, err := fmt.Sscanf(string(m.Body), "m%d", &i); err != nil || ids[i] != m.ID {
					t.Fatalf("bad record served: id %d body %q", m.ID, m.Body)
				}
			}
			next := enq(t, e, "q", "new", EnqueueOptions{})
			if next <= ids[len(ids)-1] {
				t.Fatalf("id %d reused (last acknowledged %d)", next, ids[len(ids)-1])
			}
		})
	}
}

// TestCleanCloseKeepsIDsDense: a clean close writes the exact hwm, so ids
// do not jump on a planned restart.
func TestCleanCloseKeepsIDsDense(t *testing.T) {
	dir := t.TempDir()
	ids := fill(t, dir, 3, 0)
	e := openT(t, Options{Dir: dir})
	if id := enq(t, e, "q", "x", EnqueueOptions{}); id != ids[2]+1 {
		t.Fatalf("id %d after clean restart, want %d", id, ids[2]+1)
	}
}

func TestCorruptQueueDoesNotStopOthers(t *testing.T) {
	dir := t.TempDir()
	fill(t, dir, 3, 0)
	e := openT(t, Options{Dir: dir})
	enq(t, e, "other", "x", EnqueueOptions{})
	e.Close()
	// Make q unrecoverable: its newest segment is a file, not a directory.
	qdir := filepath.Join(dir, "q")
	bases, _ := segment.List(qdir)
	last := segment.Dir(qdir, bases[len(bases)-1])
	os.RemoveAll(last)
	os.Mkdir(last, 0o750)
	os.Mkdir(filepath.Join(last, "00000000000000000001"), 0o750) // a dir where the records file should be
	e = openT(t, Options{Dir: dir})
	if _, err := e.Enqueue(context.Background(), "q", []byte("x"), EnqueueOptions{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if m, ok := deq(t, e, "other"); !ok || string(m.Body) != "x" {
		t.Fatal("other queue not served")
	}
}

// TestBacklogWithEmptyActiveSegment is defect D2 of docs/RELIABILITY.md:
// with [sealed backlog, empty active] segments, reads from disk must not
// skip the backlog.
func TestBacklogWithEmptyActiveSegment(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, Now: clk.Now, SegmentBytes: 512, SegmentAge: time.Minute, CompactInterval: 5 * time.Millisecond})
	var ids []uint64
	for i := 0; i < 40; i++ {
		ids = append(ids, enq(t, e, "q", fmt.Sprintf("m%d", i), EnqueueOptions{}))
	}
	clk.Advance(2 * time.Minute) // the compactor seals the aged active segment
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.RLock()
		q := e.queues["q"]
		e.mu.RUnlock()
		q.mu.Lock()
		empty := q.segs[len(q.segs)-1].Records == 0
		q.mu.Unlock()
		if empty {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("active segment not rotated")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, id := range ids {
		m, ok := deq(t, e, "q")
		if !ok || m.ID != id {
			t.Fatalf("message %d: ok=%v id %d, want %d", i, ok, m.ID, id)
		}
		time.Sleep(time.Millisecond) // let the compactor delete consumed segments meanwhile
	}
}
