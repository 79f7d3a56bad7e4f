package reliability

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
)

// Check: the ledger against what was drained, one check per invariant.

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
// broken promise with t.Errorf (unless relaxed by o): one check per
// invariant, each below.
func (l *relLedger) check(t testing.TB, o relCheckOpts) relFigures {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &relCheck{l: l, o: o, acks: map[int]*relSpan{}, popsBy: map[int]*relSpan{}}
	c.f.cutGets = len(l.cutGets)
	c.f.duplicates = l.statuses["POST keyed 200 (duplicate)"]
	c.countPosts()
	c.eachPopOnceAndPosted()
	c.batchesAllOrNothing()
	c.idsIncreaseAcrossRestarts()
	c.ackedArePopped()
	c.report(t)
	return c.f
}

// relSpan is the lowest and highest id seen in one life.
type relSpan struct{ lo, hi uint64 }

// relCheck is one run of relLedger.check, under the ledger's lock.
type relCheck struct {
	l        *relLedger
	o        relCheckOpts
	f        relFigures
	soft     []string         // violations that o allows
	acks     map[int]*relSpan // life -> ids acknowledged (201) in it
	popsBy   map[int]*relSpan // life -> ids popped in it
	lastLife int
}

// widen adds id to life's span in m.
func widen(m map[int]*relSpan, life int, id uint64) {
	if s := m[life]; s == nil {
		m[life] = &relSpan{id, id}
	} else {
		s.lo, s.hi = min(s.lo, id), max(s.hi, id)
	}
}

// allow records a violation that the mode allows, or reports it.
func (c *relCheck) allow(allowed bool, kind, msg string) {
	if allowed {
		c.soft = append(c.soft, kind+": "+msg)
		return
	}
	c.l.violateLocked(kind, "%s", msg)
}

// countPosts tallies the POSTs' outcomes and the acknowledged ids by life.
func (c *relCheck) countPosts() {
	for _, p := range c.l.posts {
		c.lastLife = max(c.lastLife, p.life)
		switch p.outcome {
		case relAcked:
			c.f.acked++
			if p.status != http.StatusOK { // a 200 is a keyed retry's earlier id
				widen(c.acks, p.life, p.id)
			}
		case relUnknown:
			c.f.unknownPosts++
		case relRefused:
			c.f.refusedPosts++
		}
	}
}

// eachPopOnceAndPosted: a body is popped at most once, only if it was
// posted, and never when its POST was refused.
func (c *relCheck) eachPopOnceAndPosted() {
	l, o, f := c.l, c.o, &c.f
	for key, ps := range l.pops {
		f.popped += len(ps)
		for _, p := range ps {
			c.lastLife = max(c.lastLife, p.life)
			widen(c.popsBy, p.life, p.id)
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
			c.allow(o.allowDoublePop, "popped twice", fmt.Sprintf("%q (%s) popped %d times: %s", key, post, len(ps), strings.Join(where, "; ")))
		}
		switch a := l.posts[key]; {
		case a == nil:
			l.violateLocked("popped a body never posted", "%q popped as id %d in life %d", key, ps[0].id, ps[0].life)
		case a.outcome == relUnknown:
			f.recoveredUnacked++
		case a.outcome == relRefused && o.allowRefusedStored:
			f.refusedPopped++
			c.soft = append(c.soft, fmt.Sprintf("stored despite a %d: %q in life %d, popped as id %d in life %d", a.status, key, a.life, ps[0].id, ps[0].life))
		case a.outcome == relRefused:
			f.refusedPopped++
			l.violateLocked("popped a message whose POST was refused (a failed batch was stored)",
				"%q answered %d in life %d, popped as id %d in life %d", key, a.status, a.life, ps[0].id, ps[0].life)
		}
	}
}

// batchesAllOrNothing: a batch is all or nothing, also when a kill cut its
// write short: of a batch, either every body was stored or none. A stored
// body can be missing from the pops only if a GET cut by a kill took it
// (in the batch's life or later), so a batch with some bodies popped is
// broken when more are missing than there were such GETs.
func (c *relCheck) batchesAllOrNothing() {
	l, o, f := c.l, c.o, &c.f
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
			// Without fsync a batch is readable before it is synced:
			// consumers can pop part of it before a power cut loses the
			// rest (the lives printed show when).
			c.allow(o.allowLoss, "batch partly stored", fmt.Sprintf("batch %s.. of %d (life %d, outcome %d): %d popped (by life: %v), %d missing, only %d GETs cut since",
				b.keys[0], len(b.keys), b.life, b.outcome, popped, poppedIn, missing, cuts))
		}
	}
}

// idsIncreaseAcrossRestarts: the ids acknowledged, and those popped, of a
// life are all above those of the lives before it.
func (c *relCheck) idsIncreaseAcrossRestarts() {
	for _, k := range []struct {
		name string
		m    map[int]*relSpan
	}{{"acked", c.acks}, {"popped", c.popsBy}} {
		var prev *relSpan
		prevLife := -1
		for life := 0; life <= c.lastLife; life++ {
			s := k.m[life]
			if s == nil {
				continue
			}
			if prev != nil && s.lo <= prev.hi {
				c.allow(c.o.allowIDDisorder || (k.name == "popped" && c.o.allowDoublePop), "ids not increasing across restarts",
					fmt.Sprintf("%s ids of life %d start at %d, not above %d (life %d)", k.name, life, s.lo, prev.hi, prevLife))
			}
			prev, prevLife = s, life
		}
	}
}

// ackedArePopped: every acknowledged body is popped, or taken by a GET
// that a kill cut (its answer lost): each missing one needs a distinct cut
// GET that could have taken it (same or later life, id above what that
// life had popped before the GET, below everything popped in later lives).
func (c *relCheck) ackedArePopped() {
	l, o, f := c.l, c.o, &c.f
	lastLife := c.lastLife
	minLater := make([]uint64, lastLife+2)
	minLater[lastLife+1] = math.MaxUint64
	for life := lastLife; life >= 0; life-- {
		minLater[life] = minLater[life+1]
		if s := c.popsBy[life+1]; s != nil {
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
			c.soft = append(c.soft, "acked lost: "+msg)
		} else {
			l.violateLocked("acked message lost", "%s", msg)
		}
	}
}

// report prints the violations, by kind, and those the mode allows.
func (c *relCheck) report(t testing.TB) {
	t.Helper()
	l := c.l
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
	if c.o.reportViolations && len(c.soft) > 0 {
		soft := c.soft
		if len(soft) > 10 {
			soft = append(soft[:10:10], fmt.Sprintf("... %d in all", len(soft)))
		}
		t.Logf("allowed in this mode:\n  %s", strings.Join(soft, "\n  "))
	}
}
