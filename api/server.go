package api

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/mqueue/mqueue/api/sqs"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// Limits and defaults of the HTTP server.
const (
	// DefaultMaxMessageBytes is the message size limit when
	// Config.MaxMessageBytes is 0 (1 MiB).
	DefaultMaxMessageBytes = 1 << 20
	// DefaultReadHeaderTimeout is used when Config.ReadHeaderTimeout is 0.
	DefaultReadHeaderTimeout = 5 * time.Second
	// MaxReadHeaderTimeout caps Config.ReadHeaderTimeout (SPEC: at most 10 s).
	MaxReadHeaderTimeout = 10 * time.Second
	// DefaultShutdownTimeout is used when Config.ShutdownTimeout is 0. With
	// a final fsync after it, the process stays within drain-grace + 10 s.
	DefaultShutdownTimeout = 8 * time.Second
	// MaxWaitSeconds is the longest long poll a GET may ask for with ?wait=N.
	MaxWaitSeconds = 30
	// MaxTTLSeconds is the largest ?ttl=N a POST may ask for (10 years).
	MaxTTLSeconds = 315360000

	// readTimeout bounds reading a whole request, body included: a 1 MiB
	// body at a slow 20 KiB/s still fits, a slowloris sender does not.
	readTimeout = 60 * time.Second
	// writeTimeout runs from the end of the request headers to the end of
	// the response, so it must exceed the longest long poll.
	writeTimeout = MaxWaitSeconds*time.Second + 15*time.Second
	// closeWindow is the least time the server keeps answering 503
	// SHUTTING_DOWN on open connections after the listener closed, so that
	// a request racing with the close gets an answer rather than an EOF.
	closeWindow = 250 * time.Millisecond
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes is far above what a client of this API sends.
	maxHeaderBytes = 64 << 10

	// DefaultMaxConnections is used when Config.MaxConnections is 0.
	DefaultMaxConnections = 4096
	// DefaultMaxInflightBytes is used when Config.MaxInflightBytes is 0
	// (256 MiB).
	DefaultMaxInflightBytes = 256 << 20
	// MaxConcurrentStreams is the most requests one HTTP/2 connection may
	// have open at once (the RFC 9113 recommended minimum; Go's default is
	// 250).
	MaxConcurrentStreams = 100
)

// Config configures a Server. The zero value of every field is valid and
// means its documented default.
type Config struct {
	// AuthToken, when set, is required as "Authorization: Bearer <token>"
	// on every /api/* request.
	AuthToken string
	// MetricsAuth requires the token on /metrics too. It needs AuthToken.
	MetricsAuth bool
	// TLSCert and TLSKey are PEM files; both set means HTTPS, neither HTTP.
	TLSCert, TLSKey string
	// MaxMessageBytes is the largest message accepted (default 1 MiB).
	MaxMessageBytes int64
	// ReadHeaderTimeout bounds reading request headers (default 5 s,
	// clamped to MaxReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// DrainGrace is how long /readyz answers 503 while everything else is
	// still served normally, once Serve's context is cancelled. Zero means
	// no grace; the command line defaults it to 3 s.
	DrainGrace time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the grace (default DefaultShutdownTimeout); then connections are
	// closed.
	ShutdownTimeout time.Duration
	// MaxConnections caps the connections served at once (default
	// DefaultMaxConnections; negative: no cap). Connections past it wait in
	// the kernel's accept queue until one closes.
	MaxConnections int
	// MaxInflightBytes caps the request body bytes held across all requests
	// being received or handled (default DefaultMaxInflightBytes; negative:
	// no cap). Bytes are reserved as a body arrives and released when its
	// request ends; a request that would pass the cap is answered 503
	// OVERLOADED.
	MaxInflightBytes int64
	// SQS, when set, serves the SQS-compatible API (api/sqs) on POST / and
	// POST /{account}/{queue} of the same listener.
	SQS *sqs.Config
	// DisableUI turns the web console at /ui off (404 there).
	DisableUI bool
	// Logger receives the server's logs (default slog.Default()).
	Logger *slog.Logger
}

// Server serves the mqueue HTTP API. Build it with New, hand it the engine
// with SetEngine once recovery is done, and run it with Serve. Safe for
// concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	gather  prometheus.Gatherer
	httpm   *metrics.HTTP
	tlsConf *tls.Config
	router  *gin.Engine
	sqs     *sqs.Service // nil when Config.SQS is
	// tokenSum is the SHA-256 of AuthToken, so that the constant-time
	// comparison does not leak the token's length either.
	tokenSum [sha256.Size]byte

	eng      atomic.Pointer[engine.Engine]
	draining atomic.Bool // /readyz answers 503
	closing  atomic.Bool // every request but /healthz and /readyz answers 503 SHUTTING_DOWN
	served   atomic.Bool
	inFlight atomic.Int64 // requests being handled, for the drain
	// inflightBytes is the request body memory reserved (see reserve).
	inflightBytes atomic.Int64

	// pollCtx is cancelled when the grace ends, to wake long polls while
	// leaving in-flight enqueues alone (cancelling the request contexts
	// would abandon them half-way).
	pollCtx   context.Context
	stopPolls context.CancelFunc
}

// New builds a Server for eng, serving the metrics of gather on /metrics (nil
// serves none) and recording its own in httpMetrics (nil records nothing). eng may be nil
// while the engine is still recovering: /readyz then answers 503 and /api/*
// 503 NOT_READY until SetEngine is called. New loads the TLS key pair, so a
// bad certificate is reported at start rather than at the first handshake.
func New(cfg Config, eng *engine.Engine, gather prometheus.Gatherer, httpMetrics *metrics.HTTP) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if gather == nil {
		gather = prometheus.NewRegistry() // /metrics then serves nothing, rather than panicking
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		gather: gather,
		httpm:  httpMetrics,
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("api: load TLS key pair %s, %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		s.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if cfg.AuthToken != "" {
		s.tokenSum = sha256.Sum256([]byte(cfg.AuthToken))
	}
	s.pollCtx, s.stopPolls = context.WithCancel(context.Background())
	if eng != nil {
		s.eng.Store(eng)
	}
	if cfg.SQS != nil {
		sc := *cfg.SQS
		if sc.MaxMessageBytes == 0 {
			sc.MaxMessageBytes = cfg.MaxMessageBytes
		}
		if sc.Logger == nil {
			sc.Logger = cfg.Logger
		}
		s.sqs = sqs.New(sc, s.eng.Load)
	}
	s.router = s.routes()
	return s, nil
}

func (c *Config) setDefaults() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("api: TLS needs both a certificate and a key")
	}
	if c.MetricsAuth && c.AuthToken == "" {
		return errors.New("api: metrics auth needs an auth token")
	}
	if c.MaxMessageBytes < 0 || c.ReadHeaderTimeout < 0 || c.DrainGrace < 0 || c.ShutdownTimeout < 0 {
		return errors.New("api: negative size or duration in config")
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	c.ReadHeaderTimeout = min(c.ReadHeaderTimeout, MaxReadHeaderTimeout)
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// SetEngine hands s the opened engine: /api/* is served from then on and
// /readyz answers 200 unless s is draining. Call it once recovery is done.
// Safe for concurrent use.
func (s *Server) SetEngine(eng *engine.Engine) {
	s.eng.Store(eng)
}

// Ready reports whether /readyz answers 200: the engine is set and s is not
// draining. Safe for concurrent use.
func (s *Server) Ready() bool {
	return s.eng.Load() != nil && !s.draining.Load()
}

// Handler returns the HTTP handler with every route, for tests and for
// embedding; Serve uses it too. Safe for concurrent use.
func (s *Server) Handler() http.Handler {
	return s.router
}

// Serve accepts connections on ln (HTTPS when Config has a key pair) until
// ctx is cancelled, then drains (see the package doc) and returns nil once
// every connection is closed. It returns an error when the listener fails.
// It does not close the engine: the caller does, after Serve returns, which
// is when no request can reach it any more. Serve may be called only once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("api: Serve called twice")
	}
	defer s.stopPolls()
	// Request contexts hang off hardCtx, which is cancelled only when
	// in-flight requests overrun ShutdownTimeout.
	hardCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()
	srv := &http.Server{
		Handler:           s.router,
		TLSConfig:         s.tlsConf,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return hardCtx },
		// HTTP/2 (with TLS) multiplexes requests on one connection, so the
		// connection cap alone does not bound them.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: MaxConcurrentStreams},
	}
	if s.cfg.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, s.cfg.MaxConnections)
	}
	ln = &onceCloseListener{Listener: ln}
	addr := ln.Addr().String()
	errc := make(chan error, 1)
	go func() {
		if s.tlsConf != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	s.log.Info("listening", "addr", addr, "tls", s.tlsConf != nil)

	select {
	case err := <-errc:
		// The listener failed on its own; stop whatever is still running.
		s.closing.Store(true)
		s.stopPolls()
		_ = srv.Close()
		return fmt.Errorf("api: serve %s: %w", addr, err)
	case <-ctx.Done():
	}

	wasReady := s.Ready()
	s.draining.Store(true)
	if wasReady && s.cfg.DrainGrace > 0 {
		// Keep serving so that load balancers see /readyz fail and take the
		// node out before anything is refused.
		s.log.Info("draining: /readyz answers 503", "grace", s.cfg.DrainGrace)
		t := time.NewTimer(s.cfg.DrainGrace)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			errc <- err // handled below
		}
	}
	// The listener closes first, so that new connections are refused and
	// clients go elsewhere at once. http.Server.Shutdown drops (without an
	// answer) every request whose headers it reads after it starts, so until
	// in-flight requests are done the server keeps running with the gate
	// closed: requests still arriving on open connections get 503
	// SHUTTING_DOWN with Retry-After, which a client can act on.
	s.log.Info("shutting down: listener closed, new requests get 503", "addr", addr)
	s.closing.Store(true)
	_ = ln.Close()
	srv.SetKeepAlivesEnabled(false) // closes idle connections, and busy ones after their response
	s.stopPolls()
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	s.waitInFlight(deadline)

	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	shutErr := srv.Shutdown(sctx)
	if shutErr != nil {
		s.log.Warn("in-flight requests did not finish in time; closing their connections",
			"timeout", s.cfg.ShutdownTimeout, "err", shutErr)
		hardStop()
		_ = srv.Close()
	}
	// We closed the listener ourselves, so Serve reports net.ErrClosed.
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("api: serve %s: %w", addr, err)
	}
	s.log.Info("HTTP server stopped", "addr", addr)
	return nil
}

// waitInFlight returns once no request is being handled and closeWindow has
// passed, or at deadline.
func (s *Server) waitInFlight(deadline time.Time) {
	open := time.Now().Add(closeWindow)
	for {
		now := time.Now()
		if now.After(deadline) || (now.After(open) && s.inFlight.Load() == 0) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onceCloseListener lets Serve close the listener before http.Server.Shutdown
// closes it again.
type onceCloseListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloseListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
