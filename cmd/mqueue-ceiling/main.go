// Command mqueue-ceiling is the performance ceiling of mqueue's HTTP layer:
// a bare Gin server with the same routes, status codes, headers, JSON shapes
// and server timeouts as mqueue, and no queue behind them. A POST reads its
// body and answers 201 with the next id of a counter; a GET answers 200 with
// a fixed 100-byte body and the headers of a dequeue. cmd/mqueue-bench runs
// it beside mqueue so that throughput is reported as a ratio to it, which
// holds still on a noisy machine where absolute numbers do not.
//
// It deliberately has none of mqueue's middleware (metrics, drain gate,
// panic recovery, auth): the gap between the two is the price of those plus
// the engine. It imports engine only for ValidQueueName, a pure function,
// so that both servers validate names with the same code.
//
// With --handoff it is the ceiling of the group-commit shape itself: every
// POST and GET hands its id request to one batching goroutine, as mqueue's
// handlers hand their message to the commit loop, and waits until that
// goroutine answers the whole batch by closing one channel. No file is
// touched. The gap between the plain and the hand-off ceiling is what a
// handler that blocks on another goroutine costs in net/http; the gap
// between the hand-off ceiling and mqueue is the engine's writes and fsyncs.
//
// With --handoff-fsync FILE the batching goroutine also writes each batch
// to FILE (recordBytes per request, one pwrite into a zero-filled
// preallocated file) and fdatasyncs it before answering: the least that any
// fsync-before-ack group commit on this disk must do, with no queue, record
// format, cursor, metrics or middleware. It is the ceiling of mqueue's
// always mode on the machine it runs on.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqueue/mqueue/engine"
)

// Server timeouts: the values of api/server.go.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 45 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
	maxMessageBytes   = 1 << 20
)

// getBody is what every GET returns: 100 bytes, the size of the benchmark's
// messages.
var getBody = []byte(`{"event":"order.created","order":123456,"customer":"c-000042","items":3,"total":"59.90","pad":"xxx"}`)

var (
	hdrJSON        = []string{"application/json; charset=utf-8"}
	hdrOctetStream = []string{"application/octet-stream"}
	hdrNoStore     = []string{"no-store"}
	hdrNoSniff     = []string{"nosniff"}
	hdrGetLen      = []string{strconv.Itoa(len(getBody))}
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8089", "listen `address`")
	pprofAddr := flag.String("pprof", "", "listen `address` for net/http/pprof; empty = off")
	handoff := flag.Bool("handoff", false, "hand every request to a batching goroutine and wait for it (group commit without a disk)")
	syncFile := flag.String("handoff-fsync", "", "with the hand-off, also pwrite each batch to this `file` and fdatasync it before answering (implies --handoff)")
	flag.Parse()
	if err := run(*addr, *pprofAddr, *handoff, *syncFile); err != nil {
		fmt.Fprintln(os.Stderr, "mqueue-ceiling:", err)
		os.Exit(1)
	}
}

func run(addr, pprofAddr string, handoff bool, syncFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go func() { _ = http.ListenAndServe(pprofAddr, mux) }() //nolint:gosec // loopback, bench only
	}
	var disk *batchFile
	if syncFile != "" {
		var err error
		if disk, err = openBatchFile(syncFile); err != nil {
			return err
		}
		defer disk.f.Close()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newRouter(handoff || disk != nil, disk),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	log.Printf("mqueue-ceiling listening on %s", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ceiling holds the id counter, the one piece of state.
type ceiling struct {
	next    atomic.Uint64
	handoff *handoff // nil: ids are taken in the handler
}

// id returns the next id, through the batching goroutine with --handoff.
func (s *ceiling) id() uint64 {
	if s.handoff != nil {
		return s.handoff.wait()
	}
	return s.next.Add(1)
}

// handoff is group commit without a disk, shaped like engine's: handlers
// join the pending batch under a mutex, the first one of a batch wakes the
// loop, and the loop answers the whole batch by closing one channel.
type handoff struct {
	mu   sync.Mutex
	pend *hbatch
	kick chan struct{}
	next *atomic.Uint64
	disk *batchFile // nil: no file
}

type hbatch struct {
	n, first uint64
	done     chan struct{}
}

func newHandoff(next *atomic.Uint64, disk *batchFile) *handoff {
	h := &handoff{pend: &hbatch{done: make(chan struct{})}, kick: make(chan struct{}, 1), next: next, disk: disk}
	go h.loop()
	return h
}

func (h *handoff) wait() uint64 {
	h.mu.Lock()
	b := h.pend
	i := b.n
	b.n++
	h.mu.Unlock()
	if i == 0 {
		select {
		case h.kick <- struct{}{}:
		default:
		}
	}
	<-b.done
	return b.first + i
}

func (h *handoff) loop() {
	for range h.kick {
		runtime.Gosched() // as engine's commit loop: let runnable handlers join
		h.mu.Lock()
		b := h.pend
		h.pend = &hbatch{done: make(chan struct{})}
		h.mu.Unlock()
		if h.disk != nil {
			if err := h.disk.commit(int(b.n)); err != nil {
				log.Fatalf("mqueue-ceiling: %v", err) // a benchmark tool: no answer without the fsync
			}
		}
		b.first = h.next.Add(b.n) - b.n + 1
		close(b.done)
	}
}

// recordBytes is what one request adds to the file: about one of mqueue's
// frames for the benchmark's 100-byte body (payload, 28-byte record
// header, tidwall's length prefix).
const recordBytes = 130

// batchFileBytes is the preallocated size; writes wrap around to the start,
// so the file never grows and fdatasync never has metadata to write, as in
// mqueue's preallocated active segment.
const batchFileBytes = 64 << 20

// batchFile is the --handoff-fsync file.
type batchFile struct {
	f   *os.File
	off int64
	buf []byte
}

func openBatchFile(path string) (*batchFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < batchFileBytes; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros, off); err != nil {
			f.Close()
			return nil, fmt.Errorf("preallocate %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("fsync %s: %w", path, err)
	}
	return &batchFile{f: f}, nil
}

// commit writes n records with one pwrite and fdatasyncs them.
func (d *batchFile) commit(n int) error {
	size := n * recordBytes
	if cap(d.buf) < size {
		d.buf = make([]byte, size)
		for i := range d.buf {
			d.buf[i] = 'm'
		}
	}
	if d.off+int64(size) > batchFileBytes {
		d.off = 0
	}
	if _, err := d.f.WriteAt(d.buf[:size], d.off); err != nil {
		return fmt.Errorf("write %s at %d: %w", d.f.Name(), d.off, err)
	}
	d.off += int64(size)
	if err := syscall.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("fdatasync %s: %w", d.f.Name(), err)
	}
	return nil
}

func newRouter(withHandoff bool, disk *batchFile) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.NoRoute(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusNotFound, gin.H{"error": "NOT_FOUND", "message": "no such route"})
	})
	r.NoMethod(func(c *gin.Context) {
		c.AbortWithStatusJSON(http.StatusMethodNotAllowed, gin.H{"error": "METHOD_NOT_ALLOWED", "message": "method not allowed on this route"})
	})
	ok := func(c *gin.Context) { c.String(http.StatusOK, "ok") }
	r.GET("/healthz", ok)
	r.GET("/readyz", ok)
	s := &ceiling{}
	if withHandoff {
		s.handoff = newHandoff(&s.next, disk)
	}
	r.POST("/api/queue", s.enqueue)
	r.POST("/api/queue/:name", s.enqueue)
	r.GET("/api/queue", s.dequeue)
	r.GET("/api/queue/:name", s.dequeue)
	return r
}

// queueName mirrors api.queueName (without importing the engine).
func queueName(c *gin.Context) (string, bool) {
	name := c.Param("name")
	if c.FullPath() == "/api/queue" {
		name = "default"
	}
	if !engine.ValidQueueName(name) {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "INVALID_QUEUE_NAME", "message": "bad queue name"})
		return "", false
	}
	return name, true
}

// enqueue reads the body like api.readBody and answers like api's enqueue.
func (s *ceiling) enqueue(c *gin.Context) {
	name, ok := queueName(c)
	if !ok {
		return
	}
	r := c.Request
	var body []byte
	if n := r.ContentLength; n > 0 && n <= maxMessageBytes {
		body = make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "INVALID_BODY", "message": "unreadable body"})
			return
		}
		_ = r.Body.Close() // as api.readBody: spares net/http a drain of the body
	} else {
		var err error
		if body, err = io.ReadAll(io.LimitReader(r.Body, maxMessageBytes+1)); err != nil {
			c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "INVALID_BODY", "message": "unreadable body"})
			return
		}
	}
	if len(body) == 0 || len(body) > maxMessageBytes {
		c.AbortWithStatusJSON(http.StatusBadRequest, gin.H{"error": "EMPTY_MESSAGE", "message": "bad body size"})
		return
	}
	id := s.id()

	var buf [128]byte
	out := append(buf[:0], `{"queue":"`...)
	out = append(out, name...)
	out = append(out, `","id":`...)
	idAt := len(out)
	out = strconv.AppendUint(out, id, 10)
	idEnd := len(out)
	out = append(out, '}')
	resp := string(out)
	h := c.Writer.Header()
	h["X-Message-Id"] = []string{resp[idAt:idEnd]}
	h["Content-Type"] = hdrJSON
	c.Writer.WriteHeader(http.StatusCreated)
	_, _ = c.Writer.WriteString(resp)
}

// dequeue answers like api's dequeue of a message without a TTL.
func (s *ceiling) dequeue(c *gin.Context) {
	if _, ok := queueName(c); !ok {
		return
	}
	id := s.id()
	h := c.Writer.Header()
	h["Cache-Control"] = hdrNoStore
	// The same two allocations as api.setMessageHeaders.
	var buf [64]byte
	b := strconv.AppendUint(buf[:0], id, 10)
	idEnd := len(b)
	b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
	str := string(b)
	vals := make([]string, 2)
	vals[0], vals[1] = str[:idEnd], str[idEnd:]
	h["X-Message-Id"] = vals[0:1:1]
	h["X-Enqueued-At"] = vals[1:2:2]
	h["Content-Type"] = hdrOctetStream
	h["X-Content-Type-Options"] = hdrNoSniff
	h["Content-Length"] = hdrGetLen
	c.Writer.WriteHeader(http.StatusOK)
	_, _ = c.Writer.Write(getBody)
}
