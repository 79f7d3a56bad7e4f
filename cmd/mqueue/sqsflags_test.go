package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSQSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" ok, else part of the error
	}{
		{nil, ""},
		{[]string{"--sqs-account", "123"}, "--sqs-account"},
		{[]string{"--sqs-account", "12345678901x"}, "--sqs-account"},
		{[]string{"--sqs-region", "us:east"}, "--sqs-region"},
		{[]string{"--sqs-public-url", "ftp://mq.example.com"}, "--sqs-public-url"},
		{[]string{"--sqs-public-url", "https://mq.example.com/base"}, ""},
		{[]string{"--sqs=false"}, ""},
	} {
		_, err := parseServeFlags(tc.args, env(nil))
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parseServeFlags(nil, env(map[string]string{"MQUEUE_SQS_ACCOUNT": "111122223333"}))
	if err != nil || cfg.sqsAccount != "111122223333" || !cfg.sqs {
		t.Fatalf("from the environment: %+v %v", cfg, err)
	}
}

func TestSQSCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	creds, err := readCredentials(write("ok", "# keys\nAKID1 secret1\n\n  AKID2   secret2  \n"))
	if err != nil || len(creds) != 2 || creds["AKID1"] != "secret1" || creds["AKID2"] != "secret2" {
		t.Fatalf("%v %v", creds, err)
	}
	for name, text := range map[string]string{
		"dup":   "A s\nA t\n",
		"three": "A s extra\n",
		"empty": "# nothing\n",
	} {
		if _, err := readCredentials(write(name, text)); err == nil || !strings.Contains(err.Error(), "--sqs-credentials") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := readCredentials(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was accepted")
	}
}

// The start says loudly how SQS requests are authenticated.
func TestSQSStartLog(t *testing.T) {
	for _, tc := range []struct {
		cfg  serveConfig
		log  string
		deny bool
	}{
		{serveConfig{sqs: true}, "requests are NOT authenticated", false},
		{serveConfig{sqs: true, authToken: "tok"}, "every request is refused", true},
	} {
		var buf bytes.Buffer
		sc, err := newSQSConfig(&tc.cfg, slog.New(slog.NewTextHandler(&buf, nil)))
		if err != nil || sc == nil || sc.Deny != tc.deny || !strings.Contains(buf.String(), tc.log) || !strings.Contains(buf.String(), "level=WARN") {
			t.Errorf("%+v: %+v %v, log %q", tc.cfg, sc, err, buf.String())
		}
	}
	creds := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(creds, []byte("AKID s\n"), 0o600)
	var buf bytes.Buffer
	sc, err := newSQSConfig(&serveConfig{sqs: true, authToken: "tok", sqsCredentials: creds}, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil || sc.Deny || sc.Credentials["AKID"] != "s" || !strings.Contains(buf.String(), "SigV4 signatures are verified") {
		t.Errorf("with credentials: %+v %v, log %q", sc, err, buf.String())
	}
	if sc, err := newSQSConfig(&serveConfig{sqs: false}, slog.New(slog.NewTextHandler(&buf, nil))); sc != nil || err != nil {
		t.Errorf("--sqs=false: %+v %v", sc, err)
	}
}
