package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/mqueue/mqueue/api/sqs"
)

// sqsActionKey holds, in the gin context of an SQS request, the action it
// was: the metrics label its route "sqs:<Action>" (observe).
const sqsActionKey = "mqueue.sqs.action"

// sqsBodySlack is what an SQS request body may hold beyond its messages:
// the JSON or form around them, attributes, receipt handles.
const sqsBodySlack = 64 << 10

// isSQSPath reports whether r is a POST to / or /{account}/{queue}.
func isSQSPath(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	p := r.URL.Path
	if p == "/" {
		return true
	}
	account, queue, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return ok && account != "" && queue != "" && !strings.Contains(queue, "/") && p[0] == '/'
}

// sqsRequest serves the SQS API (api/sqs) on POST / and POST
// /{account}/{queue} (where query-protocol clients post): the body is read
// as every request body is (bounded, in the in-flight budget), then handed
// over. The native bearer token does not apply here: the SQS API has its
// own auth (SigV4, or refused altogether, see Config.SQS).
func (s *Server) sqsRequest(c *gin.Context) {
	r := c.Request
	if !sqs.IsSQSRequest(r) {
		abortError(c, http.StatusNotFound, CodeNotFound, "no such route (SQS requests need X-Amz-Target: AmazonSQS.<Action> or a form-encoded Action)")
		return
	}
	// A message may grow three-fold in a form (percent-encoding) and a
	// batch holds up to MaxMessageBytes of them.
	limit := 4*s.cfg.MaxMessageBytes + sqsBodySlack
	body, held, outcome, err := s.readLimited(r, limit)
	defer s.release(held)
	if outcome != readDone {
		c.Header("Connection", "close") // the rest of the body is not read
		switch outcome {
		case readOverLimit:
			s.sqs.Reject(c.Writer, r, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "the request body is over the server's limit")
		case readOverloaded:
			c.Header("Retry-After", retryAfter)
			s.sqs.Reject(c.Writer, r, http.StatusServiceUnavailable, "ServiceUnavailable", "the server is receiving as many request bytes as it may hold; retry shortly")
		default:
			s.log.Debug("reading SQS request body", "err", err)
			s.sqs.Reject(c.Writer, r, http.StatusBadRequest, "InvalidRequest", "the request body could not be read to its end")
		}
		c.Abort()
		return
	}
	c.Set(sqsActionKey, s.sqs.Handle(s.pollCtx, c.Writer, r, body))
}
