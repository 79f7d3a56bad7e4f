package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/mqueue/mqueue/cmd/mqueue/proctest"
)

// sqsClient is an AWS SDK client of the server at base, retries off.
func sqsClient(t *testing.T, base string) *awssqs.Client {
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	return awssqs.New(awssqs.Options{
		BaseEndpoint:     aws.String(base),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKID", "secret", ""),
		RetryMaxAttempts: 1,
		HTTPClient:       hc,
	})
}

// TestSQSKill9NoAcknowledgedSendLost sends through the AWS SDK
// (SendMessage and SendMessageBatch) from several goroutines, SIGKILLs the
// server mid-load, restarts it on the same data directory and receives
// everything back: every send the SDK saw succeed is there, and nothing
// that was never sent.
func TestSQSKill9NoAcknowledgedSendLost(t *testing.T) {
	proctest.Long(t)
	bin := proctest.Build(t)
	dir := proctest.TempDir(t)
	data := dir + "/data"
	cfg := proctest.Config{Bin: bin, Data: data, LogDir: dir, Flags: []string{"--drain-grace=0"}}

	var mu sync.Mutex
	acked := map[string]bool{} // bodies whose send succeeded
	tried := map[string]bool{} // every body sent, answered or not
	const rounds = 3
	var queueURL string
	for round := 1; round <= rounds; round++ {
		cfg.Name = fmt.Sprintf("life-%d", round)
		s, _ := proctest.StartReady(t, cfg)
		c := sqsClient(t, s.Base)
		out, err := c.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String("crash")})
		if err != nil {
			t.Fatalf("round %d: CreateQueue: %v", round, err)
		}
		queueURL = *out.QueueUrl
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for n := 0; ctx.Err() == nil; n++ {
					body := fmt.Sprintf("r%d-w%d-n%d", round, w, n)
					if w%2 == 0 {
						mu.Lock()
						tried[body] = true
						mu.Unlock()
						if _, err := c.SendMessage(ctx, &awssqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: &body}); err == nil {
							mu.Lock()
							acked[body] = true
							mu.Unlock()
						}
						continue
					}
					var entries []types.SendMessageBatchRequestEntry
					mu.Lock()
					for i := range 10 {
						b := body + "-" + strconv.Itoa(i)
						tried[b] = true
						entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b)})
					}
					mu.Unlock()
					res, err := c.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: &queueURL, Entries: entries})
					if err != nil {
						continue
					}
					mu.Lock()
					for _, e := range res.Successful {
						i, _ := strconv.Atoi(*e.Id)
						acked[*entries[i].MessageBody] = true
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(1500 * time.Millisecond)
		s.Kill() // SIGKILL, mid-load
		stop()
		wg.Wait()
		mu.Lock()
		t.Logf("round %d: %d sends acknowledged so far, %d tried", round, len(acked), len(tried))
		mu.Unlock()
	}

	cfg.Name = "final"
	s, _ := proctest.StartReady(t, cfg)
	c := sqsClient(t, s.Base)
	got := map[string]int{}
	for empty := 0; empty < 2; {
		out, err := c.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{QueueUrl: &queueURL, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 600})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(out.Messages) == 0 {
			empty++
			continue
		}
		empty = 0
		var del []types.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			got[*m.Body]++
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if res, err := c.DeleteMessageBatch(context.Background(), &awssqs.DeleteMessageBatchInput{QueueUrl: &queueURL, Entries: del}); err != nil || len(res.Failed) > 0 {
			t.Fatalf("DeleteMessageBatch: %v %v", err, res)
		}
	}
	lost, foreign, twice := 0, 0, 0
	for b := range acked {
		if got[b] == 0 {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged send %q lost", b)
			}
		}
	}
	for b, n := range got {
		if !tried[b] {
			foreign++
			t.Errorf("received %q, which was never sent", b)
		}
		if n > 1 {
			twice++
		}
	}
	if len(acked) < 100 {
		t.Errorf("only %d sends were acknowledged across %d lives: the load did not run", len(acked), rounds)
	}
	t.Logf("SQS kill -9 x%d: acknowledged=%d tried=%d received=%d acknowledged-lost=%d never-sent=%d received-twice=%d (unacknowledged that survived: %d)",
		rounds, len(acked), len(tried), len(got), lost, foreign, twice, len(got)-len(acked)+lost)
	if twice > 0 {
		t.Errorf("%d bodies received twice (each was deleted on its first receive)", twice)
	}
}
