package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
)

// A keys file line with a huge count (not written by mqueue) is skipped
// at start: a batch POST with its key is stored as new, and the server
// does not try to answer 2^40 ids.
func TestBatchKeyWithHugeCountInKeysFile(t *testing.T) {
	ts := start(t, func(s *setup) {
		qdir := filepath.Join(s.eng.Dir, "jobs")
		if err := os.MkdirAll(qdir, 0o750); err != nil {
			t.Fatal(err)
		}
		line := fmt.Sprintf(`{"key":"k1","id":1,"n":%d,"at":%d}`+"\n", int64(1)<<40, time.Now().UnixMilli())
		if err := os.WriteFile(filepath.Join(qdir, "keys"), []byte(line), 0o640); err != nil {
			t.Fatal(err)
		}
	})
	r := ts.do("POST", "/api/queue/jobs/batch", strings.NewReader(`{"messages":[{"body":"a"},{"body":"b"}]}`), "Idempotency-Key", "k1")
	var out struct {
		IDs []uint64 `json:"ids"`
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &out) != nil || len(out.IDs) != 2 {
		t.Fatalf("batch POST = %d %.200s, want 201 with 2 ids", r.status, r.body)
	}
}

// A queue path that is a symlink is unavailable over HTTP too, at start
// and at first use: 500 INTERNAL, and the other queues work.
func TestSymlinkedQueueOverHTTP(t *testing.T) {
	outside := t.TempDir()
	ts := start(t, func(s *setup) {
		if err := os.MkdirAll(s.eng.Dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(s.eng.Dir, "early")); err != nil {
			t.Fatal(err)
		}
	})
	if err := os.Symlink(outside, filepath.Join(ts.dataDir, "late")); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"early", "late"} {
		for _, req := range []struct{ method, path string }{{"POST", "/api/queue/" + q}, {"GET", "/api/queue/" + q}} {
			r := ts.do(req.method, req.path, strings.NewReader("x"))
			if r.status != http.StatusInternalServerError || r.errBody(t).Error != api.CodeInternal {
				t.Fatalf("%s %s = %d %s, want 500 INTERNAL", req.method, req.path, r.status, r.body)
			}
		}
	}
	ts.post("/api/queue/other", "fine")
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("the symlink was followed: %v", ents)
	}
}
