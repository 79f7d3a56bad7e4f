package sqs_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/mqueue/mqueue/api/sqs"
)

// debianPython is the interpreter of Debian's python3-boto3 (botocore
// 1.29, which speaks SQS's query protocol); .ci/run installs it.
const debianPython = "/usr/bin/python3"

// TestBoto3 runs testdata/boto_sqs.py, every action through boto3, against
// a server that verifies SigV4, then checks a wrong secret is refused.
func TestBoto3(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		unavailable(t, debianPython+" not found (apt-get install python3-boto3)")
	}
	if out, err := exec.Command(debianPython, "-c", "import boto3").CombinedOutput(); err != nil {
		unavailable(t, "boto3 is not importable by "+debianPython+" (apt-get install python3-boto3): "+string(out))
	}
	ts := startServer(t, serverOpts{sqs: sqs.Config{Credentials: map[string]string{testKeyID: testSecret}}})
	out, err := exec.Command(debianPython, "testdata/boto_sqs.py", ts.url, testKeyID, testSecret).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK ") {
		t.Fatalf("boto_sqs.py: %v\n%s", err, out)
	}
	t.Logf("boto3: %s", out)
	out, err = exec.Command(debianPython, "testdata/boto_sqs.py", ts.url, testKeyID, "wrong-secret").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SignatureDoesNotMatch") {
		t.Fatalf("boto_sqs.py with a wrong secret: %v\n%s", err, out)
	}
}

// TestAWSCLI drives the AWS CLI (Debian's awscli) with --endpoint-url.
func TestAWSCLI(t *testing.T) {
	cli, err := exec.LookPath("/usr/bin/aws")
	if err != nil {
		unavailable(t, "/usr/bin/aws not found (apt-get install awscli)")
	}
	ts := startServer(t, serverOpts{sqs: sqs.Config{Credentials: map[string]string{testKeyID: testSecret}}})
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"--endpoint-url", ts.url, "--region", "us-east-1", "--output", "text", "sqs"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+testKeyID, "AWS_SECRET_ACCESS_KEY="+testSecret,
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_PAGER=", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws sqs %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	url := run("create-queue", "--queue-name", "cli")
	if !strings.HasSuffix(url, "/000000000000/cli") {
		t.Fatalf("create-queue = %q", url)
	}
	run("send-message", "--queue-url", url, "--message-body", "from the cli")
	got := run("receive-message", "--queue-url", url, "--wait-time-seconds", "1", "--query", "Messages[0].Body")
	if got != "from the cli" {
		t.Fatalf("receive-message = %q", got)
	}
	run("delete-queue", "--queue-url", url)
}
