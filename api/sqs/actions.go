package sqs

import (
	"context"
	"encoding/json"

	"github.com/mqueue/mqueue/engine"
)

// The inputs of the actions, as the AWS JSON 1.0 protocol spells them (the
// query protocol's form is turned into the same shapes, query.go).
type (
	createQueueInput struct {
		QueueName  string
		Attributes map[string]string
		Tags       map[string]string `json:"tags"`
	}
	getQueueURLInput struct {
		QueueName              string
		QueueOwnerAWSAccountID string `json:"QueueOwnerAWSAccountId"`
	}
	listQueuesInput struct {
		QueueNamePrefix string
		MaxResults      *int
		NextToken       string
	}
	queueInput struct {
		QueueUrl string //nolint:revive // SQS's spelling
	}
	getQueueAttributesInput struct {
		QueueUrl       string //nolint:revive
		AttributeNames []string
	}
	setQueueAttributesInput struct {
		QueueUrl   string //nolint:revive
		Attributes map[string]string
	}
	sendMessageInput struct {
		QueueUrl               string //nolint:revive
		MessageBody            *string
		DelaySeconds           *int64
		MessageAttributes      map[string]messageAttribute
		MessageDeduplicationId string //nolint:revive
		MessageGroupId         string //nolint:revive
	}
	sendBatchEntry struct {
		Id                     string //nolint:revive
		MessageBody            *string
		DelaySeconds           *int64
		MessageAttributes      map[string]messageAttribute
		MessageDeduplicationId string //nolint:revive
		MessageGroupId         string //nolint:revive
	}
	sendMessageBatchInput struct {
		QueueUrl string //nolint:revive
		Entries  []sendBatchEntry
	}
	receiveMessageInput struct {
		QueueUrl                    string //nolint:revive
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
		MaxNumberOfMessages         *int64
		VisibilityTimeout           *int64
		WaitTimeSeconds             *int64
		ReceiveRequestAttemptId     string //nolint:revive
	}
	deleteMessageInput struct {
		QueueUrl      string //nolint:revive
		ReceiptHandle string
	}
	deleteBatchEntry struct {
		Id            string //nolint:revive
		ReceiptHandle string
	}
	deleteMessageBatchInput struct {
		QueueUrl string //nolint:revive
		Entries  []deleteBatchEntry
	}
	changeVisibilityInput struct {
		QueueUrl          string //nolint:revive
		ReceiptHandle     string
		VisibilityTimeout *int64
	}
	changeVisibilityBatchEntry struct {
		Id                string //nolint:revive
		ReceiptHandle     string
		VisibilityTimeout *int64
	}
	changeVisibilityBatchInput struct {
		QueueUrl string //nolint:revive
		Entries  []changeVisibilityBatchEntry
	}
)

// request is one SQS call being answered.
type request struct {
	ctx     context.Context // the request's
	pollCtx context.Context // ends long polls early (the server's drain)
	eng     *engine.Engine
	base    string // the base of queue URLs
}

// actions maps an action name to its handler: decode the input from JSON
// and answer a value that encodes as the JSON protocol's output.
var actions map[string]func(s *Service, rq *request, raw []byte) (any, *Error)

func init() {
	actions = map[string]func(s *Service, rq *request, raw []byte) (any, *Error){
		"CreateQueue": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in createQueueInput
			if err := decode(raw, &in); err != nil {
				return nil, err
			}
			return s.createQueue(rq.eng, rq.base, &in)
		},
		"GetQueueUrl": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in getQueueURLInput
			if err := decode(raw, &in); err != nil {
				return nil, err
			}
			return s.getQueueURL(rq, &in)
		},
		"ListQueues": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in listQueuesInput
			if err := decode(raw, &in); err != nil {
				return nil, err
			}
			return s.listQueues(rq.eng, rq.base, &in)
		},
		"GetQueueAttributes": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in getQueueAttributesInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.getQueueAttributes(rq.eng, name, in.AttributeNames)
		},
		"SetQueueAttributes": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in setQueueAttributesInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.setQueueAttributes(rq.eng, name, in.Attributes)
		},
		"DeleteQueue": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in queueInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.deleteQueue(rq.eng, name)
		},
		"PurgeQueue": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in queueInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.purgeQueue(rq.eng, name)
		},
		"SendMessage": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in sendMessageInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.sendMessage(rq, name, &in)
		},
		"SendMessageBatch": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in sendMessageBatchInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.sendMessageBatch(rq, name, &in)
		},
		"ReceiveMessage": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in receiveMessageInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.receiveMessage(rq, name, &in)
		},
		"DeleteMessage": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in deleteMessageInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.deleteMessage(rq, name, &in)
		},
		"DeleteMessageBatch": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in deleteMessageBatchInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.deleteMessageBatch(rq, name, &in)
		},
		"ChangeMessageVisibility": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in changeVisibilityInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.changeVisibility(rq, name, &in)
		},
		"ChangeMessageVisibilityBatch": func(s *Service, rq *request, raw []byte) (any, *Error) {
			var in changeVisibilityBatchInput
			name, err := s.decodeQueue(raw, &in, &in.QueueUrl)
			if err != nil {
				return nil, err
			}
			return s.changeVisibilityBatch(rq, name, &in)
		},
	}
}

// call runs one action.
func (s *Service) call(rq *request, action string, raw []byte) (any, *Error) {
	h, ok := actions[action]
	if !ok {
		if unsupportedActions[action] {
			return nil, newError(kindUnsupported, "%s is not supported by mqueue's SQS API (see the README)", action)
		}
		return nil, newError(kindInvalidAction, "the action %q is not valid for this endpoint", action)
	}
	return h(s, rq, raw)
}

// unsupportedActions are the SQS actions this server knows and refuses.
var unsupportedActions = map[string]bool{
	"AddPermission": true, "RemovePermission": true, "TagQueue": true, "UntagQueue": true,
	"ListQueueTags": true, "ListDeadLetterSourceQueues": true, "StartMessageMoveTask": true,
	"CancelMessageMoveTask": true, "ListMessageMoveTasks": true,
}

// decode parses the JSON input of an action.
func decode(raw []byte, v any) *Error {
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return newError(kindInvalidParameter, "the request body is not the JSON input of this action: %v", err)
	}
	return nil
}

// decodeQueue parses the input of an action on one queue and returns the
// queue its QueueUrl names.
func (s *Service) decodeQueue(raw []byte, v any, queueURL *string) (string, *Error) {
	if err := decode(raw, v); err != nil {
		return "", err
	}
	return s.queueFromURL(*queueURL)
}

// getQueueURL is GetQueueUrl.
func (s *Service) getQueueURL(rq *request, in *getQueueURLInput) (any, *Error) {
	if in.QueueName == "" {
		return nil, newError(kindMissingParameter, "the request must contain the parameter QueueName")
	}
	if in.QueueOwnerAWSAccountID != "" && in.QueueOwnerAWSAccountID != s.cfg.Account {
		return nil, newError(kindNonExistentQueue, "the specified queue %s does not exist for account %s", in.QueueName, in.QueueOwnerAWSAccountID)
	}
	if !engine.ValidQueueName(in.QueueName) {
		return nil, newError(kindNonExistentQueue, "the specified queue %s does not exist", in.QueueName)
	}
	if _, ok := rq.eng.Stats(in.QueueName); !ok {
		return nil, newError(kindNonExistentQueue, "the specified queue %s does not exist", in.QueueName)
	}
	return queueURLOutput{s.queueURL(rq.base, in.QueueName)}, nil
}
