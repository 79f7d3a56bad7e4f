package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// The monitoring files: Prometheus alert rules with their promtool unit
// tests, and the Grafana dashboard.
const (
	alertRules     = "prometheus/mqueue-alerts.yml"
	alertRuleTests = "prometheus/mqueue-alerts_test.yml"
	dashboardFile  = "grafana/mqueue-dashboard.json"
)

// scrapeOnly are names a query may use that no /metrics page holds:
// Prometheus adds them to every scraped target.
var scrapeOnly = map[string]bool{"up": true}

func TestPrometheusRulesValid(t *testing.T) {
	promtool := requireTool(t, "promtool")
	out, err := runTool(t, "", promtool, "check", "rules", alertRules)
	t.Logf("promtool check rules:\n%s", out)
	if err != nil {
		t.Fatalf("promtool check rules %s: %v", alertRules, err)
	}
}

// TestPrometheusRulesUnit runs the rules' unit tests, and checks that they
// test every alert of the file both firing and, somewhere, not firing.
func TestPrometheusRulesUnit(t *testing.T) {
	promtool := requireTool(t, "promtool")
	out, err := runTool(t, "prometheus", promtool, "test", "rules", filepath.Base(alertRuleTests))
	t.Logf("promtool test rules:\n%s", out)
	if err != nil {
		t.Fatalf("promtool test rules %s: %v", alertRuleTests, err)
	}

	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, alertRuleTests)), &tests); err != nil {
		t.Fatalf("%s: %v", alertRuleTests, err)
	}
	fires, silent := map[string]bool{}, 0
	for _, g := range tests.Tests {
		for _, c := range g.AlertRuleTest {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				silent++
			}
		}
	}
	if silent == 0 {
		t.Errorf("%s never checks that an alert stays silent", alertRuleTests)
	}
	for _, r := range loadAlertRules(t) {
		if !fires[r.Alert] {
			t.Errorf("alert %s has no unit test in which it fires", r.Alert)
		}
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, alertRules)), &f); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s has no rules", alertRules)
	}
	return rules
}

// TestAlertRulesConventions: every alert has a severity, a summary and a
// description, and a for: duration.
func TestAlertRulesConventions(t *testing.T) {
	for _, r := range loadAlertRules(t) {
		if r.Alert == "" {
			t.Errorf("a rule that is not an alert: %q", r.Expr)
			continue
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: needs summary and description annotations", r.Alert)
		}
		if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
			t.Errorf("%s: for: %q, want a positive duration", r.Alert, r.For)
		}
	}
}

// TestDashboardStructure: the template variables the panels refer to exist,
// and every panel has a query on the datasource variable.
func TestDashboardStructure(t *testing.T) {
	var d struct {
		SchemaVersion int `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want >= 36 (datasource references by uid)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	want := map[string]string{"datasource": "datasource", "instance": "query", "queue": "query"}
	for name, typ := range want {
		if vars[name] != typ {
			t.Errorf("template variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	graphs := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		graphs++
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource uid %q, want ${datasource}", p.Title, p.Datasource.UID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, ref := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if _, ok := vars[ref[1]]; !ok && !strings.HasPrefix(ref[1], "__") {
					t.Errorf("panel %q uses $%s, which is no template variable", p.Title, ref[1])
				}
			}
		}
	}
	if graphs < 15 {
		t.Errorf("%d panels, want the >= 15 the README describes", graphs)
	}
}

// dashboardExprs returns every "expr" in the dashboard, and the queries of
// its query variables, keyed by where they are.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	var doc any
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &doc); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && (k == "expr" || k == "definition") {
					out[path+"."+k] = s
				}
				walk(path+"."+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), c)
			}
		}
	}
	walk("", doc)
	return out
}

var (
	reString    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	reBraces    = regexp.MustCompile(`\{[^{}]*\}`)
	reBrackets  = regexp.MustCompile(`\[[^\[\]]*\]`)
	reGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	reOffset    = regexp.MustCompile(`\boffset\s+-?\w+`)
	reVar       = regexp.MustCompile(`\$\{?\w+\}?`)
	reNumber    = regexp.MustCompile(`(^|[^\w.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)`)
	reIdent     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promKeyword = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "inf": true, "nan": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "offset": true}
)

// metricNames returns the metric names a PromQL expression (or a Grafana
// label_values(...) query) selects: what is left once strings, label
// matchers, ranges, grouping clauses, variables, numbers, keywords and
// function calls are taken out.
func metricNames(expr string) []string {
	s := reString.ReplaceAllString(expr, " ")
	s = reBraces.ReplaceAllString(s, " ")
	s = reBrackets.ReplaceAllString(s, " ")
	s = reGrouping.ReplaceAllString(s, " ")
	s = reOffset.ReplaceAllString(s, " ")
	s = reVar.ReplaceAllString(s, " ")
	s = reNumber.ReplaceAllString(s, "$1 ")
	seen := map[string]bool{}
	var names []string
	for _, m := range reIdent.FindAllStringSubmatch(s, -1) {
		name := strings.TrimRight(strings.TrimSuffix(strings.TrimSpace(m[0]), "("), " ")
		if m[1] != "" || promKeyword[strings.ToLower(name)] || seen[name] {
			continue // a function or aggregation, a keyword, or a repeat
		}
		seen[name] = true
		names = append(names, name)
	}
	// label_values(metric, label): the label is no metric.
	if strings.HasPrefix(strings.TrimSpace(expr), "label_values(") && len(names) > 1 {
		names = names[:len(names)-1]
	}
	return names
}

var (
	reMatcher   = regexp.MustCompile(`([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)`)
	reLabelList = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)`)
	reLabelVals = regexp.MustCompile(`^\s*label_values\(.*,\s*(\w+)\s*\)\s*$`)
)

// labelNames returns the label names an expression matches on or groups by.
func labelNames(expr string) []string {
	seen := map[string]bool{}
	var names []string
	add := func(n string) {
		if n = strings.TrimSpace(n); n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for _, b := range reBraces.FindAllString(reString.ReplaceAllString(expr, `""`), -1) {
		for _, m := range reMatcher.FindAllStringSubmatch(b, -1) {
			add(m[1])
		}
	}
	for _, m := range reLabelList.FindAllStringSubmatch(expr, -1) {
		for _, n := range strings.Split(m[1], ",") {
			add(n)
		}
	}
	if m := reLabelVals.FindStringSubmatch(expr); m != nil {
		add(m[1])
	}
	return names
}

// targetLabels are the labels Prometheus adds to every scraped series.
var targetLabels = map[string]bool{"instance": true, "job": true}

// pageLabels returns, per sample name on a /metrics page, its label names.
func pageLabels(page string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		if labels, _, ok := strings.Cut(rest, "}"); ok {
			for _, m := range reMatcher.FindAllStringSubmatch(reString.ReplaceAllString(labels, `""`), -1) {
				out[name][m[1]] = true
			}
		}
	}
	return out
}

func TestLabelNames(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{`up{job="mqueue"} == 0`, "job"},
		{`sum by (route, le) (rate(x{instance=~"$instance", code=~"5.."}[5m])) / on(instance) y`, "instance code route le"},
		{`label_values(mqueue_queue_depth{instance=~"$instance"}, queue)`, "instance queue"},
		{`m{a="x,b=y"}`, "a"},
	} {
		if got := strings.Join(labelNames(c.expr), " "); got != c.want {
			t.Errorf("labelNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

func TestMetricNames(t *testing.T) {
	for _, c := range []struct{ expr, want string }{
		{`up{job="mqueue"} == 0`, "up"},
		{`delta(mqueue_queue_depth{queue!~".+[.]dlq"}[15m]) > 1000 and on (instance, job, queue) rate(a_total[15m]) < rate(b_total[15m])`, "mqueue_queue_depth a_total b_total"},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(x_bucket{instance=~"$instance"}[$__rate_interval]))) > 0.1`, "x_bucket"},
		{`sum by (route) (rate(h{code=~"5.."}[5m])) / sum by(route)(rate(h[5m])) > 1e-3`, "h"},
		{`x > 0 and on (instance, job) (time() - process_start_time_seconds) < 900`, "x process_start_time_seconds"},
		{`label_values(mqueue_queue_depth{instance=~"$instance"}, queue)`, "mqueue_queue_depth"},
		{`label_values(mqueue_ready, instance)`, "mqueue_ready"},
		{`rate(c[5m] offset 1h) > bool 0`, "c"},
	} {
		if got := strings.Join(metricNames(c.expr), " "); got != c.want {
			t.Errorf("metricNames(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// liveNode is a real mqueue server with some traffic behind it.
type liveNode struct {
	p    *proc
	base string
	c    *http.Client
}

// startLiveNode starts the built binary and makes every kind of per-queue
// series appear: a POST, a GET, an empty GET, and a lease that is nacked
// past --max-deliveries 1, so orders.dlq exists and holds the message.
func startLiveNode(t *testing.T) *liveNode {
	t.Helper()
	bin := mqueueBinary(t)
	addr := proctest.FreeAddr(t)
	n := &liveNode{base: "http://" + addr, c: &http.Client{Timeout: 10 * time.Second}}
	n.p = startProc(t, "mqueue", addr, bin, "serve", "--addr", addr,
		"--data", filepath.Join(t.TempDir(), "data"), "--max-deliveries", "1", "--drain-grace", drainGrace.String())
	if !waitUntil(60*time.Second, 50*time.Millisecond, func() bool {
		code, _ := get(n.c, n.base+"/readyz")
		return code == http.StatusOK || n.p.exited()
	}) || n.p.exited() {
		t.Fatalf("mqueue never became ready (exited: %v %v)", n.p.exited(), n.p.err)
	}
	do := func(method, path string, hdr map[string]string, want int) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, n.base+path, strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := n.c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
		}
		return resp
	}
	do("POST", "/api/queue/orders", nil, http.StatusCreated)
	do("GET", "/api/queue/orders", nil, http.StatusOK)
	do("GET", "/api/queue/orders", nil, http.StatusNoContent)
	do("POST", "/api/queue/orders", nil, http.StatusCreated)
	leased := do("GET", "/api/queue/orders?lease=30", nil, http.StatusOK)
	do("POST", "/api/queue/orders/nack", map[string]string{"X-Receipt": leased.Header.Get("X-Receipt")}, http.StatusNoContent)
	// The nacked message reached --max-deliveries: the next attempt to
	// deliver it moves it to orders.dlq instead.
	if !waitUntil(10*time.Second, 50*time.Millisecond, func() bool {
		do("GET", "/api/queue/orders?lease=30", nil, http.StatusNoContent)
		return strings.Contains(n.metrics(t), `mqueue_queue_depth{queue="orders.dlq"} 1`)
	}) {
		t.Fatalf("the nacked message never reached orders.dlq:\n%s", n.metrics(t))
	}
	return n
}

// metrics returns the /metrics page.
func (n *liveNode) metrics(t *testing.T) string {
	t.Helper()
	code, body := get(n.c, n.base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	return body
}

// sampleNames returns the names of the samples on a /metrics page (a
// histogram's as _bucket, _sum and _count), each with its first line.
func sampleNames(page string) map[string]string {
	names := map[string]string{}
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if _, ok := names[name]; !ok {
			names[name] = line
		}
	}
	return names
}

// sampleValue returns the value of the unlabelled sample name on page.
func sampleValue(page, name string) (string, bool) {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v, true
		}
	}
	return "", false
}

// TestMonitoringAgainstLiveMetrics runs a real node and checks its /metrics
// with promtool's linter, that every metric the dashboard and the alerts
// query is on it (so no panel is silently empty), and that mqueue_ready
// follows /readyz through a drain.
func TestMonitoringAgainstLiveMetrics(t *testing.T) {
	n := startLiveNode(t)
	page := n.metrics(t)
	have := sampleNames(page)
	// The traffic above made the per-queue series of both queues.
	for _, s := range []string{`mqueue_messages_dead_lettered_total{queue="orders"} 1`, `mqueue_queue_depth{queue="orders.dlq"} 1`} {
		if !strings.Contains(page, s) {
			t.Fatalf("/metrics lacks %s after the test traffic:\n%s", s, page)
		}
	}

	t.Run("promtool check metrics", func(t *testing.T) {
		promtool := requireTool(t, "promtool")
		f := filepath.Join(t.TempDir(), "metrics.txt")
		if err := os.WriteFile(f, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := fmt.Sprintf("%q check metrics < %q", promtool, f)
		out, err := runTool(t, "", "sh", "-c", cmd)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("promtool check metrics on mqueue's /metrics: %v\n%s", err, out)
		}
	})

	labelsOf := pageLabels(page)
	check := func(t *testing.T, where, expr string) int {
		names := metricNames(expr)
		known := map[string]bool{}
		for _, name := range names {
			if _, ok := have[name]; !ok && !scrapeOnly[name] {
				t.Errorf("%s: %q is not on mqueue's /metrics (expr %s)", where, name, expr)
			}
			for l := range labelsOf[name] {
				known[l] = true
			}
		}
		// A label no selected metric has matches nothing or groups nothing.
		for _, l := range labelNames(expr) {
			if !known[l] && !targetLabels[l] {
				t.Errorf("%s: label %q is on none of %v (expr %s)", where, l, names, expr)
			}
		}
		return len(names)
	}
	t.Run("dashboard", func(t *testing.T) {
		exprs := dashboardExprs(t)
		keys := make([]string, 0, len(exprs))
		for k := range exprs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		total := 0
		for _, k := range keys {
			total += check(t, dashboardFile+" "+k, exprs[k])
		}
		if len(exprs) < 20 || total < len(exprs) {
			t.Errorf("%d exprs naming %d metrics: the extraction found too little", len(exprs), total)
		}
	})
	t.Run("alerts", func(t *testing.T) {
		for _, r := range loadAlertRules(t) {
			if check(t, alertRules+" "+r.Alert, r.Expr) == 0 {
				t.Errorf("%s: no metric found in %q", r.Alert, r.Expr)
			}
		}
	})

	t.Run("mqueue_ready through a drain", func(t *testing.T) {
		if v, ok := sampleValue(page, "mqueue_ready"); !ok || v != "1" {
			t.Fatalf("ready node: mqueue_ready = %q (present %v), want 1", v, ok)
		}
		if err := n.p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// /readyz is 503 at once; /metrics is served for drain-grace.
		if !waitUntil(drainGrace/2, 20*time.Millisecond, func() bool {
			code, _ := get(n.c, n.base+"/readyz")
			return code == http.StatusServiceUnavailable
		}) {
			t.Fatal("/readyz did not turn 503 after SIGTERM")
		}
		if v, ok := sampleValue(n.metrics(t), "mqueue_ready"); !ok || v != "0" {
			t.Errorf("draining node: mqueue_ready = %q (present %v), want 0", v, ok)
		}
		select {
		case <-n.p.done:
		case <-time.After(drainGrace + exitDeadline):
			t.Errorf("node did not exit within %v of SIGTERM", drainGrace+exitDeadline)
		}
	})
}
