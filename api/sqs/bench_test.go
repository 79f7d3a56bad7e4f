package sqs_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/mqueue/mqueue/engine"
)

// benchBody is the message of the send benchmarks.
var benchBody = strings.Repeat("m", 100)

// BenchmarkSends compares, in one run on one server, messages per second
// sent by 16 concurrent clients through the native POST /api/queue/{name},
// the AWS SDK's SendMessage and SendMessageBatch of 10 (fsync always).
// make bench reports the msgs/s of each; their ratios are the figures.
func BenchmarkSends(b *testing.B) {
	ts := startServer(b, serverOpts{fsync: engine.FsyncAlways})
	c := ts.sdk()
	out, err := c.CreateQueue(context.Background(), &awssqs.CreateQueueInput{QueueName: aws.String("bench")})
	if err != nil {
		b.Fatal(err)
	}
	url := *out.QueueUrl
	const clients = 16
	msgsPerSec := func(b *testing.B, perOp int) {
		b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "msgs/s")
	}

	// httpSends runs 16 clients sending the request req makes, each
	// answered want.
	httpSends := func(b *testing.B, req func() *http.Request, want int) {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}, Timeout: 30 * time.Second}
		defer hc.CloseIdleConnections()
		b.SetParallelism(clients)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := hc.Do(req())
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					b.Errorf("%d, want %d", resp.StatusCode, want)
					return
				}
			}
		})
		msgsPerSec(b, 1)
	}
	b.Run("native-post", func(b *testing.B) {
		httpSends(b, func() *http.Request {
			req, _ := http.NewRequest(http.MethodPost, ts.url+"/api/queue/bench-native", bytes.NewReader([]byte(benchBody)))
			req.Header.Set("Content-Type", "application/octet-stream")
			return req
		}, http.StatusCreated)
	})
	// The SendMessage request an SDK sends, hand-built: the server's cost of
	// the SQS API without the client's (signing, the SDK's middleware).
	payload := []byte(`{"QueueUrl":"` + url + `","MessageBody":"` + benchBody + `"}`)
	b.Run("json-send", func(b *testing.B) {
		httpSends(b, func() *http.Request {
			req, _ := http.NewRequest(http.MethodPost, ts.url+"/", bytes.NewReader(payload))
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
			req.Header.Set("X-Amz-Target", "AmazonSQS.SendMessage")
			return req
		}, http.StatusOK)
	})
	b.Run("sdk-send", func(b *testing.B) {
		b.SetParallelism(clients)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: &benchBody}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		msgsPerSec(b, 1)
	})
	b.Run("sdk-send-batch10", func(b *testing.B) {
		entries := make([]types.SendMessageBatchRequestEntry, 10)
		for i := range entries {
			entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: &benchBody}
		}
		b.SetParallelism(clients)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				res, err := c.SendMessageBatch(context.Background(), &awssqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
				if err != nil || len(res.Successful) != 10 {
					b.Errorf("SendMessageBatch: %v", err)
					return
				}
			}
		})
		msgsPerSec(b, 10)
	})
}
