package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// goBench is one line of `go test -bench -benchmem` output.
type goBench struct {
	Pkg     string // last element of the import path
	Name    string // without the Benchmark prefix and the -GOMAXPROCS suffix
	N       int64
	Metrics map[string]float64 // by unit: ns/op, MB/s, B/op, allocs/op, msgs/s, records/s, ...
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parseGoBench reads the output of go test -bench: "pkg:" lines name the
// package of the benchmark lines after them.
func parseGoBench(r io.Reader) ([]goBench, error) {
	var out []goBench
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = p[strings.LastIndexByte(p, '/')+1:]
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark that logged or failed on its own line
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		b := goBench{
			Pkg:     pkg,
			Name:    procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), ""),
			N:       n,
			Metrics: map[string]float64{},
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("go bench line %q: %w", line, err)
			}
			b.Metrics[f[i+1]] = v
		}
		out = append(out, b)
	}
	return out, sc.Err()
}

// runGoBench runs the micro-benchmarks of segment, engine, api and the
// ceiling's handler, echoing
// their output to w.
func runGoBench(w io.Writer, benchtime string) ([]goBench, error) {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem"}
	if benchtime != "" {
		args = append(args, "-benchtime", benchtime)
	}
	args = append(args, "./segment/", "./engine/", "./api/", "./api/sqs/", "./cmd/mqueue-ceiling/")
	cmd := exec.Command("go", args...)
	var buf bytes.Buffer
	cmd.Stdout = io.MultiWriter(w, &buf)
	cmd.Stderr = w
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return parseGoBench(&buf)
}

// loadGoBench parses a saved go test -bench output.
func loadGoBench(path string) ([]goBench, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseGoBench(f)
}

var batchSize = regexp.MustCompile(`batch=(\d+)`)

// perOp is how many messages one op of b handles (the batch size of the
// segment benchmarks, else 1).
func (b goBench) perOp() float64 {
	if m := batchSize.FindStringSubmatch(b.Name); m != nil {
		n, _ := strconv.ParseFloat(m[1], 64)
		return n
	}
	return 1
}

// msgsPerSec is the message rate of b: its own msgs/s or records/s metric,
// else messages per op over ns/op.
func (b goBench) msgsPerSec() float64 {
	for _, k := range []string{"msgs/s", "records/s"} {
		if v, ok := b.Metrics[k]; ok {
			return v
		}
	}
	if ns := b.Metrics["ns/op"]; ns > 0 {
		return b.perOp() * 1e9 / ns
	}
	return 0
}

// goBenchRows turns the benchmarks into table rows. Segment appends are
// compared with the raw write+fsync of the same batch size, api handlers
// with the ceiling's.
func goBenchRows(bs []goBench) []row {
	raw := map[string]float64{}
	ceil := map[string]float64{}
	native := 0.0 // api/sqs's Sends/native-post, the base of its Sends/* ratios
	for _, b := range bs {
		if b.Pkg == "sqs" && b.Name == "Sends/native-post" {
			native = b.msgsPerSec()
		}
		if strings.HasPrefix(b.Name, "RawWriteFsync/") {
			raw[strings.TrimPrefix(b.Name, "RawWriteFsync/")] = b.msgsPerSec()
		}
		if c, ok := strings.CutPrefix(b.Name, "Ceiling"); ok {
			ceil[c] = b.msgsPerSec()
		}
	}
	var rows []row
	for _, b := range bs {
		r := row{
			section: "engine",
			target:  b.Pkg,
			cas:     b.Name,
			rate:    b.msgsPerSec(),
			unit:    "msg/s",
			ratio:   -1, p99ratio: -1,
			allocs: -1, syscalls: -1, cpu: -1, batch: -1,
		}
		if b.Pkg == "api" || b.Pkg == "mqueue-ceiling" {
			r.unit = "req/s"
		}
		if h, ok := strings.CutPrefix(b.Name, "Handler"); ok && ceil[h] > 0 {
			r.ratio = r.rate / ceil[h]
			r.notes = append(r.notes, "ratio vs the ceiling's handler")
		}
		if b.Pkg == "sqs" && strings.HasPrefix(b.Name, "Sends/") && b.Name != "Sends/native-post" && native > 0 {
			r.ratio = r.rate / native
			r.notes = append(r.notes, "ratio vs Sends/native-post, same run and server")
		}
		if ns, ok := b.Metrics["ns/op"]; ok {
			r.notes = append(r.notes, fmt.Sprintf("%s/op", fmtNs(ns)))
		}
		if mb, ok := b.Metrics["MB/s"]; ok {
			r.notes = append(r.notes, fmt.Sprintf("%.1f MB/s", mb))
		}
		if a, ok := b.Metrics["allocs/op"]; ok {
			r.allocs = a / b.perOp()
			r.notes = append(r.notes, fmt.Sprintf("%.0f B/op %.0f allocs/op", b.Metrics["B/op"], a))
		}
		if v, ok := b.Metrics["msgs/commit"]; ok {
			r.batch = v
		}
		if v, ok := b.Metrics["µs/fsync"]; ok {
			r.notes = append(r.notes, fmt.Sprintf("mean fsync %.0fµs", v))
		}
		if strings.HasPrefix(b.Name, "Append/") {
			if base := raw[strings.TrimPrefix(b.Name, "Append/")]; base > 0 {
				r.ratio = r.rate / base
				r.notes = append(r.notes, "ratio vs RawWriteFsync same batch")
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func fmtNs(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2fms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1fµs", ns/1e3)
	}
	return fmt.Sprintf("%.0fns", ns)
}
