package segment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mqueue/mqueue/segment/atomicfile"
)

// walFile is the name tidwall/wal gives the first (and, here, only) file of a
// log whose first index is 1.
const walFile = "00000000000000000001"

const (
	deletingSuffix = ".deleting"
	creatingSuffix = ".creating"
)

// Name returns the directory name of the segment with the given base id.
func Name(base uint64) string { return fmt.Sprintf("%020d", base) }

// Dir returns the directory of the segment with the given base id.
func Dir(queueDir string, base uint64) string { return filepath.Join(queueDir, Name(base)) }

// DataPath returns the path of the records file of a segment.
func DataPath(queueDir string, base uint64) string {
	return filepath.Join(queueDir, Name(base), walFile)
}

// parseName returns the base id of a segment directory name.
func parseName(name string) (uint64, bool) {
	if len(name) != 20 {
		return 0, false
	}
	base, err := strconv.ParseUint(name, 10, 64)
	return base, err == nil && base > 0
}

// List returns the base ids of the segments in queueDir, oldest first. It
// finishes deletions and abandons creations that a crash interrupted
// (directories ending in .deleting or .creating; the latter never held a
// record).
func List(queueDir string) ([]uint64, error) {
	ents, err := os.ReadDir(queueDir)
	if err != nil {
		return nil, fmt.Errorf("list segments in %s: %w", queueDir, err)
	}
	var bases []uint64
	cleaned := false
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() {
			continue
		}
		if strings.HasSuffix(name, deletingSuffix) || strings.HasSuffix(name, creatingSuffix) {
			if err := os.RemoveAll(filepath.Join(queueDir, name)); err != nil {
				return nil, fmt.Errorf("finish deleting %s: %w", name, err)
			}
			cleaned = true
			continue
		}
		if base, ok := parseName(name); ok {
			bases = append(bases, base)
		}
	}
	if cleaned {
		if err := atomicfile.SyncDir(queueDir); err != nil {
			return nil, err
		}
	}
	slices.Sort(bases)
	return bases, nil
}

// Remove deletes a whole segment: it renames the directory (atomic), fsyncs
// the queue directory, then removes the files, so that a crash never leaves
// a half-deleted segment that looks live.
func Remove(queueDir string, base uint64) error {
	from := Dir(queueDir, base)
	to := from + deletingSuffix
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("delete segment %020d: %w", base, err)
	}
	if err := atomicfile.SyncDir(queueDir); err != nil {
		return err
	}
	if err := os.RemoveAll(to); err != nil {
		return fmt.Errorf("delete segment %020d: %w", base, err)
	}
	return atomicfile.SyncDir(queueDir)
}

// Size returns the size of a segment's records file.
func Size(queueDir string, base uint64) (int64, error) {
	fi, err := os.Stat(DataPath(queueDir, base))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("stat segment %020d: %w", base, ErrNotFound)
		}
		return 0, fmt.Errorf("stat segment %020d: %w", base, err)
	}
	return fi.Size(), nil
}
