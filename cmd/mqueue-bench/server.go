package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is one running mqueue or ceiling process.
type server struct {
	name    string
	cmd     *exec.Cmd
	addr    string // host:port of the API
	log     *bytes.Buffer
	started time.Time
	ready   time.Duration // from exec to the first 200 of /readyz
	exited  chan error
}

// freePort returns a port the kernel just handed out on 127.0.0.1. Another
// process could take it before the server binds it; on this machine nobody
// does.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

var client = &http.Client{Timeout: 5 * time.Second}

// startServer runs bin with args (in which "ADDR" is replaced by the listen
// address) and waits until GET /readyz answers 200, timing it.
func startServer(name, bin string, args []string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	full := make([]string, len(args))
	for i, a := range args {
		full[i] = strings.ReplaceAll(a, "ADDR", addr)
	}
	s := &server{name: name, addr: addr, log: new(bytes.Buffer), exited: make(chan error, 1)}
	s.cmd = exec.Command(bin, full...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := s.started.Add(120 * time.Second)
	quick := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-s.exited:
			return nil, fmt.Errorf("%s exited before ready: %v\n%s", name, err, s.log)
		default:
		}
		resp, err := quick.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.ready = time.Since(s.started)
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not ready after 120 s:\n%s", name, s.log)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit, then SIGKILL.
func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// procSample is what /proc says about the server at one moment.
type procSample struct {
	RSS, HWM   int64 // bytes (VmRSS, VmHWM)
	CPU        time.Duration
	Syscr      int64 // read-like syscalls (read, readv, pread, recv...)
	Syscw      int64 // write-like syscalls
	VolSwitch  int64 // voluntary context switches, all threads
	ThreadsNum int64
}

func (s *server) proc() (procSample, error) {
	return readProc(s.cmd.Process.Pid)
}

func readProc(pid int) (procSample, error) {
	var p procSample
	base := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(base + "/status")
	if err != nil {
		return p, err
	}
	p.RSS = kbField(status, "VmRSS:")
	p.HWM = kbField(status, "VmHWM:")
	p.ThreadsNum = kbField(status, "Threads:") / 1024
	if io, err := os.ReadFile(base + "/io"); err == nil {
		p.Syscr = kbField(io, "syscr:") / 1024
		p.Syscw = kbField(io, "syscw:") / 1024
	}
	if stat, err := os.ReadFile(base + "/stat"); err == nil {
		// Fields after the command, which is in parentheses: state is 3,
		// utime 14, stime 15 (1-based) in clock ticks of 1/100 s.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			f := strings.Fields(string(stat[i+1:]))
			if len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				p.CPU = time.Duration(ut+st) * 10 * time.Millisecond
			}
		}
	}
	// Context switches of every thread: the wake-ups of the process.
	if ents, err := os.ReadDir(base + "/task"); err == nil {
		for _, e := range ents {
			if b, err := os.ReadFile(base + "/task/" + e.Name() + "/status"); err == nil {
				p.VolSwitch += kbField(b, "voluntary_ctxt_switches:") / 1024
			}
		}
	}
	return p, nil
}

// kbField returns the number after key in a /proc status-like file, times
// 1024 (VmRSS is in kB; callers of count fields divide again).
func kbField(b []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// promSample holds the counters of /metrics that the table reports.
type promSample struct {
	Mallocs     float64 // go_memstats_mallocs_total
	Batches     float64 // mqueue_commit_batch_messages_count
	BatchMsgs   float64 // mqueue_commit_batch_messages_sum
	Fsyncs      float64 // mqueue_fsync_duration_seconds_count
	FsyncSecs   float64 // mqueue_fsync_duration_seconds_sum
	GCs         float64 // go_gc_duration_seconds_count
	HeapInuse   float64 // go_memstats_heap_inuse_bytes
	HTTPReqs    float64 // sum of mqueue_http_requests_total
	QueueDepths map[string]float64
}

// scrape reads /metrics of an mqueue server.
func (s *server) scrape() (promSample, error) {
	var p promSample
	resp, err := client.Get(s.url("/metrics"))
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return p, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p.QueueDepths = map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		name, val := line[:sp], line[sp+1:]
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		metric := name
		if i := strings.IndexByte(name, '{'); i >= 0 {
			metric = name[:i]
		}
		switch metric {
		case "go_memstats_mallocs_total":
			p.Mallocs = v
		case "mqueue_commit_batch_messages_count":
			p.Batches = v
		case "mqueue_commit_batch_messages_sum":
			p.BatchMsgs = v
		case "mqueue_fsync_duration_seconds_count":
			p.Fsyncs = v
		case "mqueue_fsync_duration_seconds_sum":
			p.FsyncSecs = v
		case "go_gc_duration_seconds_count":
			p.GCs = v
		case "go_memstats_heap_inuse_bytes":
			p.HeapInuse = v
		case "mqueue_http_requests_total":
			p.HTTPReqs += v
		case "mqueue_queue_depth":
			if _, q, ok := strings.Cut(name, `queue="`); ok {
				q, _, _ = strings.Cut(q, `"`)
				p.QueueDepths[q] = v
			}
		}
	}
	return p, sc.Err()
}

// depth returns the depth of queue from GET /api/stats/{queue}.
func (s *server) depth(queue string) (int64, error) {
	resp, err := client.Get(s.url("/api/stats/" + queue))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0, nil
	}
	var st struct {
		Depth int64 `json:"depth"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("stats of %s: %w", queue, err)
	}
	return st.Depth, nil
}

// alive returns an error if the server has exited.
func (s *server) alive() error {
	select {
	case err := <-s.exited:
		s.exited <- err
		if err == nil {
			err = errors.New("exited")
		}
		return fmt.Errorf("%s died: %v\n%s", s.name, err, s.log)
	default:
		return nil
	}
}
