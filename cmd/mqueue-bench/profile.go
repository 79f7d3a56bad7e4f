package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// profile records, for an enqueue and a dequeue run of mqueue (fsync mode
// -profile-mode) under -c100, a CPU profile, the allocations made during the
// run (two allocs profiles, diffed with -base), an execution trace (for the
// sync-blocking and syscall profiles of go tool trace) and strace -c, plus
// text summaries of each, into dir.
func (b *bench) profile(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	switch b.cfg.profMode {
	case "always", "interval", "never":
	default:
		return fmt.Errorf("bad -profile-mode %q", b.cfg.profMode)
	}
	t := target{name: "mqueue " + b.cfg.profMode, mode: b.cfg.profMode}
	const conns = 100
	for _, op := range []string{"enqueue", "dequeue"} {
		b.logf("== profile: %s -c%d against %s", op, conns, t.name)
		if err := b.profileRun(dir, t, op, conns); err != nil {
			return fmt.Errorf("profile %s: %w", op, err)
		}
		if err := b.straceRun(dir, t, op, conns); err != nil {
			return fmt.Errorf("strace %s: %w", op, err)
		}
	}
	b.logf("   profiles in %s (see the *.txt summaries)", dir)
	return nil
}

func (b *bench) freshDir(op string) (string, error) {
	dir, err := os.MkdirTemp(b.work, "data-")
	if err != nil {
		return "", err
	}
	if op == "dequeue" {
		if err := copyDir(b.template, dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func fetch(url, path string) error {
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (b *bench) profileRun(out string, t target, op string, conns int) error {
	data, err := b.freshDir(op)
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)
	port, err := freePort()
	if err != nil {
		return err
	}
	pp := "http://127.0.0.1:" + strconv.Itoa(port) + "/debug/pprof/"
	s, err := b.start(t, data, "--pprof", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	defer s.stop()
	base := filepath.Join(out, op)
	if err := fetch(pp+"allocs", base+".allocs.base.pb.gz"); err != nil {
		return err
	}
	script := b.postLua
	if op == "dequeue" {
		script = b.getLua
	}
	d := max(b.cfg.duration, 5*time.Second)
	type wr struct {
		r   wrkResult
		err error
	}
	done := make(chan wr, 1)
	go func() {
		r, err := runWrk(context.Background(), b.cfg.threads, conns, d, script, s.url("/api/queue/"+benchQueue))
		done <- wr{r, err}
	}()
	time.Sleep(500 * time.Millisecond)
	cpuSecs := max(1, int((d-2*time.Second)/time.Second))
	if err := fetch(pp+"profile?seconds="+strconv.Itoa(cpuSecs), base+".cpu.pb.gz"); err != nil {
		return err
	}
	if err := fetch(pp+"trace?seconds=1", base+".trace"); err != nil {
		return err
	}
	res := <-done
	if res.err != nil {
		return res.err
	}
	if err := fetch(pp+"allocs", base+".allocs.pb.gz"); err != nil {
		return err
	}
	summary := fmt.Sprintf("%s -c%d: %d requests, %.0f req/s, p50 %v, p99 %v\n", op, conns, res.r.Requests, res.r.ReqPerSec, res.r.P50, res.r.P99)
	if err := os.WriteFile(base+".wrk.txt", []byte(summary), 0o644); err != nil {
		return err
	}
	// Text summaries; failures here only lose a summary.
	b.goTool(base+".cpu.txt", "pprof", "-top", "-nodecount=40", b.cfg.mqueueBin, base+".cpu.pb.gz")
	b.goTool(base+".cpu.cum.txt", "pprof", "-top", "-cum", "-nodecount=40", b.cfg.mqueueBin, base+".cpu.pb.gz")
	b.goTool(base+".allocs.txt", "pprof", "-top", "-nodecount=40", "-sample_index=alloc_objects",
		"-base", base+".allocs.base.pb.gz", b.cfg.mqueueBin, base+".allocs.pb.gz")
	for _, kind := range []string{"sync", "syscall", "sched"} {
		prof := base + ".trace." + kind + ".pb"
		if b.goTool(prof, "tool", "trace", "-pprof="+kind, base+".trace") == nil {
			b.goTool(prof+".txt", "pprof", "-top", "-nodecount=30", prof)
		}
	}
	return nil
}

// goTool runs `go tool ARGS...` (or `go tool pprof` when args[0] is pprof)
// with its output in path.
func (b *bench) goTool(path string, args ...string) error {
	if args[0] == "pprof" {
		args = append([]string{"tool"}, args...)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		b.logf("   go %v: %v (see %s)", args, err, path)
		return err
	}
	return nil
}

// straceRun counts the syscalls of the server (all threads) during one wrk
// run. strace slows the server a lot; the counts per request are what it is
// for.
func (b *bench) straceRun(out string, t target, op string, conns int) error {
	if _, err := exec.LookPath("strace"); err != nil {
		b.logf("   strace not installed; skipping the syscall count")
		return nil
	}
	data, err := b.freshDir(op)
	if err != nil {
		return err
	}
	defer os.RemoveAll(data)
	s, err := b.start(t, data)
	if err != nil {
		return err
	}
	defer s.stop()
	base := filepath.Join(out, op)
	st := exec.Command("strace", "-c", "-f", "-p", strconv.Itoa(s.cmd.Process.Pid), "-o", base+".strace.txt")
	if err := st.Start(); err != nil {
		return err
	}
	time.Sleep(time.Second) // attach to every thread
	script := b.postLua
	if op == "dequeue" {
		script = b.getLua
	}
	r, err := runWrk(context.Background(), b.cfg.threads, conns, b.cfg.duration, script, s.url("/api/queue/"+benchQueue))
	_ = st.Process.Signal(syscall.SIGINT)
	_ = st.Wait()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(base+".strace.txt", os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "\nunder strace: %s -c%d, %d requests (%.0f req/s); divide the calls column by it\n", op, conns, r.Requests, r.ReqPerSec)
	return err
}
