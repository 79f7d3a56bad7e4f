package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/mqueue/mqueue/engine"
)

// Limits of the message actions, as SQS has them.
const (
	maxBatchEntries   = 10
	maxDelaySeconds   = 900
	maxVisibility     = 43200
	maxWaitSeconds    = 20
	maxReceiveMessage = 10
)

// messageID is the MessageId of message id: UUID-shaped, as clients
// expect, and the same on every delivery.
func messageID(id uint64) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", id) // ids past 2^48 widen the last group
}

// validBody reports whether body holds only the characters SQS accepts:
// #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
func validBody(body string) bool {
	for i := 0; i < len(body); {
		r, n := utf8.DecodeRuneInString(body[i:])
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		switch {
		case r == 0x9, r == 0xA, r == 0xD, r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
		i += n
	}
	return true
}

// maxMessageSize is the largest message queue m takes (its
// MaximumMessageSize, at most the server's --max-message-bytes).
func (s *Service) maxMessageSize(m *queueMeta) int64 {
	if n := m.attrInt("MaximumMessageSize"); n > 0 && n < s.cfg.MaxMessageBytes {
		return n
	}
	return s.cfg.MaxMessageBytes
}

// sendResult is the output of SendMessage, and the success entry of
// SendMessageBatch.
type sendResult struct {
	Id                     string `json:",omitempty"` //nolint:revive
	MessageId              string //nolint:revive
	MD5OfMessageBody       string
	MD5OfMessageAttributes string `json:",omitempty"`
}

// batchFailure is a failed entry of a batch action.
type batchFailure struct {
	Id          string //nolint:revive
	SenderFault bool
	Code        string
	Message     string
}

// prepared is one message of a send, checked and ready to store.
type prepared struct {
	stored []byte
	delay  time.Duration
	res    sendResult
}

// prepare checks one message of a send against queue m.
func (s *Service) prepare(m *queueMeta, body *string, delay *int64, attrs map[string]messageAttribute, dedupID string) (*prepared, *Error) {
	if body == nil {
		return nil, newError(kindMissingParameter, "the request must contain the parameter MessageBody")
	}
	if *body == "" {
		return nil, newError(kindInvalidParameter, "the message body must be at least one character")
	}
	if dedupID != "" {
		return nil, newError(kindInvalidParameter, "MessageDeduplicationId is only for FIFO queues, which mqueue does not have")
	}
	if !validBody(*body) {
		return nil, newError(kindInvalidMessage, "the message body holds characters outside those SQS allows (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF)")
	}
	if err := checkMessageAttributes(attrs); err != nil {
		return nil, err
	}
	if size, max := int64(len(*body)+attributesSize(attrs)), s.maxMessageSize(m); size > max {
		return nil, newError(kindInvalidParameter, "the message is %d bytes with its attributes; this queue takes at most %d", size, max)
	}
	d := m.attrInt("DelaySeconds")
	if delay != nil {
		if *delay < 0 || *delay > maxDelaySeconds {
			return nil, newError(kindInvalidParameter, "DelaySeconds must be in 0..%d", maxDelaySeconds)
		}
		d = *delay
	}
	b := []byte(*body)
	stored, err := wrapBody(b, attrs)
	if err != nil {
		return nil, newError(kindInvalidParameter, "message attributes: %v", err)
	}
	return &prepared{
		stored: stored,
		delay:  time.Duration(d) * time.Second,
		res:    sendResult{MD5OfMessageBody: md5Hex(b), MD5OfMessageAttributes: md5OfAttributes(attrs)},
	}, nil
}

// retention is how long a message of queue m lives.
func retention(m *queueMeta) time.Duration {
	return time.Duration(m.attrInt("MessageRetentionPeriod")) * time.Second
}

// sendMessage is SendMessage: it answers once the message is committed
// (fsynced under --fsync always), as the native POST does.
func (s *Service) sendMessage(rq *request, name string, in *sendMessageInput) (any, *Error) {
	m, aerr := s.meta(rq.eng, name)
	if aerr != nil {
		return nil, aerr
	}
	p, aerr := s.prepare(m, in.MessageBody, in.DelaySeconds, in.MessageAttributes, in.MessageDeduplicationId)
	if aerr != nil {
		return nil, aerr
	}
	id, err := rq.eng.Enqueue(rq.ctx, name, p.stored, engine.EnqueueOptions{TTL: retention(m), Delay: p.delay})
	if err != nil {
		return nil, s.engineErr("send message", name, err)
	}
	p.res.MessageId = messageID(id)
	return p.res, nil
}

// checkBatch checks the entry count and ids of a batch action.
func checkBatch(ids []string) *Error {
	if len(ids) == 0 {
		return newError(kindEmptyBatch, "there should be at least one entry in the request")
	}
	if len(ids) > maxBatchEntries {
		return newError(kindTooManyEntries, "at most %d entries a batch, not %d", maxBatchEntries, len(ids))
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !validEntryID(id) {
			return newError(kindInvalidBatchEntryID, "batch entry id %q: 1-80 letters, digits, '-' or '_'", id)
		}
		if seen[id] {
			return newError(kindBatchIDsNotDistinct, "batch entry id %s is used twice", id)
		}
		seen[id] = true
	}
	return nil
}

func validEntryID(id string) bool {
	if id == "" || len(id) > 80 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// batchOutput is the output of the batch actions.
type batchOutput[T any] struct {
	Successful []T
	Failed     []batchFailure
}

// failure is the failed entry id for e.
func failure(id string, e *Error) batchFailure {
	return batchFailure{Id: id, SenderFault: e.Sender, Code: e.QueryCode, Message: e.Message}
}

// sendMessageBatch is SendMessageBatch: the entries that pass their checks
// are stored together, in one commit, in entry order; the others are
// answered as failed.
func (s *Service) sendMessageBatch(rq *request, name string, in *sendMessageBatchInput) (any, *Error) {
	ids := make([]string, len(in.Entries))
	total := 0
	for i, e := range in.Entries {
		ids[i] = e.Id
		if e.MessageBody != nil {
			total += len(*e.MessageBody)
		}
		total += attributesSize(e.MessageAttributes)
	}
	if aerr := checkBatch(ids); aerr != nil {
		return nil, aerr
	}
	m, aerr := s.meta(rq.eng, name)
	if aerr != nil {
		return nil, aerr
	}
	if max := s.maxMessageSize(m); int64(total) > max {
		return nil, newError(kindBatchTooLong, "the batch is %d bytes; at most %d together", total, max)
	}
	out := batchOutput[sendResult]{Successful: []sendResult{}, Failed: []batchFailure{}}
	var msgs []engine.BatchMessage
	var ok []*prepared
	ttl := retention(m)
	for _, e := range in.Entries {
		p, aerr := s.prepare(m, e.MessageBody, e.DelaySeconds, e.MessageAttributes, e.MessageDeduplicationId)
		if aerr != nil {
			out.Failed = append(out.Failed, failure(e.Id, aerr))
			continue
		}
		p.res.Id = e.Id
		ok = append(ok, p)
		msgs = append(msgs, engine.BatchMessage{Body: p.stored, TTL: ttl, Delay: p.delay})
	}
	if len(msgs) == 0 {
		return out, nil
	}
	first, _, err := rq.eng.EnqueueBatch(rq.ctx, name, msgs, engine.BatchOptions{})
	if err != nil {
		return nil, s.engineErr("send message batch", name, err)
	}
	for i, p := range ok {
		p.res.MessageId = messageID(first + uint64(i))
		out.Successful = append(out.Successful, p.res)
	}
	return out, nil
}

// receivedMessage is one message of ReceiveMessage's output.
type receivedMessage struct {
	MessageId              string //nolint:revive
	ReceiptHandle          string
	MD5OfBody              string
	Body                   string
	Attributes             map[string]string           `json:",omitempty"`
	MD5OfMessageAttributes string                      `json:",omitempty"`
	MessageAttributes      map[string]messageAttribute `json:",omitempty"`
}

// receiveOutput is the output of ReceiveMessage.
type receiveOutput struct {
	Messages []receivedMessage
}

// intParam is an optional integer parameter in lo..hi, def when absent.
func intParam(v *int64, name string, def, lo, hi int64) (int64, *Error) {
	if v == nil {
		return def, nil
	}
	if *v < lo || *v > hi {
		return 0, newError(kindInvalidParameter, "%s must be in %d..%d, not %d", name, lo, hi, *v)
	}
	return *v, nil
}

// receiveMessage is ReceiveMessage: up to MaxNumberOfMessages messages,
// each leased for the visibility timeout under a new receipt handle,
// waiting up to WaitTimeSeconds for the first. A message received more
// than the RedrivePolicy's maxReceiveCount times moves to the dead-letter
// queue instead of being delivered.
func (s *Service) receiveMessage(rq *request, name string, in *receiveMessageInput) (any, *Error) {
	m, aerr := s.meta(rq.eng, name)
	if aerr != nil {
		return nil, aerr
	}
	max, aerr := intParam(in.MaxNumberOfMessages, "MaxNumberOfMessages", 1, 1, maxReceiveMessage)
	if aerr != nil {
		return nil, aerr
	}
	vis, aerr := intParam(in.VisibilityTimeout, "VisibilityTimeout", m.attrInt("VisibilityTimeout"), 0, maxVisibility)
	if aerr != nil {
		return nil, aerr
	}
	wait, aerr := intParam(in.WaitTimeSeconds, "WaitTimeSeconds", m.attrInt("ReceiveMessageWaitTimeSeconds"), 0, maxWaitSeconds)
	if aerr != nil {
		return nil, aerr
	}
	var dlq string
	var maxReceive int
	if p, ok := m.Attrs["RedrivePolicy"]; ok && p != "" {
		if dlq, maxReceive, aerr = s.parseRedrive(p); aerr != nil {
			return nil, aerr
		}
	}
	// A visibility timeout of 0 makes the message visible again at once;
	// the engine's lease of 0 would pop it for good, so it is the shortest
	// lease instead.
	lease := time.Duration(vis) * time.Second
	if lease == 0 {
		lease = time.Millisecond
	}
	sysAttrs := append(append([]string(nil), in.AttributeNames...), in.MessageSystemAttributeNames...)
	ctx, cancel := context.WithCancel(rq.ctx)
	defer cancel()
	stop := context.AfterFunc(rq.pollCtx, cancel)
	defer stop()

	out := receiveOutput{Messages: []receivedMessage{}}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	for {
		msgs, err := rq.eng.LeaseBatch(ctx, name, int(max), int64(max)*s.cfg.MaxMessageBytes, time.Until(deadline), lease)
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, s.engineErr("receive message", name, err)
		}
		for i := range msgs {
			msg := &msgs[i]
			if maxReceive > 0 && msg.DeliveryCount > maxReceive && s.deadLetter(rq, name, dlq, msg) {
				continue
			}
			out.Messages = append(out.Messages, s.received(msg, sysAttrs, in.MessageAttributeNames))
		}
		// When every message went to the dead-letter queue, wait on for
		// the rest of the long poll.
		if len(out.Messages) > 0 || len(msgs) == 0 || err != nil || time.Until(deadline) <= 0 {
			return out, nil
		}
	}
}

// received is the output form of a leased message.
func (s *Service) received(msg *engine.Message, sysAttrs, attrNames []string) receivedMessage {
	body, attrs := unwrapBody(msg.Body)
	rm := receivedMessage{
		MessageId:     messageID(msg.ID),
		ReceiptHandle: msg.Receipt,
		MD5OfBody:     md5Hex(body),
		Body:          string(body),
	}
	if len(sysAttrs) > 0 {
		all := map[string]string{
			"SenderId":                s.cfg.Account,
			"SentTimestamp":           strconv.FormatInt(msg.EnqueuedAt.UnixMilli(), 10),
			"ApproximateReceiveCount": strconv.Itoa(msg.DeliveryCount),
		}
		rm.Attributes = map[string]string{}
		for _, k := range sysAttrs {
			if k == "All" {
				rm.Attributes = all
				break
			}
			if v, ok := all[k]; ok {
				rm.Attributes[k] = v
			}
		}
	}
	if sel := selectAttributes(attrs, attrNames); sel != nil {
		rm.MessageAttributes = sel
		rm.MD5OfMessageAttributes = md5OfAttributes(sel)
	}
	return rm
}

// deadLetter moves a message received too often to the dead-letter queue:
// stored there first (with its attributes), then acked here, so a crash in
// between leaves it in both rather than in neither. It reports false, and
// the message is delivered, when the dead-letter queue is gone or the move
// failed (logged).
func (s *Service) deadLetter(rq *request, name, dlq string, msg *engine.Message) bool {
	dm, aerr := s.meta(rq.eng, dlq)
	if aerr != nil {
		s.log.Warn("sqs: dead-letter queue unavailable; delivering the message", "queue", name, "dlq", dlq, "id", msg.ID, "err", aerr.Message)
		return false
	}
	if _, err := rq.eng.Enqueue(context.WithoutCancel(rq.ctx), dlq, msg.Body, engine.EnqueueOptions{TTL: retention(dm)}); err != nil {
		s.log.Warn("sqs: moving a message to its dead-letter queue failed; delivering it", "queue", name, "dlq", dlq, "id", msg.ID, "err", err)
		return false
	}
	if err := rq.eng.Ack(name, msg.Receipt); err != nil {
		s.log.Warn("sqs: a message moved to its dead-letter queue could not be acked here; it may come again", "queue", name, "dlq", dlq, "id", msg.ID, "err", err)
	}
	return true
}

// validReceipt reports whether h has the shape of a receipt handle this
// server gives out (43 characters of base64url), without checking it is
// current.
func validReceipt(h string) bool {
	if len(h) != 43 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// deleteOne deletes the message a receipt handle names. A handle whose
// lease already ended is a success, as in SQS (the message may come again).
func (s *Service) deleteOne(rq *request, name, receipt string) *Error {
	if receipt == "" {
		return newError(kindMissingParameter, "the request must contain the parameter ReceiptHandle")
	}
	if !validReceipt(receipt) {
		return newError(kindReceiptInvalid, "the receipt handle %q is not valid", receipt)
	}
	if err := rq.eng.Ack(name, receipt); err != nil && !errors.Is(err, engine.ErrLeaseExpired) {
		return s.engineErr("delete message", name, err)
	}
	return nil
}

// deleteMessage is DeleteMessage.
func (s *Service) deleteMessage(rq *request, name string, in *deleteMessageInput) (any, *Error) {
	if _, aerr := s.meta(rq.eng, name); aerr != nil {
		return nil, aerr
	}
	if aerr := s.deleteOne(rq, name, in.ReceiptHandle); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

// idResult is the success entry of DeleteMessageBatch and
// ChangeMessageVisibilityBatch.
type idResult struct {
	Id string //nolint:revive
}

// idBatch runs one entry of DeleteMessageBatch or
// ChangeMessageVisibilityBatch for each id, after the checks of a batch,
// and answers each entry's success or failure.
func (s *Service) idBatch(rq *request, name string, ids []string, do func(i int) *Error) (any, *Error) {
	if aerr := checkBatch(ids); aerr != nil {
		return nil, aerr
	}
	if _, aerr := s.meta(rq.eng, name); aerr != nil {
		return nil, aerr
	}
	out := batchOutput[idResult]{Successful: []idResult{}, Failed: []batchFailure{}}
	for i, id := range ids {
		if aerr := do(i); aerr != nil {
			out.Failed = append(out.Failed, failure(id, aerr))
			continue
		}
		out.Successful = append(out.Successful, idResult{id})
	}
	return out, nil
}

// deleteMessageBatch is DeleteMessageBatch.
func (s *Service) deleteMessageBatch(rq *request, name string, in *deleteMessageBatchInput) (any, *Error) {
	ids := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	return s.idBatch(rq, name, ids, func(i int) *Error { return s.deleteOne(rq, name, in.Entries[i].ReceiptHandle) })
}

// changeOne sets the visibility timeout of a received message: 0 makes it
// visible at once, more hides it that long from now.
func (s *Service) changeOne(rq *request, name, receipt string, vis *int64) *Error {
	if receipt == "" {
		return newError(kindMissingParameter, "the request must contain the parameter ReceiptHandle")
	}
	if vis == nil {
		return newError(kindMissingParameter, "the request must contain the parameter VisibilityTimeout")
	}
	if *vis < 0 || *vis > maxVisibility {
		return newError(kindInvalidParameter, "VisibilityTimeout must be in 0..%d", maxVisibility)
	}
	if !validReceipt(receipt) {
		return newError(kindReceiptInvalid, "the receipt handle %q is not valid", receipt)
	}
	var err error
	if *vis == 0 {
		err = rq.eng.Nack(name, receipt, 0)
	} else {
		_, err = rq.eng.Extend(name, receipt, time.Duration(*vis)*time.Second)
	}
	switch {
	case errors.Is(err, engine.ErrLeaseExpired):
		return newError(kindMessageNotInflight, "the message of this receipt handle is not in flight")
	case err != nil:
		return s.engineErr("change message visibility", name, err)
	}
	return nil
}

// changeVisibility is ChangeMessageVisibility.
func (s *Service) changeVisibility(rq *request, name string, in *changeVisibilityInput) (any, *Error) {
	if _, aerr := s.meta(rq.eng, name); aerr != nil {
		return nil, aerr
	}
	if aerr := s.changeOne(rq, name, in.ReceiptHandle, in.VisibilityTimeout); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

// changeVisibilityBatch is ChangeMessageVisibilityBatch.
func (s *Service) changeVisibilityBatch(rq *request, name string, in *changeVisibilityBatchInput) (any, *Error) {
	ids := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	return s.idBatch(rq, name, ids, func(i int) *Error {
		return s.changeOne(rq, name, in.Entries[i].ReceiptHandle, in.Entries[i].VisibilityTimeout)
	})
}
