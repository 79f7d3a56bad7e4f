package client

import (
	"errors"
	"fmt"
	"time"
)

// Error is an error answer of the server: its HTTP status and the body
// {"error":CODE,"message":...}; RetryAfter is the Retry-After header (0 if
// absent). errors.Is(err, ErrQueueFull) and the like compare the Code.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

// Error returns "mqueue: STATUS CODE: message".
func (e *Error) Error() string {
	return fmt.Sprintf("mqueue: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is reports whether target is an *Error with the same Code (a sentinel).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code != "" && t.Code == e.Code
}

// Sentinel errors, one per stable code of the README's error table; compare
// with errors.Is.
var (
	ErrInvalidQueueName      = &Error{Code: "INVALID_QUEUE_NAME"}
	ErrInvalidQuery          = &Error{Code: "INVALID_QUERY"}
	ErrEmptyMessage          = &Error{Code: "EMPTY_MESSAGE"}
	ErrInvalidIdempotencyKey = &Error{Code: "INVALID_IDEMPOTENCY_KEY"}
	ErrInvalidLease          = &Error{Code: "INVALID_LEASE"}
	ErrInvalidReceipt        = &Error{Code: "INVALID_RECEIPT"}
	ErrInvalidBatch          = &Error{Code: "INVALID_BATCH"}
	ErrNotADLQ               = &Error{Code: "NOT_A_DLQ"}
	ErrUnauthorized          = &Error{Code: "UNAUTHORIZED"}
	ErrQueueNotFound         = &Error{Code: "QUEUE_NOT_FOUND"}
	ErrNotFound              = &Error{Code: "NOT_FOUND"}
	ErrMessageTooLarge       = &Error{Code: "MESSAGE_TOO_LARGE"}
	ErrBatchTooLarge         = &Error{Code: "BATCH_TOO_LARGE"}
	ErrLeaseExpired          = &Error{Code: "LEASE_EXPIRED"}
	ErrQueueFull             = &Error{Code: "QUEUE_FULL"}
	ErrTooManyQueues         = &Error{Code: "TOO_MANY_QUEUES"}
	ErrTooManyInFlight       = &Error{Code: "TOO_MANY_IN_FLIGHT"}
	ErrWriteFailed           = &Error{Code: "WRITE_FAILED"}
	ErrInternal              = &Error{Code: "INTERNAL"}
	ErrShuttingDown          = &Error{Code: "SHUTTING_DOWN"}
	ErrOverloaded            = &Error{Code: "OVERLOADED"}
	ErrNotReady              = &Error{Code: "NOT_READY"}
	ErrDiskFull              = &Error{Code: "DISK_FULL"}
)

// IsRetryable reports whether err is worth retrying later: a 429 or 503
// answer (the request did nothing), or 502/504 from a proxy. A network
// error is not an *Error and is not judged here (whether it is safe to
// retry depends on the request; see the package doc).
func IsRetryable(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Status {
	case 429, 502, 503, 504:
		return true
	}
	return false
}
