package api

import (
	"fmt"
	"unicode/utf8"
)

// batchItemRaw is one message of a batch POST as parsed: the decoded bytes
// of "body" and "body_base64" (nil when absent or null) and the raw JSON of
// "ttl" and "delay" (nil when absent).
type batchItemRaw struct {
	body, bodyBase64 []byte
	// bodyOwned says body is a fresh copy rather than a slice of the input.
	bodyOwned  bool
	ttl, delay []byte
}

// maxJSONDepth bounds the nesting of a value where the batch has none (a
// "ttl" of [[[...]]]), so that a deep one is refused without deep recursion.
const maxJSONDepth = 32

// batchParser is a strict decoder of {"messages":[{...},...]}: where
// encoding/json is lenient it refuses instead — a key given twice, a key in
// another case ("BODY"), a lone UTF-16 surrogate (\ud800) or a byte that is
// not UTF-8 in a string (encoding/json turns both into U+FFFD), besides
// unknown keys and anything after the value. It is written for this one
// shape, so that the hot batch POST does not pay for reflection.
type batchParser struct {
	b   []byte
	i   int
	err string // the first problem; "" while there is none
	// tooMany is set once the batch passes MaxBatchMessages.
	tooMany bool
	items   []batchItemRaw
}

// parseBatch parses b; on failure the second value says why (for the
// INVALID_BATCH message, never echoing the body), or tooMany is set.
func parseBatch(b []byte) (items []batchItemRaw, problem string, tooMany bool) {
	p := batchParser{b: b}
	p.top()
	if p.err == "" && !p.tooMany {
		p.ws()
		if p.i < len(p.b) {
			p.err = "the body holds more than one JSON value"
		}
	}
	return p.items, p.err, p.tooMany
}

func (p *batchParser) fail(format string, args ...any) {
	if p.err == "" {
		p.err = fmt.Sprintf(format, args...)
	}
}

func (p *batchParser) syntax() {
	if p.i >= len(p.b) {
		p.fail("the JSON ends early")
		return
	}
	p.fail("invalid JSON at byte %d", p.i)
}

func (p *batchParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// next skips white space and reports the next byte (0 at the end).
func (p *batchParser) next() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// object parses the members of an object (the '{' is next), calling member
// with each decoded key; member parses the value. It stops at the first
// error.
func (p *batchParser) object(member func(key []byte)) {
	p.i++ // '{'
	if p.next() == '}' {
		p.i++
		return
	}
	for p.err == "" && !p.tooMany {
		if p.next() != '"' {
			p.syntax()
			return
		}
		key, _ := p.str()
		if p.err != "" {
			return
		}
		if p.next() != ':' {
			p.syntax()
			return
		}
		p.i++
		p.ws()
		member(key)
		if p.err != "" || p.tooMany {
			return
		}
		switch p.next() {
		case ',':
			p.i++
		case '}':
			p.i++
			return
		default:
			p.syntax()
			return
		}
	}
}

func (p *batchParser) top() {
	if p.next() != '{' {
		if p.i < len(p.b) {
			p.fail("the body must be a JSON object")
			return
		}
		p.syntax()
		return
	}
	seen := false
	p.object(func(key []byte) {
		if string(key) != "messages" {
			p.fail("unknown field %q", truncKey(key))
			return
		}
		if seen {
			p.fail(`"messages" is given twice`)
			return
		}
		seen = true
		p.messages()
	})
}

func (p *batchParser) messages() {
	switch p.next() {
	case 'n':
		p.literal("null")
		return
	case '[':
	default:
		p.fail(`"messages" must be a JSON array`)
		return
	}
	p.i++
	if p.next() == ']' {
		p.i++
		return
	}
	for p.err == "" {
		if len(p.items) == MaxBatchMessages {
			p.tooMany = true
			return
		}
		p.item()
		if p.err != "" {
			return
		}
		switch p.next() {
		case ',':
			p.i++
		case ']':
			p.i++
			return
		default:
			p.syntax()
			return
		}
	}
}

// Bits of the keys an item has given, to refuse a repeat.
const (
	keyBody = 1 << iota
	keyBodyBase64
	keyTTL
	keyDelay
)

func (p *batchParser) item() {
	n := len(p.items)
	if p.next() != '{' {
		p.fail("message %d must be a JSON object", n)
		return
	}
	var it batchItemRaw
	var seen int
	p.object(func(key []byte) {
		var bit int
		switch string(key) {
		case "body":
			bit = keyBody
		case "body_base64":
			bit = keyBodyBase64
		case "ttl":
			bit = keyTTL
		case "delay":
			bit = keyDelay
		default:
			p.fail("message %d: unknown field %q", n, truncKey(key))
			return
		}
		if seen&bit != 0 {
			p.fail("message %d: %q is given twice", n, key)
			return
		}
		seen |= bit
		switch bit {
		case keyBody, keyBodyBase64:
			if p.next() == 'n' {
				p.literal("null") // null is absent, as encoding/json has it
				return
			}
			if p.next() != '"' {
				p.fail("message %d: %q must be a JSON string", n, key)
				return
			}
			s, owned := p.str()
			if bit == keyBody {
				it.body, it.bodyOwned = s, owned
			} else {
				it.bodyBase64 = s
			}
		case keyTTL:
			it.ttl = p.rawValue()
		case keyDelay:
			it.delay = p.rawValue()
		}
	})
	if p.err == "" {
		p.items = append(p.items, it)
	}
}

// truncKey bounds an unknown key quoted in an error message.
func truncKey(k []byte) []byte {
	if len(k) > 64 {
		return k[:64]
	}
	return k
}

func (p *batchParser) literal(lit string) {
	if len(p.b)-p.i < len(lit) || string(p.b[p.i:p.i+len(lit)]) != lit {
		p.syntax()
		return
	}
	p.i += len(lit)
}

// rawValue checks one JSON value and returns its bytes.
func (p *batchParser) rawValue() []byte {
	start := p.i
	p.value(0)
	if p.err != "" {
		return nil
	}
	return p.b[start:p.i]
}

// value checks any JSON value (white space before it is skipped).
func (p *batchParser) value(depth int) {
	if depth > maxJSONDepth {
		p.fail("JSON nested deeper than %d at byte %d", maxJSONDepth, p.i)
		return
	}
	switch c := p.next(); {
	case c == '{':
		seen := map[string]bool{}
		p.object(func(key []byte) {
			if seen[string(key)] {
				p.fail("a key is given twice at byte %d", p.i)
				return
			}
			seen[string(key)] = true
			p.value(depth + 1)
		})
	case c == '[':
		p.i++
		if p.next() == ']' {
			p.i++
			return
		}
		for p.err == "" {
			p.value(depth + 1)
			if p.err != "" {
				return
			}
			switch p.next() {
			case ',':
				p.i++
			case ']':
				p.i++
				return
			default:
				p.syntax()
				return
			}
		}
	case c == '"':
		p.str()
	case c == 't':
		p.literal("true")
	case c == 'f':
		p.literal("false")
	case c == 'n':
		p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		p.number()
	default:
		p.syntax()
	}
}

// number checks a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *batchParser) number() {
	b, i := p.b, p.i
	digits := func() bool {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > s
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		p.i = i
		p.syntax()
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			p.i = i
			p.syntax()
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			p.i = i
			p.syntax()
			return
		}
	}
	p.i = i
}

// str decodes the string at p.i (its opening quote) and moves past it. The
// result is a slice of the input when the string has no escapes (owned
// false), else a new buffer. A lone surrogate escape or bytes that are not
// UTF-8 are refused: encoding/json would store them as U+FFFD.
func (p *batchParser) str() (s []byte, owned bool) {
	b := p.b
	start := p.i + 1
	i := start
	var out []byte
	for {
		if i >= len(b) {
			p.i = i
			p.fail("the JSON ends early")
			return nil, false
		}
		c := b[i]
		switch {
		case c == '"':
			p.i = i + 1
			if out == nil {
				return b[start:i], false
			}
			return out, true
		case c < 0x20:
			p.i = i
			p.fail("control character in a string at byte %d", i)
			return nil, false
		case c == '\\':
			if out == nil {
				out = append(make([]byte, 0, i-start+16), b[start:i]...)
			}
			var ok bool
			if out, i, ok = p.escape(out, i); !ok {
				return nil, false
			}
		case c < utf8.RuneSelf:
			if out != nil {
				out = append(out, c)
			}
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				p.i = i
				p.fail("a string holds bytes that are not UTF-8 at byte %d (send bytes as body_base64)", i)
				return nil, false
			}
			if out != nil {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
}

// escape decodes the escape at b[i] ('\\') onto out.
func (p *batchParser) escape(out []byte, i int) ([]byte, int, bool) {
	b := p.b
	if i+1 >= len(b) {
		p.i = i
		p.fail("the JSON ends early")
		return nil, 0, false
	}
	switch c := b[i+1]; c {
	case '"', '\\', '/':
		return append(out, c), i + 2, true
	case 'b':
		return append(out, '\b'), i + 2, true
	case 'f':
		return append(out, '\f'), i + 2, true
	case 'n':
		return append(out, '\n'), i + 2, true
	case 'r':
		return append(out, '\r'), i + 2, true
	case 't':
		return append(out, '\t'), i + 2, true
	case 'u':
		r, ok := hex4(b, i+2)
		if !ok {
			break
		}
		i += 6
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			p.i = i - 6
			p.fail("a lone UTF-16 surrogate in a string at byte %d (send bytes as body_base64)", i-6)
			return nil, 0, false
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := rune(0), false
			if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
				lo, ok = hex4(b, i+2)
			}
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				p.i = i - 6
				p.fail("a lone UTF-16 surrogate in a string at byte %d (send bytes as body_base64)", i-6)
				return nil, 0, false
			}
			r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
			i += 6
		}
		return utf8.AppendRune(out, r), i, true
	}
	p.i = i
	p.fail("invalid escape in a string at byte %d", i)
	return nil, 0, false
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if len(b)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
