"""End-to-end run of boto3 against mqueue's SQS API.

Usage: boto_sqs.py ENDPOINT ACCESS_KEY SECRET_KEY
Prints "OK <protocol>" when every step passed; raises otherwise. Debian's
boto3 (botocore 1.29) speaks SQS's query protocol, newer ones JSON 1.0.
"""
import sys
import time

import boto3
import botocore
from botocore.exceptions import ClientError

endpoint, key, secret = sys.argv[1:4]
sqs = boto3.client(
    "sqs", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=key, aws_secret_access_key=secret,
    config=botocore.config.Config(retries={"max_attempts": 1}),
)
protocol = sqs.meta.service_model.protocol


def expect_error(code, fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, (got, code, e.response)
        return
    raise AssertionError("no error, want " + code)


url = sqs.create_queue(QueueName="boto", Attributes={"VisibilityTimeout": "20"})["QueueUrl"]
assert url.endswith("/000000000000/boto"), url
assert sqs.get_queue_url(QueueName="boto")["QueueUrl"] == url
assert url in sqs.list_queues(QueueNamePrefix="bo").get("QueueUrls", [])
expect_error("AWS.SimpleQueueService.NonExistentQueue" if protocol == "query" else "QueueDoesNotExist",
             sqs.get_queue_url, QueueName="nope")

attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
assert attrs["VisibilityTimeout"] == "20", attrs
sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "0", "ReceiveMessageWaitTimeSeconds": "1"})

sent = sqs.send_message(QueueUrl=url, MessageBody="héllo <x>", MessageAttributes={
    "s": {"DataType": "String", "StringValue": "v"},
    "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
})
assert sent["MD5OfMessageBody"] and sent["MD5OfMessageAttributes"], sent
batch = sqs.send_message_batch(QueueUrl=url, Entries=[
    {"Id": "a", "MessageBody": "one"},
    {"Id": "b", "MessageBody": "two", "DelaySeconds": 5000},
])
assert [e["Id"] for e in batch["Successful"]] == ["a"], batch
assert [e["Id"] for e in batch.get("Failed", [])] == ["b"], batch

got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                          AttributeNames=["All"], MessageAttributeNames=["All"])["Messages"]
assert [m["Body"] for m in got] == ["héllo <x>", "one"], got
m = got[0]
assert m["MessageAttributes"]["s"]["StringValue"] == "v", m
assert m["MessageAttributes"]["b"]["BinaryValue"] == b"\x00\x01", m
assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"], m
assert m["Attributes"]["ApproximateReceiveCount"] == "1", m

sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=got[1]["ReceiptHandle"], VisibilityTimeout=0)
again = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=2, AttributeNames=["ApproximateReceiveCount"])["Messages"]
assert again[0]["Body"] == "one" and again[0]["Attributes"]["ApproximateReceiveCount"] == "2", again
sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
res = sqs.delete_message_batch(QueueUrl=url, Entries=[
    {"Id": "x", "ReceiptHandle": again[0]["ReceiptHandle"]},
    {"Id": "y", "ReceiptHandle": "bogus"},
])
assert [e["Id"] for e in res["Successful"]] == ["x"] and [e["Id"] for e in res["Failed"]] == ["y"], res
t0 = time.time()
assert "Messages" not in sqs.receive_message(QueueUrl=url) or not sqs.receive_message(QueueUrl=url)["Messages"]
assert time.time() - t0 >= 0.9, "ReceiveMessageWaitTimeSeconds=1 was not waited"
sqs.purge_queue(QueueUrl=url)
sqs.delete_queue(QueueUrl=url)
expect_error("AWS.SimpleQueueService.NonExistentQueue" if protocol == "query" else "QueueDoesNotExist",
             sqs.get_queue_url, QueueName="boto")
print("OK", protocol)
