package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/segment"
)

// A client that first enqueues to x.dlq with the key the dead-letter move
// used to take (dlq-x-1, guessable) must not make the real move a
// duplicate: the dead-lettered message is in x.dlq.
func TestDeadLetterKeyCannotBeTakenByAClient(t *testing.T) {
	clk := newClock()
	e := openT(t, Options{Dir: t.TempDir(), Now: clk.Now, MaxDeliveries: 1})
	id := enq(t, e, "x", "poison", EnqueueOptions{})
	if _, err := e.Enqueue(context.Background(), "x.dlq", []byte("squatter"), EnqueueOptions{Key: "dlq-x-1"}); err != nil {
		t.Fatal(err)
	}
	if id != 1 {
		t.Fatalf("id %d", id)
	}
	m, _ := lease(t, e, "x", time.Second)
	mustBody(t, m, true, "poison", 1)
	clk.Advance(time.Second)
	deq(t, e, "x") // finds the lease ended: the move starts
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := e.Stats("x"); st.DeadLetteredTotal+st.ExpiredTotal > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	var got []string
	for {
		m, ok := deq(t, e, "x.dlq")
		if !ok {
			break
		}
		got = append(got, string(m.Body))
	}
	if strings.Join(got, ",") != "squatter,poison" {
		t.Fatalf("x.dlq holds %q, want the squatter's message and the dead letter", got)
	}
	if st, _ := e.Stats("x"); st.DeadLetteredTotal != 1 {
		t.Fatalf("dead_lettered_total %d", st.DeadLetteredTotal)
	}
}

// Keys starting with 0x00 are the engine's: the public enqueues refuse
// them, the internal ones take them and deduplicate on them.
func TestReservedKeysRefused(t *testing.T) {
	e := openT(t, Options{Dir: t.TempDir()})
	ctx := context.Background()
	key := internalKey("dlq", "x", "1")
	if _, err := e.Enqueue(ctx, "q", []byte("a"), EnqueueOptions{Key: key}); !errors.Is(err, ErrReservedKey) {
		t.Fatalf("Enqueue with a reserved key = %v, want ErrReservedKey", err)
	}
	if _, _, err := e.EnqueueBatch(ctx, "q", batchOf("a"), BatchOptions{Key: "\x00"}); !errors.Is(err, ErrReservedKey) {
		t.Fatalf("EnqueueBatch with a reserved key = %v, want ErrReservedKey", err)
	}
	id, err := e.enqueueInternal(ctx, "q", []byte("a"), EnqueueOptions{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := e.enqueueInternal(ctx, "q", []byte("a"), EnqueueOptions{Key: key}); !errors.Is(err, ErrDuplicate) || again != id {
		t.Fatalf("second internal enqueue = %d %v, want %d ErrDuplicate", again, err, id)
	}
	bk := internalKey("redrive", "q.dlq", "7")
	if _, _, err := e.enqueueBatchInternal(ctx, "q", batchOf("b", "c"), BatchOptions{Key: bk}); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Stats("q"); st.Depth != 3 {
		t.Fatalf("depth %d, want 3", st.Depth)
	}
}

func TestInternalKeyFitsARecord(t *testing.T) {
	long := strings.Repeat("n", 64) + ".dlq"
	for _, k := range []string{
		internalKey("dlq", strings.Repeat("n", 64), "18446744073709551615"),
		internalKey("redrive", long, "18446744073709551615", long),
	} {
		if len(k) > segment.MaxKeyLen || k[0] != 0 {
			t.Errorf("internal key %q: %d bytes", k, len(k))
		}
	}
}
