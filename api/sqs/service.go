package sqs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/mqueue/mqueue/engine"
)

// Defaults of Config.
const (
	// DefaultAccount is the account id in queue URLs and ARNs.
	DefaultAccount = "000000000000"
	// DefaultRegion is the region in ARNs.
	DefaultRegion = "us-east-1"
)

// jsonContentType is the media type of the AWS JSON 1.0 protocol.
const jsonContentType = "application/x-amz-json-1.0"

// targetPrefix starts the X-Amz-Target header of every SQS JSON request.
const targetPrefix = "AmazonSQS."

// Config configures a Service.
type Config struct {
	// PublicURL is the base of queue URLs (e.g. https://mq.example.com);
	// empty: the scheme and Host of each request.
	PublicURL string
	// Account is the account id in queue URLs and ARNs (default
	// DefaultAccount).
	Account string
	// Region is the region in ARNs (default DefaultRegion).
	Region string
	// MaxMessageBytes is the largest message body accepted.
	MaxMessageBytes int64
	// Deny refuses every request with AccessDenied: set when the native
	// API requires a token and no SigV4 credentials are configured, so
	// that the SQS API is no way around the token.
	Deny bool
	// Credentials maps an access key id to its secret key: when set, every
	// request must carry a valid SigV4 signature of one of them. Nil accepts
	// requests unsigned or signed with any key, unverified.
	Credentials map[string]string
	// Now is the clock of signature checks (default time.Now).
	Now func() time.Time
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
}

// Service serves the SQS API on an engine. Safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
	eng func() *engine.Engine
	// metas caches parsed queue attributes: name → *parsedMeta (queues.go).
	metas sync.Map
}

// New builds a Service over the engine eng returns (called per request; it
// is non-nil once the server's engine is ready).
func New(cfg Config, eng func() *engine.Engine) *Service {
	if cfg.Account == "" {
		cfg.Account = DefaultAccount
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Service{cfg: cfg, log: cfg.Logger, eng: eng}
}

// IsSQSRequest reports whether r is an SQS request of either protocol: an
// X-Amz-Target naming AmazonSQS, or a form-encoded POST.
func IsSQSRequest(r *http.Request) bool {
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix) {
		return true
	}
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/x-www-form-urlencoded")
}

// Handle answers one SQS request whose body the caller has read (bounded
// and accounted as every request body of the server). pollCtx ends long
// polls early: the server cancels it when its drain grace ends. It returns
// the action for the metrics' route label: a supported action's name, or
// "invalid" (a bounded set).
func (s *Service) Handle(pollCtx context.Context, w http.ResponseWriter, r *http.Request, body []byte) (action string) {
	eng := s.eng()
	if eng == nil {
		writeJSONError(w, newError(kindUnavailable, "the server is still opening its data directory; retry shortly"))
		return "invalid"
	}
	rq := &request{ctx: r.Context(), pollCtx: pollCtx, eng: eng, base: s.baseURL(r)}
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasPrefix(target, targetPrefix) {
		return s.serveQuery(rq, w, r, body)
	}
	action = actionLabel(strings.TrimPrefix(target, targetPrefix))
	if aerr := s.authorize(r, body); aerr != nil {
		writeJSONError(w, aerr)
		return action
	}
	out, aerr := s.call(rq, strings.TrimPrefix(target, targetPrefix), body)
	if aerr != nil {
		writeJSONError(w, aerr)
		return action
	}
	b, err := json.Marshal(out)
	if err != nil {
		writeJSONError(w, newError(kindInternal, "encode the reply: %v", err))
		return action
	}
	w.Header().Set("Content-Type", jsonContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return action
}

// actionLabel is a for the metrics: the action's name when it is one this
// server answers, else "invalid".
func actionLabel(a string) string {
	if _, ok := actions[a]; ok {
		return a
	}
	return "invalid"
}

// Reject answers a request refused before it reached the service (a body
// over the limit, the in-flight budget spent) in the shape of its protocol.
func (s *Service) Reject(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	e := &Error{Status: status, Type: code, QueryCode: code, Sender: status < 500, Message: msg}
	if strings.HasPrefix(r.Header.Get("X-Amz-Target"), targetPrefix) {
		writeJSONError(w, e)
		return
	}
	writeXMLError(w, e)
}

// authorize refuses a request the server must not serve: every request
// while Deny is set, one whose SigV4 signature fails when credentials are
// configured (sigv4.go).
func (s *Service) authorize(r *http.Request, body []byte) *Error {
	if s.cfg.Deny {
		return newError(kindAccessDenied, "the SQS API is disabled: the server requires an auth token and no --sqs-credentials are configured")
	}
	if s.cfg.Credentials != nil {
		return s.verify(r, body)
	}
	return nil
}

// writeJSONError answers e in the JSON protocol's shape.
func writeJSONError(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{"com.amazonaws.sqs#" + e.Type, e.Message})
	h := w.Header()
	h.Set("Content-Type", jsonContentType)
	h.Set("x-amzn-query-error", e.QueryCode+";"+e.fault())
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

// baseURL is the base of this request's queue URLs.
func (s *Service) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// queueURL is the URL of queue name.
func (s *Service) queueURL(base, name string) string {
	return base + "/" + s.cfg.Account + "/" + name
}

// queueARN is the ARN of queue name.
func (s *Service) queueARN(name string) string {
	return "arn:aws:sqs:" + s.cfg.Region + ":" + s.cfg.Account + ":" + name
}

// queueFromURL is the queue a QueueUrl names: its last path segment, under
// this service's account.
func (s *Service) queueFromURL(raw string) (string, *Error) {
	if raw == "" {
		return "", newError(kindMissingParameter, "the request must contain the parameter QueueUrl")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", newError(kindInvalidAddress, "QueueUrl %q is not a URL", raw)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] != s.cfg.Account || !engine.ValidQueueName(parts[1]) {
		return "", newError(kindInvalidAddress, "QueueUrl %q names no queue of account %s", raw, s.cfg.Account)
	}
	return parts[1], nil
}

// queueFromARN is the queue an ARN of this service names.
func (s *Service) queueFromARN(arn string) (string, bool) {
	prefix := "arn:aws:sqs:" + s.cfg.Region + ":" + s.cfg.Account + ":"
	name, ok := strings.CutPrefix(arn, prefix)
	return name, ok && engine.ValidQueueName(name)
}

// engineErr maps an engine error to the SQS error a client expects.
func (s *Service) engineErr(op, queue string, err error) *Error {
	switch {
	case errors.Is(err, engine.ErrQueueNotFound):
		return newError(kindNonExistentQueue, "the specified queue %s does not exist", queue)
	case errors.Is(err, engine.ErrInvalidKey):
		return newError(kindInvalidParameter, "%s on queue %s: %v", op, queue, err)
	case errors.Is(err, engine.ErrInvalidQueueName):
		return newError(kindInvalidParameter, "invalid queue name %q", queue)
	case errors.Is(err, engine.ErrQueueFull), errors.Is(err, engine.ErrTooManyInFlight):
		return newError(kindOverLimit, "%s on queue %s: %v", op, queue, err)
	case errors.Is(err, engine.ErrTooManyQueues):
		return newError(kindOverLimit, "%s: %v", op, err)
	case errors.Is(err, engine.ErrDiskFull), errors.Is(err, engine.ErrClosed), errors.Is(err, engine.ErrUnavailable):
		return newError(kindUnavailable, "%s on queue %s: %v", op, queue, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return newError(kindUnavailable, "%s on queue %s: the request ended: %v", op, queue, err)
	}
	s.log.Error("sqs: engine error", "op", op, "queue", queue, "err", err)
	return newError(kindInternal, "%s on queue %s failed", op, queue)
}
