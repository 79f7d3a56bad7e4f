package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// The drain contract (SPEC.md): on SIGTERM /readyz answers 503 at once while
// everything else is served for --drain-grace, then the listener closes and
// the process exits within drain-grace + 10 s.
const (
	drainGrace   = 3 * time.Second
	exitDeadline = 10 * time.Second
	// checkSlack is what a load balancer's worst-case time to take a node
	// out must leave to spare inside drainGrace, for the /readyz round trips
	// and scheduling.
	checkSlack = time.Second
)

// toolTimeout bounds every external tool run.
const toolTimeout = 2 * time.Minute

// The skip-or-fail helpers, the free port and the child's environment are
// cmd/mqueue/proctest's, shared with the other end-to-end tests.

// requireTool returns the path of the executable name (proctest.NeedTool).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	return proctest.NeedTool(t, name, name)
}

// runTool runs name with args in dir (the package directory when empty),
// bounded by toolTimeout, and returns its combined output and exit error.
func runTool(t *testing.T, dir, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, toolTimeout, err)
	}
	return string(out), err
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// systemd unit

// unitFile is a parsed systemd unit: section -> key -> values in file order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, text string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("mqueue.service line %d: not key=value in a section: %q", i+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// last returns the effective (last) value of key in section.
func (u unitFile) last(section, key string) (string, bool) {
	vs := u[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// parseSystemdSeconds parses a systemd time span: plain seconds or Go-like
// units ("20s", "1min 30s").
func parseSystemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	for _, f := range strings.Fields(s) {
		f = strings.Replace(f, "min", "m", 1)
		d, err := time.ParseDuration(f)
		if err != nil {
			return 0, fmt.Errorf("time span %q: %w", s, err)
		}
		total += d
	}
	return total, nil
}

func TestSystemdUnitSettings(t *testing.T) {
	u := parseUnit(t, readFile(t, "mqueue.service"))
	want := []struct{ section, key, value string }{
		{"Service", "Type", "simple"},
		{"Service", "ExecStart", "/usr/local/bin/mqueue serve"},
		{"Service", "EnvironmentFile", "-/etc/mqueue/mqueue.env"},
		{"Service", "KillSignal", "SIGTERM"},
		{"Service", "Restart", "on-failure"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "ReadWritePaths", "/var/lib/mqueue"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "StateDirectory", "mqueue"},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, w := range want {
		got, ok := u.last(w.section, w.key)
		if !ok || got != w.value {
			t.Errorf("[%s] %s = %q, want %q", w.section, w.key, got, w.value)
		}
	}
	// Present, with any value.
	for _, k := range [][2]string{
		{"Unit", "StartLimitIntervalSec"}, {"Unit", "StartLimitBurst"},
		{"Service", "RestartSec"}, {"Service", "LimitNOFILE"},
	} {
		if _, ok := u.last(k[0], k[1]); !ok {
			t.Errorf("[%s] %s is missing", k[0], k[1])
		}
	}
	if _, dyn := u.last("Service", "DynamicUser"); !dyn {
		if _, ok := u.last("Service", "User"); !ok {
			t.Error("neither DynamicUser= nor User= is set: mqueue would run as root")
		}
	}
	if !contains(u["Service"]["Environment"], "MQUEUE_DATA=/var/lib/mqueue") {
		t.Errorf("Environment = %q, want one MQUEUE_DATA=/var/lib/mqueue", u["Service"]["Environment"])
	}

	// systemd must not SIGKILL a node that is still draining within its own
	// deadline: TimeoutStopSec > drain-grace + 10 s, with a margin.
	v, _ := u.last("Service", "TimeoutStopSec")
	stop, err := parseSystemdSeconds(v)
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if min := drainGrace + exitDeadline + 2*time.Second; stop < min {
		t.Errorf("TimeoutStopSec = %v, want >= %v (drain-grace %v + exit deadline %v + margin)", stop, min, drainGrace, exitDeadline)
	}
	// A bad data directory must not restart in a hot loop.
	rs, _ := u.last("Service", "RestartSec")
	if d, err := parseSystemdSeconds(rs); err != nil || d < time.Second {
		t.Errorf("RestartSec = %q, want >= 1s", rs)
	}
	burst, _ := u.last("Unit", "StartLimitBurst")
	if n, err := strconv.Atoi(burst); err != nil || n < 1 || n > 10 {
		t.Errorf("StartLimitBurst = %q, want 1..10", burst)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSystemdUnitVerify runs systemd-analyze verify on the unit. verify
// refuses an ExecStart that does not exist, and /usr/local/bin/mqueue is not
// installed on a test machine, so the checked copy points ExecStart at this
// test binary instead: an existing executable is all verify looks for; the
// rest of the unit is checked as written.
func TestSystemdUnitVerify(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := readFile(t, "mqueue.service")
	const execLine = "ExecStart=/usr/local/bin/mqueue serve"
	if strings.Count(text, execLine) != 1 {
		t.Fatalf("mqueue.service has no single %q line; update this test", execLine)
	}
	text = strings.Replace(text, execLine, "ExecStart="+self+" serve", 1)
	dir := t.TempDir()
	unit := filepath.Join(dir, "mqueue.service")
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, sa, "verify", "--man=no", unit)
	t.Logf("systemd-analyze verify:\n%s", out)
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v", err)
	}
	// verify exits 0 on unknown keys and bad values; it only says so.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "mqueue.service") {
			t.Errorf("systemd-analyze verify complains: %s", line)
		}
	}
}

// ---------------------------------------------------------------------------
// HAProxy

// haproxyDuration parses an HAProxy time: a bare number is milliseconds.
func haproxyDuration(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Millisecond, nil
	}
	return time.ParseDuration(s)
}

// haproxyDirectives returns the non-comment lines of section "kind name"
// (e.g. "backend mqueue_nodes"), trimmed.
func haproxyDirectives(t *testing.T, cfg, section string) []string {
	t.Helper()
	var lines []string
	in := false
	for _, line := range strings.Split(cfg, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' { // a section header
			in = strings.Join(strings.Fields(line), " ") == section
			continue
		}
		if in {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	if len(lines) == 0 {
		t.Fatalf("haproxy.cfg: no section %q", section)
	}
	return lines
}

// keywordArg returns the value after keyword in the fields of line, if any.
func keywordArg(line, keyword string) (string, bool) {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == keyword {
			return f[i+1], true
		}
	}
	return "", false
}

func TestHAProxyConfigSettings(t *testing.T) {
	cfg := readFile(t, "haproxy.cfg")
	backend := haproxyDirectives(t, cfg, "backend mqueue_nodes")
	defaults := haproxyDirectives(t, cfg, "defaults")
	has := func(lines []string, want string) bool { return contains(lines, want) }

	for _, want := range []string{
		"balance leastconn",
		"option httpchk",
		"http-check expect status 200",
		"stick on src",
	} {
		if !has(backend, want) {
			t.Errorf("backend mqueue_nodes lacks %q", want)
		}
	}
	var send string
	for _, l := range backend {
		if strings.HasPrefix(l, "http-check send ") {
			send = l
		}
	}
	if m, _ := keywordArg(send, "meth"); m != "GET" {
		t.Errorf("health check method = %q, want GET (%q)", m, send)
	}
	if u, _ := keywordArg(send, "uri"); u != "/readyz" {
		t.Errorf("health check uri = %q, want /readyz (%q)", u, send)
	}

	// Retries only where the request cannot have had an effect.
	for _, l := range backend {
		if !strings.HasPrefix(l, "retry-on ") {
			continue
		}
		for _, cond := range strings.Fields(l)[1:] {
			if cond != "conn-failure" && cond != "503" && cond != "none" {
				t.Errorf("retry-on %s: may repeat a POST or a dequeue that the node already did", cond)
			}
		}
	}

	// Long polls wait up to 30 s: the proxy must wait longer.
	for _, k := range []string{"timeout client", "timeout server"} {
		var v string
		for _, l := range defaults {
			if strings.HasPrefix(l, k+" ") {
				v = strings.TrimPrefix(l, k+" ")
			}
		}
		d, err := haproxyDuration(v)
		if err != nil || d <= 30*time.Second {
			t.Errorf("%s = %q, want > 30s (long polls)", k, v)
		}
	}

	// The drain arithmetic: the worst time from SIGTERM to DOWN is one full
	// inter (SIGTERM just after a good check) plus fall-1 fastinters.
	var dflt string
	for _, l := range backend {
		if strings.HasPrefix(l, "default-server ") {
			dflt = l
		}
	}
	param := func(k string) string {
		v, ok := keywordArg(dflt, k)
		if !ok {
			t.Fatalf("default-server has no %s: %q", k, dflt)
		}
		return v
	}
	inter, err1 := haproxyDuration(param("inter"))
	fast, err2 := haproxyDuration(param("fastinter"))
	fall, err3 := strconv.Atoi(param("fall"))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatalf("default-server timers: %v", err)
	}
	worst := inter + time.Duration(fall-1)*fast
	t.Logf("HAProxy: worst time to mark a draining node DOWN = inter %v + (fall %d - 1) x fastinter %v = %v; drain-grace %v",
		inter, fall, fast, worst, drainGrace)
	if worst+checkSlack > drainGrace {
		t.Errorf("worst time to DOWN %v + slack %v > drain-grace %v: the node would close its listener while still in the pool; shorten the checks or raise --drain-grace", worst, checkSlack, drainGrace)
	}
	for _, l := range backend {
		if strings.HasPrefix(l, "server ") && strings.Contains(l, " inter ") {
			t.Errorf("server line overrides the checked timers: %q", l)
		}
	}
}

func TestHAProxyConfigValid(t *testing.T) {
	haproxy := requireTool(t, "haproxy")
	out, err := runTool(t, "", haproxy, "-c", "-f", "haproxy.cfg")
	t.Logf("haproxy -c:\n%s", out)
	if err != nil {
		t.Fatalf("haproxy -c -f haproxy.cfg: %v", err)
	}
	if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ALERT]") {
		t.Errorf("haproxy -c warns; fix haproxy.cfg")
	}
}

// ---------------------------------------------------------------------------
// keepalived

// kaNode is one keepalived.conf statement, with its block if it opens one.
type kaNode struct {
	key      string
	args     []string
	children []*kaNode
}

// parseKeepalived parses keepalived.conf's brace syntax; comments start with
// # or !.
func parseKeepalived(t *testing.T, text string) *kaNode {
	t.Helper()
	root := &kaNode{key: "root"}
	stack := []*kaNode{root}
	for i, line := range strings.Split(text, "\n") {
		if j := strings.IndexAny(line, "#!"); j >= 0 {
			line = line[:j]
		}
		line = strings.ReplaceAll(strings.ReplaceAll(line, "{", " { "), "}", " } ")
		f := strings.Fields(line)
		for len(f) > 0 {
			switch f[0] {
			case "}":
				if len(stack) == 1 {
					t.Fatalf("keepalived.conf line %d: unbalanced }", i+1)
				}
				stack = stack[:len(stack)-1]
				f = f[1:]
				continue
			case "{":
				t.Fatalf("keepalived.conf line %d: { without a keyword", i+1)
			}
			n := &kaNode{key: f[0]}
			j := 1
			for j < len(f) && f[j] != "{" && f[j] != "}" {
				j++
			}
			n.args = f[1:j]
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			if j < len(f) && f[j] == "{" {
				stack = append(stack, n)
				j++
			}
			f = f[j:]
		}
	}
	if len(stack) != 1 {
		t.Fatalf("keepalived.conf: %d unclosed blocks", len(stack)-1)
	}
	return root
}

func (n *kaNode) all(key string) []*kaNode {
	var out []*kaNode
	for _, c := range n.children {
		if c.key == key {
			out = append(out, c)
		}
	}
	return out
}

func (n *kaNode) one(key string) *kaNode {
	if all := n.all(key); len(all) > 0 {
		return all[len(all)-1]
	}
	return nil
}

// arg returns the first argument of the first of keys present in n.
func (n *kaNode) arg(keys ...string) (string, bool) {
	for _, k := range keys {
		if c := n.one(k); c != nil && len(c.args) > 0 {
			return c.args[0], true
		}
	}
	return "", false
}

func seconds(t *testing.T, what, s string) time.Duration {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		t.Fatalf("%s = %q: not a number of seconds", what, s)
	}
	return time.Duration(f * float64(time.Second))
}

func TestKeepalivedConfigSettings(t *testing.T) {
	text := readFile(t, "keepalived.conf")
	root := parseKeepalived(t, text)
	vss := root.all("virtual_server")
	if len(vss) == 0 {
		t.Fatal("keepalived.conf has no virtual_server")
	}
	for _, vs := range vss {
		name := strings.Join(vs.args, " ")
		if len(vs.args) != 2 || vs.args[1] != "8088" {
			t.Errorf("virtual_server %q: want VIP and port 8088", name)
		}
		if s, _ := vs.arg("lvs_sched", "lb_algo"); s != "wlc" && s != "rr" {
			t.Errorf("virtual_server %s: scheduler %q, want wlc or rr", name, s)
		}
		if m, _ := vs.arg("lvs_method", "lb_kind"); m != "DR" && m != "NAT" {
			t.Errorf("virtual_server %s: forwarding %q, want DR (or NAT)", name, m)
		}
		if p, _ := vs.arg("persistence_timeout"); p == "" || p == "0" {
			t.Errorf("virtual_server %s: no persistence_timeout; acks of leases must reach the node that issued the receipt", name)
		}
		if vs.one("inhibit_on_failure") == nil {
			t.Errorf("virtual_server %s: no inhibit_on_failure; removing a draining node drops its open connections", name)
		}
		rss := vs.all("real_server")
		if len(rss) < 2 {
			t.Errorf("virtual_server %s: %d real servers, want at least 2 as an example", name, len(rss))
		}
		for _, rs := range rss {
			rsName := strings.Join(rs.args, " ")
			checks := rs.all("HTTP_GET")
			if len(checks) != 1 {
				t.Errorf("real_server %s: want one HTTP_GET check, have %d", rsName, len(checks))
				continue
			}
			url := checks[0].one("url")
			if url == nil {
				t.Errorf("real_server %s: HTTP_GET without url", rsName)
				continue
			}
			if p, _ := url.arg("path"); p != "/readyz" {
				t.Errorf("real_server %s: check path %q, want /readyz", rsName, p)
			}
			if c, _ := url.arg("status_code"); c != "200" {
				t.Errorf("real_server %s: check status_code %q, want 200", rsName, c)
			}
			// A timer set on the real server or the checker overrides the
			// virtual server's and would escape the arithmetic below.
			for _, n := range []*kaNode{rs, checks[0]} {
				for _, k := range []string{"delay_loop", "retry", "delay_before_retry", "connect_timeout"} {
					if n.one(k) != nil {
						t.Errorf("real_server %s: %s set below the virtual server; keep the timers in one place", rsName, k)
					}
				}
			}
		}

		// The drain arithmetic: worst time from SIGTERM to out of the pool.
		get := func(k string) string {
			v, ok := vs.arg(k)
			if !ok {
				t.Fatalf("virtual_server %s: %s not set (defaults are slow: delay_loop 60 s, delay_before_retry 3 s)", name, k)
			}
			return v
		}
		loop := seconds(t, "delay_loop", get("delay_loop"))
		retry, err := strconv.Atoi(get("retry"))
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		before := seconds(t, "delay_before_retry", get("delay_before_retry"))
		connect := seconds(t, "connect_timeout", get("connect_timeout"))
		worst := loop + time.Duration(retry)*before
		t.Logf("keepalived: worst time to take a draining node out = delay_loop %v + retry %d x delay_before_retry %v = %v; connect_timeout %v; drain-grace %v",
			loop, retry, before, worst, connect, drainGrace)
		if worst+checkSlack > drainGrace {
			t.Errorf("worst time out of the pool %v + slack %v > drain-grace %v: shorten the checks or raise --drain-grace", worst, checkSlack, drainGrace)
		}
		if connect > checkSlack {
			t.Errorf("connect_timeout %v > %v: a slow check would eat the drain margin", connect, checkSlack)
		}
	}

	// The file is an example: it must name only documentation addresses
	// (RFC 5737), never a network someone might really have.
	docNets := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"),
	}
	for _, m := range regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}\b`).FindAllString(text, -1) {
		a, err := netip.ParseAddr(m)
		if err != nil {
			continue
		}
		ok := false
		for _, p := range docNets {
			ok = ok || p.Contains(a)
		}
		if !ok {
			t.Errorf("keepalived.conf names %s, not a documentation address (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)", a)
		}
	}
}

// vrrpInterface returns a name that keepalived -t accepts for the VRRP
// instance here: want when it exists, else the first interface that is up,
// not loopback and can multicast. ok is false when there is none.
func vrrpInterface(want string) (string, bool) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", false
	}
	for _, i := range ifs {
		if i.Name == want {
			return want, true
		}
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 && i.Flags&net.FlagMulticast != 0 {
			return i.Name, true
		}
	}
	return "", false
}

// TestKeepalivedConfigValid runs keepalived's own config test. keepalived -t
// also checks that the VRRP interface exists, so when this machine has no
// eth0 the checked copy names one it has.
func TestKeepalivedConfigValid(t *testing.T) {
	ka := requireTool(t, "keepalived")
	proctest.NeedRoot(t, "keepalived -t checks interfaces and IPVS as root")
	text := readFile(t, "keepalived.conf")
	ifname, ok := vrrpInterface("eth0")
	if !ok {
		proctest.Unavailable(t, "%s", "no non-loopback multicast interface for keepalived's VRRP check")
	}
	if ifname != "eth0" {
		t.Logf("no eth0 here; checking with interface %s", ifname)
		text = regexp.MustCompile(`\beth0\b`).ReplaceAllString(text, ifname)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, dir, ka, "--config-test", "-f", conf)
	t.Logf("keepalived --config-test:\n%s", out)
	if err != nil {
		// Exit 143 = killed by SIGTERM: keepalived 2.2.7 does that to itself
		// in config-test mode when the file has a vrrp_script.
		t.Fatalf("keepalived --config-test -f keepalived.conf: %v", err)
	}
	if strings.TrimSpace(out) != "" {
		t.Errorf("keepalived --config-test printed warnings; fix keepalived.conf")
	}
}

// ---------------------------------------------------------------------------
// lvs-realserver.sh and .ci/run

func TestShellSyntax(t *testing.T) {
	bash := requireTool(t, "bash")
	for _, f := range []string{"lvs-realserver.sh", "../.ci/run"} {
		if out, err := runTool(t, "", bash, "-n", f); err != nil {
			t.Errorf("bash -n %s: %v\n%s", f, err, out)
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", f)
		}
	}
}

func TestShellcheck(t *testing.T) {
	sc := requireTool(t, "shellcheck")
	for _, f := range []string{"lvs-realserver.sh", "../.ci/run"} {
		if out, err := runTool(t, "", sc, f); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", f, err, out)
		}
	}
}

// TestLVSRealserverUsage runs the script only in ways that change nothing.
func TestLVSRealserverUsage(t *testing.T) {
	bash := requireTool(t, "bash")
	for _, tc := range []struct {
		name     string
		args     []string
		exit     int
		contains string
	}{
		{"no_args", nil, 2, "usage:"},
		{"help", []string{"--help"}, 0, "usage:"},
		{"missing_vip", []string{"start"}, 2, "usage:"},
		{"bad_vip", []string{"start", "198.51.100"}, 2, "not an IPv4 address"},
		{"octet_too_big", []string{"start", "198.51.100.256"}, 2, "not an IPv4 address"},
		{"bad_command", []string{"restart", "198.51.100.10"}, 2, "usage:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runTool(t, "", bash, append([]string{"lvs-realserver.sh"}, tc.args...)...)
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.exit || !strings.Contains(out, tc.contains) {
				t.Errorf("lvs-realserver.sh %q: exit %d, output %q; want exit %d and %q", tc.args, code, out, tc.exit, tc.contains)
			}
		})
	}
}

// TestLVSRealserverNetns runs start/status/stop for real, inside a network
// namespace of its own (unshare --net), so the host's lo and sysctls are
// never touched. 198.51.100.10 is a documentation address, never contacted.
func TestLVSRealserverNetns(t *testing.T) {
	proctest.NeedRoot(t, "a network namespace needs root")
	unshare := requireTool(t, "unshare")
	requireTool(t, "ip")
	requireTool(t, "sysctl")
	bash := requireTool(t, "bash")
	const vip = "198.51.100.10"
	script := `set -euo pipefail
s=./lvs-realserver.sh
$s start ` + vip + `
$s start ` + vip + `   # twice: must be idempotent
echo "--- after start"
$s status ` + vip + `
ip -4 -o addr show dev lo
$s stop ` + vip + `
echo "--- after stop"
$s status ` + vip + `
ip -4 -o addr show dev lo
`
	out, err := runTool(t, "", unshare, "--net", bash, "-c", script)
	t.Logf("in a private network namespace:\n%s", out)
	if err != nil {
		if strings.Contains(out, "Operation not permitted") && strings.Contains(out, "unshare") {
			proctest.Unavailable(t, "%s", "this sandbox does not allow network namespaces: "+strings.TrimSpace(out))
		}
		t.Fatalf("lvs-realserver.sh in a network namespace: %v", err)
	}
	start, stop, ok := strings.Cut(out, "--- after stop")
	if !ok {
		t.Fatal("no after-stop marker in the output")
	}
	for _, want := range []string{
		"vip " + vip + "/32 on lo: yes",
		"net.ipv4.conf.all.arp_ignore = 1",
		"net.ipv4.conf.all.arp_announce = 2",
		"net.ipv4.conf.lo.arp_ignore = 1",
		"net.ipv4.conf.lo.arp_announce = 2",
		"inet " + vip + "/32",
	} {
		if !strings.Contains(start, want) {
			t.Errorf("after start: no %q", want)
		}
	}
	for _, want := range []string{
		"vip " + vip + "/32 on lo: no",
		"net.ipv4.conf.all.arp_ignore = 0",
		"net.ipv4.conf.all.arp_announce = 0",
	} {
		if !strings.Contains(stop, want) {
			t.Errorf("after stop: no %q", want)
		}
	}
	if strings.Contains(stop, "inet "+vip) {
		t.Errorf("after stop: %s still on lo", vip)
	}
}

// ---------------------------------------------------------------------------
// The binary: flags named in the deploy files exist.

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// mqueueBinary builds ./cmd/mqueue once per test run and returns its path;
// MQUEUE_DEPLOY_TEST_BINARY names an already built binary to test instead
// (e.g. the one about to be installed).
func mqueueBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MQUEUE_DEPLOY_TEST_BINARY"); p != "" {
		return p
	}
	goTool := requireTool(t, "go")
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mqueue-deploy-test-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "mqueue")
		var out string
		out, buildErr = runTool(t, "..", goTool, "build", "-o", buildBin, "./cmd/mqueue")
		if buildErr != nil {
			buildErr = fmt.Errorf("go build ./cmd/mqueue: %w\n%s", buildErr, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// TestDeployEnvMatchesFlags checks that every MQUEUE_* variable the unit and
// the env example set is one that `mqueue serve --help` lists, and that the
// default drain-grace is the one the timers above were computed for.
func TestDeployEnvMatchesFlags(t *testing.T) {
	bin := mqueueBinary(t)
	help, err := runTool(t, "", bin, "serve", "--help")
	if err != nil {
		t.Fatalf("mqueue serve --help: %v\n%s", err, help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`env (MQUEUE_[A-Z0-9_]+)`).FindAllStringSubmatch(help, -1) {
		known[m[1]] = true
	}
	if len(known) == 0 {
		t.Fatalf("mqueue serve --help names no MQUEUE_* variable:\n%s", help)
	}
	re := regexp.MustCompile(`(?m)^\s*#?\s*(?:Environment=)?(MQUEUE_[A-Z0-9_]+)=`)
	for _, f := range []string{"mqueue.env.example", "mqueue.service"} {
		for _, m := range re.FindAllStringSubmatch(readFile(t, f), -1) {
			if !known[m[1]] {
				t.Errorf("%s sets %s, which mqueue serve does not know", f, m[1])
			}
		}
	}
	if m := regexp.MustCompile(`\(default ([^,]+), env MQUEUE_DRAIN_GRACE\)`).FindStringSubmatch(help); m == nil || m[1] != drainGrace.String() {
		t.Errorf("mqueue's default drain-grace is %v, the deploy timers assume %v; recheck them", m, drainGrace)
	}
}

// ---------------------------------------------------------------------------
// End to end: two nodes behind a real HAProxy; one drains.

// proc is a child process whose exit is observed by a goroutine.
type proc struct {
	name string
	addr string
	cmd  *exec.Cmd
	log  string        // path of its combined output
	done chan struct{} // closed when it has exited
	err  error         // its exit status, once done is closed
}

func startProc(t *testing.T, name, addr string, path string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// The nodes' settings are the flags below, not whatever MQUEUE_* the
	// test's environment happens to hold.
	cmd.Env = proctest.Env()
	if err := cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, addr: addr, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill() // only this child, by its own handle
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s output:\n%s", name, tail(string(b), 4000))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitUntil polls f every step until it returns true, at most for limit.
func waitUntil(limit, step time.Duration, f func() bool) bool {
	for deadline := time.Now().Add(limit); ; {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// get returns the status code and body of GET url, or 0 on a transport error.
func get(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// haproxyServerStatus reads HAProxy's CSV stats and returns the status
// ("UP", "DOWN", "UP 1/2", ...) of each server of backend.
func haproxyServerStatus(c *http.Client, statsURL, backend string) (map[string]string, error) {
	code, body := get(c, statsURL)
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", statsURL, code, body)
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("stats CSV: %v (%d rows)", err, len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	px, sv, st := col["pxname"], col["svname"], col["status"]
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > st && row[px] == backend && row[sv] != "BACKEND" && row[sv] != "FRONTEND" {
			out[row[sv]] = row[st]
		}
	}
	return out, nil
}

// haproxyTestConfig turns deploy/haproxy.cfg into one that runs unprivileged
// on this machine: repl edits it (the example ports become free ones), and
// the global lines that need root or system directories go. Every edit must apply
// exactly once, so a change to haproxy.cfg cannot silently skip one.
func haproxyTestConfig(t *testing.T, tmpl string, repl [][2]string) string {
	t.Helper()
	for _, r := range repl {
		if n := strings.Count(tmpl, r[0]); n != 1 {
			t.Fatalf("haproxy.cfg: %q occurs %d times, want 1; update haproxyTestConfig", r[0], n)
		}
		tmpl = strings.Replace(tmpl, r[0], r[1], 1)
	}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(tmpl))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && (f[0] == "chroot" || f[0] == "user" || f[0] == "group" ||
			(f[0] == "stats" && len(f) > 1 && f[1] == "socket")) {
			continue
		}
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return b.String()
}

// result is one request sent through HAProxy during the drain.
type result struct {
	at     time.Duration // since SIGTERM
	status int
	node   string
	err    error
}

func TestHAProxyDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts two nodes and HAProxy (-short)")
	}
	haproxy := requireTool(t, "haproxy")
	bin := mqueueBinary(t)

	// Two nodes, each with its own data directory, on loopback only.
	nodes := map[string]*proc{}
	for _, name := range []string{"n1", "n2"} {
		addr := proctest.FreeAddr(t)
		nodes[name] = startProc(t, name, addr, bin, "serve",
			"--addr", addr, "--data", filepath.Join(t.TempDir(), name),
			"--drain-grace", drainGrace.String())
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, n := range nodes {
		ok := waitUntil(60*time.Second, 100*time.Millisecond, func() bool {
			code, _ := get(client, "http://"+n.addr+"/readyz")
			return code == http.StatusOK || n.exited()
		})
		if !ok || n.exited() {
			t.Fatalf("node %s (%s) never answered 200 on /readyz (exited: %v, %v); is the server working yet?", n.name, n.addr, n.exited(), n.err)
		}
	}

	front, stats := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cfg := haproxyTestConfig(t, readFile(t, "haproxy.cfg"), [][2]string{
		{"server n1 127.0.0.1:18081", "server n1 " + nodes["n1"].addr},
		{"server n2 127.0.0.1:18082", "server n2 " + nodes["n2"].addr},
		{"bind :8088", "bind " + front},
		{"bind 127.0.0.1:8404", "bind " + stats},
		// 20000 connections need 40000 descriptors; a test shell may have fewer.
		{"maxconn 20000", "maxconn 1000"},
	})
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runTool(t, "", haproxy, "-c", "-f", cfgPath); err != nil {
		t.Fatalf("haproxy -c on the test config: %v\n%s", err, out)
	}
	hp := startProc(t, "haproxy", front, haproxy, "-db", "-f", cfgPath)
	statsURL := "http://" + stats + "/stats;csv"
	var st map[string]string
	if !waitUntil(15*time.Second, 100*time.Millisecond, func() bool {
		var err error
		st, err = haproxyServerStatus(client, statsURL, "mqueue_nodes")
		return err == nil && st["n1"] == "UP" && st["n2"] == "UP" || hp.exited()
	}) || hp.exited() {
		t.Fatalf("HAProxy never showed both nodes UP: %v (haproxy exited: %v %v)", st, hp.exited(), hp.err)
	}

	queueURL := "http://" + front + "/api/queue/drain-test"
	post := func(i int) (int, string, error) {
		resp, err := client.Post(queueURL, "application/octet-stream", strings.NewReader(fmt.Sprintf("message %d", i)))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Mqueue-Node"), nil
	}

	// Before the drain: stick on src sends all of this client to one node.
	var victimName string
	for i := 0; i < 5; i++ {
		code, node, err := post(i)
		if err != nil || code != http.StatusCreated {
			t.Fatalf("POST %d through HAProxy before the drain: %d %v", i, code, err)
		}
		if victimName != "" && node != victimName {
			t.Errorf("POST %d went to %s after %s: stick on src does not hold", i, node, victimName)
		}
		victimName = node
	}
	victim, ok := nodes[victimName]
	if !ok {
		t.Fatalf("X-Mqueue-Node = %q, not a node name", victimName)
	}
	otherName := map[string]string{"n1": "n2", "n2": "n1"}[victimName]
	t.Logf("client sticks to %s; draining it", victimName)

	// Drain the node this client sticks to, and keep sending through HAProxy
	// until it has exited and a few requests more.
	t0 := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var (
		results  []result
		downAt   time.Duration = -1
		exitedAt time.Duration = -1
	)
	limit := drainGrace + exitDeadline + 5*time.Second
	for i := 0; i < 2000 && time.Since(t0) < limit; i++ {
		at := time.Since(t0)
		code, node, err := post(1000 + i)
		results = append(results, result{at, code, node, err})
		if downAt < 0 {
			if s, err := haproxyServerStatus(client, statsURL, "mqueue_nodes"); err == nil && strings.HasPrefix(s[victimName], "DOWN") {
				downAt = time.Since(t0)
				t.Logf("HAProxy marked %s DOWN %v after SIGTERM", victimName, downAt.Round(time.Millisecond))
			}
		}
		if exitedAt < 0 && victim.exited() {
			exitedAt = time.Since(t0)
			t.Logf("%s exited %v after SIGTERM: %v", victimName, exitedAt.Round(time.Millisecond), victim.err)
		}
		if exitedAt >= 0 && time.Since(t0) > exitedAt+time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}

	var failed, byVictim, byOther int
	for _, r := range results {
		switch {
		case r.err != nil || r.status != http.StatusCreated:
			failed++
			t.Errorf("POST at +%v through HAProxy: status %d, node %q, err %v", r.at.Round(time.Millisecond), r.status, r.node, r.err)
		case r.node == victimName:
			byVictim++
			if downAt >= 0 && r.at > downAt {
				t.Errorf("POST at +%v was served by %s after HAProxy marked it DOWN at +%v", r.at.Round(time.Millisecond), victimName, downAt.Round(time.Millisecond))
			}
		case r.node == otherName:
			byOther++
		}
	}
	t.Logf("%d requests during the drain: %d served by the draining %s, %d by %s, %d failed",
		len(results), byVictim, victimName, byOther, otherName, failed)

	switch {
	case downAt < 0:
		t.Errorf("HAProxy never marked %s DOWN", victimName)
	case downAt >= drainGrace:
		t.Errorf("HAProxy marked %s DOWN %v after SIGTERM, not within drain-grace %v: it was still in the pool when its listener closed", victimName, downAt, drainGrace)
	}
	if byVictim == 0 {
		t.Errorf("no request was served by %s during its grace; the drain should keep serving until the balancer has moved", victimName)
	}
	if byOther == 0 {
		t.Errorf("no request reached %s after the drain", otherName)
	}
	switch {
	case exitedAt < 0:
		t.Errorf("%s did not exit within %v of SIGTERM", victimName, limit)
	case exitedAt > drainGrace+exitDeadline:
		t.Errorf("%s exited %v after SIGTERM, later than drain-grace + 10 s", victimName, exitedAt)
	case victim.err != nil:
		t.Errorf("%s exited with %v, want status 0 after a drain", victimName, victim.err)
	}

	// The surviving node serves reads through HAProxy too.
	resp, err := client.Get(queueURL)
	if err != nil {
		t.Fatalf("GET through HAProxy after the drain: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Mqueue-Node") != otherName || !bytes.HasPrefix(body, []byte("message ")) {
		t.Errorf("GET through HAProxy after the drain: %d from %q, body %q; want 200 from %s with a message", resp.StatusCode, resp.Header.Get("X-Mqueue-Node"), body, otherName)
	}
}
