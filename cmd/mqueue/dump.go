package main

import (
	"fmt"
	"io"
)

// runDump implements `mqueue dump`. It returns the process exit code.
func runDump(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "mqueue dump: not implemented yet")
	return 2
}
