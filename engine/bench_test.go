package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/metrics"
	"github.com/mqueue/mqueue/segment"
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
						if _, _, err := e.EnqueueBatch(context.Background(), "q", msgs, BatchOptions{}); err != nil {
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

// BenchmarkGroupCommitBound is the least a group commit of single messages
// costs in Go on this machine, to read BenchmarkEnqueueParallel against:
// producers append their message to the pending batch under a mutex and
// park on the batch's channel; one loop goroutine takes the batch, copies
// it into a buffer, write(2)s it to a file (no fsync, as never mode) and
// closes the channel. No record format, CRC, ids, segments, memory tail,
// metrics or TTL. The gap between this and the engine is what the
// engine's own work costs; this figure itself is the runtime's (a park and
// a wake-up per message, on GOMAXPROCS cores).
func BenchmarkGroupCommitBound(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, want := range []int{16, 256, 1024, 4096} {
		par := max(1, want/procs)
		b.Run(fmt.Sprintf("goroutines=%d", par*procs), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "bound"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			type batch struct {
				msgs [][]byte
				done chan struct{}
			}
			var mu sync.Mutex
			pend := &batch{done: make(chan struct{})}
			wake := make(chan struct{}, 1)
			stop := make(chan struct{})
			loopDone := make(chan struct{})
			var commits, msgs atomic.Int64
			go func() {
				defer close(loopDone)
				var buf []byte
				for {
					select {
					case <-wake:
					case <-stop:
						return
					}
					runtime.Gosched() // as the engine: let runnable producers join
					mu.Lock()
					cur := pend
					pend = &batch{done: make(chan struct{}), msgs: cur.msgs[:0:0]}
					mu.Unlock()
					buf = buf[:0]
					for _, m := range cur.msgs {
						buf = append(buf, m...)
					}
					if _, err := f.Write(buf); err != nil {
						b.Error(err)
					}
					commits.Add(1)
					msgs.Add(int64(len(cur.msgs)))
					close(cur.done)
				}
			}()
			msg := make([]byte, segment.HeaderSize+len(benchBody)+5)
			b.SetBytes(int64(len(benchBody)))
			b.SetParallelism(par)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					bt := pend
					first := len(bt.msgs) == 0
					bt.msgs = append(bt.msgs, msg)
					mu.Unlock()
					if first {
						select {
						case wake <- struct{}{}:
						default:
						}
					}
					<-bt.done
				}
			})
			b.StopTimer()
			close(stop)
			<-loopDone
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(msgs.Load())/float64(max(commits.Load(), 1)), "msgs/commit")
		})
	}
}
