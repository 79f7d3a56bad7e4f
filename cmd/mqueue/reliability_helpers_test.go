package main

// Shared harness of the reliability suite (reliability_*_test.go, issue
// "prove mqueue does not lose acked messages"): build the real binary, run it
// in its own process group (optionally under strace), keep a ledger of what
// every client was told across process lifetimes, drain, and check. The
// kill -9 test of crash_test.go runs on it too.
//
// Every helper here is prefixed rel so that it cannot clash with the other
// end-to-end tests of this package. Each test prints its figures with
// t.Logf in one line starting "figures:"; docs/RELIABILITY.md collects them.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// relQueue is the queue the reliability tests load.
const relQueue = "rel"

// relBody is what is sent for key: the key, a bar and a filler derived from
// the key, 64..(64+spread-1) bytes in all, so that a corrupt or mixed-up
// body shows and segments fill up and rotate.
func relBody(key string, spread int) []byte {
	h := fnv.New64a()
	h.Write([]byte(key))
	sum := h.Sum64()
	n := 64 + int(sum%uint64(max(spread, 1)))
	b := make([]byte, 0, n)
	b = append(b, key...)
	b = append(b, '|')
	for len(b) < n {
		b = append(b, "abcdefghijklmnopqrstuvwxyz0123456789"[sum%36])
		sum = sum*6364136223846793005 + 1442695040888963407
	}
	return b
}

// relSpread is the body size spread of the load generators.
const relSpread = 448

// relKey returns the key of a popped body and whether the body is exactly
// what was sent for it.
func relKey(body []byte) (string, bool) { return relKeySpread(body, relSpread) }

// relKeySpread is relKey for bodies made with relBody(key, spread).
func relKeySpread(body []byte, spread int) (string, bool) {
	i := bytes.IndexByte(body, '|')
	if i <= 0 {
		return "", false
	}
	key := string(body[:i])
	return key, bytes.Equal(body, relBody(key, spread))
}

// POST outcomes.
const (
	relAcked   = iota // 201 with an id
	relUnknown        // no answer
	relRefused        // a definite answer other than 201: nothing stored
)

type relPost struct {
	life    int
	outcome int
	id      uint64 // with relAcked
	status  int
	what    string    // status or error, for reports
	at      time.Time // when the answer arrived
}

type relPop struct {
	life int
	id   uint64
	by   string
}

// relCutGet is a GET with an unknown outcome: it may have popped a message
// whose 200 never arrived (a GET is at most once).
type relCutGet struct {
	life      int
	by        string // the consumer
	maxBefore uint64 // highest id popped in its life before it was sent
	err       string
}

// relBatch is one batch POST: its bodies' keys, in order, and what its
// client was told (one outcome for all of them).
type relBatch struct {
	life    int
	keys    []string
	outcome int
}

// relLedger records what the clients were told across every lifetime of one
// data directory. Safe for concurrent use.
type relLedger struct {
	mu           sync.Mutex
	posts        map[string]*relPost
	batches      []relBatch
	retries      []string   // keyed POSTs without an answer, to send again
	batchRetries [][]string // the same for batch POSTs (their bodies' keys)
	pops         map[string][]relPop
	byID         map[uint64]string
	cutGets      []relCutGet
	maxPopped    map[int]uint64
	cutAt        map[int]time.Time // when the test cut (killed, powered off) a life
	statuses     map[string]int    // "POST 500" -> count, for reports
	samples      []string          // the first transport errors
	violations   map[string][]string
}

func newRelLedger() *relLedger {
	return &relLedger{
		posts:      map[string]*relPost{},
		pops:       map[string][]relPop{},
		byID:       map[uint64]string{},
		maxPopped:  map[int]uint64{},
		cutAt:      map[int]time.Time{},
		statuses:   map[string]int{},
		violations: map[string][]string{},
	}
}

func (l *relLedger) violate(kind, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violateLocked(kind, format, args...)
}

func (l *relLedger) violateLocked(kind, format string, args ...any) {
	l.violations[kind] = append(l.violations[kind], fmt.Sprintf(format, args...))
}

func (l *relLedger) bindIDLocked(id uint64, key, how string) {
	if prev, ok := l.byID[id]; ok && prev != key {
		l.violateLocked("id names two bodies (reused id)", "id %d: %q and %q (%s)", id, prev, key, how)
		return
	}
	l.byID[id] = key
}

// sample keeps the first few transport errors, for reports.
func (l *relLedger) sample(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) < 8 {
		l.samples = append(l.samples, what)
	}
}

func (l *relLedger) status(what string) {
	l.mu.Lock()
	l.statuses[what]++
	l.mu.Unlock()
}

func (l *relLedger) post(key string, p *relPost) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.posts[key] = p
	if p.outcome == relAcked {
		l.bindIDLocked(p.id, key, fmt.Sprintf("201 in life %d", p.life))
		if pops := l.pops[key]; len(pops) > 0 && pops[0].id != p.id {
			l.violateLocked("popped id differs from acked id", "%q acked as %d, popped as %d", key, p.id, pops[0].id)
		}
	}
}

func (l *relLedger) retryLater(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.retries = append(l.retries, key)
}

func (l *relLedger) retryBatchLater(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batchRetries = append(l.batchRetries, keys)
}

func (l *relLedger) takeRetries() (singles []string, batches [][]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	singles, batches = l.retries, l.batchRetries
	l.retries, l.batchRetries = nil, nil
	return singles, batches
}

func (l *relLedger) batch(b relBatch) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, b)
}

func (l *relLedger) popSnapshot(life int) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxPopped[life]
}

func (l *relLedger) pop(key string, p relPop) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pops[key] = append(l.pops[key], p)
	l.maxPopped[p.life] = max(l.maxPopped[p.life], p.id)
	l.bindIDLocked(p.id, key, fmt.Sprintf("200 in life %d to %s", p.life, p.by))
	if a := l.posts[key]; a != nil && a.outcome == relAcked && a.id != p.id {
		l.violateLocked("popped id differs from acked id", "%q acked as %d, popped as %d", key, a.id, p.id)
	}
}

func (l *relLedger) cutGet(g relCutGet) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cutGets = append(l.cutGets, g)
}

// cut records when the test cut life short.
func (l *relLedger) cut(life int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cutAt[life] = time.Now()
}

// lifeCounts returns the acked and cut POSTs, the pops and the cut GETs of
// one life.
func (l *relLedger) lifeCounts(life int) (acked, unknown, pops, cut int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.posts {
		if p.life != life {
			continue
		}
		switch p.outcome {
		case relAcked:
			acked++
		case relUnknown:
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

// acked returns the number of acknowledged POSTs so far.
func (l *relLedger) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.posts {
		if p.outcome == relAcked {
			n++
		}
	}
	return n
}

// relWorkers generate load on one server lifetime.
type relWorkers struct {
	life   int
	base   string
	queue  string
	client *http.Client
	ledger *relLedger
	// cut is set just before the test kills or powers off the server:
	// errors after it are expected, before it they are violations.
	cut  atomic.Bool
	stop atomic.Bool // producers and consumers return
	// firing is set just before a kill whose requests in flight are the
	// point: transport errors after it are expected, yet the workers keep
	// sending until stop (a definite refusal is still a violation).
	firing atomic.Bool
	// spread is the body size spread (relSpread when 0).
	spread int
	// batchProducers of the producers POST batches (produceBatch), the
	// next keyedProducers single messages with an Idempotency-Key.
	batchProducers, keyedProducers int
	// longPollLast makes the last consumer of run poll with ?wait=1.
	longPollLast bool
	// tolerate lists statuses that are not violations even before cut.
	tolerate map[int]bool
	// dead, when set, is closed when the server process has exited: a
	// request that fails because an injected fault killed it is expected.
	dead <-chan struct{}
	// maxBacklog, when > 0, pauses producers while this life has acked
	// that many more messages than it popped, so that the final drain
	// stays short.
	maxBacklog int64
	acks, pops atomic.Int64
	seq        atomic.Int64
	mu         sync.Mutex
	lastID     map[string]uint64 // per producer or consumer name, this life
}

// inOrder records id as the latest one that name (a producer or a
// consumer) got and reports an id not above the one before it: ids are
// strictly increasing in enqueue order, so each producer gets and each
// consumer sees increasing ids.
func (w *relWorkers) inOrder(kind, name, key string, id uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lastID == nil {
		w.lastID = map[string]uint64{}
	}
	if last, ok := w.lastID[name]; ok && id <= last {
		w.ledger.violate("ids not increasing per "+kind, "life %d %s %s: id %d after %d (%s)", w.life, kind, name, id, last, key)
	}
	w.lastID[name] = id
}

func (w *relWorkers) bodySpread() int {
	if w.spread > 0 {
		return w.spread
	}
	return relSpread
}

// failureExpected reports whether a request without an answer is expected:
// the test cut the server, or the process died (within 2 s of the error).
func (w *relWorkers) failureExpected() bool {
	if w.cut.Load() || w.firing.Load() {
		return true
	}
	if w.dead == nil {
		return false
	}
	select {
	case <-w.dead:
		w.cut.Store(true)
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

func (w *relWorkers) url() string { return w.base + "/api/queue/" + w.queue }

// produceOne POSTs one body with a fresh key and records the outcome. It
// returns the status (0 for no answer).
func (w *relWorkers) produceOne(prefix string) int {
	return w.postOne(fmt.Sprintf("L%d-%s-%d", w.life, prefix, w.seq.Add(1)), prefix, false)
}

// postOne POSTs the body of key, with key as its Idempotency-Key when
// keyed, and records the outcome; a keyed POST without an answer is
// queued for a retry with the same key after the restart (retryKeyed).
func (w *relWorkers) postOne(key, prefix string, keyed bool) int {
	rec := &relPost{life: w.life}
	req, err := http.NewRequest(http.MethodPost, w.url(), bytes.NewReader(relBody(key, w.bodySpread())))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if keyed {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := w.client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	rec.at = time.Now()
	switch {
	case err != nil:
		rec.outcome, rec.what = relUnknown, err.Error()
		w.ledger.status("POST no answer")
		w.ledger.sample("POST: " + err.Error())
		if !w.failureExpected() {
			w.ledger.violate("request failed while the server ran", "life %d POST %s: %v", w.life, key, err)
		}
	case resp.StatusCode == http.StatusCreated || (keyed && resp.StatusCode == http.StatusOK):
		if resp.StatusCode == http.StatusOK {
			w.ledger.status("POST keyed 200 (duplicate)")
		}
		id, perr := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
		if perr != nil || !bytes.Contains(body, []byte(`"id":`+strconv.FormatUint(id, 10)+`}`)) {
			rec.outcome, rec.what = relUnknown, "201 without a usable id"
			w.ledger.violate("malformed 201", "life %d POST %s: X-Message-Id %q body %q", w.life, key, resp.Header.Get("X-Message-Id"), body)
			break
		}
		rec.outcome, rec.id, rec.status, rec.what = relAcked, id, resp.StatusCode, strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusCreated {
			w.inOrder("producer", prefix, key, id)
		}
		w.acks.Add(1)
		w.ledger.status("POST 201")
	default:
		rec.outcome, rec.status = relRefused, resp.StatusCode
		rec.what = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		w.ledger.status(fmt.Sprintf("POST %d %s", resp.StatusCode, relErrCode(body)))
		if !w.cut.Load() && !w.tolerate[resp.StatusCode] {
			w.ledger.violate("unexpected status", "life %d POST %s: %d %s", w.life, key, resp.StatusCode, bytes.TrimSpace(body))
		}
	}
	w.ledger.post(key, rec)
	if err != nil {
		if keyed {
			w.ledger.retryLater(key)
		}
		return 0
	}
	return resp.StatusCode
}

// retryKeyed POSTs again, with the same key, every keyed POST that got no
// answer in an earlier life: one stored before the kill must be answered
// 200 with its id and not stored twice; one that was not, 201.
func (w *relWorkers) retryKeyed() (retried int) {
	singles, batches := w.ledger.takeRetries()
	for _, key := range singles {
		retried++
		w.postOne(key, "retry", true)
	}
	for _, keys := range batches {
		retried++
		w.postBatch(keys, "retry-batch")
	}
	return retried
}

// produceBatch POSTs n bodies with fresh keys as one batch and records
// each like a single POST (one outcome for all), and the batch itself for
// the all-or-nothing check. It returns the status (0 for no answer).
func (w *relWorkers) produceBatch(prefix string, n int) int {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("L%d-%s-%d", w.life, prefix, w.seq.Add(1))
	}
	return w.postBatch(keys, prefix)
}

// postBatch POSTs the bodies of keys as one batch, with the first key as
// its Idempotency-Key; one without an answer is queued for a retry with
// the same key after the restart (retryKeyed).
func (w *relWorkers) postBatch(keys []string, prefix string) int {
	n := len(keys)
	var req bytes.Buffer
	req.WriteString(`{"messages":[`)
	for i := range keys {
		if i > 0 {
			req.WriteByte(',')
		}
		req.WriteString(`{"body_base64":"`)
		req.WriteString(base64.StdEncoding.EncodeToString(relBody(keys[i], w.bodySpread())))
		req.WriteString(`"}`)
	}
	req.WriteString("]}")
	hreq, err := http.NewRequest(http.MethodPost, w.url()+"/batch", &req)
	if err != nil {
		panic(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Idempotency-Key", keys[0])
	resp, err := w.client.Do(hreq)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	at := time.Now()
	outcome, what, status := relUnknown, "", 0
	var ids []uint64
	switch {
	case err != nil:
		what = err.Error()
		w.ledger.status("POST batch no answer")
		w.ledger.sample("POST batch: " + err.Error())
		if !w.failureExpected() {
			w.ledger.violate("request failed while the server ran", "life %d POST batch %s..: %v", w.life, keys[0], err)
		}
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
		if resp.StatusCode == http.StatusOK {
			w.ledger.status("POST keyed 200 (duplicate)")
		}
		var out struct {
			IDs []uint64 `json:"ids"`
		}
		if jerr := json.Unmarshal(body, &out); jerr != nil || len(out.IDs) != n {
			what = "201 without usable ids"
			w.ledger.violate("malformed 201", "life %d POST batch of %d %s..: %q", w.life, n, keys[0], body)
			break
		}
		for i := 1; i < n; i++ {
			if out.IDs[i] != out.IDs[0]+uint64(i) {
				w.ledger.violate("batch ids not consecutive", "life %d POST batch %s..: ids %v", w.life, keys[0], out.IDs)
				break
			}
		}
		outcome, ids, status, what = relAcked, out.IDs, resp.StatusCode, fmt.Sprintf("%d (batch)", resp.StatusCode)
		w.acks.Add(int64(n))
		w.ledger.status("POST batch 201")
	default:
		outcome, status = relRefused, resp.StatusCode
		what = fmt.Sprintf("%d %s (batch)", resp.StatusCode, bytes.TrimSpace(body))
		w.ledger.status(fmt.Sprintf("POST batch %d %s", resp.StatusCode, relErrCode(body)))
		if !w.cut.Load() && !w.tolerate[resp.StatusCode] {
			w.ledger.violate("unexpected status", "life %d POST batch %s..: %d %s", w.life, keys[0], resp.StatusCode, bytes.TrimSpace(body))
		}
	}
	for i, key := range keys {
		rec := &relPost{life: w.life, outcome: outcome, status: status, what: what, at: at}
		if outcome == relAcked {
			rec.id = ids[i]
			if status == http.StatusCreated {
				w.inOrder("producer", prefix, key, ids[i])
			}
		}
		w.ledger.post(key, rec)
	}
	w.ledger.batch(relBatch{life: w.life, keys: keys, outcome: outcome})
	if err != nil {
		w.ledger.retryBatchLater(keys)
		return 0
	}
	return resp.StatusCode
}

var relErrCodeRe = regexp.MustCompile(`"error":"([A-Z_]+)"`)

// relErrCode returns the "error" code of a JSON error body.
func relErrCode(body []byte) string {
	m := relErrCodeRe.FindSubmatch(body)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// produce POSTs until stop or cut; the first w.batchProducers producers
// POST batches of 2..relMaxBatch messages instead of single ones.
func (w *relWorkers) produce(p int) {
	for i := 0; !w.stop.Load() && !w.cut.Load(); i++ {
		if w.maxBacklog > 0 && w.acks.Load()-w.pops.Load() > w.maxBacklog {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		var status int
		switch {
		case p < w.batchProducers:
			status = w.produceBatch(fmt.Sprintf("b%d", p), 2+(p*7+i*13)%(relMaxBatch-1))
		case p < w.batchProducers+w.keyedProducers:
			prefix := fmt.Sprintf("k%d", p)
			status = w.postOne(fmt.Sprintf("L%d-%s-%d", w.life, prefix, w.seq.Add(1)), prefix, true)
		default:
			status = w.produceOne(fmt.Sprintf("p%d", p))
		}
		if status == 0 && !w.cut.Load() {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// relMaxBatch is the largest batch produceBatch sends: with bodies of up
// to relSpread bytes, its write spans several pages, so a kill can land
// inside it.
const relMaxBatch = 64

// consumeOne GETs once (with ?wait=wait when > 0) and records the outcome;
// it returns the status, 0 for no answer.
func (w *relWorkers) consumeOne(name string, wait int) int {
	u := w.url()
	if wait > 0 {
		u += "?wait=" + strconv.Itoa(wait)
	}
	before := w.ledger.popSnapshot(w.life)
	resp, err := w.client.Get(u)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		w.ledger.cutGet(relCutGet{life: w.life, by: name, maxBefore: before, err: err.Error()})
		w.ledger.status("GET no answer")
		w.ledger.sample("GET: " + err.Error())
		if !w.failureExpected() {
			w.ledger.violate("request failed while the server ran", "life %d GET by %s: %v", w.life, name, err)
		}
		return 0
	}
	switch resp.StatusCode {
	case http.StatusOK:
		w.ledger.status("GET 200")
		id, perr := strconv.ParseUint(resp.Header.Get("X-Message-Id"), 10, 64)
		key, exact := relKeySpread(body, w.bodySpread())
		if perr != nil || key == "" || !exact {
			w.ledger.violate("bad record served", "life %d GET by %s: X-Message-Id %q, body of %d bytes %.60q is not what was sent",
				w.life, name, resp.Header.Get("X-Message-Id"), len(body), body)
			if key == "" {
				return resp.StatusCode
			}
		}
		if perr == nil {
			w.inOrder("consumer", name, key, id)
		}
		w.pops.Add(1)
		w.ledger.pop(key, relPop{life: w.life, id: id, by: name})
	case http.StatusNoContent:
		w.ledger.status("GET 204")
		if len(body) != 0 {
			w.ledger.violate("unexpected status", "life %d GET by %s: 204 with a body %q", w.life, name, body)
		}
	default:
		w.ledger.status(fmt.Sprintf("GET %d %s", resp.StatusCode, relErrCode(body)))
		if !w.cut.Load() && !w.tolerate[resp.StatusCode] {
			w.ledger.violate("unexpected status", "life %d GET by %s: %d %s", w.life, name, resp.StatusCode, bytes.TrimSpace(body))
		}
	}
	return resp.StatusCode
}

// consumeUntil GETs (with ?wait=wait when > 0) until stop or cut, or until
// done, given the number of 204s in a row so far, returns true.
func (w *relWorkers) consumeUntil(name string, wait int, done func(empty int) bool) {
	empty := 0
	for !w.stop.Load() && !w.cut.Load() && !done(empty) {
		switch w.consumeOne(name, wait) {
		case http.StatusOK:
			empty = 0
		case http.StatusNoContent:
			empty++
			if wait == 0 {
				time.Sleep(3 * time.Millisecond)
			}
		case 0:
			if !w.cut.Load() {
				time.Sleep(10 * time.Millisecond)
			}
		default:
			time.Sleep(3 * time.Millisecond)
		}
	}
}

// run starts producers and consumers and returns a function that stops
// them and waits (at most relClientLimit + 5 s).
func (w *relWorkers) run(t testing.TB, producers, consumers int) (wait func()) {
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Go(func() { w.produce(p) })
	}
	for c := 0; c < consumers; c++ {
		wait := 0
		if w.longPollLast && c == consumers-1 {
			wait = 1
		}
		wg.Go(func() { w.consumeUntil(fmt.Sprintf("c%d", c), wait, func(int) bool { return false }) })
	}
	return func() {
		w.stop.Store(true)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(proctest.ClientLimit + 5*time.Second):
			t.Fatalf("life %d: workers still busy %v after stop", w.life, proctest.ClientLimit+5*time.Second)
		}
	}
}

// relDrain pops with a few consumers until each sees a 204 (nothing
// produces meanwhile), within relDrainLimit, then checks with a long poll
// that the queue stays empty. It returns the number of 200s.
func relDrain(t testing.TB, w *relWorkers, consumers int) int {
	t.Helper()
	deadline := time.Now().Add(proctest.DrainLimit)
	var n atomic.Int64
	var late atomic.Bool
	var wg sync.WaitGroup
	for c := 0; c < consumers; c++ {
		wg.Go(func() {
			for {
				if time.Now().After(deadline) {
					late.Store(true)
					return
				}
				switch w.consumeOne(fmt.Sprintf("drain%d", c), 0) {
				case http.StatusOK:
					n.Add(1)
				case http.StatusNoContent:
					return
				default:
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	if late.Load() {
		t.Fatalf("life %d: queue not drained within %v", w.life, proctest.DrainLimit)
	}
	if st := w.consumeOne("drain-check", 1); st != http.StatusNoContent {
		t.Errorf("life %d: after the drain a long poll answered %d, want 204", w.life, st)
	}
	return int(n.Load())
}

// relFigures sums up a ledger after its final drain.
type relFigures struct {
	acked, unknownPosts, refusedPosts int
	popped, poppedTwice               int
	lost                              int // acked, never popped, not explained by a cut GET
	cutTaken                          int // acked, never popped, possibly taken by a cut GET
	recoveredUnacked                  int // popped although its POST got no answer
	refusedPopped                     int // popped although its POST was refused
	cutGets                           int
	// duplicates: keyed retries answered 200 with the earlier id.
	duplicates int
	// batches POSTed; of those without an answer, how many came back
	// whole after the restart (none may come back in part).
	batches, batchesUnknown, batchesRecovered int
	// lostAge is, per lost message, how long before its life was cut it
	// was acknowledged (for the interval mode's window).
	lostAge []time.Duration
}

// relCheckOpts relaxes the check for modes that promise less.
type relCheckOpts struct {
	allowLoss       bool // --fsync=never power loss: report, do not fail
	allowDoublePop  bool // cursor not durable (never/interval power loss, damaged cursor)
	allowIDDisorder bool
	// allowRefusedStored: the process died (power cut) after answering a
	// batch 5xx and before repairing the segment; the failed fsync may
	// have reached the disk anyway, so the message may be there.
	allowRefusedStored bool
	reportViolations   bool // print violations even when allowed
	// undrained: the last drain did not finish, so a message never popped
	// may still be queued; lost messages cannot be told and are left out.
	undrained bool
}

// check compares what was popped with what was acked and reports every
// broken promise with t.Errorf (unless relaxed by o).
func (l *relLedger) check(t testing.TB, o relCheckOpts) relFigures {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var f relFigures
	f.cutGets = len(l.cutGets)
	f.duplicates = l.statuses["POST keyed 200 (duplicate)"]
	type span struct{ lo, hi uint64 }
	acks, popsBy := map[int]*span{}, map[int]*span{}
	widen := func(m map[int]*span, life int, id uint64) {
		if s := m[life]; s == nil {
			m[life] = &span{id, id}
		} else {
			s.lo, s.hi = min(s.lo, id), max(s.hi, id)
		}
	}
	lastLife := 0
	for _, p := range l.posts {
		lastLife = max(lastLife, p.life)
		switch p.outcome {
		case relAcked:
			f.acked++
			if p.status != http.StatusOK { // a 200 is a keyed retry's earlier id
				widen(acks, p.life, p.id)
			}
		case relUnknown:
			f.unknownPosts++
		case relRefused:
			f.refusedPosts++
		}
	}
	var soft []string // violations that o allows
	for key, ps := range l.pops {
		f.popped += len(ps)
		for _, p := range ps {
			lastLife = max(lastLife, p.life)
			widen(popsBy, p.life, p.id)
		}
		if len(ps) > 1 {
			f.poppedTwice++
			var where []string
			for _, p := range ps {
				where = append(where, fmt.Sprintf("id %d in life %d by %s", p.id, p.life, p.by))
			}
			post := "never posted"
			if a := l.posts[key]; a != nil {
				post = fmt.Sprintf("POST in life %d: %s id %d", a.life, a.what, a.id)
			}
			msg := fmt.Sprintf("%q (%s) popped %d times: %s", key, post, len(ps), strings.Join(where, "; "))
			if o.allowDoublePop {
				soft = append(soft, "popped twice: "+msg)
			} else {
				l.violateLocked("popped twice", "%s", msg)
			}
		}
		switch a := l.posts[key]; {
		case a == nil:
			l.violateLocked("popped a body never posted", "%q popped as id %d in life %d", key, ps[0].id, ps[0].life)
		case a.outcome == relUnknown:
			f.recoveredUnacked++
		case a.outcome == relRefused && o.allowRefusedStored:
			f.refusedPopped++
			soft = append(soft, fmt.Sprintf("stored despite a %d: %q in life %d, popped as id %d in life %d", a.status, key, a.life, ps[0].id, ps[0].life))
		case a.outcome == relRefused:
			f.refusedPopped++
			l.violateLocked("popped a message whose POST was refused (a failed batch was stored)",
				"%q answered %d in life %d, popped as id %d in life %d", key, a.status, a.life, ps[0].id, ps[0].life)
		}
	}
	// A batch is all or nothing, also when a kill cut its write short: of a
	// batch, either every body was stored or none. A stored body can be
	// missing from the pops only if a GET cut by a kill took it (in the
	// batch's life or later), so a batch with some bodies popped is
	// broken when more are missing than there were such GETs.
	for _, b := range l.batches {
		f.batches++
		if b.outcome == relUnknown {
			f.batchesUnknown++
		}
		popped := 0
		poppedIn := map[int]int{} // life -> bodies of the batch popped in it
		for _, k := range b.keys {
			if len(l.pops[k]) > 0 {
				popped++
				poppedIn[l.pops[k][0].life]++
			}
		}
		missing := len(b.keys) - popped
		if popped > 0 && b.outcome == relUnknown && missing == 0 {
			f.batchesRecovered++
		}
		if popped == 0 || missing == 0 || o.undrained {
			continue
		}
		cuts := 0
		for _, g := range l.cutGets {
			if g.life >= b.life {
				cuts++
			}
		}
		if missing > cuts {
			msg := fmt.Sprintf("batch %s.. of %d (life %d, outcome %d): %d popped (by life: %v), %d missing, only %d GETs cut since",
				b.keys[0], len(b.keys), b.life, b.outcome, popped, poppedIn, missing, cuts)
			if o.allowLoss {
				// Without fsync a batch is readable before it is synced:
				// consumers can pop part of it before a power cut loses
				// the rest (the lives printed show when).
				soft = append(soft, "batch partly stored: "+msg)
			} else {
				l.violateLocked("batch partly stored", "%s", msg)
			}
		}
	}
	// Ids go up across restarts.
	for _, k := range []struct {
		name string
		m    map[int]*span
	}{{"acked", acks}, {"popped", popsBy}} {
		var prev *span
		prevLife := -1
		for life := 0; life <= lastLife; life++ {
			s := k.m[life]
			if s == nil {
				continue
			}
			if prev != nil && s.lo <= prev.hi {
				msg := fmt.Sprintf("%s ids of life %d start at %d, not above %d (life %d)", k.name, life, s.lo, prev.hi, prevLife)
				if o.allowIDDisorder || (k.name == "popped" && o.allowDoublePop) {
					soft = append(soft, "ids not increasing across restarts: "+msg)
				} else {
					l.violateLocked("ids not increasing across restarts", "%s", msg)
				}
			}
			prev, prevLife = s, life
		}
	}
	// Acked bodies never popped: each needs a distinct cut GET that could
	// have taken it (same or later life, id above what that life had popped
	// before the GET, below everything popped in later lives).
	minLater := make([]uint64, lastLife+2)
	minLater[lastLife+1] = math.MaxUint64
	for life := lastLife; life >= 0; life-- {
		minLater[life] = minLater[life+1]
		if s := popsBy[life+1]; s != nil {
			minLater[life] = min(minLater[life], s.lo)
		}
	}
	type lostRec struct {
		key string
		p   *relPost
	}
	var missing []lostRec
	for key, p := range l.posts {
		if !o.undrained && p.outcome == relAcked && len(l.pops[key]) == 0 {
			missing = append(missing, lostRec{key, p})
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].p.id < missing[j].p.id })
	can := func(m lostRec, g relCutGet) bool {
		return g.life >= m.p.life && m.p.id > g.maxBefore && m.p.id < minLater[g.life]
	}
	matchOf := make([]int, len(l.cutGets))
	for i := range matchOf {
		matchOf[i] = -1
	}
	var try func(i int, seen []bool) bool
	try = func(i int, seen []bool) bool {
		for g := range l.cutGets {
			if seen[g] || !can(missing[i], l.cutGets[g]) {
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
	for i, m := range missing {
		if i < 500 && try(i, make([]bool, len(l.cutGets))) {
			f.cutTaken++
			continue
		}
		f.lost++
		if at, ok := l.cutAt[m.p.life]; ok {
			f.lostAge = append(f.lostAge, at.Sub(m.p.at))
		}
		msg := fmt.Sprintf("%q acked as id %d in life %d never popped (highest id popped in that life %d, lowest popped later %s; id-1 %s, id+1 %s; GETs cut in life >= %d: %s)",
			m.key, m.p.id, m.p.life, l.maxPopped[m.p.life], relFmtID(minLater[m.p.life]), l.fateLocked(m.p.id-1), l.fateLocked(m.p.id+1),
			m.p.life, relCutSummary(l.cutGets, m.p.life))
		if o.allowLoss {
			soft = append(soft, "acked lost: "+msg)
		} else {
			l.violateLocked("acked message lost", "%s", msg)
		}
	}
	var kinds []string
	for k := range l.violations {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		vs := l.violations[k]
		if len(vs) > relMaxViolation {
			vs = append(vs[:relMaxViolation:relMaxViolation], fmt.Sprintf("... %d in all", len(l.violations[k])))
		}
		t.Errorf("%s: %d time(s):\n  %s", k, len(l.violations[k]), strings.Join(vs, "\n  "))
	}
	if o.reportViolations && len(soft) > 0 {
		if len(soft) > 10 {
			soft = append(soft[:10:10], fmt.Sprintf("... %d in all", len(soft)))
		}
		t.Logf("allowed in this mode:\n  %s", strings.Join(soft, "\n  "))
	}
	return f
}

// fateLocked says what became of the body with this id, for reports.
func (l *relLedger) fateLocked(id uint64) string {
	key, ok := l.byID[id]
	if !ok {
		return "unknown"
	}
	var lives []string
	for _, p := range l.pops[key] {
		lives = append(lives, strconv.Itoa(p.life))
	}
	if len(lives) == 0 {
		return "not popped"
	}
	return "popped in life " + strings.Join(lives, ",")
}

// relMaxViolation is how many violations of one kind check prints.
const relMaxViolation = 20

// relCutSummary lists the cut GETs of life fromLife and later, for reports.
func relCutSummary(gs []relCutGet, fromLife int) string {
	var out []string
	for _, g := range gs {
		if g.life >= fromLife {
			out = append(out, fmt.Sprintf("life %d %s after id %d", g.life, g.by, g.maxBefore))
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

func relFmtID(id uint64) string {
	if id == math.MaxUint64 {
		return "none"
	}
	return strconv.FormatUint(id, 10)
}

// statusSummary returns the answer counts, sorted, for the log.
func (l *relLedger) statusSummary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, v := range l.statuses {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
