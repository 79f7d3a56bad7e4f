package api

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openAPISpec is the OpenAPI 3.1 description of the native API
// (api/openapi.yaml), embedded in the binary and served at GET /openapi.yaml.
// It is never modified.
//
//go:embed openapi.yaml
var openAPISpec []byte

// openAPI serves openAPISpec. The route is open (no token, no engine
// needed): the spec holds no data, and a client may fetch it during recovery.
func (s *Server) openAPI(c *gin.Context) {
	c.Data(http.StatusOK, "application/openapi+yaml", openAPISpec)
}
