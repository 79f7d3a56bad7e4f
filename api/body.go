package api

import (
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// bodyChunk is the size of the pooled buffers a body larger than it (or of
// unknown length) is read into: memory follows the bytes that arrived, one
// chunk at a time, however large the declared Content-Length.
const bodyChunk = 32 << 10

type chunk [bodyChunk]byte

// chunkPool holds the chunks between requests.
var chunkPool = sync.Pool{New: func() any { return new(chunk) }}

// chunks is a body being read into pooled chunks, each reserved in the
// server's in-flight budget before it is filled.
type chunks struct {
	list []*chunk
	arr  [4]*chunk // backing of list for bodies up to 128 KiB
	n    int64     // bytes read
	held int64     // bytes reserved in the in-flight budget
}

// readOutcome says how chunks.read ended.
type readOutcome int

const (
	readDone       readOutcome = iota // the whole body is in (n bytes)
	readOverLimit                     // more than the limit arrived
	readOverloaded                    // the in-flight budget is spent
	readFailed                        // the body could not be read to its end
)

// read reads r into pooled chunks: exactly declared bytes when declared >= 0,
// else up to EOF, stopping once more than limit bytes arrived.
func (b *chunks) read(s *Server, r io.Reader, declared, limit int64) (readOutcome, error) {
	b.list = b.arr[:0]
	want := declared
	if want < 0 {
		want = limit + 1
	}
	for b.n < want {
		if !s.reserve(bodyChunk) {
			return readOverloaded, nil
		}
		b.held += bodyChunk
		ch := chunkPool.Get().(*chunk)
		b.list = append(b.list, ch)
		m, err := io.ReadFull(r, ch[:min(want-b.n, bodyChunk)])
		b.n += int64(m)
		switch {
		case err == nil:
		case declared < 0 && (err == io.EOF || err == io.ErrUnexpectedEOF):
			return readDone, nil
		default:
			return readFailed, err
		}
	}
	if declared < 0 {
		return readOverLimit, nil
	}
	return readDone, nil
}

// bytes copies the body into one exactly-sized slice.
func (b *chunks) bytes() []byte {
	out := make([]byte, b.n)
	off := 0
	for _, ch := range b.list {
		off += copy(out[off:], ch[:])
	}
	return out
}

// free puts the chunks back in the pool; what stays reserved is b.held.
func (b *chunks) free() {
	for i, ch := range b.list {
		chunkPool.Put(ch)
		b.list[i] = nil
	}
	b.list = nil
}

// reserve takes n bytes of the in-flight body budget, or reports false
// (taking none) when that would pass Config.MaxInflightBytes. Safe for
// concurrent use.
func (s *Server) reserve(n int64) bool {
	if s.cfg.MaxInflightBytes < 0 {
		return true
	}
	if s.inflightBytes.Add(n) > s.cfg.MaxInflightBytes {
		s.inflightBytes.Add(-n)
		return false
	}
	return true
}

// release gives back n bytes taken by reserve.
func (s *Server) release(n int64) {
	if s.cfg.MaxInflightBytes >= 0 && n != 0 {
		s.inflightBytes.Add(-n)
	}
}

// readLimited reads r's body of at most limit bytes into the in-flight
// budget: a declared Content-Length over limit is refused before a byte is
// read (and without a 100 Continue); a small declared body is read into one
// exactly-sized buffer, a larger or unknown one through pooled chunks, so
// that memory follows the bytes that arrived (see chunks), not the length
// declared. On readDone the returned slice is exactly the body (nil when it
// is empty) and held bytes of it stay reserved until the caller releases
// them; on any other outcome nothing stays reserved. The SQS API
// (sqsroute.go) reads its bodies with it too.
func (s *Server) readLimited(r *http.Request, limit int64) (body []byte, held int64, outcome readOutcome, err error) {
	switch n := r.ContentLength; {
	case n > limit:
		return nil, 0, readOverLimit, nil
	case n == 0:
		return nil, 0, readDone, nil
	case n > 0 && n <= bodyChunk:
		// The common small body: one exactly-sized allocation.
		if !s.reserve(n) {
			return nil, 0, readOverloaded, nil
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			s.release(n)
			return nil, 0, readFailed, err
		}
		// The read that filled buf also saw the end of the body. Closing
		// it now tells net/http so: otherwise, when the response header is
		// written, it drains the body once more through io.CopyN (an
		// allocation and a read per request) before it reuses the
		// connection.
		_ = r.Body.Close()
		return buf, n, readDone, nil
	}
	var b chunks
	defer b.free()
	outcome, err = b.read(s, r.Body, r.ContentLength, limit)
	if outcome != readDone {
		s.release(b.held)
		return nil, 0, outcome, err
	}
	if b.n == 0 {
		s.release(b.held)
		return nil, 0, readDone, nil
	}
	if r.ContentLength > 0 {
		_ = r.Body.Close() // as above
	}
	body = b.bytes()
	// The chunks go back to the pool; the body stays reserved.
	s.release(b.held - b.n)
	return body, b.n, readDone, nil
}

// readBody reads the message of a POST (readLimited, at most
// MaxMessageBytes), or answers 413 MESSAGE_TOO_LARGE, 400 EMPTY_MESSAGE,
// 400 INVALID_BODY or 503 OVERLOADED. The returned slice is exactly the
// message and is handed to the engine, which may keep it; the caller
// releases held once the request is done.
func (s *Server) readBody(c *gin.Context) (msg []byte, held int64, ok bool) {
	limit := s.cfg.MaxMessageBytes
	msg, held, outcome, err := s.readLimited(c.Request, limit)
	switch {
	case outcome != readDone:
		s.bodyRefused(c, outcome, err, func() { tooLarge(c, limit) })
		return nil, 0, false
	case len(msg) == 0:
		emptyMessage(c)
		return nil, 0, false
	}
	return msg, held, true
}

// bodyRefused answers a body that chunks.read did not finish.
func (s *Server) bodyRefused(c *gin.Context, outcome readOutcome, err error, overLimit func()) {
	switch outcome {
	case readOverLimit:
		overLimit()
	case readOverloaded:
		overloaded(c)
	default:
		s.bodyError(c, err)
	}
}

func tooLarge(c *gin.Context, limit int64) {
	// The rest of the body is not read; do not let the connection be reused
	// with it still in the pipe.
	c.Header("Connection", "close")
	abortError(c, http.StatusRequestEntityTooLarge, CodeTooLarge,
		fmt.Sprintf("a message is at most %d bytes", limit))
}

// overloaded answers 503 OVERLOADED: the request bodies being received
// already take Config.MaxInflightBytes.
func overloaded(c *gin.Context) {
	c.Header("Connection", "close") // the rest of the body is not read
	c.Header("Retry-After", retryAfter)
	abortError(c, http.StatusServiceUnavailable, CodeOverloaded,
		"the server is receiving as many request bytes as it may hold; retry shortly")
}

func emptyMessage(c *gin.Context) {
	abortError(c, http.StatusBadRequest, CodeEmptyMessage, "a message needs at least one byte")
}

func (s *Server) bodyError(c *gin.Context, err error) {
	s.log.Debug("reading request body", "err", err)
	c.Header("Connection", "close")
	abortError(c, http.StatusBadRequest, CodeInvalidBody, "the request body could not be read to its end")
}
