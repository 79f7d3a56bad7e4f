package segment

import (
	"io"
	"os"
	"syscall"
)

// File is what a Writer needs of its records file: the seam where tests
// inject write and fsync failures (as Prometheus' wlog does with its
// segment file), so that a Writer's failure handling and Recover are tested
// without strace or root. *os.File, through osFile, is the real one.
type File interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	// Sync is fsync(2), Datasync fdatasync(2).
	Sync() error
	Datasync() error
	Close() error
}

// osFile is a File on the operating system's file.
type osFile struct{ *os.File }

// Datasync is fdatasync(2).
func (f osFile) Datasync() error { return syscall.Fdatasync(int(f.Fd())) }

// WrapFile puts wrap around the Writer's records file: a seam for fault
// injection in the tests of packages that use a Writer (the engine's),
// as this package's own tests do with faultyFile. A reopened file
// (Recover) is not wrapped again.
func (w *Writer) WrapFile(wrap func(File) File) {
	if w.f != nil {
		w.f = wrap(w.f)
	}
}

// ReadFile is what a Reader needs of a records file; *os.File has it. Like
// File for the Writer, it is the seam where tests inject read errors.
type ReadFile interface {
	io.ReaderAt
	io.Seeker // SEEK_DATA, to skip zero-filled space
	io.Closer
	Stat() (os.FileInfo, error)
}

// openFile opens a records file for a Writer. Tests of this package wrap
// what it returns (faultyFile).
var openFile = func(path string) (File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}
