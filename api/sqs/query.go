package sqs

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
)

// The query protocol: a form-encoded POST (or GET query) with Action=...,
// answered in XML. The form is turned into the JSON input of the same
// action (formInput) and the output into XML (writeXML), so both protocols
// run the same code.

// xmlNS is the namespace of every query-protocol reply.
const xmlNS = "http://queue.amazonaws.com/doc/2012-11-05/"

// requestSeq numbers replies' RequestIds.
var requestSeq atomic.Uint64

// requestID is a fresh RequestId, UUID-shaped.
func requestID() string {
	n := requestSeq.Add(1)
	return "00000000-0000-4000-8000-" + strconv.FormatUint(n%(1<<48)|1<<48, 16)[1:]
}

// serveQuery answers a query-protocol request.
func (s *Service) serveQuery(rq *request, w http.ResponseWriter, r *http.Request, body []byte) (label string) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeXMLError(w, newError(kindInvalidParameter, "the form body does not parse: %v", err))
		return "invalid"
	}
	for k, v := range r.URL.Query() {
		if _, ok := form[k]; !ok {
			form[k] = v
		}
	}
	action := form.Get("Action")
	label = actionLabel(action)
	if action == "" {
		writeXMLError(w, newError(kindMissingParameter, "the request must contain the parameter Action"))
		return label
	}
	if aerr := s.authorize(r, body); aerr != nil {
		writeXMLError(w, aerr)
		return label
	}
	// Older clients post to the queue URL instead of naming it.
	if form.Get("QueueUrl") == "" && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 1 {
		form.Set("QueueUrl", rq.base+r.URL.Path)
	}
	in, aerr := formInput(form)
	if aerr != nil {
		writeXMLError(w, aerr)
		return label
	}
	raw, err := json.Marshal(in)
	if err != nil {
		writeXMLError(w, newError(kindInternal, "encode the input: %v", err))
		return label
	}
	out, aerr := s.call(rq, action, raw)
	if aerr != nil {
		writeXMLError(w, aerr)
		return label
	}
	if ids, ok := out.(batchOutput[idResult]); ok {
		out = idBatchXML{action + "ResultEntry", ids}
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString("<" + action + `Response xmlns="` + xmlNS + `">`)
	if _, none := out.(struct{}); !none {
		// Even an empty result is wrapped: botocore looks for the element.
		b.WriteString("<" + action + "Result>" + xmlResult(out) + "</" + action + "Result>")
	}
	b.WriteString("<ResponseMetadata><RequestId>" + requestID() + "</RequestId></ResponseMetadata>")
	b.WriteString("</" + action + "Response>")
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(b.String()))
	return label
}

// writeXMLError answers e in the query protocol's shape.
func writeXMLError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.Status)
	_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<ErrorResponse xmlns="` + xmlNS + `"><Error><Type>` + e.fault() + `</Type><Code>` + esc(e.QueryCode) +
		`</Code><Message>` + esc(e.Message) + `</Message><Detail/></Error><RequestId>` + requestID() + `</RequestId></ErrorResponse>`))
}

// esc escapes s as XML character data.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// el is <name>escaped value</name>.
func el(name, value string) string { return "<" + name + ">" + esc(value) + "</" + name + ">" }

// intKeys are the integer parameters; they become JSON numbers.
var intKeys = map[string]bool{
	"DelaySeconds": true, "MaxNumberOfMessages": true, "VisibilityTimeout": true,
	"WaitTimeSeconds": true, "MaxResults": true,
}

// formInput turns a query-protocol form into the JSON input of its action:
// scalars as they are, Attribute.N.Name/Value into Attributes,
// AttributeName.N and the like into lists, MessageAttribute.N.* into
// MessageAttributes, and <Action>RequestEntry.N.* into Entries.
func formInput(form url.Values) (map[string]any, *Error) {
	in := map[string]any{}
	lists := map[string]string{ // form prefix → JSON list
		"AttributeName.":              "AttributeNames",
		"MessageAttributeName.":       "MessageAttributeNames",
		"MessageSystemAttributeName.": "MessageSystemAttributeNames",
	}
	grouped := map[string]map[int]url.Values{} // prefix → index → rest of the key
	for k, vs := range form {
		if len(vs) == 0 || k == "Action" || k == "Version" {
			continue
		}
		v := vs[0]
		if prefix, n, rest, ok := indexed(k); ok {
			if grouped[prefix] == nil {
				grouped[prefix] = map[int]url.Values{}
			}
			if grouped[prefix][n] == nil {
				grouped[prefix][n] = url.Values{}
			}
			grouped[prefix][n].Set(rest, v)
			continue
		}
		if prefix, ok := listKey(k); ok {
			if _, known := lists[prefix]; known {
				continue // read below, in index order
			}
		}
		if intKeys[k] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, newError(kindInvalidParameter, "%s must be an integer, not %q", k, v)
			}
			in[k] = n
			continue
		}
		in[k] = v
	}
	for prefix, name := range lists {
		var l []string
		for i := 1; ; i++ {
			v, ok := form[prefix+strconv.Itoa(i)]
			if !ok {
				break
			}
			l = append(l, v[0])
		}
		if l != nil {
			in[name] = l
		}
	}
	for prefix, byIndex := range grouped {
		idx := make([]int, 0, len(byIndex))
		for i := range byIndex {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		switch prefix {
		case "Attribute", "Tag":
			m := map[string]string{}
			for _, i := range idx {
				kv := byIndex[i]
				key := kv.Get("Name")
				if prefix == "Tag" {
					key = kv.Get("Key")
				}
				m[key] = kv.Get("Value")
			}
			if prefix == "Tag" {
				in["tags"] = m
			} else {
				in["Attributes"] = m
			}
		case "MessageAttribute":
			attrs, aerr := formMessageAttributes(byIndex, idx)
			if aerr != nil {
				return nil, aerr
			}
			in["MessageAttributes"] = attrs
		case "SendMessageBatchRequestEntry", "DeleteMessageBatchRequestEntry", "ChangeMessageVisibilityBatchRequestEntry":
			entries := make([]map[string]any, 0, len(idx))
			for _, i := range idx {
				e, aerr := formInput(byIndex[i])
				if aerr != nil {
					return nil, aerr
				}
				entries = append(entries, e)
			}
			in["Entries"] = entries
		}
	}
	return in, nil
}

// formMessageAttributes reads MessageAttribute.N.Name and
// MessageAttribute.N.Value.{DataType,StringValue,BinaryValue}.
func formMessageAttributes(byIndex map[int]url.Values, idx []int) (map[string]any, *Error) {
	attrs := map[string]any{}
	for _, i := range idx {
		kv := byIndex[i]
		a := map[string]any{"DataType": kv.Get("Value.DataType")}
		if v, ok := kv["Value.StringValue"]; ok {
			a["StringValue"] = v[0]
		}
		if v, ok := kv["Value.BinaryValue"]; ok {
			a["BinaryValue"] = v[0] // base64 in the form as in JSON
		}
		if _, ok := kv["Value.StringListValue.1"]; ok {
			return nil, newError(kindUnsupported, "message attribute list values are not supported")
		}
		attrs[kv.Get("Name")] = a
	}
	return attrs, nil
}

// indexed splits "Prefix.N.Rest" (N a positive integer, Rest non-empty).
func indexed(k string) (prefix string, n int, rest string, ok bool) {
	prefix, tail, ok := strings.Cut(k, ".")
	if !ok {
		return "", 0, "", false
	}
	num, rest, ok := strings.Cut(tail, ".")
	if !ok || rest == "" {
		return "", 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return "", 0, "", false
	}
	return prefix, n, rest, true
}

// listKey splits "Prefix.N" into "Prefix.".
func listKey(k string) (string, bool) {
	i := strings.LastIndexByte(k, '.')
	if i < 0 {
		return "", false
	}
	if _, err := strconv.Atoi(k[i+1:]); err != nil {
		return "", false
	}
	return k[:i+1], true
}

// xmlResult is the content of <ActionResult> for an action's output.
func xmlResult(out any) string {
	var b strings.Builder
	switch v := out.(type) {
	case queueURLOutput:
		b.WriteString(el("QueueUrl", v.QueueUrl))
	case listQueuesOutput:
		for _, u := range v.QueueUrls {
			b.WriteString(el("QueueUrl", u))
		}
		if v.NextToken != "" {
			b.WriteString(el("NextToken", v.NextToken))
		}
	case attributesOutput:
		writeAttrs(&b, "Attribute", v.Attributes)
	case sendResult:
		writeSendResult(&b, v)
	case batchOutput[sendResult]:
		for _, r := range v.Successful {
			b.WriteString("<SendMessageBatchResultEntry>")
			b.WriteString(el("Id", r.Id))
			writeSendResult(&b, r)
			b.WriteString("</SendMessageBatchResultEntry>")
		}
		writeFailures(&b, v.Failed)
	case idBatchXML:
		for _, r := range v.out.Successful {
			b.WriteString("<" + v.entry + ">" + el("Id", r.Id) + "</" + v.entry + ">")
		}
		writeFailures(&b, v.out.Failed)
	case receiveOutput:
		for _, m := range v.Messages {
			b.WriteString("<Message>")
			b.WriteString(el("MessageId", m.MessageId))
			b.WriteString(el("ReceiptHandle", m.ReceiptHandle))
			b.WriteString(el("MD5OfBody", m.MD5OfBody))
			b.WriteString(el("Body", m.Body))
			writeAttrs(&b, "Attribute", m.Attributes)
			if m.MD5OfMessageAttributes != "" {
				b.WriteString(el("MD5OfMessageAttributes", m.MD5OfMessageAttributes))
			}
			names := make([]string, 0, len(m.MessageAttributes))
			for k := range m.MessageAttributes {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				a := m.MessageAttributes[k]
				b.WriteString("<MessageAttribute>" + el("Name", k) + "<Value>")
				if a.StringValue != nil {
					b.WriteString(el("StringValue", *a.StringValue))
				}
				if a.BinaryValue != nil {
					raw, _ := json.Marshal(a.BinaryValue) // base64, quoted
					b.WriteString(el("BinaryValue", strings.Trim(string(raw), `"`)))
				}
				b.WriteString(el("DataType", a.DataType) + "</Value></MessageAttribute>")
			}
			b.WriteString("</Message>")
		}
	}
	return b.String()
}

// idBatchXML is the output of DeleteMessageBatch or
// ChangeMessageVisibilityBatch with the name of its result entries.
type idBatchXML struct {
	entry string
	out   batchOutput[idResult]
}

func writeSendResult(b *strings.Builder, r sendResult) {
	b.WriteString(el("MessageId", r.MessageId))
	b.WriteString(el("MD5OfMessageBody", r.MD5OfMessageBody))
	if r.MD5OfMessageAttributes != "" {
		b.WriteString(el("MD5OfMessageAttributes", r.MD5OfMessageAttributes))
	}
}

func writeFailures(b *strings.Builder, fs []batchFailure) {
	for _, f := range fs {
		b.WriteString("<BatchResultErrorEntry>" + el("Id", f.Id) + el("SenderFault", strconv.FormatBool(f.SenderFault)) +
			el("Code", f.Code) + el("Message", f.Message) + "</BatchResultErrorEntry>")
	}
}

// writeAttrs writes a name/value map as <tag><Name/><Value/></tag> in name
// order.
func writeAttrs(b *strings.Builder, tag string, m map[string]string) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b.WriteString("<" + tag + ">" + el("Name", k) + el("Value", m[k]) + "</" + tag + ">")
	}
}
