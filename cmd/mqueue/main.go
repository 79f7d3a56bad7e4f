// Command mqueue is a durable HTTP message queue in one binary.
//
//	mqueue [serve] [flags]   serve the HTTP API (the default command)
//	mqueue dump [flags]      inspect segment files offline
//	mqueue version           print the version
//
// Run `mqueue serve --help` for the flags; each can also be set from the
// environment as MQUEUE_<FLAG> (dashes become underscores), and the command
// line wins over the environment.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runServe(args, stdout, stderr)
	}
	switch args[0] {
	case "-version", "--version":
		printVersion(stdout)
		return 0
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "dump":
		return runDump(args[1:], stdout, stderr)
	case "version":
		printVersion(stdout)
		return 0
	case "help":
		printUsage(stdout)
		return 0
	}
	if cliCommands[args[0]] {
		return runCLI(args[0], args[1:], cliEnv{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv})
	}
	if strings.HasPrefix(args[0], "-") { // plain `mqueue --flags` means serve
		return runServe(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "mqueue: unknown command %q\n", args[0])
	printUsage(stderr)
	return 2
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "mqueue %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  mqueue [serve] [flags]   serve the HTTP API (see: mqueue serve --help)
  mqueue dump [flags]      inspect segment files offline (see: mqueue dump --help)
  mqueue version           print the version
`+cliUsage)
}
