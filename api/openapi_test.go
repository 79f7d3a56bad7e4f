package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/mqueue/mqueue/api"
)

// notNativeAPI are the routes that are not part of the native API, so the
// spec does not describe them: the spec itself (and, once merged, the web
// console under /ui).
func notNativeAPI(method, path string) bool {
	return path == "/openapi.yaml" || path == "/ui" || strings.HasPrefix(path, "/ui/")
}

// fetchSpec GETs /openapi.yaml from ts without a token and checks that it
// is served as YAML and is the file in the repository.
func fetchSpec(t *testing.T, ts *testServer) []byte {
	t.Helper()
	resp, err := ts.client.Get(ts.base + "/openapi.yaml")
	if err != nil {
		t.Fatalf("GET /openapi.yaml: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /openapi.yaml: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.yaml = %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/openapi+yaml" {
		t.Errorf("Content-Type = %q, want application/openapi+yaml", ct)
	}
	file, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatalf("read api/openapi.yaml: %v", err)
	}
	if !bytes.Equal(body, file) {
		t.Fatalf("GET /openapi.yaml serves %d bytes that differ from api/openapi.yaml (%d bytes)", len(body), len(file))
	}
	return body
}

// TestOpenAPISpecValid: the served spec is OpenAPI 3.1, valid against the
// OpenAPI 3.1 JSON schema, and builds a v3 model without errors.
func TestOpenAPISpecValid(t *testing.T) {
	ts := start(t)
	spec := fetchSpec(t, ts)
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Errorf("openapi version = %q, want 3.1.0", v)
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Fatalf("build v3 model: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("new validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("spec invalid: %s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s (line %d)", se.Reason, se.KeywordLocation, se.Line)
			}
		}
	}
}

// TestOpenAPIRoutesMatchRouter: every route of the real router is an
// operation of the spec, and every operation of the spec is a real route.
func TestOpenAPIRoutesMatchRouter(t *testing.T) {
	ts := start(t)
	doc, err := libopenapi.NewDocument(fetchSpec(t, ts))
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build v3 model: %v", err)
	}
	inSpec := map[string]bool{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			inSpec[strings.ToUpper(method)+" "+path] = true
		}
	}
	param := regexp.MustCompile(`:([A-Za-z0-9_]+)`)
	inRouter := map[string]bool{}
	for _, r := range api.RouteTable(ts.srv) {
		if notNativeAPI(r.Method, r.Path) {
			continue
		}
		inRouter[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	if len(inRouter) < 20 {
		t.Fatalf("the router lists %d routes; the route table was not read", len(inRouter))
	}
	for op := range inRouter {
		if !inSpec[op] {
			t.Errorf("route %s is not in api/openapi.yaml", op)
		}
	}
	for op := range inSpec {
		if !inRouter[op] {
			t.Errorf("api/openapi.yaml describes %s, which the router does not serve", op)
		}
	}
}

// TestOpenAPIServedOpen: /openapi.yaml needs no token and no engine.
func TestOpenAPIServedOpen(t *testing.T) {
	ts := start(t, func(s *setup) { s.cfg.AuthToken = "s3cret"; s.noEngine = true })
	fetchSpec(t, ts)
	if r := ts.do("GET", "/api/stats", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("GET /api/stats without a token = %d, want 401 (the token is set)", r.status)
	}
}

// TestOpenAPIContract sends real requests to a real server and validates
// each response (status, headers, content type, body) against the spec.
func TestOpenAPIContract(t *testing.T) {
	const token = "s3cret"
	ts := start(t, func(s *setup) { s.cfg.AuthToken = token })
	doc, err := libopenapi.NewDocument(fetchSpec(t, ts))
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("new validator: %v", errs)
	}

	// call sends one request and validates its response; it returns the
	// status, headers and body.
	call := func(method, path, body string, wantStatus int, hdr ...string) (http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, ts.base+path, strings.NewReader(body))
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i+1] == "" {
				req.Header.Del(hdr[i])
			} else {
				req.Header.Set(hdr[i], hdr[i+1])
			}
		}
		resp, err := ts.client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %s: read: %v", method, path, err)
		}
		if resp.StatusCode != wantStatus {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, got, wantStatus)
		}
		resp.Body = io.NopCloser(bytes.NewReader(got))
		if ok, verrs := v.ValidateHttpResponse(req, resp); !ok {
			for _, e := range verrs {
				t.Errorf("%s %s %d: response breaks the spec: %s: %s", method, path, resp.StatusCode, e.Message, e.Reason)
				for _, se := range e.SchemaValidationErrors {
					t.Errorf("  %s at %s (line %d)", se.Reason, se.KeywordLocation, se.Line)
				}
			}
		}
		return resp.Header, got
	}

	call("POST", "/api/queue/orders?ttl=60", "hello", http.StatusCreated)
	call("POST", "/api/queue/orders", "again", http.StatusCreated, "Idempotency-Key", "k1")
	call("POST", "/api/queue/orders", "again", http.StatusOK, "Idempotency-Key", "k1")
	call("POST", "/api/queue", "\xff\x00", http.StatusCreated, "Content-Type", "application/octet-stream")
	call("GET", "/api/queue/orders", "", http.StatusOK)
	h, _ := call("GET", "/api/queue/orders?lease=30", "", http.StatusOK)
	receipt := h.Get("X-Receipt")
	if receipt == "" {
		t.Fatalf("a leased GET answered no X-Receipt")
	}
	call("POST", "/api/queue/orders/extend?lease=60", "", http.StatusOK, "X-Receipt", receipt)
	call("POST", "/api/queue/orders/ack", "", http.StatusNoContent, "X-Receipt", receipt)
	call("POST", "/api/queue/orders/ack", "", http.StatusGone, "X-Receipt", receipt)
	call("POST", "/api/queue/orders/nack", "", http.StatusBadRequest)
	call("GET", "/api/queue/orders", "", http.StatusNoContent)

	call("POST", "/api/queue/orders/batch", `{"messages":[{"body":"text"},{"body_base64":"/wA=","ttl":60},{"body":"later","delay":600}]}`,
		http.StatusCreated, "Content-Type", "application/json")
	call("GET", "/api/queue/orders/peek?max=10", "", http.StatusOK)
	call("GET", "/api/queue/orders/batch?max=2&lease=30", "", http.StatusOK)
	call("GET", "/api/queue/orders/batch?max=5", "", http.StatusNoContent)
	call("GET", "/api/stats/orders", "", http.StatusOK)
	call("GET", "/api/stats", "", http.StatusOK)
	call("GET", "/api/queues?limit=1", "", http.StatusOK)
	call("POST", "/api/queue/orders/purge", "", http.StatusOK)
	call("POST", "/api/queue/orders.dlq/redrive", "", http.StatusNotFound)
	call("POST", "/api/queue/orders/redrive", "", http.StatusBadRequest)
	call("DELETE", "/api/queue/orders", "", http.StatusNoContent)

	// Errors.
	call("GET", "/api/stats/orders", "", http.StatusNotFound)
	call("POST", "/api/queue/orders?ttl=-1", "x", http.StatusBadRequest)
	call("GET", "/api/queue/orders?wait=31", "", http.StatusBadRequest)
	call("POST", "/api/queue/orders/batch", `{"messages":[]}`, http.StatusBadRequest)
	call("GET", "/api/stats", "", http.StatusUnauthorized, "Authorization", "")

	// Operations.
	call("GET", "/healthz", "", http.StatusOK)
	call("GET", "/readyz", "", http.StatusOK)
	call("GET", "/metrics", "", http.StatusOK)
}

// TestOpenAPIContractCatchesDrift: the validator the contract test relies on
// refuses a response the spec does not allow (an unknown field, a code
// outside the enum), so a passing contract test means something.
func TestOpenAPIContractCatchesDrift(t *testing.T) {
	ts := start(t)
	doc, err := libopenapi.NewDocument(fetchSpec(t, ts))
	if err != nil {
		t.Fatalf("parse spec: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("new validator: %v", errs)
	}
	ts.post("/api/queue/orders", "x")
	r := ts.do("GET", "/api/stats/orders", nil)
	var stats map[string]any
	if err := json.Unmarshal(r.body, &stats); err != nil {
		t.Fatalf("stats: %v (%s)", err, r.body)
	}
	for name, mutate := range map[string]func(map[string]any){
		"unknown_field": func(m map[string]any) { m["surprise"] = 1 },
		"missing_field": func(m map[string]any) { delete(m, "depth") },
		"wrong_type":    func(m map[string]any) { m["depth"] = "one" },
	} {
		m := map[string]any{}
		for k, val := range stats {
			m[k] = val
		}
		mutate(m)
		body, _ := json.Marshal(m)
		req, _ := http.NewRequest("GET", ts.base+"/api/stats/orders", nil)
		resp := &http.Response{
			StatusCode: http.StatusOK,
			Header:     http.Header{"Content-Type": {"application/json; charset=utf-8"}},
			Body:       io.NopCloser(bytes.NewReader(body)),
		}
		if ok, _ := v.ValidateHttpResponse(req, resp); ok {
			t.Errorf("%s: the validator accepted %s", name, body)
		}
	}
	errBody := `{"error":"NO_SUCH_CODE","message":"x"}`
	req, _ := http.NewRequest("GET", ts.base+"/api/stats/nope", nil)
	resp := &http.Response{
		StatusCode: http.StatusNotFound,
		Header:     http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		Body:       io.NopCloser(strings.NewReader(errBody)),
	}
	if ok, _ := v.ValidateHttpResponse(req, resp); ok {
		t.Errorf("the validator accepted the error code outside the enum: %s", errBody)
	}
}
