// Package proctest runs the real mqueue binary for black-box tests: it
// builds it, starts it in its own process group (optionally under a
// wrapper such as strace), waits for /readyz, kills it with SIGKILL or
// stops it with SIGTERM, and reads its log and metrics. The reliability
// suite (cmd/mqueue/reliability), the end-to-end tests of cmd/mqueue and
// the deploy tests share it. Only tests import it.
package proctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvPrefix prefixes the environment variables mqueue serve reads
// (cmd/mqueue/serve.go); Env leaves them out of the child's environment.
const EnvPrefix = "MQUEUE_"

const (
	ReadyLimit  = 20 * time.Second // process start to /readyz 200
	ClientLimit = 10 * time.Second // one request
	DrainLimit  = 60 * time.Second // one drain
	ExitLimit   = 15 * time.Second // SIGTERM to exit
)

// RequireAll is set in CI: a missing prerequisite fails instead of
// skipping.
var RequireAll = os.Getenv("MQUEUE_TEST_REQUIRE_ALL") == "1"

// Unavailable skips t with a printed reason, or fails it under
// MQUEUE_TEST_REQUIRE_ALL=1.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if RequireAll {
		t.Fatalf("%s (MQUEUE_TEST_REQUIRE_ALL=1, so this fails instead of skipping)", msg)
	}
	t.Skipf("skipping: %s (set MQUEUE_TEST_REQUIRE_ALL=1 to make this fail)", msg)
}

// NeedRoot skips (or fails, see Unavailable) unless we are root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root (%s)", why)
	}
}

// NeedTool returns the path of a command, looking in PATH and then in the
// sbin directories a non-root PATH often lacks, or skips (fails, see
// Unavailable) without it.
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/local/go/bin"} {
		p := filepath.Join(dir, name)
		if fi, serr := os.Stat(p); serr == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	Unavailable(t, "needs %s (Debian package %s): %v", name, pkg, err)
	return ""
}

// Long skips a test that runs the real binary when -short is given.
func Long(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary; skipped with -short")
	}
}

// Build builds the server binary (without -race: the tests race the
// process, not the code) into the test's temp dir. The build cache makes
// this a link step after the first test.
func Build(t testing.TB) string {
	t.Helper()
	return BuildRace(t, false)
}

// BuildRace is Build, with -race when race is set.
func BuildRace(t testing.TB, race bool) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if os.Getenv("GOROOT") == "" {
			t.Fatalf("no go command in PATH to build the server: %v", err)
		}
	}
	root := filepath.Join("..", "..")
	if out, err := exec.Command(goBin, "env", "GOMOD").Output(); err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			root = filepath.Dir(mod)
		}
	}
	bin := filepath.Join(t.TempDir(), "mqueue")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/mqueue")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), root, err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// TempDir is t.TempDir(), or with MQUEUE_REL_KEEP=1 a directory that
// is kept after the test (its path is logged) for a post-mortem.
func TempDir(t testing.TB) string {
	t.Helper()
	if os.Getenv("MQUEUE_REL_KEEP") != "1" {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("", "mqueue-rel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MQUEUE_REL_KEEP=1: files kept in %s", d)
	return d
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Env is the child's environment: ours without MQUEUE_* variables.
func Env() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// Config says how to run one server process.
type Config struct {
	Bin    string
	Data   string
	Flags  []string // serve flags besides --addr and --data
	Wrap   []string // a command the server runs under, e.g. strace ... --
	LogDir string
	Name   string // of the log file
}

// Server is one server process (and its wrapper) in its own process
// group, killed in t.Cleanup if it still runs.
type Server struct {
	t       testing.TB
	Cmd     *exec.Cmd
	Addr    string
	Base    string // http://127.0.0.1:PORT
	LogPath string
	Started time.Time
	Exited  chan struct{}
	WaitErr error // valid once exited is closed
	wrapped bool  // runs under c.wrap
}

// Launch starts the process and returns at once.
func Launch(t testing.TB, c Config) *Server {
	t.Helper()
	addr := FreeAddr(t)
	logPath := filepath.Join(c.LogDir, c.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	args := append([]string{}, c.Wrap...)
	args = append(args, c.Bin, "serve", "--addr", addr, "--data", c.Data)
	args = append(args, c.Flags...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = Env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &Server{t: t, Cmd: cmd, Addr: addr, Base: "http://" + addr, LogPath: logPath, Exited: make(chan struct{}), wrapped: len(c.Wrap) > 0}
	s.Started = time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	go func() {
		s.WaitErr = cmd.Wait()
		close(s.Exited)
	}()
	t.Cleanup(s.Kill)
	return s
}

// ErrExited is returned by WaitReady when the process died first.
var ErrExited = errors.New("server exited before it was ready")

// WaitReady polls /readyz until 200 and returns the time since the start.
func (s *Server) WaitReady(limit time.Duration) (time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := s.Started.Add(limit)
	for {
		resp, err := client.Get(s.Base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(s.Started), nil
			}
		}
		select {
		case <-s.Exited:
			return 0, fmt.Errorf("%w (%v)", ErrExited, s.WaitErr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not ready within %v", limit)
		}
	}
}

// StartReady starts a server and waits for it to be ready, retrying on
// a port another test grabbed; any other failure fails the test.
func StartReady(t testing.TB, c Config) (*Server, time.Duration) {
	t.Helper()
	var last string
	for attempt := 0; attempt < 3; attempt++ {
		s := Launch(t, c)
		ready, err := s.WaitReady(ReadyLimit)
		if err == nil {
			return s, ready
		}
		s.Kill()
		last = fmt.Sprintf("%v; log %s:\n%s", err, s.LogPath, s.LogTail())
		if !strings.Contains(s.LogTail(), "address already in use") {
			break
		}
	}
	t.Fatalf("start %s: %s", c.Name, last)
	return nil, 0
}

// Alive reports whether the process still runs.
func (s *Server) Alive() bool {
	select {
	case <-s.Exited:
		return false
	default:
		return true
	}
}

// Kill SIGKILLs the whole process group and reaps the process.
func (s *Server) Kill() {
	_ = syscall.Kill(-s.Cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.Exited:
	case <-time.After(10 * time.Second):
		s.t.Errorf("pid %d did not die within 10s of SIGKILL", s.Cmd.Process.Pid)
	}
}

// Term sends SIGTERM and waits for the exit; it returns how long that took
// and the exit error (nil for status 0).
func (s *Server) Term(limit time.Duration) (time.Duration, error) {
	start := time.Now()
	pid := s.Cmd.Process.Pid
	if s.wrapped {
		// The server is the wrapper's (strace's) child: signal it, and the
		// wrapper exits as it does.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
			pid, _ = strconv.Atoi(f[0])
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-s.Exited:
		return time.Since(start), s.WaitErr
	case <-time.After(limit):
		s.Kill()
		return time.Since(start), fmt.Errorf("no exit within %v of SIGTERM", limit)
	}
}

// KilledBySignal reports whether the process (or its strace wrapper, which
// dies the same way) was killed by sig.
func (s *Server) KilledBySignal(sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(s.WaitErr, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// LogText returns the whole log.
func (s *Server) LogText() string {
	b, err := os.ReadFile(s.LogPath)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// LogTail returns the end of the log.
func (s *Server) LogTail() string {
	b := s.LogText()
	if len(b) > 3000 {
		b = "..." + b[len(b)-3000:]
	}
	return b
}

// LogPanics returns the log lines that show a panic or a fatal error.
func LogPanics(log string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "panic") || strings.HasPrefix(l, "fatal error") || strings.Contains(l, "DATA RACE") {
			out = append(out, l)
		}
	}
	return out
}

// Metric returns the value of one sample of /metrics (the first line
// starting with name, labels included), or -1 when there is none.
func Metric(t testing.TB, client *http.Client, base, name string) float64 {
	t.Helper()
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Errorf("GET /metrics: %v", err)
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// Client is a keep-alive client whose idle connections are closed in
// t.Cleanup (goleak checks the package).
func Client(t testing.TB) *http.Client {
	c := &http.Client{
		Transport: &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		Timeout:   ClientLimit,
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// Run runs cmd with a timeout and returns its combined output.
func Run(limit time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
