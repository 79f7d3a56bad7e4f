package segment

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mqueue/mqueue/segment/atomicfile"
)

// metaFile holds a sealed segment's Summary so that opening a queue with a
// large backlog does not read every record. tidwall/wal ignores names
// shorter than 20 characters, so it can live in the segment's directory.
const metaFile = "meta"

// WriteMeta stores the summary of a sealed segment (write, fsync, rename,
// fsync dir).
func WriteMeta(queueDir string, s *Summary) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("write meta of segment %020d: %w", s.Base, err)
	}
	if err := atomicfile.Replace(Dir(queueDir, s.Base), metaFile, data); err != nil {
		return fmt.Errorf("write meta of segment %020d: %w", s.Base, err)
	}
	return nil
}

// ReadMeta loads the summary of a sealed segment. ok is false when there is
// none or it does not match the records file (its size differs), in which
// case the caller scans the segment instead.
func ReadMeta(queueDir string, base uint64) (s Summary, ok bool) {
	data, err := os.ReadFile(filepath.Join(Dir(queueDir, base), metaFile))
	if err != nil || json.Unmarshal(data, &s) != nil || s.Base != base {
		return Summary{}, false
	}
	size, err := Size(queueDir, base)
	if err != nil || size != s.Bytes {
		return Summary{}, false
	}
	return s, true
}
