package client_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/client"
	"github.com/mqueue/mqueue/engine"
)

// benchSenders is the number of goroutines sending in both benchmarks.
const benchSenders = 64

// benchRun spreads b.N sends over benchSenders goroutines; send is one.
func benchRun(b *testing.B, send func(ctx context.Context) error) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := send(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func benchClient(b *testing.B) *client.Client {
	base := startServer(b, func(_ *api.Config, o *engine.Options) { o.Fsync = engine.FsyncAlways })
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchSenders}}
	b.Cleanup(hc.CloseIdleConnections)
	return client.New(base, client.WithHTTPClient(hc))
}

// BenchmarkEnqueueSingle: one POST per message, fsync=always.
func BenchmarkEnqueueSingle(b *testing.B) {
	c := benchClient(b)
	body := make([]byte, 100)
	benchRun(b, func(ctx context.Context) error {
		_, err := c.Enqueue(ctx, "bench", body, client.EnqueueOptions{})
		return err
	})
}

// BenchmarkProducer: the same senders through one auto-batching Producer;
// each send waits for its batch's 201.
func BenchmarkProducer(b *testing.B) {
	c := benchClient(b)
	p := client.NewProducer(c, "bench", client.ProducerOptions{Linger: time.Millisecond})
	defer p.Close()
	body := make([]byte, 100)
	benchRun(b, func(ctx context.Context) error {
		_, err := p.Send(ctx, body, client.SendOptions{}).Wait(ctx)
		return err
	})
}
