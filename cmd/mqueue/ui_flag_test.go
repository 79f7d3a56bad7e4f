package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// TestServeUIFlag: the console is on by default; --ui=false (or
// MQUEUE_UI=false) turns it off, and a server started so answers 404 on /ui
// while the API still serves.
func TestServeUIFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want bool
	}{
		{nil, nil, true},
		{[]string{"--ui=false"}, nil, false},
		{nil, map[string]string{"MQUEUE_UI": "false"}, false},
		{[]string{"--ui=true"}, map[string]string{"MQUEUE_UI": "false"}, true},
	} {
		cfg, err := parseServeFlags(c.args, env(c.env))
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if cfg.ui != c.want {
			t.Errorf("%v %v: ui = %v, want %v", c.args, c.env, cfg.ui, c.want)
		}
	}

	for _, on := range []bool{true, false} {
		args := []string{"--addr", proctest.FreeAddr(t), "--data", filepath.Join(t.TempDir(), "data"), "--drain-grace", "0s"}
		if !on {
			args = append(args, "--ui=false")
		}
		cfg, err := parseServeFlags(args, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
		client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
		get := func(path string) int {
			resp, err := client.Get("http://" + cfg.addr + path)
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for deadline := time.Now().Add(10 * time.Second); get("/readyz") != 200; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("never ready")
			}
		}
		want := 200
		if !on {
			want = 404
		}
		for _, p := range []string{"/ui", "/ui/app.js"} {
			if got := get(p); got != want {
				t.Errorf("ui=%v: GET %s = %d, want %d", on, p, got, want)
			}
		}
		if got := get("/api/queues"); got != 200 {
			t.Errorf("ui=%v: GET /api/queues = %d, want 200", on, got)
		}
		client.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}
