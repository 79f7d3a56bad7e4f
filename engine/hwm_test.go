package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// The next id reservation is written in the background once half of the
// current one is used, so a commit finds it ready; a clean close still
// leaves the exact bound, so ids stay dense across a clean restart.
func TestHWMReservedAhead(t *testing.T) {
	dir := t.TempDir()
	e := openT(t, Options{Dir: dir, Fsync: FsyncNever})
	qdir := filepath.Join(dir, "q")
	msgs := make([]BatchMessage, 1000)
	for i := range msgs {
		msgs[i].Body = []byte(fmt.Sprint(i))
	}
	enqueueN := func(n int) uint64 {
		var last uint64
		for range n / len(msgs) {
			first, _, err := e.EnqueueBatch(context.Background(), "q", msgs, BatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			last = first + uint64(len(msgs)) - 1
		}
		return last
	}
	last := enqueueN(1000)
	first, err := readHWM(qdir)
	if err != nil || first != last+hwmStep {
		t.Fatalf("hwm after the first batch: %d, %v; want %d (written with it)", first, err, last+hwmStep)
	}
	// Past half of the reservation: the next one is written ahead.
	last = enqueueN(hwmStep/2 + 1000)
	if last >= first {
		t.Fatalf("the test used the whole reservation (last id %d, bound %d)", last, first)
	}
	want := first + hwmStep
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := readHWM(qdir)
		if err == nil && got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hwm %d, %v after %d ids; want %d reserved ahead", got, err, last, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Beyond the first reservation: ids continue without a gap.
	const more = 66000 // past the first bound
	next := enqueueN(more)
	if next != last+more || next < first {
		t.Fatalf("last id %d after %d more, want %d (past the first bound %d)", next, more, last+more, first)
	}
	e.Close()
	if got, err := readHWM(qdir); err != nil || got != next+1 {
		t.Fatalf("hwm after a clean close %d, %v; want the exact next id %d", got, err, next+1)
	}
	e = openT(t, Options{Dir: dir, Fsync: FsyncNever})
	if id := enq(t, e, "q", "after restart", EnqueueOptions{}); id != next+1 {
		t.Fatalf("first id after a clean restart %d, want %d", id, next+1)
	}
}
