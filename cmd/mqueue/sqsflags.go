package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/mqueue/mqueue/api/sqs"
)

// validAccount reports whether a is an AWS account id: 12 digits.
func validAccount(a string) bool {
	if len(a) != 12 {
		return false
	}
	for _, c := range a {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// newSQSConfig is the SQS API's configuration from the flags (nil with
// --sqs=false), and logs, loudly, how its requests are authenticated.
func newSQSConfig(cfg *serveConfig, log *slog.Logger) (*sqs.Config, error) {
	if !cfg.sqs {
		return nil, nil
	}
	sc := &sqs.Config{
		PublicURL: cfg.sqsPublicURL,
		Account:   cfg.sqsAccount,
		Region:    cfg.sqsRegion,
		Logger:    log,
	}
	switch {
	case cfg.sqsCredentials != "":
		creds, err := readCredentials(cfg.sqsCredentials)
		if err != nil {
			return nil, err
		}
		sc.Credentials = creds
		log.Info("SQS API: SigV4 signatures are verified", "access_keys", len(creds), "file", cfg.sqsCredentials)
	case cfg.authToken != "":
		sc.Deny = true
		log.Warn("SQS API: every request is refused (AccessDenied): --auth-token is set and SigV4 needs --sqs-credentials; give --sqs-credentials, or --sqs=false")
	default:
		log.Warn("SQS API: requests are NOT authenticated: any client that reaches the port may send, receive and delete; SigV4 signatures are accepted unverified. Give --sqs-credentials to verify them, or --sqs=false")
	}
	return sc, nil
}

// readCredentials reads a file of "ACCESS_KEY_ID SECRET_ACCESS_KEY" lines
// ('#' starts a comment; blank lines are skipped).
func readCredentials(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--sqs-credentials: %w", err)
	}
	defer f.Close()
	creds := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("--sqs-credentials %s line %d: want \"ACCESS_KEY_ID SECRET_ACCESS_KEY\"", path, n)
		}
		if _, dup := creds[fields[0]]; dup {
			return nil, fmt.Errorf("--sqs-credentials %s line %d: access key %s given twice", path, n, fields[0])
		}
		creds[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--sqs-credentials %s: %w", path, err)
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("--sqs-credentials %s: no access keys", path)
	}
	return creds, nil
}
