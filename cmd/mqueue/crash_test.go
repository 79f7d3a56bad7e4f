package main

// End-to-end crash test: the real binary, kill -9 under load, restart on the
// same data directory, and a ledger of what every client was told.
//
// What the contract promises (SPEC "Durability and delivery") and what is
// checked here:
//   - a 201 means written to the segment file, in every fsync mode, so an
//     acknowledged message survives kill -9: after the last drain every acked
//     body has been popped, unless a GET whose answer the kill cut off took
//     it (see below);
//   - a 200 is answered only once the cursor move is persisted, so a popped
//     message never comes back: no body is popped twice, and every id popped
//     after a restart is above every id popped before it;
//   - ids are strictly increasing in enqueue order and never reused, so each
//     consumer sees increasing ids, each producer gets increasing ids, an id
//     names one body only, and the ids acked after a restart are above the
//     ones acked before it;
//   - bodies come back byte for byte;
//   - a body whose POST got no answer (the kill cut it) may or may not be
//     there after the restart ("recovered-unacked"); one whose POST got a
//     definite refusal must never be popped;
//   - every start after a kill is ready within 20 s, and the last one stops
//     cleanly (exit 0) on SIGTERM.
//
// A GET is a pop (at most once): a GET in flight when the process dies may
// have moved and persisted the cursor without its 200 reaching the client.
// Such a message is gone without anyone having seen it, and that is the
// contract, not a loss. The test therefore accounts for every acked body
// that was never popped by matching it to a distinct GET with an unknown
// outcome that could have taken it: same or later process lifetime, an id
// above every id popped in that lifetime before the GET was sent, and below
// every id popped in any later lifetime (the GET took the head of the queue,
// so everything left behind is above it). Whatever cannot be matched is an
// acked loss and fails the test.
//
// Knobs: MQUEUE_CRASH_ROUNDS (default 5) kill/restart rounds with
// --fsync=always, MQUEUE_CRASH_SEED to replay the random load durations,
// MQUEUE_CRASH_RACE=1 builds the server with -race, MQUEUE_CRASH_KEEP=DIR
// keeps the data directory (with a snapshot taken after each kill) and the
// server logs of a failed run.

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	crashQueue        = "crash"
	crashProducers    = 16
	crashConsumers    = 4
	crashDrainers     = 8
	crashDefaultRound = 5
	crashReadyLimit   = 20 * time.Second // start to /readyz 200
	crashDrainLimit   = 30 * time.Second // one drain
	crashClientLimit  = 10 * time.Second // one request
	crashExitLimit    = 15 * time.Second // SIGTERM to exit: drain-grace + 10 s + slack
	crashDrainGrace   = 100 * time.Millisecond
	crashMinLoad      = 300 * time.Millisecond
	crashMaxLoad      = 1500 * time.Millisecond
	crashMaxViolation = 20 // violations printed per kind
)

// TestCrashKill9NoAckedLossNoDoublePop kills the server with SIGKILL under
// load, restarts it on the same data directory and checks that no
// acknowledged message is lost and no popped one comes back: N rounds with
// --fsync=always, then one round each with interval and never.
func TestCrashKill9NoAckedLossNoDoublePop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped with -short")
	}
	rounds := crashDefaultRound
	if v := os.Getenv("MQUEUE_CRASH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			t.Fatalf("MQUEUE_CRASH_ROUNDS=%q: want an integer in 1..10000", v)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MQUEUE_CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MQUEUE_CRASH_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("seed %d (MQUEUE_CRASH_SEED to replay the load durations), %d rounds with fsync=always", seed, rounds)

	// The default 5 rounds plus the two single rounds stay around a minute;
	// more rounds get proportionally more time, within the test deadline.
	budget := max(45*time.Second, time.Duration(rounds)*9*time.Second)
	if dl, ok := t.Deadline(); ok {
		if left := time.Until(dl) - 45*time.Second; left < budget {
			budget = max(left, 10*time.Second)
		}
	}

	bin := crashBuild(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	modes := []struct {
		mode   string
		rounds int
		budget time.Duration
	}{
		{"always", rounds, budget},
		{"interval", 1, 15 * time.Second},
		{"never", 1, 15 * time.Second},
	}
	for _, m := range modes {
		loadSeed := rng.Uint64()
		t.Run("fsync="+m.mode, func(t *testing.T) {
			crashRun(t, bin, m.mode, m.rounds, m.budget, rand.New(rand.NewPCG(loadSeed, loadSeed>>1|1)))
		})
	}
}

// crashBuild builds the server binary once for the test into its temp dir
// (the build cache makes a rebuild under -count=N cheap).
func crashBuild(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command in PATH to build the server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root := filepath.Join("..", "..") // the module root, seen from cmd/mqueue
	if out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output(); err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			root = filepath.Dir(mod)
		}
	}
	bin := filepath.Join(t.TempDir(), "mqueue")
	args := []string{"build", "-o", bin}
	if os.Getenv("MQUEUE_CRASH_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/mqueue")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (in %s): %v\n%s", strings.Join(args, " "), root, err, out)
	}
	t.Logf("built %s in %v", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// crashServer is one running server process.
type crashServer struct {
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:PORT
	logPath string
	exited  chan struct{} // closed once Wait returned
	waitErr error         // valid once exited is closed
}

// crashFreeAddr returns a loopback address that was free a moment ago.
func crashFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// crashEnv is the environment of the child: ours without any MQUEUE_*
// variable, so that nothing but the flags configures it.
func crashEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			out = append(out, kv)
		}
	}
	return out
}

// crashStart starts the server on a free loopback port and waits for
// /readyz 200; it returns the server and the time from start to ready. The
// process is killed in t.Cleanup if it still runs.
func crashStart(t *testing.T, bin, data, mode, logDir string, n int) (*crashServer, time.Duration) {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // another test may grab the port
		s, ready, err := crashTryStart(t, bin, data, mode, filepath.Join(logDir, fmt.Sprintf("server-%02d-%d.log", n, attempt)))
		if err == nil {
			return s, ready
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start %d: %v", n, lastErr)
	return nil, 0
}

func crashTryStart(t *testing.T, bin, data, mode, logPath string) (*crashServer, time.Duration, error) {
	addr := crashFreeAddr(t)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "serve",
		"--addr", addr,
		"--data", data,
		"--fsync", mode,
		"--segment-bytes", "65536",
		"--segment-age", "2s",
		"--drain-grace", crashDrainGrace.String(),
	)
	cmd.Env = crashEnv()
	cmd.Stdout = logf
	cmd.Stderr = logf
	s := &crashServer{cmd: cmd, base: "http://" + addr, logPath: logPath, exited: make(chan struct{})}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() { s.kill(t) })

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := start.Add(crashReadyLimit)
	for {
		resp, err := client.Get(s.base + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, time.Since(start), nil
			}
		}
		select {
		case <-s.exited:
			return nil, 0, fmt.Errorf("server exited before ready (%v); log %s:\n%s", s.waitErr, logPath, crashTail(logPath))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill(t)
			return nil, 0, fmt.Errorf("server not ready within %v; log %s:\n%s", crashReadyLimit, logPath, crashTail(logPath))
		}
	}
}

// kill sends SIGKILL (if the process still runs) and reaps it.
func (s *crashServer) kill(t *testing.T) {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("pid %d did not die within 10s of SIGKILL", s.cmd.Process.Pid)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *crashServer) stop(t *testing.T) {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			t.Errorf("server exit after SIGTERM: %v; log:\n%s", s.waitErr, crashTail(s.logPath))
		}
	case <-time.After(crashExitLimit):
		t.Errorf("server did not exit within %v of SIGTERM; log:\n%s", crashExitLimit, crashTail(s.logPath))
		s.kill(t)
	}
}

// crashTail returns the end of a log file.
func crashTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// crashBody is the body sent for key: the key, a bar, and a filler derived
// from the key, 64..575 bytes in all, so that a corrupted or mixed-up body
// shows and segments fill up and rotate.
func crashBody(key string) []byte {
	h := fnv.New64a()
	h.Write([]byte(key))
	sum := h.Sum64()
	n := 64 + int(sum%512)
	b := make([]byte, 0, n)
	b = append(b, key...)
	b = append(b, '|')
	for len(b) < n {
		b = append(b, "abcdefghijklmnopqrstuvwxyz0123456789"[sum%36])
		sum = sum*6364136223846793005 + 1442695040888963407
	}
	return b
}

// crashKey returns the key of a popped body, and whether the body is exactly
// what was sent for it.
func crashKey(body []byte) (string, bool) {
	i := bytes.IndexByte(body, '|')
	if i <= 0 {
		return "", false
	}
	key := string(body[:i])
	return key, bytes.Equal(body, crashBody(key))
}

// POST outcomes.
const (
	crashAcked   = iota // 201 with an id
	crashUnknown        // no answer: transport error
	crashRefused        // a definite answer other than 201
)

type crashPost struct {
	life, producer int
	outcome        int
	id             uint64 // with crashAcked
	what           string // status or error, for reports
}

type crashPop struct {
	life     int
	consumer string
	id       uint64
}

// crashCutGet is a GET with an unknown outcome: it may have popped a message
// whose 200 never arrived.
type crashCutGet struct {
	life      int
	consumer  string
	maxBefore uint64 // highest id popped in this life before it was sent (a lower bound)
	err       string
}

// crashLedger records what the clients were told, across every lifetime of
// one data directory. Safe for concurrent use.
type crashLedger struct {
	mu         sync.Mutex
	posts      map[string]*crashPost
	pops       map[string][]crashPop
	byID       map[uint64]string // id -> key, from 201s and 200s
	cutGets    []crashCutGet
	maxPopped  map[int]uint64 // per life, so far
	violations map[string][]string
}

func newCrashLedger() *crashLedger {
	return &crashLedger{
		posts:      map[string]*crashPost{},
		pops:       map[string][]crashPop{},
		byID:       map[uint64]string{},
		maxPopped:  map[int]uint64{},
		violations: map[string][]string{},
	}
}

// violate records a broken promise under kind.
func (l *crashLedger) violate(kind, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violateLocked(kind, format, args...)
}

func (l *crashLedger) violateLocked(kind, format string, args ...any) {
	l.violations[kind] = append(l.violations[kind], fmt.Sprintf(format, args...))
}

// bindID records that id names key, and reports an id naming two bodies.
func (l *crashLedger) bindIDLocked(id uint64, key, how string) {
	if prev, ok := l.byID[id]; ok && prev != key {
		l.violateLocked("id assigned to two bodies", "id %d: %q and %q (%s)", id, prev, key, how)
		return
	}
	l.byID[id] = key
}

func (l *crashLedger) post(key string, p *crashPost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posts[key] = p
	if p.outcome == crashAcked {
		l.bindIDLocked(p.id, key, fmt.Sprintf("201 in life %d", p.life))
		if pops := l.pops[key]; len(pops) > 0 && pops[0].id != p.id {
			l.violateLocked("popped id differs from acked id", "%q acked as %d, popped as %d", key, p.id, pops[0].id)
		}
	}
}

// popSnapshot returns the highest id popped so far in life, to record with a
// GET about to be sent.
func (l *crashLedger) popSnapshot(life int) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxPopped[life]
}

func (l *crashLedger) pop(key string, p crashPop) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pops[key] = append(l.pops[key], p)
	if p.id > l.maxPopped[p.life] {
		l.maxPopped[p.life] = p.id
	}
	l.bindIDLocked(p.id, key, fmt.Sprintf("200 in life %d to %s", p.life, p.consumer))
	if a := l.posts[key]; a != nil && a.outcome == crashAcked && a.id != p.id {
		l.violateLocked("popped id differs from acked id", "%q acked as %d, popped as %d", key, a.id, p.id)
	}
}

func (l *crashLedger) cutGet(g crashCutGet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cutGets = append(l.cutGets, g)
}

// lifeCounts returns the acked and cut POSTs, the pops and the cut GETs of
// one life.
func (l *crashLedger) lifeCounts(life int) (acked, unknown, pops, cut int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.posts {
		if p.life != life {
			continue
		}
		switch p.outcome {
		case crashAcked:
			acked++
		case crashUnknown:
			unknown++
		}
	}
	for _, ps := range l.pops {
		for _, p := range ps {
			if p.life == life {
				pops++
			}
		}
	}
	for _, g := range l.cutGets {
		if g.life == life {
			cut++
		}
	}
	return acked, unknown, pops, cut
}

// crashClient is a keep-alive client for one lifetime of the server.
func crashClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
		Timeout: crashClientLimit,
	}
}

// crashLife is what the workers of one lifetime share.
type crashLife struct {
	life   int
	base   string
	client *http.Client
	ledger *crashLedger
	killAt atomic.Int64 // unix ns just before SIGKILL: errors after it are expected
	killed atomic.Bool  // set just after SIGKILL: send nothing more
}

// unexpected reports whether a request that failed at errAt failed while the
// server was still meant to run.
func (lf *crashLife) unexpected(errAt time.Time) bool {
	k := lf.killAt.Load()
	return k == 0 || errAt.UnixNano() < k
}

// produce POSTs unique bodies until the process is killed.
func (lf *crashLife) produce(p int) {
	url := lf.base + "/api/queue/" + crashQueue
	var lastID uint64
	for i := 0; !lf.killed.Load(); i++ {
		key := fmt.Sprintf("L%d-p%d-i%d", lf.life, p, i)
		rec := &crashPost{life: lf.life, producer: p}
		resp, err := lf.client.Post(url, "application/octet-stream", bytes.NewReader(crashBody(key)))
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		switch {
		case err != nil:
			rec.outcome, rec.what = crashUnknown, err.Error()
			if lf.unexpected(time.Now()) {
				lf.ledger.violate("request failed while the server ran", "life %d POST %s: %v", lf.life, key, err)
			}
		case resp.StatusCode == http.StatusCreated:
			id, perr := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
			if perr != nil || !bytes.Contains(body, []byte(`"id":`+strconv.FormatUint(id, 10)+`}`)) {
				// A definite answer that does not name an id: the message
				// may be stored, so its fate is unknown.
				rec.outcome, rec.what = crashUnknown, "201 without a usable id"
				lf.ledger.violate("malformed 201", "life %d POST %s: X-Message-Id %q body %q",
					lf.life, key, resp.Header.Get("X-Message-Id"), body)
				break
			}
			rec.outcome, rec.id, rec.what = crashAcked, id, "201"
			if id <= lastID {
				lf.ledger.violate("ids not increasing per producer", "life %d producer %d: id %d after %d (%s)", lf.life, p, id, lastID, key)
			}
			lastID = id
		default:
			rec.outcome, rec.what = crashRefused, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
			lf.ledger.violate("unexpected status", "life %d POST %s: %s", lf.life, key, rec.what)
		}
		lf.ledger.post(key, rec)
	}
}

// consume GETs until the process is killed or stop, given the number of
// 204s in a row so far, returns true; wait is the ?wait= value (0 = none).
func (lf *crashLife) consume(name string, wait int, stop func(empty int) bool) {
	url := lf.base + "/api/queue/" + crashQueue
	if wait > 0 {
		url += "?wait=" + strconv.Itoa(wait)
	}
	var lastID uint64
	empty := 0
	for !lf.killed.Load() && !stop(empty) {
		before := lf.ledger.popSnapshot(lf.life)
		resp, err := lf.client.Get(url)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			lf.ledger.cutGet(crashCutGet{life: lf.life, consumer: name, maxBefore: before, err: err.Error()})
			if lf.unexpected(time.Now()) {
				lf.ledger.violate("request failed while the server ran", "life %d GET by %s: %v", lf.life, name, err)
			}
			continue
		}
		switch resp.StatusCode {
		case http.StatusNoContent:
			empty++
			if len(body) != 0 {
				lf.ledger.violate("unexpected status", "life %d GET by %s: 204 with a body %q", lf.life, name, body)
			}
			if wait == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		case http.StatusOK:
			empty = 0
			id, perr := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
			key, exact := crashKey(body)
			if perr != nil || key == "" {
				lf.ledger.violate("corrupt body", "life %d GET by %s: X-Message-Id %q, body %.80q", lf.life, name, resp.Header.Get("X-Message-Id"), body)
				continue
			}
			if !exact {
				lf.ledger.violate("corrupt body", "life %d GET by %s: id %d key %q: body of %d bytes differs from what was sent (%.80q)",
					lf.life, name, id, key, len(body), body)
			}
			if id <= lastID {
				lf.ledger.violate("ids not increasing per consumer", "life %d consumer %s: id %d after %d (%s)", lf.life, name, id, lastID, key)
			}
			lastID = id
			lf.ledger.pop(key, crashPop{life: lf.life, consumer: name, id: id})
		default:
			lf.ledger.violate("unexpected status", "life %d GET by %s: %d %s", lf.life, name, resp.StatusCode, bytes.TrimSpace(body))
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// load runs producers and consumers for d, then SIGKILLs the server while
// their requests are in flight, and waits for every worker to stop.
func (lf *crashLife) load(t *testing.T, s *crashServer, d time.Duration) {
	var wg sync.WaitGroup
	for p := 0; p < crashProducers; p++ {
		wg.Go(func() { lf.produce(p) })
	}
	for c := 0; c < crashConsumers; c++ {
		wait := 0
		if c == crashConsumers-1 {
			wait = 1 // one long-polling consumer
		}
		wg.Go(func() { lf.consume(fmt.Sprintf("c%d", c), wait, func(int) bool { return false }) })
	}
	time.Sleep(d)
	// Workers keep sending until the signal is out, so that requests are
	// in flight when it lands.
	lf.killAt.Store(time.Now().UnixNano())
	if err := s.cmd.Process.Kill(); err != nil {
		t.Errorf("life %d: SIGKILL: %v", lf.life, err)
	}
	lf.killed.Store(true)
	s.kill(t) // reap
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(crashClientLimit + 5*time.Second):
		t.Fatalf("life %d: workers still busy %v after the kill", lf.life, crashClientLimit+5*time.Second)
	}
}

// drain pops with several consumers until each has seen a 204 (nothing
// produces meanwhile, so the queue is empty), within crashDrainLimit. It
// reports whether the queue was drained in time.
func (lf *crashLife) drain(t *testing.T) bool {
	deadline := time.Now().Add(crashDrainLimit)
	var late atomic.Bool
	var wg sync.WaitGroup
	for c := 0; c < crashDrainers; c++ {
		wg.Go(func() {
			lf.consume(fmt.Sprintf("drain%d", c), 0, func(empty int) bool {
				if time.Now().After(deadline) {
					late.Store(true)
					return true
				}
				return empty > 0
			})
		})
	}
	wg.Wait()
	if late.Load() {
		t.Errorf("life %d: the queue was not drained within %v", lf.life, crashDrainLimit)
		return false
	}
	// One long poll more: still empty.
	lf.consume("drain-check", 1, func(empty int) bool { return empty > 0 })
	return true
}

// crashCounts is the summary of a ledger.
type crashCounts struct {
	acked, unknownPosts, popped, lost, cutTaken, poppedTwice, recovered, cutGets int
}

// crashRun runs rounds kill/restart rounds on one data directory with the
// given fsync mode, then a final drain, and checks the ledger.
func crashRun(t *testing.T, bin, mode string, rounds int, budget time.Duration, rng *rand.Rand) {
	began := time.Now()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ledger := newCrashLedger()
	var maxReady time.Duration
	restartsOK, done := 0, 0
	drained := true

	for life := 0; ; life++ {
		s, ready := crashStart(t, bin, data, mode, dir, life)
		if life > 0 {
			restartsOK++
			maxReady = max(maxReady, ready)
		}
		lf := &crashLife{life: life, base: s.base, client: crashClient(), ledger: ledger}
		if life > 0 && !lf.drain(t) {
			// The ledger is still checked for what it can tell.
			drained = false
			lf.client.CloseIdleConnections()
			s.kill(t)
			break
		}
		final := life == rounds || (life > 0 && time.Since(began) > budget)
		if final {
			if life < rounds {
				t.Logf("time budget %v spent after %d of %d rounds", budget, life, rounds)
			}
			lf.client.CloseIdleConnections()
			s.stop(t)
			break
		}
		d := crashMinLoad + time.Duration(rng.Int64N(int64(crashMaxLoad-crashMinLoad)))
		lf.load(t, s, d)
		lf.client.CloseIdleConnections()
		if os.Getenv("MQUEUE_CRASH_KEEP") != "" {
			// What the next start recovers from, for a post-mortem.
			if err := os.CopyFS(filepath.Join(dir, fmt.Sprintf("after-kill-%02d", life)), os.DirFS(data)); err != nil {
				t.Logf("snapshot of the data directory after kill %d: %v", life, err)
			}
		}
		done++
		acked, unknown, pops, cut := ledger.lifeCounts(life)
		t.Logf("round %d: start %d ready in %v, load %v then SIGKILL: this life %d acked, %d POSTs cut, %d popped, %d GETs cut",
			done, life, ready.Round(time.Millisecond), d.Round(time.Millisecond), acked, unknown, pops, cut)
	}

	c := crashCheck(t, ledger, drained)
	if races := crashLogCount(dir, "WARNING: DATA RACE"); races > 0 {
		t.Errorf("the server (built with -race) reported %d data race(s); see the logs", races)
	}
	if t.Failed() {
		t.Logf("warnings and errors the server logged (all lives):\n%s", crashLogDigest(dir))
		crashKeep(t, dir)
	}
	t.Logf("fsync=%s: rounds=%d acked=%d popped=%d acked-lost=%d popped-twice=%d recovered-unacked=%d restarts-ok=%d/%d max-time-to-ready=%v (unknown-outcome POSTs=%d, GETs cut by the kill=%d, acked bodies they took=%d) in %v",
		mode, done, c.acked, c.popped, c.lost, c.poppedTwice, c.recovered, restartsOK, done, maxReady.Round(time.Millisecond),
		c.unknownPosts, c.cutGets, c.cutTaken, time.Since(began).Round(time.Millisecond))
	if done == 0 {
		t.Errorf("no round ran")
	}
}

// crashKeep copies the data directory, its snapshots taken after each kill
// and the server logs to $MQUEUE_CRASH_KEEP/<test name> for a post-mortem.
func crashKeep(t *testing.T, dir string) {
	keep := os.Getenv("MQUEUE_CRASH_KEEP")
	if keep == "" {
		t.Logf("set MQUEUE_CRASH_KEEP=DIR to keep the data directory and server logs of a failed run")
		return
	}
	dst := filepath.Join(keep, strings.NewReplacer("/", "_", "=", "-").Replace(t.Name())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		t.Logf("keep %s: %v", dst, err)
		return
	}
	t.Logf("data directory and server logs kept in %s", dst)
}

// crashCheck checks the ledger and reports every broken promise; with
// drained false (the last drain did not finish) it cannot tell lost
// messages and leaves them out.
func crashCheck(t *testing.T, l *crashLedger, drained bool) crashCounts {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var c crashCounts
	c.cutGets = len(l.cutGets)

	// Per life: the range of acked and of popped ids.
	type span struct{ lo, hi uint64 }
	acks, popsBy := map[int]*span{}, map[int]*span{}
	widen := func(m map[int]*span, life int, id uint64) {
		s := m[life]
		if s == nil {
			m[life] = &span{id, id}
			return
		}
		s.lo, s.hi = min(s.lo, id), max(s.hi, id)
	}
	lastLife := 0
	for _, p := range l.posts {
		lastLife = max(lastLife, p.life)
		switch p.outcome {
		case crashAcked:
			c.acked++
			widen(acks, p.life, p.id)
		case crashUnknown:
			c.unknownPosts++
		}
	}
	for key, ps := range l.pops {
		c.popped += len(ps)
		for _, p := range ps {
			lastLife = max(lastLife, p.life)
			widen(popsBy, p.life, p.id)
		}
		if len(ps) > 1 {
			c.poppedTwice++
			var where []string
			for _, p := range ps {
				where = append(where, fmt.Sprintf("id %d in life %d by %s", p.id, p.life, p.consumer))
			}
			post := "never posted"
			if a := l.posts[key]; a != nil {
				post = fmt.Sprintf("POST in life %d: %s id %d", a.life, a.what, a.id)
			}
			l.violateLocked("popped twice", "%q (%s) popped %d times: %s", key, post, len(ps), strings.Join(where, "; "))
		}
		a := l.posts[key]
		switch {
		case a == nil:
			l.violateLocked("popped a body never posted", "%q popped: id %d in life %d", key, ps[0].id, ps[0].life)
		case a.outcome == crashUnknown:
			c.recovered++
		case a.outcome == crashRefused:
			l.violateLocked("popped a refused message", "%q was answered %s in life %d, yet popped as id %d in life %d",
				key, a.what, a.life, ps[0].id, ps[0].life)
		}
	}

	// Order across restarts: everything acked (popped) in a later life is
	// above everything acked (popped) in an earlier one.
	for _, kind := range []struct {
		name string
		m    map[int]*span
	}{{"acked", acks}, {"popped", popsBy}} {
		var prev *span
		prevLife := -1
		for life := 0; life <= lastLife; life++ {
			s := kind.m[life]
			if s == nil {
				continue
			}
			if prev != nil && s.lo <= prev.hi {
				l.violateLocked("ids not increasing across restarts", "%s ids of life %d start at %d, not above %d, the highest %s in life %d",
					kind.name, life, s.lo, prev.hi, kind.name, prevLife)
			}
			prev, prevLife = s, life
		}
	}

	// Acked bodies never popped: each must be explained by a distinct GET
	// cut by a kill that could have taken it.
	minLater := make([]uint64, lastLife+2) // lowest id popped in any life after i
	minLater[lastLife+1] = math.MaxUint64
	for life := lastLife; life >= 0; life-- {
		minLater[life] = minLater[life+1]
		if life+1 <= lastLife && popsBy[life+1] != nil {
			minLater[life] = min(minLater[life], popsBy[life+1].lo)
		}
	}
	type lostRec struct {
		key string
		p   *crashPost
	}
	var lost []lostRec
	for key, p := range l.posts {
		if drained && p.outcome == crashAcked && len(l.pops[key]) == 0 {
			lost = append(lost, lostRec{key, p})
		}
	}
	sort.Slice(lost, func(i, j int) bool { return lost[i].p.id < lost[j].p.id })
	can := func(lr lostRec, g crashCutGet) bool {
		return g.life >= lr.p.life && lr.p.id > g.maxBefore && lr.p.id < minLater[g.life]
	}
	// Bipartite matching (augmenting paths); both sides are small unless
	// something is badly wrong, and then the first few hundred suffice.
	matchOf := make([]int, len(l.cutGets)) // cut GET -> lost index, or -1
	for i := range matchOf {
		matchOf[i] = -1
	}
	var try func(i int, seen []bool) bool
	try = func(i int, seen []bool) bool {
		for g := range l.cutGets {
			if seen[g] || !can(lost[i], l.cutGets[g]) {
				continue
			}
			seen[g] = true
			if matchOf[g] < 0 || try(matchOf[g], seen) {
				matchOf[g] = i
				return true
			}
		}
		return false
	}
	for i := range lost {
		if i < 500 && try(i, make([]bool, len(l.cutGets))) {
			c.cutTaken++
			continue
		}
		c.lost++
		lr := lost[i]
		l.violateLocked("acked message lost", "%q acked as id %d in life %d (producer %d) never popped; lowest id popped in a later life: %s; GETs cut in life >= %d: %s",
			lr.key, lr.p.id, lr.p.life, lr.p.producer, crashFmtID(minLater[lr.p.life]), lr.p.life, crashCutSummary(l.cutGets, lr.p.life))
	}

	var kinds []string
	for k := range l.violations {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		vs := l.violations[k]
		shown := vs
		if len(shown) > crashMaxViolation {
			shown = shown[:crashMaxViolation]
		}
		t.Errorf("%s: %d time(s):\n  %s", k, len(vs), strings.Join(shown, "\n  "))
	}
	return c
}

// crashLogDigest returns the WARN and ERROR lines of every server log in dir,
// each prefixed with its file name.
func crashLogDigest(dir string) string {
	logs, _ := filepath.Glob(filepath.Join(dir, "server-*.log"))
	var out []string
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			out = append(out, err.Error())
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") ||
				strings.Contains(line, "panic") || strings.Contains(line, "DATA RACE") {
				out = append(out, filepath.Base(path)+": "+line)
			}
		}
	}
	if len(out) > 60 {
		out = append(out[:60], fmt.Sprintf("... %d lines in all", len(out)))
	}
	if len(out) == 0 {
		return "  (none)"
	}
	return "  " + strings.Join(out, "\n  ")
}

// crashLogCount counts the lines holding what in the server logs in dir.
func crashLogCount(dir, what string) int {
	logs, _ := filepath.Glob(filepath.Join(dir, "server-*.log"))
	n := 0
	for _, path := range logs {
		if b, err := os.ReadFile(path); err == nil {
			n += bytes.Count(b, []byte(what))
		}
	}
	return n
}

func crashFmtID(id uint64) string {
	if id == math.MaxUint64 {
		return "none"
	}
	return strconv.FormatUint(id, 10)
}

func crashCutSummary(gs []crashCutGet, fromLife int) string {
	var out []string
	for _, g := range gs {
		if g.life >= fromLife {
			out = append(out, fmt.Sprintf("life %d %s after id %d", g.life, g.consumer, g.maxBefore))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	if len(out) > 8 {
		out = append(out[:8], fmt.Sprintf("... %d in all", len(out)))
	}
	return strings.Join(out, ", ")
}
