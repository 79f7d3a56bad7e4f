package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplaceWriteTruncateAppend(t *testing.T) {
	dir := t.TempDir()
	if err := Replace(dir, "f", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := Replace(dir, "f", []byte("two!")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "two!" {
		t.Fatalf("after Replace: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "f.tmp")); !os.IsNotExist(err) {
		t.Fatalf("the temporary file is left: %v", err)
	}
	if err := Truncate(filepath.Join(dir, "f"), 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "t" {
		t.Fatalf("after Truncate: %q", b)
	}
	f, err := OpenAppend(dir, "log")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("a"))
	f.Close()
	f, err = OpenAppend(dir, "log")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("b"))
	f.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "log")); string(b) != "ab" {
		t.Fatalf("log %q", b)
	}
	// Errors name the file.
	if err := Replace(filepath.Join(dir, "missing"), "x", nil); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Replace in a missing dir: %v", err)
	}
	if err := Truncate(filepath.Join(dir, "nope"), 0); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Truncate of a missing file: %v", err)
	}
	// A directory where the temporary file goes makes Replace fail, and
	// leaves the old contents.
	if err := os.Mkdir(filepath.Join(dir, "g.tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "g"), []byte("old"), 0o640)
	if err := Replace(dir, "g", []byte("new")); err == nil {
		t.Fatal("Replace over a blocked temporary file succeeded")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "g")); string(b) != "old" {
		t.Fatalf("a failed Replace changed the file: %q", b)
	}
}
