package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// requireRoot skips a test that needs root, with the reason printed, unless
// MQUEUE_TEST_REQUIRE_ALL=1 (as in CI), where a missing prerequisite fails.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("MQUEUE_TEST_REQUIRE_ALL") == "1" {
		t.Fatalf("needs root (%s) and MQUEUE_TEST_REQUIRE_ALL=1", why)
	}
	t.Skipf("skipping: needs root (%s)", why)
}

// TestDiskFullENOSPC fills a real 512 KiB tmpfs: the first refusal is
// ErrDiskFull, the engine keeps serving, dequeue works on the full disk, and
// after a reopen every acknowledged message is there, in order.
func TestDiskFullENOSPC(t *testing.T) {
	requireRoot(t, "mounts a small tmpfs")
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("MQUEUE_TEST_REQUIRE_ALL") == "1" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("skipping: cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })

	opts := Options{Dir: dir, SegmentBytes: 64 << 10}
	e := openT(t, opts)
	body := bytes.Repeat([]byte("d"), 4000)
	var acked []uint64
	var full error
	for i := 0; i < 1000; i++ {
		id, err := e.Enqueue(context.Background(), "q", append([]byte(fmt.Sprintf("%06d", i)), body...), EnqueueOptions{})
		if err != nil {
			full = err
			break
		}
		acked = append(acked, id)
	}
	if !errors.Is(full, ErrDiskFull) {
		t.Fatalf("first refusal after %d messages: %v, want ErrDiskFull", len(acked), full)
	}
	t.Logf("tmpfs of 512 KiB took %d messages of 4 KiB before 507", len(acked))
	// Still refusing, still alive.
	if _, err := e.Enqueue(context.Background(), "q", body, EnqueueOptions{}); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("second attempt: %v", err)
	}
	// Dequeue keeps working on a full disk (the cursor file is preallocated
	// by its first write).
	m, ok := deq(t, e, "q")
	if !ok || m.ID != acked[0] {
		t.Fatalf("dequeue on full disk: %v %v", ok, m.ID)
	}
	e.Close()

	e = openT(t, opts)
	for i, id := range acked[1:] {
		m, ok := deq(t, e, "q")
		if !ok || m.ID != id || string(m.Body[:6]) != fmt.Sprintf("%06d", i+1) {
			t.Fatalf("after reopen, message %d: ok=%v id %d (want %d)", i+1, ok, m.ID, id)
		}
	}
	if _, ok := deq(t, e, "q"); ok {
		t.Fatal("an unacknowledged message was stored")
	}
}
