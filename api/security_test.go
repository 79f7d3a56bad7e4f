package api_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqueue/mqueue/api"
)

func TestAuth(t *testing.T) {
	const token = "s3cret-token"
	for _, metricsAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("metricsAuth=%v", metricsAuth), func(t *testing.T) {
			ts := start(t, func(s *setup) {
				s.cfg.AuthToken = token
				s.cfg.MetricsAuth = metricsAuth
			})
			metricsStatus := 200
			if metricsAuth {
				metricsStatus = 401
			}
			tests := []struct {
				name   string
				method string
				path   string
				auth   string // Authorization header; "" sends none
				status int
			}{
				{"post no header", "POST", "/api/queue/a", "", 401},
				{"post wrong token", "POST", "/api/queue/a", "Bearer nope", 401},
				{"post token prefix", "POST", "/api/queue/a", "Bearer s3cret", 401},
				{"post basic scheme", "POST", "/api/queue/a", "Basic " + token, 401},
				{"post bare token", "POST", "/api/queue/a", token, 401},
				{"post right token", "POST", "/api/queue/a", "Bearer " + token, 201},
				{"post lower-case scheme", "POST", "/api/queue/a", "bearer " + token, 201},
				{"get no header", "GET", "/api/queue/a", "", 401},
				{"get right token", "GET", "/api/queue/a", "Bearer " + token, 200},
				{"stats no header", "GET", "/api/stats", "", 401},
				{"stats right token", "GET", "/api/stats", "Bearer " + token, 200},
				{"queue stats no header", "GET", "/api/stats/a", "", 401},
				{"healthz open", "GET", "/healthz", "", 200},
				{"readyz open", "GET", "/readyz", "", 200},
				{"metrics no header", "GET", "/metrics", "", metricsStatus},
				{"metrics wrong token", "GET", "/metrics", "Bearer nope", metricsStatus},
				{"metrics right token", "GET", "/metrics", "Bearer " + token, 200},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					var hdr []string
					if tt.auth != "" {
						hdr = []string{"Authorization", tt.auth}
					}
					var body io.Reader
					if tt.method == "POST" {
						body = strings.NewReader("m")
					}
					r := ts.do(tt.method, tt.path, body, hdr...)
					if r.status != tt.status {
						t.Fatalf("%s %s with %q = %d %s, want %d", tt.method, tt.path, tt.auth, r.status, r.body, tt.status)
					}
					if tt.status == 401 {
						if e := r.errBody(t); e.Error != api.CodeUnauthorized {
							t.Errorf("error = %q, want UNAUTHORIZED", e.Error)
						}
						if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
							t.Errorf("WWW-Authenticate = %q, want Bearer", h)
						}
					}
				})
			}
		})
	}
}

func TestNewConfigErrors(t *testing.T) {
	tests := map[string]api.Config{
		"cert without key":         {TLSCert: "c.pem"},
		"key without cert":         {TLSKey: "k.pem"},
		"metrics auth, no token":   {MetricsAuth: true},
		"missing key pair files":   {TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem"},
		"negative max message":     {MaxMessageBytes: -1},
		"negative drain grace":     {DrainGrace: -time.Second},
		"negative header timeout":  {ReadHeaderTimeout: -time.Second},
		"negative shutdown window": {ShutdownTimeout: -time.Second},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := api.New(cfg, nil, nil, nil); err == nil {
				t.Errorf("New(%+v) = nil error", cfg)
			}
		})
	}
}

// TestOversize checks that a declared Content-Length over the limit is
// refused before the body is sent, that a chunked body is cut at the limit,
// and that nothing of either is stored.
func TestOversize(t *testing.T) {
	const limit = 1024
	ts := start(t, func(s *setup) { s.cfg.MaxMessageBytes = limit })

	t.Run("content-length, body never sent", func(t *testing.T) {
		r := ts.raw(fmt.Sprintf("POST /api/queue/big HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", limit+1))
		if r.status != 413 || r.errBody(t).Error != api.CodeTooLarge {
			t.Fatalf("= %d %s, want 413 MESSAGE_TOO_LARGE", r.status, r.body)
		}
	})
	t.Run("content-length huge", func(t *testing.T) {
		r := ts.raw("POST /api/queue/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n")
		if r.status != 413 {
			t.Fatalf("= %d %s, want 413", r.status, r.body)
		}
	})
	t.Run("chunked over the limit", func(t *testing.T) {
		var req strings.Builder
		req.WriteString("POST /api/queue/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range 4 { // 4 × 300 = 1200 > 1024
			fmt.Fprintf(&req, "%x\r\n%s\r\n", 300, strings.Repeat("c", 300))
		}
		req.WriteString("0\r\n\r\n")
		r := ts.raw(req.String())
		if r.status != 413 || r.errBody(t).Error != api.CodeTooLarge {
			t.Fatalf("= %d %s, want 413 MESSAGE_TOO_LARGE", r.status, r.body)
		}
	})
	t.Run("chunked endless", func(t *testing.T) {
		// The server must answer after limit+1 bytes without waiting for
		// the end of a body that never ends.
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST /api/queue/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := fmt.Sprintf("%x\r\n%s\r\n", 512, strings.Repeat("e", 512))
		for range 3 {
			if _, err := io.WriteString(conn, chunk); err != nil {
				t.Fatal(err)
			}
		}
		r := readResponse(t, bufio.NewReader(conn))
		if r.status != 413 {
			t.Fatalf("= %d %s, want 413", r.status, r.body)
		}
	})
	t.Run("nothing stored", func(t *testing.T) {
		if r := ts.do("GET", "/api/stats/big", nil); r.status != 404 {
			t.Errorf("GET /api/stats/big = %d %s, want 404: something was stored", r.status, r.body)
		}
	})
	t.Run("chunked at the limit", func(t *testing.T) {
		body := strings.Repeat("k", limit)
		// An io.Reader of unknown length makes the client send chunks.
		r := ts.do("POST", "/api/queue/exact", io.MultiReader(strings.NewReader(body)))
		if r.status != 201 {
			t.Fatalf("chunked POST of %d bytes = %d %s, want 201", limit, r.status, r.body)
		}
		if r := ts.do("GET", "/api/queue/exact", nil); r.status != 200 || string(r.body) != body {
			t.Errorf("GET = %d, %d bytes, want the %d bytes posted", r.status, len(r.body), limit)
		}
	})
	t.Run("chunked empty", func(t *testing.T) {
		r := ts.raw("POST /api/queue/big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
		if r.status != 400 || r.errBody(t).Error != api.CodeEmptyMessage {
			t.Fatalf("= %d %s, want 400 EMPTY_MESSAGE", r.status, r.body)
		}
	})
}

// walk lists every path under root.
func walk(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTraversal sends names that try to leave the data directory, exactly
// as written on the wire, and checks that they are refused and that nothing
// appears outside the data directory.
func TestTraversal(t *testing.T) {
	ts := start(t)
	outside := filepath.Dir(ts.root) // the parent of the test's temp dir
	before := walk(t, outside)
	beforeData := walk(t, ts.dataDir)

	paths := []struct {
		target string
		status int
	}{
		{"/api/queue/..", 400},
		{"/api/queue/.", 400},
		{"/api/queue/%2e%2e", 400},
		{"/api/queue/%2E%2E", 400},
		{"/api/queue/a%2Fb", 404},
		{"/api/queue/a%2fb", 404},
		{"/api/queue/..%2f..%2fetc", 404},
		{"/api/queue/%2e%2e%2f%2e%2e%2fetc", 404},
		{"/api/queue/../../etc", 404},
		{"/api/queue/..%5c..%5cetc", 400},
		{"/api/queue/a%00b", 400},
		{"/api/queue/%2fetc", 404},
		{"/api/../../etc/passwd", 404},
		{"/api/stats/..", 400},
		{"/api/stats/..%2f..", 404},
	}
	for _, p := range paths {
		for _, method := range []string{"POST", "GET"} {
			t.Run(method+" "+p.target, func(t *testing.T) {
				req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", method, p.target)
				if method == "GET" {
					req = fmt.Sprintf("GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p.target)
				}
				r := ts.raw(req)
				want := p.status
				if method == "POST" && strings.HasPrefix(p.target, "/api/stats/") && want == 400 {
					want = 405 // stats has no POST; still nothing touches the disk
				}
				if r.status != want && !(r.status == 400 && want == 404) {
					t.Errorf("= %d %s, want %d", r.status, r.body, want)
				}
				r.errBody(t)
			})
		}
	}

	// A valid name with dots stays a plain directory name.
	ts.post("/api/queue/a..b", "fine")

	after := walk(t, outside)
	var added []string
	for _, p := range after {
		if !slices.Contains(before, p) && !strings.HasPrefix(p, ts.dataDir+string(filepath.Separator)) {
			added = append(added, p)
		}
	}
	// Other tests running in parallel could create temp dirs of their own;
	// this package runs its tests sequentially, so any new path is ours.
	if len(added) > 0 {
		t.Errorf("paths created outside the data directory: %v", added)
	}
	// Inside the data directory, the only new queue directory is a..b.
	entries, err := os.ReadDir(ts.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(ts.dataDir, e.Name())
		if e.IsDir() && e.Name() != "a..b" && !slices.Contains(beforeData, p) {
			t.Errorf("unexpected directory in the data directory: %s", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(ts.root, "etc")); err == nil {
		t.Errorf("%s/etc exists", ts.root)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and returns the
// file names and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mqueue test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	ts := start(t, func(s *setup) {
		s.cfg.TLSCert, s.cfg.TLSKey = certFile, keyFile
		s.noEngine = true
	})
	ts.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	if r := ts.do("GET", "/healthz", nil); r.status != 200 {
		t.Fatalf("GET https /healthz = %d", r.status)
	}
	// Plain HTTP on the TLS port gets nothing useful.
	plain := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer plain.CloseIdleConnections()
	resp, err := plain.Get("http://" + ts.addr + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP on the TLS listener = 200")
		}
	}
}
