package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/mqueue/mqueue/api"
)

// TestConsoleFiles: /ui serves the page and its assets without the token,
// each with its type and the strict CSP; the page loads its script from a
// file, holds no inline script; unknown files are 404; /api still needs the
// token.
func TestConsoleFiles(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.AuthToken = "s3cret" })
	cases := []struct{ path, typ, contains string }{
		{"/ui", "text/html; charset=utf-8", `<script src="/ui/app.js"`},
		{"/ui/", "text/html; charset=utf-8", `<link rel="stylesheet" href="/ui/style.css">`},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>mqueue console</title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "Authorization"},
		{"/ui/style.css", "text/css; charset=utf-8", "body {"},
	}
	for _, c := range cases {
		r := ts.do("GET", c.path, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s, want 200 without a token", c.path, r.status, r.body)
		}
		if got := r.header.Get("Content-Type"); got != c.typ {
			t.Errorf("GET %s Content-Type = %q, want %q", c.path, got, c.typ)
		}
		if got := r.header.Get("Content-Security-Policy"); got != api.ConsoleCSP {
			t.Errorf("GET %s CSP = %q, want %q", c.path, got, api.ConsoleCSP)
		}
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s X-Content-Type-Options = %q", c.path, got)
		}
		if !bytes.Contains(r.body, []byte(c.contains)) {
			t.Errorf("GET %s body lacks %q", c.path, c.contains)
		}
	}
	for _, directive := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(api.ConsoleCSP, directive) {
			t.Errorf("CSP %q lacks %q", api.ConsoleCSP, directive)
		}
	}
	if strings.Contains(api.ConsoleCSP, "unsafe-inline") || strings.Contains(api.ConsoleCSP, "unsafe-eval") {
		t.Errorf("CSP %q allows inline or eval", api.ConsoleCSP)
	}
	page := ts.do("GET", "/ui", nil).body
	if n := bytes.Count(page, []byte("<script")); n != bytes.Count(page, []byte(`<script src="`)) {
		t.Errorf("page has an inline <script>: %s", page)
	}
	for _, p := range []string{"/ui/nope.js", "/ui/../go.mod", "/ui/ui/app.js"} {
		if r := ts.do("GET", p, nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, r.status)
		}
	}
	if r := ts.do("GET", "/api/queues", nil); r.status != http.StatusUnauthorized {
		t.Errorf("GET /api/queues without token = %d, want 401", r.status)
	}
}

// TestConsoleDisabled: Config.DisableUI (--ui=false) leaves /ui 404.
func TestConsoleDisabled(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.DisableUI = true })
	for _, p := range []string{"/ui", "/ui/", "/ui/app.js", "/ui/style.css"} {
		r := ts.do("GET", p, nil)
		if r.status != http.StatusNotFound {
			t.Errorf("GET %s with DisableUI = %d, want 404", p, r.status)
		}
		if r.header.Get("Content-Security-Policy") != "" || bytes.Contains(r.body, []byte("<html")) {
			t.Errorf("GET %s with DisableUI served the console", p)
		}
	}
	if r := ts.do("GET", "/api/queues", nil); r.status != http.StatusOK {
		t.Errorf("GET /api/queues = %d, want 200", r.status)
	}
}
