package api_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds a Chromium to drive, skipping the test (failing it
// under MQUEUE_TEST_REQUIRE_ALL=1) when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const reason = "no chromium in PATH (apt-get install chromium)"
	if os.Getenv("MQUEUE_TEST_REQUIRE_ALL") == "1" {
		t.Fatalf("%s (MQUEUE_TEST_REQUIRE_ALL=1, so this fails instead of skipping)", reason)
	}
	t.Skipf("skipping: %s (set MQUEUE_TEST_REQUIRE_ALL=1 to make this fail)", reason)
	return ""
}

// artifactPath is where the console screenshot goes: $MQUEUE_ARTIFACTS, or
// bin/ at the repository root.
func artifactPath(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("MQUEUE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "bin")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact directory: %v", err)
	}
	p, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConsoleBrowser drives the console in headless Chromium against a real
// server with an auth token: the token form, a send, the live depth in the
// queue list, a peek showing the message, a confirmed purge and depth 0.
func TestConsoleBrowser(t *testing.T) {
	exe := chromiumPath(t)
	const token = "ui-s3cret"
	ts := start(t, func(s *setup) { s.cfg.AuthToken = token })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1100, 700),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(expr string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return s
	}
	poll := func(what, expr string) {
		t.Helper()
		do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(10*time.Second)))
	}
	screenshot := func(name string) {
		t.Helper()
		// Quality 100 makes a PNG (below 100 it is a JPEG).
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := artifactPath(t, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatalf("write screenshot: %v", err)
		}
		t.Logf("console screenshot: %s", p)
	}
	do("start the browser", chromedp.Navigate("about:blank"))

	// Every dialog is recorded and accepted, from its own goroutine.
	var mu sync.Mutex
	var dialogs []string
	var wg sync.WaitGroup
	opening := chromedp.Events(ctx, page.JavascriptDialogOpening)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e, err := range opening {
			if err != nil {
				return
			}
			mu.Lock()
			dialogs = append(dialogs, string(e.Type)+": "+e.Message)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error { //nolint:errcheck // the checks below see the outcome
					_, err := cdp.Call(ctx, tg, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
					return err
				}))
			}()
		}
	}()
	defer wg.Wait()
	defer cancel()
	lastDialog := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(dialogs) == 0 {
			return ""
		}
		return dialogs[len(dialogs)-1]
	}

	const msg = "hello <b>console</b> & co"
	do("load /ui and enter the token",
		chromedp.Navigate(ts.base+"/ui"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), token),
		chromedp.Click(chromedp.ID("token-submit")),
		chromedp.WaitNotVisible(chromedp.ID("token-form")),
	)
	if stored := eval(`sessionStorage.getItem("mqueue.token")`); stored != token {
		t.Errorf("sessionStorage token = %q, want %q", stored, token)
	}
	do("send a message through the list page",
		chromedp.WaitVisible(chromedp.ID("send-queue")),
		chromedp.SendKeys(chromedp.ID("send-queue"), "orders"),
		chromedp.SendKeys(chromedp.ID("send-body"), msg),
		chromedp.Click(chromedp.ID("send")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="orders"] td.depth`)),
	)
	if !strings.HasPrefix(lastDialog(), "confirm: Send this message to orders") {
		t.Errorf("send dialog = %q, want a confirmation", lastDialog())
	}
	if depth := text(`tr[data-queue="orders"] td.depth`); depth != "1" {
		t.Errorf("list depth of orders = %q, want 1", depth)
	}
	// The server really stored it (not only the page).
	if r := ts.do("GET", "/api/stats/orders", nil, "Authorization", "Bearer "+token); !strings.Contains(string(r.body), `"depth":1`) {
		t.Errorf("stats after the UI send = %d %s", r.status, r.body)
	}
	// A second message sent by another client shows up by polling alone.
	ts.do("POST", "/api/queue/orders", strings.NewReader("second"), "Authorization", "Bearer "+token)
	poll("the list updates live", `(document.querySelector('tr[data-queue="orders"] td.depth') || {}).textContent === "2"`)
	screenshot("ui-screenshot-list.png")

	do("open the queue page and peek",
		chromedp.Click(chromedp.CSS(`tr[data-queue="orders"] a`)),
		chromedp.WaitVisible(chromedp.ID("peek-button")),
		chromedp.Click(chromedp.ID("peek-button")),
		chromedp.WaitVisible(chromedp.CSS("#peek td.payload")),
		chromedp.WaitVisible(chromedp.ID("q-depth")),
	)
	if peeked := text("#peek td.payload"); peeked != msg {
		t.Errorf("peeked payload = %q, want %q (as text, not HTML)", peeked, msg)
	}
	if bold := eval(`String(document.querySelectorAll("#peek b").length)`); bold != "0" {
		t.Errorf("the payload was rendered as HTML: %s <b> elements in the peek", bold)
	}
	screenshot("ui-screenshot.png")

	do("purge, accepting the confirmation", chromedp.Click(chromedp.ID("purge")))
	poll("depth 0 on the queue page", `(document.getElementById("q-depth") || {}).textContent === "0"`)
	if !strings.HasPrefix(lastDialog(), "confirm: Purge every message of orders") {
		t.Errorf("purge dialog = %q, want a confirmation", lastDialog())
	}
	if r := ts.do("GET", "/api/stats/orders", nil, "Authorization", "Bearer "+token); !strings.Contains(string(r.body), `"depth":0`) {
		t.Errorf("stats after the UI purge = %d %s", r.status, r.body)
	}
	do("back to the list", chromedp.Click(chromedp.CSS(`a[href="#/"]`)))
	poll("depth 0 in the list", `(document.querySelector('tr[data-queue="orders"] td.depth') || {}).textContent === "0"`)

	do("delete the queue from its page",
		chromedp.Click(chromedp.CSS(`tr[data-queue="orders"] a`)),
		chromedp.WaitVisible(chromedp.ID("delete")),
		chromedp.Click(chromedp.ID("delete")),
	)
	poll("back on the list without orders", `location.hash === "#/" && document.getElementById("queues") !== null &&
		document.querySelector('tr[data-queue="orders"]') === null && document.getElementById("list-note").textContent !== ""`)
	if !strings.HasPrefix(lastDialog(), "confirm: Delete the queue orders") {
		t.Errorf("delete dialog = %q, want a confirmation", lastDialog())
	}
	if r := ts.do("GET", "/api/stats/orders", nil, "Authorization", "Bearer "+token); r.status != 404 {
		t.Errorf("stats after the UI delete = %d %s, want 404", r.status, r.body)
	}
	mu.Lock()
	t.Logf("dialogs: %q", dialogs)
	mu.Unlock()
}
