package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqueue/mqueue/engine"
)

// Limits of the administration routes.
const (
	// MaxListQueues is the largest page of GET /api/queues (?limit=N), and
	// its default.
	MaxListQueues = 1000
	// MaxPeek is the most messages one peek shows (?max=N).
	MaxPeek = 1000
	// DefaultPeek is a peek's max when none is given.
	DefaultPeek = 10
	// MaxRedrive is the largest ?max=N of a redrive; without it a redrive
	// moves every message visible in the DLQ when it starts.
	MaxRedrive = 100000
)

// listResponse is the body of GET /api/queues. Next, the name of the last
// queue listed, is set only when more follow: pass it as ?after=.
type listResponse struct {
	Queues []engine.QueueInfo `json:"queues"`
	Next   string             `json:"next,omitempty"`
}

// listQueues serves GET /api/queues?limit=N&after=NAME: queues sorted by
// name with their depth, in_flight and delayed, a page at a time.
func (s *Server) listQueues(c *gin.Context) {
	q, ok := queryParams(c)
	if !ok {
		return
	}
	limit, ok := countParam(c, q, "limit", MaxListQueues, MaxListQueues, CodeInvalidLimit)
	if !ok {
		return
	}
	after := q.Get("after")
	if q.Has("after") && !engine.ValidQueueName(after) {
		abortError(c, http.StatusBadRequest, CodeInvalidAfter, "after must be a queue name (the next of the previous page)")
		return
	}
	page, more := s.eng.Load().ListQueues(after, int(limit))
	out := listResponse{Queues: page}
	if out.Queues == nil {
		out.Queues = []engine.QueueInfo{}
	}
	if more {
		out.Next = page[len(page)-1].Name
	}
	c.JSON(http.StatusOK, out)
}

// deleteQueue serves DELETE /api/queue/{name}: 204 once the queue and its
// files are gone for good, 404 QUEUE_NOT_FOUND for an unknown queue.
func (s *Server) deleteQueue(c *gin.Context) {
	name, ok := queueName(c)
	if !ok {
		return
	}
	if err := s.eng.Load().DeleteQueue(name); err != nil {
		s.engineError(c, "delete queue", name, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// purgeQueue serves POST /api/queue/{name}/purge: 200 {"purged":N} once
// every current message is gone for good.
func (s *Server) purgeQueue(c *gin.Context) {
	name, ok := queueName(c)
	if !ok {
		return
	}
	n, err := s.eng.Load().Purge(name)
	if err != nil {
		s.engineError(c, "purge", name, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"purged": n})
}

// peekMessage is one message of a peek: a batch GET's message with its
// state, and the time it becomes visible (delayed) or its lease ends (in
// flight).
type peekMessage struct {
	batchMessage
	State     string `json:"state"`
	VisibleAt int64  `json:"visible_at,omitempty"`
}

// peekResponse is the body of a peek. Next is set when the page is full:
// pass it as ?from= for the next page.
type peekResponse struct {
	Messages []peekMessage `json:"messages"`
	Next     uint64        `json:"next,omitempty"`
}

// peekQueue serves GET /api/queue/{name}/peek?max=N&from=ID: up to N
// messages from id ID on, without taking them.
func (s *Server) peekQueue(c *gin.Context) {
	name, q, ok := queueAndQuery(c)
	if !ok {
		return
	}
	max, ok := countParam(c, q, "max", DefaultPeek, MaxPeek, CodeInvalidMax)
	if !ok {
		return
	}
	from, ok := uintParam(q, "from", 1<<63)
	if !ok || (q.Has("from") && from == 0) {
		abortError(c, http.StatusBadRequest, CodeInvalidFrom, "from must be a message id (an integer of 1 or more)")
		return
	}
	msgs, err := s.eng.Load().Peek(name, from, int(max))
	if err != nil {
		s.engineError(c, "peek", name, err)
		return
	}
	out := peekResponse{Messages: make([]peekMessage, len(msgs))}
	for i := range msgs {
		m := &msgs[i]
		out.Messages[i] = peekMessage{batchMessage: toBatchMessage(&m.Message), State: m.State, VisibleAt: unixMsOrZero(m.VisibleAt)}
	}
	if len(msgs) == int(max) {
		out.Next = msgs[len(msgs)-1].ID + 1
	}
	c.Writer.Header()["Cache-Control"] = hdrNoStore
	c.JSON(http.StatusOK, out)
}

// redrive serves POST /api/queue/{name}.dlq/redrive?max=N: moves up to N
// messages (default all visible ones) of the DLQ back to {name}, 200
// {"redriven":N}.
func (s *Server) redrive(c *gin.Context) {
	name, q, ok := queueAndQuery(c)
	if !ok {
		return
	}
	if !strings.HasSuffix(name, ".dlq") || name == ".dlq" {
		s.engineError(c, "redrive", name, engine.ErrNotDLQ)
		return
	}
	max, ok := countParam(c, q, "max", 0, MaxRedrive, CodeInvalidMax) // 0: all
	if !ok {
		return
	}
	n, err := s.eng.Load().Redrive(c.Request.Context(), name, int(max))
	if err != nil {
		if n > 0 {
			s.log.Warn("redrive stopped by an error; the messages moved so far stay moved", "queue", name, "redriven", n, "err", err)
		}
		s.engineError(c, "redrive", name, err)
		return
	}
	out := strconv.AppendInt([]byte(`{"redriven":`), int64(n), 10)
	c.Data(http.StatusOK, "application/json; charset=utf-8", append(out, '}'))
}

// unixMsOrZero is t in unix ms, 0 for the zero time (omitted in JSON).
func unixMsOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
