package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/mqueue/mqueue/engine"
)

// Limits of the batch routes (SPEC: at most 1000 messages / 10 MiB).
const (
	// MaxBatchMessages is the most messages one batch POST may carry and
	// one batch GET may ask for with ?max=N.
	MaxBatchMessages = 1000
	// MaxBatchBytes caps a batch POST's request body, and the message bytes
	// a batch GET takes (it stops once they reach it; one message is always
	// taken, so a response may pass it by one message).
	MaxBatchBytes = 10 << 20
	// MaxIdempotencyKey is the longest Idempotency-Key, in bytes.
	MaxIdempotencyKey = engine.MaxKeyLen
	// MaxDelaySeconds is the largest delay a message (or a nack) may ask for.
	MaxDelaySeconds = 604800
	// MaxLeaseSeconds is the longest lease (12 hours, as SQS's visibility
	// timeout).
	MaxLeaseSeconds = 43200
)

// enqueueBatch serves POST /api/queue/{name}/batch: every message stored by
// one group commit, or none (201 {"ids":[...]}).
func (s *Server) enqueueBatch(c *gin.Context) {
	name, q, ok := queueAndQuery(c)
	if !ok {
		return
	}
	if q.Has("ttl") || q.Has("delay") {
		abortError(c, http.StatusBadRequest, CodeInvalidQuery, "give ttl and delay per message in the batch body, not in the query")
		return
	}
	sync, ok := syncParam(c, q)
	if !ok {
		return
	}
	key, ok := idempotencyKey(c)
	if !ok {
		return
	}
	msgs, held, ok := s.readBatch(c)
	if !ok {
		return
	}
	defer s.release(held)
	first, n, err := s.eng.Load().EnqueueBatch(c.Request.Context(), name, msgs, engine.BatchOptions{Sync: sync, Key: key})
	status, err := storedStatus(err)
	if err != nil {
		s.engineError(c, "enqueue batch", name, err)
		return
	}
	out := make([]byte, 0, 8+n*8)
	out = append(out, `{"ids":[`...)
	for i := range n {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendUint(out, first+uint64(i), 10)
	}
	out = append(out, "]}"...)
	c.Data(status, "application/json; charset=utf-8", out)
}

// readBatch reads and checks a batch POST's body, or answers the error: 413
// BATCH_TOO_LARGE (over MaxBatchBytes or MaxBatchMessages), 413
// MESSAGE_TOO_LARGE, 400 INVALID_BATCH, EMPTY_MESSAGE, INVALID_TTL,
// INVALID_DELAY or INVALID_BODY, or 503 OVERLOADED. The body is read into
// pooled chunks (memory follows the bytes that arrived) and parsed by the
// strict batchParser; the caller releases held once the request is done.
func (s *Server) readBatch(c *gin.Context) (msgs []engine.BatchMessage, held int64, ok bool) {
	r := c.Request
	if r.ContentLength > MaxBatchBytes {
		batchTooLarge(c)
		return nil, 0, false
	}
	var b chunks
	defer b.free()
	outcome, err := b.read(s, r.Body, r.ContentLength, MaxBatchBytes)
	if outcome != readDone {
		s.release(b.held)
		s.bodyRefused(c, outcome, err, func() { batchTooLarge(c) })
		return nil, 0, false
	}
	if r.ContentLength > 0 {
		_ = r.Body.Close() // net/http need not drain it again
	}
	// Until the request ends, the chunks' reservation stands for the
	// messages decoded from them.
	held = b.held
	fail := func() ([]engine.BatchMessage, int64, bool) {
		s.release(held)
		return nil, 0, false
	}
	var raw []byte
	switch len(b.list) {
	case 0:
	case 1:
		raw = b.list[0][:b.n] // every message body is copied out of it
	default:
		raw = b.bytes()
	}
	items, problem, tooMany := parseBatch(raw)
	switch {
	case tooMany:
		batchTooLarge(c)
		return fail()
	case problem != "":
		invalidBatch(c, "the body is not a batch: "+problem)
		return fail()
	case len(items) == 0:
		invalidBatch(c, `a batch needs "messages" with at least one message`)
		return fail()
	}
	msgs = make([]engine.BatchMessage, len(items))
	for i := range items {
		m := &items[i]
		var body []byte
		switch {
		case (m.body == nil) == (m.bodyBase64 == nil):
			invalidBatch(c, fmt.Sprintf(`message %d: give exactly one of "body" and "body_base64"`, i))
			return fail()
		case m.body != nil && m.bodyOwned:
			body = m.body
		case m.body != nil:
			body = bytes.Clone(m.body)
		default:
			dst := make([]byte, base64.StdEncoding.DecodedLen(len(m.bodyBase64)))
			n, err := base64.StdEncoding.Decode(dst, m.bodyBase64)
			if err != nil {
				invalidBatch(c, fmt.Sprintf(`message %d: "body_base64" is not standard base64`, i))
				return fail()
			}
			body = dst[:n]
		}
		if len(body) == 0 {
			abortError(c, http.StatusBadRequest, CodeEmptyMessage, fmt.Sprintf("message %d: a message needs at least one byte", i))
			return fail()
		}
		if int64(len(body)) > s.cfg.MaxMessageBytes {
			abortError(c, http.StatusRequestEntityTooLarge, CodeTooLarge,
				fmt.Sprintf("message %d: a message is at most %d bytes", i, s.cfg.MaxMessageBytes))
			return fail()
		}
		ttl, ok := jsonSeconds(m.ttl, MaxTTLSeconds)
		if !ok {
			abortError(c, http.StatusBadRequest, CodeInvalidTTL, fmt.Sprintf("message %d: ttl must be an integer number of seconds in 0..%d", i, MaxTTLSeconds))
			return fail()
		}
		delay, ok := jsonSeconds(m.delay, MaxDelaySeconds)
		if !ok {
			abortError(c, http.StatusBadRequest, CodeInvalidDelay, fmt.Sprintf("message %d: delay must be an integer number of seconds in 0..%d", i, MaxDelaySeconds))
			return fail()
		}
		msgs[i] = engine.BatchMessage{Body: body, TTL: time.Duration(ttl) * time.Second, Delay: time.Duration(delay) * time.Second}
	}
	return msgs, held, true
}

// jsonSeconds checks an optional JSON integer of seconds in 0..max: absent
// or null is 0; a string, a fraction, an exponent or a sign is refused.
func jsonSeconds(raw []byte, max uint64) (uint64, bool) {
	if raw == nil || string(raw) == "null" {
		return 0, true
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

func batchTooLarge(c *gin.Context) {
	c.Header("Connection", "close") // the rest of the body may be unread
	abortError(c, http.StatusRequestEntityTooLarge, CodeBatchTooLarge,
		fmt.Sprintf("a batch is at most %d messages and %d bytes", MaxBatchMessages, MaxBatchBytes))
}

func invalidBatch(c *gin.Context, msg string) {
	abortError(c, http.StatusBadRequest, CodeInvalidBatch, msg)
}

// toBatchMessage converts a dequeued (or peeked) message.
func toBatchMessage(m *engine.Message) batchMessage {
	bm := batchMessage{ID: m.ID, EnqueuedAt: m.EnqueuedAt.UnixMilli(), DeliveryCount: m.DeliveryCount, Receipt: m.Receipt}
	bm.ExpiresAt = unixMsOrZero(m.ExpiresAt)
	bm.LeaseExpiresAt = unixMsOrZero(m.LeaseExpiresAt)
	if utf8.Valid(m.Body) {
		s := string(m.Body)
		bm.Body = &s
	} else {
		s := base64.StdEncoding.EncodeToString(m.Body)
		bm.BodyBase64 = &s
	}
	return bm
}

// batchMessage is one message of a batch GET's response.
type batchMessage struct {
	ID            uint64  `json:"id"`
	Body          *string `json:"body,omitempty"`
	BodyBase64    *string `json:"body_base64,omitempty"`
	EnqueuedAt    int64   `json:"enqueued_at"`
	ExpiresAt     int64   `json:"expires_at,omitempty"`
	DeliveryCount int     `json:"delivery_count"`
	// Receipt and LeaseExpiresAt are set for a leased message only.
	Receipt        string `json:"receipt,omitempty"`
	LeaseExpiresAt int64  `json:"lease_expires_at,omitempty"`
}

// dequeueBatch serves GET /api/queue/{name}/batch?max=N: up to N messages
// popped by one cursor write (200 {"messages":[...]}), 204 when none.
func (s *Server) dequeueBatch(c *gin.Context) {
	name, q, ok := queueAndQuery(c)
	if !ok {
		return
	}
	lease, ok := leaseParam(c, q)
	if !ok {
		return
	}
	max, ok := countParam(c, q, "max", 1, MaxBatchMessages, CodeInvalidMax)
	if !ok {
		return
	}
	wait, ok := waitParam(c, q)
	if !ok {
		return
	}
	ctx, done := s.pollContext(c, wait)
	defer done()
	msgs, err := s.eng.Load().LeaseBatch(ctx, name, int(max), MaxBatchBytes, time.Duration(wait)*time.Second, lease)
	if err != nil {
		s.engineError(c, "dequeue batch", name, err)
		return
	}
	c.Writer.Header()["Cache-Control"] = hdrNoStore
	if len(msgs) == 0 {
		c.Writer.WriteHeader(http.StatusNoContent)
		return
	}
	out := struct {
		Messages []batchMessage `json:"messages"`
	}{make([]batchMessage, len(msgs))}
	for i := range msgs {
		m := &msgs[i]
		out.Messages[i] = toBatchMessage(m)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		// Unreachable for these types; the messages are popped, so say so.
		s.log.Error("encoding a batch response; its messages were popped", "queue", name, "first_id", msgs[0].ID, "count", len(msgs), "err", err)
		abortError(c, http.StatusInternalServerError, CodeInternal, "internal error; see the server log")
		return
	}
	c.Data(http.StatusOK, "application/json; charset=utf-8", buf.Bytes())
}
