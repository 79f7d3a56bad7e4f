package reliability

// The ledger: what every client was told across the server's lives (each
// POST's outcome and id, each pop, each GET a kill cut short), checked
// after the last drain (check_test.go). The harness is in files by
// concern: ledger_test.go, check_test.go, workers_test.go (the load),
// bodies_test.go, and the process helpers of cmd/mqueue/proctest.

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

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
