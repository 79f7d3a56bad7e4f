package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// routeUnmatched is the route label of requests that matched no route, so
// that scanners cannot blow up the label cardinality with raw paths.
const routeUnmatched = "unmatched"

// observe records every request in the HTTP metrics, labelled by route
// template. It runs first so that it sees the final status, panics included.
func (s *Server) observe(c *gin.Context) {
	start := time.Now()
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = routeUnmatched
		if a := c.GetString(sqsActionKey); a != "" {
			route = "sqs:" + a // the SQS API (api/sqsroute.go), by action: a bounded set
		}
	}
	d := time.Since(start)
	status := c.Writer.Status()
	s.httpm.Observe(route, methodLabel(c.Request.Method), status, d)
	if s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		s.log.Debug("request", "method", c.Request.Method, "route", route, "status", status, "duration", d)
	}
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodHead, http.MethodPut, http.MethodDelete,
		http.MethodPatch, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// recoverPanic turns a panic in a handler into 500 INTERNAL and a log line
// with the stack, instead of a dropped connection.
func (s *Server) recoverPanic(c *gin.Context) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v == http.ErrAbortHandler { //nolint:errorlint // sentinel panic value, compared as net/http does
			panic(v)
		}
		s.log.Error("panic serving request", "method", c.Request.Method, "route", c.FullPath(),
			"panic", v, "stack", string(debug.Stack()))
		if c.Writer.Written() {
			c.Abort()
			return
		}
		abortError(c, http.StatusInternalServerError, CodeInternal, "internal error; see the server log")
	}()
	c.Next()
}

// gate answers 503 SHUTTING_DOWN once the drain grace is over.
func (s *Server) gate(c *gin.Context) {
	if s.closing.Load() {
		abortShuttingDown(c)
	}
}

// requireEngine answers 503 NOT_READY while the engine is still recovering.
func (s *Server) requireEngine(c *gin.Context) {
	if s.eng.Load() == nil {
		c.Header("Retry-After", retryAfter)
		abortError(c, http.StatusServiceUnavailable, CodeNotReady, "the server is still opening its data directory; retry shortly")
	}
}

// auth checks "Authorization: Bearer <token>" in constant time.
func (s *Server) auth(c *gin.Context) {
	tok, ok := bearerToken(c.Request.Header.Get("Authorization"))
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) != 1 || !ok {
		c.Header("WWW-Authenticate", "Bearer")
		abortError(c, http.StatusUnauthorized, CodeUnauthorized, "a valid \"Authorization: Bearer <token>\" header is required")
	}
}

// bearerToken extracts the token of a Bearer Authorization header; the
// scheme is case-insensitive (RFC 9110).
func bearerToken(h string) (string, bool) {
	const scheme = "Bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	tok := strings.TrimLeft(h[len(scheme):], " ")
	return tok, tok != ""
}
