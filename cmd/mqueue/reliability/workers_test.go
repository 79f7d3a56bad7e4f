package reliability

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// Load: the producers and consumers of a test, and the drain after the
// last life.

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
