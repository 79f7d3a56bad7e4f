package engine

import "context"

// RepeatingLog is the context that the engine and the api log with when a
// failure repeats for every batch or request while it lasts (a disk that
// fails every write): a log handler may pass only some of those records
// (cmd/mqueue's passes a few per second per message and counts the rest).
// Records logged without it each report one event — a repaired segment, a
// corrupt record with its segment and offset — and must all be kept.
var RepeatingLog = context.WithValue(context.Background(), repeatingKey{}, true)

type repeatingKey struct{}

// IsRepeating reports whether ctx is RepeatingLog or derived from it.
func IsRepeating(ctx context.Context) bool {
	v, _ := ctx.Value(repeatingKey{}).(bool)
	return v
}
