package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/engine"
)

func TestLimitHandlerCapsRepeatsAndCountsThem(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	log := slog.New(newLimitHandler(slog.NewTextHandler(&buf, nil), 3, time.Second, func() time.Time { return now }))
	lines := func() []string {
		s := strings.TrimSpace(buf.String())
		buf.Reset()
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}

	q := log.With("queue", "a")
	for range 50 {
		q.ErrorContext(engine.RepeatingLog, "write failed", "err", "EIO")
		log.Info("request served")
		log.Error("corrupt record", "offset", 7) // not marked as repeating: never limited
	}
	got := lines()
	if n := strings.Count(strings.Join(got, "\n"), "write failed"); n != 3 {
		t.Fatalf("%d error lines in the first window, want 3:\n%s", n, strings.Join(got, "\n"))
	}
	if n := strings.Count(strings.Join(got, "\n"), "request served"); n != 50 {
		t.Fatalf("%d info lines, want all 50", n)
	}
	if n := strings.Count(strings.Join(got, "\n"), "corrupt record"); n != 50 {
		t.Fatalf("%d unmarked error lines, want all 50", n)
	}
	if strings.Contains(strings.Join(got, "\n"), "suppressed") {
		t.Fatalf("a count was reported before any record passed after the drops:\n%s", strings.Join(got, "\n"))
	}
	if !strings.Contains(got[0], "queue=a") {
		t.Fatalf("attributes of With lost: %q", got[0])
	}

	// Another message has its own budget.
	log.WarnContext(engine.RepeatingLog, "slow fsync")
	if got := lines(); len(got) != 1 {
		t.Fatalf("another message: %q", got)
	}

	// The next window: the first record carries the 47 dropped.
	now = now.Add(time.Second)
	log.ErrorContext(engine.RepeatingLog, "write failed", "err", "EIO")
	got = lines()
	if len(got) != 1 || !strings.Contains(got[0], "suppressed=47") {
		t.Fatalf("next window: %q, want one line with suppressed=47", got)
	}
	log.ErrorContext(engine.RepeatingLog, "write failed", "err", "EIO")
	if got := lines(); len(got) != 1 || strings.Contains(got[0], "suppressed") {
		t.Fatalf("second line of the window: %q, want no count", got)
	}
}
