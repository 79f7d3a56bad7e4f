package sqs_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/mqueue/mqueue/api/sqs"
	"github.com/mqueue/mqueue/engine"
)

// fuzzActions are the actions FuzzSQS sends bodies to.
var fuzzActions = []string{
	"CreateQueue", "GetQueueUrl", "ListQueues", "GetQueueAttributes", "SetQueueAttributes",
	"SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
	"ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "PurgeQueue", "DeleteQueue", "Nope",
}

// FuzzSQS sends arbitrary bodies to every action in both protocols: the
// answer is never a 5xx (nothing here is the server's fault), and the
// message stored before is still there, whole.
func FuzzSQS(f *testing.F) {
	f.Add(uint8(5), false, []byte(`{"QueueUrl":"http://h/000000000000/fz","MessageBody":"x","MessageAttributes":{"a":{"DataType":"String","StringValue":"v"}}}`))
	f.Add(uint8(6), false, []byte(`{"QueueUrl":"http://h/000000000000/fz","Entries":[{"Id":"a","MessageBody":"x"},{"Id":"a"}]}`))
	f.Add(uint8(7), false, []byte(`{"QueueUrl":"http://h/000000000000/fz","MaxNumberOfMessages":10,"VisibilityTimeout":0}`))
	f.Add(uint8(0), true, []byte(`Action=CreateQueue&QueueName=fz2&Attribute.1.Name=RedrivePolicy&Attribute.1.Value=%7B%7D`))
	f.Add(uint8(5), true, []byte(`Action=SendMessage&QueueUrl=http://h/000000000000/fz&MessageBody=y&MessageAttribute.1.Name=b&MessageAttribute.1.Value.DataType=Binary&MessageAttribute.1.Value.BinaryValue=%%%`))
	f.Add(uint8(9), true, []byte(`Action=DeleteMessageBatch&QueueUrl=http://h/000000000000/fz&DeleteMessageBatchRequestEntry.99999999999999999999.Id=x`))
	f.Add(uint8(4), false, []byte(`{"QueueUrl":"http://h/000000000000/fz","Attributes":{"MaximumMessageSize":"-1"}}`))

	dir := filepath.Join(f.TempDir(), "data")
	eng, err := engine.Open(engine.Options{Dir: dir, Fsync: engine.FsyncNever})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = eng.Close() })
	svc := sqs.New(sqs.Config{MaxMessageBytes: 1 << 16}, func() *engine.Engine { return eng })
	if _, err := eng.Enqueue(context.Background(), "keep-7f3a9c21e5", []byte("precious"), engine.EnqueueOptions{}); err != nil {
		f.Fatal(err)
	}
	if _, err := eng.CreateQueue("fz"); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, action uint8, query bool, body []byte) {
		name := fuzzActions[int(action)%len(fuzzActions)]
		r := httptest.NewRequest(http.MethodPost, "http://h/", bytes.NewReader(body))
		if query {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			r.Header.Set("Content-Type", "application/x-amz-json-1.0")
			r.Header.Set("X-Amz-Target", "AmazonSQS."+name)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no long polls: a receive returns what is there
		w := httptest.NewRecorder()
		svc.Handle(ctx, w, r, body)
		if w.Code >= 500 {
			t.Fatalf("%s (query %v) %q: %d %s", name, query, body, w.Code, w.Body)
		}
		if st, ok := eng.Stats("keep-7f3a9c21e5"); !ok || st.Depth != 1 {
			t.Fatalf("the queue no SQS call names changed: %+v %v", st, ok)
		}
	})
}
