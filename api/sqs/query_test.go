package sqs_test

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/mqueue/mqueue/api/sqs"
)

// The XML shapes of the query protocol, as botocore and the older SDKs
// parse them (element names from the SQS 2012-11-05 WSDL).
type (
	xmlMeta struct {
		RequestID string `xml:"ResponseMetadata>RequestId"`
	}
	xmlAttr struct {
		Name  string
		Value string
	}
	xmlMsgAttr struct {
		Name  string
		Value struct {
			StringValue string
			BinaryValue string
			DataType    string
		}
	}
	xmlMessage struct {
		MessageID              string `xml:"MessageId"`
		ReceiptHandle          string
		MD5OfBody              string
		Body                   string
		Attribute              []xmlAttr
		MD5OfMessageAttributes string
		MessageAttribute       []xmlMsgAttr
	}
	xmlBatchError struct {
		ID          string `xml:"Id"`
		SenderFault bool
		Code        string
		Message     string
	}
	xmlResult struct {
		XMLName   xml.Name
		QueueURLs []string     `xml:"QueueUrl"`
		Attrs     []xmlAttr    `xml:"Attribute"`
		MessageID string       `xml:"MessageId"`
		MD5Body   string       `xml:"MD5OfMessageBody"`
		MD5Attrs  string       `xml:"MD5OfMessageAttributes"`
		Messages  []xmlMessage `xml:"Message"`
		SendOK    []struct {
			ID        string `xml:"Id"`
			MessageID string `xml:"MessageId"`
			MD5Body   string `xml:"MD5OfMessageBody"`
		} `xml:"SendMessageBatchResultEntry"`
		DeleteOK []struct {
			ID string `xml:"Id"`
		} `xml:"DeleteMessageBatchResultEntry"`
		ChangeOK []struct {
			ID string `xml:"Id"`
		} `xml:"ChangeMessageVisibilityBatchResultEntry"`
		Failed []xmlBatchError `xml:"BatchResultErrorEntry"`
	}
	xmlResponse struct {
		XMLName xml.Name
		xmlMeta
		Result xmlResult `xml:",any"`
	}
	xmlError struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Error   struct {
			Type    string
			Code    string
			Message string
		}
		RequestID string `xml:"RequestId"`
	}
)

// query posts a query-protocol form to path of ts.
func query(t *testing.T, ts *testServer, path string, form url.Values) (int, []byte) {
	t.Helper()
	form.Set("Version", "2012-11-05")
	req, err := http.NewRequest(http.MethodPost, ts.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "text/xml" {
		t.Fatalf("%s: Content-Type %q", form.Get("Action"), ct)
	}
	return resp.StatusCode, b
}

// queryOK posts form and parses the 200 reply <ActionResponse>.
func queryOK(t *testing.T, ts *testServer, path string, form url.Values) xmlResult {
	t.Helper()
	status, b := query(t, ts, path, form)
	if status != http.StatusOK {
		t.Fatalf("%s: %d %s", form.Get("Action"), status, b)
	}
	var r xmlResponse
	if err := xml.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: reply is not XML: %v\n%s", form.Get("Action"), err, b)
	}
	if r.XMLName.Local != form.Get("Action")+"Response" || r.XMLName.Space != "http://queue.amazonaws.com/doc/2012-11-05/" || r.RequestID == "" ||
		(r.Result.XMLName.Local != "" && r.Result.XMLName.Local != form.Get("Action")+"Result") {
		t.Fatalf("%s: reply element %v, request id %q\n%s", form.Get("Action"), r.XMLName, r.RequestID, b)
	}
	return r.Result
}

// queryErr posts form and parses the error reply.
func queryErr(t *testing.T, ts *testServer, path string, form url.Values, status int, code string) xmlError {
	t.Helper()
	got, b := query(t, ts, path, form)
	var e xmlError
	if err := xml.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: error reply is not XML: %v\n%s", form.Get("Action"), err, b)
	}
	if got != status || e.Error.Code != code || e.Error.Type != "Sender" || e.RequestID == "" || e.Error.Message == "" {
		t.Fatalf("%s: %d %+v, want %d %s\n%s", form.Get("Action"), got, e, status, code, b)
	}
	return e
}

func TestQueryProtocol(t *testing.T) {
	ts := startServer(t, serverOpts{})
	r := queryOK(t, ts, "/", url.Values{"Action": {"CreateQueue"}, "QueueName": {"qp"},
		"Attribute.1.Name": {"VisibilityTimeout"}, "Attribute.1.Value": {"40"}})
	qurl := ts.url + "/000000000000/qp"
	if len(r.QueueURLs) != 1 || r.QueueURLs[0] != qurl {
		t.Fatalf("CreateQueue QueueUrl = %q", r.QueueURLs)
	}
	queryOK(t, ts, "/", url.Values{"Action": {"CreateQueue"}, "QueueName": {"qp-2"}})
	if r := queryOK(t, ts, "/", url.Values{"Action": {"GetQueueUrl"}, "QueueName": {"qp"}}); len(r.QueueURLs) != 1 || r.QueueURLs[0] != qurl {
		t.Fatalf("GetQueueUrl = %q", r.QueueURLs)
	}
	if r := queryOK(t, ts, "/", url.Values{"Action": {"ListQueues"}, "QueueNamePrefix": {"qp"}}); len(r.QueueURLs) != 2 || r.QueueURLs[0] != qurl {
		t.Fatalf("ListQueues = %v", r.QueueURLs)
	}
	r = queryOK(t, ts, "/", url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {qurl}, "AttributeName.1": {"VisibilityTimeout"}, "AttributeName.2": {"QueueArn"}})
	if len(r.Attrs) != 2 || r.Attrs[0] != (xmlAttr{"QueueArn", "arn:aws:sqs:us-east-1:000000000000:qp"}) || r.Attrs[1] != (xmlAttr{"VisibilityTimeout", "40"}) {
		t.Fatalf("GetQueueAttributes = %+v", r.Attrs)
	}
	queryOK(t, ts, "/", url.Values{"Action": {"SetQueueAttributes"}, "QueueUrl": {qurl}, "Attribute.1.Name": {"DelaySeconds"}, "Attribute.1.Value": {"0"}})

	// SendMessage: the same MD5s as the JSON protocol's.
	r = queryOK(t, ts, "/", url.Values{"Action": {"SendMessage"}, "QueueUrl": {qurl}, "MessageBody": {"q <&> body"},
		"MessageAttribute.1.Name": {"tag"}, "MessageAttribute.1.Value.DataType": {"String"}, "MessageAttribute.1.Value.StringValue": {"x&y"},
		"MessageAttribute.2.Name": {"bin"}, "MessageAttribute.2.Value.DataType": {"Binary"}, "MessageAttribute.2.Value.BinaryValue": {"AAEC"}})
	wantAttrs := map[string]types.MessageAttributeValue{
		"tag": {DataType: aws.String("String"), StringValue: aws.String("x&y")},
		"bin": {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
	}
	if r.MessageID == "" || r.MD5Body != md5hex("q <&> body") || r.MD5Attrs != attrsMD5(wantAttrs) {
		t.Fatalf("SendMessage = %+v", r)
	}
	r = queryOK(t, ts, "/", url.Values{"Action": {"SendMessageBatch"}, "QueueUrl": {qurl},
		"SendMessageBatchRequestEntry.1.Id": {"e1"}, "SendMessageBatchRequestEntry.1.MessageBody": {"b1"},
		"SendMessageBatchRequestEntry.2.Id": {"e2"}, "SendMessageBatchRequestEntry.2.MessageBody": {"b2"}, "SendMessageBatchRequestEntry.2.DelaySeconds": {"1000"},
		"SendMessageBatchRequestEntry.3.Id": {"e3"}, "SendMessageBatchRequestEntry.3.MessageBody": {"b3"},
		"SendMessageBatchRequestEntry.3.MessageAttribute.1.Name": {"n"}, "SendMessageBatchRequestEntry.3.MessageAttribute.1.Value.DataType": {"Number"},
		"SendMessageBatchRequestEntry.3.MessageAttribute.1.Value.StringValue": {"3"}})
	if len(r.SendOK) != 2 || r.SendOK[0].ID != "e1" || r.SendOK[0].MD5Body != md5hex("b1") || r.SendOK[1].ID != "e3" ||
		len(r.Failed) != 1 || r.Failed[0].ID != "e2" || !r.Failed[0].SenderFault || r.Failed[0].Code != "InvalidParameterValue" {
		t.Fatalf("SendMessageBatch = %+v", r)
	}

	// ReceiveMessage, posted to the queue URL's path as older clients do.
	r = queryOK(t, ts, "/000000000000/qp", url.Values{"Action": {"ReceiveMessage"}, "MaxNumberOfMessages": {"10"}, "WaitTimeSeconds": {"1"},
		"AttributeName.1": {"All"}, "MessageAttributeName.1": {"All"}})
	if len(r.Messages) != 3 {
		t.Fatalf("ReceiveMessage = %d messages", len(r.Messages))
	}
	m := r.Messages[0]
	if m.Body != "q <&> body" || m.MD5OfBody != md5hex(m.Body) || m.MD5OfMessageAttributes != attrsMD5(wantAttrs) || len(m.MessageAttribute) != 2 ||
		m.MessageAttribute[0].Name != "bin" || m.MessageAttribute[0].Value.BinaryValue != "AAEC" || m.MessageAttribute[0].Value.DataType != "Binary" ||
		m.MessageAttribute[1].Value.StringValue != "x&y" {
		t.Fatalf("first message = %+v", m)
	}
	counts := map[string]string{}
	for _, a := range m.Attribute {
		counts[a.Name] = a.Value
	}
	if counts["ApproximateReceiveCount"] != "1" || counts["SentTimestamp"] == "" {
		t.Fatalf("message attributes = %+v", m.Attribute)
	}
	recv := r
	r = queryOK(t, ts, "/", url.Values{"Action": {"ChangeMessageVisibilityBatch"}, "QueueUrl": {qurl},
		"ChangeMessageVisibilityBatchRequestEntry.1.Id": {"c1"}, "ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle": {recv.Messages[2].ReceiptHandle},
		"ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout": {"0"}})
	if len(r.ChangeOK) != 1 || r.ChangeOK[0].ID != "c1" || len(r.Failed) != 0 {
		t.Fatalf("ChangeMessageVisibilityBatch = %+v", r)
	}
	queryOK(t, ts, "/", url.Values{"Action": {"ChangeMessageVisibility"}, "QueueUrl": {qurl}, "ReceiptHandle": {m.ReceiptHandle}, "VisibilityTimeout": {"100"}})
	queryOK(t, ts, "/", url.Values{"Action": {"DeleteMessage"}, "QueueUrl": {qurl}, "ReceiptHandle": {m.ReceiptHandle}})
	r2 := queryOK(t, ts, "/", url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {qurl}, "WaitTimeSeconds": {"1"}})
	if len(r2.Messages) != 1 || r2.Messages[0].Body != "b3" {
		t.Fatalf("receive after the visibility change = %+v", r2.Messages)
	}
	d := queryOK(t, ts, "/", url.Values{"Action": {"DeleteMessageBatch"}, "QueueUrl": {qurl},
		"DeleteMessageBatchRequestEntry.1.Id": {"d1"}, "DeleteMessageBatchRequestEntry.1.ReceiptHandle": {recv.Messages[1].ReceiptHandle},
		"DeleteMessageBatchRequestEntry.2.Id": {"d2"}, "DeleteMessageBatchRequestEntry.2.ReceiptHandle": {r2.Messages[0].ReceiptHandle},
		"DeleteMessageBatchRequestEntry.3.Id": {"d3"}, "DeleteMessageBatchRequestEntry.3.ReceiptHandle": {"bogus"}})
	if len(d.DeleteOK) != 2 || len(d.Failed) != 1 || d.Failed[0].ID != "d3" || d.Failed[0].Code != "ReceiptHandleIsInvalid" {
		t.Fatalf("DeleteMessageBatch = %+v", d)
	}
	queryOK(t, ts, "/", url.Values{"Action": {"PurgeQueue"}, "QueueUrl": {qurl}})
	queryOK(t, ts, "/", url.Values{"Action": {"DeleteQueue"}, "QueueUrl": {qurl}})

	// Errors, in <ErrorResponse>.
	queryErr(t, ts, "/", url.Values{"Action": {"GetQueueUrl"}, "QueueName": {"qp"}}, 400, "AWS.SimpleQueueService.NonExistentQueue")
	queryErr(t, ts, "/", url.Values{"QueueName": {"qp"}}, 400, "MissingParameter")
	queryErr(t, ts, "/", url.Values{"Action": {"Frobnicate"}}, 400, "InvalidAction")
	queryErr(t, ts, "/", url.Values{"Action": {"TagQueue"}, "QueueUrl": {qurl + "-2"}}, 400, "AWS.SimpleQueueService.UnsupportedOperation")
	queryErr(t, ts, "/", url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {qurl + "-2"}, "MaxNumberOfMessages": {"ten"}}, 400, "InvalidParameterValue")
	queryErr(t, ts, "/", url.Values{"Action": {"SendMessageBatch"}, "QueueUrl": {qurl + "-2"}}, 400, "AWS.SimpleQueueService.EmptyBatchRequest")
	queryErr(t, ts, "/", url.Values{"Action": {"SendMessage"}, "QueueUrl": {"http://elsewhere/123456789012/qp-2"}, "MessageBody": {"x"}}, 404, "InvalidAddress")
}

// TestJSONErrorShape checks the JSON protocol's error reply byte for byte
// where SDKs read it: the __type and the x-amzn-query-error header.
func TestJSONErrorShape(t *testing.T) {
	ts := startServer(t, serverOpts{})
	req, _ := http.NewRequest(http.MethodPost, ts.url+"/", strings.NewReader(`{"QueueName":"missing"}`))
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", "AmazonSQS.GetQueueUrl")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || body.Type != "com.amazonaws.sqs#QueueDoesNotExist" || body.Message == "" ||
		resp.Header.Get("x-amzn-query-error") != "AWS.SimpleQueueService.NonExistentQueue;Sender" ||
		resp.Header.Get("Content-Type") != "application/x-amz-json-1.0" {
		t.Fatalf("%d %+v %v", resp.StatusCode, body, resp.Header)
	}
}

func TestQueryAuth(t *testing.T) {
	signed := startServer(t, serverOpts{sqs: sqs.Config{Credentials: map[string]string{testKeyID: testSecret}}})
	queryErr(t, signed, "/", url.Values{"Action": {"ListQueues"}}, 403, "MissingAuthenticationToken")
	denied := startServer(t, serverOpts{authToken: "tok", sqs: sqs.Config{Deny: true}})
	queryErr(t, denied, "/", url.Values{"Action": {"ListQueues"}}, 403, "AccessDenied")
}
