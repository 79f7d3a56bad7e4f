package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mqueue/mqueue/engine"
)

// limitHandler keeps a failure that repeats on every request from flooding
// the log. Only records logged with engine.RepeatingLog as their context are
// limited (the api's per-request and the engine's per-batch failures): of
// those with the same level and message it passes at most burst per window
// and counts the rest, and the next record of that message that passes
// carries the count as "suppressed". A disk that fails every write then
// costs a few lines a second, not one per request. Every other record
// passes: each reports one event (a repaired segment, a corrupt record with
// its offset) that an operator needs.
//
// The key is the level and the message text only, so one message about two
// queues shares a budget. A count still pending when the repeats stop is
// reported with the next occurrence, however much later.
type limitHandler struct {
	next slog.Handler
	st   *limitState // shared with the handlers WithAttrs and WithGroup derive
}

type limitState struct {
	mu     sync.Mutex
	burst  int
	window time.Duration
	now    func() time.Time
	keys   map[limitKey]*limitEntry
}

type limitKey struct {
	level slog.Level
	msg   string
}

type limitEntry struct {
	start      time.Time // of the current window
	passed     int       // records passed in it
	suppressed int       // records dropped since the last one passed
}

// newLimitHandler wraps next; now is the clock (time.Now outside tests).
func newLimitHandler(next slog.Handler, burst int, window time.Duration, now func() time.Time) *limitHandler {
	return &limitHandler{next: next, st: &limitState{burst: burst, window: window, now: now, keys: map[limitKey]*limitEntry{}}}
}

// Enabled reports whether next handles records of level l.
func (h *limitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// Handle passes r to next unless its message is over its budget.
func (h *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if !engine.IsRepeating(ctx) {
		return h.next.Handle(ctx, r)
	}
	suppressed, pass := h.st.admit(limitKey{r.Level, r.Message})
	if !pass {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

// admit counts one record of k and says whether it passes, with the number
// of records of k dropped since the last one that passed.
func (s *limitState) admit(k limitKey) (suppressed int, pass bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.keys[k]
	if e == nil {
		e = &limitEntry{start: now}
		s.keys[k] = e
	}
	if now.Sub(e.start) >= s.window {
		e.start, e.passed = now, 0
	}
	if e.passed >= s.burst {
		e.suppressed++
		return 0, false
	}
	e.passed++
	suppressed, e.suppressed = e.suppressed, 0
	return suppressed, true
}

// WithAttrs returns a handler with attrs that shares h's budgets.
func (h *limitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &limitHandler{next: h.next.WithAttrs(attrs), st: h.st}
}

// WithGroup returns a handler in group name that shares h's budgets.
func (h *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{next: h.next.WithGroup(name), st: h.st}
}
