package api

import (
	"embed"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// consoleFiles are the web console's files, built into the binary. They hold
// no data: the page reads everything through /api with the operator's token.
//
//go:embed ui/index.html ui/app.js ui/style.css
var consoleFiles embed.FS

// consoleTypes maps each console file to its Content-Type; a name not in it
// is 404.
var consoleTypes = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"style.css":  "text/css; charset=utf-8",
}

// ConsoleCSP is the Content-Security-Policy of every /ui response: scripts,
// styles and fetches from this origin only, no inline script or style, no
// framing, no form posting anywhere.
const ConsoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// console serves GET /ui (the page) and GET /ui/{file} (its assets).
func (s *Server) console(c *gin.Context) {
	name := strings.TrimPrefix(c.Param("file"), "/")
	if name == "" {
		name = "index.html"
	}
	typ, ok := consoleTypes[name]
	if !ok {
		abortError(c, http.StatusNotFound, CodeNotFound, "no such console file")
		return
	}
	b, err := consoleFiles.ReadFile("ui/" + name)
	if err != nil { // cannot happen: every name in consoleTypes is embedded
		abortError(c, http.StatusNotFound, CodeNotFound, "no such console file")
		return
	}
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", ConsoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	c.Data(http.StatusOK, typ, b)
}
