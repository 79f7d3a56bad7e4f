package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqueue/mqueue/engine"
)

// Error codes, the stable "error" field of every error response.
const (
	CodeInvalidQueueName = "INVALID_QUEUE_NAME"
	CodeInvalidTTL       = "INVALID_TTL"
	CodeInvalidSync      = "INVALID_SYNC"
	CodeInvalidWait      = "INVALID_WAIT"
	CodeInvalidBody      = "INVALID_BODY"
	CodeInvalidQuery     = "INVALID_QUERY"
	CodeEmptyMessage     = "EMPTY_MESSAGE"
	CodeUnauthorized     = "UNAUTHORIZED"
	CodeNotFound         = "NOT_FOUND"
	CodeQueueNotFound    = "QUEUE_NOT_FOUND"
	CodeMethodNotAllowed = "METHOD_NOT_ALLOWED"
	CodeTooLarge         = "MESSAGE_TOO_LARGE"
	CodeQueueFull        = "QUEUE_FULL"
	CodeInternal         = "INTERNAL"
	CodeWriteFailed      = "WRITE_FAILED"
	CodeShuttingDown     = "SHUTTING_DOWN"
	CodeNotReady         = "NOT_READY"
	CodeDiskFull         = "DISK_FULL"
	CodeInvalidDelay     = "INVALID_DELAY"
	CodeInvalidMax       = "INVALID_MAX"
	CodeInvalidBatch     = "INVALID_BATCH"
	CodeBatchTooLarge    = "BATCH_TOO_LARGE"
	CodeInvalidKey       = "INVALID_IDEMPOTENCY_KEY"
	CodeInvalidLease     = "INVALID_LEASE"
	CodeInvalidReceipt   = "INVALID_RECEIPT"
	CodeLeaseExpired     = "LEASE_EXPIRED"
	CodeTooManyInFlight  = "TOO_MANY_IN_FLIGHT"
	CodeOverloaded       = "OVERLOADED"
	CodeTooManyQueues    = "TOO_MANY_QUEUES"
	// Queue administration (admin.go).
	CodeInvalidLimit = "INVALID_LIMIT"
	CodeInvalidAfter = "INVALID_AFTER"
	CodeInvalidFrom  = "INVALID_FROM"
	CodeNotDLQ       = "NOT_A_DLQ"
)

// ErrorBody is the JSON body of every error response. It is a plain value,
// safe to copy.
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// statusClientClosed is recorded (nginx's convention) when the client went
// away before it could be answered; nobody reads the response.
const statusClientClosed = 499

// retryAfter is the Retry-After of 503 and 429 answers, in seconds: behind
// LVS a retry most likely reaches another node.
const retryAfter = "1"

// abortError writes an error response and stops the handler chain.
func abortError(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, ErrorBody{Error: code, Message: msg})
}

// abortShuttingDown answers 503 SHUTTING_DOWN and closes the connection, so
// the client's retry opens a new one, which the load balancer sends elsewhere.
func abortShuttingDown(c *gin.Context) {
	c.Header("Retry-After", retryAfter)
	c.Header("Connection", "close")
	abortError(c, http.StatusServiceUnavailable, CodeShuttingDown, "the server is shutting down; retry on another node")
}

// engineError answers an error returned by the engine. Server-side failures
// are logged; their details (file names) stay out of the response.
func (s *Server) engineError(c *gin.Context, op, queue string, err error) {
	switch {
	case errors.Is(err, engine.ErrInvalidQueueName):
		abortError(c, http.StatusBadRequest, CodeInvalidQueueName, "queue names match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
	case errors.Is(err, engine.ErrInvalidKey), errors.Is(err, engine.ErrReservedKey):
		abortError(c, http.StatusBadRequest, CodeInvalidKey, fmt.Sprintf("Idempotency-Key must be one header of 1 to %d printable ASCII characters", MaxIdempotencyKey))
	case errors.Is(err, engine.ErrEmptyMessage):
		abortError(c, http.StatusBadRequest, CodeEmptyMessage, "a message needs at least one byte")
	case errors.Is(err, engine.ErrQueueFull):
		c.Header("Retry-After", retryAfter)
		abortError(c, http.StatusTooManyRequests, CodeQueueFull, "the queue holds its maximum number of messages")
	case errors.Is(err, engine.ErrTooManyQueues):
		c.Header("Retry-After", retryAfter)
		abortError(c, http.StatusTooManyRequests, CodeTooManyQueues, "the node holds --max-queues queues; existing queues keep working, a new one is refused")
	case errors.Is(err, engine.ErrDiskFull):
		abortError(c, 507, CodeDiskFull, "the disk quota is reached; the message was not stored")
	case errors.Is(err, engine.ErrLeaseExpired):
		abortError(c, http.StatusGone, CodeLeaseExpired, "no running lease has this receipt here: it was acked, ran out or was nacked, or it is another node's, from before a restart, or not a receipt")
	case errors.Is(err, engine.ErrTooManyInFlight):
		c.Header("Retry-After", retryAfter)
		abortError(c, http.StatusTooManyRequests, CodeTooManyInFlight, fmt.Sprintf("the queue holds %d leased or delayed messages; ack some, or dequeue without a lease", engine.MaxInFlight))
	case errors.Is(err, engine.ErrQueueNotFound):
		abortError(c, http.StatusNotFound, CodeQueueNotFound, "no queue named "+queue)
	case errors.Is(err, engine.ErrNotDLQ):
		abortError(c, http.StatusBadRequest, CodeNotDLQ, "only a dead-letter queue (a name ending in .dlq) can be redriven")
	case errors.Is(err, engine.ErrClosed):
		abortShuttingDown(c)
	case c.Request.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		c.AbortWithStatus(statusClientClosed)
	case errors.Is(err, engine.ErrWrite):
		s.log.ErrorContext(engine.RepeatingLog, "write failed", "op", op, "queue", queue, "err", err)
		abortError(c, http.StatusInternalServerError, CodeWriteFailed, "a write to disk failed; the request had no effect")
	default:
		s.log.ErrorContext(engine.RepeatingLog, "engine error", "op", op, "queue", queue, "err", err)
		abortError(c, http.StatusInternalServerError, CodeInternal, "internal error; see the server log")
	}
}
