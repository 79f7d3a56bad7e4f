package engine

import (
	"bytes"
	"errors"
	"testing"
)

// TestQueueMeta stores a blob with a created queue, finds it again after a
// reopen and sees it go with the queue.
func TestQueueMeta(t *testing.T) {
	dir := t.TempDir()
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetQueueMeta("q", []byte("x")); !errors.Is(err, ErrQueueNotFound) {
		t.Fatalf("SetQueueMeta of a missing queue: %v, want ErrQueueNotFound", err)
	}
	if created, err := e.CreateQueue("q"); err != nil || !created {
		t.Fatalf("CreateQueue: %v %v", created, err)
	}
	if created, err := e.CreateQueue("q"); err != nil || created {
		t.Fatalf("CreateQueue again: %v %v, want not created", created, err)
	}
	if b, err := e.QueueMeta("q"); err != nil || b != nil {
		t.Fatalf("QueueMeta before a set: %q %v", b, err)
	}
	if err := e.SetQueueMeta("q", make([]byte, MaxQueueMetaBytes+1)); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("oversized meta: %v", err)
	}
	want := []byte(`{"VisibilityTimeout":"40"}`)
	if err := e.SetQueueMeta("q", want); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if b, err := e.QueueMeta("q"); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("QueueMeta after reopen: %q %v, want %q", b, err, want)
	}
	if err := e.DeleteQueue("q"); err != nil {
		t.Fatal(err)
	}
	if created, err := e.CreateQueue("q"); err != nil || !created {
		t.Fatalf("CreateQueue after delete: %v %v", created, err)
	}
	if b, err := e.QueueMeta("q"); err != nil || b != nil {
		t.Fatalf("QueueMeta of the new queue: %q %v, want none", b, err)
	}
}
