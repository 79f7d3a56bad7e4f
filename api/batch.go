package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	MaxIdempotencyKey = 128
	// MaxDelaySeconds is the largest delay a message (or a nack) may ask for.
	MaxDelaySeconds = 604800
	// MaxLeaseSeconds is the longest lease (12 hours, as SQS's visibility
	// timeout).
	MaxLeaseSeconds = 43200
)

// batchRequest is the body of POST /api/queue/{name}/batch.
type batchRequest struct {
	Messages []batchItem `json:"messages"`
}

// batchItem is one message of a batch POST: exactly one of Body (text) and
// BodyBase64 (bytes); TTL and Delay in seconds. Pointers tell absent from
// empty; the numbers stay raw so that "5" or 5.0 is refused, not coerced.
type batchItem struct {
	Body       *string         `json:"body"`
	BodyBase64 *string         `json:"body_base64"`
	TTL        json.RawMessage `json:"ttl"`
	Delay      json.RawMessage `json:"delay"`
}

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
	msgs, ok := s.readBatch(c)
	if !ok {
		return
	}
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
// or INVALID_DELAY.
func (s *Server) readBatch(c *gin.Context) ([]engine.BatchMessage, bool) {
	r := c.Request
	if r.ContentLength > MaxBatchBytes {
		batchTooLarge(c)
		return nil, false
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBatchBytes+1))
	if err != nil {
		s.bodyError(c, err)
		return nil, false
	}
	if len(raw) > MaxBatchBytes {
		batchTooLarge(c)
		return nil, false
	}
	var req batchRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		invalidBatch(c, "the body is not a batch: "+jsonProblem(err))
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		invalidBatch(c, "the body holds more than one JSON value")
		return nil, false
	}
	switch n := len(req.Messages); {
	case n == 0:
		invalidBatch(c, `a batch needs "messages" with at least one message`)
		return nil, false
	case n > MaxBatchMessages:
		batchTooLarge(c)
		return nil, false
	}
	msgs := make([]engine.BatchMessage, len(req.Messages))
	for i := range req.Messages {
		m := &req.Messages[i]
		var body []byte
		switch {
		case (m.Body == nil) == (m.BodyBase64 == nil):
			invalidBatch(c, fmt.Sprintf(`message %d: give exactly one of "body" and "body_base64"`, i))
			return nil, false
		case m.Body != nil:
			body = []byte(*m.Body)
		default:
			b, err := base64.StdEncoding.DecodeString(*m.BodyBase64)
			if err != nil {
				invalidBatch(c, fmt.Sprintf(`message %d: "body_base64" is not standard base64`, i))
				return nil, false
			}
			body = b
		}
		if len(body) == 0 {
			abortError(c, http.StatusBadRequest, CodeEmptyMessage, fmt.Sprintf("message %d: a message needs at least one byte", i))
			return nil, false
		}
		if int64(len(body)) > s.cfg.MaxMessageBytes {
			abortError(c, http.StatusRequestEntityTooLarge, CodeTooLarge,
				fmt.Sprintf("message %d: a message is at most %d bytes", i, s.cfg.MaxMessageBytes))
			return nil, false
		}
		ttl, ok := jsonSeconds(m.TTL, MaxTTLSeconds)
		if !ok {
			abortError(c, http.StatusBadRequest, CodeInvalidTTL, fmt.Sprintf("message %d: ttl must be an integer number of seconds in 0..%d", i, MaxTTLSeconds))
			return nil, false
		}
		delay, ok := jsonSeconds(m.Delay, MaxDelaySeconds)
		if !ok {
			abortError(c, http.StatusBadRequest, CodeInvalidDelay, fmt.Sprintf("message %d: delay must be an integer number of seconds in 0..%d", i, MaxDelaySeconds))
			return nil, false
		}
		msgs[i] = engine.BatchMessage{Body: body, TTL: time.Duration(ttl) * time.Second, Delay: time.Duration(delay) * time.Second}
	}
	return msgs, true
}

// jsonSeconds checks an optional JSON integer of seconds in 0..max: absent
// or null is 0; a string, a fraction, an exponent or a sign is refused.
func jsonSeconds(raw json.RawMessage, max uint64) (uint64, bool) {
	if raw == nil || string(raw) == "null" {
		return 0, true
	}
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil || v > max {
		return 0, false
	}
	return v, true
}

// jsonProblem says briefly what encoding/json found wrong, without echoing
// the body back.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String()))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	return err.Error() // e.g. json: unknown field "x"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	}
	return "string"
}

func batchTooLarge(c *gin.Context) {
	c.Header("Connection", "close") // the rest of the body may be unread
	abortError(c, http.StatusRequestEntityTooLarge, CodeBatchTooLarge,
		fmt.Sprintf("a batch is at most %d messages and %d bytes", MaxBatchMessages, MaxBatchBytes))
}

func invalidBatch(c *gin.Context, msg string) {
	abortError(c, http.StatusBadRequest, CodeInvalidBatch, msg)
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
	max := uint64(1)
	if q.Has("max") {
		if max, ok = uintParam(q, "max", MaxBatchMessages); !ok || max == 0 {
			abortError(c, http.StatusBadRequest, CodeInvalidMax, fmt.Sprintf("max must be an integer in 1..%d", MaxBatchMessages))
			return
		}
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
		bm := &out.Messages[i]
		bm.ID = m.ID
		bm.EnqueuedAt = m.EnqueuedAt.UnixMilli()
		if !m.ExpiresAt.IsZero() {
			bm.ExpiresAt = m.ExpiresAt.UnixMilli()
		}
		bm.DeliveryCount = m.DeliveryCount
		bm.Receipt = m.Receipt
		if m.Receipt != "" {
			bm.LeaseExpiresAt = m.LeaseExpiresAt.UnixMilli()
		}
		if utf8.Valid(m.Body) {
			s := string(m.Body)
			bm.Body = &s
		} else {
			s := base64.StdEncoding.EncodeToString(m.Body)
			bm.BodyBase64 = &s
		}
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
