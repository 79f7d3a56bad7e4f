package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/api/sqs"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// envPrefix prefixes the environment variable of every flag.
const envPrefix = "MQUEUE_"

// exitDeadline is how long after drain-grace the process may take to exit
// (SPEC: exit within drain-grace + 10 s); past it a watchdog exits with 1.
const exitDeadline = 10 * time.Second

// serveConfig holds the parsed flags of `mqueue serve`.
type serveConfig struct {
	addr              string
	data              string
	fsync             engine.FsyncMode
	fsyncInterval     time.Duration
	segmentBytes      int64
	segmentAge        time.Duration
	maxMessageBytes   int64
	maxDiskBytes      int64
	maxQueueDepth     int64
	maxQueues         int
	idleClose         time.Duration
	maxOpenQueues     int
	maxMemoryBytes    int64
	authToken         string
	metricsAuth       bool
	ui                bool
	tlsCert           string
	tlsKey            string
	drainGrace        time.Duration
	readHeaderTimeout time.Duration
	logLevel          slog.Level
	logFormat         string
	pprof             string
	maxDeliveries     int64
	dedupWindow       time.Duration
	maxConnections    int
	maxInflightBytes  int64
	sqs               bool
	sqsPublicURL      string
	sqsAccount        string
	sqsRegion         string
	sqsCredentials    string

	// warnings are logged once the logger exists.
	warnings []string
}

// parseWithEnv parses args into fs, then sets every flag not given on the
// command line from its MQUEUE_<FLAG> environment variable (lookupEnv may be
// nil: no environment). The command line wins.
func parseWithEnv(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if lookupEnv == nil {
		return nil
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil {
			return
		}
		if v, ok := lookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s (--%s): %v", v, envName(f.Name), f.Name, err)
			}
		}
	})
	return envErr
}

// envName is the environment variable of flag name: MQUEUE_FSYNC_INTERVAL
// for fsync-interval.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// newServeFlags defines the flags of `mqueue serve` on a new FlagSet, writing
// into cfg (and the raw spellings of the flags that need parsing into raw).
func newServeFlags(cfg *serveConfig, raw *rawFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("mqueue serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, usage by printServeUsage
	fs.Usage = func() {}

	fs.StringVar(&cfg.addr, "addr", ":8088", "listen `address` of the HTTP API")
	fs.StringVar(&cfg.data, "data", "./data", "data `directory`, one subdirectory per queue; locked while serving")
	fs.StringVar(&raw.fsync, "fsync", "always", "when to fsync: always (before every acknowledgement), interval or never")
	fs.DurationVar(&cfg.fsyncInterval, "fsync-interval", 10*time.Millisecond, "background fsync period with --fsync=interval")
	fs.Int64Var(&cfg.segmentBytes, "segment-bytes", 16<<20, "rotate a segment once it holds this many `bytes`")
	fs.DurationVar(&cfg.segmentAge, "segment-age", 10*time.Minute, "rotate a non-empty segment once it is this old")
	fs.Int64Var(&cfg.maxMessageBytes, "max-message-bytes", api.DefaultMaxMessageBytes, "largest message accepted, in `bytes` (413 above)")
	fs.Int64Var(&cfg.maxDiskBytes, "max-disk-bytes", 0, "cap on the `bytes` of all segments, 0 = no cap (507 above)")
	fs.Int64Var(&cfg.maxQueueDepth, "max-queue-depth", 0, "cap on the unconsumed `messages` of each queue, 0 = no cap (429 above)")
	fs.IntVar(&cfg.maxQueues, "max-queues", 10000, "cap on the number of `queues`, 0 = no cap (429 TOO_MANY_QUEUES for a new one above)")
	fs.DurationVar(&cfg.idleClose, "idle-close", 30*time.Second, "close a queue's files once it is idle this long with nothing leased or delayed (reopened on use), 0 = never")
	fs.IntVar(&cfg.maxOpenQueues, "max-open-queues", 1024, "cap on the `queues` open at once (2-3 files each); opening one more closes the least recently used idle one, 0 = no cap")
	fs.Int64Var(&cfg.maxMemoryBytes, "max-memory-bytes", engine.DefaultMaxMemoryBytes, "cap on the `bytes` of recent and leased messages kept in memory by all queues together; past it they are read from disk")
	fs.StringVar(&cfg.authToken, "auth-token", "", "require \"Authorization: Bearer `token`\" on /api/*; prefer the environment variable, which ps does not show")
	fs.BoolVar(&cfg.ui, "ui", true, "serve the web console at /ui (its data calls go through /api and need the auth token)")
	fs.BoolVar(&cfg.metricsAuth, "metrics-auth", false, "require the auth token on /metrics too")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate `file`; with --tls-key, serve HTTPS")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key `file`; with --tls-cert, serve HTTPS")
	fs.DurationVar(&cfg.drainGrace, "drain-grace", 3*time.Second, "on SIGTERM/SIGINT, how long /readyz answers 503 while requests are still served")
	fs.DurationVar(&cfg.readHeaderTimeout, "read-header-timeout", api.DefaultReadHeaderTimeout, "time allowed to read request headers, at most 10s")
	fs.StringVar(&raw.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&cfg.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&cfg.pprof, "pprof", "", "listen `address` for net/http/pprof on its own listener (e.g. 127.0.0.1:6060); empty = off")
	fs.Int64Var(&cfg.maxDeliveries, "max-deliveries", 0, "leased deliveries without an ack after which a message moves to the queue {queue}.dlq, 0 = no limit")
	fs.DurationVar(&cfg.dedupWindow, "dedup-window", 5*time.Minute, "how long an Idempotency-Key is remembered (at least 1s); a repeat within it answers 200 with the original id")
	fs.IntVar(&cfg.maxConnections, "max-connections", api.DefaultMaxConnections, "cap on the `connections` served at once, 0 = no cap; more wait to be accepted")
	fs.Int64Var(&cfg.maxInflightBytes, "max-inflight-bytes", api.DefaultMaxInflightBytes, "cap on the request body `bytes` held across all requests, 0 = no cap (503 OVERLOADED above); at least the largest message and 10 MiB")
	fs.BoolVar(&cfg.sqs, "sqs", true, "serve the SQS-compatible API (AWS JSON 1.0 and query protocols) on POST / of the listener")
	fs.StringVar(&cfg.sqsPublicURL, "sqs-public-url", "", "base `URL` of SQS queue URLs (e.g. https://mq.example.com); empty = the scheme and Host of each request")
	fs.StringVar(&cfg.sqsAccount, "sqs-account", sqs.DefaultAccount, "account `id` in SQS queue URLs and ARNs (12 digits)")
	fs.StringVar(&cfg.sqsRegion, "sqs-region", sqs.DefaultRegion, "`region` in SQS queue ARNs")
	fs.StringVar(&cfg.sqsCredentials, "sqs-credentials", "", "`file` of SQS access keys, one \"ACCESS_KEY_ID SECRET_ACCESS_KEY\" per line: SigV4 signatures are then verified; empty = accepted unverified (refused altogether with --auth-token)")
	return fs
}

// rawFlags holds the spellings of flags parsed after the FlagSet is done.
type rawFlags struct {
	fsync    string
	logLevel string
}

// parseServeFlags parses args, then fills every flag not given on the
// command line from its environment variable (looked up with lookupEnv), then
// checks the values. It returns flag.ErrHelp for -h/--help.
func parseServeFlags(args []string, lookupEnv func(string) (string, bool)) (*serveConfig, error) {
	cfg := &serveConfig{}
	var raw rawFlags
	fs := newServeFlags(cfg, &raw)
	if err := parseWithEnv(fs, args, lookupEnv); err != nil {
		return nil, err
	}
	if err := cfg.check(raw); err != nil {
		return nil, err
	}
	return cfg, nil
}

// check validates the parsed values and parses the raw ones.
func (cfg *serveConfig) check(raw rawFlags) error {
	var err error
	if cfg.fsync, err = engine.ParseFsyncMode(raw.fsync); err != nil {
		return fmt.Errorf("invalid --fsync: %w", err)
	}
	if err := cfg.logLevel.UnmarshalText([]byte(raw.logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", raw.logLevel)
	}
	if cfg.logFormat != "text" && cfg.logFormat != "json" {
		return fmt.Errorf("invalid --log-format %q: want text or json", cfg.logFormat)
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"fsync-interval", int64(cfg.fsyncInterval)},
		{"segment-bytes", cfg.segmentBytes},
		{"segment-age", int64(cfg.segmentAge)},
		{"max-message-bytes", cfg.maxMessageBytes},
		{"max-memory-bytes", cfg.maxMemoryBytes},
		{"read-header-timeout", int64(cfg.readHeaderTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("invalid --%s: must be greater than 0", p.name)
		}
	}
	nonNegative := []struct {
		name string
		v    int64
	}{
		{"max-disk-bytes", cfg.maxDiskBytes},
		{"max-queue-depth", cfg.maxQueueDepth},
		{"max-queues", int64(cfg.maxQueues)},
		{"idle-close", int64(cfg.idleClose)},
		{"max-open-queues", int64(cfg.maxOpenQueues)},
		{"drain-grace", int64(cfg.drainGrace)},
		{"max-deliveries", cfg.maxDeliveries},
		{"dedup-window", int64(cfg.dedupWindow)},
	}
	for _, p := range nonNegative {
		if p.v < 0 {
			return fmt.Errorf("invalid --%s: must not be negative", p.name)
		}
	}
	if err := cfg.checkHTTPLimits(); err != nil {
		return err
	}
	if cfg.dedupWindow < time.Second {
		return errors.New("invalid --dedup-window: must be at least 1s")
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	if cfg.metricsAuth && cfg.authToken == "" {
		return errors.New("--metrics-auth needs --auth-token")
	}
	if !validAccount(cfg.sqsAccount) {
		return fmt.Errorf("invalid --sqs-account %q: want 12 digits", cfg.sqsAccount)
	}
	if cfg.sqsRegion == "" || strings.ContainsAny(cfg.sqsRegion, ":/ ") {
		return fmt.Errorf("invalid --sqs-region %q", cfg.sqsRegion)
	}
	if cfg.sqsPublicURL != "" {
		u, err := url.Parse(cfg.sqsPublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			return fmt.Errorf("invalid --sqs-public-url %q: want http(s)://host[:port][/path]", cfg.sqsPublicURL)
		}
	}
	if cfg.readHeaderTimeout > api.MaxReadHeaderTimeout {
		cfg.warnings = append(cfg.warnings, fmt.Sprintf("--read-header-timeout %v lowered to the maximum, %v",
			cfg.readHeaderTimeout, api.MaxReadHeaderTimeout))
		cfg.readHeaderTimeout = api.MaxReadHeaderTimeout
	}
	return nil
}

// checkHTTPLimits checks --max-connections and --max-inflight-bytes, and
// warns of a token that leaves /metrics open.
func (cfg *serveConfig) checkHTTPLimits() error {
	if cfg.maxConnections < 0 {
		return errors.New("invalid --max-connections: must not be negative")
	}
	if least := max(cfg.maxMessageBytes, api.MaxBatchBytes); cfg.maxInflightBytes != 0 && cfg.maxInflightBytes < least {
		return fmt.Errorf("invalid --max-inflight-bytes: 0 or at least %d (the largest message or batch)", least)
	}
	if cfg.authToken != "" && !cfg.metricsAuth {
		cfg.warnings = append(cfg.warnings, "--auth-token is set but /metrics is open to anyone who can reach the port (queue names and depths); add --metrics-auth to require the token there too")
	}
	return nil
}

// noLimit maps a flag's 0 (no cap) to the api.Config spelling (negative).
func noLimit[T int | int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// printServeUsage lists every flag with its default and environment variable.
func printServeUsage(w io.Writer) {
	var cfg serveConfig
	var raw rawFlags
	fs := newServeFlags(&cfg, &raw)
	fmt.Fprintf(w, "Usage: mqueue serve [flags]   (also: mqueue [flags])\n\n")
	fmt.Fprintf(w, "Every flag can also be set from the environment variable shown; the command line wins.\n")
	fmt.Fprintf(w, "Durations are Go durations (10ms, 1s, 5m); sizes are plain bytes.\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		def := f.DefValue
		if g, ok := f.Value.(flag.Getter); ok {
			if _, isString := g.Get().(string); isString {
				def = fmt.Sprintf("%q", def)
			}
		}
		fmt.Fprintf(w, "\n    \t%s\n    \t(default %s, env %s)\n", usage, def, envName(f.Name))
	})
}

// runServe implements `mqueue serve` and returns the process exit code: 0
// after a clean drain, 1 when serving failed, 2 for bad flags.
func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseServeFlags(args, os.LookupEnv)
	if errors.Is(err, flag.ErrHelp) {
		printServeUsage(stdout)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqueue serve: %v\nRun 'mqueue serve --help' for the flags.\n", err)
		return 2
	}
	log := newLogger(stderr, cfg)
	slog.SetDefault(log)
	for _, w := range cfg.warnings {
		log.Warn(w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		stop() // a second signal kills the process at once
		log.Info("signal received: draining", "drain_grace", cfg.drainGrace)
		t := time.NewTimer(cfg.drainGrace + exitDeadline)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			log.Error("drain did not finish within drain-grace + 10s; exiting", "deadline", cfg.drainGrace+exitDeadline)
			os.Exit(1)
		}
	}()

	if err := serve(ctx, cfg, log); err != nil {
		log.Error("mqueue stopped", "err", err)
		return 1
	}
	log.Info("mqueue stopped")
	return 0
}

// Of each warning or error message, at most logBurst records per logWindow
// reach the log (limitHandler).
const (
	logBurst  = 10
	logWindow = time.Second
)

func newLogger(w io.Writer, cfg *serveConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.logFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(newLimitHandler(h, logBurst, logWindow, time.Now))
}

// serve wires metrics, the HTTP server and the engine, and runs until ctx is
// cancelled and the drain is over. The listener opens before the engine so
// that /healthz answers (and /readyz says 503) during a long recovery.
func serve(ctx context.Context, cfg *serveConfig, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	engMetrics := metrics.NewEngine(reg)
	sqsConfig, err := newSQSConfig(cfg, log)
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{
		AuthToken:         cfg.authToken,
		MetricsAuth:       cfg.metricsAuth,
		TLSCert:           cfg.tlsCert,
		TLSKey:            cfg.tlsKey,
		MaxMessageBytes:   cfg.maxMessageBytes,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		DrainGrace:        cfg.drainGrace,
		MaxConnections:    noLimit(cfg.maxConnections),
		MaxInflightBytes:  noLimit(cfg.maxInflightBytes),
		DisableUI:         !cfg.ui,
		SQS:               sqsConfig,
		Logger:            log,
	}, nil, reg, metrics.NewHTTP(reg))
	if err != nil {
		return err
	}
	metrics.RegisterReady(reg, srv.Ready)

	if cfg.pprof != "" {
		closePprof, err := startPprof(cfg.pprof, log)
		if err != nil {
			return err
		}
		defer closePprof()
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln) }()

	start := time.Now()
	eng, err := engine.Open(engine.Options{
		Dir:           cfg.data,
		Fsync:         cfg.fsync,
		FsyncInterval: cfg.fsyncInterval,
		SegmentBytes:  cfg.segmentBytes,
		SegmentAge:    cfg.segmentAge,
		MaxDiskBytes:  cfg.maxDiskBytes,
		MaxQueueDepth: cfg.maxQueueDepth,
		MaxQueues:     cfg.maxQueues,
		IdleClose:     idleClose(cfg.idleClose),
		MaxOpenQueues: noCap(cfg.maxOpenQueues),
		DedupWindow:   cfg.dedupWindow,
		MaxDeliveries: cfg.maxDeliveries,
		Logger:        log,
		Metrics:       engMetrics,

		MaxMemoryBytes: cfg.maxMemoryBytes,
	})
	if err != nil {
		if errors.Is(err, engine.ErrLocked) {
			err = fmt.Errorf("data directory %s is in use by another mqueue process: %w", cfg.data, err)
		} else {
			err = fmt.Errorf("open data directory %s: %w", cfg.data, err)
		}
		// Nothing was ever ready, so the server stops without a grace.
		stopServing()
		<-served
		return err
	}
	log.Info("data directory open", "data", cfg.data, "fsync", cfg.fsync.String(), "took", time.Since(start).String())
	metrics.RegisterQueues(reg, api.QueueSampler(eng))
	metrics.RegisterMemory(reg, cfg.maxMemoryBytes, eng.MemoryBytes)
	srv.SetEngine(eng)

	serveErr := <-served
	if err := eng.Close(); err != nil {
		return errors.Join(serveErr, fmt.Errorf("close engine: %w", err))
	}
	log.Info("data directory closed", "data", cfg.data)
	return serveErr
}

// idleClose maps --idle-close (0 = never) to engine.Options.IdleClose
// (negative = never).
func idleClose(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// noCap maps a flag's 0 (no cap) to an engine option's negative one.
func noCap(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// startPprof serves net/http/pprof on its own listener, never the public one.
// /debug/pprof/cmdline is not served: the command line may hold
// --auth-token.
func startPprof(addr string, log *slog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not served: the command line may hold secrets", http.StatusNotFound)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: api.DefaultReadHeaderTimeout}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server stopped", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}
