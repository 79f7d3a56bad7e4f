package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
)

func enqKey(t *testing.T, e *Engine, key, body string) (uint64, bool) {
	t.Helper()
	id, err := e.Enqueue(context.Background(), "q", []byte(body), EnqueueOptions{Key: key})
	switch {
	case errors.Is(err, ErrDuplicate):
		return id, true
	case err != nil:
		t.Fatalf("Enqueue(key %q): %v", key, err)
	}
	return id, false
}

// A repeated key answers the original id and stores nothing, also when
// the repeats race the first.
func TestIdempotencyKeyDeduplicates(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	id, dup := enqKey(t, e, "order-1", "first")
	if dup {
		t.Fatal("first use of a key reported a duplicate")
	}
	if again, dup := enqKey(t, e, "order-1", "second"); !dup || again != id {
		t.Fatalf("repeat: id %d dup %v, want %d true", again, dup, id)
	}
	if other, dup := enqKey(t, e, "order-2", "x"); dup || other == id {
		t.Fatalf("another key: id %d dup %v", other, dup)
	}
	var wg sync.WaitGroup
	ids := make([]uint64, 20)
	dups := make([]bool, 20)
	for g := range ids {
		wg.Go(func() { ids[g], dups[g] = enqKey(t, e, "race", fmt.Sprint(g)) })
	}
	wg.Wait()
	stored := 0
	for g := range ids {
		if ids[g] != ids[0] {
			t.Fatalf("racing repeats got ids %v", ids)
		}
		if !dups[g] {
			stored++
		}
	}
	if stored != 1 {
		t.Fatalf("%d of 20 racing POSTs with one key were stored, want 1", stored)
	}
	if st, _ := e.Stats("q"); st.Depth != 3 {
		t.Fatalf("depth %d, want 3 (first, order-2, race)", st.Depth)
	}
	if m, _ := deq(t, e, "q"); string(m.Body) != "first" || m.ID != id {
		t.Fatalf("dequeued %q id %d, want the first body", m.Body, m.ID)
	}
}

// Keys survive a restart, from the segment and, once the segment is
// consumed and deleted, from the keys file; after the window they are
// forgotten and the key stores again.
func TestIdempotencyKeySurvivesRestartAndDeletion(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	opts := Options{Dir: dir, Now: clk.Now, SegmentBytes: 256, CompactInterval: 5 * time.Millisecond, DedupWindow: time.Minute}
	e := openT(t, opts)
	id, _ := enqKey(t, e, "k1", "keyed message")
	for i := range 10 {
		enq(t, e, "q", fmt.Sprintf("filler-%02d-%s", i, "xxxxxxxxxxxxxxxxxxxx"), EnqueueOptions{})
	}
	e.Close()

	e = openT(t, opts)
	if again, dup := enqKey(t, e, "k1", "retry after restart"); !dup || again != id {
		t.Fatalf("after restart (key in its segment): id %d dup %v, want %d true", again, dup, id)
	}
	// Consume everything, so that the key's segment is deleted.
	drainBodies(t, e, "q")
	qdir := filepath.Join(dir, "q")
	waitSegmentsPast(t, qdir, id)
	if _, err := os.Stat(filepath.Join(qdir, format.KeysFile)); err != nil {
		t.Fatalf("keys file: %v", err)
	}
	e.Close()

	e = openT(t, opts)
	if again, dup := enqKey(t, e, "k1", "retry after deletion"); !dup || again != id {
		t.Fatalf("after its segment was deleted: id %d dup %v, want %d true", again, dup, id)
	}
	e.Close()

	clk.Advance(61 * time.Second)
	e = openT(t, opts)
	if again, dup := enqKey(t, e, "k1", "after the window"); dup || again == id {
		t.Fatalf("after the window: id %d dup %v, want a new message", again, dup)
	}
}

// A batch POST's key stands for the whole batch: a repeat, even of another
// size, returns the original first id and count, also after a restart
// (found again from the batch's last record) and after its segment was
// deleted (from the keys file).
func TestIdempotencyKeyOnBatch(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 256, CompactInterval: 5 * time.Millisecond}
	e := openT(t, opts)
	ctx := context.Background()
	enq(t, e, "q", "before", EnqueueOptions{})
	first, n, err := e.EnqueueBatch(ctx, "q", batchOf("a", "b", "c"), BatchOptions{Key: "batch-1"})
	if err != nil || n != 3 {
		t.Fatalf("keyed batch: %d %d %v", first, n, err)
	}
	check := func(when string) {
		t.Helper()
		f, n, err := e.EnqueueBatch(ctx, "q", batchOf("x", "y", "z", "w", "v"), BatchOptions{Key: "batch-1"})
		if !errors.Is(err, ErrDuplicate) || f != first || n != 3 {
			t.Fatalf("%s: repeat gave %d %d %v, want %d 3 ErrDuplicate", when, f, n, err, first)
		}
	}
	check("running")
	for i := range 10 { // fill and rotate past the batch's segment
		enq(t, e, "q", fmt.Sprintf("filler-%02d-xxxxxxxxxxxxxxxxxxxx", i), EnqueueOptions{})
	}
	e.Close()
	e = openT(t, opts)
	check("after restart")
	if st, _ := e.Stats("q"); st.Depth != 14 {
		t.Fatalf("depth %d, want 14 (nothing stored by the repeats)", st.Depth)
	}
	drainBodies(t, e, "q")
	waitSegmentsPast(t, filepath.Join(dir, "q"), first+2)
	e.Close()
	e = openT(t, opts)
	check("after its segment was deleted")
}

// The keys file survives a line cut short by a crash (that key alone is
// forgotten) and is rewritten with its live lines, not appended to, once
// it is mostly stale or after such a line.
func TestIdempotencyKeysFileTornAndRewritten(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 256, CompactInterval: 5 * time.Millisecond}
	e := openT(t, opts)
	enq(t, e, "q", "first", EnqueueOptions{}) // creates the queue
	e.Close()
	qdir := filepath.Join(dir, "q")
	now := time.Now().UnixMilli()
	torn := fmt.Sprintf(`{"key":"kept","id":1,"at":%d}`+"\n"+`{"key":"cut","id":`, now)
	if err := os.WriteFile(filepath.Join(qdir, format.KeysFile), []byte(torn), 0o640); err != nil {
		t.Fatal(err)
	}
	e = openT(t, opts)
	if id, dup := enqKey(t, e, "kept", "retry"); !dup || id != 1 {
		t.Fatalf("key from the keys file: id %d dup %v, want 1 true", id, dup)
	}
	if _, dup := enqKey(t, e, "cut", "new"); dup {
		t.Fatal("the torn line's key was taken as a duplicate")
	}
	// Consume everything, so that the segment of "cut" goes and its key is
	// carried: by a rewrite, since the file ends in a torn line.
	drainBodies(t, e, "q")
	for i := range 10 {
		enq(t, e, "q", fmt.Sprintf("filler-%02d-xxxxxxxxxxxxxxxxxxxx", i), EnqueueOptions{})
	}
	drainBodies(t, e, "q")
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(qdir, format.KeysFile))
		if bytes.HasSuffix(data, []byte("\n")) { // no longer the torn file
			if bytes.Count(data, []byte("\n")) != 2 || !bytes.Contains(data, []byte(`"key":"kept"`)) || !bytes.Contains(data, []byte(`{"key":"cut","id":`)) {
				t.Fatalf("keys file after the carry:\n%s\nwant the two live keys, rewritten", data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key of the consumed segment was not carried:\n%s", data)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.Close()
	e = openT(t, opts)
	for _, k := range []string{"kept", "cut"} {
		if _, dup := enqKey(t, e, k, "again"); !dup {
			t.Errorf("key %q forgotten after the rewrite and a restart", k)
		}
	}
}

// drainBodies dequeues q until it is empty and returns the bodies in order.
func drainBodies(t *testing.T, e *Engine, q string) []string {
	t.Helper()
	var got []string
	for {
		m, ok := deq(t, e, q)
		if !ok {
			return got
		}
		got = append(got, string(m.Body))
	}
}

// waitSegmentsPast waits (5 s at most) until the compactor has deleted
// every segment of qdir holding id, so the oldest one left starts after it.
func waitSegmentsPast(t *testing.T, qdir string, id uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		bases := liveSegments(t, qdir)
		if len(bases) > 0 && bases[0] > id {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the segment of id %d was not deleted: segments %v", id, bases)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// liveSegments lists the segments of a queue directory that a running
// engine owns, read only: segment.List would also finish the deletion or
// creation of a segment under way (its .deleting and .creating
// directories), racing the engine's commit loop.
func liveSegments(t *testing.T, qdir string) []uint64 {
	t.Helper()
	ents, err := os.ReadDir(qdir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []uint64
	for _, ent := range ents {
		if base, err := strconv.ParseUint(ent.Name(), 10, 64); err == nil && ent.IsDir() && ent.Name() == segment.Name(base) {
			bases = append(bases, base)
		}
	}
	slices.Sort(bases)
	return bases
}

// A key over the format's limit is refused, not stored: the record stores
// the key's length in one byte and reads back at most MaxKeyLen, so keys
// of 129 and 256 bytes were once accepted and then lost at a reopen.
func TestKeyOverTheLimitRefused(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir})
	for _, n := range []int{MaxKeyLen + 1, 256, 1000} {
		key := strings.Repeat("k", n)
		if _, err := e.Enqueue(context.Background(), "q", []byte("x"), EnqueueOptions{Key: key}); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Enqueue with a %d-byte key: %v, want ErrInvalidKey", n, err)
		}
		if _, _, err := e.EnqueueBatch(context.Background(), "q", []BatchMessage{{Body: []byte("x")}}, BatchOptions{Key: key}); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("EnqueueBatch with a %d-byte key: %v, want ErrInvalidKey", n, err)
		}
	}
	max := strings.Repeat("m", MaxKeyLen)
	id, err := e.Enqueue(context.Background(), "q", []byte("kept"), EnqueueOptions{Key: max})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openT(t, Options{Dir: dir})
	m, ok, err := e.Dequeue(context.Background(), "q", 0)
	if err != nil || !ok || m.ID != id || string(m.Body) != "kept" {
		t.Fatalf("after a reopen: %+v %v %v, want id %d", m, ok, err, id)
	}
	if _, err := e.Enqueue(context.Background(), "q", []byte("again"), EnqueueOptions{Key: max}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("the %d-byte key after a reopen: %v, want ErrDuplicate", MaxKeyLen, err)
	}
}
