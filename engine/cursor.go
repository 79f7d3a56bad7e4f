package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mqueue/mqueue/engine/format"
	"github.com/mqueue/mqueue/segment/atomicfile"
)

// MaxID bounds every id, read position and hwm a queue's files may hold:
// all must be below it (2^63), which leaves hwm steps and batches ample
// room before a uint64 would wrap (at 10 million messages a second, 2^63
// ids take 29,000 years). A file with a value at or past it was not
// written by the engine: the queue is refused at open (ErrUnavailable)
// rather than ids wrapping around to old ones.
const MaxID = uint64(1) << 63

// errIDRange marks a cursor or hwm value at or past MaxID.
var errIDRange = errors.New("value past the id range (2^63): not written by mqueue")

type cursorFile struct {
	f    *os.File
	seq  uint64
	buf  [format.CursorRecordSize]byte
	path string
}

// openCursor opens (or creates) a queue's cursor file. readID is 0 when the
// file is new; corrupt is set when the file exists but no slot is valid.
func openCursor(queueDir string) (c *cursorFile, readID uint64, corrupt bool, err error) {
	path := filepath.Join(queueDir, format.CursorFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, false, fmt.Errorf("open cursor %s: %w", path, err)
	}
	c = &cursorFile{f: f, path: path}
	var raw [2 * format.CursorSlotSize]byte
	n, err := f.ReadAt(raw[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, 0, false, fmt.Errorf("read cursor %s: %w", path, err)
	}
	readID, seq, _, found := format.DecodeCursor(raw[:n])
	if readID >= MaxID {
		f.Close()
		return nil, 0, false, fmt.Errorf("%w: cursor %s holds read position %d: %w", ErrUnavailable, path, readID, errIDRange)
	}
	c.seq = seq
	if n < len(raw) {
		// Give the file its full size now, with the position found in both
		// slots, so that later cursor writes never need a new block: a
		// dequeue must keep working on a full disk.
		for slot := 0; slot < 2; slot++ {
			format.EncodeCursor(raw[slot*format.CursorSlotSize:], c.seq, readID)
		}
		_, err = f.WriteAt(raw[:], 0)
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = atomicfile.SyncDir(queueDir)
		}
		if err != nil {
			f.Close()
			return nil, 0, false, fmt.Errorf("initialize cursor %s: %w", path, err)
		}
	}
	return c, readID, !found && n > 0, nil
}

// write stores readID in the next slot; it does not fsync.
func (c *cursorFile) write(readID uint64) error {
	seq := c.seq + 1
	format.EncodeCursor(c.buf[:], seq, readID)
	if _, err := c.f.WriteAt(c.buf[:], int64(seq%2)*format.CursorSlotSize); err != nil {
		return fmt.Errorf("write cursor %s: %w", c.path, err)
	}
	c.seq = seq
	return nil
}

// sync makes the last write durable with fdatasync. The file's blocks are
// allocated when it is opened, so a cursor write changes no metadata that
// reading it back needs, and fdatasync is only the data write and a cache
// flush: no journal commit that could fail after the new position already
// reached the disk (an fsync failing there would answer a dequeue 500 whose
// message a restart would then never deliver).
func (c *cursorFile) sync() error {
	if err := syscall.Fdatasync(int(c.f.Fd())); err != nil {
		return fmt.Errorf("fsync cursor %s: %w", c.path, err)
	}
	return nil
}

func (c *cursorFile) close() error { return c.f.Close() }
