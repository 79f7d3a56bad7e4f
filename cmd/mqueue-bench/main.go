// Command mqueue-bench is mqueue's load benchmark. It builds (or takes) the
// mqueue and mqueue-ceiling binaries, starts them on 127.0.0.1 with fresh
// temporary data directories, drives them with wrk, and prints one markdown
// table of medians:
//
//   - http: wrk POST (enqueue) and GET (dequeue) at several connection
//     counts against mqueue in each fsync mode and against the bare-Gin
//     ceiling, alternated in rounds (ceiling, always, interval, never, then
//     again) so that drift on a shared machine hits every server alike;
//     ratios are medians of the per-round ratios to the ceiling.
//   - engine: the Go micro-benchmarks of segment, engine and api, run here
//     (-gobench run) or parsed from a file (-gobench FILE, what make bench does).
//   - scale (-scale): a 10-million-message backlog loaded through the engine,
//     then enqueue/dequeue throughput, RSS and restart time to /readyz with
//     it, against an empty queue, alternated the same way.
//
// Dequeue runs start on a copy of a data directory pre-filled through the
// engine (never through HTTP), large enough that the queue never runs dry;
// the table reports the depth left.
//
// With -profile DIR it also records, for one enqueue and one dequeue run
// against mqueue --fsync=always, a CPU profile, the allocations of the run,
// an execution trace and an strace -c syscall summary into DIR.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

type config struct {
	duration   time.Duration
	runs       int
	threads    int
	conns      []int
	modes      []string
	http       bool
	scale      bool
	gobench    string
	benchtime  string
	mqueueBin  string
	ceilingBin string
	workDir    string
	prefill    int64
	backlog    int64
	profileDir string
	profMode   string
	out        string
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqueue-bench:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "mqueue-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("mqueue-bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "a short smoke run: 2 s runs, 1 round, -c100 only")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each wrk run")
	fs.IntVar(&cfg.runs, "runs", 3, "rounds per cell; the table shows medians")
	fs.IntVar(&cfg.threads, "threads", 2, "wrk threads (-t)")
	conns := fs.String("conns", "100,10,1000", "wrk connection counts (-c), comma-separated")
	modes := fs.String("modes", "handoff,handoff-fsync,always,interval,never", "mqueue fsync modes to run, comma-separated; handoff = the ceiling with --handoff, handoff-fsync = with --handoff-fsync")
	fs.BoolVar(&cfg.http, "http", true, "run the HTTP section")
	fs.BoolVar(&cfg.scale, "scale", false, "run the 10M-message backlog section (takes several minutes and ~1.4 GB of disk)")
	fs.StringVar(&cfg.gobench, "gobench", "run", "engine section: run (go test -bench here), off, or a FILE of saved go test -bench output")
	fs.StringVar(&cfg.benchtime, "benchtime", "", "go test -benchtime for -gobench run (default go's 1s)")
	fs.StringVar(&cfg.mqueueBin, "mqueue", "", "mqueue binary (default: go build ./cmd/mqueue)")
	fs.StringVar(&cfg.ceilingBin, "ceiling", "", "mqueue-ceiling binary (default: go build ./cmd/mqueue-ceiling)")
	fs.StringVar(&cfg.workDir, "workdir", "", "directory for binaries and data directories (default a new temp dir, removed at the end)")
	fs.Int64Var(&cfg.prefill, "prefill", 0, "messages pre-filled for each dequeue run (default 120000 per second of -duration)")
	fs.Int64Var(&cfg.backlog, "backlog", 10_000_000, "messages in the -scale backlog")
	fs.StringVar(&cfg.profileDir, "profile", "", "also write CPU/alloc profiles, a trace and strace -c of mqueue (-profile-mode) under -c100 into this directory")
	fs.StringVar(&cfg.profMode, "profile-mode", "always", "fsync mode of the -profile runs")
	fs.StringVar(&cfg.out, "out", "", "also write the table to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *quick {
		cfg.duration, cfg.runs, *conns = 2*time.Second, 1, "100"
		if cfg.benchtime == "" {
			cfg.benchtime = "200ms"
		}
	}
	for _, c := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -conns entry %q", c)
		}
		cfg.conns = append(cfg.conns, n)
	}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "always", "interval", "never":
			cfg.modes = append(cfg.modes, m)
		default:
			if _, ref := refServers[m]; !ref || m == "" {
				return nil, fmt.Errorf("bad -modes entry %q", m)
			}
			cfg.modes = append(cfg.modes, m)
		}
	}
	if cfg.runs < 1 || cfg.duration < time.Second {
		return nil, fmt.Errorf("need -runs >= 1 and -duration >= 1s")
	}
	if cfg.prefill == 0 {
		cfg.prefill = int64(120_000 * cfg.duration.Seconds())
	}
	return cfg, nil
}

// bench holds what the sections share.
type bench struct {
	cfg         *config
	work        string
	postLua     string
	getLua      string
	template    string // data dir with cfg.prefill messages in queue "bench"
	log         io.Writer
	rows        []row
	header      []string
	templateMsg int64
}

const benchQueue = "bench"

func run(cfg *config) error {
	b := &bench{cfg: cfg, log: os.Stderr}
	work := cfg.workDir
	if work == "" {
		d, err := os.MkdirTemp("", "mqueue-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	b.work = work
	var err error
	if b.postLua, b.getLua, err = writeScripts(work); err != nil {
		return err
	}
	b.header = machineInfo(cfg)

	switch cfg.gobench {
	case "off":
	case "run":
		b.logf("== engine: go test -bench (segment, engine, api)")
		bs, err := runGoBench(b.log, cfg.benchtime)
		if err != nil {
			return err
		}
		b.rows = append(b.rows, goBenchRows(bs)...)
	default:
		bs, err := loadGoBench(cfg.gobench)
		if err != nil {
			return fmt.Errorf("-gobench: %w", err)
		}
		b.rows = append(b.rows, goBenchRows(bs)...)
	}

	if cfg.http || cfg.scale || cfg.profileDir != "" {
		if err := b.buildBinaries(); err != nil {
			return err
		}
		if _, err := exec.LookPath("wrk"); err != nil {
			return fmt.Errorf("wrk not found: apt-get install -y wrk")
		}
		b.template = filepath.Join(work, "template")
		b.logf("== pre-filling %d messages through the engine for the dequeue runs", cfg.prefill)
		rate, err := bulkLoad(b.template, benchQueue, cfg.prefill, nil)
		if err != nil {
			return fmt.Errorf("pre-fill: %w", err)
		}
		b.templateMsg = cfg.prefill
		b.logf("   %.0f msgs/s, %d MB", rate, dirBytes(b.template)>>20)
	}
	if cfg.http {
		if err := b.httpSection(); err != nil {
			return err
		}
	}
	if cfg.scale {
		if err := b.scaleSection(); err != nil {
			return err
		}
	}
	if cfg.profileDir != "" {
		if err := b.profile(cfg.profileDir); err != nil {
			return err
		}
	}

	var sb strings.Builder
	printTable(&sb, b.header, b.rows)
	fmt.Print(sb.String())
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(sb.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, format+"\n", args...)
}

// buildBinaries builds mqueue and mqueue-ceiling unless given.
func (b *bench) buildBinaries() error {
	build := func(pkg, out string) error {
		b.logf("== go build %s", pkg)
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = b.log, b.log
		return cmd.Run()
	}
	if b.cfg.mqueueBin == "" {
		b.cfg.mqueueBin = filepath.Join(b.work, "mqueue")
		if err := build("./cmd/mqueue", b.cfg.mqueueBin); err != nil {
			return err
		}
	}
	if b.cfg.ceilingBin == "" {
		b.cfg.ceilingBin = filepath.Join(b.work, "mqueue-ceiling")
		if err := build("./cmd/mqueue-ceiling", b.cfg.ceilingBin); err != nil {
			return err
		}
	}
	return nil
}

// machineInfo describes the conditions of the run.
func machineInfo(cfg *config) []string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load, _ := os.ReadFile("/proc/loadavg")
	wrkVer := "?"
	if out, err := exec.Command("wrk", "-v").CombinedOutput(); err == nil || len(out) > 0 {
		wrkVer = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	commit := "?"
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return []string{
		fmt.Sprintf("date %s; commit %s; %s, %d cores (shared with wrk); Linux %s; %s; %s",
			time.Now().UTC().Format("2006-01-02 15:04 UTC"), commit, cpu, runtime.NumCPU(),
			strings.TrimSpace(string(kernel)), runtime.Version(), wrkVer),
		fmt.Sprintf("wrk -t%d, %s per run, %d rounds per cell (medians), load average at start %s",
			cfg.threads, cfg.duration, cfg.runs, strings.Join(strings.Fields(string(load))[:3], " ")),
	}
}

// target is one server configuration of the HTTP section.
type target struct {
	name string
	mode string // an fsync mode of mqueue, or a key of refServers
}

// refServers are the reference servers, all mqueue-ceiling, by -modes entry
// ("" is the bare ceiling, always run): the name in the table and the
// flags that make each one (dataDir is the run's fresh directory).
var refServers = map[string]struct {
	name  string
	flags func(dataDir string) []string
}{
	"":              {"ceiling (bare Gin)", func(string) []string { return nil }},
	"handoff":       {"ceiling + hand-off (no disk)", func(string) []string { return []string{"--handoff"} }},
	"handoff-fsync": {"ceiling + hand-off + fdatasync", func(d string) []string { return []string{"--handoff-fsync", filepath.Join(d, "batches")} }},
}

func (t target) isMqueue() bool {
	_, ref := refServers[t.mode]
	return !ref
}

func (b *bench) targets() []target {
	ts := []target{{name: refServers[""].name}}
	for _, m := range b.cfg.modes {
		name := "mqueue " + m
		if r, ok := refServers[m]; ok {
			name = r.name
		}
		ts = append(ts, target{name: name, mode: m})
	}
	return ts
}

// runResult is one wrk run plus what the server's counters say about it.
type runResult struct {
	wrkResult
	allocsPerReq   float64 // -1 when unknown
	syscallsPerReq float64
	cpuPerReq      time.Duration
	msgsPerBatch   float64 // -1 when unknown
	fsyncsPerSec   float64
	fsyncMean      time.Duration // -1 when unknown
	depthLeft      int64         // -1 when unknown
	rssAfter       int64
	hwm            int64
	rssReady       int64
	ready          time.Duration
	volSwitchReq   float64
}

// start launches t on dataDir (which holds the hand-off + fdatasync file for
// that reference server; the other ceilings ignore it).
func (b *bench) start(t target, dataDir string, extra ...string) (*server, error) {
	if r, ok := refServers[t.mode]; ok {
		args := append([]string{"--addr", "ADDR"}, r.flags(dataDir)...)
		return startServer(t.name, b.cfg.ceilingBin, append(args, extra...))
	}
	args := []string{"serve", "--addr", "ADDR", "--data", dataDir, "--fsync", t.mode,
		"--log-level", "warn", "--drain-grace", "0s"}
	return startServer(t.name, b.cfg.mqueueBin, append(args, extra...))
}

// measure runs wrk against a started server and gathers the counters.
func (b *bench) measure(s *server, isMqueue bool, op string, conns int) (runResult, error) {
	res := runResult{allocsPerReq: -1, msgsPerBatch: -1, fsyncsPerSec: -1, fsyncMean: -1, depthLeft: -1}
	script, path := b.postLua, "/api/queue/"+benchQueue
	if op == "dequeue" {
		script = b.getLua
	}
	p0, err := s.proc()
	if err != nil {
		return res, err
	}
	res.rssReady, res.ready = p0.RSS, s.ready
	var m0 promSample
	if isMqueue {
		if m0, err = s.scrape(); err != nil {
			return res, err
		}
	}
	w, err := runWrk(context.Background(), b.cfg.threads, conns, b.cfg.duration, script, s.url(path))
	if err != nil {
		return res, err
	}
	if err := s.alive(); err != nil {
		return res, err
	}
	p1, err := s.proc()
	if err != nil {
		return res, err
	}
	res.wrkResult = w
	reqs := float64(max(w.Requests, 1))
	res.syscallsPerReq = float64(p1.Syscr+p1.Syscw-p0.Syscr-p0.Syscw) / reqs
	res.cpuPerReq = time.Duration(float64(p1.CPU-p0.CPU) / reqs)
	res.volSwitchReq = float64(p1.VolSwitch-p0.VolSwitch) / reqs
	res.rssAfter, res.hwm = p1.RSS, p1.HWM
	if isMqueue {
		m1, err := s.scrape()
		if err != nil {
			return res, err
		}
		res.allocsPerReq = (m1.Mallocs - m0.Mallocs) / reqs
		if nb := m1.Batches - m0.Batches; nb > 0 {
			res.msgsPerBatch = (m1.BatchMsgs - m0.BatchMsgs) / nb
		}
		res.fsyncsPerSec = (m1.Fsyncs - m0.Fsyncs) / max(w.Seconds, b.cfg.duration.Seconds())
		if n := m1.Fsyncs - m0.Fsyncs; n > 0 {
			res.fsyncMean = time.Duration((m1.FsyncSecs - m0.FsyncSecs) / n * 1e9)
		}
		if res.depthLeft, err = s.depth(benchQueue); err != nil {
			return res, err
		}
	}
	return res, nil
}

// runOnce starts t on a fresh data directory (a copy of the pre-filled
// template for dequeues), runs wrk and stops it.
func (b *bench) runOnce(t target, op string, conns int) (runResult, error) {
	dir, err := os.MkdirTemp(b.work, "data-")
	if err != nil {
		return runResult{}, err
	}
	defer os.RemoveAll(dir)
	if op == "dequeue" && t.isMqueue() {
		if err := copyDir(b.template, dir); err != nil {
			return runResult{}, err
		}
	}
	s, err := b.start(t, dir)
	if err != nil {
		return runResult{}, err
	}
	defer s.stop()
	return b.measure(s, t.isMqueue(), op, conns)
}

func (b *bench) httpSection() error {
	ts := b.targets()
	for _, op := range []string{"enqueue", "dequeue"} {
		for _, conns := range b.cfg.conns {
			results := make([][]runResult, len(ts))
			for round := range b.cfg.runs {
				for i, t := range ts {
					r, err := b.runOnce(t, op, conns)
					if err != nil {
						return fmt.Errorf("%s %s -c%d: %w", t.name, op, conns, err)
					}
					b.logf("   %-8s -c%-5d round %d %-20s %9.0f req/s p50 %-9v p99 %-9v non2xx %d sockerr %d depth %d",
						op, conns, round+1, t.name, r.ReqPerSec, r.P50, r.P99, r.Non2xx, r.SockErrs, r.depthLeft)
					results[i] = append(results[i], r)
				}
			}
			for i, t := range ts {
				cas := fmt.Sprintf("%s -c%d", op, conns)
				b.rows = append(b.rows, summarize("http", t.name, cas, results[i], results[0], i == 0))
			}
		}
	}
	return nil
}

// summarize makes the row of one cell: medians of the runs, and the median
// of the per-round ratios to ref (the ceiling, or the empty queue).
func summarize(section, name, cas string, rs, ref []runResult, isRef bool) row {
	r := row{section: section, target: name, cas: cas, unit: "req/s", ratio: -1, p99ratio: -1}
	pick := func(f func(runResult) float64) float64 {
		v := make([]float64, len(rs))
		for i := range rs {
			v[i] = f(rs[i])
		}
		return median(v)
	}
	r.rate = pick(func(x runResult) float64 { return x.ReqPerSec })
	r.p50 = time.Duration(pick(func(x runResult) float64 { return float64(x.P50) }))
	r.p99 = time.Duration(pick(func(x runResult) float64 { return float64(x.P99) }))
	r.allocs = pick(func(x runResult) float64 { return x.allocsPerReq })
	r.syscalls = pick(func(x runResult) float64 { return x.syscallsPerReq })
	r.cpu = time.Duration(pick(func(x runResult) float64 { return float64(x.cpuPerReq) }))
	r.batch = pick(func(x runResult) float64 { return x.msgsPerBatch })
	if !isRef && len(ref) == len(rs) {
		ratios := make([]float64, len(rs))
		p99s := make([]float64, len(rs))
		for i := range rs {
			ratios[i] = rs[i].ReqPerSec / ref[i].ReqPerSec
			p99s[i] = float64(rs[i].P99) / float64(max(ref[i].P99, 1))
		}
		r.ratio, r.p99ratio = median(ratios), median(p99s)
	}
	var non2xx, sock int64
	for _, x := range rs {
		non2xx += x.Non2xx
		sock += x.SockErrs
	}
	if non2xx > 0 {
		r.notes = append(r.notes, fmt.Sprintf("non-2xx %d", non2xx))
	}
	if sock > 0 {
		r.notes = append(r.notes, fmt.Sprintf("socket errors %d", sock))
	}
	if d := pick(func(x runResult) float64 { return float64(x.depthLeft) }); d >= 0 && strings.HasPrefix(cas, "dequeue") {
		r.notes = append(r.notes, fmt.Sprintf("depth left %.0f", d))
	}
	if f := pick(func(x runResult) float64 { return x.fsyncsPerSec }); f >= 0 {
		r.notes = append(r.notes, fmt.Sprintf("%.0f fsyncs/s", f))
	}
	if f := pick(func(x runResult) float64 { return float64(x.fsyncMean) }); f > 0 {
		r.notes = append(r.notes, fmt.Sprintf("mean fsync %s", fmtDur(time.Duration(f))))
	}
	r.notes = append(r.notes, fmt.Sprintf("%.2f ctx switches/req", pick(func(x runResult) float64 { return x.volSwitchReq })))
	return r
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return -1
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
