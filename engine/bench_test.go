package engine

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/metrics"
)

var benchBody = bytes.Repeat([]byte("m"), 100)

func BenchmarkEnqueue(b *testing.B) {
	for _, mode := range []FsyncMode{FsyncAlways, FsyncInterval, FsyncNever} {
		b.Run(mode.String(), func(b *testing.B) {
			e := openT(b, Options{Dir: b.TempDir(), Fsync: mode})
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := e.Enqueue(context.Background(), "q", benchBody, EnqueueOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnqueueParallel measures group commit: many goroutines share
// each write and fsync. The name gives the number of producer goroutines
// (RunParallel starts SetParallelism × GOMAXPROCS of them).
func BenchmarkEnqueueParallel(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, mode := range []FsyncMode{FsyncAlways, FsyncInterval} {
		for _, want := range []int{16, 256, 1024, 4096} {
			par := max(1, want/procs)
			b.Run(fmt.Sprintf("%s/goroutines=%d", mode, par*procs), func(b *testing.B) {
				reg := prometheus.NewRegistry()
				e := openT(b, Options{Dir: b.TempDir(), Fsync: mode, Metrics: metrics.NewEngine(reg)})
				b.SetBytes(int64(len(benchBody)))
				b.SetParallelism(par)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := e.Enqueue(context.Background(), "q", benchBody, EnqueueOptions{}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				reportCommits(b, reg)
			})
		}
	}
}

// BenchmarkEnqueueBatchParallel: producers that send batches (the batch
// POST's path). One op is one batch; msgs/s counts messages.
func BenchmarkEnqueueBatchParallel(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, mode := range []FsyncMode{FsyncAlways, FsyncInterval} {
		for _, size := range []int{10, 100} {
			const want = 256
			par := max(1, want/procs)
			b.Run(fmt.Sprintf("%s/batch=%d/goroutines=%d", mode, size, par*procs), func(b *testing.B) {
				reg := prometheus.NewRegistry()
				e := openT(b, Options{Dir: b.TempDir(), Fsync: mode, Metrics: metrics.NewEngine(reg)})
				msgs := make([]BatchMessage, size)
				for i := range msgs {
					msgs[i].Body = benchBody
				}
				b.SetBytes(int64(len(benchBody) * size))
				b.SetParallelism(par)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := e.EnqueueBatch(context.Background(), "q", msgs, false); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
				reportCommits(b, reg)
			})
		}
	}
}

func BenchmarkDequeue(b *testing.B) {
	for _, mode := range []FsyncMode{FsyncAlways, FsyncNever} {
		b.Run(mode.String(), func(b *testing.B) {
			e := openT(b, Options{Dir: b.TempDir(), Fsync: FsyncNever})
			for i := 0; i < b.N; i++ {
				if _, err := e.Enqueue(context.Background(), "q", benchBody, EnqueueOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			e.Close()
			e = openT(b, Options{Dir: e.opts.Dir, Fsync: mode})
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok, err := e.Dequeue(context.Background(), "q", 0); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// reportCommits adds the mean messages per group commit and the mean
// fsync time, from the engine's own histograms, to a benchmark's result.
func reportCommits(b *testing.B, reg *prometheus.Registry) {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h == nil || h.GetSampleCount() == 0 {
				continue
			}
			mean := h.GetSampleSum() / float64(h.GetSampleCount())
			switch mf.GetName() {
			case "mqueue_commit_batch_messages":
				b.ReportMetric(mean, "msgs/commit")
			case "mqueue_fsync_duration_seconds":
				b.ReportMetric(mean*1e6, "µs/fsync")
			}
		}
	}
}
