package engine

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"testing"
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
				e := openT(b, Options{Dir: b.TempDir(), Fsync: mode})
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
