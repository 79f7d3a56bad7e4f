package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mqueue/mqueue/api"
)

// TestRepeatedQueryParameter: a parameter given twice is 400 INVALID_QUERY
// on every /api route, never silently its first value, and nothing is
// stored (SECURITY finding 8).
func TestRepeatedQueryParameter(t *testing.T) {
	ts := start(t)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/api/queue/rq?ttl=5&ttl=abc", "x"},
		{"POST", "/api/queue?sync=1&sync=0", "x"},
		{"POST", "/api/queue/rq?delay=0&delay=0", "x"},
		{"POST", "/api/queue/rq/batch?sync=1&sync=1", `{"messages":[{"body":"x"}]}`},
		{"GET", "/api/queue/rq?wait=0&wait=1", ""},
		{"GET", "/api/queue?lease=5&lease=6", ""},
		{"GET", "/api/queue/rq/batch?max=1&max=2", ""},
		{"POST", "/api/queue/rq/nack?delay=1&delay=2", ""},
		{"POST", "/api/queue/rq/extend?lease=1&lease=2", ""},
		{"POST", "/api/queue/rq/ack?x=1&x=2", ""},
		{"GET", "/api/stats?x&x", ""},
		{"GET", "/api/stats/rq?a=1&a=1", ""},
	} {
		r := ts.do(c.method, c.path, strings.NewReader(c.body), "X-Receipt", "r")
		if r.status != http.StatusBadRequest || r.errBody(t).Error != api.CodeInvalidQuery {
			t.Errorf("%s %s = %d %s, want 400 INVALID_QUERY", c.method, c.path, r.status, r.body)
		}
	}
	for _, q := range []string{"rq", "default"} {
		if r := ts.do("GET", "/api/queue/"+q, nil); r.status != http.StatusNoContent {
			t.Errorf("GET %s after refused POSTs = %d %q, want 204", q, r.status, r.body)
		}
	}
	// One of each is still fine.
	ts.post("/api/queue/rq?ttl=5&sync=1&delay=0", "ok")
}

// TestBatchStrictJSON: what encoding/json lets through — a key given twice,
// a key in another case, a lone surrogate or a byte that is not UTF-8 (both
// stored as U+FFFD) — is 400 INVALID_BATCH, and nothing is stored.
func TestBatchStrictJSON(t *testing.T) {
	ts := start(t)
	for name, body := range map[string]string{
		"messages twice":     `{"messages":[{"body":"a"}],"messages":[{"body":"b"}]}`,
		"body twice":         `{"messages":[{"body":"a","body":"b"}]}`,
		"ttl twice":          `{"messages":[{"body":"a","ttl":1,"ttl":2}]}`,
		"body_base64 twice":  `{"messages":[{"body_base64":"eA==","body_base64":"eQ=="}]}`,
		"escaped key twice":  `{"messages":[{"body":"a","\u0062ody":"b"}]}`,
		"BODY":               `{"messages":[{"BODY":"a"}]}`,
		"TTL":                `{"messages":[{"body":"a","TTL":5}]}`,
		"Messages":           `{"Messages":[{"body":"a"}]}`,
		"Body_Base64":        `{"messages":[{"Body_Base64":"eA=="}]}`,
		"lone high":          `{"messages":[{"body":"\ud800"}]}`,
		"lone low":           `{"messages":[{"body":"x\udc00y"}]}`,
		"high then letter":   `{"messages":[{"body":"\ud800\u0041"}]}`,
		"two highs":          `{"messages":[{"body":"\ud800\ud800"}]}`,
		"surrogate in b64":   `{"messages":[{"body_base64":"\ud800"}]}`,
		"surrogate in key":   `{"messages":[{"body":"a","\ud800":1}]}`,
		"not UTF-8":          "{\"messages\":[{\"body\":\"a\xffb\"}]}",
		"UTF-8 surrogate":    "{\"messages\":[{\"body\":\"\xed\xa0\x80\"}]}",
		"truncated UTF-8":    "{\"messages\":[{\"body\":\"\xe2\x82\"}]}",
		"second bad message": `{"messages":[{"body":"ok"},{"body":"\udfff"}]}`,
		"trailing value":     `{"messages":[{"body":"a"}]} {}`,
		"control char":       "{\"messages\":[{\"body\":\"a\nb\"}]}",
		"bad escape":         `{"messages":[{"body":"\x41"}]}`,
	} {
		r := ts.do(http.MethodPost, "/api/queue/strict/batch", strings.NewReader(body))
		if r.status != http.StatusBadRequest || r.errBody(t).Error != api.CodeInvalidBatch {
			t.Errorf("%s: POST batch %q = %d %s, want 400 INVALID_BATCH", name, body, r.status, r.body)
		}
	}
	if r := ts.do("GET", "/api/queue/strict", nil); r.status != http.StatusNoContent {
		t.Fatalf("GET after refused batches = %d %q, want 204", r.status, r.body)
	}

	// What is valid still is, decoded exactly: a surrogate pair, escapes,
	// multi-byte UTF-8, white space, null as absent.
	ids := ts.postBatch("/api/queue/strict/batch", " {\"messages\" : [ {\"body\":\"\\ud83d\\ude00 \\u00e9\\n\\\"\\/\\\\\"} ,"+
		"{\"body\":\"ünï\",\"ttl\":null,\"delay\":0},{\"body\":null,\"body_base64\":\"\\/w==\"} ] }\n")
	if len(ids) != 3 {
		t.Fatalf("ids %v", ids)
	}
	for _, want := range []string{"\U0001F600 é\n\"/\\", "ünï", "\xff"} {
		if r := ts.do("GET", "/api/queue/strict", nil); r.status != http.StatusOK || string(r.body) != want {
			t.Errorf("GET = %d %q, want %q", r.status, r.body, want)
		}
	}
}
