package reliability

import (
	"bytes"
	"hash/fnv"
)

// Bodies: what is sent for a key, so that a popped body names its key and
// shows whether it came back exactly.

// relQueue is the queue the reliability tests load.
const relQueue = "rel"

// relBody is what is sent for key: the key, a bar and a filler derived from
// the key, 64..(64+spread-1) bytes in all, so that a corrupt or mixed-up
// body shows and segments fill up and rotate.
func relBody(key string, spread int) []byte {
	h := fnv.New64a()
	h.Write([]byte(key))
	sum := h.Sum64()
	n := 64 + int(sum%uint64(max(spread, 1)))
	b := make([]byte, 0, n)
	b = append(b, key...)
	b = append(b, '|')
	for len(b) < n {
		b = append(b, "abcdefghijklmnopqrstuvwxyz0123456789"[sum%36])
		sum = sum*6364136223846793005 + 1442695040888963407
	}
	return b
}

// relSpread is the body size spread of the load generators.
const relSpread = 448

// relKey returns the key of a popped body and whether the body is exactly
// what was sent for it.
func relKey(body []byte) (string, bool) { return relKeySpread(body, relSpread) }

// relKeySpread is relKey for bodies made with relBody(key, spread).
func relKeySpread(body []byte, spread int) (string, bool) {
	i := bytes.IndexByte(body, '|')
	if i <= 0 {
		return "", false
	}
	key := string(body[:i])
	return key, bytes.Equal(body, relBody(key, spread))
}
