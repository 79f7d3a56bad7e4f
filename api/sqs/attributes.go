package sqs

import (
	"bytes"
	"crypto/md5" //nolint:gosec // SQS's checksum, not a security measure
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"sort"
	"strings"
)

// messageAttribute is one SQS message attribute. BinaryValue travels as
// base64 in JSON, which encoding/json does for []byte.
type messageAttribute struct {
	DataType         string
	StringValue      *string  `json:",omitempty"`
	BinaryValue      []byte   `json:",omitempty"`
	StringListValues []string `json:",omitempty"`
	BinaryListValues [][]byte `json:",omitempty"`
}

// Limits of message attributes, as SQS has them.
const (
	maxMessageAttributes = 10
	maxAttrNameLen       = 256
	maxDataTypeLen       = 256
)

// checkMessageAttributes validates the message attributes of a send.
func checkMessageAttributes(attrs map[string]messageAttribute) *Error {
	if len(attrs) > maxMessageAttributes {
		return newError(kindInvalidParameter, "a message has at most %d message attributes, not %d", maxMessageAttributes, len(attrs))
	}
	for name, a := range attrs {
		if name == "" || len(name) > maxAttrNameLen || strings.HasPrefix(strings.ToLower(name), "aws.") ||
			strings.HasPrefix(strings.ToLower(name), "amazon.") || strings.HasPrefix(name, ".") ||
			strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			return newError(kindInvalidParameter, "message attribute name %q is not valid", name)
		}
		for _, c := range name {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return newError(kindInvalidParameter, "message attribute name %q: only letters, digits, '_', '-' and '.'", name)
			}
		}
		if len(a.StringListValues) > 0 || len(a.BinaryListValues) > 0 {
			return newError(kindUnsupported, "message attribute %s: list values are not supported (nor by SQS)", name)
		}
		if len(a.DataType) > maxDataTypeLen {
			return newError(kindInvalidParameter, "message attribute %s: DataType too long", name)
		}
		switch base, _, _ := strings.Cut(a.DataType, "."); base {
		case "String", "Number":
			if a.StringValue == nil || *a.StringValue == "" || a.BinaryValue != nil {
				return newError(kindInvalidParameter, "message attribute %s of type %s needs a non-empty StringValue and no BinaryValue", name, a.DataType)
			}
		case "Binary":
			if len(a.BinaryValue) == 0 || a.StringValue != nil {
				return newError(kindInvalidParameter, "message attribute %s of type %s needs a non-empty BinaryValue and no StringValue", name, a.DataType)
			}
		default:
			return newError(kindInvalidParameter, "message attribute %s: DataType %q must be String, Number or Binary (optionally with a .suffix)", name, a.DataType)
		}
	}
	return nil
}

// attributesSize is the size SQS counts for message attributes against the
// message size limit: names, types and values.
func attributesSize(attrs map[string]messageAttribute) int {
	n := 0
	for name, a := range attrs {
		n += len(name) + len(a.DataType) + len(a.BinaryValue)
		if a.StringValue != nil {
			n += len(*a.StringValue)
		}
	}
	return n
}

// md5Hex is the hex MD5 of b, as MD5OfMessageBody is.
func md5Hex(b []byte) string {
	sum := md5.Sum(b) //nolint:gosec
	return hex.EncodeToString(sum[:])
}

// md5OfAttributes is MD5OfMessageAttributes: the MD5 of the attributes in
// name order, each as length-prefixed (4-byte big-endian) name and data
// type, a transport byte (1 string, 2 binary) and the length-prefixed
// value. "" when there are none.
func md5OfAttributes(attrs map[string]messageAttribute) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	h := md5.New() //nolint:gosec
	var n [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, k := range names {
		a := attrs[k]
		put([]byte(k))
		put([]byte(a.DataType))
		if a.StringValue != nil {
			h.Write([]byte{1})
			put([]byte(*a.StringValue))
		} else {
			h.Write([]byte{2})
			put(a.BinaryValue)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The envelope of a message sent with message attributes: the stored body
// is envelopeMagic, a 4-byte big-endian length L, L bytes of the
// attributes' JSON, the CRC-32C of those L bytes (4 bytes, big-endian),
// then the SQS body. A message without attributes is stored as its body
// alone, so the native API sees exactly what was sent. A native body that
// starts with the magic but whose CRC does not match is served whole.
var envelopeMagic = []byte("\x00MQA\x01")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// wrapBody returns the stored form of body with attrs.
func wrapBody(body []byte, attrs map[string]messageAttribute) ([]byte, error) {
	if len(attrs) == 0 {
		return body, nil
	}
	js, err := json.Marshal(attrs)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(envelopeMagic)+8+len(js)+len(body))
	out = append(out, envelopeMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(js)))
	out = append(out, js...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(js, castagnoli))
	return append(out, body...), nil
}

// unwrapBody splits a stored message into its SQS body and attributes.
func unwrapBody(stored []byte) ([]byte, map[string]messageAttribute) {
	if !bytes.HasPrefix(stored, envelopeMagic) {
		return stored, nil
	}
	rest := stored[len(envelopeMagic):]
	if len(rest) < 8 {
		return stored, nil
	}
	l := binary.BigEndian.Uint32(rest)
	if uint64(l)+8 > uint64(len(rest)) {
		return stored, nil
	}
	js := rest[4 : 4+l]
	if binary.BigEndian.Uint32(rest[4+l:]) != crc32.Checksum(js, castagnoli) {
		return stored, nil
	}
	var attrs map[string]messageAttribute
	if json.Unmarshal(js, &attrs) != nil {
		return stored, nil
	}
	return rest[8+l:], attrs
}

// selectAttributes picks the message attributes a ReceiveMessage asked for
// by name ("All", ".*" or a "prefix.*").
func selectAttributes(attrs map[string]messageAttribute, names []string) map[string]messageAttribute {
	if len(attrs) == 0 || len(names) == 0 {
		return nil
	}
	out := map[string]messageAttribute{}
	for _, want := range names {
		if want == "All" || want == ".*" {
			return attrs
		}
		if prefix, ok := strings.CutSuffix(want, ".*"); ok {
			for k, v := range attrs {
				if strings.HasPrefix(k, prefix+".") || k == prefix {
					out[k] = v
				}
			}
			continue
		}
		if v, ok := attrs[want]; ok {
			out[want] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
