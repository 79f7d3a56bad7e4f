package metrics

import "github.com/prometheus/client_golang/prometheus"

// RegisterReady registers mqueue_ready, a gauge that is 1 when ready reports
// true at scrape time and 0 otherwise. The server passes its readiness (what
// /readyz answers), so an alert can tell a node that serves /metrics but is
// still recovering, or draining, from one that is up and in the pool. ready
// must be safe for concurrent use.
func RegisterReady(reg prometheus.Registerer, ready func() bool) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "ready",
		Help:      "1 while /readyz answers 200 (data directory open, not draining), else 0.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}
