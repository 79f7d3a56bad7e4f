package sqs

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SigV4 verification (AWS Signature Version 4, header form), as the AWS
// SDKs and CLI sign every request. Presigned URLs (the signature in the
// query string) are not accepted.

const (
	sigAlgorithm = "AWS4-HMAC-SHA256"
	amzDateForm  = "20060102T150405Z"
	// MaxClockSkew is how far a request's X-Amz-Date may be from the
	// server's clock, as AWS allows.
	MaxClockSkew = 15 * time.Minute
)

// verify checks the SigV4 signature of r over body against the configured
// credentials.
func (s *Service) verify(r *http.Request, body []byte) *Error {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if r.URL.Query().Get("X-Amz-Signature") != "" {
			return newError(kindAccessDenied, "presigned (query-string) signatures are not accepted; sign the Authorization header")
		}
		return newError(kindMissingAuth, "the request must be signed with AWS Signature Version 4 (Authorization header)")
	}
	alg, rest, _ := strings.Cut(auth, " ")
	if alg != sigAlgorithm {
		return newError(kindIncompleteSignature, "the Authorization header must use %s", sigAlgorithm)
	}
	var cred, signed, sig string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			sig = v
		}
	}
	scopeParts := strings.Split(cred, "/")
	if cred == "" || signed == "" || sig == "" || len(scopeParts) != 5 || scopeParts[4] != "aws4_request" {
		return newError(kindIncompleteSignature, "the Authorization header needs Credential=KEY/DATE/REGION/SERVICE/aws4_request, SignedHeaders and Signature")
	}
	keyID, date, region, service := scopeParts[0], scopeParts[1], scopeParts[2], scopeParts[3]
	secret, ok := s.cfg.Credentials[keyID]
	if !ok {
		return newError(kindInvalidClientToken, "the access key id %q is not known to this server", keyID)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse(amzDateForm, amzDate)
	if err != nil {
		return newError(kindIncompleteSignature, "the request needs an X-Amz-Date header of the form %s", amzDateForm)
	}
	if skew := s.cfg.Now().Sub(t); skew > MaxClockSkew || skew < -MaxClockSkew {
		return newError(kindRequestExpired, "the request's X-Amz-Date %s is more than %v from the server's clock", amzDate, MaxClockSkew)
	}
	if date != amzDate[:8] {
		return newError(kindSignatureMismatch, "the credential scope's date %s is not the X-Amz-Date's", date)
	}
	headers := strings.Split(signed, ";")
	if !sort.StringsAreSorted(headers) || !contains(headers, "host") {
		return newError(kindIncompleteSignature, "SignedHeaders must be sorted and include host")
	}

	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payload {
		if h != "UNSIGNED-PAYLOAD" {
			return newError(kindSignatureMismatch, "X-Amz-Content-Sha256 is not the SHA-256 of the body")
		}
		payload = h
	}
	var cr strings.Builder
	cr.WriteString(r.Method + "\n")
	cr.WriteString(uriEncode(r.URL.EscapedPath(), false) + "\n")
	cr.WriteString(canonicalQuery(r) + "\n")
	for _, h := range headers {
		cr.WriteString(h + ":" + headerValue(r, h) + "\n")
	}
	cr.WriteString("\n" + signed + "\n" + payload)
	crSum := sha256.Sum256([]byte(cr.String()))
	scope := date + "/" + region + "/" + service + "/aws4_request"
	toSign := sigAlgorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crSum[:])

	k := hmacSHA256([]byte("AWS4"+secret), date)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(k, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return newError(kindSignatureMismatch, "the request signature we calculated does not match the signature you provided; check your secret access key and signing method")
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// headerValue is the canonical value of header h of r: its values trimmed,
// inner runs of spaces made one, joined by commas.
func headerValue(r *http.Request, h string) string {
	var vs []string
	switch h {
	case "host":
		vs = []string{r.Host}
	case "content-length":
		vs = r.Header.Values("Content-Length")
		if len(vs) == 0 {
			vs = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	default:
		vs = r.Header.Values(h)
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// canonicalQuery is the query string of r with keys and values
// URI-encoded and sorted.
func canonicalQuery(r *http.Request) string {
	q := r.URL.Query()
	pairs := make([]string, 0, len(q))
	for k, vs := range q {
		for _, v := range vs {
			pairs = append(pairs, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	sort.Strings(pairs)
	return strings.Join(pairs, "&")
}

// uriEncode percent-encodes every byte but the unreserved ones (and '/'
// unless encodeSlash), upper-case hex, as SigV4 does.
func uriEncode(s string, encodeSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && !encodeSlash:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}
