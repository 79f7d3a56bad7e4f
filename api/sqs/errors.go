package sqs

import (
	"fmt"
	"net/http"
)

// Error is an SQS error reply. The JSON protocol sends it as
// {"__type":"com.amazonaws.sqs#<Type>","message":...} with the header
// x-amzn-query-error: <QueryCode>;Sender|Receiver; the query protocol as
// <ErrorResponse><Error><Type>Sender</Type><Code><QueryCode></Code>...
type Error struct {
	// Status is the HTTP status.
	Status int
	// Type is the JSON protocol's error shape name (the part after '#').
	Type string
	// QueryCode is the code of the query protocol and of the
	// x-amzn-query-error header (e.g. AWS.SimpleQueueService.NonExistentQueue).
	QueryCode string
	// Sender is true for client faults, false for server faults.
	Sender bool
	// Message says what was wrong, for a human.
	Message string
}

func (e *Error) Error() string { return e.QueryCode + ": " + e.Message }

// fault is "Sender" or "Receiver", as SQS names who is at fault.
func (e *Error) fault() string {
	if e.Sender {
		return "Sender"
	}
	return "Receiver"
}

// errorKind is one row of the table of SQS errors this server answers.
type errorKind struct {
	status    int
	typ       string
	queryCode string
	sender    bool
}

// The SQS errors answered here, with the JSON __type and query code that the
// AWS SDKs map to their typed errors.
var (
	kindNonExistentQueue    = errorKind{http.StatusBadRequest, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", true}
	kindQueueNameExists     = errorKind{http.StatusBadRequest, "QueueNameExists", "QueueAlreadyExists", true}
	kindInvalidAttrName     = errorKind{http.StatusBadRequest, "InvalidAttributeName", "InvalidAttributeName", true}
	kindInvalidAttrValue    = errorKind{http.StatusBadRequest, "InvalidAttributeValue", "InvalidAttributeValue", true}
	kindInvalidParameter    = errorKind{http.StatusBadRequest, "InvalidParameterValue", "InvalidParameterValue", true}
	kindMissingParameter    = errorKind{http.StatusBadRequest, "MissingParameter", "MissingParameter", true}
	kindInvalidAddress      = errorKind{http.StatusNotFound, "InvalidAddress", "InvalidAddress", true}
	kindReceiptInvalid      = errorKind{http.StatusBadRequest, "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", true}
	kindMessageNotInflight  = errorKind{http.StatusBadRequest, "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", true}
	kindTooManyEntries      = errorKind{http.StatusBadRequest, "TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", true}
	kindEmptyBatch          = errorKind{http.StatusBadRequest, "EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", true}
	kindBatchIDsNotDistinct = errorKind{http.StatusBadRequest, "BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", true}
	kindInvalidBatchEntryID = errorKind{http.StatusBadRequest, "InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", true}
	kindBatchTooLong        = errorKind{http.StatusBadRequest, "BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", true}
	kindInvalidMessage      = errorKind{http.StatusBadRequest, "InvalidMessageContents", "InvalidMessageContents", true}
	kindUnsupported         = errorKind{http.StatusBadRequest, "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", true}
	kindInvalidAction       = errorKind{http.StatusBadRequest, "InvalidAction", "InvalidAction", true}
	kindOverLimit           = errorKind{http.StatusForbidden, "OverLimit", "OverLimit", true}
	kindThrottled           = errorKind{http.StatusBadRequest, "RequestThrottled", "RequestThrottled", true}
	kindMissingAuth         = errorKind{http.StatusForbidden, "MissingAuthenticationToken", "MissingAuthenticationToken", true}
	kindIncompleteSignature = errorKind{http.StatusBadRequest, "IncompleteSignature", "IncompleteSignature", true}
	kindInvalidClientToken  = errorKind{http.StatusForbidden, "InvalidClientTokenId", "InvalidClientTokenId", true}
	kindSignatureMismatch   = errorKind{http.StatusForbidden, "SignatureDoesNotMatch", "SignatureDoesNotMatch", true}
	kindRequestExpired      = errorKind{http.StatusBadRequest, "RequestExpired", "RequestExpired", true}
	kindAccessDenied        = errorKind{http.StatusForbidden, "AccessDenied", "AccessDenied", true}
	kindInternal            = errorKind{http.StatusInternalServerError, "InternalError", "InternalError", false}
	kindUnavailable         = errorKind{http.StatusServiceUnavailable, "ServiceUnavailable", "ServiceUnavailable", false}
)

// newError builds the error of kind k with a message.
func newError(k errorKind, format string, args ...any) *Error {
	return &Error{Status: k.status, Type: k.typ, QueryCode: k.queryCode, Sender: k.sender, Message: fmt.Sprintf(format, args...)}
}
