package sqs

import (
	"encoding/json"
	"errors"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mqueue/mqueue/engine"
)

// The outputs of the queue actions.
type (
	queueURLOutput struct {
		QueueUrl string //nolint:revive // SQS's spelling
	}
	listQueuesOutput struct {
		QueueUrls []string `json:",omitempty"`
		NextToken string   `json:",omitempty"`
	}
	attributesOutput struct {
		Attributes map[string]string `json:",omitempty"`
	}
)

// queueMeta is what the SQS API stores with a queue (engine.SetQueueMeta):
// its attributes, as SQS spells them, and when it was created and changed.
type queueMeta struct {
	Created  int64             `json:"created"`
	Modified int64             `json:"modified"`
	Attrs    map[string]string `json:"attributes"`
}

// Attribute defaults, as SQS has them.
var defaultAttrs = map[string]string{
	"VisibilityTimeout":             "30",
	"DelaySeconds":                  "0",
	"MessageRetentionPeriod":        "345600",
	"ReceiveMessageWaitTimeSeconds": "0",
}

// settable are the attributes CreateQueue and SetQueueAttributes take,
// with their ranges (RedrivePolicy is checked on its own).
var settable = map[string][2]int64{
	"VisibilityTimeout":             {0, 43200},
	"DelaySeconds":                  {0, 900},
	"MessageRetentionPeriod":        {60, 1209600},
	"ReceiveMessageWaitTimeSeconds": {0, 20},
	"MaximumMessageSize":            {1024, 1 << 30},
}

// redrivePolicy is the JSON of the RedrivePolicy attribute.
type redrivePolicy struct {
	DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
	MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
}

// checkAttrs validates the attributes of a CreateQueue or
// SetQueueAttributes.
func (s *Service) checkAttrs(attrs map[string]string) *Error {
	for k, v := range attrs {
		if k == "FifoQueue" || k == "ContentBasedDeduplication" || k == "DeduplicationScope" || k == "FifoThroughputLimit" {
			if v == "true" || k != "FifoQueue" {
				return newError(kindUnsupported, "FIFO queues are not supported")
			}
			continue
		}
		if k == "RedrivePolicy" {
			if _, _, err := s.parseRedrive(v); err != nil {
				return err
			}
			continue
		}
		if k == "MaximumMessageSize" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1024 || n > s.cfg.MaxMessageBytes {
				return newError(kindInvalidAttrValue, "MaximumMessageSize must be an integer in 1024..%d (--max-message-bytes)", s.cfg.MaxMessageBytes)
			}
			continue
		}
		r, ok := settable[k]
		if !ok {
			return newError(kindInvalidAttrName, "unknown or unsupported attribute %s", k)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < r[0] || n > r[1] {
			return newError(kindInvalidAttrValue, "%s must be an integer in %d..%d", k, r[0], r[1])
		}
	}
	return nil
}

// parseRedrive parses a RedrivePolicy: the dead-letter queue and the
// receive count past which a message moves there.
func (s *Service) parseRedrive(v string) (dlq string, max int, e *Error) {
	var p redrivePolicy
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		return "", 0, newError(kindInvalidAttrValue, "RedrivePolicy is not a JSON object: %v", err)
	}
	dlq, ok := s.queueFromARN(p.DeadLetterTargetArn)
	if !ok {
		return "", 0, newError(kindInvalidAttrValue, "RedrivePolicy deadLetterTargetArn %q is no queue ARN of this server (%s)", p.DeadLetterTargetArn, s.queueARN("NAME"))
	}
	n, err := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	if err != nil || n < 1 || n > 1000 {
		return "", 0, newError(kindInvalidAttrValue, "RedrivePolicy maxReceiveCount must be an integer in 1..1000")
	}
	return dlq, n, nil
}

// meta loads the SQS meta of queue name, with defaults for a queue made
// through the native API; ErrQueueNotFound when there is no such queue.
// The result is shared and must not be modified (setQueueAttributes
// copies it). The engine caches the blob; the parsed form is cached here
// for as long as the engine hands out the same blob.
func (s *Service) meta(eng *engine.Engine, name string) (*queueMeta, *Error) {
	b, err := eng.QueueMeta(name)
	if err != nil {
		return nil, s.engineErr("read queue attributes", name, err)
	}
	if c, ok := s.metas.Load(name); ok {
		if c := c.(*parsedMeta); sameBytes(c.raw, b) {
			return c.m, nil
		}
	}
	m := &queueMeta{Attrs: map[string]string{}}
	if b != nil {
		if err := json.Unmarshal(b, m); err != nil {
			s.log.Error("sqs: queue attributes unreadable; serving defaults", "queue", name, "err", err)
			m = &queueMeta{Attrs: map[string]string{}}
		}
	}
	for k, v := range defaultAttrs {
		if _, ok := m.Attrs[k]; !ok {
			m.Attrs[k] = v
		}
	}
	s.metas.Store(name, &parsedMeta{raw: b, m: m})
	return m, nil
}

// parsedMeta is a meta blob and its parsed form.
type parsedMeta struct {
	raw []byte
	m   *queueMeta
}

// sameBytes reports whether a and b are the same slice (not merely equal
// bytes): the engine hands out the same slice until the blob changes.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0]
}

// attrInt is the integer attribute k of m.
func (m *queueMeta) attrInt(k string) int64 {
	n, _ := strconv.ParseInt(m.Attrs[k], 10, 64)
	return n
}

// saveMeta stores m with queue name.
func (s *Service) saveMeta(eng *engine.Engine, name string, m *queueMeta) *Error {
	b, err := json.Marshal(m)
	if err != nil {
		return newError(kindInternal, "encode queue attributes: %v", err)
	}
	if err := eng.SetQueueMeta(name, b); err != nil {
		return s.engineErr("store queue attributes", name, err)
	}
	return nil
}

// createQueue is CreateQueue: it makes the queue, or finds it when it
// exists with the same attributes (QueueNameExists otherwise).
func (s *Service) createQueue(eng *engine.Engine, base string, in *createQueueInput) (any, *Error) {
	name := in.QueueName
	if strings.HasSuffix(name, ".fifo") {
		return nil, newError(kindUnsupported, "FIFO queues are not supported")
	}
	if !engine.ValidQueueName(name) {
		return nil, newError(kindInvalidParameter, "queue name %q: 1-64 characters, letters, digits, '-', '_' or '.', starting with a letter or digit", name)
	}
	if err := s.checkAttrs(in.Attributes); err != nil {
		return nil, err
	}
	created, err := eng.CreateQueue(name)
	if err != nil {
		return nil, s.engineErr("create queue", name, err)
	}
	if !created {
		m, aerr := s.meta(eng, name)
		if aerr != nil {
			return nil, aerr
		}
		for k, v := range in.Attributes {
			if m.Attrs[k] != v {
				return nil, newError(kindQueueNameExists, "queue %s exists with a different %s (%q)", name, k, m.Attrs[k])
			}
		}
		return queueURLOutput{s.queueURL(base, name)}, nil
	}
	now := time.Now().Unix()
	m := &queueMeta{Created: now, Modified: now, Attrs: map[string]string{}}
	for k, v := range defaultAttrs {
		m.Attrs[k] = v
	}
	for k, v := range in.Attributes {
		m.Attrs[k] = v
	}
	if aerr := s.saveMeta(eng, name, m); aerr != nil {
		return nil, aerr
	}
	return queueURLOutput{s.queueURL(base, name)}, nil
}

// listQueues is ListQueues: the queues whose names start with the prefix,
// in name order, at most MaxResults (default and cap 1000) a page.
func (s *Service) listQueues(eng *engine.Engine, base string, in *listQueuesInput) (any, *Error) {
	limit := 1000
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > 1000 {
			return nil, newError(kindInvalidParameter, "MaxResults must be in 1..1000")
		}
		limit = *in.MaxResults
	}
	after := in.NextToken
	if after == "" && in.QueueNamePrefix != "" {
		// The names with the prefix come right after the ones below it.
		after = in.QueueNamePrefix[:len(in.QueueNamePrefix)-1] + string(in.QueueNamePrefix[len(in.QueueNamePrefix)-1]-1) + "\xff"
	}
	var out listQueuesOutput
	for {
		page, more := eng.ListQueues(after, 1000)
		for _, q := range page {
			after = q.Name
			if !strings.HasPrefix(q.Name, in.QueueNamePrefix) {
				if q.Name > in.QueueNamePrefix {
					return out, nil // past the names with the prefix
				}
				continue
			}
			if len(out.QueueUrls) == limit {
				if in.MaxResults != nil {
					out.NextToken = out.QueueUrls[limit-1][strings.LastIndexByte(out.QueueUrls[limit-1], '/')+1:]
				}
				return out, nil
			}
			out.QueueUrls = append(out.QueueUrls, s.queueURL(base, q.Name))
		}
		if !more {
			return out, nil
		}
	}
}

// getQueueAttributes is GetQueueAttributes.
func (s *Service) getQueueAttributes(eng *engine.Engine, name string, names []string) (any, *Error) {
	m, aerr := s.meta(eng, name)
	if aerr != nil {
		return nil, aerr
	}
	st, ok := eng.Stats(name)
	if !ok {
		return nil, newError(kindNonExistentQueue, "the specified queue %s does not exist", name)
	}
	all := map[string]string{
		"ApproximateNumberOfMessages":           strconv.FormatInt(st.Depth, 10),
		"ApproximateNumberOfMessagesNotVisible": strconv.FormatInt(st.InFlight, 10),
		"ApproximateNumberOfMessagesDelayed":    strconv.FormatInt(st.Delayed, 10),
		"QueueArn":                              s.queueARN(name),
		"CreatedTimestamp":                      strconv.FormatInt(m.Created, 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(m.Modified, 10),
		"MaximumMessageSize":                    strconv.FormatInt(s.cfg.MaxMessageBytes, 10),
		"SqsManagedSseEnabled":                  "false",
	}
	for k, v := range m.Attrs {
		all[k] = v
	}
	if len(names) == 0 {
		return attributesOutput{}, nil
	}
	out := map[string]string{}
	for _, k := range names {
		if k == "All" {
			out = all
			break
		}
		v, ok := all[k]
		if !ok {
			if isKnownAttr(k) {
				continue // an SQS attribute this server does not have
			}
			return nil, newError(kindInvalidAttrName, "unknown attribute %s", k)
		}
		out[k] = v
	}
	return attributesOutput{out}, nil
}

// isKnownAttr reports whether k is an SQS queue attribute name.
func isKnownAttr(k string) bool {
	switch k {
	case "Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "FifoQueue",
		"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
		"RedriveAllowPolicy", "RedrivePolicy", "SqsManagedSseEnabled":
		return true
	}
	_, ok := settable[k]
	return ok
}

// setQueueAttributes is SetQueueAttributes.
func (s *Service) setQueueAttributes(eng *engine.Engine, name string, attrs map[string]string) (any, *Error) {
	if err := s.checkAttrs(attrs); err != nil {
		return nil, err
	}
	shared, aerr := s.meta(eng, name)
	if aerr != nil {
		return nil, aerr
	}
	m := &queueMeta{Created: shared.Created, Attrs: maps.Clone(shared.Attrs)}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if attrs[k] == "" && k == "RedrivePolicy" {
			delete(m.Attrs, k)
			continue
		}
		m.Attrs[k] = attrs[k]
	}
	m.Modified = time.Now().Unix()
	if aerr := s.saveMeta(eng, name, m); aerr != nil {
		return nil, aerr
	}
	return struct{}{}, nil
}

// deleteQueue is DeleteQueue.
func (s *Service) deleteQueue(eng *engine.Engine, name string) (any, *Error) {
	if err := eng.DeleteQueue(name); err != nil {
		return nil, s.engineErr("delete queue", name, err)
	}
	s.metas.Delete(name)
	return struct{}{}, nil
}

// purgeQueue is PurgeQueue.
func (s *Service) purgeQueue(eng *engine.Engine, name string) (any, *Error) {
	if _, err := eng.Purge(name); err != nil {
		if errors.Is(err, engine.ErrQueueNotFound) {
			return nil, newError(kindNonExistentQueue, "the specified queue %s does not exist", name)
		}
		return nil, s.engineErr("purge queue", name, err)
	}
	return struct{}{}, nil
}
