package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

//go:embed post.lua
var postLua []byte

//go:embed get.lua
var getLua []byte

// wrkResult is what one wrk --latency run reports.
type wrkResult struct {
	Requests  int64
	Seconds   float64
	ReqPerSec float64
	P50, P99  time.Duration
	Non2xx    int64
	SockErrs  int64 // connect + read + write + timeout
	Timeouts  int64
}

// writeScripts puts the embedded lua scripts in dir and returns their paths.
func writeScripts(dir string) (post, get string, err error) {
	post = filepath.Join(dir, "post.lua")
	get = filepath.Join(dir, "get.lua")
	if err = os.WriteFile(post, postLua, 0o644); err != nil {
		return "", "", err
	}
	err = os.WriteFile(get, getLua, 0o644)
	return post, get, err
}

// runWrk runs wrk against url and parses its report.
func runWrk(ctx context.Context, threads, conns int, d time.Duration, script, url string) (wrkResult, error) {
	if threads > conns {
		threads = conns
	}
	args := []string{
		"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s",
		"--latency", "-s", script, url,
	}
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return parseWrk(out.Bytes())
}

// parseWrk reads the output of `wrk --latency`: the request count and
// duration, Requests/sec, the 50% and 99% latencies, non-2xx responses and
// socket errors.
func parseWrk(out []byte) (wrkResult, error) {
	var r wrkResult
	var haveRate, haveP50, haveP99 bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: %q: %w", line, err)
			}
			r.ReqPerSec, haveRate = v, true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, fmt.Errorf("wrk output: %q: %w", line, err)
			}
			if f[0] == "50%" {
				r.P50, haveP50 = d, true
			} else {
				r.P99, haveP99 = d, true
			}
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			// "123456 requests in 5.00s, 12.34MB read"
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: %q: %w", line, err)
			}
			r.Requests = n
			if d, err := parseWrkDuration(strings.TrimSuffix(f[3], ",")); err == nil {
				r.Seconds = d.Seconds()
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				return r, fmt.Errorf("wrk output: %q: %w", line, err)
			}
			r.Non2xx = n
		case strings.HasPrefix(line, "Socket errors:"):
			// "Socket errors: connect 0, read 0, write 0, timeout 5"
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				if err != nil {
					return r, fmt.Errorf("wrk output: %q: %w", line, err)
				}
				r.SockErrs += n
				if f[i] == "timeout" {
					r.Timeouts = n
				}
			}
		}
	}
	if !haveRate || !haveP50 || !haveP99 {
		return r, errors.New("wrk output lacks Requests/sec or the 50%/99% latencies (was --latency given?)")
	}
	return r, nil
}

// parseWrkDuration parses wrk's latency spellings: 812.00us, 1.23ms, 2.00s,
// 1.50m, 1.00h.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: %w", s, err)
			}
			return time.Duration(v * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("duration %q: unknown unit", s)
}
