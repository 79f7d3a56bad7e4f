package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
)

// receiptAndQuery returns the queue name, the query and the X-Receipt of a
// POST to ack, nack or extend, or answers 400.
func receiptAndQuery(c *gin.Context) (name, receipt string, q url.Values, ok bool) {
	name, q, ok = queueAndQuery(c)
	if !ok {
		return "", "", nil, false
	}
	vs := c.Request.Header["X-Receipt"]
	if len(vs) != 1 || vs[0] == "" {
		abortError(c, http.StatusBadRequest, CodeInvalidReceipt, "give the X-Receipt header of the leased message, once")
		return "", "", nil, false
	}
	return name, vs[0], q, true
}

// ack serves POST /api/queue/{name}/ack: 204 once the ack is written (and
// fsynced as the mode says); 410 LEASE_EXPIRED when the lease is not
// running here.
func (s *Server) ack(c *gin.Context) {
	name, receipt, _, ok := receiptAndQuery(c)
	if !ok {
		return
	}
	if err := s.eng.Load().Ack(name, receipt); err != nil {
		s.engineError(c, "ack", name, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// nack serves POST /api/queue/{name}/nack?delay=N: the message is visible
// again after N seconds (at once without delay), its delivery count kept.
func (s *Server) nack(c *gin.Context) {
	name, receipt, q, ok := receiptAndQuery(c)
	if !ok {
		return
	}
	delay, ok := delayParam(c, q)
	if !ok {
		return
	}
	if err := s.eng.Load().Nack(name, receipt, time.Duration(delay)*time.Second); err != nil {
		s.engineError(c, "nack", name, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// extend serves POST /api/queue/{name}/extend?lease=N: the lease now ends
// N seconds from now; 200 with the new end in X-Lease-Expires-At and the
// body {"lease_expires_at":ms}.
func (s *Server) extend(c *gin.Context) {
	name, receipt, q, ok := receiptAndQuery(c)
	if !ok {
		return
	}
	lease, ok := leaseParam(c, q)
	if !ok {
		return
	}
	if lease == 0 {
		abortError(c, http.StatusBadRequest, CodeInvalidLease, fmt.Sprintf("extend needs ?lease=N, N in 1..%d seconds", MaxLeaseSeconds))
		return
	}
	until, err := s.eng.Load().Extend(name, receipt, lease)
	if err != nil {
		s.engineError(c, "extend", name, err)
		return
	}
	ms := until.UnixMilli()
	c.Header("X-Lease-Expires-At", strconv.FormatInt(ms, 10))
	c.JSON(http.StatusOK, gin.H{"lease_expires_at": ms})
}
