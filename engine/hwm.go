package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// The hwm file (format.HWMFile) holds a bound on the ids a queue has
// handed out: every id ever acknowledged is below it. It is raised,
// durably, before a batch would cross it, in steps of hwmStep so that this
// costs a few fsyncs per million messages, and lowered to the exact next id
// on a clean close. After a crash that lost the newest records (a torn
// tail, a deleted segment), ids go on from the bound, so none is ever
// handed out twice.
const hwmStep = 1 << 16

// readHWM reads a queue's hwm (0 when there is none). A value at or past
// MaxID is an error wrapping errIDRange, which must keep the queue down.
func readHWM(queueDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(queueDir, format.HWMFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read hwm in %s: %w", queueDir, err)
	}
	hwm, ok := format.DecodeHWM(b)
	if !ok {
		return 0, fmt.Errorf("read hwm in %s: %w", queueDir, segment.ErrCorrupt)
	}
	if hwm >= MaxID {
		return 0, fmt.Errorf("%w: hwm in %s is %d: %w", ErrUnavailable, queueDir, hwm, errIDRange)
	}
	return hwm, nil
}

func writeHWM(queueDir string, hwm uint64) error {
	b := format.EncodeHWM(hwm)
	return atomicfile.Replace(queueDir, format.HWMFile, b[:])
}

// reserveAhead starts writing the next hwm reservation in the background
// once half of the current one is used, so that its write, fsync, rename
// and directory fsync (2.6-3.2 ms, docs/PERFORMANCE.md) stay off the
// commit's path; a commit waits for it only if the other half runs out
// first. One write at a time; q.hwm moves only when it is durable, so no
// id at or past a durable bound is ever handed out.
func (q *queue) reserveAhead(last uint64) {
	if q.hwmDone != nil {
		select {
		case err := <-q.hwmDone:
			q.hwmDone = nil
			q.tookHWM(err)
		default:
			return // still being written
		}
	}
	if last+hwmStep/2 < q.hwm {
		return
	}
	target := max(q.hwm, last+1) + hwmStep
	done := make(chan error, 1)
	go func() { done <- writeHWM(q.dir, target) }()
	q.hwmDone, q.hwmTarget = done, target
}

// awaitHWM waits for a background hwm write, if one is running.
func (q *queue) awaitHWM() {
	if q.hwmDone != nil {
		q.tookHWM(<-q.hwmDone)
		q.hwmDone = nil
	}
}

// tookHWM records the outcome of a background hwm write.
func (q *queue) tookHWM(err error) {
	if err != nil {
		q.e.opts.Metrics.IncWriteError()
		q.log.ErrorContext(RepeatingLog, "reserving ids ahead failed; retried at the next commit", "err", err)
		return
	}
	q.hwm = max(q.hwm, q.hwmTarget)
}
