package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqueue/mqueue/engine"
)

// defaultQueue is the queue of the unnamed routes.
const defaultQueue = "default"

// Constant header values, shared by every response to save an allocation
// each. Never append to them: nothing in net/http or gin does.
var (
	hdrJSON        = []string{"application/json; charset=utf-8"}
	hdrOctetStream = []string{"application/octet-stream"}
	hdrNoStore     = []string{"no-store"}
	hdrNoSniff     = []string{"nosniff"}
)

// queueName returns the validated queue of the request, "default" on the
// unnamed routes, or answers 400 INVALID_QUEUE_NAME. Nothing else looks at
// the name before this.
func queueName(c *gin.Context) (string, bool) {
	name := c.Param("name")
	if c.FullPath() == "/api/queue" {
		name = defaultQueue
	}
	if !engine.ValidQueueName(name) {
		abortError(c, http.StatusBadRequest, CodeInvalidQueueName,
			"queue names match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
		return "", false
	}
	return name, true
}

// queueAndQuery validates the queue name, then parses the query string; on
// failure the 400 is already answered.
func queueAndQuery(c *gin.Context) (string, url.Values, bool) {
	name, ok := queueName(c)
	if !ok {
		return "", nil, false
	}
	q, ok := queryParams(c)
	return name, q, ok
}

// queryParams parses the query string, or answers 400 INVALID_QUERY: a
// malformed pair (a bad escape, a ';') must not be silently dropped, which
// would turn "?ttl=%zz" into "no TTL", nor a repeated parameter silently
// read as its first value ("?ttl=5&ttl=abc").
func queryParams(c *gin.Context) (url.Values, bool) {
	q, problem := parseQuery(c.Request.URL.RawQuery)
	if problem != "" {
		abortError(c, http.StatusBadRequest, CodeInvalidQuery, problem)
		return nil, false
	}
	return q, true
}

// parseQuery parses a raw query string; a malformed one, or one that gives
// a parameter more than once, yields a problem for the 400 message.
func parseQuery(raw string) (url.Values, string) {
	if raw == "" {
		return nil, ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, "the query string is malformed"
	}
	for k, vs := range q {
		if len(vs) > 1 {
			if len(k) > 64 {
				k = k[:64]
			}
			return nil, fmt.Sprintf("the query parameter %q is given more than once", k)
		}
	}
	return q, ""
}

// uintParam parses an optional query parameter as an integer in 0..max;
// absent is 0. Signs, fractions, spaces and empty values are rejected.
func uintParam(q url.Values, key string, max uint64) (uint64, bool) {
	vs, ok := q[key]
	if !ok {
		return 0, true
	}
	n, err := strconv.ParseUint(vs[0], 10, 64)
	if err != nil || n > max {
		return 0, false
	}
	return n, true
}

// countParam parses an optional count in 1..max (def when absent), or
// answers 400 with code.
func countParam(c *gin.Context, q url.Values, key string, def, max uint64, code string) (uint64, bool) {
	n, ok := uintParam(q, key, max)
	if !ok || (q.Has(key) && n == 0) {
		abortError(c, http.StatusBadRequest, code, fmt.Sprintf("%s must be an integer in 1..%d", key, max))
		return 0, false
	}
	if !q.Has(key) {
		n = def
	}
	return n, true
}

// syncParam parses ?sync, or answers 400 INVALID_SYNC.
func syncParam(c *gin.Context, q url.Values) (sync, ok bool) {
	if sync, ok = boolParam(q, "sync"); !ok {
		abortError(c, http.StatusBadRequest, CodeInvalidSync, "sync must be 0, 1, true or false")
	}
	return sync, ok
}

// boolParam parses an optional 0/1/true/false query parameter.
func boolParam(q url.Values, key string) (val, ok bool) {
	vs, present := q[key]
	if !present {
		return false, true
	}
	switch v := vs[0]; {
	case v == "0", strings.EqualFold(v, "false"):
		return false, true
	case v == "1", strings.EqualFold(v, "true"):
		return true, true
	}
	return false, false
}

// enqueue serves POST /api/queue[/{name}].
func (s *Server) enqueue(c *gin.Context) {
	name, q, ok := queueAndQuery(c)
	if !ok {
		return
	}
	ttl, ok := uintParam(q, "ttl", MaxTTLSeconds)
	if !ok {
		abortError(c, http.StatusBadRequest, CodeInvalidTTL, "ttl must be an integer number of seconds in 0..315360000")
		return
	}
	sync, ok := syncParam(c, q)
	if !ok {
		return
	}
	delay, ok := delayParam(c, q)
	if !ok {
		return
	}
	key, ok := idempotencyKey(c)
	if !ok {
		return
	}
	body, held, ok := s.readBody(c)
	if !ok {
		return
	}
	defer s.release(held)
	id, err := s.eng.Load().Enqueue(c.Request.Context(), name, body, engine.EnqueueOptions{
		TTL:   time.Duration(ttl) * time.Second,
		Sync:  sync,
		Key:   key,
		Delay: time.Duration(delay) * time.Second,
	})
	status, err := storedStatus(err)
	if err != nil {
		s.engineError(c, "enqueue", name, err)
		return
	}

	// Hand-built JSON: the name is validated (no escaping needed) and this
	// is the hot path. The body is built as one string whose id digits are
	// also the X-Message-Id value: two allocations in all (the string and
	// the header's slice).
	var buf [128]byte
	out := append(buf[:0], `{"queue":"`...)
	out = append(out, name...)
	out = append(out, `","id":`...)
	idAt := len(out)
	out = strconv.AppendUint(out, id, 10)
	idEnd := len(out)
	out = append(out, '}')
	resp := string(out)

	// net/http adds the Content-Length of so short a body itself.
	h := c.Writer.Header()
	h["X-Message-Id"] = []string{resp[idAt:idEnd]}
	h["Content-Type"] = hdrJSON
	c.Writer.WriteHeader(status)
	_, _ = c.Writer.WriteString(resp)
}

// dequeue serves GET /api/queue[/{name}].
func (s *Server) dequeue(c *gin.Context) {
	name, q, ok := queueAndQuery(c)
	if !ok {
		return
	}
	lease, ok := leaseParam(c, q)
	if !ok {
		return
	}
	wait, ok := waitParam(c, q)
	if !ok {
		return
	}
	ctx, done := s.pollContext(c, wait)
	defer done()
	msg, ok, err := s.eng.Load().Lease(ctx, name, time.Duration(wait)*time.Second, lease)
	if err != nil && !errors.Is(err, context.Canceled) {
		s.engineError(c, "dequeue", name, err)
		return
	}

	h := c.Writer.Header()
	// A GET that pops must never be answered from a cache.
	h["Cache-Control"] = hdrNoStore
	if err != nil || !ok {
		c.Writer.WriteHeader(http.StatusNoContent)
		return
	}
	setMessageHeaders(h, &msg)
	if msg.Receipt != "" || msg.DeliveryCount > 1 {
		setLeaseHeaders(h, &msg)
	}
	h["Content-Type"] = hdrOctetStream
	h["X-Content-Type-Options"] = hdrNoSniff
	c.Writer.WriteHeader(http.StatusOK)
	_, _ = c.Writer.Write(msg.Body)
}

// storedStatus is the status of an enqueue that returned err: 201, or 200
// with no error for a repeated Idempotency-Key (the id is the original's;
// nothing was stored).
func storedStatus(err error) (int, error) {
	if errors.Is(err, engine.ErrDuplicate) {
		return http.StatusOK, nil
	}
	return http.StatusCreated, err
}

// pollContext is the context of a dequeue: with a wait it is also cancelled
// when the drain grace ends (s.pollCtx), which wakes the long poll without
// cancelling anything else the request does. Call done when finished.
func (s *Server) pollContext(c *gin.Context, wait uint64) (ctx context.Context, done func()) {
	ctx = c.Request.Context()
	if wait == 0 {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.pollCtx, cancel)
	return ctx, func() { stop(); cancel() }
}

// waitParam parses ?wait (absent: 0), or answers 400 INVALID_WAIT: an
// integer number of seconds in 0..MaxWaitSeconds.
func waitParam(c *gin.Context, q url.Values) (uint64, bool) {
	wait, ok := uintParam(q, "wait", MaxWaitSeconds)
	if !ok {
		abortError(c, http.StatusBadRequest, CodeInvalidWait, fmt.Sprintf("wait must be an integer number of seconds in 0..%d", MaxWaitSeconds))
	}
	return wait, ok
}

// delayParam parses ?delay (absent: 0) of a POST or a nack, or answers
// 400 INVALID_DELAY: an integer number of seconds in 0..MaxDelaySeconds.
func delayParam(c *gin.Context, q url.Values) (uint64, bool) {
	delay, ok := uintParam(q, "delay", MaxDelaySeconds)
	if !ok {
		abortError(c, http.StatusBadRequest, CodeInvalidDelay, fmt.Sprintf("delay must be an integer number of seconds in 0..%d", MaxDelaySeconds))
	}
	return delay, ok
}

// leaseParam parses ?lease (absent: no lease), or answers 400
// INVALID_LEASE: an integer number of seconds in 1..MaxLeaseSeconds.
func leaseParam(c *gin.Context, q url.Values) (time.Duration, bool) {
	if !q.Has("lease") {
		return 0, true
	}
	n, ok := uintParam(q, "lease", MaxLeaseSeconds)
	if !ok || n == 0 {
		abortError(c, http.StatusBadRequest, CodeInvalidLease, fmt.Sprintf("lease must be an integer number of seconds in 1..%d", MaxLeaseSeconds))
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// setLeaseHeaders sets X-Delivery-Count, and X-Receipt and
// X-Lease-Expires-At of a leased message.
func setLeaseHeaders(h http.Header, msg *engine.Message) {
	h["X-Delivery-Count"] = []string{strconv.Itoa(msg.DeliveryCount)}
	if msg.Receipt != "" {
		h["X-Receipt"] = []string{msg.Receipt}
		h["X-Lease-Expires-At"] = []string{strconv.FormatInt(msg.LeaseExpiresAt.UnixMilli(), 10)}
	}
}

// idempotencyKey returns the request's Idempotency-Key ("" when absent),
// or answers 400 INVALID_IDEMPOTENCY_KEY: 1..128 printable ASCII bytes.
func idempotencyKey(c *gin.Context) (string, bool) {
	vs, ok := c.Request.Header["Idempotency-Key"]
	if !ok {
		return "", true
	}
	k := vs[0]
	valid := len(vs) == 1 && len(k) >= 1 && len(k) <= MaxIdempotencyKey
	for i := 0; valid && i < len(k); i++ {
		valid = k[i] >= 0x20 && k[i] <= 0x7e
	}
	if !valid {
		abortError(c, http.StatusBadRequest, CodeInvalidKey, "Idempotency-Key must be one header of 1 to 128 printable ASCII characters")
		return "", false
	}
	return k, true
}

// setMessageHeaders sets X-Message-Id, X-Enqueued-At, X-Expires-At (with a
// TTL) and Content-Length of a dequeued message with two allocations, not
// eight: the numbers are formatted into one string that the values slice,
// and the header slices share one backing array. Each value slice has its
// capacity capped at 1, so an append by anyone copies instead of clobbering
// its neighbour.
func setMessageHeaders(h http.Header, msg *engine.Message) {
	var buf [96]byte
	b := strconv.AppendUint(buf[:0], msg.ID, 10)
	idEnd := len(b)
	b = strconv.AppendInt(b, msg.EnqueuedAt.UnixMilli(), 10)
	encEnd := len(b)
	b = strconv.AppendInt(b, int64(len(msg.Body)), 10)
	lenEnd := len(b)
	expires := !msg.ExpiresAt.IsZero()
	if expires {
		b = strconv.AppendInt(b, msg.ExpiresAt.UnixMilli(), 10)
	}
	s := string(b)
	vals := make([]string, 4)
	vals[0], vals[1], vals[2] = s[:idEnd], s[idEnd:encEnd], s[encEnd:lenEnd]
	h["X-Message-Id"] = vals[0:1:1]
	h["X-Enqueued-At"] = vals[1:2:2]
	h["Content-Length"] = vals[2:3:3]
	if expires {
		vals[3] = s[lenEnd:]
		h["X-Expires-At"] = vals[3:4:4]
	}
}

// statsResponse is the body of GET /api/stats.
type statsResponse struct {
	Queues []engine.QueueStats `json:"queues"`
}

// allStats serves GET /api/stats.
func (s *Server) allStats(c *gin.Context) {
	if _, ok := queryParams(c); !ok {
		return
	}
	qs := s.eng.Load().AllStats()
	if qs == nil {
		qs = []engine.QueueStats{} // "queues":[] rather than null
	}
	c.JSON(http.StatusOK, statsResponse{Queues: qs})
}

// queueStats serves GET /api/stats/{name}.
func (s *Server) queueStats(c *gin.Context) {
	name, _, ok := queueAndQuery(c)
	if !ok {
		return
	}
	st, ok := s.eng.Load().Stats(name)
	if !ok {
		abortError(c, http.StatusNotFound, CodeQueueNotFound, "no queue named "+name)
		return
	}
	c.JSON(http.StatusOK, st)
}
