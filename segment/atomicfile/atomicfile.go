// Package atomicfile holds the few file operations whose durability the
// storage depends on, in one place: replacing a small file atomically,
// creating one fsynced, cutting one and fsyncing it, opening an append-only
// log whose creation survives a crash, and fsyncing a directory. Errors
// name the file.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir fsyncs a directory, so that files created, renamed or removed in
// it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// WriteSync creates (or truncates) path with data and fsyncs it. It does
// not fsync the directory.
func WriteSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Replace replaces dir/name with data atomically and durably: a temporary
// file dir/name.tmp, fsynced, renamed over dir/name, then dir fsynced. A
// crash leaves the old contents or the new, never a mix.
func Replace(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	if err := WriteSync(tmp, data); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s in %s: %w", name, dir, err)
	}
	return SyncDir(dir)
}

// Truncate cuts path to size bytes and fsyncs it.
func Truncate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("truncate %s: %w", path, err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("truncate %s to %d bytes: %w", path, size, err)
	}
	return nil
}

// OpenAppend opens dir/name for appending, creating it (and fsyncing dir,
// so that the new name survives a crash) when it does not exist.
func OpenAppend(dir, name string) (*os.File, error) {
	path := filepath.Join(dir, name)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open %s for appending: %w", path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := SyncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}
