package engine

import (
	"fmt"
	"os"
)

// checkQueueDir refuses a queue path that exists but is not a plain
// directory of the data directory: a symlink is never followed (the data
// directory's lock and quota cover only what is in it), and a file is no
// queue. Both at start and at first use, such a queue is ErrUnavailable
// until an operator fixes it.
func checkQueueDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("stat queue dir %s: %w", dir, err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%w: queue path %s is a symlink; it is not followed", ErrUnavailable, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: queue path %s is not a directory (%v)", ErrUnavailable, dir, fi.Mode().Type())
	}
	return nil
}
