package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// scaleSection loads a backlog of cfg.backlog messages through the engine,
// then alternates runs against an empty queue and against the backlog
// (mqueue --fsync=always, -c100), restarting the server for each run so
// that every run also measures the restart time to /readyz.
func (b *bench) scaleSection() error {
	dir := filepath.Join(b.work, "backlog")
	b.logf("== scale: loading %d messages through the engine into %s", b.cfg.backlog, dir)
	start := time.Now()
	rate, err := bulkLoad(dir, benchQueue, b.cfg.backlog, b.log)
	if err != nil {
		return fmt.Errorf("backlog: %w", err)
	}
	defer os.RemoveAll(dir)
	size := dirBytes(dir)
	b.logf("   %.0f msgs/s, %d MB on disk, took %v", rate, size>>20, time.Since(start).Round(time.Second))
	b.rows = append(b.rows, row{
		section: "scale", target: "engine bulk load (fsync never, 256 goroutines)",
		cas:  fmt.Sprintf("fill %d msgs", b.cfg.backlog),
		rate: rate, unit: "msg/s", ratio: -1, p99ratio: -1, allocs: -1, syscalls: -1, batch: -1,
		notes: []string{fmt.Sprintf("%.2f GB on disk", float64(size)/1e9)},
	})

	always := target{name: "mqueue always", mode: "always"}
	const conns = 100
	for _, op := range []string{"enqueue", "dequeue"} {
		var empty, full []runResult
		for round := range b.cfg.runs {
			r, err := b.runOnce(always, op, conns)
			if err != nil {
				return fmt.Errorf("scale %s empty: %w", op, err)
			}
			b.logf("   scale %-8s empty   round %d %9.0f req/s p99 %-9v rss %d MB ready %v", op, round+1, r.ReqPerSec, r.P99, r.rssAfter>>20, r.ready)
			empty = append(empty, r)

			s, err := b.start(always, dir)
			if err != nil {
				return fmt.Errorf("scale %s backlog: %w", op, err)
			}
			r, err = b.measure(s, true, op, conns)
			s.stop()
			if err != nil {
				return fmt.Errorf("scale %s backlog: %w", op, err)
			}
			b.logf("   scale %-8s backlog round %d %9.0f req/s p99 %-9v rss %d MB hwm %d MB ready %v depth %d",
				op, round+1, r.ReqPerSec, r.P99, r.rssAfter>>20, r.hwm>>20, r.ready, r.depthLeft)
			full = append(full, r)
		}
		label := op
		if op == "dequeue" {
			label = fmt.Sprintf("dequeue (prefill %d)", b.templateMsg)
		}
		re := summarize("scale", "mqueue always", label+" -c100 empty", empty, nil, true)
		re.notes = append(re.notes, memNotes(empty)...)
		rf := summarize("scale", "mqueue always", fmt.Sprintf("%s -c100 backlog %d", op, b.cfg.backlog), full, empty, false)
		rf.notes = append(rf.notes, memNotes(full)...)
		b.rows = append(b.rows, re, rf)
	}
	return nil
}

// memNotes reports the medians of RSS at ready, RSS and peak RSS after the
// run, and the restart time to /readyz.
func memNotes(rs []runResult) []string {
	med := func(f func(runResult) float64) float64 {
		v := make([]float64, len(rs))
		for i := range rs {
			v[i] = f(rs[i])
		}
		return median(v)
	}
	return []string{
		fmt.Sprintf("RSS at ready %.0f MB", med(func(r runResult) float64 { return float64(r.rssReady) })/(1<<20)),
		fmt.Sprintf("RSS after %.0f MB", med(func(r runResult) float64 { return float64(r.rssAfter) })/(1<<20)),
		fmt.Sprintf("VmHWM %.0f MB", med(func(r runResult) float64 { return float64(r.hwm) })/(1<<20)),
		fmt.Sprintf("start to /readyz %s", fmtDur(time.Duration(med(func(r runResult) float64 { return float64(r.ready) })))),
	}
}
