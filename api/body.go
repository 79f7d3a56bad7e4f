package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// chunkBufs holds the buffers that bodies of unknown length are read into,
// so that a chunked body costs one exactly-sized allocation instead of a
// chain of doublings.
var chunkBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads the message of a POST, or answers 413 MESSAGE_TOO_LARGE,
// 400 EMPTY_MESSAGE or 400 INVALID_BODY. A declared Content-Length is judged
// before a byte is read, so an oversized upload is refused without being
// received (and without a 100 Continue); a body of unknown length is read
// through a limit of MaxMessageBytes+1. The returned slice is exactly the
// message and is handed to the engine, which may keep it.
func (s *Server) readBody(c *gin.Context) ([]byte, bool) {
	r := c.Request
	limit := s.cfg.MaxMessageBytes
	switch n := r.ContentLength; {
	case n > limit:
		tooLarge(c, limit)
		return nil, false
	case n == 0:
		emptyMessage(c)
		return nil, false
	case n > 0:
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			s.bodyError(c, err)
			return nil, false
		}
		// The read that filled buf also saw the end of the body. Closing
		// it now tells net/http so: otherwise, when the response header is
		// written, it drains the body once more through io.CopyN (an
		// allocation and a read per request) before it reuses the
		// connection.
		_ = r.Body.Close()
		return buf, true
	}

	bb := chunkBufs.Get().(*bytes.Buffer)
	defer chunkBufs.Put(bb)
	bb.Reset()
	if _, err := bb.ReadFrom(io.LimitReader(r.Body, limit+1)); err != nil {
		s.bodyError(c, err)
		return nil, false
	}
	switch {
	case int64(bb.Len()) > limit:
		tooLarge(c, limit)
		return nil, false
	case bb.Len() == 0:
		emptyMessage(c)
		return nil, false
	}
	return bytes.Clone(bb.Bytes()), true
}

func tooLarge(c *gin.Context, limit int64) {
	// The rest of the body is not read; do not let the connection be reused
	// with it still in the pipe.
	c.Header("Connection", "close")
	abortError(c, http.StatusRequestEntityTooLarge, CodeTooLarge,
		fmt.Sprintf("a message is at most %d bytes", limit))
}

func emptyMessage(c *gin.Context) {
	abortError(c, http.StatusBadRequest, CodeEmptyMessage, "a message needs at least one byte")
}

func (s *Server) bodyError(c *gin.Context, err error) {
	s.log.Debug("reading request body", "err", err)
	c.Header("Connection", "close")
	abortError(c, http.StatusBadRequest, CodeInvalidBody, "the request body could not be read to its end")
}
