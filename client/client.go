package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Client talks to one mqueue node. It is safe for concurrent use.
type Client struct {
	base      string
	token     string
	hc        *http.Client
	retries   int
	backoff   time.Duration
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends "Authorization: Bearer token" (the server's --auth-token).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient uses hc instead of a client of its own.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetries sets how many times a request is retried (default 3; see the
// package doc for which) and the first backoff (default 100ms, doubled per
// attempt; a Retry-After answer is waited instead).
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = max(n, 0), backoff }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the node at baseURL (e.g. http://localhost:8088).
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		base:      strings.TrimRight(baseURL, "/"),
		hc:        &http.Client{Timeout: 60 * time.Second},
		retries:   3,
		backoff:   100 * time.Millisecond,
		userAgent: "mqueue-go-client",
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// retryPolicy says when a request may be sent again.
type retryPolicy int

const (
	// retryAnswered: only after a 429 or 503 answer, which did nothing.
	retryAnswered retryPolicy = iota
	// retryAlways: also after a network error and 502/504 (idempotent
	// requests, and POSTs carrying an Idempotency-Key).
	retryAlways
)

// request is one API call.
type request struct {
	method string
	path   string
	query  url.Values
	body   []byte
	header http.Header
	policy retryPolicy
}

// do sends r, retrying as its policy allows, and returns the final answer
// with its body read. A non-2xx answer is returned as *Error.
func (c *Client) do(ctx context.Context, r request) (*http.Response, []byte, error) {
	wait := c.backoff
	for attempt := 0; ; attempt++ {
		resp, body, err := c.once(ctx, r)
		if err == nil {
			return resp, body, nil
		}
		if attempt >= c.retries || ctx.Err() != nil {
			return resp, body, err
		}
		var apiErr *Error
		retry := false
		sleep := wait
		if errors.As(err, &apiErr) {
			switch apiErr.Status {
			case 429, 503:
				retry = true
				if apiErr.RetryAfter > 0 {
					sleep = apiErr.RetryAfter
				}
			case 502, 504:
				retry = r.policy == retryAlways
			}
		} else {
			retry = r.policy == retryAlways
		}
		if !retry {
			return resp, body, err
		}
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, body, err
		case <-t.C:
		}
		wait *= 2
	}
}

func (c *Client) once(ctx context.Context, r request) (*http.Response, []byte, error) {
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("mqueue: %s %s: %w", r.method, r.path, err)
	}
	if r.method == http.MethodGet && r.policy == retryAnswered {
		// net/http's Transport resends a GET on its own when a reused
		// connection breaks; for a GET that pops, that would pop a second
		// message while the first one's answer was lost. A body without
		// GetBody makes the request not replayable; it is empty, so nothing
		// is sent.
		req.Body = io.NopCloser(strings.NewReader(""))
		req.GetBody = nil
		req.ContentLength = 0
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("mqueue: %s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("mqueue: %s %s: reading the answer: %w", r.method, r.path, err)
	}
	if resp.StatusCode >= 300 {
		return resp, body, decodeError(resp, body)
	}
	return resp, body, nil
}

// decodeError builds an *Error from a non-2xx answer.
func decodeError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	var b struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &b) == nil && b.Error != "" {
		e.Code, e.Message = b.Error, b.Message
	} else {
		e.Code = "HTTP_" + strconv.Itoa(resp.StatusCode)
		e.Message = strings.TrimSpace(string(body))
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// NewIdempotencyKey returns a random key of 32 hex characters.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

func queuePath(queue string) string { return "/api/queue/" + url.PathEscape(queue) }

func seconds(d time.Duration) string {
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// EnqueueOptions are the options of one enqueue.
type EnqueueOptions struct {
	TTL            time.Duration // 0: no expiry; rounded up to seconds
	Delay          time.Duration // 0: at once; rounded up to seconds
	Sync           bool          // answer after fsync whatever the server's --fsync
	IdempotencyKey string        // "" : the client draws one (retries never duplicate)
}

// Enqueue stores body in queue and returns its id. A repeat of a key the
// queue already took (200) returns the original id and no error.
func (c *Client) Enqueue(ctx context.Context, queue string, body []byte, o EnqueueOptions) (uint64, error) {
	q := url.Values{}
	if o.TTL > 0 {
		q.Set("ttl", seconds(o.TTL))
	}
	if o.Delay > 0 {
		q.Set("delay", seconds(o.Delay))
	}
	if o.Sync {
		q.Set("sync", "1")
	}
	key := o.IdempotencyKey
	if key == "" {
		key = NewIdempotencyKey()
	}
	if body == nil {
		body = []byte{}
	}
	_, rb, err := c.do(ctx, request{method: http.MethodPost, path: queuePath(queue), query: q, body: body,
		header: http.Header{"Idempotency-Key": {key}, "Content-Type": {"application/octet-stream"}}, policy: retryAlways})
	if err != nil {
		return 0, err
	}
	var out struct {
		ID uint64 `json:"id"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return 0, fmt.Errorf("mqueue: enqueue %s: bad answer %q: %w", queue, rb, err)
	}
	return out.ID, nil
}

// BatchMessage is one message of EnqueueBatch.
type BatchMessage struct {
	Body  []byte
	TTL   time.Duration
	Delay time.Duration
}

// BatchOptions are the options of EnqueueBatch.
type BatchOptions struct {
	Sync           bool
	IdempotencyKey string // "": the client draws one
}

type wireBatchMessage struct {
	Body       *string `json:"body,omitempty"`
	BodyBase64 *string `json:"body_base64,omitempty"`
	TTL        int64   `json:"ttl,omitempty"`
	Delay      int64   `json:"delay,omitempty"`
}

// encodeBatch returns the JSON of a batch POST.
func encodeBatch(msgs []BatchMessage) ([]byte, error) {
	w := make([]wireBatchMessage, len(msgs))
	for i, m := range msgs {
		if utf8.Valid(m.Body) && !bytes.ContainsRune(m.Body, utf8.RuneError) {
			s := string(m.Body)
			w[i].Body = &s
		} else {
			s := base64.StdEncoding.EncodeToString(m.Body)
			w[i].BodyBase64 = &s
		}
		if m.TTL > 0 {
			w[i].TTL = int64((m.TTL + time.Second - 1) / time.Second)
		}
		if m.Delay > 0 {
			w[i].Delay = int64((m.Delay + time.Second - 1) / time.Second)
		}
	}
	return json.Marshal(struct {
		Messages []wireBatchMessage `json:"messages"`
	}{w})
}

// EnqueueBatch stores msgs in one all-or-nothing write and returns their
// (consecutive) ids.
func (c *Client) EnqueueBatch(ctx context.Context, queue string, msgs []BatchMessage, o BatchOptions) ([]uint64, error) {
	body, err := encodeBatch(msgs)
	if err != nil {
		return nil, fmt.Errorf("mqueue: batch to %s: %w", queue, err)
	}
	q := url.Values{}
	if o.Sync {
		q.Set("sync", "1")
	}
	key := o.IdempotencyKey
	if key == "" {
		key = NewIdempotencyKey()
	}
	_, rb, err := c.do(ctx, request{method: http.MethodPost, path: queuePath(queue) + "/batch", query: q, body: body,
		header: http.Header{"Idempotency-Key": {key}, "Content-Type": {"application/json"}}, policy: retryAlways})
	if err != nil {
		return nil, err
	}
	var out struct {
		IDs []uint64 `json:"ids"`
	}
	if err := json.Unmarshal(rb, &out); err != nil {
		return nil, fmt.Errorf("mqueue: batch to %s: bad answer %q: %w", queue, rb, err)
	}
	return out.IDs, nil
}

// Message is a delivered (or peeked) message. Times are zero when absent.
type Message struct {
	Queue          string
	ID             uint64
	Body           []byte
	EnqueuedAt     time.Time
	ExpiresAt      time.Time
	DeliveryCount  int
	Receipt        string    // only when leased
	LeaseExpiresAt time.Time // only when leased
	State          string    // peek only: visible, in_flight or delayed
	VisibleAt      time.Time // peek only
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func hdrInt(h http.Header, k string) int64 {
	v, _ := strconv.ParseInt(h.Get(k), 10, 64)
	return v
}

// get is a GET of one message; lease 0 pops it for good.
func (c *Client) get(ctx context.Context, queue string, lease, wait time.Duration) (Message, bool, error) {
	q := url.Values{}
	if lease > 0 {
		q.Set("lease", seconds(lease))
	}
	if wait > 0 {
		q.Set("wait", seconds(wait))
	}
	resp, body, err := c.do(ctx, request{method: http.MethodGet, path: queuePath(queue), query: q, policy: retryAnswered})
	if err != nil || resp.StatusCode == http.StatusNoContent {
		return Message{}, false, err
	}
	h := resp.Header
	m := Message{Queue: queue, Body: body, ID: uint64(hdrInt(h, "X-Message-Id")),
		EnqueuedAt: msTime(hdrInt(h, "X-Enqueued-At")), ExpiresAt: msTime(hdrInt(h, "X-Expires-At")),
		DeliveryCount: int(hdrInt(h, "X-Delivery-Count")), Receipt: h.Get("X-Receipt"),
		LeaseExpiresAt: msTime(hdrInt(h, "X-Lease-Expires-At"))}
	if m.DeliveryCount == 0 {
		m.DeliveryCount = 1
	}
	return m, true, nil
}

// Dequeue pops the oldest visible message for good, waiting up to wait
// (0..30s) for one; ok is false when none came. It is not retried once
// sent (a lost answer would lose the message).
func (c *Client) Dequeue(ctx context.Context, queue string, wait time.Duration) (Message, bool, error) {
	return c.get(ctx, queue, 0, wait)
}

// Lease takes the oldest visible message for lease (1s..12h), hidden until
// Ack, Nack or the lease's end; ok is false when none came within wait.
func (c *Client) Lease(ctx context.Context, queue string, lease, wait time.Duration) (Message, bool, error) {
	if lease <= 0 {
		return Message{}, false, fmt.Errorf("mqueue: lease on %s: the lease must be positive", queue)
	}
	return c.get(ctx, queue, lease, wait)
}

type wireMessage struct {
	ID             uint64  `json:"id"`
	Body           *string `json:"body"`
	BodyBase64     *string `json:"body_base64"`
	EnqueuedAt     int64   `json:"enqueued_at"`
	ExpiresAt      int64   `json:"expires_at"`
	DeliveryCount  int     `json:"delivery_count"`
	Receipt        string  `json:"receipt"`
	LeaseExpiresAt int64   `json:"lease_expires_at"`
	State          string  `json:"state"`
	VisibleAt      int64   `json:"visible_at"`
}

func decodeMessages(queue string, body []byte) ([]Message, uint64, error) {
	var out struct {
		Messages []wireMessage `json:"messages"`
		Next     uint64        `json:"next"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, 0, fmt.Errorf("mqueue: messages of %s: bad answer: %w", queue, err)
	}
	ms := make([]Message, len(out.Messages))
	for i, w := range out.Messages {
		m := Message{Queue: queue, ID: w.ID, EnqueuedAt: msTime(w.EnqueuedAt), ExpiresAt: msTime(w.ExpiresAt),
			DeliveryCount: w.DeliveryCount, Receipt: w.Receipt, LeaseExpiresAt: msTime(w.LeaseExpiresAt),
			State: w.State, VisibleAt: msTime(w.VisibleAt)}
		switch {
		case w.Body != nil:
			m.Body = []byte(*w.Body)
		case w.BodyBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*w.BodyBase64)
			if err != nil {
				return nil, 0, fmt.Errorf("mqueue: message %d of %s: bad body_base64: %w", w.ID, queue, err)
			}
			m.Body = b
		}
		ms[i] = m
	}
	return ms, out.Next, nil
}

func (c *Client) getBatch(ctx context.Context, queue string, max int, lease, wait time.Duration) ([]Message, error) {
	q := url.Values{"max": {strconv.Itoa(max)}}
	if lease > 0 {
		q.Set("lease", seconds(lease))
	}
	if wait > 0 {
		q.Set("wait", seconds(wait))
	}
	resp, body, err := c.do(ctx, request{method: http.MethodGet, path: queuePath(queue) + "/batch", query: q, policy: retryAnswered})
	if err != nil || resp.StatusCode == http.StatusNoContent {
		return nil, err
	}
	ms, _, err := decodeMessages(queue, body)
	return ms, err
}

// DequeueBatch pops up to max (1..1000) messages for good in one request;
// none (nil) when none came within wait. Not retried once sent.
func (c *Client) DequeueBatch(ctx context.Context, queue string, max int, wait time.Duration) ([]Message, error) {
	return c.getBatch(ctx, queue, max, 0, wait)
}

// LeaseBatch leases up to max messages, each with its own Receipt.
func (c *Client) LeaseBatch(ctx context.Context, queue string, max int, lease, wait time.Duration) ([]Message, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("mqueue: lease on %s: the lease must be positive", queue)
	}
	return c.getBatch(ctx, queue, max, lease, wait)
}

// Ack ends a lease for good. ErrLeaseExpired if it is no longer running.
func (c *Client) Ack(ctx context.Context, queue, receipt string) error {
	_, _, err := c.do(ctx, request{method: http.MethodPost, path: queuePath(queue) + "/ack",
		header: http.Header{"X-Receipt": {receipt}}, policy: retryAlways})
	return err
}

// Nack makes a leased message visible again after delay (0: at once).
func (c *Client) Nack(ctx context.Context, queue, receipt string, delay time.Duration) error {
	q := url.Values{}
	if delay > 0 {
		q.Set("delay", seconds(delay))
	}
	_, _, err := c.do(ctx, request{method: http.MethodPost, path: queuePath(queue) + "/nack", query: q,
		header: http.Header{"X-Receipt": {receipt}}, policy: retryAnswered})
	return err
}

// Extend makes the lease end lease from now and returns the new end.
func (c *Client) Extend(ctx context.Context, queue, receipt string, lease time.Duration) (time.Time, error) {
	resp, _, err := c.do(ctx, request{method: http.MethodPost, path: queuePath(queue) + "/extend",
		query: url.Values{"lease": {seconds(lease)}}, header: http.Header{"X-Receipt": {receipt}}, policy: retryAlways})
	if err != nil {
		return time.Time{}, err
	}
	return msTime(hdrInt(resp.Header, "X-Lease-Expires-At")), nil
}

// PeekOptions page a Peek: From 0 is the oldest message not done, Max 0 the
// server's default (10).
type PeekOptions struct {
	From uint64
	Max  int
}

// Peek returns messages without taking them, and the From of the next page
// (0 when the page was not full).
func (c *Client) Peek(ctx context.Context, queue string, o PeekOptions) ([]Message, uint64, error) {
	q := url.Values{}
	if o.From > 0 {
		q.Set("from", strconv.FormatUint(o.From, 10))
	}
	if o.Max > 0 {
		q.Set("max", strconv.Itoa(o.Max))
	}
	_, body, err := c.do(ctx, request{method: http.MethodGet, path: queuePath(queue) + "/peek", query: q, policy: retryAlways})
	if err != nil {
		return nil, 0, err
	}
	return decodeMessages(queue, body)
}

// Stats are a queue's counters (GET /api/stats/{name}).
type Stats struct {
	Queue             string `json:"queue"`
	Depth             int64  `json:"depth"`
	NextID            uint64 `json:"next_id"`
	ReadID            uint64 `json:"read_id"`
	EnqueuedTotal     uint64 `json:"enqueued_total"`
	DequeuedTotal     uint64 `json:"dequeued_total"`
	ExpiredTotal      uint64 `json:"expired_total"`
	Segments          int    `json:"segments"`
	DiskBytes         int64  `json:"disk_bytes"`
	OldestEnqueuedAt  int64  `json:"oldest_enqueued_at"`
	InFlight          int64  `json:"in_flight"`
	Delayed           int64  `json:"delayed"`
	DeadLetteredTotal uint64 `json:"dead_lettered_total"`
	PurgedTotal       uint64 `json:"purged_total"`
	RedrivenTotal     uint64 `json:"redriven_total"`
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	_, body, err := c.do(ctx, request{method: http.MethodGet, path: path, query: q, policy: retryAlways})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("mqueue: GET %s: bad answer: %w", path, err)
	}
	return nil
}

// Stats returns one queue's stats; ErrQueueNotFound for an unknown queue.
func (c *Client) Stats(ctx context.Context, queue string) (Stats, error) {
	var s Stats
	err := c.getJSON(ctx, "/api/stats/"+url.PathEscape(queue), nil, &s)
	return s, err
}

// AllStats returns the stats of every queue.
func (c *Client) AllStats(ctx context.Context) ([]Stats, error) {
	var out struct {
		Queues []Stats `json:"queues"`
	}
	err := c.getJSON(ctx, "/api/stats", nil, &out)
	return out.Queues, err
}

// QueueInfo is one row of Queues.
type QueueInfo struct {
	Name        string `json:"name"`
	Depth       int64  `json:"depth"`
	InFlight    int64  `json:"in_flight"`
	Delayed     int64  `json:"delayed"`
	Unavailable bool   `json:"unavailable,omitempty"`
}

// Queues returns up to limit (0: the server's 1000) queues named after
// after, in name order, and the after of the next page ("" when none).
func (c *Client) Queues(ctx context.Context, after string, limit int) ([]QueueInfo, string, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Queues []QueueInfo `json:"queues"`
		Next   string      `json:"next"`
	}
	err := c.getJSON(ctx, "/api/queues", q, &out)
	return out.Queues, out.Next, err
}

func (c *Client) postCount(ctx context.Context, path string, q url.Values, field string) (int64, error) {
	_, body, err := c.do(ctx, request{method: http.MethodPost, path: path, query: q, policy: retryAnswered})
	if err != nil {
		return 0, err
	}
	var out map[string]int64
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("mqueue: POST %s: bad answer: %w", path, err)
	}
	return out[field], nil
}

// Purge removes every current message of queue and returns how many.
func (c *Client) Purge(ctx context.Context, queue string) (int64, error) {
	return c.postCount(ctx, queuePath(queue)+"/purge", nil, "purged")
}

// Redrive moves up to max (0: all) visible messages of dlq ("NAME.dlq")
// back to NAME and returns how many.
func (c *Client) Redrive(ctx context.Context, dlq string, max int) (int64, error) {
	q := url.Values{}
	if max > 0 {
		q.Set("max", strconv.Itoa(max))
	}
	return c.postCount(ctx, queuePath(dlq)+"/redrive", q, "redriven")
}

// Delete removes queue and all its messages.
func (c *Client) Delete(ctx context.Context, queue string) error {
	_, _, err := c.do(ctx, request{method: http.MethodDelete, path: queuePath(queue), policy: retryAnswered})
	return err
}
