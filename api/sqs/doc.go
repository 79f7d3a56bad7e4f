// Package sqs serves an Amazon SQS-compatible API on top of the engine, so
// that the AWS SDKs and the AWS CLI work against mqueue unchanged. It speaks
// both wire protocols SQS clients use, detected per request: AWS JSON 1.0
// (POST /, X-Amz-Target: AmazonSQS.<Action>) and the query protocol
// (form-encoded Action=..., XML replies).
package sqs
