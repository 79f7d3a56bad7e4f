package sqs_test

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqueue/mqueue/api"
	"github.com/mqueue/mqueue/api/sqs"
	"github.com/mqueue/mqueue/engine"
	"github.com/mqueue/mqueue/metrics"
)

// apiCode is the error code an SDK call failed with ("" for no error).
func apiCode(err error) string {
	if err == nil {
		return ""
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return "not an API error: " + err.Error()
}

func createQueue(t *testing.T, c *awssqs.Client, name string, attrs map[string]string) string {
	t.Helper()
	out, err := c.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return *out.QueueUrl
}

func TestSDKQueueActions(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	url := createQueue(t, c, "orders", map[string]string{"VisibilityTimeout": "45", "DelaySeconds": "0"})
	if want := ts.url + "/000000000000/orders"; url != want {
		t.Fatalf("QueueUrl = %s, want %s", url, want)
	}
	// The same name with the same attributes is the same queue; with
	// others it is an error.
	if again := createQueue(t, c, "orders", map[string]string{"VisibilityTimeout": "45"}); again != url {
		t.Fatalf("second CreateQueue = %s", again)
	}
	_, err := c.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String("orders"), Attributes: map[string]string{"VisibilityTimeout": "10"}})
	var exists *types.QueueNameExists
	if !errors.As(err, &exists) {
		t.Fatalf("CreateQueue with other attributes: %v, want QueueNameExists", err)
	}
	for _, n := range []string{"orders-eu", "payments"} {
		createQueue(t, c, n, nil)
	}
	_, err = c.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String("jobs.fifo"), Attributes: map[string]string{"FifoQueue": "true"}})
	if code := apiCode(err); code != "AWS.SimpleQueueService.UnsupportedOperation" && code != "UnsupportedOperation" {
		t.Fatalf("FIFO CreateQueue: %v", err)
	}
	_, err = c.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String("bad/name")})
	if apiCode(err) != "InvalidParameterValue" {
		t.Fatalf("CreateQueue bad name: %v", err)
	}
	_, err = c.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String("q2"), Attributes: map[string]string{"VisibilityTimeout": "99999"}})
	if apiCode(err) != "InvalidAttributeValue" {
		t.Fatalf("CreateQueue VisibilityTimeout 99999: %v", err)
	}

	got, err := c.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String("orders")})
	if err != nil || *got.QueueUrl != url {
		t.Fatalf("GetQueueUrl = %v, %v", got, err)
	}
	_, err = c.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var missing *types.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Fatalf("GetQueueUrl of an unknown queue: %v, want QueueDoesNotExist", err)
	}

	list, err := c.ListQueues(ctx(t), &awssqs.ListQueuesInput{QueueNamePrefix: aws.String("orders")})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(list.QueueUrls) != fmt.Sprint([]string{url, url + "-eu"}) {
		t.Fatalf("ListQueues prefix orders = %v", list.QueueUrls)
	}
	page, err := c.ListQueues(ctx(t), &awssqs.ListQueuesInput{MaxResults: aws.Int32(2)})
	if err != nil || len(page.QueueUrls) != 2 || page.NextToken == nil {
		t.Fatalf("ListQueues page 1 = %v, %v", page, err)
	}
	page2, err := c.ListQueues(ctx(t), &awssqs.ListQueuesInput{MaxResults: aws.Int32(2), NextToken: page.NextToken})
	if err != nil || len(page2.QueueUrls) != 1 || !strings.HasSuffix(page2.QueueUrls[0], "/payments") || page2.NextToken != nil {
		t.Fatalf("ListQueues page 2 = %v, %v", page2, err)
	}

	if _, err := c.SetQueueAttributes(ctx(t), &awssqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"DelaySeconds": "7", "MessageRetentionPeriod": "3600"}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SetQueueAttributes(ctx(t), &awssqs.SetQueueAttributesInput{QueueUrl: &url, Attributes: map[string]string{"Bogus": "1"}})
	if apiCode(err) != "InvalidAttributeName" {
		t.Fatalf("SetQueueAttributes Bogus: %v", err)
	}
	attrs := getAttrs(t, c, url)
	for k, v := range map[string]string{
		"VisibilityTimeout": "45", "DelaySeconds": "7", "MessageRetentionPeriod": "3600",
		"ReceiveMessageWaitTimeSeconds": "0", "QueueArn": "arn:aws:sqs:us-east-1:000000000000:orders",
		"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0", "ApproximateNumberOfMessagesDelayed": "0",
	} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
		}
	}
	if n, err := strconv.ParseInt(attrs["CreatedTimestamp"], 10, 64); err != nil || time.Since(time.Unix(n, 0)) > time.Minute {
		t.Errorf("CreatedTimestamp = %q", attrs["CreatedTimestamp"])
	}

	// Attributes persist across a restart.
	ts.stop()
	ts2 := startServer(t, serverOpts{dir: ts.dir})
	c2 := ts2.sdk()
	url2 := strings.Replace(url, ts.url, ts2.url, 1)
	attrs2 := getAttrs(t, c2, url2)
	if attrs2["DelaySeconds"] != "7" || attrs2["VisibilityTimeout"] != "45" || attrs2["CreatedTimestamp"] != attrs["CreatedTimestamp"] {
		t.Fatalf("attributes after a restart = %v", attrs2)
	}

	// PurgeQueue empties; DeleteQueue removes.
	if _, err := c2.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url2, MessageBody: aws.String("x"), DelaySeconds: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.PurgeQueue(ctx(t), &awssqs.PurgeQueueInput{QueueUrl: &url2}); err != nil {
		t.Fatal(err)
	}
	if a := getAttrs(t, c2, url2); a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesDelayed"] != "0" {
		t.Fatalf("after PurgeQueue: %v", a)
	}
	if _, err := c2.DeleteQueue(ctx(t), &awssqs.DeleteQueueInput{QueueUrl: &url2}); err != nil {
		t.Fatal(err)
	}
	_, err = c2.GetQueueUrl(ctx(t), &awssqs.GetQueueUrlInput{QueueName: aws.String("orders")})
	if !errors.As(err, &missing) {
		t.Fatalf("GetQueueUrl after DeleteQueue: %v", err)
	}
	_, err = c2.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url2, MessageBody: aws.String("x")})
	if !errors.As(err, &missing) {
		t.Fatalf("SendMessage after DeleteQueue: %v", err)
	}
	// A re-created queue starts from the defaults.
	createQueue(t, c2, "orders", nil)
	if a := getAttrs(t, c2, url2); a["DelaySeconds"] != "0" || a["VisibilityTimeout"] != "30" {
		t.Fatalf("re-created queue attributes = %v", a)
	}
}

func getAttrs(t *testing.T, c *awssqs.Client, url string) map[string]string {
	t.Helper()
	out, err := c.GetQueueAttributes(ctx(t), &awssqs.GetQueueAttributesInput{QueueUrl: &url, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	return out.Attributes
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// attrsMD5 is MD5OfMessageAttributes as the SQS developer guide defines
// it, written again here (the Go SDK checks only body MD5s; the Java SDK
// and others check this one): per attribute in name order, the 4-byte
// big-endian length and bytes of the name, of the data type, a transport
// byte (1 string, 2 binary) and the length and bytes of the value.
func attrsMD5(attrs map[string]types.MessageAttributeValue) string {
	var names []string
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	var buf []byte
	lp := func(b []byte) { buf = binary.BigEndian.AppendUint32(buf, uint32(len(b))); buf = append(buf, b...) }
	for _, k := range names {
		a := attrs[k]
		lp([]byte(k))
		lp([]byte(*a.DataType))
		if a.StringValue != nil {
			buf = append(buf, 1)
			lp([]byte(*a.StringValue))
		} else {
			buf = append(buf, 2)
			lp(a.BinaryValue)
		}
	}
	return md5hex(string(buf))
}

func TestSDKSendReceiveDelete(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	url := createQueue(t, c, "work", nil)
	body := "hello, \u00e9t\u00e9 \U0001F600"
	attrs := map[string]types.MessageAttributeValue{
		"color":  {DataType: aws.String("String"), StringValue: aws.String("blue")},
		"weight": {DataType: aws.String("Number.kg"), StringValue: aws.String("12.5")},
		"blob":   {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2, 255}},
	}
	sent, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: &body, MessageAttributes: attrs})
	if err != nil {
		t.Fatalf("SendMessage: %v", err) // the SDK checks both MD5s of the reply
	}
	if *sent.MD5OfMessageBody != md5hex(body) || sent.MD5OfMessageAttributes == nil || *sent.MD5OfMessageAttributes != attrsMD5(attrs) || sent.MessageId == nil {
		t.Fatalf("SendMessage = %+v", sent)
	}
	plain, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("plain")})
	if err != nil || plain.MD5OfMessageAttributes != nil {
		t.Fatalf("SendMessage without attributes = %+v, %v", plain, err)
	}

	got, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{
		QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err) // the SDK checks MD5OfBody and MD5OfMessageAttributes
	}
	if len(got.Messages) != 2 {
		t.Fatalf("received %d messages, want 2", len(got.Messages))
	}
	m := got.Messages[0]
	if *m.Body != body || *m.MessageId != *sent.MessageId || *m.MD5OfMessageAttributes != *sent.MD5OfMessageAttributes {
		t.Fatalf("first message = %+v", m)
	}
	if len(m.MessageAttributes) != 3 || *m.MessageAttributes["color"].StringValue != "blue" ||
		*m.MessageAttributes["weight"].DataType != "Number.kg" || string(m.MessageAttributes["blob"].BinaryValue) != "\x00\x01\x02\xff" {
		t.Fatalf("message attributes = %+v", m.MessageAttributes)
	}
	if m.Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("ApproximateReceiveCount = %q", m.Attributes["ApproximateReceiveCount"])
	}
	if ms, err := strconv.ParseInt(m.Attributes["SentTimestamp"], 10, 64); err != nil || time.Since(time.UnixMilli(ms)) > time.Minute {
		t.Fatalf("SentTimestamp = %q", m.Attributes["SentTimestamp"])
	}
	if *got.Messages[1].Body != "plain" || got.Messages[1].MessageAttributes != nil {
		t.Fatalf("second message = %+v", got.Messages[1])
	}
	// Only the attributes asked for come back, with the MD5 of those.
	if _, err := c.ChangeMessageVisibility(ctx(t), &awssqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0}); err != nil {
		t.Fatal(err)
	}
	again, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, MessageAttributeNames: []string{"color"}})
	if err != nil || len(again.Messages) != 1 {
		t.Fatalf("ReceiveMessage again: %v, %v", again, err)
	}
	if len(again.Messages[0].MessageAttributes) != 1 || *again.Messages[0].ReceiptHandle == *m.ReceiptHandle ||
		*again.Messages[0].MD5OfMessageAttributes != attrsMD5(again.Messages[0].MessageAttributes) {
		t.Fatalf("second receive = %+v (receipt handles must be new on every receive)", again.Messages[0])
	}
	a := getAttrs(t, c, url)
	if a["ApproximateNumberOfMessagesNotVisible"] != "2" {
		t.Fatalf("NotVisible = %s, want 2", a["ApproximateNumberOfMessagesNotVisible"])
	}
	for _, r := range []*string{again.Messages[0].ReceiptHandle, got.Messages[1].ReceiptHandle} {
		if _, err := c.DeleteMessage(ctx(t), &awssqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: r}); err != nil {
			t.Fatalf("DeleteMessage: %v", err)
		}
	}
	// Deleting with a stale handle succeeds, as in SQS; a malformed one
	// does not.
	if _, err := c.DeleteMessage(ctx(t), &awssqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage with a stale handle: %v", err)
	}
	_, err = c.DeleteMessage(ctx(t), &awssqs.DeleteMessageInput{QueueUrl: &url, ReceiptHandle: aws.String("garbage")})
	var invalid *types.ReceiptHandleIsInvalid
	if !errors.As(err, &invalid) {
		t.Fatalf("DeleteMessage garbage: %v", err)
	}
	empty, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1, VisibilityTimeout: 0})
	if err != nil || len(empty.Messages) != 0 {
		t.Fatalf("after deleting all: %v, %v", empty, err)
	}

	// Bad input is refused with SQS's codes; nothing stored is harmed.
	for _, tc := range []struct {
		in   *awssqs.SendMessageInput
		code string
	}{
		{&awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("a\x01b")}, "InvalidMessageContents"},
		{&awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x"), DelaySeconds: 901}, "InvalidParameterValue"},
		{&awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x"), MessageAttributes: map[string]types.MessageAttributeValue{
			"a": {DataType: aws.String("Weird"), StringValue: aws.String("1")}}}, "InvalidParameterValue"},
		{&awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x"), MessageDeduplicationId: aws.String("d")}, "InvalidParameterValue"},
		{&awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(strings.Repeat("x", api.DefaultMaxMessageBytes+1))}, "InvalidParameterValue"},
	} {
		_, err := c.SendMessage(ctx(t), tc.in)
		if apiCode(err) != tc.code {
			t.Errorf("SendMessage %.40q: %v, want %s", *tc.in.MessageBody, err, tc.code)
		}
	}
	_, err = c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 11})
	if apiCode(err) != "InvalidParameterValue" {
		t.Errorf("ReceiveMessage 11: %v", err)
	}
	_, err = c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: aws.String(ts.url + "/000000000000/missing")})
	if apiCode(err) != "AWS.SimpleQueueService.NonExistentQueue" {
		t.Errorf("ReceiveMessage of a missing queue: %v", err)
	}
}

func TestSDKDelaySeconds(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	url := createQueue(t, c, "later", nil)
	if _, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("soon"), DelaySeconds: 1}); err != nil {
		t.Fatal(err)
	}
	// The engine counts a delayed message among the visible ones until its
	// cursor passes it (the figures are approximate, as in SQS).
	if a := getAttrs(t, c, url); a["ApproximateNumberOfMessagesDelayed"]+a["ApproximateNumberOfMessages"] != "01" &&
		a["ApproximateNumberOfMessagesDelayed"]+a["ApproximateNumberOfMessages"] != "10" {
		t.Fatalf("attributes with one delayed message: %v", a)
	}
	if out, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url}); err != nil || len(out.Messages) != 0 {
		t.Fatalf("a delayed message was received at once: %v, %v", out, err)
	}
	start := time.Now()
	got, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 5})
	if err != nil || len(got.Messages) != 1 {
		t.Fatalf("ReceiveMessage: %v, %v", got, err)
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("a message delayed 1 s came after %v", el)
	}
}

func TestSDKLongPoll(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	url := createQueue(t, c, "poll", map[string]string{"ReceiveMessageWaitTimeSeconds": "10"})
	done := make(chan *awssqs.ReceiveMessageOutput, 1)
	start := time.Now()
	go func() {
		// No WaitTimeSeconds: the queue's ReceiveMessageWaitTimeSeconds.
		out, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url})
		if err != nil {
			t.Errorf("ReceiveMessage: %v", err)
		}
		done <- out
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("wake")}); err != nil {
		t.Fatal(err)
	}
	out := <-done
	if out == nil || len(out.Messages) != 1 || *out.Messages[0].Body != "wake" {
		t.Fatalf("long poll = %+v", out)
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 8*time.Second {
		t.Fatalf("long poll took %v: it should wait for the send and end with it", el)
	}
	// An empty long poll waits its time out, then answers no messages.
	start = time.Now()
	out2, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	if err != nil || len(out2.Messages) != 0 || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("empty long poll: %v, %v after %v", out2, err, time.Since(start))
	}
	_, err = c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 21})
	if apiCode(err) != "InvalidParameterValue" {
		t.Fatalf("WaitTimeSeconds 21: %v", err)
	}
}

func TestSDKVisibilityExpiryAndRedelivery(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	url := createQueue(t, c, "vis", nil)
	if _, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("m")}); err != nil {
		t.Fatal(err)
	}
	first, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, VisibilityTimeout: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount}})
	if err != nil || len(first.Messages) != 1 {
		t.Fatalf("first receive: %v, %v", first, err)
	}
	// Invisible while the timeout runs...
	if out, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url}); err != nil || len(out.Messages) != 0 {
		t.Fatalf("receive during the visibility timeout: %v, %v", out, err)
	}
	// ...and back after it, counted, under a new handle.
	second, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 5, VisibilityTimeout: 30,
		AttributeNames: []types.QueueAttributeName{"All"}})
	if err != nil || len(second.Messages) != 1 {
		t.Fatalf("receive after expiry: %v, %v", second, err)
	}
	m1, m2 := first.Messages[0], second.Messages[0]
	if *m1.MessageId != *m2.MessageId || *m1.ReceiptHandle == *m2.ReceiptHandle || m2.Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("redelivery: first %+v second %+v", m1, m2)
	}
	// The expired handle can no longer change visibility.
	_, err = c.ChangeMessageVisibility(ctx(t), &awssqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m1.ReceiptHandle, VisibilityTimeout: 10})
	var notInflight *types.MessageNotInflight
	if !errors.As(err, &notInflight) {
		t.Fatalf("ChangeMessageVisibility with an expired handle: %v", err)
	}
	// Extending the live one keeps it hidden past its first timeout.
	if _, err := c.ChangeMessageVisibility(ctx(t), &awssqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: m2.ReceiptHandle, VisibilityTimeout: 1}); err != nil {
		t.Fatal(err)
	}
	third, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 5})
	if err != nil || len(third.Messages) != 1 || *third.Messages[0].MessageId != *m1.MessageId {
		t.Fatalf("receive after the changed timeout: %v, %v", third, err)
	}
}

func TestSDKDeadLetterAfterMaxReceiveCount(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	dlqURL := createQueue(t, c, "work-dead", nil)
	arn := getAttrs(t, c, dlqURL)["QueueArn"]
	url := createQueue(t, c, "work", map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + arn + `","maxReceiveCount":"2"}`,
	})
	_, err := c.CreateQueue(ctx(t), &awssqs.CreateQueueInput{QueueName: aws.String("bad-redrive"), Attributes: map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:x","maxReceiveCount":0}`}})
	if apiCode(err) != "InvalidAttributeValue" {
		t.Fatalf("maxReceiveCount 0: %v", err)
	}
	if _, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("poison"),
		MessageAttributes: map[string]types.MessageAttributeValue{"k": {DataType: aws.String("String"), StringValue: aws.String("v")}}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		out, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 2})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("receive %d: %v, %v", i, out, err)
		}
		// Give it back at once, as a failed consumer would.
		if _, err := c.ChangeMessageVisibility(ctx(t), &awssqs.ChangeMessageVisibilityInput{QueueUrl: &url, ReceiptHandle: out.Messages[0].ReceiptHandle}); err != nil {
			t.Fatal(err)
		}
	}
	// The third receive would pass maxReceiveCount: the message moves.
	out, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 0 {
		t.Fatalf("third receive: %v, %v (want none: moved to the DLQ)", out, err)
	}
	dead, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &dlqURL, WaitTimeSeconds: 2, MessageAttributeNames: []string{"All"}})
	if err != nil || len(dead.Messages) != 1 || *dead.Messages[0].Body != "poison" || *dead.Messages[0].MessageAttributes["k"].StringValue != "v" {
		t.Fatalf("DLQ receive: %+v, %v", dead, err)
	}
	if a := getAttrs(t, c, url); a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "0" {
		t.Fatalf("source queue after the move: %v", a)
	}
}

func TestSDKBatches(t *testing.T) {
	ts := startServer(t, serverOpts{})
	c := ts.sdk()
	url := createQueue(t, c, "batch", nil)
	sent, err := c.SendMessageBatch(ctx(t), &awssqs.SendMessageBatchInput{QueueUrl: &url, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("a"), MessageBody: aws.String("one")},
		{Id: aws.String("b"), MessageBody: aws.String("bad\x02body")},
		{Id: aws.String("c"), MessageBody: aws.String("three"), MessageAttributes: map[string]types.MessageAttributeValue{
			"n": {DataType: aws.String("Number"), StringValue: aws.String("3")}}},
	}})
	if err != nil {
		t.Fatalf("SendMessageBatch: %v", err) // the SDK checks each entry's MD5s
	}
	if len(sent.Successful) != 2 || len(sent.Failed) != 1 || *sent.Failed[0].Id != "b" || !sent.Failed[0].SenderFault ||
		*sent.Failed[0].Code != "InvalidMessageContents" {
		t.Fatalf("SendMessageBatch = %+v", sent)
	}
	for _, tc := range []struct {
		entries []types.SendMessageBatchRequestEntry
		code    string
	}{
		{[]types.SendMessageBatchRequestEntry{}, "AWS.SimpleQueueService.EmptyBatchRequest"},
		{[]types.SendMessageBatchRequestEntry{{Id: aws.String("x"), MessageBody: aws.String("1")}, {Id: aws.String("x"), MessageBody: aws.String("2")}}, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"},
		{[]types.SendMessageBatchRequestEntry{{Id: aws.String("no spaces"), MessageBody: aws.String("1")}}, "AWS.SimpleQueueService.InvalidBatchEntryId"},
		{func() (e []types.SendMessageBatchRequestEntry) {
			for i := range 11 {
				e = append(e, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String("m")})
			}
			return e
		}(), "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"},
	} {
		_, err := c.SendMessageBatch(ctx(t), &awssqs.SendMessageBatchInput{QueueUrl: &url, Entries: tc.entries})
		if apiCode(err) != tc.code {
			t.Errorf("SendMessageBatch of %d entries: %v, want %s", len(tc.entries), err, tc.code)
		}
	}
	got, err := c.ReceiveMessage(ctx(t), &awssqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
	if err != nil || len(got.Messages) != 2 || *got.Messages[0].Body != "one" || *got.Messages[1].Body != "three" {
		t.Fatalf("ReceiveMessage = %+v, %v", got, err)
	}
	vis, err := c.ChangeMessageVisibilityBatch(ctx(t), &awssqs.ChangeMessageVisibilityBatchInput{QueueUrl: &url, Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
		{Id: aws.String("1"), ReceiptHandle: got.Messages[0].ReceiptHandle, VisibilityTimeout: 60},
		{Id: aws.String("2"), ReceiptHandle: aws.String("not-a-handle"), VisibilityTimeout: 60},
	}})
	if err != nil || len(vis.Successful) != 1 || len(vis.Failed) != 1 || *vis.Failed[0].Code != "ReceiptHandleIsInvalid" {
		t.Fatalf("ChangeMessageVisibilityBatch = %+v, %v", vis, err)
	}
	del, err := c.DeleteMessageBatch(ctx(t), &awssqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("first"), ReceiptHandle: got.Messages[0].ReceiptHandle},
		{Id: aws.String("second"), ReceiptHandle: got.Messages[1].ReceiptHandle},
		{Id: aws.String("bad"), ReceiptHandle: aws.String("x")},
	}})
	if err != nil || len(del.Successful) != 2 || len(del.Failed) != 1 || *del.Failed[0].Id != "bad" {
		t.Fatalf("DeleteMessageBatch = %+v, %v", del, err)
	}
	if a := getAttrs(t, c, url); a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "0" {
		t.Fatalf("after the batch delete: %v", a)
	}
}

func TestSDKSignatures(t *testing.T) {
	clock := time.Now()
	ts := startServer(t, serverOpts{sqs: sqs.Config{Credentials: map[string]string{testKeyID: testSecret}, Now: func() time.Time { return clock }}})
	good := ts.sdk()
	url := createQueue(t, good, "signed", nil)
	if _, err := good.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("ok")}); err != nil {
		t.Fatalf("signed SendMessage: %v", err)
	}
	for _, tc := range []struct {
		name   string
		c      *awssqs.Client
		code   string
		before func()
	}{
		{"wrong secret", ts.client(testKeyID, "wrong"), "SignatureDoesNotMatch", nil},
		{"unknown key", ts.client("AKIDUNKNOWN", testSecret), "InvalidClientTokenId", nil},
		{"clock skew", good, "RequestExpired", func() { clock = time.Now().Add(20 * time.Minute) }},
	} {
		if tc.before != nil {
			tc.before()
		}
		_, err := tc.c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("refused")})
		if apiCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	clock = time.Now()
	if a := getAttrs(t, good, url); a["ApproximateNumberOfMessages"] != "1" {
		t.Fatalf("refused sends were stored: %v", a)
	}
}

func TestSDKDeniedWithAuthToken(t *testing.T) {
	ts := startServer(t, serverOpts{authToken: "native-token", sqs: sqs.Config{Deny: true}})
	_, err := ts.sdk().ListQueues(ctx(t), &awssqs.ListQueuesInput{})
	if apiCode(err) != "AccessDenied" {
		t.Fatalf("ListQueues on a denied SQS API: %v", err)
	}
}

// --sqs-public-url: queue URLs use it, and requests naming it work.
func TestSDKPublicURL(t *testing.T) {
	ts := startServer(t, serverOpts{sqs: sqs.Config{PublicURL: "https://mq.example.com/"}})
	c := ts.sdk()
	url := createQueue(t, c, "pub", nil)
	if url != "https://mq.example.com/000000000000/pub" {
		t.Fatalf("QueueUrl = %s", url)
	}
	if _, err := c.SendMessage(ctx(t), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("x")}); err != nil {
		t.Fatalf("SendMessage with the public URL: %v", err)
	}
}

// The HTTP metrics label SQS requests by action, a bounded set.
func TestSQSMetricsByAction(t *testing.T) {
	reg := prometheus.NewRegistry()
	eng, err := engine.Open(engine.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv, err := api.New(api.Config{SQS: &sqs.Config{}}, eng, reg, metrics.NewHTTP(reg))
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	post := func(target, body string) {
		r := httptest.NewRequest(http.MethodPost, "http://h/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-amz-json-1.0")
		r.Header.Set("X-Amz-Target", target)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	post("AmazonSQS.CreateQueue", `{"QueueName":"m"}`)
	post("AmazonSQS.SendMessage", `{"QueueUrl":"http://h/000000000000/m","MessageBody":"x"}`)
	post("AmazonSQS.Bogus"+strings.Repeat("x", 100), `{}`)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, f := range fams {
		if f.GetName() != "mqueue_http_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					routes[l.GetValue()] = true
				}
			}
		}
	}
	for _, want := range []string{"sqs:CreateQueue", "sqs:SendMessage", "sqs:invalid"} {
		if !routes[want] {
			t.Errorf("no route label %q in %v", want, routes)
		}
	}
}
