package metrics

import (
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReadyFollowsFunc checks that mqueue_ready reads the readiness at every
// scrape, not once at registration.
func TestReadyFollowsFunc(t *testing.T) {
	reg := prometheus.NewRegistry()
	var ready atomic.Bool
	RegisterReady(reg, ready.Load)
	for _, want := range []bool{false, true, false} {
		ready.Store(want)
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(families) != 1 || families[0].GetName() != "mqueue_ready" || len(families[0].GetMetric()) != 1 {
			t.Fatalf("gathered %v, want the one gauge mqueue_ready", families)
		}
		got := families[0].GetMetric()[0].GetGauge().GetValue()
		if wantV := map[bool]float64{false: 0, true: 1}[want]; got != wantV {
			t.Errorf("ready %v: mqueue_ready = %v, want %v", want, got, wantV)
		}
	}
}
