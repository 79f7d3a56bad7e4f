package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqueue/mqueue/engine"
)

// message is the ~100-byte JSON body of every benchmark message, the same
// bytes post.lua sends.
var message = []byte(`{"event":"order.created","order":123456,"customer":"c-000042","items":3,"total":"59.90","pad":"xxx"}`)

// bulkLoad fills queue in dir with n messages straight through the engine
// (fsync never, then a clean close, which fsyncs), from enough goroutines
// for group commit to batch them. It returns the fill rate in messages/s.
func bulkLoad(dir, queue string, n int64, progress io.Writer) (float64, error) {
	eng, err := engine.Open(engine.Options{
		Dir:    dir,
		Fsync:  engine.FsyncNever,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 0, err
	}
	const workers = 256
	var next, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	start := time.Now()
	stopProgress := make(chan struct{})
	if progress != nil {
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					d := done.Load()
					fmt.Fprintf(progress, "  loaded %d/%d messages (%.0f/s)\n", d, n, float64(d)/time.Since(start).Seconds())
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= n {
				if _, err := eng.Enqueue(context.Background(), queue, message, engine.EnqueueOptions{}); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	rate := float64(done.Load()) / time.Since(start).Seconds()
	if err := eng.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return rate, firstErr
}

// copyDir copies the regular files of src into dst (created), one level of
// subdirectories deep as a data directory has. The LOCK file is skipped.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		if d.Name() == ".lock" || !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// dirBytes is the size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
