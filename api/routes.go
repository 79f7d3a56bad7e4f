package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes builds the router. Middleware order: observe (outermost, so it sees
// every final status) → recoverPanic → per group: gate → auth → requireEngine.
func (s *Server) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// A redirect would make a client re-send a POST body to a path that
	// differs from the one it asked for; an unknown path is simply 404.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	// Route on the decoded path: "a%2Fb" is then two segments and matches
	// no route, rather than a parameter holding a slash.
	r.UseRawPath = false
	r.UseEscapedPath = false
	r.RemoveExtraSlash = false
	r.ForwardedByClientIP = false

	r.Use(s.observe, s.recoverPanic)
	r.NoRoute(func(c *gin.Context) {
		// The SQS API (api/sqsroute.go) answers POST / and POST
		// /{account}/{queue}, where query-protocol clients post; it is
		// not a route so that every other method and path keeps its 404.
		if s.sqs != nil && isSQSPath(c.Request) {
			if s.gate(c); !c.IsAborted() {
				s.sqsRequest(c)
			}
			return
		}
		abortError(c, http.StatusNotFound, CodeNotFound, "no such route")
	})
	r.NoMethod(func(c *gin.Context) {
		abortError(c, http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed on this route; see the Allow header")
	})

	r.GET("/healthz", s.healthz)
	r.HEAD("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.HEAD("/readyz", s.readyz)
	r.GET("/openapi.yaml", s.openAPI) // api/openapi.go

	prom := gin.WrapH(promhttp.HandlerFor(s.gather, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	}))
	if s.cfg.MetricsAuth {
		r.GET("/metrics", s.gate, s.auth, prom)
	} else {
		r.GET("/metrics", s.gate, prom)
	}

	if !s.cfg.DisableUI {
		r.GET("/ui", s.console)
		r.GET("/ui/*file", s.console)
	}

	api := r.Group("/api", s.gate)
	if s.cfg.AuthToken != "" {
		api.Use(s.auth)
	}
	api.Use(s.requireEngine)
	api.POST("/queue", s.enqueue)
	api.POST("/queue/:name", s.enqueue)
	api.GET("/queue", s.dequeue)
	api.GET("/queue/:name", s.dequeue)
	api.POST("/queue/:name/batch", s.enqueueBatch)
	api.GET("/queue/:name/batch", s.dequeueBatch)
	api.POST("/queue/:name/ack", s.ack)
	api.POST("/queue/:name/nack", s.nack)
	api.POST("/queue/:name/extend", s.extend)
	api.GET("/stats", s.allStats)
	api.GET("/stats/:name", s.queueStats)
	api.GET("/queues", s.listQueues)
	api.DELETE("/queue/:name", s.deleteQueue)
	api.POST("/queue/:name/purge", s.purgeQueue)
	api.GET("/queue/:name/peek", s.peekQueue)
	api.POST("/queue/:name/redrive", s.redrive)
	return r
}

// healthz answers 200 for as long as the process serves: liveness only.
func (s *Server) healthz(c *gin.Context) {
	c.String(http.StatusOK, "ok")
}

// readyz answers 200 once the engine is open and until draining starts;
// load balancers take the node out on 503.
func (s *Server) readyz(c *gin.Context) {
	switch {
	case s.draining.Load():
		c.String(http.StatusServiceUnavailable, "draining")
	case s.eng.Load() == nil:
		c.String(http.StatusServiceUnavailable, "not ready")
	default:
		c.String(http.StatusOK, "ok")
	}
}
