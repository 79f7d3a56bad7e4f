package api

import (
	"time"

	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// QueueSampler returns the snapshot function that metrics.RegisterQueues
// calls at every scrape: eng's per-queue figures, with the age of the oldest
// unconsumed message worked out at scrape time. The function is safe for
// concurrent use.
func QueueSampler(eng *engine.Engine) func() []metrics.QueueSample {
	return func() []metrics.QueueSample {
		stats := eng.AllStats()
		now := time.Now().UnixMilli()
		out := make([]metrics.QueueSample, len(stats))
		for i, st := range stats {
			out[i] = metrics.QueueSample{
				Queue:     st.Queue,
				Enqueued:  st.EnqueuedTotal,
				Dequeued:  st.DequeuedTotal,
				Expired:   st.ExpiredTotal,
				Depth:     st.Depth,
				Segments:  st.Segments,
				DiskBytes: st.DiskBytes,

				InFlight:     st.InFlight,
				Delayed:      st.Delayed,
				Redelivered:  st.RedeliveredTotal,
				DeadLettered: st.DeadLetteredTotal,
				Purged:       st.PurgedTotal,
				Redriven:     st.RedrivenTotal,
			}
			if st.OldestEnqueuedAt != 0 {
				out[i].OldestAgeSeconds = max(0, float64(now-st.OldestEnqueuedAt)/1000)
			}
		}
		return out
	}
}
